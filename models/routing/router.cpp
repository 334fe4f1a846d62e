#include "models/routing/router.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "models/routing/affinity.hpp"
#include "models/routing/trace.hpp"

namespace moesim {

void sample_distinct(RngStream& rng, int n, std::span<std::int32_t> out) {
  const int k = static_cast<int>(out.size());
  if (2 * k <= n) {
    // Rejection: with k <= n/2 each draw is accepted with probability >= 1/2.
    for (int i = 0; i < k; ++i) {
      std::int32_t e;
      do {
        e = static_cast<std::int32_t>(rng.uniform_index(static_cast<std::uint64_t>(n)));
      } while (std::find(out.begin(), out.begin() + i, e) != out.begin() + i);
      out[i] = e;
    }
    return;
  }
  // Partial Fisher-Yates for dense picks.
  std::vector<std::int32_t> pool(static_cast<std::size_t>(n));
  std::iota(pool.begin(), pool.end(), 0);
  for (int i = 0; i < k; ++i) {
    const auto j = i + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(n - i)));
    std::swap(pool[i], pool[j]);
    out[i] = pool[i];
  }
}

RouterContext router_context(const ModelSpec& model, const RoutingModelParams& params, std::uint64_t seed, int num_domains) {
  RouterContext c;
  c.num_experts = model.num_experts;
  c.top_k = model.top_k;
  c.num_moe_layers = model.num_moe_layers();
  c.n_group = model.n_group;
  c.topk_group = model.topk_group;
  c.scoring = model.scoring_func;
  c.seed = seed;
  c.model_name = model.name;
  c.num_domains = num_domains;
  c.params = params;
  return c;
}

void TokenRouter::route_counts(int moe_layer, std::span<const TokenGroup> groups, std::span<double> counts) {
  const auto E = static_cast<std::size_t>(num_experts_);
  std::fill(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(groups.size() * E), 0.0);
  for (std::size_t g = 0; g < groups.size(); ++g) add_counts(moe_layer, groups[g], counts.subspan(g * E, E));
}

void TokenRouter::add_counts(int moe_layer, const TokenGroup& group, std::span<double> row) {
  // Expand the group into anonymous tokens (no sequence identity, so no locality).
  const auto k = static_cast<std::size_t>(top_k_);
  std::vector<TokenInfo> tokens(static_cast<std::size_t>(group.tokens), TokenInfo{-1, 0, group.domain});
  std::vector<std::int32_t> experts(tokens.size() * k, 0);
  route(moe_layer, tokens, experts, {});
  for (auto e : experts) row[static_cast<std::size_t>(e)] += 1.0;
}

namespace {

/// Count-level routing uses closed-form inclusion probabilities (exact for top-1/2, Rosén's
/// approximation above); under group-limited routing it ignores the group limit, because a Monte
/// Carlo estimate accurate enough for 256 experts costs seconds per (layer, domain). Token-level
/// routing respects the group limit exactly.
constexpr int kInclusionSamples = 0;

/// Drift advances popularity at most this often (simulated seconds): a random walk sampled on a
/// coarser grid has the same increments' variance, and a count-level redraw of E inclusion
/// probabilities per (layer, domain) each step would dominate large runs.
constexpr double kDriftUpdateS = 0.1;

class UniformRouter final : public TokenRouter {
 public:
  explicit UniformRouter(const RouterContext& ctx) : ctx_(ctx), rng_(ctx.seed, "router/uniform") {
    num_experts_ = ctx.num_experts;
    top_k_ = ctx.top_k;
  }

  void add_counts(int, const TokenGroup& group, std::span<double> row) override {
    const auto E = static_cast<std::size_t>(ctx_.num_experts);
    const int n = group.tokens;
    if (static_cast<std::size_t>(n) * static_cast<std::size_t>(ctx_.top_k) > 4 * E) {
      if (q_.size() != E) q_.assign(E, static_cast<double>(ctx_.top_k) / ctx_.num_experts);
      drawn_.resize(E);
      sample_counts(rng_, q_, n, ctx_.top_k, drawn_);
      for (std::size_t e = 0; e < E; ++e) row[e] += drawn_[e];
      return;
    }
    std::int32_t pick[64];
    const std::span<std::int32_t> top(pick, static_cast<std::size_t>(ctx_.top_k));
    for (int t = 0; t < n; ++t) {
      sample_distinct(rng_, ctx_.num_experts, top);
      for (auto e : top) row[static_cast<std::size_t>(e)] += 1.0;
    }
  }

