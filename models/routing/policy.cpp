#include "models/routing/policy.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <numeric>

#include "models/routing/affinity.hpp"

namespace moesim {

// ---------------------------------------------------------------------------------------------
// Seed-style dynamic rerouting terms.

double thermal_pressure(double temp_c) { return std::max(0.0, (temp_c - 60.0) / 20.0); }

double power_pressure(double power_w, double budget_w) {
  if (budget_w <= 0) return 0.0;
  return std::max(0.0, (power_w - 0.7 * budget_w) / (0.3 * budget_w));
}

double nectar_imbalance_score(std::span<const double> p) {
  const auto n = static_cast<double>(p.size());
  if (p.size() < 2) return 0.0;
  constexpr double eps = 1e-8;
  const double u = 1.0 / n;
  double kl = 0, mean = 0;
  for (double x : p) {
    kl += u * (std::log(u) - std::log(x + eps));
    mean += x;
  }
  mean /= n;
  double var = 0;
  for (double x : p) var += (x - mean) * (x - mean);
  return kl / n + var / (n - 1.0);
}

std::vector<double> nectar_predict(const std::vector<std::vector<double>>& recent) {
  if (recent.empty()) return {};
  const auto& last = recent.back();
  std::vector<double> out(last);
  if (recent.size() >= 2) {
    const double steps = static_cast<double>(recent.size() - 1);
    for (std::size_t e = 0; e < out.size(); ++e) out[e] = last[e] + (last[e] - recent.front()[e]) / steps;
  }
  double sum = 0;
  for (double& x : out) sum += (x = std::max(0.0, x));
  if (sum <= 0) std::fill(out.begin(), out.end(), 1.0 / static_cast<double>(out.size()));
  else for (double& x : out) x /= sum;
  return out;
}

std::vector<double> nectar_bias(std::span<const double> current, std::span<const double> predicted, double pressure, double strength) {
  const auto n = current.size();
  const double u = 1.0 / static_cast<double>(n);
  std::vector<double> bias(n);
  for (std::size_t e = 0; e < n; ++e) {
    const double target = pressure > 0.5 ? u : 0.7 * predicted[e] + 0.3 * u;
    bias[e] = strength * (target - current[e]);
  }
  return bias;
}

GateBiasCoupling gate_bias_coupling(std::span<const double> p, std::span<const double> bias) {
  const std::size_t n = p.size();
  GateBiasCoupling c;
  c.leave.assign(n, 0.0);
  std::vector<double> q(n);
  double z = 0;
  for (std::size_t e = 0; e < n; ++e) z += (q[e] = p[e] * std::exp(bias[e]));
  if (z <= 0) return c;
  std::vector<double> excess(n, 0.0);
  double total = 0;
  for (std::size_t e = 0; e < n; ++e) {
    q[e] /= z;
    if (p[e] > 0 && q[e] < p[e]) c.leave[e] = 1.0 - q[e] / p[e];
    excess[e] = std::max(0.0, q[e] - p[e]);
    total += excess[e];
  }
  if (total <= 1e-15) {
    std::fill(c.leave.begin(), c.leave.end(), 0.0);
    return c;
  }
  c.arrive_cdf.resize(n);
  double run = 0;
  for (std::size_t e = 0; e < n; ++e) c.arrive_cdf[e] = (run += excess[e] / total);
  c.arrive_cdf.back() = 1.0;
  return c;
}

namespace {

int draw_cdf(RngStream& rng, const std::vector<double>& cdf) {
  const double u = rng.uniform01();
  return static_cast<int>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
}

/// Token level: moves assignments by the coupling; a replacement never duplicates a token's expert.
void apply_coupling(RngStream& rng, const GateBiasCoupling& cpl, int k, std::span<std::int32_t> experts, PolicyCounters& c) {
  if (cpl.arrive_cdf.empty()) return;
  const auto K = static_cast<std::size_t>(k);
  const std::size_t E = cpl.leave.size();
  for (std::size_t t = 0; t * K < experts.size(); ++t) {
    auto row = experts.subspan(t * K, K);
    for (std::size_t j = 0; j < K; ++j) {
      const double leave = cpl.leave[static_cast<std::size_t>(row[j])];
      if (leave <= 0 || rng.uniform01() >= leave) continue;
      for (int tries = 0; tries < 8; ++tries) {
        const int e = std::min(draw_cdf(rng, cpl.arrive_cdf), static_cast<int>(E) - 1);
        if (std::find(row.begin(), row.end(), e) != row.end()) continue;
        row[j] = e;
        c.changed += 1;
        break;
      }
    }
  }
}

/// Count level: binomial departures, multinomial arrivals, an expert holding at most the group's tokens.
void apply_coupling_counts(RngStream& rng, const GateBiasCoupling& cpl, std::span<const TokenGroup> groups, std::span<double> counts,
                           PolicyCounters& c) {
  if (cpl.arrive_cdf.empty()) return;
  const std::size_t E = cpl.leave.size();
  std::vector<double> arrive(E);
  for (std::size_t e = 0; e < E; ++e) arrive[e] = cpl.arrive_cdf[e] - (e > 0 ? cpl.arrive_cdf[e - 1] : 0.0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    auto row = counts.subspan(g * E, E);
    const double cap = groups[g].tokens;
    std::vector<double> left(E, 0.0);
    double moved = 0;
    for (std::size_t e = 0; e < E; ++e) {
      if (cpl.leave[e] <= 0 || row[e] <= 0) continue;
      const double m = sample_binomial(rng, static_cast<int>(row[e]), cpl.leave[e]);
      row[e] -= m;
      left[e] = m;
      moved += m;
    }
    // Multinomial over the arrival distribution by sequential binomials.
    double rest = moved, mass = 1.0;
    for (std::size_t e = 0; e < E && rest > 0; ++e) {
      if (arrive[e] <= 0) continue;
      const double n = mass <= arrive[e] ? rest : sample_binomial(rng, static_cast<int>(rest), std::min(1.0, arrive[e] / mass));
      mass -= arrive[e];
      const double take = std::max(0.0, std::min(n, cap - row[e]));
      row[e] += take;
      rest -= take;
      c.changed += take;
    }
    // What found no room returns to the experts it left.
    for (std::size_t e = 0; e < E && rest > 0; ++e) {
      const double back = std::min(left[e], rest);
      row[e] += back;
      rest -= back;
    }
  }
}

/// Continuous water-filling: adds `count` units over candidate GPUs to minimise max(w_g load_g -
/// offset_g), then rounds to integers by largest remainder. Returns units per candidate.
std::vector<double> water_fill(double count, const std::vector<int>& gpus, std::span<const double> load, std::span<const double> weight,
                               std::span<const double> offset) {
  const std::size_t m = gpus.size();
  std::vector<double> x(m, 0.0);
  if (m == 0 || count <= 0) return x;
  std::vector<std::size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  auto level = [&](std::size_t i) {
    const auto g = static_cast<std::size_t>(gpus[i]);
    return weight[g] * load[g] - offset[g];
  };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return level(a) < level(b); });
  double sum_h = 0, sum_inv = 0, lambda = 0;
  std::size_t active = 0;
  for (; active < m; ++active) {
    const std::size_t i = order[active];
    const double w = weight[static_cast<std::size_t>(gpus[i])];
    sum_h += level(i) / w;
    sum_inv += 1.0 / w;
    lambda = (count + sum_h) / sum_inv;
    if (active + 1 == m || lambda <= level(order[active + 1])) {
      ++active;
      break;
    }
  }
  double floors = 0;
  std::vector<std::pair<double, std::size_t>> rem;
  for (std::size_t a = 0; a < active; ++a) {
    const std::size_t i = order[a];
    const double exact = std::max(0.0, (lambda - level(i)) / weight[static_cast<std::size_t>(gpus[i])]);
    x[i] = std::floor(exact);
    floors += x[i];
    rem.push_back({exact - x[i], i});
  }
  std::stable_sort(rem.begin(), rem.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t r = 0; floors < count && !rem.empty(); r = (r + 1) % rem.size()) {
    x[rem[r].second] += 1.0;
    floors += 1.0;
  }
  return x;
}

