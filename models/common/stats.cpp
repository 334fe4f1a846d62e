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

void percentiles_in_place(std::span<double> values, std::span<const double> ps, std::span<double> out) {
  const std::size_t n = values.size();
  // Invariant: every value from `settled` on is >= every value before it, and the positions
  // selected so far hold their order statistics.
  std::size_t settled = 0;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    if (n == 0) {
      out[i] = 0.0;
      continue;
    }
    const double rank = ps[i] / 100.0 * static_cast<double>(n - 1);
    const auto lo = static_cast<std::size_t>(std::floor(rank));
    const auto hi = std::min(lo + 1, n - 1);
    if (lo >= settled) {
      std::nth_element(values.begin() + static_cast<std::ptrdiff_t>(settled), values.begin() + static_cast<std::ptrdiff_t>(lo),
                       values.end());
      // The next order statistic is the smallest of what follows lo.
      if (hi > lo) std::iter_swap(values.begin() + static_cast<std::ptrdiff_t>(hi),
                                  std::min_element(values.begin() + static_cast<std::ptrdiff_t>(hi), values.end()));
      settled = hi + 1;
    }
    const double frac = rank - static_cast<double>(lo);
    out[i] = values[lo] + (values[hi] - values[lo]) * frac;
  }
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

namespace {
const double kLogBin = std::log1p(StreamingSample::kRelativeBinWidth);
}

void StreamingSample::add(double x) {
  ++count_;
  if (exact()) {
    values_.push_back(x);
    if (values_.size() > exact_limit_) to_histogram();
    return;
  }
  bin(x);
}

void StreamingSample::to_histogram() {
  for (double v : values_) bin(v);
  values_.clear();
  values_.shrink_to_fit();
}

void StreamingSample::bin(double x) {
  sum_ += x;
  sum_sq_ += x * x;
  if (!(x > 0)) {
    ++zeros_;
    return;
  }
  const auto b = static_cast<std::int64_t>(std::floor(std::log(x) / kLogBin));
  if (bins_.empty()) {
    first_bin_ = b;
    bins_.assign(1, 0);
  } else if (b < first_bin_) {
    bins_.insert(bins_.begin(), static_cast<std::size_t>(first_bin_ - b), 0);
    first_bin_ = b;
  } else if (b >= first_bin_ + static_cast<std::int64_t>(bins_.size())) {
    bins_.resize(static_cast<std::size_t>(b - first_bin_ + 1), 0);
  }
  bins_[static_cast<std::size_t>(b - first_bin_)] += 1;
}

double StreamingSample::mean() const {
  if (count_ == 0) return 0.0;
  return exact() ? mean_of(values_) : sum_ / static_cast<double>(count_);
}

double StreamingSample::stddev() const {
  if (count_ == 0) return 0.0;
  if (exact()) return stddev_of(values_);
  const double m = mean();
  return std::sqrt(std::max(0.0, sum_sq_ / static_cast<double>(count_) - m * m));
}

double StreamingSample::order_statistic(std::uint64_t k) const {
  if (k < zeros_) return 0.0;
  std::uint64_t seen = zeros_;
  for (std::size_t i = 0; i < bins_.size(); ++i) {
    seen += bins_[i];
    // The bin's geometric middle: within half a bin (5e-6 relative) of every value in it.
    if (k < seen) return std::exp((static_cast<double>(first_bin_ + static_cast<std::int64_t>(i)) + 0.5) * kLogBin);
  }
  return std::exp((static_cast<double>(first_bin_) + static_cast<double>(bins_.size()) - 0.5) * kLogBin);
}

double StreamingSample::percentile(double p) const {
  if (count_ == 0) return 0.0;
  if (exact()) return percentile_of(values_, p);
  const double rank = p / 100.0 * static_cast<double>(count_ - 1);
  const auto lo = static_cast<std::uint64_t>(std::floor(rank));
  const auto hi = std::min<std::uint64_t>(lo + 1, count_ - 1);
  const double frac = rank - static_cast<double>(lo);
  const double a = order_statistic(lo), b = order_statistic(hi);
  return a + (b - a) * frac;
}

}  // namespace moesim