  void route(int, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts, std::span<float> weights) override {
    const auto k = static_cast<std::size_t>(ctx_.top_k);
    for (std::size_t t = 0; t < tokens.size(); ++t) sample_distinct(rng_, ctx_.num_experts, experts.subspan(t * k, k));
    std::fill(weights.begin(), weights.end(), 1.0f / static_cast<float>(k));
  }

 private:
  RouterContext ctx_;
  RngStream rng_;
  std::vector<double> q_, drawn_;  ///< inclusion k / E of every expert; one group's draw
};

/// One fixed distribution per MoE layer (zipf, hot_experts, activation profiles).
class StaticDistributionRouter final : public TokenRouter {
 public:
  StaticDistributionRouter(const RouterContext& ctx, std::vector<ExpertDistribution> per_layer, const char* stream)
      : ctx_(ctx), per_layer_(std::move(per_layer)), rng_(ctx.seed, stream), inclusion_(per_layer_.size()) {
    num_experts_ = ctx.num_experts;
    top_k_ = ctx.top_k;
  }

  void add_counts(int layer, const TokenGroup& group, std::span<double> row) override {
    const std::size_t slot = static_cast<std::size_t>(layer) % per_layer_.size();
    add_group_counts(rng_, per_layer_[slot], group.tokens, ctx_.top_k, row, inclusion_[slot], kInclusionSamples, ctx_.seed + slot);
  }

  void route(int layer, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts, std::span<float> weights) override {
    const auto k = static_cast<std::size_t>(ctx_.top_k);
    const auto& dist = per_layer_[static_cast<std::size_t>(layer) % per_layer_.size()];
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      dist.sample_top_k(rng_, experts.subspan(t * k, k), -1, -1);
      if (!weights.empty()) dist.gate_weights(experts.subspan(t * k, k), weights.subspan(t * k, k), ctx_.scoring);
    }
  }

 private:
  RouterContext ctx_;
  std::vector<ExpertDistribution> per_layer_;
  RngStream rng_;
  std::vector<std::vector<double>> inclusion_;
};

/// A per-layer ranking of the experts that is a property of the model, not of the run.
std::vector<int> model_ranking(const RouterContext& ctx, int layer) {
  RngStream rng(0, "affinity/" + ctx.model_name + "/ranking/layer" + std::to_string(layer));
  std::vector<int> order(static_cast<std::size_t>(ctx.num_experts));
  std::iota(order.begin(), order.end(), 0);
  for (int i = ctx.num_experts - 1; i > 0; --i)
    std::swap(order[static_cast<std::size_t>(i)], order[rng.uniform_index(static_cast<std::uint64_t>(i + 1))]);
  return order;
}

std::unique_ptr<TokenRouter> make_zipf(const RouterContext& ctx) {
  std::vector<ExpertDistribution> layers;
  for (int l = 0; l < ctx.num_moe_layers; ++l) {
    const auto order = model_ranking(ctx, l);
    std::vector<double> w(static_cast<std::size_t>(ctx.num_experts));
    for (int rank = 0; rank < ctx.num_experts; ++rank)
      w[static_cast<std::size_t>(order[static_cast<std::size_t>(rank)])] = 1.0 / std::pow(rank + 1.0, ctx.params.zipf_s);
    layers.emplace_back(std::move(w), ctx.n_group, ctx.topk_group);
  }
  return std::make_unique<StaticDistributionRouter>(ctx, std::move(layers), "router/zipf");
}

std::unique_ptr<TokenRouter> make_hot_experts(const RouterContext& ctx) {
  const auto& hot = ctx.params.hot_experts;
  const double cold_count = ctx.num_experts - static_cast<double>(hot.size());
  std::vector<double> w(static_cast<std::size_t>(ctx.num_experts), cold_count > 0 ? (1.0 - ctx.params.hot_share) / cold_count : 0.0);
  for (int e : hot) w[static_cast<std::size_t>(e)] = ctx.params.hot_share / static_cast<double>(hot.size());
  std::vector<ExpertDistribution> layers{ExpertDistribution(w, ctx.n_group, ctx.topk_group)};
  return std::make_unique<StaticDistributionRouter>(ctx, std::move(layers), "router/hot_experts");
}