/// Per-layer window of normalised distributions with a running mean.
class DistributionWindow {
 public:
  void push(std::span<const double> load, std::size_t capacity) {
    const double total = std::accumulate(load.begin(), load.end(), 0.0);
    if (total <= 0) return;
    std::vector<double> p(load.size());
    for (std::size_t e = 0; e < p.size(); ++e) p[e] = load[e] / total;
    if (sum_.empty()) sum_.assign(p.size(), 0.0);
    for (std::size_t e = 0; e < p.size(); ++e) sum_[e] += p[e];
    window_.push_back(std::move(p));
    while (window_.size() > capacity) {
      for (std::size_t e = 0; e < sum_.size(); ++e) sum_[e] -= window_.front()[e];
      window_.pop_front();
    }
  }
  [[nodiscard]] bool empty() const { return window_.empty(); }
  [[nodiscard]] const std::vector<double>& last() const { return window_.back(); }
  [[nodiscard]] std::vector<double> mean() const {
    std::vector<double> m(sum_);
    for (double& x : m) x = std::max(0.0, x / static_cast<double>(window_.size()));
    return m;
  }
  [[nodiscard]] std::vector<std::vector<double>> recent(std::size_t n) const {
    const std::size_t from = window_.size() > n ? window_.size() - n : 0;
    return {window_.begin() + static_cast<std::ptrdiff_t>(from), window_.end()};
  }

