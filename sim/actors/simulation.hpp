#pragma once
// One simulation run over SimGrid: platform, a frontend actor that injects arrivals, an engine
// actor per serving instance that forms each step's batch, and a worker actor per GPU that
// executes the step's plan (compute as SimGrid execs on its host, collectives as parallel tasks on
// the platform's links).
//
// Only one run per process: SimGrid's engine cannot be restarted (SIMGRID_NOTES).
#include <string>
#include <vector>

#include "sim/config/scenario.hpp"
#include <memory>

#include "sim/metrics/expert_profiler.hpp"
#include "sim/metrics/recorder.hpp"
#include "sim/metrics/trace.hpp"

namespace moesim {

struct RunOptions {
  std::vector<std::string> simgrid_cfg;  ///< --cfg=name:value pass-through
  std::vector<std::string> simgrid_log;  ///< --log=... pass-through
};

struct RunResult {
  RunRecorder recorder;
  std::unique_ptr<ExpertProfiler> profiler;
  std::unique_ptr<TraceRecorder> trace;  ///< null unless outputs.trace
  double end_time_s = 0;
};

/// Runs the scenario to completion. Throws std::runtime_error when an invariant breaks (a request
/// lost, a deadlock); no partial result is returned.
[[nodiscard]] RunResult run_simulation(const Scenario& scenario, const RunOptions& options);

}  // namespace moesim
