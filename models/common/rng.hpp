#pragma once
// Reproducible random streams.
//
// Every component draws from its own stream, derived from (scenario seed, component path) so that
// adding a draw in one component never shifts the numbers another component sees. The generator
// is xoshiro256** (Blackman & Vigna), seeded through SplitMix64; the distributions are written out
// here rather than taken from <random>, whose distribution algorithms differ between standard
// libraries, so that the same seed gives the same numbers on every platform.
#include <cstdint>
#include <string_view>

namespace moesim {

class RngStream {
 public:
  RngStream(std::uint64_t seed, std::string_view component_path);

  [[nodiscard]] std::uint64_t next_u64();
  /// Uniform in [0, 1), 53 random bits.
  [[nodiscard]] double uniform01();
  /// Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject).
  [[nodiscard]] std::uint64_t uniform_index(std::uint64_t n);
  /// Standard normal by Box-Muller (both variates used).
  [[nodiscard]] double standard_normal();
  /// Exponential with the given rate (events per unit), mean 1/rate.
  [[nodiscard]] double exponential(double rate);

 private:
  std::uint64_t state_[4];
  double spare_normal_ = 0.0;
  bool has_spare_normal_ = false;
};

/// 64-bit FNV-1a of a string, used to turn component paths into stream ids.
[[nodiscard]] std::uint64_t fnv1a64(std::string_view text);

}  // namespace moesim