 private:
  std::deque<std::vector<double>> window_;
  std::vector<double> sum_;
};

/// Per-GPU load share of the default rule vs the chosen assignment (token level), for the
/// never-worse guarantee of least_loaded.
double weighted_max(std::span<const double> load, std::span<const double> weight) {
  double m = 0;
  for (std::size_t g = 0; g < load.size(); ++g) m = std::max(m, load[g] * weight[g]);
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Base policy: the placement's default rule.

RoutingPolicy::RoutingPolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg, const char* stream)
    : ctx_(ctx), cfg_(cfg), rng_(ctx.seed, stream), gpus_(static_cast<std::size_t>(ctx.gpus)) {
  const std::string& rule = cfg_.replica_selection;
  rule_ = rule == "random" ? ReplicaRule::random : rule == "even" ? ReplicaRule::even : rule == "nearest" ? ReplicaRule::nearest : ReplicaRule::position;
}

void RoutingPolicy::begin_step(std::span<const GpuSignal> gpus) {
  if (gpus.size() == gpus_.size()) std::copy(gpus.begin(), gpus.end(), gpus_.begin());
}

int RoutingPolicy::default_slot(const std::vector<int>& slots, std::size_t token, int src, const LayerSlots& layer) {
  const std::size_t m = slots.size();
  if (m == 1) return slots[0];
  if (rule_ == ReplicaRule::random) return slots[rng_.uniform_index(m)];
  if (rule_ == ReplicaRule::even) {
    const int e = layer.phy2log[static_cast<std::size_t>(slots[0])];
    return slots[static_cast<std::size_t>(round_robin_[static_cast<std::size_t>(e)]++) % m];
  }
  if (rule_ == ReplicaRule::nearest) {
    for (int s : slots)
      if (layer.gpu_of(s) == src) return s;
    int local[64];
    std::size_t n_local = 0;
    const int node = src / ctx_.gpus_per_node;
    for (int s : slots)
      if (layer.gpu_of(s) / ctx_.gpus_per_node == node && n_local < 64) local[n_local++] = s;
    if (n_local > 0) return local[token % n_local];
  }
  return slots[token % m];
}

void RoutingPolicy::default_split(const std::vector<int>& slots, int src, double count, const LayerSlots& layer,
                                  std::span<double> out_row) {
  const std::size_t m = slots.size();
  if (count <= 0) return;
  if (m == 1) {
    out_row[static_cast<std::size_t>(slots[0])] += count;
    return;
  }
  if (rule_ == ReplicaRule::random) {
    double rest = count;
    for (std::size_t i = 0; i < m && rest > 0; ++i) {
      const double n = i + 1 == m ? rest : sample_binomial(rng_, static_cast<int>(rest), 1.0 / static_cast<double>(m - i));
      out_row[static_cast<std::size_t>(slots[i])] += n;
      rest -= n;
    }
    return;
  }
  local_.clear();
  if (rule_ == ReplicaRule::nearest) {
    for (int s : slots)
      if (layer.gpu_of(s) == src) {
        out_row[static_cast<std::size_t>(s)] += count;
        return;
      }
    const int node = src / ctx_.gpus_per_node;
    for (int s : slots)
      if (layer.gpu_of(s) / ctx_.gpus_per_node == node) local_.push_back(s);
  }
  // Even shares, the remainder one each from the source's own offset.
  const std::vector<int>& use = local_.empty() ? slots : local_;
  const std::size_t n = use.size();
  const double share = std::floor(count / static_cast<double>(n));
  const auto left = static_cast<std::size_t>(std::ceil(count - share * static_cast<double>(n)));
  const std::size_t start = static_cast<std::size_t>(src) % n;
  for (std::size_t i = 0; i < n; ++i)
    out_row[static_cast<std::size_t>(use[(start + i) % n])] += share + (i < left ? 1.0 : 0.0);
}

