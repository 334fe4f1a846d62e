#include "models/routing/affinity.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace moesim {

AliasTable::AliasTable(std::span<const double> weights) {
  // Vose's method. Scratch reused across tables (built per (layer, domain) at every drift
  // update): the same stacks in the same order as fresh vectors would hold.
  const auto n = weights.size();
  thread_local std::vector<double> prob, scaled;
  thread_local std::vector<int> alias, small, large;
  prob.assign(n, 0.0);
  alias.assign(n, 0);
  scaled.resize(n);
  small.clear();
  large.clear();
  small.reserve(n);
  large.reserve(n);
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    scaled[i] = weights[i] * static_cast<double>(n) / total;
    (scaled[i] < 1.0 ? small : large).push_back(static_cast<int>(i));
  }
  while (!small.empty() && !large.empty()) {
    const int s = small.back();
    small.pop_back();
    const int l = large.back();
    prob[static_cast<std::size_t>(s)] = scaled[static_cast<std::size_t>(s)];
    alias[static_cast<std::size_t>(s)] = l;
    scaled[static_cast<std::size_t>(l)] -= 1.0 - scaled[static_cast<std::size_t>(s)];
    if (scaled[static_cast<std::size_t>(l)] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  for (int i : large) prob[static_cast<std::size_t>(i)] = 1.0;
  for (int i : small) prob[static_cast<std::size_t>(i)] = 1.0;
  cells_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = std::ceil(std::clamp(prob[i], 0.0, 1.0) * 0x1.0p32);
    const bool full = t >= 0x1.0p32;  // always kept: its alias is itself
    const auto threshold = full ? 0xffffffffULL : static_cast<std::uint64_t>(t);
    cells_[i] = threshold << 32 | static_cast<std::uint32_t>(full ? static_cast<int>(i) : alias[i]);
  }
}

std::vector<double> softmax(std::span<const double> log_p) {
  const double m = *std::max_element(log_p.begin(), log_p.end());
  std::vector<double> w(log_p.size());
  double total = 0;
  for (std::size_t i = 0; i < w.size(); ++i) total += w[i] = std::exp(log_p[i] - m);
  for (double& x : w) x /= total;
  return w;
}

std::vector<double> affinity_log_popularity(const std::string& model_name, int moe_layer, int domain, int num_experts,
                                            double specialization) {
  RngStream rng(0, "affinity/" + model_name + "/layer" + std::to_string(moe_layer) + "/domain" + std::to_string(domain));
  std::vector<double> z(static_cast<std::size_t>(num_experts));
  for (double& x : z) x = specialization * rng.standard_normal();
  return z;
}

ExpertDistribution::ExpertDistribution(std::vector<double> weights, int n_group, int topk_group)
    : n_group_(n_group), topk_group_(topk_group) {
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  p_.resize(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i) p_[i] = weights[i] / total;
  alias_ = AliasTable(p_);
  max_p_ = p_.empty() ? 0.0 : *std::max_element(p_.begin(), p_.end());
}

namespace {
bool contains(std::span<const std::int32_t> xs, std::size_t n, std::int32_t v) {
  return std::find(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(n), v) != xs.begin() + static_cast<std::ptrdiff_t>(n);
}
}  // namespace

void ExpertDistribution::sample_top_k(RngStream& rng, std::span<std::int32_t> out, int forced_first, int banned_first) const {
  if (n_group_ > 0) sample_grouped(rng, out, forced_first, banned_first);
  else sample_top_k_ungrouped(rng, out, forced_first, banned_first);
}

template <class Taken>
std::int32_t ExpertDistribution::pick(RngStream& rng, double blocked_mass, const Taken& taken) const {
  std::int32_t e = -1;
  if (blocked_mass < 0.9) {
    // Rejection: expected tries 1 / (1 - blocked) <= 10.
    for (int tries = 0; tries < 64 && e < 0; ++tries) {
      const auto c = static_cast<std::int32_t>(alias_.sample(rng));
      if (!taken(static_cast<std::size_t>(c))) e = c;
    }
  }
  if (e < 0) {
    // Exact draw over what is left.
    double remaining = 0;
    for (std::size_t i = 0; i < p_.size(); ++i)
      if (!taken(i)) remaining += p_[i];
    double u = rng.uniform01() * remaining;
    for (std::size_t i = 0; i < p_.size(); ++i) {
      if (taken(i)) continue;
      e = static_cast<std::int32_t>(i);
      u -= p_[i];
      if (u < 0) break;
    }
  }
  return e;
}

