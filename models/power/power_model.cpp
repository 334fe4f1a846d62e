#include "models/power/power_model.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

const char* to_string(ThrottleState s) {
  switch (s) {
    case ThrottleState::none: return "none";
    case ThrottleState::sw_slowdown: return "sw_slowdown";
    case ThrottleState::hw_slowdown: return "hw_slowdown";
    case ThrottleState::shutdown: return "shutdown";
  }
  return "?";
}

PowerModel::PowerModel(const GpuSpec& gpu, double cap_w) : gpu_(gpu), cap_w_(cap_w) {}

double PowerModel::dynamic_scale(double f) const {
  const double span = gpu_.clock_max_mhz - gpu_.clock_min_mhz;
  const double v = span > 0 ? gpu_.voltage_min_v + (gpu_.voltage_max_v - gpu_.voltage_min_v) * (f - gpu_.clock_min_mhz) / span
                            : gpu_.voltage_max_v;
  const double rv = v / gpu_.voltage_max_v;
  return (f / gpu_.clock_max_mhz) * rv * rv;
}

double PowerModel::power_w(const Activity& a, double clock_mhz, double temp_c) const {
  const double dynamic = dynamic_scale(clock_mhz) * (a.compute_util * gpu_.power_compute_w + a.memory_util * gpu_.power_memory_w +
                                                      (a.communicating ? gpu_.power_comm_w : 0.0));
  const double leak = gpu_.leakage_ref_w * (std::exp(gpu_.leakage_beta_per_k * (temp_c - gpu_.leakage_ref_temp_c)) - 1.0);
  return gpu_.idle_w + dynamic + std::max(leak, -gpu_.leakage_ref_w);
}

double PowerModel::clock_for(const Activity& a, double temp_c, double limit_mhz) const {
  const double step = std::max(1.0, gpu_.clock_step_mhz);
  double f = std::min(limit_mhz, gpu_.clock_max_mhz);
  f = gpu_.clock_min_mhz + std::floor((f - gpu_.clock_min_mhz) / step + 1e-9) * step;
  while (f > gpu_.clock_min_mhz && power_w(a, f, temp_c) > cap_w_) f -= step;
  return std::max(f, gpu_.clock_min_mhz);
}

double PowerModel::clock_limit(ThrottleState s) const {
  switch (s) {
    case ThrottleState::none: return gpu_.clock_max_mhz;
    case ThrottleState::sw_slowdown: return gpu_.clock_max_mhz * gpu_.sw_slowdown_clock_fraction;
    case ThrottleState::hw_slowdown: return gpu_.clock_max_mhz * 0.5;
    case ThrottleState::shutdown: return 0.0;
  }
  return gpu_.clock_max_mhz;
}

}  // namespace moesim
