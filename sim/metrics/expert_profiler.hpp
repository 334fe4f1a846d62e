#pragma once
// The expert profiler: observes every routing decision and every step's expert loads, and keeps
// what the output files need — the imbalance metrics (models/common/imbalance.hpp), the files of
// vLLM's MoE expert profiler (moe_expert_tracking/), per-step gate logs and experts.csv.
//
// Files (all columns as the real tools write them):
//   moe_expert_tracking/moe_expert_activations.csv  layer_idx,expert_id,activation_count,percentage
//   moe_expert_tracking/moe_expert_coselection.csv  layer_idx,expert_id_1,expert_id_2,coselection_count
//   moe_expert_tracking/moe_routing_weights_hist.csv layer_idx,token_idx,expert_id,weight
//                                                     (every log_interval-th routed token)
//   moe_expert_tracking/moe_load_imbalance.csv       layer_idx,timestamp_sec,std_dev,max_min_ratio
//   moe_expert_tracking/moe_summary.json             per layer: num_experts, top_k, total_activations, ...
//   gate_logs/gate_logs_<k>.json                     see models/routing/trace.hpp
//   experts.csv                                      layer,expert,gpu,tokens,share
//     mode ep: one row per (layer, expert, GPU) that computed tokens of the expert or holds a
//     replica of it at the end of the run (placement as used: replicas, rebalances and the
//     routing policy included; GPUs of an instance, instances summed); mode tp: gpu -1.
// layer_idx is the decoder layer index (dense leading layers are skipped, as in vLLM).
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "models/common/imbalance.hpp"
#include "sim/config/scenario.hpp"
#include "sim/exec/step_plan.hpp"

namespace moesim {

class ExpertProfiler final : public RoutingObserver {
 public:
  /// gpus: GPUs of an instance (mode ep; 1 in mode tp).
  ExpertProfiler(const ModelSpec& model, int gpus, bool expert_parallel, OutputsConfig options);

  void on_layer_routed(int moe_layer, std::span<const TokenInfo> tokens, std::span<const std::int32_t> experts,
                       std::span<const float> weights) override;
  /// One step's expert loads (layer-major counts), after its layers were routed; in mode ep also
  /// the tokens of every GPU and physical slot (StepLoadStats) and the placement they were
  /// computed in (`planner`).
  void on_step(int instance, std::int64_t step, double time_s, int num_tokens, const StepLoadStats& load, const StepPlanner& planner);
  /// The placement at the end of the run, for experts.csv's replica rows (mode ep).
  void on_run_end(const StepPlanner& planner);

  [[nodiscard]] const ImbalanceTracker& tracker() const { return tracker_; }
  [[nodiscard]] double routed_assignments() const;

  /// Renders every file into `files` (relative path -> content).
  void render(std::map<std::string, std::string>& files, const std::string& model_name) const;

 private:
  struct GateStep {
    std::int64_t step;
    int instance;
    double time_s;
    int num_tokens;
    std::vector<std::int32_t> counts;
  };
  struct WeightSample {
    int layer_idx;
    std::int64_t token_idx;
    int expert;
    float weight;
  };
  struct TimelineRow {
    int layer_idx;
    double time_s;
    double std_dev;
    double max_min_ratio;
  };

  std::vector<int> moe_layer_ids_;  ///< decoder layer index of each MoE layer
  int experts_, top_k_;
  int gpus_ = 1;
  bool expert_parallel_;
  std::vector<double> expert_gpu_tokens_;  ///< mode ep: [layer][expert][gpu]
  std::vector<std::uint8_t> holds_replica_;  ///< mode ep: [layer][expert][gpu], at the end of the run
  OutputsConfig options_;
  ImbalanceTracker tracker_;
  std::vector<std::uint64_t> coselection_;  ///< [layer][e1][e2], e1 < e2 used
  std::vector<WeightSample> weight_samples_;
  std::vector<TimelineRow> timeline_;
  std::vector<GateStep> gate_steps_;
  std::int64_t tokens_seen_ = 0;  ///< routed tokens of MoE layer 0, for sampling
};

}  // namespace moesim
