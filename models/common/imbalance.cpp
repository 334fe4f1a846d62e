#include "models/common/imbalance.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "models/common/stats.hpp"

namespace moesim {

double gini_of(std::span<const double> x) {
  const double m = mean_of(x);
  if (x.empty() || m <= 0) return 0.0;
  // Sorted form of Σ_i Σ_j |x_i − x_j| / (2 n² mean): Σ_i (2i − n + 1) x_(i) / (n² mean).
  std::vector<double> s(x.begin(), x.end());
  std::sort(s.begin(), s.end());
  const auto n = static_cast<double>(s.size());
  double acc = 0;
  for (std::size_t i = 0; i < s.size(); ++i) acc += (2.0 * static_cast<double>(i) - n + 1.0) * s[i];
  return acc / (n * n * m);
}

LoadStats load_stats(std::span<const double> x) {
  LoadStats st;
  if (x.empty()) return st;
  const double total = std::accumulate(x.begin(), x.end(), 0.0);
  if (total <= 0) return st;
  const auto n = static_cast<double>(x.size());
  st.cv = coefficient_of_variation(x);
  st.max_over_mean = max_over_mean(x);
  const double mn = *std::min_element(x.begin(), x.end());
  const double mx = *std::max_element(x.begin(), x.end());
  st.max_over_min = mn > 0 ? mx / mn : std::numeric_limits<double>::infinity();
  for (double v : x) {
    if (v <= 0) continue;
    const double q = v / total;
    st.kl_from_uniform += q * std::log(q * n);
    st.entropy_bits -= q * std::log2(q);
  }
  st.gini = gini_of(x);
  return st;
}

double linear_trend(std::span<const double> ys) {
  const auto n = static_cast<double>(ys.size());
  if (ys.size() < 2) return 0.0;
  double sx = 0, sy = 0, sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < ys.size(); ++i) {
    const auto xi = static_cast<double>(i);
    sx += xi;
    sy += ys[i];
    sxy += xi * ys[i];
    sxx += xi * xi;
  }
  const double den = n * sxx - sx * sx;
  return std::fabs(den) < 1e-300 ? 0.0 : (n * sxy - sx * sy) / den;
}

ImbalanceTracker::ImbalanceTracker(int moe_layers, int num_experts, int num_gpus, int filter_max_tokens, int trend_window)
    : layers_(moe_layers),
      experts_(num_experts),
      num_ranks_(std::max(1, num_gpus)),
      gpu_agg_(static_cast<std::size_t>(moe_layers) * static_cast<std::size_t>(std::max(1, num_gpus)), 0.0),
      filter_(filter_max_tokens),
      window_(trend_window),
      cv_sum_(static_cast<std::size_t>(moe_layers), 0.0),
      agg_(static_cast<std::size_t>(moe_layers * num_experts), 0.0),
      agg_all_(static_cast<std::size_t>(moe_layers * num_experts), 0.0),
      utilization_(static_cast<std::size_t>(num_experts), 0.0) {}

