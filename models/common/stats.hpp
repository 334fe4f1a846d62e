#pragma once
// Summary statistics with the conventions of vLLM's serving benchmark (numpy): population
// standard deviation and linearly interpolated percentiles.
#include <cstdint>
#include <span>
#include <vector>

namespace moesim {

[[nodiscard]] double mean_of(std::span<const double> xs);
/// Population standard deviation (numpy.std default, ddof = 0).
[[nodiscard]] double stddev_of(std::span<const double> xs);
/// Percentile p in [0, 100] with linear interpolation between order statistics (numpy default).
[[nodiscard]] double percentile_of(std::span<const double> xs, double p);
[[nodiscard]] double median_of(std::span<const double> xs);
/// percentile_of for data already sorted ascending (no copy).
[[nodiscard]] double percentile_of_sorted(std::span<const double> sorted, double p);
/// The percentiles `ps` (ascending, in [0, 100]) of `values`, as percentile_of gives them, by
/// selection instead of a sort (O(n) per percentile); `values` is reordered.
void percentiles_in_place(std::span<double> values, std::span<const double> ps, std::span<double> out);
/// Coefficient of variation: population stddev / mean; 0 when the mean is 0.
[[nodiscard]] double coefficient_of_variation(std::span<const double> xs);
/// max / mean; 1 for an empty or all-zero vector (nothing is imbalanced).
[[nodiscard]] double max_over_mean(std::span<const double> xs);

/// A stream of non-negative values (inter-token latencies) summarised without keeping them all: the
/// values themselves up to `exact_limit`, so mean, std and percentiles are exact; past it they move
/// into a histogram of logarithmic bins 1e-5 wide (relative), whose percentiles lie within 0.001%
/// of the exact ones, while count, mean and std stay exact up to rounding. Memory: 8 bytes per value
/// up to the limit, then 8 bytes per bin spanned (about 1.4 million bins from 10 us to 10 s).
class StreamingSample {
 public:
  static constexpr std::size_t kDefaultExactLimit = std::size_t{1} << 20;
  static constexpr double kRelativeBinWidth = 1e-5;

  explicit StreamingSample(std::size_t exact_limit = kDefaultExactLimit) : exact_limit_(exact_limit) {}
  void add(double x);
  [[nodiscard]] std::size_t count() const { return count_; }
  [[nodiscard]] bool exact() const { return bins_.empty() && zeros_ == 0; }
  /// The values in arrival order while exact() (empty afterwards).
  [[nodiscard]] const std::vector<double>& values() const { return values_; }
  [[nodiscard]] double mean() const;
  [[nodiscard]] double stddev() const;
  /// As percentile_of (linear interpolation between order statistics).
  [[nodiscard]] double percentile(double p) const;

 private:
  void to_histogram();
  void bin(double x);
  [[nodiscard]] double order_statistic(std::uint64_t k) const;

  std::size_t exact_limit_;
  std::vector<double> values_;
  std::size_t count_ = 0;
  double sum_ = 0, sum_sq_ = 0;  ///< of the histogram's values
  std::uint64_t zeros_ = 0;      ///< histogram: values <= 0
  std::int64_t first_bin_ = 0;   ///< histogram: bin index of bins_[0]
  std::vector<std::uint64_t> bins_;
};

}  // namespace moesim
