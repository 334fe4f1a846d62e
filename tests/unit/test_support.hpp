#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim/config/scenario.hpp"

namespace moesim::test {

inline const std::filesystem::path kSourceDir = MOESIM_SOURCE_DIR;

inline Catalog source_catalog() { return Catalog(kSourceDir); }

/// A catalog card from the source tree; a test fails if it does not load.
template <class S>
S load_card(const std::string& name) {
  std::vector<Diagnostic> sink;
  auto spec = source_catalog().load<S>(name, sink);
  if (!spec) throw std::runtime_error(name + ": " + (sink.empty() ? std::string("cannot load") : sink.front().format()));
  return *spec;
}

/// The quickstart scenario with overrides, loaded from the source tree.
inline Scenario quickstart(const std::vector<std::string>& sets = {}) {
  return load_scenario(kSourceDir / "scenarios/quickstart.yaml", sets, source_catalog());
}

}  // namespace moesim::test