class DomainAffinityRouter final : public TokenRouter {
 public:
  explicit DomainAffinityRouter(const RouterContext& ctx)
      : ctx_(ctx),
        rng_(ctx.seed, "router/domain_affinity"),
        domains_(static_cast<std::size_t>(std::max(1, ctx.num_domains) * ctx.num_moe_layers)) {
    num_experts_ = ctx.num_experts;
    top_k_ = ctx.top_k;
    for (int l = 0; l < ctx.num_moe_layers; ++l) layer_map_.push_back(model_ranking(ctx, l + 1000));
  }

  void add_counts(int layer, const TokenGroup& group, std::span<double> row) override {
    Slot& slot = slot_for(layer, group.domain);
    (void)distribution(layer, group.domain);
    // Inclusion probabilities are computed only when binomials need them: after a drift update
    // they cost a Newton solve over E exponentials.
    add_group_counts(rng_, slot.dist, group.tokens, ctx_.top_k, row, slot.inclusion, kInclusionSamples,
                     ctx_.seed + static_cast<std::uint64_t>(layer));
  }

  void begin_step(double now_s) override { now_s_ = now_s; }

  void route(int layer, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts, std::span<float> weights) override {
    const auto k = static_cast<std::size_t>(ctx_.top_k);
    const auto L = static_cast<std::size_t>(ctx_.num_moe_layers);
    if (layer == 0 || history_.size() != tokens.size()) {
      // The same tokens go through every layer of a step: find each one's history once.
      prev_layer_first_.assign(tokens.size(), -1);
      history_.clear();
      for (const TokenInfo& tok : tokens) {
        auto& h = last_first_[tok.request_id];
        if (h.empty()) h.assign(L, -1);
        history_.push_back(&h);
      }
    }
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const TokenInfo& tok = tokens[t];
      const ExpertDistribution& dist = distribution(layer, tok.domain);
      auto& history = *history_[t];
      const int prev = tok.position > 0 ? history[static_cast<std::size_t>(layer)] : -1;
      int forced = -1, banned = -1;
      if (prev >= 0 && ctx_.params.locality > 0) {
        if (rng_.uniform01() < ctx_.params.locality) forced = prev;
        else banned = prev;
      }
      if (forced < 0 && layer > 0 && ctx_.params.layer_correlation > 0 && prev_layer_first_[t] >= 0 &&
          rng_.uniform01() < ctx_.params.layer_correlation) {
        const int follow = layer_map_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(prev_layer_first_[t])];
        if (follow != banned) forced = follow;
      }
      auto out = experts.subspan(t * k, k);
      dist.sample_top_k(rng_, out, forced, banned);
      if (!weights.empty()) dist.gate_weights(out, weights.subspan(t * k, k), ctx_.scoring);
      history[static_cast<std::size_t>(layer)] = out[0];
      prev_layer_first_[t] = out[0];
    }
  }

  void forget(std::int64_t request_id) override { last_first_.erase(request_id); }
  [[nodiscard]] bool uses_domains() const override { return true; }

 private:
  struct Slot {
    std::vector<double> log_p;
    ExpertDistribution dist;
    std::vector<double> inclusion;  ///< count-level: P(expert in top k), cleared on drift
    double updated_s = 0;
    bool ready = false;
  };

  Slot& slot_for(int layer, int domain) {
    const int d = domain < 0 ? 0 : domain;
    return domains_[static_cast<std::size_t>(d * ctx_.num_moe_layers + layer)];
  }

  const ExpertDistribution& distribution(int layer, int domain) {
    const int d = domain < 0 ? 0 : domain;
    Slot& slot = slot_for(layer, domain);
    if (!slot.ready) {
      slot.log_p = affinity_log_popularity(ctx_.model_name, layer, d, ctx_.num_experts, ctx_.params.specialization);
      slot.dist = ExpertDistribution(softmax(slot.log_p), ctx_.n_group, ctx_.topk_group);
      slot.updated_s = now_s_;
      slot.ready = true;
    } else if (ctx_.params.drift_per_sqrt_s > 0 && now_s_ >= slot.updated_s + kDriftUpdateS) {
      // Random walk of log popularity: increments N(0, drift² · Δt), from the run's own stream.
      const double sd = ctx_.params.drift_per_sqrt_s * std::sqrt(now_s_ - slot.updated_s);
      for (double& z : slot.log_p) z += sd * rng_.standard_normal();
      slot.dist = ExpertDistribution(softmax(slot.log_p), ctx_.n_group, ctx_.topk_group);
      slot.inclusion.clear();
      slot.updated_s = now_s_;
    }
    return slot.dist;
  }

  RouterContext ctx_;
  RngStream rng_;
  std::vector<Slot> domains_;
  std::vector<std::vector<int>> layer_map_;
  std::unordered_map<std::int64_t, std::vector<int>> last_first_;
  std::vector<int> prev_layer_first_;
  std::vector<std::vector<int>*> history_;  ///< per token of the step being routed
  double now_s_ = 0;
};

