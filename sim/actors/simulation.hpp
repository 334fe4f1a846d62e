#pragma once
// One simulation run over SimGrid: platform, a frontend actor that injects arrivals, and an
// engine actor per serving instance that forms each step's batch and executes its plan: each
// GPU's kernels advance its power state on its own timeline, collectives run as parallel tasks on
// the platform's links (flow fidelity) or the whole step as one parallel task (analytic).
//
// Only one run per process: SimGrid's engine cannot be restarted (SIMGRID_NOTES).
#include <string>
#include <vector>

#include "models/power/gpu_state.hpp"
#include "sim/config/scenario.hpp"
#include <filesystem>
#include <memory>

#include "sim/metrics/expert_profiler.hpp"
#include "sim/metrics/recorder.hpp"
#include "sim/metrics/trace.hpp"

namespace moesim {

struct RunOptions {
  std::vector<std::string> simgrid_cfg;  ///< --cfg=name:value pass-through
  std::vector<std::string> simgrid_log;  ///< --log=... pass-through
  /// When set, steps.csv is written into this folder as the run goes (a hidden temporary until
  /// write_run_outputs renames it), and the steps are not kept in memory.
  std::filesystem::path stream_steps_to;
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

/// What the routing policy did over the run (all instances).
struct PolicyTotals {
  double assignments = 0, computed = 0, dropped = 0, rerouted = 0, changed = 0;  ///< token-expert assignments
  std::int64_t migrations = 0;        ///< rebalances whose weights moved on the links
  double migration_bytes = 0;
  double migration_seconds = 0;       ///< stall: serving stopped this long; overlap: copies in flight this long
  double migration_energy_j = 0;      ///< stall: the instance's GPUs during the copies; overlap: inside the steps
  double migration_analytic_seconds = 0;  ///< the same copies in closed form on idle links
  std::vector<double> layer_gpu_mom_before, layer_gpu_mom_after;  ///< per MoE layer, mean over EP steps
  std::int64_t ep_steps = 0;
  double policy_wall_s = 0;           ///< host time spent planning MoE layers' routing (not an output: varies)
};

struct RunResult {
  RunRecorder recorder;
  std::unique_ptr<ExpertProfiler> profiler;
  std::unique_ptr<TraceRecorder> trace;  ///< null unless outputs.trace
  double end_time_s = 0;
  std::vector<GpuPowerState> gpus;       ///< one per cluster GPU
  EnergyAccount energy;
  ServingTotals serving;
  PolicyTotals policy;
  /// SimGrid activities (executions, parallel tasks, communications) that completed during the run,
  /// and the host seconds the engine ran for: what benchmarks report.
  std::int64_t simgrid_activities = 0;
  double engine_wall_s = 0;
};

/// Runs the scenario to completion. Throws std::runtime_error when an invariant breaks (a request
/// lost, a deadlock); no partial result is returned.
[[nodiscard]] RunResult run_simulation(const Scenario& scenario, const RunOptions& options);

}  // namespace moesim
