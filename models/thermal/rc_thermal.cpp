#include "models/thermal/rc_thermal.hpp"

#include <Eigen/Eigenvalues>
#include <array>
#include <cmath>

namespace moesim {

RcThermal::RcThermal(const ThermalParams& p) : r_ds_(p.r_die_sink_k_per_w), r_si_(p.r_sink_inlet_k_per_w) {
  Eigen::Matrix2d a;
  a << -1.0 / (p.r_die_sink_k_per_w * p.c_die_j_per_k), 1.0 / (p.r_die_sink_k_per_w * p.c_die_j_per_k),
      1.0 / (p.r_die_sink_k_per_w * p.c_sink_j_per_k),
      -(1.0 / p.r_die_sink_k_per_w + 1.0 / p.r_sink_inlet_k_per_w) / p.c_sink_j_per_k;
  Eigen::EigenSolver<Eigen::Matrix2d> es(a);
  lambda_ = es.eigenvalues().real();
  vectors_ = es.eigenvectors().real();
  if (lambda_(0) > lambda_(1)) {  // fast (most negative) first
    std::swap(lambda_(0), lambda_(1));
    vectors_.col(0).swap(vectors_.col(1));
  }
  inverse_ = vectors_.inverse();
}

RcThermal::State RcThermal::steady(double p) const { return {p * (r_ds_ + r_si_), p * r_si_}; }

RcThermal::State RcThermal::advance(const State& x0, double p, double dt) const {
  const State ss = steady(p);
  const Eigen::Vector2d w = inverse_ * Eigen::Vector2d(x0.die - ss.die, x0.sink - ss.sink);
  const Eigen::Vector2d e(std::exp(lambda_(0) * dt) * w(0), std::exp(lambda_(1) * dt) * w(1));
  const Eigen::Vector2d x = vectors_ * e;
  return {ss.die + x(0), ss.sink + x(1)};
}

void RcThermal::die_terms(const State& x0, double p, double& ss, double& a1, double& a2) const {
  const State s = steady(p);
  const Eigen::Vector2d w = inverse_ * Eigen::Vector2d(x0.die - s.die, x0.sink - s.sink);
  ss = s.die;
  a1 = vectors_(0, 0) * w(0);
  a2 = vectors_(0, 1) * w(1);
}

std::optional<double> RcThermal::first_crossing(const State& x0, double p, double dt, double level) const {
  return first_crossing(x0, p, dt, std::span<const double>(&level, 1));
}

std::optional<double> RcThermal::first_crossing(const State& x0, double p, double dt, std::span<const double> levels) const {
  double ss = 0, a1 = 0, a2 = 0;
  die_terms(x0, p, ss, a1, a2);
  const double l1 = lambda_(0), l2 = lambda_(1);
  auto die = [&](double t) { return ss + a1 * std::exp(l1 * t) + a2 * std::exp(l2 * t); };
  // die(t) is monotone on each side of the one point where its derivative may vanish: split
  // [0, dt] there and evaluate the ends once for every level.
  std::array<double, 3> cuts{0.0, dt, dt};
  std::size_t pieces = 1;
  if (a1 * l1 != 0.0) {
    const double arg = -a2 * l2 / (a1 * l1);
    if (arg > 0 && l1 != l2) {
      const double t = std::log(arg) / (l1 - l2);
      if (t > 0 && t < dt) {
        cuts[1] = t;
        pieces = 2;
      }
    }
  }
  std::array<double, 3> at{ss + a1 + a2, die(cuts[1]), pieces == 2 ? die(dt) : 0.0};
  std::optional<double> best;
  for (const double level : levels) {
    for (std::size_t i = 0; i < pieces; ++i) {
      double lo = cuts[i], hi = cuts[i + 1];
      if (best && lo >= *best) break;
      double glo = at[i] - level;
      const double ghi = at[i + 1] - level;
      if (i == 0 && glo == 0.0) glo = die(lo + 1e-15) - level;
      if ((glo < 0) == (ghi < 0) && ghi != 0.0) continue;
      for (int it = 0; it < 200 && hi - lo > 1e-12; ++it) {
        const double mid = 0.5 * (lo + hi);
        const double gm = die(mid) - level;
        if ((gm < 0) == (glo < 0)) {
          lo = mid;
          glo = gm;
        } else {
          hi = mid;
        }
      }
      if (!best || hi < *best) best = hi;
      break;
    }
  }
  return best;
}

std::pair<double, double> RcThermal::time_constants() const { return {-1.0 / lambda_(0), -1.0 / lambda_(1)}; }

}  // namespace moesim
