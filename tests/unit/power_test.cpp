// Power and thermal models: closed forms, exact crossings, caps, and calibration against the
// Splitwise phase powers.
#include <gtest/gtest.h>

#include <cmath>

#include "models/power/gpu_state.hpp"
#include "sim/exec/step_plan.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

GpuSpec gpu_card(const std::string& name) { return load_card<GpuSpec>(name); }

ThermalParams thermal_of(const GpuSpec& g) {
  return {g.thermal_r_die_sink_k_per_w, g.thermal_r_sink_inlet_k_per_w, g.thermal_c_die_j_per_k, g.thermal_c_sink_j_per_k};
}

/// Time-weighted average power of one GPU over a step plan at full clock and 45 degC.
double step_power(const StepPlan& plan, const PowerModel& pm, const FabricView& fabric) {
  double energy = 0, time = 0;
  for (const auto& ph : plan.phases) {
    if (ph.kind == PhaseKind::comm) {
      const double t = analytic_collective_seconds(ph.collective, fabric);
      energy += pm.power_w({0, 0, true}, pm.gpu().clock_max_mhz, 45) * t;
      time += t;
      continue;
    }
    const double t = ph.compute_s[0];
    const double f = pm.clock_for({ph.compute_util[0], ph.memory_util[0], false}, 45, pm.gpu().clock_max_mhz);
    energy += pm.power_w({ph.compute_util[0], ph.memory_util[0], false}, f, 45) * t;
    time += t;
  }
  return energy / time;
}

void expect_splitwise_phase_powers(const std::string& gpu, double prefill_w, double decode_w) {
  const Scenario sc = quickstart({"cluster.gpu=" + gpu});
  const ParallelLayout lay = make_layout(sc);
  StepPlanner planner(sc, lay, token_routers().get("uniform")(router_context(sc.model.spec, sc.workload.routing, 1, 0)));
  const PowerModel pm(sc.cluster.gpu.spec, sc.cluster.gpu.spec.tdp_w);
  const FabricView fabric{4, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
  Batch prefill;
  for (int i = 0; i < 4; ++i) prefill.items.push_back({i, 0, 2048, -1, 0, true, true});
  prefill.prefill_tokens = 8192;
  Batch decode;
  for (int i = 0; i < 32; ++i) decode.items.push_back({i, 0, 1, -1, 1000, false, true});
  decode.decode_tokens = 32;
  const double p_prefill = step_power(planner.plan(prefill), pm, fabric);
  const double p_decode = step_power(planner.plan(decode), pm, fabric);
  std::printf("%s Mixtral TP4: prefill step %.1f W, decode step %.1f W\n", gpu.c_str(), p_prefill, p_decode);
  EXPECT_NEAR(p_prefill, prefill_w, 0.1 * prefill_w) << gpu;
  EXPECT_NEAR(p_decode, decode_w, 0.1 * decode_w) << gpu;
}

// Splitwise (configs/power_model/constant.yaml), per GPU: H100-80GB prefill 700 W, decode 380 W;
// A100-80GB prefill 400 W, decode 250 W.
TEST(PowerCalibration, splitwise_phase_powers_for_h100_within_ten_percent) { expect_splitwise_phase_powers("h100-sxm", 700, 380); }
TEST(PowerCalibration, splitwise_phase_powers_for_a100_within_ten_percent) {
  expect_splitwise_phase_powers("a100-sxm4-80gb", 400, 250);
}

TEST(Thermal, constant_power_converges_to_inlet_plus_p_times_r_total) {
  const GpuSpec g = gpu_card("h100-sxm");
  const RcThermal th(thermal_of(g));
  const auto x = th.advance({}, 500.0, 1e5);
  EXPECT_NEAR(x.die, 500.0 * (g.thermal_r_die_sink_k_per_w + g.thermal_r_sink_inlet_k_per_w), 1e-6);
  EXPECT_NEAR(x.sink, 500.0 * g.thermal_r_sink_inlet_k_per_w, 1e-6);
}

TEST(Thermal, temperature_after_t_matches_the_closed_form) {
  // Closed form of the 2x2 system by hand: die(t) = ss + a1 e^{l1 t} + a2 e^{l2 t}.
  const ThermalParams p{0.02, 0.05, 50, 3000};
  const RcThermal th(p);
  const double P = 400;
  const double a = -1 / (p.r_die_sink_k_per_w * p.c_die_j_per_k), b = 1 / (p.r_die_sink_k_per_w * p.c_die_j_per_k);
  const double c = 1 / (p.r_die_sink_k_per_w * p.c_sink_j_per_k);
  const double d = -(1 / p.r_die_sink_k_per_w + 1 / p.r_sink_inlet_k_per_w) / p.c_sink_j_per_k;
  const double tr = a + d, det = a * d - b * c;
  const double l1 = tr / 2 - std::sqrt(tr * tr / 4 - det), l2 = tr / 2 + std::sqrt(tr * tr / 4 - det);
  const double ss_d = P * (p.r_die_sink_k_per_w + p.r_sink_inlet_k_per_w), ss_s = P * p.r_sink_inlet_k_per_w;
  // From x(0) = 0: die(t) = ss_d + A e^{l1 t} + B e^{l2 t} with A + B = -ss_d and
  // l1 A + l2 B = die'(0) = a(0 - ss_d) + b(0 - ss_s).
  const double dd0 = a * -ss_d + b * -ss_s;
  const double A = (dd0 - l2 * -ss_d) / (l1 - l2), B = -ss_d - A;
  for (double t : {0.01, 0.5, 3.0, 60.0, 600.0}) {
    const double expected = ss_d + A * std::exp(l1 * t) + B * std::exp(l2 * t);
    EXPECT_NEAR(th.advance({}, P, t).die, expected, 1e-6) << t;
  }
}

TEST(Thermal, throttle_event_fires_within_a_microsecond_of_the_analytic_crossing) {
  GpuSpec g = gpu_card("h100-sxm");
  const RcThermal th(thermal_of(g));
  const PowerModel pm(g, 2000.0);  // no cap in the way
  const double inlet = 45;
  GpuPowerState st(pm, th, inlet, {}, 0.0);
  st.set_activity({1.0, 0.3, false}, 0.0);
  const double p = st.power_w();
  // Reference crossing: bisection on the closed form, independent of first_crossing.
  double lo = 0, hi = 1e4;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (inlet + th.advance({}, p, mid).die < g.temp_slowdown_sw_c ? lo : hi) = mid;
  }
  st.advance_to(hi + 5.0);
  ASSERT_GE(st.samples().size(), 2u);
  const GpuSample* change = nullptr;
  for (const auto& s : st.samples())
    if (s.state == ThrottleState::sw_slowdown && change == nullptr) change = &s;
  ASSERT_NE(change, nullptr);
  EXPECT_NEAR(change->time_s, hi, 1e-6);
  EXPECT_NEAR(change->temp_die_c, g.temp_slowdown_sw_c, 1e-3);
}

