#pragma once
// Fuzz targets: the loaders of every file a user hands to moesim, driven from raw bytes.
//
// Each target returns true when its input loads (and what loaded is consistent), false when the
// loader rejects it with the project's input error (ConfigError for scenarios, InputError for
// datasets and traces). Anything else escaping a target is a bug: another exception type, or an
// InvariantViolation when a loaded value breaks what the loader promises. The libFuzzer drivers
// (libfuzzer_main.cpp) and the regression test (tests/unit/fuzz_regressions_test.cpp) call the
// same functions.
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace moesim::fuzz {

/// A loaded value breaks a promise of its loader (always a bug, never bad input).
class InvariantViolation : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// A scenario: YAML text, then optionally a line "#--set" followed by one `--set key=value`
/// argument per line. Loaded with the source tree's catalog; a loaded scenario must reload from
/// its resolved YAML to the same resolved YAML.
bool scenario(std::string_view data);
/// A JSONL dataset, resolved against datasets/domain_queries.json.
bool dataset(std::string_view data);
/// One gate_logs_<k>.json file, for a model of kTraceMoeLayers MoE layers of kTraceExperts experts.
bool gate_log(std::string_view data);
/// A moe_expert_activations.csv profile, for the same model.
bool profiler_csv(std::string_view data);

/// Mixtral-8x7B (the quickstart model), whose gate logs and profiles are the seed corpus.
inline constexpr int kTraceMoeLayers = 32;
inline constexpr int kTraceExperts = 8;

/// The line that separates a scenario's YAML from its --set arguments.
inline constexpr std::string_view kSetSeparator = "#--set";

struct Target {
  const char* name;  ///< also the folder under tests/fuzz/corpus and tests/fuzz/regressions
  bool (*run)(std::string_view);  ///< true: loaded; false: rejected with the input error
};
[[nodiscard]] const std::vector<Target>& targets();

}  // namespace moesim::fuzz
