#pragma once
// Turning a run's records into checked results and files.
//
// check_invariants: every request that arrived either finished with all its tokens or was
// rejected at arrival with a reason (and never served), every prompt token was prefilled once,
// every output token after the first came from one decode step, every routed token reached top_k
// experts in every MoE layer, the GPUs' energy equals what steps and idle time account for (and
// the integral of their power). A run that breaks one produces no output.
//
// Files (tidy CSV, units in column names; JSON with the key names of vLLM's benchmark results):
//   requests.csv, steps.csv, summary.json, config.resolved.yaml. Each is written to a temporary
//   name, flushed to disk and renamed into place; summary.json last, after any previous one was
//   removed, so its presence means the set is complete. `moesim run` writes them into a staged
//   folder that replaces the previous result whole (output_files.hpp).
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "sim/actors/simulation.hpp"
#include "sim/config/scenario.hpp"
#include "sim/metrics/output_files.hpp"

namespace moesim {

/// Throws std::runtime_error naming the first broken invariant.
void check_invariants(const Scenario& scenario, const RunResult& result);

[[nodiscard]] nlohmann::ordered_json make_summary(const Scenario& scenario, const RunResult& result);
/// requests.csv; `domain_names` name each request's domain (empty field: none).
[[nodiscard]] std::string requests_csv(const RunResult& result, const std::vector<std::string>& domain_names = {});
[[nodiscard]] std::string steps_csv(const RunResult& result);
/// gpus.csv: time_s,gpu,power_w,temp_die_c,temp_sink_c,clock_mhz,throttle_state,compute_util,mem_util,inlet_c
[[nodiscard]] std::string gpus_csv(const RunResult& result);

/// Writes every output of a run into `dir` (created if needed).
void write_run_outputs(const std::filesystem::path& dir, const Scenario& scenario, const RunResult& result);

}  // namespace moesim