void RoutingPolicy::assign(int, const LayerSlots& slots, std::span<const int> token_src, std::span<const std::int32_t> experts,
                           std::span<int> slot_of, PolicyCounters& c) {
  const auto k = static_cast<std::size_t>(ctx_.top_k);
  round_robin_.assign(static_cast<std::size_t>(ctx_.num_experts), 0);
  for (std::size_t t = 0; t < token_src.size(); ++t)
    for (std::size_t j = 0; j < k; ++j)
      slot_of[t * k + j] = default_slot(slots.slots_of[static_cast<std::size_t>(experts[t * k + j])], t, token_src[t], slots);
  c.assignments += static_cast<double>(experts.size());
  c.computed += static_cast<double>(experts.size());
}

void RoutingPolicy::assign_counts(int, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                                  std::span<double> slot_counts, PolicyCounters& c) {
  const auto E = static_cast<std::size_t>(ctx_.num_experts);
  const std::size_t S = slots.phy2log.size();
  // Experts with one replica (most of them) take their count as it is: their slots once per
  // call, so the inner loop reads no per-expert vector and takes no data-dependent branch.
  single_slot_.resize(E);
  for (std::size_t e = 0; e < E; ++e) single_slot_[e] = slots.slots_of[e].size() == 1 ? slots.slots_of[e][0] : -1;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const double* row = counts.data() + g * E;
    double* out = slot_counts.data() + g * S;
    double total = 0;
    for (std::size_t e = 0; e < E; ++e) {
      const double n = row[e];
      total += n;
      if (const int slot = single_slot_[e]; slot >= 0) out[static_cast<std::size_t>(slot)] += n;
      else if (n > 0) default_split(slots.slots_of[e], groups[g].source, n, slots, slot_counts.subspan(g * S, S));
    }
    c.assignments += total;
    c.computed += total;
  }
}

namespace {

/// Policies that re-choose replicas: the default rule first (for the rerouted count), then their own.
class ReplicaPolicy : public RoutingPolicy {
 public:
  using RoutingPolicy::RoutingPolicy;

  void assign(int layer, const LayerSlots& slots, std::span<const int> token_src, std::span<const std::int32_t> experts,
              std::span<int> slot_of, PolicyCounters& c) override {
    RoutingPolicy::assign(layer, slots, token_src, experts, slot_of, c);
    default_.assign(slot_of.begin(), slot_of.end());
    choose(layer, slots, token_src, experts, slot_of, c);
    for (std::size_t i = 0; i < slot_of.size(); ++i)
      if (slot_of[i] >= 0 && slot_of[i] != default_[i]) c.rerouted += 1;
  }

  void assign_counts(int layer, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                     std::span<double> slot_counts, PolicyCounters& c) override {
    RoutingPolicy::assign_counts(layer, slots, groups, counts, slot_counts, c);
    default_counts_.assign(slot_counts.begin(), slot_counts.end());
    choose_counts(layer, slots, groups, counts, slot_counts, c);
    double diff = 0;
    for (std::size_t i = 0; i < slot_counts.size(); ++i) diff += std::max(0.0, slot_counts[i] - default_counts_[i]);
    c.rerouted += diff;
  }

 protected:
  virtual void choose(int layer, const LayerSlots& slots, std::span<const int> token_src, std::span<const std::int32_t> experts,
                      std::span<int> slot_of, PolicyCounters& c) = 0;
  virtual void choose_counts(int layer, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                             std::span<double> slot_counts, PolicyCounters& c) = 0;

  /// Greedy toward min over GPUs of (w_g load_g - offset_g): single-replica assignments are fixed,
  /// then every replicated one goes to its best replica (or the better of two random ones).
  void greedy(const LayerSlots& slots, std::span<const std::int32_t> experts, std::span<int> slot_of, std::span<const double> weight,
              std::span<const double> offset, int choices) {
    load_.assign(gpus_.size(), 0.0);
    for (std::size_t i = 0; i < experts.size(); ++i)
      if (slots.slots_of[static_cast<std::size_t>(experts[i])].size() == 1) load_[static_cast<std::size_t>(slots.gpu_of(slot_of[i]))] += 1;
    for (std::size_t i = 0; i < experts.size(); ++i) {
      const auto& cand = slots.slots_of[static_cast<std::size_t>(experts[i])];
      if (cand.size() == 1) continue;
      auto cost = [&](int s) {
        const auto g = static_cast<std::size_t>(slots.gpu_of(s));
        return weight[g] * (load_[g] + 1) - offset[g];
      };
      int best = slot_of[i];
      if (choices == 2) {
        const std::size_t a = rng_.uniform_index(cand.size());
        std::size_t b = rng_.uniform_index(cand.size() - 1);
        if (b >= a) ++b;
        best = cost(cand[a]) <= cost(cand[b]) ? cand[a] : cand[b];
      } else {
        for (int s : cand)
          if (cost(s) < cost(best)) best = s;
      }
      slot_of[i] = best;
      load_[static_cast<std::size_t>(slots.gpu_of(best))] += 1;
    }
  }

