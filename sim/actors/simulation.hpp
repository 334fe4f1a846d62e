#pragma once
// One simulation run over SimGrid: platform, a frontend actor that injects arrivals, an engine
// actor per serving instance that forms each step's batch, and a worker actor per GPU that
// executes the step's plan (compute as SimGrid execs on its host, collectives as parallel tasks on
// the platform's links).
//
// Only one run per process: SimGrid's engine cannot be restarted (SIMGRID_NOTES).
#include <string>
#include <vector>

#include "models/power/gpu_state.hpp"
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

/// Where the energy went, beyond what steps and requests hold.
struct EnergyAccount {
  double sync_wait_j = 0;             ///< GPUs waiting for the slowest before collectives
  double imbalance_j = 0;             ///< the part after MoE compute: the energy cost of expert skew
  double idle_between_steps_j = 0;    ///< instances idle between steps
  double idle_after_last_step_j = 0;  ///< from an instance's last step to the end of the run
};

/// Scheduler totals over all instances.
struct ServingTotals {
  std::int64_t preemptions = 0;
  std::int64_t recomputed_tokens = 0;
  std::int64_t recompute_emissions = 0;
  std::int64_t prefix_hit_tokens = 0;
  std::int64_t kv_blocks_per_rank = 0;
  int block_size = 0;
  std::int64_t kv_transfers = 0;  ///< disaggregation: sequences moved to a decode instance
  double kv_transfer_bytes = 0;
  double kv_transfer_seconds = 0;
  int rebalances = 0;  ///< EPLB placements recomputed (all instances)
};

struct RunResult {
  RunRecorder recorder;
  std::unique_ptr<ExpertProfiler> profiler;
  std::unique_ptr<TraceRecorder> trace;  ///< null unless outputs.trace
  double end_time_s = 0;
  std::vector<GpuPowerState> gpus;       ///< one per cluster GPU
  EnergyAccount energy;
  ServingTotals serving;
};

/// Runs the scenario to completion. Throws std::runtime_error when an invariant breaks (a request
/// lost, a deadlock); no partial result is returned.
[[nodiscard]] RunResult run_simulation(const Scenario& scenario, const RunOptions& options);

}  // namespace moesim
