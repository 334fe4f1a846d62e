#pragma once
// Routing and placement policies (mode ep): what happens between the gate's top-k and the experts'
// GEMMs. Per step and MoE layer a policy
//   1. may change the gate's selection (selection-changing policies: nectar gate_bias,
//      aux_free_bias), counting every changed token-expert assignment as divergence;
//   2. sends every token-expert assignment to one physical replica of its expert, or drops it
//      (capacity), counting assignments sent elsewhere than the placement's default rule;
//   3. sees the loads that resulted (its history window).
// The placement itself (logical expert -> physical slots, periodically rebalanced by EPLB) belongs to
// the step planner; a policy gets one layer's slots at a time.
//
//   static        : contiguous experts, no replicas (vLLM's initial map).
//   eplb          : EPLB placement; a token goes to a replica by `replica_selection`:
//                   position (token index mod replicas: vLLM), random (SGLang dynamic), nearest
//                   (on the token's GPU, else its node, else by position: SGLang static) or even
//                   (round robin per expert, so replica loads differ by at most one).
//   least_loaded  : EPLB placement; single-replica assignments are fixed, then every replicated one
//                   goes to the replica whose GPU has the least queued work (tokens x the GPU's
//                   clock slowdown), or the lesser of two random replicas (choices: 2). It keeps the
//                   default rule's assignment when that has the lower maximum, so it is never worse.
//   capacity      : a slot takes at most ceil(factor x assignments / slots) tokens per layer (GShard);
//                   overflow is dropped, or sent to the expert's next replica with room.
//   nectar        : dynamic rerouting (see NectarState): mode replica steers replicated assignments
//                   toward per-GPU target loads; mode gate_bias biases the gate (p_e -> p_e e^{b_e}).
//   aux_free_bias : DeepSeek-V3's loss-free balancing: b_e += speed x sign(mean load - load_e) per
//                   step and layer, applied to the gate as p_e -> p_e e^{b_e}.
//
// Gate biasing without gate scores: a router gives each token's top-k, not every expert's score. A
// bias turns the gate's expected distribution p (the window mean of unbiased selections) into
// p' ∝ p e^b; each assignment to an expert with p'_e < p_e moves with probability 1 - p'_e/p_e to an
// expert drawn from (p' - p)+, never one the token already holds. This is the maximal coupling of p
// and p': the loads follow p' while the fewest assignments change, and each change is counted.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/common/registry.hpp"
#include "models/common/rng.hpp"
#include "models/routing/router.hpp"

namespace moesim {

struct NectarParams {
  std::string mode = "replica";      ///< replica | gate_bias
  double strength = 0.5;             ///< bias = strength x (target - current)
  int history_steps = 50;            ///< sliding window of distributions
  int trend_steps = 10;              ///< the linear trend uses the last this many
  double imbalance_threshold = 0.0;  ///< bias only when the predicted score exceeds this (or under pressure)
  double power_budget_w = 0;         ///< per GPU; 0: the GPU's effective cap
};

struct CapacityParams {
  double factor = 1.25;             ///< capacity per slot = ceil(factor x assignments / slots)
  std::string overflow = "drop";    ///< drop | next_replica
};

/// Placement of experts on the EP group, its rebalancing and the per-token policy.
struct RoutingPolicyConfig {
  std::string policy = "static";           ///< see the header comment
  std::string placement = "auto";          ///< auto | contiguous | eplb (auto: contiguous for static, else eplb)
  int num_redundant_experts = 0;           ///< extra physical expert slots per MoE layer (eplb placement)
  int interval_steps = 3000;               ///< rebalance every this many steps (vLLM default)
  int window_steps = 1000;                 ///< from the loads of this many recent steps (vLLM default)
  double interval_s = 0;                   ///< > 0: rebalance every this many simulated seconds instead
  double rebalance_threshold = 0;          ///< > 0: also rebalance when a step's GPU max/mean exceeds 1 + this
  int num_groups = 0;                      ///< expert groups for the hierarchical policy; 0: the model's n_group (or 1)
  std::string replica_selection = "position";  ///< position | random | nearest | even
  std::string migration = "stall";         ///< stall | overlap | none: how moved expert weights travel
  int least_loaded_choices = 0;            ///< 0: every replica; 2: power of two choices
  CapacityParams capacity;
  NectarParams nectar;
  double aux_free_update_speed = 0.001;    ///< aux_free_bias: bias step per step and layer