  /// Count level of greedy: per expert (heaviest first) water-filling of its total over its
  /// replicas' GPUs, then handed back to the groups, each first to a replica on its own GPU.
  void fill_counts(const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                   std::span<double> slot_counts, std::span<const double> weight, std::span<const double> offset) {
    const auto E = static_cast<std::size_t>(ctx_.num_experts);
    const std::size_t S = slots.phy2log.size();
    std::vector<double> total(E, 0.0);
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (std::size_t e = 0; e < E; ++e) total[e] += counts[g * E + e];
    load_.assign(gpus_.size(), 0.0);
    std::vector<std::size_t> multi;
    for (std::size_t e = 0; e < E; ++e) {
      if (slots.slots_of[e].size() == 1) load_[static_cast<std::size_t>(slots.gpu_of(slots.slots_of[e][0]))] += total[e];
      else multi.push_back(e);
    }
    std::stable_sort(multi.begin(), multi.end(), [&](std::size_t a, std::size_t b) { return total[a] > total[b]; });
    std::vector<int> cand_gpus;
    for (std::size_t e : multi) {
      const auto& cand = slots.slots_of[e];
      cand_gpus.clear();
      for (int s : cand) cand_gpus.push_back(slots.gpu_of(s));
      std::vector<double> alloc = water_fill(total[e], cand_gpus, load_, weight, offset);
      for (std::size_t i = 0; i < cand.size(); ++i) load_[static_cast<std::size_t>(cand_gpus[i])] += alloc[i];
      // Hand the allocation back: clear the expert's columns, then each group fills its own GPU's
      // replica first, the rest in slot order.
      for (std::size_t g = 0; g < groups.size(); ++g)
        for (int s : cand) slot_counts[g * S + static_cast<std::size_t>(s)] = 0;
      std::vector<double> need(groups.size());
      for (std::size_t g = 0; g < groups.size(); ++g) need[g] = counts[g * E + e];
      for (std::size_t g = 0; g < groups.size(); ++g)
        for (std::size_t i = 0; i < cand.size(); ++i)
          if (cand_gpus[i] == groups[g].source) {
            const double take = std::min(need[g], alloc[i]);
            slot_counts[g * S + static_cast<std::size_t>(cand[i])] += take;
            alloc[i] -= take;
            need[g] -= take;
          }
      std::size_t i = 0;
      for (std::size_t g = 0; g < groups.size(); ++g)
        while (need[g] > 0 && i < cand.size()) {
          const double take = std::min(need[g], alloc[i]);
          slot_counts[g * S + static_cast<std::size_t>(cand[i])] += take;
          alloc[i] -= take;
          need[g] -= take;
          if (alloc[i] <= 0) ++i;
        }
    }
  }

  std::vector<double> weights_from_clock() const {
    std::vector<double> w(gpus_.size());
    for (std::size_t g = 0; g < w.size(); ++g) w[g] = std::max(1e-9, gpus_[g].clock_ratio);
    return w;
  }

  std::vector<int> default_;
  std::vector<double> default_counts_;
  std::vector<double> load_;
};

class LeastLoadedPolicy final : public ReplicaPolicy {
 public:
  LeastLoadedPolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg) : ReplicaPolicy(ctx, cfg, "policy/least_loaded") {}

 protected:
  void choose(int, const LayerSlots& slots, std::span<const int>, std::span<const std::int32_t> experts, std::span<int> slot_of,
              PolicyCounters&) override {
    const auto w = weights_from_clock();
    const std::vector<double> zero(gpus_.size(), 0.0);
    greedy(slots, experts, slot_of, w, zero, cfg_.least_loaded_choices);
    // Never worse than the default rule on the same step.
    std::vector<double> def(gpus_.size(), 0.0);
    for (int s : default_) def[static_cast<std::size_t>(slots.gpu_of(s))] += 1;
    if (weighted_max(load_, w) > weighted_max(def, w)) std::copy(default_.begin(), default_.end(), slot_of.begin());
  }

  void choose_counts(int, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                     std::span<double> slot_counts, PolicyCounters&) override {
    const auto w = weights_from_clock();
    const std::vector<double> zero(gpus_.size(), 0.0);
    fill_counts(slots, groups, counts, slot_counts, w, zero);
    std::vector<double> def(gpus_.size(), 0.0), mine(gpus_.size(), 0.0);
    const std::size_t S = slots.phy2log.size();
    for (std::size_t i = 0; i < slot_counts.size(); ++i) {
      const auto g = static_cast<std::size_t>(slots.gpu_of(static_cast<int>(i % S)));
      def[g] += default_counts_[i];
      mine[g] += slot_counts[i];
    }
    if (weighted_max(mine, w) > weighted_max(def, w)) std::copy(default_counts_.begin(), default_counts_.end(), slot_counts.begin());
  }
};

