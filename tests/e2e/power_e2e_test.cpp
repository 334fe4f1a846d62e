// Power, thermal and energy end to end.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <map>
#include <sstream>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

nlohmann::json run_summary(const std::string& args, const std::filesystem::path& out, const std::string& tag) {
  const CliResult r = run_cli("run " + args + " --quiet --out '" + out.string() + "'", tag);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(read_text(out / "summary.json"));
}

/// Integral of the step function a gpus.csv describes, per GPU.
std::map<int, double> integrate_gpus_csv(const std::filesystem::path& csv_path) {
  std::stringstream csv(read_text(csv_path));
  std::string line;
  std::getline(csv, line);
  std::map<int, std::pair<double, double>> last;  // gpu -> (time, power)
  std::map<int, double> integral;
  while (std::getline(csv, line)) {
    std::stringstream ls(line);
    std::vector<std::string> f;
    for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
    const int g = std::stoi(f[1]);
    const double t = std::stod(f[0]), p = std::stod(f[2]);
    if (last.count(g)) integral[g] += last[g].second * (t - last[g].first);
    last[g] = {t, p};
  }
  return integral;
}

TEST(Energy, gpus_csv_integrates_to_each_gpus_energy) {
  const auto out = scratch_dir("energy") / "run";
  const auto s = run_summary("scenarios/quickstart.yaml --set workload.requests=6 --set outputs.gpus_csv_interval_s=0 "
                             "--set parallel.mode=ep",
                             out, "energy");
  std::stringstream csv(read_text(out / "gpus.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "time_s,gpu,power_w,temp_die_c,temp_sink_c,clock_mhz,throttle_state,compute_util,mem_util,inlet_c");
  auto integral = integrate_gpus_csv(out / "gpus.csv");
  ASSERT_EQ(integral.size(), 4u);
  for (const auto& gpu : s["energy"]["per_gpu"]) {
    const int g = gpu["gpu"].get<int>();
    // The CSV rounds power to 1e-4 W: compare to that precision.
    EXPECT_NEAR(integral[g], gpu["energy_j"].get<double>(), 1e-4 * s["duration"].get<double>() * 2 + 1e-6) << g;
  }
  const auto& e = s["energy"];
  EXPECT_NEAR(e["joules_per_output_token"].get<double>(), e["total_energy_j"].get<double>() / s["total_output_tokens"].get<double>(), 1e-9);
  // Requests carry the step energy, split by token share.
  double request_energy = 0;
  for (const auto& row : read_rows(out / "requests.csv")) request_energy += std::stod(row.at("energy_j"));
  EXPECT_NEAR(request_energy, e["step_energy_j"].get<double>(), 1e-3);
}

TEST(Energy, sparse_gpus_csv_rows_carry_interval_mean_power_and_integrate_to_the_energy) {
  // The thermal scenario samples every 0.5 s while power changes every step: held power would
  // misstate energy; the interval means integrate to it (to the CSV's 1e-4 W rounding).
  const auto out = scratch_dir("energy-sparse") / "run";
  const auto s = run_summary("scenarios/thermal_stress.yaml --set workload.requests=400", out, "energy-sparse");
  const auto integral = integrate_gpus_csv(out / "gpus.csv");
  ASSERT_EQ(integral.size(), 8u);
  for (const auto& gpu : s["energy"]["per_gpu"]) {
    const int g = gpu["gpu"].get<int>();
    EXPECT_NEAR(integral.at(g), gpu["energy_j"].get<double>(), 1e-4 * s["run"]["simulated_end_s"].get<double>() + 1e-6) << g;
  }
}

TEST(Thermal, a_gpu_that_starts_above_its_slowdown_temperature_throttles_from_the_start) {
  // inlet 62 degC and the steady state of 400 W: the dies start at 88 degC, past SW slowdown (87).
  const auto out = scratch_dir("hot-start") / "run";
  const auto s = run_summary("scenarios/thermal_stress.yaml --set workload.requests=300 --set thermal.inlet_c=62 "
                             "--set thermal.initial=steady_power --set thermal.initial_power_w=400",
                             out, "hot-start");
  EXPECT_LT(s["energy"]["max_temp_c"].get<double>(), 92.0);
  for (const auto& gpu : s["energy"]["per_gpu"]) EXPECT_GT(gpu["throttled_sw_s"].get<double>() + gpu["throttled_hw_s"].get<double>(), 0.0);
  const auto rows = read_rows(out / "gpus.csv");
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(std::stod(rows.front().at("time_s")), 0.0);
  EXPECT_EQ(rows.front().at("throttle_state"), "sw_slowdown");
  // A steady state past the shutdown temperature is refused before anything runs.
  const CliResult r = run_cli("run scenarios/thermal_stress.yaml --set thermal.initial=steady_power --set thermal.initial_power_w=100000 "
                              "--quiet --out '" + (out.parent_path() / "dead").string() + "'",
                              "hot-start-dead");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("thermal.initial_power_w"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("shutdown temperature 92"), std::string::npos) << r.err;
}

TEST(Thermal, hot_sustained_load_throttles_and_a_cap_prevents_it) {
  const auto base = scratch_dir("thermal");
  const std::string shorter = "scenarios/thermal_stress.yaml --set workload.requests=4000";
  const auto hot = run_summary(shorter, base / "hot", "thermal-hot");
  const auto capped = run_summary(shorter + " --set power.cap_w=400", base / "capped", "thermal-capped");
  EXPECT_GT(hot["energy"]["throttled_s"].get<double>(), 10.0);
  EXPECT_GE(hot["energy"]["max_temp_c"].get<double>(), 87.0);  // reached SW slowdown
  EXPECT_LT(hot["energy"]["max_temp_c"].get<double>(), 92.0);  // throttling kept it below shutdown
  EXPECT_LE(capped["energy"]["peak_power_w"].get<double>(), 400.0 + 1e-6);
  EXPECT_LT(capped["energy"]["max_temp_c"].get<double>(), hot["energy"]["max_temp_c"].get<double>());
}

TEST(Thermal, recirculation_raises_each_nodes_inlet_by_k_times_its_lagged_power) {
  const auto base = scratch_dir("recirculation");
  // 8 GPUs on one node under sustained load; the lag (5 s) settles well within the run.
  const std::string load = "scenarios/thermal_stress.yaml --set workload.requests=1500 --set thermal.inlet_c=35 "
                           "--set thermal.recirculation_tau_s=5";
  const auto off = run_summary(load, base / "off", "recirc-off");
  const auto on = run_summary(load + " --set thermal.recirculation_k_per_kw=2", base / "on", "recirc-on");
  EXPECT_DOUBLE_EQ(off["energy"]["max_inlet_c"].get<double>(), 35.0);
  double node_peak = 0, node_avg = 0;
  for (const auto& g : on["energy"]["per_gpu"]) {
    node_peak += g["peak_power_w"].get<double>();
    node_avg += g["avg_power_w"].get<double>();
  }
  const double inlet = on["energy"]["max_inlet_c"].get<double>();
  // The lagged node power lies between the run's mean and the sum of the GPUs' peaks.
  EXPECT_GE(inlet, 35.0 + 2.0 * node_avg / 1000.0 * 0.95);
  EXPECT_LE(inlet, 35.0 + 2.0 * node_peak / 1000.0 + 1e-9);
  for (const auto& g : on["energy"]["per_gpu"]) EXPECT_DOUBLE_EQ(g["max_inlet_c"].get<double>(), inlet);
  // gpus.csv records every inlet change in its last column.
  std::stringstream csv(read_text(base / "on" / "gpus.csv"));
  std::string line;
  std::getline(csv, line);
  ASSERT_EQ(line.substr(line.rfind(',') + 1), "inlet_c");
  double csv_max = 0;
  int changes = 0;
  while (std::getline(csv, line)) {
    const double v = std::stod(line.substr(line.rfind(',') + 1));
    changes += v > 35.0 ? 1 : 0;
    csv_max = std::max(csv_max, v);
  }
  EXPECT_NEAR(csv_max, inlet, 1e-4);
  EXPECT_GT(changes, 8 * 40);  // every GPU, about every 0.5 s (tau / 10) for 50 s
  // The hotter air heats the dies (over 50 s, a fraction of the heatsink's ~200 s time constant,
  // so by less than the inlet rose).
  const double rise = on["energy"]["max_temp_c"].get<double>() - off["energy"]["max_temp_c"].get<double>();
  EXPECT_GT(rise, 1.0);
  EXPECT_LT(rise, inlet - 35.0);
}

TEST(Thermal, a_gpu_reaching_its_shutdown_temperature_ends_the_run_with_a_clear_error) {
  const auto out = scratch_dir("shutdown") / "run";
  const CliResult r = run_cli("run scenarios/thermal_stress.yaml --set workload.requests=3000 --set thermal.inlet_c=68 --quiet --out '" +
                                  out.string() + "'",
                              "shutdown");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("shut down at"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the work in flight is lost"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no outputs were written"), std::string::npos);
  // The outputs (steps.csv streams while the run goes) are staged beside the folder: a failed run
  // leaves neither a folder that looks like a result nor its staging folder.
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& e : std::filesystem::directory_iterator(out.parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".staging-"), std::string::npos) << e.path();
}

