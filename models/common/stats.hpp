#pragma once
// Summary statistics with the conventions of vLLM's serving benchmark (numpy): population
// standard deviation and linearly interpolated percentiles.
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
/// Coefficient of variation: population stddev / mean; 0 when the mean is 0.
[[nodiscard]] double coefficient_of_variation(std::span<const double> xs);
/// max / mean; 1 for an empty or all-zero vector (nothing is imbalanced).
[[nodiscard]] double max_over_mean(std::span<const double> xs);

}  // namespace moesim