  [[nodiscard]] bool eplb_placement() const {
    return placement == "eplb" || (placement == "auto" && policy != "static");
  }
};

/// What a policy may know about a GPU when a step is planned.
struct GpuSignal {
  double clock_ratio = 1.0;  ///< f_max / f: how much longer compute-bound work takes now
  double power_w = 0;        ///< mean power over the GPU's last step
  double temp_c = 0;         ///< die temperature now
  bool throttled = false;
};

/// One MoE layer's physical slots: slots [g*S/N, (g+1)*S/N) live on GPU g.
struct LayerSlots {
  std::vector<int> phy2log;
  std::vector<std::vector<int>> slots_of;  ///< logical expert -> its slots
  int slots_per_gpu = 1;
  [[nodiscard]] int gpu_of(int slot) const { return slot / slots_per_gpu; }
};

/// What a policy did in one layer (summed over a step by the planner).
struct PolicyCounters {
  double assignments = 0;  ///< token-expert assignments routed (tokens x top_k)
  double computed = 0;     ///< ... that reached an expert replica
  double dropped = 0;      ///< ... dropped (capacity)
  double rerouted = 0;     ///< ... sent to another replica than the placement's default rule
  double changed = 0;      ///< ... whose expert differs from the gate's own choice
};

struct PolicyContext {
  int num_experts = 0;
  int top_k = 0;
  int num_moe_layers = 1;
  int gpus = 1;           ///< EP GPUs of the instance
  int gpus_per_node = 1;
  std::uint64_t seed = 0;
  double power_budget_w = 0;  ///< per GPU (nectar's power pressure)
};

class RoutingPolicy {
 public:
  RoutingPolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg, const char* stream);
  virtual ~RoutingPolicy() = default;

  /// GPU state at the start of a step.
  virtual void begin_step(std::span<const GpuSignal> gpus);
  /// Whether the policy changes which experts tokens select.
  [[nodiscard]] virtual bool changes_selection() const { return false; }
  /// Token level: may change `experts` (tokens x top_k), counting changes in c.changed.
  virtual void reselect(int /*layer*/, std::span<std::int32_t> /*experts*/, PolicyCounters& /*c*/) {}
  /// Count level: may change counts[g * E + e] (every row keeps its sum).
  virtual void reselect_counts(int /*layer*/, std::span<const TokenGroup> /*groups*/, std::span<double> /*counts*/,
                               PolicyCounters& /*c*/) {}
  /// Token level: slot of every assignment (-1: dropped). token_src[t] is the GPU of token t.
  virtual void assign(int layer, const LayerSlots& slots, std::span<const int> token_src, std::span<const std::int32_t> experts,
                      std::span<int> slot_of, PolicyCounters& c);
  /// Count level: slot_counts[g * S + s] = assignments of group g to slot s; the rest are dropped.
  virtual void assign_counts(int layer, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                             std::span<double> slot_counts, PolicyCounters& c);
  /// The layer's loads: per logical expert before the policy changed the selection (the gate's own
  /// choice), after it, and per GPU after the replica choice.
  virtual void observe_layer(int /*layer*/, std::span<const double> /*gate_load*/, std::span<const double> /*expert_load*/,
                             std::span<const double> /*gpu_load*/) {}

 protected:
  /// The placement's default rule (replica_selection) for one token-level assignment.
  int default_slot(const std::vector<int>& slots, std::size_t token, int src, const LayerSlots& layer);
  /// Default rule at count level: splits `count` assignments of group source `src` over `slots`.
  void default_split(const std::vector<int>& slots, int src, double count, const LayerSlots& layer, std::span<double> out_row);

  PolicyContext ctx_;
  RoutingPolicyConfig cfg_;
  RngStream rng_;
  std::vector<GpuSignal> gpus_;
  std::vector<int> round_robin_;  ///< even: next replica index per expert in the current layer

 private:
  enum class ReplicaRule { position, random, nearest, even };
  ReplicaRule rule_ = ReplicaRule::position;  ///< cfg_.replica_selection, parsed once
  std::vector<int> local_;                    ///< default_split's scratch: replicas on the source's node
  std::vector<int> single_slot_;              ///< assign_counts: an expert's slot when it has one, else -1
};

/// Pressure terms of seed-style dynamic rerouting: thermal max(0, (T-60)/20), power
/// max(0, (P - 0.7 B) / (0.3 B)).
[[nodiscard]] double thermal_pressure(double temp_c);
[[nodiscard]] double power_pressure(double power_w, double budget_w);
/// Imbalance score of a distribution: KL(uniform || p) / E + the unbiased variance of p (the
/// reference's kl_div(log p, u, 'batchmean') + var(p)).
[[nodiscard]] double nectar_imbalance_score(std::span<const double> p);
/// Linear-trend prediction from a window of distributions: last + (last - first) / (n - 1),
/// clipped at 0 and renormalised.
[[nodiscard]] std::vector<double> nectar_predict(const std::vector<std::vector<double>>& recent);
/// bias_e = strength x (target_e - current_e), target uniform when pressure > 0.5, else
/// 0.7 predicted + 0.3 uniform.
[[nodiscard]] std::vector<double> nectar_bias(std::span<const double> current, std::span<const double> predicted, double pressure,
                                              double strength);

/// The maximal coupling move (see the header comment): per expert the probability that an
/// assignment leaves it, and the distribution its replacement is drawn from.
struct GateBiasCoupling {
  std::vector<double> leave;       ///< max(0, 1 - p'_e / p_e)
  std::vector<double> arrive_cdf;  ///< cumulative (p' - p)+, normalised; empty when p' == p
};
[[nodiscard]] GateBiasCoupling gate_bias_coupling(std::span<const double> p, std::span<const double> bias);

using PolicyFactory = std::function<std::unique_ptr<RoutingPolicy>(const PolicyContext&, const RoutingPolicyConfig&)>;
[[nodiscard]] const Registry<PolicyFactory>& routing_policies();

}  // namespace moesim
