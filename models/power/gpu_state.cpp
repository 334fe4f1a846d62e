#include "models/power/gpu_state.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace moesim {

GpuPowerState::GpuPowerState(const PowerModel& power, const RcThermal& thermal, double inlet_c, RcThermal::State initial,
                             double sample_interval_s)
    : power_(power), thermal_(thermal), inlet_c_(inlet_c), x_(initial), sample_interval_s_(sample_interval_s),
      clock_(power.gpu().clock_max_mhz) {
  max_die_c_ = die_c();
  max_inlet_c_ = inlet_c_;
  choose_clock_and_power();
  settle_state();
  sample(true);
}

void GpuPowerState::settle_state() {
  // Thresholds are states: a die at or above a level is in its state whatever the history (a GPU
  // that starts hot, or whose inlet jumps), and one below a level's release point leaves it.
  for (;;) {
    if (state_ == ThrottleState::shutdown) return;
    if (die_c() >= next_up_level()) {
      change_state(static_cast<ThrottleState>(static_cast<int>(state_) + 1));
    } else if (die_c() < next_down_level()) {
      change_state(static_cast<ThrottleState>(static_cast<int>(state_) - 1));
    } else {
      return;
    }
  }
}

void GpuPowerState::choose_clock_and_power() {
  if (state_ == ThrottleState::shutdown) {
    power_w_ = 0;
    return;
  }
  clock_ = power_.clock_for(activity_, die_c(), power_.clock_limit(state_));
  power_w_ = power_.power_w(activity_, clock_, die_c());
  peak_power_w_ = std::max(peak_power_w_, power_w_);
}

void GpuPowerState::sample(bool force) {
  if (!force && t_ - last_sample_t_ < sample_interval_s_) return;
  const GpuSample s{t_, power_w_, die_c(), sink_c(), clock_, state_, activity_.compute_util, activity_.memory_util, inlet_c_, energy_j_};
  // Several changes at one instant leave one sample: the state in effect from then on.
  if (!samples_.empty() && samples_.back().time_s == t_) {
    samples_.back() = s;
  } else {
    samples_.push_back(s);
  }
  last_sample_t_ = t_;
}

std::vector<double> interval_mean_power_w(const std::vector<GpuSample>& samples, double end_s, double end_energy_j) {
  std::vector<double> mean(samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double t1 = i + 1 < samples.size() ? samples[i + 1].time_s : end_s;
    const double e1 = i + 1 < samples.size() ? samples[i + 1].energy_j : end_energy_j;
    const double dt = t1 - samples[i].time_s;
    mean[i] = dt > 0 ? (e1 - samples[i].energy_j) / dt : samples[i].power_w;
  }
  return mean;
}

double GpuPowerState::next_up_level() const {
  const auto& g = power_.gpu();
  switch (state_) {
    case ThrottleState::none: return g.temp_slowdown_sw_c;
    case ThrottleState::sw_slowdown: return g.temp_slowdown_hw_c;
    case ThrottleState::hw_slowdown: return g.temp_shutdown_c;
    case ThrottleState::shutdown: return std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::infinity();
}

double GpuPowerState::next_down_level() const {
  const auto& g = power_.gpu();
  switch (state_) {
    case ThrottleState::sw_slowdown: return g.temp_slowdown_sw_c - g.throttle_hysteresis_c;
    case ThrottleState::hw_slowdown: return g.temp_slowdown_hw_c - g.throttle_hysteresis_c;
    default: return -std::numeric_limits<double>::infinity();
  }
}

std::optional<double> GpuPowerState::time_to_next_threshold(double horizon) const {
  if (state_ == ThrottleState::shutdown || horizon <= 0) return std::nullopt;
  std::array<double, 2> levels{};
  std::size_t count = 0;
  for (double level : {next_up_level(), next_down_level()})
    if (std::isfinite(level)) levels[count++] = level - inlet_c_;
  if (count == 0) return std::nullopt;
  return thermal_.first_crossing(x_, power_w_, horizon, std::span<const double>(levels.data(), count));
}

void GpuPowerState::integrate(double dt) {
  if (dt <= 0) return;
  energy_j_ += power_w_ * dt;
  throttled_s_[static_cast<int>(state_)] += dt;
  const auto next = thermal_.advance(x_, power_w_, dt);
  max_die_c_ = std::max({max_die_c_, inlet_c_ + next.die});
  x_ = next;
  t_ += dt;
}

void GpuPowerState::change_state(ThrottleState s) {
  state_ = s;
  if (s == ThrottleState::shutdown && !failed_at_) failed_at_ = t_;
  choose_clock_and_power();
  sample(true);
}

void GpuPowerState::advance_to(double now) {
  while (now > t_ + 1e-15) {
    const double horizon = now - t_;
    const auto cross = time_to_next_threshold(horizon);
    if (!cross) {
      integrate(horizon);
      break;
    }
    integrate(*cross);
    const double up = next_up_level(), down = next_down_level();
    const double die = die_c();
    if (std::fabs(die - up) <= std::fabs(die - down)) {
      change_state(static_cast<ThrottleState>(static_cast<int>(state_) + 1));
    } else {
      change_state(static_cast<ThrottleState>(static_cast<int>(state_) - 1));
    }
    settle_state();
    if (state_ == ThrottleState::shutdown) {
      integrate(now - t_);
      break;
    }
  }
  sample(false);
}

void GpuPowerState::set_activity(const Activity& a, double now) {
  advance_to(now);
  const bool changed = a.compute_util != activity_.compute_util || a.memory_util != activity_.memory_util ||
                       a.communicating != activity_.communicating;
  activity_ = a;
  const double before = power_w_;
  choose_clock_and_power();
  if (changed || power_w_ != before) sample(false);
}

void GpuPowerState::set_inlet(double inlet_c, double now) {
  advance_to(std::max(now, t_));
  const double shift = inlet_c - inlet_c_;
  if (shift == 0) return;
  x_.die -= shift;
  x_.sink -= shift;
  inlet_c_ = inlet_c;
  max_inlet_c_ = std::max(max_inlet_c_, inlet_c_);
  sample(true);
  // Leakage follows the die temperature, which has not moved; the thresholds relative to the
  // inlet have.
}

}  // namespace moesim
