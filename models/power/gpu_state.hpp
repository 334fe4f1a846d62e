#pragma once
// The power and thermal state of one GPU, advanced lazily between simulation events.
//
// Power is piecewise constant: it changes only when the GPU's activity changes (set_activity) or
// its throttle state changes. Between changes, energy grows by P·Δt and the temperatures follow
// the exact RC solution; a throttle threshold crossed inside an interval is found at its exact
// time (RcThermal::first_crossing), the state changes there and the rest of the interval is
// integrated in the new state. Leakage is evaluated at the temperature when the power level is
// set (it changes by a fraction of a percent over one kernel).
//
// Throttle states (thresholds from the card, hysteresis on the way down):
//   none --T >= slowdown_sw--> sw_slowdown --T >= slowdown_hw--> hw_slowdown --T >= shutdown--> shutdown
//   leaving a state needs T < threshold − hysteresis; shutdown is final (the GPU has failed).
// The state is a function of the temperature, not only of crossings: a GPU created at, or moved
// by an inlet change to, a temperature past a threshold is in that threshold's state at once.
#include <functional>
#include <optional>
#include <vector>

#include "models/power/power_model.hpp"
#include "models/thermal/rc_thermal.hpp"

namespace moesim {

struct GpuSample {
  double time_s;
  double power_w;
  double temp_die_c;
  double temp_sink_c;
  double clock_mhz;
  ThrottleState state;
  double compute_util;
  double memory_util;
  double inlet_c;
  double energy_j;  ///< the GPU's energy consumed up to time_s
};

/// Mean power of each sample's interval (to the next sample, the last one to `end_s` with the
/// GPU's energy `end_energy_j`): a step function of these integrates exactly to the energy, which
/// the power held at each sample does not when samples are sparser than power changes. A sample
/// whose interval is empty keeps its instantaneous power.
[[nodiscard]] std::vector<double> interval_mean_power_w(const std::vector<GpuSample>& samples, double end_s, double end_energy_j);

class GpuPowerState {
 public:
  /// initial: temperatures above inlet at t = 0.
  GpuPowerState(const PowerModel& power, const RcThermal& thermal, double inlet_c, RcThermal::State initial,
                double sample_interval_s);

  /// Advances to `now` with the current power, then switches to `a` (the clock is chosen by the
  /// cap and the throttle state).
  void set_activity(const Activity& a, double now);
  /// Advances to `now` without changing the activity.
  void advance_to(double now);
  /// Changes the inlet temperature from `now` (or from the state's own time, if later): the die
  /// and sink temperatures stay continuous, their rise above the new inlet follows from there.
  void set_inlet(double inlet_c, double now);
  [[nodiscard]] double inlet_c() const { return inlet_c_; }
  [[nodiscard]] double max_inlet_c() const { return max_inlet_c_; }
  /// Time from the last update until the die reaches the next throttle threshold (up or down) at
  /// the current power, if within `horizon`.
  [[nodiscard]] std::optional<double> time_to_next_threshold(double horizon) const;

  [[nodiscard]] double clock_mhz() const { return clock_; }
  [[nodiscard]] double clock_ratio() const { return power_.gpu().clock_max_mhz / clock_; }  ///< f_max / f
  [[nodiscard]] ThrottleState state() const { return state_; }
  [[nodiscard]] double power_w() const { return power_w_; }
  [[nodiscard]] double energy_j() const { return energy_j_; }
  [[nodiscard]] double die_c() const { return inlet_c_ + x_.die; }
  [[nodiscard]] double sink_c() const { return inlet_c_ + x_.sink; }
  [[nodiscard]] double max_die_c() const { return max_die_c_; }
  [[nodiscard]] double peak_power_w() const { return peak_power_w_; }
  [[nodiscard]] double time_s() const { return t_; }
  [[nodiscard]] double throttled_s(ThrottleState s) const { return throttled_s_[static_cast<int>(s)]; }
  [[nodiscard]] std::optional<double> failed_at() const { return failed_at_; }
  [[nodiscard]] const std::vector<GpuSample>& samples() const { return samples_; }

 private:
  void integrate(double dt);  ///< constant power, no threshold inside
  void change_state(ThrottleState s);
  /// Moves to the throttle state the die temperature is in (several levels at once if need be).
  void settle_state();
  void choose_clock_and_power();
  void sample(bool force);
  [[nodiscard]] double next_up_level() const;
  [[nodiscard]] double next_down_level() const;

  PowerModel power_;
  RcThermal thermal_;
  double inlet_c_;
  RcThermal::State x_;
  double sample_interval_s_;
  double t_ = 0;
  Activity activity_;
  double clock_;
  double power_w_ = 0;
  ThrottleState state_ = ThrottleState::none;
  double energy_j_ = 0;
  double max_die_c_ = 0, peak_power_w_ = 0, max_inlet_c_ = 0;
  double throttled_s_[4] = {0, 0, 0, 0};
  std::optional<double> failed_at_;
  std::vector<GpuSample> samples_;
  double last_sample_t_ = -1e300;
};

}  // namespace moesim
