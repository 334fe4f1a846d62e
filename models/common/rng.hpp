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

  [[nodiscard]] std::uint64_t next_u64() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  /// Uniform in [0, 1), 53 random bits.
  [[nodiscard]] double uniform01() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform integer in [0, n), unbiased (Lemire, "Fast Random Integer Generation in an
  /// Interval", 2019).
  [[nodiscard]] std::uint64_t uniform_index(std::uint64_t n) {
    __extension__ typedef unsigned __int128 uint128;
    uint128 m = static_cast<uint128>(next_u64()) * n;
    auto low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<uint128>(next_u64()) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }
  /// Standard normal by Box-Muller (both variates used).
  [[nodiscard]] double standard_normal();
  /// Exponential with the given rate (events per unit), mean 1/rate.
  [[nodiscard]] double exponential(double rate);

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
  double spare_normal_ = 0.0;
  bool has_spare_normal_ = false;
};

/// 64-bit FNV-1a of a string, used to turn component paths into stream ids.
[[nodiscard]] std::uint64_t fnv1a64(std::string_view text);

/// The seed of one serving instance's streams: the scenario seed for instance 0, a distinct one
/// (golden-ratio multiple of the instance mixed in) for every other, so that data-parallel
/// instances do not repeat each other's draws.
[[nodiscard]] constexpr std::uint64_t instance_seed(std::uint64_t seed, int instance) {
  return instance == 0 ? seed : seed ^ (0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(instance));
}

}  // namespace moesim
