#include "models/common/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moesim {

double mean_of(std::span<const double> xs) {
  if (xs.empty()) return 0.0;
  return std::accumulate(xs.begin(), xs.end(), 0.0) / static_cast<double>(xs.size());
}

double stddev_of(std::span<const double> xs) {
  if (xs.empty()) return 0.0;
  const double m = mean_of(xs);
  double acc = 0.0;
  for (double x : xs) acc += (x - m) * (x - m);
  return std::sqrt(acc / static_cast<double>(xs.size()));
}

double percentile_of(std::span<const double> xs, double p) {
  if (xs.empty()) return 0.0;
  std::vector<double> sorted(xs.begin(), xs.end());
  std::sort(sorted.begin(), sorted.end());
  return percentile_of_sorted(sorted, p);
}

double percentile_of_sorted(std::span<const double> sorted, double p) {
  if (sorted.empty()) return 0.0;
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

double median_of(std::span<const double> xs) { return percentile_of(xs, 50.0); }

double coefficient_of_variation(std::span<const double> xs) {
  const double m = mean_of(xs);
  return m > 0.0 ? stddev_of(xs) / m : 0.0;
}

double max_over_mean(std::span<const double> xs) {
  const double m = mean_of(xs);
  if (m <= 0.0) return 1.0;
  return *std::max_element(xs.begin(), xs.end()) / m;
}

}  // namespace moesim