void ExpertDistribution::sample_top_k_ungrouped(RngStream& rng, std::span<std::int32_t> out, int forced_first, int banned_first) const {
  const std::size_t k = out.size();
  std::size_t filled = 0;
  if (forced_first >= 0) out[filled++] = forced_first;
  double excluded_mass = filled > 0 ? p_[static_cast<std::size_t>(out[0])] : 0.0;
  for (; filled < k; ++filled) {
    const bool ban = filled == 0 && banned_first >= 0;
    const double blocked = excluded_mass + (ban ? p_[static_cast<std::size_t>(banned_first)] : 0.0);
    const std::int32_t e = pick(rng, blocked, [&](std::size_t c) {
      return contains(out, filled, static_cast<std::int32_t>(c)) || (ban && static_cast<int>(c) == banned_first);
    });
    out[filled] = e;
    excluded_mass += p_[static_cast<std::size_t>(e)];
  }
}

void ExpertDistribution::add_top_k_counts(RngStream& rng, int n, int k, std::span<double> counts) const {
  // sample_top_k_ungrouped's draws with the chosen set as a bitmap. Experts beyond the bitmap
  // (more than 1024) take the general path.
  constexpr std::size_t kBits = 1024;
  if (p_.size() > kBits || k > 64) {
    std::int32_t top[64];
    const std::span<std::int32_t> out(top, static_cast<std::size_t>(std::min(k, 64)));
    for (int t = 0; t < n; ++t) {
      sample_top_k_ungrouped(rng, out, -1, -1);
      for (auto e : out) counts[static_cast<std::size_t>(e)] += 1.0;
    }
    return;
  }
  std::uint64_t chosen[kBits / 64];
  std::int32_t top[64];
  const auto taken = [&](std::size_t e) { return ((chosen[e >> 6] >> (e & 63)) & 1u) != 0; };
  const std::size_t words = (p_.size() + 63) / 64;
  // While the k - 1 first picks cannot exclude 0.9 of the mass (the usual case), every pick is by
  // rejection and p is not read: only the alias table is touched.
  const bool always_reject = static_cast<double>(k - 1) * max_p_ < 0.9 - 1e-12;
  if (static_cast<std::size_t>(n) * static_cast<std::size_t>(k) * 8 >= p_.size()) alias_.prefetch();  // worth it for runs of draws
  for (int t = 0; t < n; ++t) {
    std::fill(chosen, chosen + words, 0);
    double excluded_mass = 0;
    for (int filled = 0; filled < k; ++filled) {
      const std::int32_t e = pick(rng, excluded_mass, taken);
      top[filled] = e;
      chosen[static_cast<std::size_t>(e) >> 6] |= 1ULL << (static_cast<std::size_t>(e) & 63);
      if (!always_reject) excluded_mass += p_[static_cast<std::size_t>(e)];
    }
    for (int j = 0; j < k; ++j) counts[static_cast<std::size_t>(top[j])] += 1.0;
  }
}

