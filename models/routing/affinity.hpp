#pragma once
// Expert popularity and top-k sampling.
//
// Popularity of expert e in MoE layer l for domain d:  p ∝ exp(σ · z[l][d][e]),  z ~ N(0, 1)
// drawn from a stream named after the model, the layer and the domain, so a model's hot experts
// are the same in every scenario and seed (they are a property of the trained gate, not of the
// run). σ (`specialization`) sets how unequal the experts are: Mixtral's near-uniform gate
// (per-expert shares 0.06–0.19 against 0.125, Mixtral paper §5) needs a small σ; DeepSeek-V3's
// domain-specialised gate a large one. Values are on the model cards.
//
// Sampling the top k without replacement in proportion to p (Plackett-Luce): the first choice
// from p, each next from p restricted to the experts not yet chosen (alias table plus rejection;
// exact). Group-limited routing (DeepSeek-V3: the k experts come from the `topk_group` best of
// `n_group` groups, a group scored by the sum of its two best experts) uses the equivalent Gumbel
// form: score_e = log p_e + Gumbel noise, groups ranked by the sum of their two best scores, the
// top k scores of the selected groups taken in order.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "models/common/rng.hpp"
#include "models/llm/model_spec.hpp"

namespace moesim {

/// Walker/Vose alias table: O(1) draws from a fixed discrete distribution.
class AliasTable {
 public:
  AliasTable() = default;
  explicit AliasTable(std::span<const double> weights);
  [[nodiscard]] int sample(RngStream& rng) const {
    const std::uint64_t r = rng.next_u64();
    const auto n = static_cast<std::uint64_t>(cells_.size());
    // High bits pick the column, the low 32 bits the coin (independent enough for n < 2^11):
    // coin = low32 / 2^32 < prob exactly when low32 < ceil(prob 2^32), the cell's threshold (a
    // full cell is its own alias, so its threshold may stop at 2^32 - 1). Both outcomes are
    // selected without a branch (the coin is a fair toss to a predictor).
    const auto column = static_cast<std::size_t>((r >> 32) * n >> 32);
    const std::uint64_t cell = cells_[column];
    const std::uint64_t keep = (r & 0xffffffffULL) < (cell >> 32);
    return static_cast<int>(keep * column + (1 - keep) * (cell & 0xffffffffULL));
  }
  /// Hints the table into cache before a run of draws.
  void prefetch() const {
    const char* p = reinterpret_cast<const char*>(cells_.data());
    for (std::size_t b = 0; b < cells_.size() * sizeof(std::uint64_t); b += 64) __builtin_prefetch(p + b);
  }
  [[nodiscard]] int size() const { return static_cast<int>(cells_.size()); }

 private:
  std::vector<std::uint64_t> cells_;  ///< per column: min(ceil(prob 2^32), 2^32 - 1) << 32 | alias
};

/// A distribution over experts with the samplers routers need.
class ExpertDistribution {
 public:
  ExpertDistribution() = default;
  ExpertDistribution(std::vector<double> weights, int n_group, int topk_group);

  [[nodiscard]] const std::vector<double>& probabilities() const { return p_; }
  /// Group-limited routing: a token's draw scores every expert (Gumbel form), O(E) per token.
  [[nodiscard]] bool group_limited() const { return n_group_ > 0; }
  /// Ordered top-k without replacement. `forced_first` >= 0 makes that expert the first choice;
  /// `banned_first` >= 0 forbids it as first choice (it may still come later).
  void sample_top_k(RngStream& rng, std::span<std::int32_t> out, int forced_first, int banned_first) const;
  /// Ordered top-k without replacement from p alone (Plackett-Luce, alias table plus rejection),
  /// ignoring any group limit: what count-level routing samples (see add_group_counts).
  void sample_top_k_ungrouped(RngStream& rng, std::span<std::int32_t> out, int forced_first, int banned_first) const;
  /// Adds to `counts` the experts of n tokens' ungrouped top-k: the same draws, from the same
  /// stream, as n calls of sample_top_k_ungrouped(rng, ·, -1, -1), without their order.
  void add_top_k_counts(RngStream& rng, int n, int k, std::span<double> counts) const;
  /// Gate weights of chosen experts, renormalised over them. The popularity p is the gate's softmax,
  /// so its logits are log(E p) up to a constant, fixed so that an expert of average popularity
  /// has logit 0: softmax scores are p, sigmoid scores sigma(log(E p)) = E p / (1 + E p).
  void gate_weights(std::span<const std::int32_t> chosen, std::span<float> out, GateScoring scoring = GateScoring::softmax) const;
  /// Probability that each expert is among a token's top k (sums to k): exact for k <= 2,
  /// Rosén's successive-sampling approximation for larger k, Monte Carlo (`samples` draws from a
  /// fixed stream) under group-limited routing, or Rosén ignoring the group limit when samples <= 0. The expected load share of expert e is
  /// inclusion[e] / k.
  [[nodiscard]] std::vector<double> inclusion_probabilities(int top_k, int samples, std::uint64_t stream_seed) const;