void ImbalanceTracker::add_step(int num_tokens, std::span<const double> counts, std::span<const double> gpu_loads) {
  if (experts_ == 0) return;  // a dense model routes nothing
  ++steps_;
  const auto G = static_cast<std::size_t>(num_ranks_);
  if (!gpu_loads.empty() && gpu_loads.size() != gpu_agg_.size())
    throw std::logic_error("ImbalanceTracker: GPU loads for " + std::to_string(gpu_loads.size()) + " (layer, GPU) pairs, expected " +
                           std::to_string(gpu_agg_.size()));
  for (std::size_t l = 0; l < static_cast<std::size_t>(layers_); ++l) {
    if (gpu_loads.empty()) {
      // One GPU (or every GPU a shard of every expert): it computed the layer's tokens.
      double total = 0;
      for (std::size_t e = 0; e < static_cast<std::size_t>(experts_); ++e) total += counts[l * static_cast<std::size_t>(experts_) + e];
      gpu_agg_[l * G] += total;
    } else {
      for (std::size_t g = 0; g < G; ++g) gpu_agg_[l * G + g] += gpu_loads[l * G + g];
    }
  }
  const bool keep = num_tokens <= filter_;
  if (keep) ++steps_in_filter_;
  const auto E = static_cast<std::size_t>(experts_);
  std::vector<double> per_expert(E, 0.0);
  for (std::size_t l = 0; l < static_cast<std::size_t>(layers_); ++l) {
    const auto row = counts.subspan(l * E, E);
    cv_sum_[l] += coefficient_of_variation(row);
    for (std::size_t e = 0; e < E; ++e) {
      agg_all_[l * E + e] += row[e];
      if (keep) agg_[l * E + e] += row[e];
      per_expert[e] += row[e];
    }
  }
  // Seed 001: utilisation = an expert's share of the step's tokens; running mean with 1/n.
  const double alpha = 1.0 / steps_;
  const double denom = num_tokens > 0 ? static_cast<double>(num_tokens) * layers_ : 1.0;
  for (std::size_t e = 0; e < E; ++e) utilization_[e] = alpha * (per_expert[e] / denom) + (1.0 - alpha) * utilization_[e];
  const double m = mean_of(per_expert);
  double var = 0;
  for (double v : per_expert) var += (v - m) * (v - m);
  variance_history_.push_back(var / static_cast<double>(E));
  if (static_cast<int>(variance_history_.size()) > std::max(window_, 1)) variance_history_.erase(variance_history_.begin());
}

ImbalanceTracker::Result ImbalanceTracker::result() const {
  Result r;
  r.steps = steps_;
  r.steps_in_filter = steps_in_filter_;
  const auto E = static_cast<std::size_t>(experts_);
  double sum_mean_rank = 0, sum_max_rank = 0;
  for (std::size_t l = 0; l < static_cast<std::size_t>(layers_); ++l) {
    LayerResult lr;
    lr.cv_per_step_mean = steps_ > 0 ? cv_sum_[l] / steps_ : 0.0;
    lr.aggregated = load_stats(std::span<const double>(agg_).subspan(l * E, E));
    lr.aggregated_all = load_stats(std::span<const double>(agg_all_).subspan(l * E, E));
    const auto G = static_cast<std::size_t>(num_ranks_);
    const auto per_rank = std::span<const double>(gpu_agg_).subspan(l * G, G);
    lr.gpu_max_over_mean = max_over_mean(per_rank);
    sum_mean_rank += mean_of(per_rank);
    sum_max_rank += *std::max_element(per_rank.begin(), per_rank.end());
    r.layers.push_back(lr);
  }
  auto layer_mean = [&](auto field) {
    double acc = 0;
    for (const auto& lr : r.layers) acc += field(lr);
    return r.layers.empty() ? 0.0 : acc / static_cast<double>(r.layers.size());
  };
  r.cv_per_step_mean = layer_mean([](const LayerResult& lr) { return lr.cv_per_step_mean; });
  r.cv_aggregated = layer_mean([](const LayerResult& lr) { return lr.aggregated.cv; });
  r.cv_aggregated_all = layer_mean([](const LayerResult& lr) { return lr.aggregated_all.cv; });
  r.max_over_mean_aggregated = layer_mean([](const LayerResult& lr) { return lr.aggregated.max_over_mean; });
  r.max_over_min_aggregated = layer_mean([](const LayerResult& lr) { return lr.aggregated.max_over_min; });
  r.kl_from_uniform = layer_mean([](const LayerResult& lr) { return lr.aggregated.kl_from_uniform; });
  r.entropy_bits = layer_mean([](const LayerResult& lr) { return lr.aggregated.entropy_bits; });
  r.gini = layer_mean([](const LayerResult& lr) { return lr.aggregated.gini; });
  r.balancedness = sum_max_rank > 0 ? sum_mean_rank / sum_max_rank : 1.0;
  r.utilization_cv = coefficient_of_variation(utilization_);
  r.load_variance_trend = linear_trend(variance_history_);
  return r;
}

}  // namespace moesim