class CapacityPolicy final : public ReplicaPolicy {
 public:
  CapacityPolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg) : ReplicaPolicy(ctx, cfg, "policy/capacity") {}

  /// Tokens one slot may take in a layer of `assignments`.
  [[nodiscard]] double capacity(double assignments, std::size_t slots) const {
    return std::ceil(cfg_.capacity.factor * assignments / static_cast<double>(slots));
  }

 protected:
  void choose(int, const LayerSlots& slots, std::span<const int>, std::span<const std::int32_t> experts, std::span<int> slot_of,
              PolicyCounters& c) override {
    const double cap = capacity(static_cast<double>(experts.size()), slots.phy2log.size());
    const bool next = cfg_.capacity.overflow == "next_replica";
    std::vector<double> used(slots.phy2log.size(), 0.0);
    for (std::size_t i = 0; i < experts.size(); ++i) {
      int s = slot_of[i];
      if (used[static_cast<std::size_t>(s)] >= cap) {
        s = -1;
        if (next) {
          const auto& cand = slots.slots_of[static_cast<std::size_t>(experts[i])];
          const auto at = static_cast<std::size_t>(std::find(cand.begin(), cand.end(), slot_of[i]) - cand.begin());
          for (std::size_t d = 1; d < cand.size() && s < 0; ++d) {
            const int alt = cand[(at + d) % cand.size()];
            if (used[static_cast<std::size_t>(alt)] < cap) s = alt;
          }
        }
      }
      slot_of[i] = s;
      if (s >= 0) used[static_cast<std::size_t>(s)] += 1;
      else {
        c.dropped += 1;
        c.computed -= 1;
      }
    }
  }

  void choose_counts(int, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                     std::span<double> slot_counts, PolicyCounters& c) override {
    const std::size_t S = slots.phy2log.size();
    const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
    const double cap = capacity(total, S);
    const bool next = cfg_.capacity.overflow == "next_replica";
    std::vector<double> used(S, 0.0);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      auto row = slot_counts.subspan(g * S, S);
      for (std::size_t e = 0; e < slots.slots_of.size(); ++e) {
        const auto& cand = slots.slots_of[e];
        double overflow = 0;
        for (int s : cand) {
          const auto si = static_cast<std::size_t>(s);
          const double take = std::min(row[si], std::max(0.0, cap - used[si]));
          overflow += row[si] - take;
          row[si] = take;
          used[si] += take;
        }
        if (next)
          for (int s : cand) {
            const auto si = static_cast<std::size_t>(s);
            const double take = std::min(overflow, std::max(0.0, cap - used[si]));
            row[si] += take;
            used[si] += take;
            overflow -= take;
          }
        c.dropped += overflow;
        c.computed -= overflow;
      }
    }
  }
};