 private:
  void sample_grouped(RngStream& rng, std::span<std::int32_t> out, int forced_first, int banned_first) const;
  /// One Plackett-Luce pick among the experts `taken` refuses: by rejection from the alias table
  /// while less than 0.9 of the mass is blocked, else exactly over what is left.
  template <class Taken>
  [[nodiscard]] std::int32_t pick(RngStream& rng, double blocked_mass, const Taken& taken) const;

  std::vector<double> p_;
  AliasTable alias_;
  double max_p_ = 0;  ///< the largest p: bounds the mass a top-k's first picks exclude
  int n_group_ = 0;
  int topk_group_ = 0;
};

/// Count-level top-k: given each expert's inclusion probability q_e (Σ q = k) and n tokens, draws
/// per-expert counts as independent Binomial(n, q_e) — the exact marginal of token-level sampling
/// — then moves the difference to n * k in one systematic pass in proportion to q (within [0, n]).
/// Making the counts sum exactly shrinks each expert's variance by about 1 - 1/E against the token
/// level: negligible for the many-expert models count level is for. Binomials use inversion below a mean of 30 and a rounded normal approximation above.
void sample_counts(RngStream& rng, std::span<const double> inclusion, int n, int k, std::span<double> out);
[[nodiscard]] int sample_binomial(RngStream& rng, int n, double p);

/// Count level ignores the group limit (the binomials' inclusion probabilities are Rosén's, of
/// plain Plackett-Luce): a group of n tokens is cheapest drawn token by token (about k alias draws
/// each) while n * k <= 4 E, and as E binomials (each about four alias draws' cost) above.
[[nodiscard]] constexpr bool count_draw_by_token(long long n, int k, int num_experts) {
  return n * k <= 4LL * num_experts;
}
/// Relative cost of drawing a group of n tokens' counts (assignment draws), for callers choosing
/// how to group tokens.
[[nodiscard]] constexpr double count_draw_cost(long long n, int k, int num_experts) {
  return count_draw_by_token(n, k, num_experts) ? static_cast<double>(n * k) : 4.0 * num_experts;
}

/// Adds to `out` the per-expert counts of n tokens' top-k from `dist`: small groups draw every
/// token's top-k from plain Plackett-Luce (exact and cheaper than E binomials), large groups use
/// sample_counts with the inclusion probabilities, computed into `inclusion` when it is empty
/// (dist.inclusion_probabilities(k, inclusion_samples, inclusion_seed)); both ignore a group limit.
void add_group_counts(RngStream& rng, const ExpertDistribution& dist, int n, int k, std::span<double> out,
                      std::vector<double>& inclusion, int inclusion_samples, std::uint64_t inclusion_seed);

/// Log-popularity vector of (model, layer, domain) with spread σ; see the header comment.
[[nodiscard]] std::vector<double> affinity_log_popularity(const std::string& model_name, int moe_layer, int domain,
                                                          int num_experts, double specialization);
/// Weights exp(log_p) normalised to sum 1.
[[nodiscard]] std::vector<double> softmax(std::span<const double> log_p);

}  // namespace moesim