void ExpertDistribution::sample_grouped(RngStream& rng, std::span<std::int32_t> out, int forced_first, int banned_first) const {
  const int n = static_cast<int>(p_.size());
  const int per_group = n / n_group_;
  // Gumbel top-k as an exponential race: expert e's score log p_e - log(-log u_e) ranks the experts
  // as p_e / E_e with E_e = -log u_e does (exp of it), so one logarithm per expert suffices, and a
  // group's sum of its two best log-scores ranks as the product of its two best ratios. Buffers
  // are reused across calls (this runs per token and layer).
  thread_local std::vector<double> score;
  thread_local std::vector<std::pair<double, int>> groups, candidates;
  score.resize(static_cast<std::size_t>(n));
  for (int e = 0; e < n; ++e) {
    double u = rng.uniform01();
    while (u <= 0.0) u = rng.uniform01();
    score[static_cast<std::size_t>(e)] = p_[static_cast<std::size_t>(e)] / -std::log(u);
  }
  const double inf = std::numeric_limits<double>::infinity();
  if (forced_first >= 0) score[static_cast<std::size_t>(forced_first)] = inf;
  // Group score: the product of the two best expert ratios in the group (the sum of log-scores).
  groups.clear();
  for (int g = 0; g < n_group_; ++g) {
    double best = -inf, second = -inf;
    for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
      const double s = score[static_cast<std::size_t>(e)];
      if (s > best) {
        second = best;
        best = s;
      } else if (s > second) {
        second = s;
      }
    }
    groups.push_back({best == inf ? inf : best * std::max(second, 0.0), g});
  }
  std::partial_sort(groups.begin(), groups.begin() + topk_group_, groups.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  candidates.clear();
  for (int gi = 0; gi < topk_group_; ++gi)
    for (int e = groups[static_cast<std::size_t>(gi)].second * per_group; e < (groups[static_cast<std::size_t>(gi)].second + 1) * per_group; ++e)
      candidates.push_back({score[static_cast<std::size_t>(e)], e});
  const auto k = static_cast<std::ptrdiff_t>(out.size());
  std::partial_sort(candidates.begin(), candidates.begin() + std::min<std::ptrdiff_t>(k + 1, static_cast<std::ptrdiff_t>(candidates.size())),
                    candidates.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  for (std::ptrdiff_t i = 0; i < k; ++i) out[static_cast<std::size_t>(i)] = candidates[static_cast<std::size_t>(i)].second;
  if (banned_first >= 0 && out[0] == banned_first) {
    // The first choice may not repeat: the runner-up leads. With k > 1 the banned expert stays in
    // the set (it still ranks within the k best), only the order changes.
    if (k > 1) std::rotate(out.begin(), out.begin() + 1, out.end());
    else if (candidates.size() > 1) out[0] = candidates[1].second;
  }
}

void ExpertDistribution::gate_weights(std::span<const std::int32_t> chosen, std::span<float> out, GateScoring scoring) const {
  const double experts = static_cast<double>(p_.size());
  auto score = [&](std::int32_t e) {
    const double p = p_[static_cast<std::size_t>(e)];
    return scoring == GateScoring::sigmoid ? experts * p / (1.0 + experts * p) : p;
  };
  double total = 0;
  for (auto e : chosen) total += score(e);
  for (std::size_t i = 0; i < chosen.size(); ++i)
    out[i] = total > 0 ? static_cast<float>(score(chosen[i]) / total) : 1.0f / static_cast<float>(chosen.size());
}

std::vector<double> ExpertDistribution::inclusion_probabilities(int top_k, int samples, std::uint64_t stream_seed) const {
  const std::size_t n = p_.size();
  if (n_group_ == 0 && top_k <= 2) {
    // Exact: P(e in top 1) = p_e; P(e in top 2) = p_e + Σ_{j≠e} p_j p_e / (1 - p_j).
    std::vector<double> inc(p_);
    if (top_k == 2) {
      double s = 0;
      for (double pj : p_) s += pj < 1.0 ? pj / (1.0 - pj) : 0.0;
      for (std::size_t e = 0; e < n; ++e) {
        const double self = p_[e] < 1.0 ? p_[e] / (1.0 - p_[e]) : 0.0;
        inc[e] = p_[e] + p_[e] * (s - self);
      }
    }
    return inc;
  }
  if (n_group_ == 0 || samples <= 0) {
    // Successive sampling (Rosén 1997): P(e in top k) ≈ 1 - exp(-λ p_e) with λ such that the
    // probabilities sum to k; accurate for many experts, which is when this branch runs. With
    // samples <= 0 it also serves group-limited routing, ignoring the group limit.
    // f(λ) = Σ(1 - e^{-λ p_e}) - k is increasing and concave, so Newton's method from λ = 0 climbs
    // to the root from below without overshooting (a few iterations, not a bisection's hundred).
    double hi = 0;
    for (int it = 0; it < 100; ++it) {
      double f = -static_cast<double>(top_k), slope = 0;
      for (double pe : p_) {
        const double x = std::exp(-hi * pe);
        f += 1.0 - x;
        slope += pe * x;
      }
      if (!(slope > 0) || f >= 0) break;
      const double step = -f / slope;
      hi += step;
      if (step <= 1e-15 * hi) break;
    }
    std::vector<double> inc(n);
    for (std::size_t e = 0; e < n; ++e) inc[e] = 1.0 - std::exp(-hi * p_[e]);
    return inc;
  }
  RngStream rng(stream_seed, "affinity/inclusion");
  std::vector<double> inc(p_.size(), 0.0);
  std::vector<std::int32_t> pick(static_cast<std::size_t>(top_k));
  for (int s = 0; s < samples; ++s) {
    sample_top_k(rng, pick, -1, -1);
    for (auto e : pick) inc[static_cast<std::size_t>(e)] += 1.0;
  }
  for (double& x : inc) x /= samples;
  return inc;
}

int sample_binomial(RngStream& rng, int n, double p) {
  if (n <= 0 || p <= 0.0) return 0;
  if (p >= 1.0) return n;
  const bool flip = p > 0.5;
  const double q = flip ? 1.0 - p : p;
  const double mean = n * q;
  int x = 0;
  if (mean < 30.0) {
    // Inversion by sequential search over the pmf.
    const double ratio = q / (1.0 - q);
    double pmf = std::pow(1.0 - q, n);
    double u = rng.uniform01();
    while (u > pmf && x < n) {
      u -= pmf;
      pmf *= ratio * (n - x) / (x + 1.0);
      ++x;
    }
  } else {
    const double sd = std::sqrt(mean * (1.0 - q));
    x = static_cast<int>(std::lround(mean + sd * rng.standard_normal()));
    x = std::clamp(x, 0, n);
  }
  return flip ? n - x : x;
}

void sample_counts(RngStream& rng, std::span<const double> inclusion, int n, int k, std::span<double> out) {
  const std::size_t E = inclusion.size();
  std::int64_t total = 0;
  for (std::size_t e = 0; e < E; ++e) {
    out[e] = sample_binomial(rng, n, std::min(1.0, inclusion[e]));
    total += static_cast<std::int64_t>(out[e]);
  }
  const std::int64_t target = static_cast<std::int64_t>(n) * k;
  // Move the difference in one systematic pass, in proportion to q among the experts that can
  // take (or give) a unit; repeat in the rare case bounds clipped some units.
  for (int pass = 0; total != target && pass < 64; ++pass) {
    const bool add = total < target;
    const double units = static_cast<double>(add ? target - total : total - target);
    double weight = 0;
    for (std::size_t e = 0; e < E; ++e)
      if (add ? out[e] < n : out[e] > 0) weight += inclusion[e];
    if (weight <= 0) break;
    double acc = rng.uniform01();
    for (std::size_t e = 0; e < E; ++e) {
      if (!(add ? out[e] < n : out[e] > 0)) continue;
      const double next = acc + units * inclusion[e] / weight;
      double moved = std::floor(next) - std::floor(acc);
      acc = next;
      moved = add ? std::min(moved, n - out[e]) : std::min(moved, out[e]);
      out[e] += add ? moved : -moved;
      total += static_cast<std::int64_t>(add ? moved : -moved);
    }
  }
}

void add_group_counts(RngStream& rng, const ExpertDistribution& dist, int n, int k, std::span<double> out,
                      std::vector<double>& inclusion, int inclusion_samples, std::uint64_t inclusion_seed) {
  const auto E = dist.probabilities().size();
  if (count_draw_by_token(n, k, static_cast<int>(E))) {
    dist.add_top_k_counts(rng, n, k, out);
    return;
  }
  if (inclusion.empty()) inclusion = dist.inclusion_probabilities(k, inclusion_samples, inclusion_seed);
  thread_local std::vector<double> drawn;
  drawn.resize(E);
  sample_counts(rng, inclusion, n, k, drawn);
  for (std::size_t e = 0; e < E; ++e) out[e] += drawn[e];
}

}  // namespace moesim
