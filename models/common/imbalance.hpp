#pragma once
// Expert-load imbalance metrics: one implementation for the run, the writers and the tests.
//
// For a load vector x over n experts (tokens routed to each):
//   CV              = population std(x) / mean(x)
//   max/mean, max/min (infinite when an expert got nothing)
//   KL from uniform = Σ q_i ln(q_i · n),  q = x / Σx      (nats; 0 when balanced)
//   entropy         = −Σ q_i log2 q_i                      (bits; log2 n when balanced)
//   Gini            = Σ_i Σ_j |x_i − x_j| / (2 n² mean)    (0 balanced, → 1 all on one)
// Over a run (seed experiment 002's two definitions, both per MoE layer, then averaged over
// layers):
//   cv_per_step_mean : the CV of every step, averaged over steps;
//   cv_aggregated    : the CV of loads summed over all steps with at most `filter_max_tokens`
//                      tokens (drops warm-up and profiling batches).
// Balancedness (vLLM EPLB): Σ_layers mean GPU load / Σ_layers max GPU load, with the GPU loads
// the placement in use gave (replicas, rebalancing and the routing policy included), summed over
// the run; and each layer's GPU max/mean from the same sums.
// Seed 001's utilisation statistics: per-expert utilisation (share of a step's tokens) as a
// running mean over steps, its CV, and the least-squares slope of the per-step load variance over
// the last `trend_window` steps.
#include <limits>
#include <span>
#include <vector>

namespace moesim {

struct LoadStats {
  double cv = 0;
  double max_over_mean = 1;
  double max_over_min = 1;
  double kl_from_uniform = 0;
  double entropy_bits = 0;
  double gini = 0;
};

[[nodiscard]] LoadStats load_stats(std::span<const double> loads);
[[nodiscard]] double gini_of(std::span<const double> loads);
/// Least-squares slope of ys against 0, 1, 2, ...
[[nodiscard]] double linear_trend(std::span<const double> ys);

class ImbalanceTracker {
 public:
  /// num_gpus: GPUs an instance spreads its experts over (1 when every GPU holds a shard of each).
  ImbalanceTracker(int moe_layers, int num_experts, int num_gpus, int filter_max_tokens, int trend_window);

  /// One step: its token count, counts[layer * num_experts + expert] and the tokens each GPU
  /// computed, gpu_loads[layer * num_gpus + gpu] (empty with one GPU: it computed them all).
  void add_step(int num_tokens, std::span<const double> counts, std::span<const double> gpu_loads = {});

  struct LayerResult {
    double cv_per_step_mean = 0;
    LoadStats aggregated;           ///< over steps within the filter
    LoadStats aggregated_all;       ///< over every step
    double gpu_max_over_mean = 1;   ///< aggregated loads grouped by GPU
  };
  struct Result {
    int steps = 0;
    int steps_in_filter = 0;
    double cv_per_step_mean = 0;    ///< mean over layers
    double cv_aggregated = 0;       ///< mean over layers, filtered
    double cv_aggregated_all = 0;   ///< mean over layers, unfiltered
    double max_over_mean_aggregated = 1, max_over_min_aggregated = 1, kl_from_uniform = 0, entropy_bits = 0, gini = 0;
    double balancedness = 1;
    double utilization_cv = 0;
    double load_variance_trend = 0;
    std::vector<LayerResult> layers;
  };
  [[nodiscard]] Result result() const;

  [[nodiscard]] const std::vector<double>& aggregated_all() const { return agg_all_; }  ///< layer-major
  [[nodiscard]] int num_experts() const { return experts_; }
  [[nodiscard]] int num_layers() const { return layers_; }

 private:
  int layers_, experts_;
  int num_ranks_ = 1;
  std::vector<double> gpu_agg_;  ///< tokens per GPU, summed over steps: [layer * num_ranks + gpu]
  int filter_, window_;
  int steps_ = 0, steps_in_filter_ = 0;
  std::vector<double> cv_sum_;     ///< per layer
  std::vector<double> agg_;        ///< filtered, layer-major
  std::vector<double> agg_all_;
  std::vector<double> utilization_;  ///< running mean per expert, over layers
  std::vector<double> variance_history_;
};

}  // namespace moesim