TEST(Thermal, an_inlet_change_keeps_temperatures_continuous_and_moves_the_steady_state_with_it) {
  const GpuSpec g = gpu_card("h100-sxm");
  const RcThermal th(thermal_of(g));
  const PowerModel pm(g, 2000.0);
  GpuPowerState st(pm, th, 30.0, {}, 0.0);
  st.set_activity({0.2, 0.5, false}, 0.0);
  st.advance_to(20.0);
  const double die_before = st.die_c();
  st.set_inlet(40.0, 20.0);
  EXPECT_DOUBLE_EQ(st.inlet_c(), 40.0);
  EXPECT_NEAR(st.die_c(), die_before, 1e-9);  // absolute temperature is continuous
  EXPECT_DOUBLE_EQ(st.max_inlet_c(), 40.0);
  // From there the die follows the RC solution towards the new inlet + P R_total (the power moves
  // a little with leakage: compare with the power in effect at the end).
  st.advance_to(20.0 + 5e4);
  const double r_total = g.thermal_r_die_sink_k_per_w + g.thermal_r_sink_inlet_k_per_w;
  EXPECT_NEAR(st.die_c(), 40.0 + st.power_w() * r_total, 0.02 * st.power_w() * r_total);
  // A change requested for a time the state has already passed applies from the state's own time.
  const double t_state = st.time_s();
  st.set_inlet(35.0, t_state - 10.0);
  EXPECT_DOUBLE_EQ(st.time_s(), t_state);
  EXPECT_DOUBLE_EQ(st.max_inlet_c(), 40.0);
  // Energy stays the integral of power across inlet changes.
  GpuPowerState a(pm, th, 30.0, {}, 0.0), b(pm, th, 30.0, {}, 0.0);
  a.set_activity({0.5, 0.5, false}, 0.0);
  b.set_activity({0.5, 0.5, false}, 0.0);
  b.set_inlet(30.0, 3.0);  // no change: nothing moves
  a.advance_to(10.0);
  b.advance_to(10.0);
  EXPECT_DOUBLE_EQ(a.energy_j(), b.energy_j());
}

