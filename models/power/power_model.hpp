#pragma once
// GPU power as a function of what the GPU is doing, its clock and its temperature.
//
//   P = P_idle + g(f) · (u_c · P_compute + u_m · P_memory + c · P_comm) + P_leak(T)
//   g(f)      = (f / f_max) · (V(f) / V_max)²,   V(f) linear from V_min at f_min to V_max at f_max
//               (dynamic CMOS power ∝ f·V²)
//   u_c, u_m  = the running kernel's compute and HBM utilisation from the roofline
//               (time at the achievable FLOP rate, resp. bandwidth, over the kernel's time)
//   c         = 1 while the GPU sits in a collective (communication kernels keep SMs polling)
//   P_leak(T) = L_ref · (exp(β (T − T_ref)) − 1): leakage above what idle power already holds
//               at the reference temperature (HotSpot's exponential model, β = 0.036 /K prior)
// A power cap picks the highest clock bin whose predicted power fits (like nvidia-smi -pl); a
// thermal throttle state caps the clock further (SW slowdown: a fraction of f_max; HW slowdown:
// half). A kernel's compute-bound time stretches as f_max / f, its memory-bound time does not.
// Every parameter is on the GPU card, with its source or marked an estimate.
#include <string>

#include "models/gpu/gpu_spec.hpp"

namespace moesim {

enum class ThrottleState { none, sw_slowdown, hw_slowdown, shutdown };
[[nodiscard]] const char* to_string(ThrottleState s);

/// What a GPU is doing during an interval.
struct Activity {
  double compute_util = 0;  ///< u_c in [0, 1]
  double memory_util = 0;   ///< u_m in [0, 1]
  bool communicating = false;
};

class PowerModel {
 public:
  PowerModel(const GpuSpec& gpu, double cap_w);

  [[nodiscard]] double power_w(const Activity& a, double clock_mhz, double temp_c) const;
  /// Highest clock bin <= limit whose power for `a` at `temp_c` fits the cap (f_min if none does).
  [[nodiscard]] double clock_for(const Activity& a, double temp_c, double limit_mhz) const;
  /// Clock limit of a throttle state.
  [[nodiscard]] double clock_limit(ThrottleState s) const;
  [[nodiscard]] double dynamic_scale(double clock_mhz) const;
  [[nodiscard]] double cap_w() const { return cap_w_; }
  [[nodiscard]] const GpuSpec& gpu() const { return gpu_; }

 private:
  GpuSpec gpu_;
  double cap_w_;
};

}  // namespace moesim
