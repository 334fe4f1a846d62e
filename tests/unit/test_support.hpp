#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "sim/config/scenario.hpp"

namespace moesim::test {

inline const std::filesystem::path kSourceDir = MOESIM_SOURCE_DIR;

inline Catalog source_catalog() { return Catalog(kSourceDir); }

/// The quickstart scenario with overrides, loaded from the source tree.
inline Scenario quickstart(const std::vector<std::string>& sets = {}) {
  return load_scenario(kSourceDir / "scenarios/quickstart.yaml", sets, source_catalog());
}

}  // namespace moesim::test