TEST(Power, a_cap_lowers_power_below_it_and_stretches_compute_bound_time_by_the_clock_ratio) {
  const GpuSpec g = gpu_card("h100-sxm");
  const PowerModel uncapped(g, g.tdp_w), capped(g, 400.0);
  const Activity busy{1.0, 0.2, false};
  const double f_full = uncapped.clock_for(busy, 45, g.clock_max_mhz);
  const double f_cap = capped.clock_for(busy, 45, g.clock_max_mhz);
  EXPECT_LE(capped.power_w(busy, f_cap, 45), 400.0);
  EXPECT_GT(capped.power_w(busy, f_cap + g.clock_step_mhz, 45), 400.0);  // the highest bin that fits
  EXPECT_LT(f_cap, f_full);
  // A purely compute-bound phase stretches by f_max / f; a memory-bound one does not.
  Phase ph = Phase::compute(PhaseKind::moe, 1);
  ph.set(0, RankWork{0.010, 0.010, 0.010, 0.002});
  EXPECT_NEAR(ph.seconds_at(0, g.clock_max_mhz / f_cap), 0.010 * g.clock_max_mhz / f_cap, 1e-12);
  ph.set(0, RankWork{0.010, 0.0, 0.001, 0.010});
  EXPECT_NEAR(ph.seconds_at(0, g.clock_max_mhz / f_cap), 0.010, 1e-12);
}

TEST(Power, energy_is_the_integral_of_piecewise_constant_power) {
  const GpuSpec g = gpu_card("h100-sxm");
  GpuPowerState st(PowerModel(g, g.tdp_w), RcThermal(thermal_of(g)), 25, {}, 0.0);
  st.set_activity({0.9, 0.3, false}, 0.0);
  const double p1 = st.power_w();
  st.set_activity({0.0, 0.9, false}, 0.002);
  const double p2 = st.power_w();
  st.advance_to(0.005);
  EXPECT_NEAR(st.energy_j(), p1 * 0.002 + p2 * 0.003, 1e-12);
}

TEST(Thermal, a_gpu_that_starts_past_a_threshold_is_in_that_thresholds_state_at_once) {
  const GpuSpec g = gpu_card("h100-sxm");
  const RcThermal th(thermal_of(g));
  const PowerModel pm(g, g.tdp_w);
  const double inlet = 40;
  // Die (K above inlet) just past each level; the sink below it so that the die is not rising.
  const auto starting_at = [&](double die_c) { return RcThermal::State{die_c - inlet, die_c - inlet - 5}; };
  GpuPowerState below(pm, th, inlet, starting_at(g.temp_slowdown_sw_c - 1), 0.0);
  EXPECT_EQ(below.state(), ThrottleState::none);
  GpuPowerState sw(pm, th, inlet, starting_at(g.temp_slowdown_sw_c + 0.5), 0.0);
  EXPECT_EQ(sw.state(), ThrottleState::sw_slowdown);
  EXPECT_LT(sw.clock_mhz(), g.clock_max_mhz);
  GpuPowerState hw(pm, th, inlet, starting_at(g.temp_slowdown_hw_c + 0.5), 0.0);
  EXPECT_EQ(hw.state(), ThrottleState::hw_slowdown);
  EXPECT_LT(hw.clock_mhz(), sw.clock_mhz());
  GpuPowerState dead(pm, th, inlet, starting_at(g.temp_shutdown_c + 0.5), 0.0);
  EXPECT_EQ(dead.state(), ThrottleState::shutdown);
  ASSERT_TRUE(dead.failed_at().has_value());
  EXPECT_EQ(*dead.failed_at(), 0.0);
  // One sample at t = 0, in the state the GPU is in, not one per level passed through.
  ASSERT_EQ(hw.samples().size(), 1u);
  EXPECT_EQ(hw.samples()[0].state, ThrottleState::hw_slowdown);
  // Throttled time accrues from the start, and the clock recovers once the die cools below the
  // release point.
  hw.advance_to(600.0);
  EXPECT_GT(hw.throttled_s(ThrottleState::hw_slowdown), 0.0);
  EXPECT_EQ(hw.state(), ThrottleState::none);
}

TEST(Power, gpus_csv_interval_means_integrate_to_the_energy_when_samples_are_sparse) {
  const GpuSpec g = gpu_card("h100-sxm");
  GpuPowerState st(PowerModel(g, g.tdp_w), RcThermal(thermal_of(g)), 25, {}, 1.0);  // a sample at most every 1 s
  double t = 0;
  for (int i = 0; i < 2000; ++i) {
    st.set_activity({(i % 3) * 0.45, 0.2 + (i % 5) * 0.15, false}, t);
    t += 0.0013 * (1 + i % 7);
  }
  st.advance_to(t);
  const auto& s = st.samples();
  ASSERT_GT(s.size(), 5u);
  const std::vector<double> mean = interval_mean_power_w(s, st.time_s(), st.energy_j());
  double integral = 0, held = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const double t1 = i + 1 < s.size() ? s[i + 1].time_s : st.time_s();
    integral += mean[i] * (t1 - s[i].time_s);
    held += s[i].power_w * (t1 - s[i].time_s);
  }
  EXPECT_NEAR(integral, st.energy_j(), 1e-9 * st.energy_j());
  // The power held at each sample does not integrate to the energy here (the reason for means).
  EXPECT_GT(std::fabs(held - st.energy_j()), 1e-3 * st.energy_j());
}

}  // namespace
}  // namespace moesim::test