/// Seed-000 dynamic rerouting.
class NectarPolicy final : public ReplicaPolicy {
 public:
  NectarPolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg)
      : ReplicaPolicy(ctx, cfg, "policy/nectar"),
        gate_(static_cast<std::size_t>(ctx.num_moe_layers)),
        seen_(static_cast<std::size_t>(ctx.num_moe_layers)),
        gpu_hist_(static_cast<std::size_t>(ctx.num_moe_layers)) {}

  [[nodiscard]] bool changes_selection() const override { return cfg_.nectar.mode == "gate_bias"; }

  void reselect(int layer, std::span<std::int32_t> experts, PolicyCounters& c) override {
    if (const auto cpl = gate_coupling(layer)) apply_coupling(rng_, *cpl, ctx_.top_k, experts, c);
  }
  void reselect_counts(int layer, std::span<const TokenGroup> groups, std::span<double> counts, PolicyCounters& c) override {
    if (const auto cpl = gate_coupling(layer)) apply_coupling_counts(rng_, *cpl, groups, counts, c);
  }

  void observe_layer(int layer, std::span<const double> gate_load, std::span<const double> expert_load,
                     std::span<const double> gpu_load) override {
    const auto l = static_cast<std::size_t>(layer);
    const auto cap = static_cast<std::size_t>(cfg_.nectar.history_steps);
    gate_[l].push(gate_load, cap);
    seen_[l].push(expert_load, cap);
    (void)gpu_load;
    if (!natural_.empty()) gpu_hist_[l].push(natural_, cap);  // replica mode: the loads before steering
    natural_.clear();
  }

 protected:
  void choose(int layer, const LayerSlots& slots, std::span<const int>, std::span<const std::int32_t> experts, std::span<int> slot_of,
              PolicyCounters&) override {
    if (cfg_.nectar.mode != "replica") return;
    natural_.assign(gpus_.size(), 0.0);
    for (int s : default_) natural_[static_cast<std::size_t>(slots.gpu_of(s))] += 1;
    const auto goal = gpu_goal(layer, static_cast<double>(experts.size()));
    if (goal.empty()) return;
    const std::vector<double> one(gpus_.size(), 1.0);
    greedy(slots, experts, slot_of, one, goal, 0);
  }
  void choose_counts(int layer, const LayerSlots& slots, std::span<const TokenGroup> groups, std::span<const double> counts,
                     std::span<double> slot_counts, PolicyCounters&) override {
    if (cfg_.nectar.mode != "replica") return;
    natural_.assign(gpus_.size(), 0.0);
    const std::size_t S = slots.phy2log.size();
    for (std::size_t i = 0; i < default_counts_.size(); ++i) natural_[static_cast<std::size_t>(slots.gpu_of(static_cast<int>(i % S)))] += default_counts_[i];
    const auto goal = gpu_goal(layer, std::accumulate(counts.begin(), counts.end(), 0.0));
    if (goal.empty()) return;
    const std::vector<double> one(gpus_.size(), 1.0);
    fill_counts(slots, groups, counts, slot_counts, one, goal);
  }

 private:
  /// Replica mode: every GPU's goal load for this layer: the share the default rule would give it
  /// now (the current distribution) plus the bias, times the layer's assignments; empty when the
  /// policy is inactive (no history, or balanced and no pressure). The history holds the loads
  /// before steering, so the prediction is of the load the policy has to correct.
  std::vector<double> gpu_goal(int layer, double assignments) {
    const auto& hist = gpu_hist_[static_cast<std::size_t>(layer)];
    if (hist.empty() || natural_.empty()) return {};
    const auto predicted = nectar_predict(hist.recent(static_cast<std::size_t>(cfg_.nectar.trend_steps)));
    const std::size_t n = gpus_.size();
    std::vector<double> pressure(n);
    double worst = 0;
    for (std::size_t g = 0; g < n; ++g) {
      pressure[g] = std::max(thermal_pressure(gpus_[g].temp_c), power_pressure(gpus_[g].power_w, ctx_.power_budget_w)) +
                    (gpus_[g].throttled ? 1.0 : 0.0);
      worst = std::max(worst, pressure[g]);
    }
    if (worst <= 0.5 && nectar_imbalance_score(predicted) <= cfg_.nectar.imbalance_threshold) return {};
    std::vector<double> current(natural_);
    const double total = std::accumulate(current.begin(), current.end(), 0.0);
    if (total <= 0) return {};
    for (double& x : current) x /= total;
    std::vector<double> bias = nectar_bias(current, predicted, worst, cfg_.nectar.strength);
    if (worst > 0.5) {
      // Under pressure the target is uniform over GPUs weighted away from the pressed ones.
      double z = 0;
      for (std::size_t g = 0; g < n; ++g) z += 1.0 / (1.0 + pressure[g]);
      for (std::size_t g = 0; g < n; ++g) bias[g] = cfg_.nectar.strength * ((1.0 / (1.0 + pressure[g])) / z - current[g]);
    }
    std::vector<double> goal(n);
    double sum = 0;
    for (std::size_t g = 0; g < n; ++g) sum += (goal[g] = std::max(0.0, current[g] + bias[g]));
    for (double& x : goal) x = sum > 0 ? x / sum * assignments : assignments / static_cast<double>(n);
    return goal;
  }

  /// Gate-bias mode: the coupling for this layer, or nothing when inactive.
  std::optional<GateBiasCoupling> gate_coupling(int layer) {
    if (cfg_.nectar.mode != "gate_bias") return std::nullopt;
    const auto l = static_cast<std::size_t>(layer);
    if (seen_[l].empty()) return std::nullopt;
    const auto predicted = nectar_predict(seen_[l].recent(static_cast<std::size_t>(cfg_.nectar.trend_steps)));
    double temp = 0, power = 0;
    bool throttled = false;
    for (const auto& g : gpus_) {
      temp = std::max(temp, g.temp_c);
      power = std::max(power, g.power_w);
      throttled = throttled || g.throttled;
    }
    const double pressure = std::max(thermal_pressure(temp), power_pressure(power, ctx_.power_budget_w)) + (throttled ? 1.0 : 0.0);
    if (pressure <= 0.5 && nectar_imbalance_score(predicted) <= cfg_.nectar.imbalance_threshold) return std::nullopt;
    const auto bias = nectar_bias(seen_[l].last(), predicted, pressure, cfg_.nectar.strength);
    return gate_bias_coupling(gate_[l].mean(), bias);
  }

  std::vector<DistributionWindow> gate_, seen_, gpu_hist_;
  std::vector<double> natural_;  ///< replica mode: this layer's GPU loads under the default rule
};