TEST(Thermal, bad_inlet_cap_and_recirculation_settings_are_rejected_naming_field_and_range) {
  const CliResult r = run_cli("validate scenarios/quickstart.yaml --set thermal.inlet_c=95 --set power.cap_w=100 "
                              "--set thermal.recirculation_k_per_kw=-1 --set thermal.recirculation_tau_s=0",
                              "inlet");
  EXPECT_EQ(r.exit_code, 2);
  // An inlet at or above any card's shutdown temperature (92 degC) is outside the field's range.
  EXPECT_NE(r.err.find("thermal.inlet_c: must be in [-20, 80] (got 95)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("thermal.recirculation_k_per_kw: must be in [0, 100] (got -1)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("thermal.recirculation_tau_s: must be"), std::string::npos) << r.err;
  const CliResult cap = run_cli("validate scenarios/quickstart.yaml --set power.cap_w=100", "cap");
  EXPECT_EQ(cap.exit_code, 2);
  EXPECT_NE(cap.err.find("power.cap_w: must be in [200, 700] W for a h100-sxm (got 100)"), std::string::npos) << cap.err;
  const CliResult over = run_cli("validate scenarios/quickstart.yaml --set power.cap_w=900", "cap-over");
  EXPECT_EQ(over.exit_code, 2);
  EXPECT_NE(over.err.find("power.cap_w: must be in [200, 700] W for a h100-sxm (got 900)"), std::string::npos) << over.err;
}

}  // namespace
}  // namespace moesim::test
