#pragma once
// Two-node lumped thermal network of one GPU: die -> heatsink -> inlet air.
//
//   C_d dT_d/dt = P − (T_d − T_s) / R_ds
//   C_s dT_s/dt = (T_d − T_s) / R_ds − (T_s − T_in) / R_si
// With x = T − T_in and constant power P over an interval this is dx/dt = A x + b P, solved
// exactly:  x(t) = x_ss + V e^{Λt} V⁻¹ (x(0) − x_ss),  x_ss = (P (R_ds + R_si), P R_si),
// A = V Λ V⁻¹ diagonalised once with Eigen (real, negative, distinct eigenvalues: the fast die
// and the slow sink time constants). The die temperature is then a constant plus two
// exponentials, so the exact time it crosses a threshold is found by bisection on each side of
// its single possible extremum — crossings are events, not found by stepping.
#include <optional>
#include <span>

#include <Eigen/Dense>

namespace moesim {

struct ThermalParams {
  double r_die_sink_k_per_w = 0.015;
  double r_sink_inlet_k_per_w = 0.05;
  double c_die_j_per_k = 70;
  double c_sink_j_per_k = 4000;
};

class RcThermal {
 public:
  struct State {
    double die = 0;   ///< K above inlet
    double sink = 0;  ///< K above inlet
  };

  explicit RcThermal(const ThermalParams& p);

  [[nodiscard]] State steady(double power_w) const;
  [[nodiscard]] State advance(const State& x0, double power_w, double dt_s) const;
  /// First t in (0, dt] where the die (K above inlet) reaches `level`, from either side.
  [[nodiscard]] std::optional<double> first_crossing(const State& x0, double power_w, double dt_s, double level) const;
  /// The earliest such t over several levels (the die's closed form is set up once).
  [[nodiscard]] std::optional<double> first_crossing(const State& x0, double power_w, double dt_s, std::span<const double> levels) const;
  /// The two time constants (s), fast first.
  [[nodiscard]] std::pair<double, double> time_constants() const;

 private:
  /// die(t) = ss + a1 e^{l1 t} + a2 e^{l2 t}
  void die_terms(const State& x0, double power_w, double& ss, double& a1, double& a2) const;

  Eigen::Matrix2d vectors_;
  Eigen::Matrix2d inverse_;
  Eigen::Vector2d lambda_;
  double r_ds_, r_si_;
};

}  // namespace moesim