/// Replays gate-log counts step by step; an activation profile becomes one distribution per layer.
class TraceRouter final : public TokenRouter {
 public:
  TraceRouter(const RouterContext& ctx, RoutingTrace trace) : ctx_(ctx), trace_(std::move(trace)) {
    num_experts_ = ctx.num_experts;
    top_k_ = ctx.top_k;
  }

  void begin_step(double) override { step_ = started_ ? step_ + 1 : 0; started_ = true; }

  void route(int layer, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts, std::span<float> weights) override {
    const auto k = static_cast<std::size_t>(ctx_.top_k);
    const auto T = tokens.size();
    const auto& counts = trace_.steps[step_ % trace_.steps.size()][static_cast<std::size_t>(layer)];
    // Scale the recorded counts to this step's T*k assignments (largest remainder, at most T per
    // expert); equal token counts replay the recorded counts exactly.
    const double recorded = std::accumulate(counts.begin(), counts.end(), 0.0);
    const auto target = static_cast<std::int64_t>(T * k);
    std::vector<std::int64_t> c(counts.size(), 0);
    std::vector<std::pair<double, std::size_t>> remainder;
    std::int64_t assigned = 0;
    for (std::size_t e = 0; e < counts.size(); ++e) {
      const double exact = recorded > 0 ? counts[e] * static_cast<double>(target) / recorded : static_cast<double>(target) / static_cast<double>(counts.size());
      c[e] = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(exact + 1e-9)), static_cast<std::int64_t>(T));
      assigned += c[e];
      remainder.push_back({exact - static_cast<double>(c[e]), e});
    }
    std::sort(remainder.begin(), remainder.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    for (std::size_t i = 0; assigned < target; i = (i + 1) % remainder.size()) {
      const std::size_t e = remainder[i].second;
      if (c[e] < static_cast<std::int64_t>(T)) {
        ++c[e];
        ++assigned;
      }
    }
    // Lay the assignments out expert by expert: position i goes to token i % T, slot i / T, so one
    // expert's (at most T) copies land on distinct tokens.
    std::size_t i = 0;
    for (std::size_t e = 0; e < c.size(); ++e)
      for (std::int64_t n = 0; n < c[e]; ++n, ++i) experts[(i % T) * k + i / T] = static_cast<std::int32_t>(e);
    std::fill(weights.begin(), weights.end(), 1.0f / static_cast<float>(k));
  }

 private:
  RouterContext ctx_;
  RoutingTrace trace_;
  std::size_t step_ = 0;
  bool started_ = false;
};

std::unique_ptr<TokenRouter> make_trace(const RouterContext& ctx) {
  RoutingTrace trace = load_routing_trace(ctx.params.trace, ctx.num_moe_layers, ctx.num_experts);
  if (trace.per_step) return std::make_unique<TraceRouter>(ctx, std::move(trace));
  std::vector<ExpertDistribution> layers;
  for (auto& row : trace.steps[0]) {
    for (double& x : row) x += 1e-9;  // an expert never seen may still be picked, very rarely
    layers.emplace_back(row, ctx.n_group, ctx.topk_group);
  }
  return std::make_unique<StaticDistributionRouter>(ctx, std::move(layers), "router/trace");
}

Registry<RouterFactory> make_router_registry() {
  Registry<RouterFactory> r("router");
  r.add("uniform", "top_k distinct experts uniformly at random per token and layer",
        [](const RouterContext& ctx) { return std::make_unique<UniformRouter>(ctx); });
  r.add("zipf", "popularity 1/rank^zipf_s over a fixed per-layer expert ranking", make_zipf);
  r.add("hot_experts", "the experts in hot_experts share hot_share of the popularity", make_hot_experts);
  r.add("domain_affinity", "per-(layer, domain) popularity with temporal locality, layer correlation and drift",
        [](const RouterContext& ctx) { return std::make_unique<DomainAffinityRouter>(ctx); });
  r.add("trace", "replay gate logs (per step) or a moe_expert_activations.csv profile (per layer)", make_trace);
  return r;
}

}  // namespace

const Registry<RouterFactory>& token_routers() {
  static const Registry<RouterFactory> registry = make_router_registry();
  return registry;
}

}  // namespace moesim
