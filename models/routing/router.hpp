#pragma once
// Token-to-expert routers: for every token of a step and every MoE layer, the top-k logical
// experts the model's gate would pick, in the order of the gate's preference, with their gate
// weights (renormalised over the top k). The workload selects one by `workload.routing.model`.
//
//   uniform         : top_k distinct experts uniformly at random; the balanced reference.
//   zipf            : expert popularity ∝ 1 / rank^s over a fixed per-layer ranking.
//   hot_experts     : a named hot set holds `hot_share` of the popularity mass.
//   domain_affinity : each (layer, domain) has its own popularity (models/routing/affinity.hpp);
//                     a token samples its top-k from its request's domain, repeats its
//                     predecessor's first choice with probability `locality`, follows the
//                     previous layer's first choice with probability `layer_correlation`,
//                     respects group-limited routing (DeepSeek-V3), and may drift over time.
//   trace           : replays per-step per-layer expert counts from gate logs, or per-layer
//                     distributions from a profiler's moe_expert_activations.csv.
// Top-k is drawn without replacement in proportion to popularity (Plackett-Luce, the
// distribution of the top k of Gumbel-perturbed log-popularities).
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "models/common/registry.hpp"
#include "models/common/rng.hpp"
#include "models/llm/model_spec.hpp"
#include "models/workload/request_generator.hpp"

namespace moesim {

/// What a router may know about a token.
struct TokenInfo {
  std::int64_t request_id = 0;
  int position = 0;  ///< index of the token in its sequence
  int domain = -1;   ///< the request's domain; -1 when unknown
};

/// Tokens of a step that share a source GPU and a domain, for count-level routing.
struct TokenGroup {
  int source = 0;  ///< GPU the tokens' hidden states live on
  int domain = -1;
  int tokens = 0;
};

class TokenRouter {
 public:
  virtual ~TokenRouter() = default;
  /// Called once before each step's layers are routed.
  virtual void begin_step(double /*now_s*/) {}
  /// Writes tokens.size() * top_k expert ids (distinct within a token, most preferred first) and,
  /// when `weights` is not empty, their gate weights (summing to 1 per token).
  virtual void route(int moe_layer, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts,
                     std::span<float> weights) = 0;
  /// Count-level routing, for speed at scale: counts[g * num_experts + e] = tokens of group g
  /// that picked expert e; each row sums to tokens * top_k. Routers with a per-token model draw
  /// the counts directly (see sample_counts); the default expands groups into tokens.
  /// This is add_counts for each group into its own zeroed row.
  void route_counts(int moe_layer, std::span<const TokenGroup> groups, std::span<double> counts);
  /// Adds one group's counts to `row` (num_experts entries): callers that only need a sum over
  /// groups (per source GPU) pass the same row for several groups, with the same draws as
  /// route_counts.
  virtual void add_counts(int moe_layer, const TokenGroup& group, std::span<double> row);
  /// The request finished: drop what the router remembers about it.
  virtual void forget(std::int64_t /*request_id*/) {}
  /// Whether a token's domain changes its experts (count level groups tokens by domain only then).
  [[nodiscard]] virtual bool uses_domains() const { return false; }

 protected:
  int num_experts_ = 0;
  int top_k_ = 0;
};

struct RouterContext {
  int num_experts = 0;
  int top_k = 0;
  int num_moe_layers = 1;
  int n_group = 0;
  int topk_group = 0;
  GateScoring scoring = GateScoring::softmax;
  std::uint64_t seed = 0;       ///< scenario seed: sampling streams
  std::string model_name;       ///< identity of the model's expert affinities (fixed per model)
  int num_domains = 0;
  RoutingModelParams params;    ///< specialization and locality resolved (>= 0)
};

/// The context of a model's router; `params` must have specialization and locality resolved.
[[nodiscard]] RouterContext router_context(const ModelSpec& model, const RoutingModelParams& params, std::uint64_t seed,
                                           int num_domains);

using RouterFactory = std::function<std::unique_ptr<TokenRouter>(const RouterContext&)>;
[[nodiscard]] const Registry<RouterFactory>& token_routers();

/// Draws k distinct values from [0, n) into out (k <= n), uniformly.
void sample_distinct(RngStream& rng, int n, std::span<std::int32_t> out);

}  // namespace moesim