/// DeepSeek-V3's auxiliary-loss-free balancing, applied online.
class AuxFreeBiasPolicy final : public RoutingPolicy {
 public:
  AuxFreeBiasPolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg)
      : RoutingPolicy(ctx, cfg, "policy/aux_free_bias"),
        gate_(static_cast<std::size_t>(ctx.num_moe_layers)),
        bias_(static_cast<std::size_t>(ctx.num_moe_layers), std::vector<double>(static_cast<std::size_t>(ctx.num_experts), 0.0)) {}

  [[nodiscard]] bool changes_selection() const override { return true; }

  void reselect(int layer, std::span<std::int32_t> experts, PolicyCounters& c) override {
    const auto l = static_cast<std::size_t>(layer);
    if (gate_[l].empty()) return;
    apply_coupling(rng_, gate_bias_coupling(gate_[l].mean(), bias_[l]), ctx_.top_k, experts, c);
  }
  void reselect_counts(int layer, std::span<const TokenGroup> groups, std::span<double> counts, PolicyCounters& c) override {
    const auto l = static_cast<std::size_t>(layer);
    if (gate_[l].empty()) return;
    apply_coupling_counts(rng_, gate_bias_coupling(gate_[l].mean(), bias_[l]), groups, counts, c);
  }

  void observe_layer(int layer, std::span<const double> gate_load, std::span<const double> expert_load,
                     std::span<const double>) override {
    const auto l = static_cast<std::size_t>(layer);
    gate_[l].push(gate_load, static_cast<std::size_t>(cfg_.window_steps));
    const double mean = std::accumulate(expert_load.begin(), expert_load.end(), 0.0) / static_cast<double>(expert_load.size());
    for (std::size_t e = 0; e < expert_load.size(); ++e) {
      const double err = mean - expert_load[e];
      bias_[l][e] += cfg_.aux_free_update_speed * (err > 0 ? 1.0 : err < 0 ? -1.0 : 0.0);
    }
  }

 private:
  std::vector<DistributionWindow> gate_;
  std::vector<std::vector<double>> bias_;
};

class DefaultRulePolicy final : public RoutingPolicy {
 public:
  DefaultRulePolicy(const PolicyContext& ctx, const RoutingPolicyConfig& cfg) : RoutingPolicy(ctx, cfg, "policy/default") {}
};

Registry<PolicyFactory> make_policy_registry() {
  Registry<PolicyFactory> r("routing policy");
  auto plain = [](const PolicyContext& c, const RoutingPolicyConfig& p) { return std::make_unique<DefaultRulePolicy>(c, p); };
  r.add("static", "contiguous experts, no replicas (vLLM's initial map)", plain);
  r.add("eplb", "DeepSeek's EPLB placement with replicas, rebalanced periodically; replicas chosen by replica_selection", plain);
  r.add("least_loaded", "EPLB placement; each replicated assignment to the replica with the least queued work (choices: 2 for two random)",
        [](const PolicyContext& c, const RoutingPolicyConfig& p) { return std::make_unique<LeastLoadedPolicy>(c, p); });
  r.add("capacity", "per-slot capacity factor; overflow dropped or sent to the next replica",
        [](const PolicyContext& c, const RoutingPolicyConfig& p) { return std::make_unique<CapacityPolicy>(c, p); });
  r.add("nectar", "dynamic rerouting from a window of distributions, trend prediction and thermal/power pressure (replica or gate_bias)",
        [](const PolicyContext& c, const RoutingPolicyConfig& p) { return std::make_unique<NectarPolicy>(c, p); });
  r.add("aux_free_bias", "DeepSeek-V3's loss-free balancing: per-expert gate bias nudged by the sign of its load error",
        [](const PolicyContext& c, const RoutingPolicyConfig& p) { return std::make_unique<AuxFreeBiasPolicy>(c, p); });
  return r;
}

}  // namespace

const Registry<PolicyFactory>& routing_policies() {
  static const Registry<PolicyFactory> registry = make_policy_registry();
  return registry;
}

}  // namespace moesim
