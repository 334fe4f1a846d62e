// Calibration against the ML.ENERGY Leaderboard v3.0 (anchors README, section "Energy per token
// (ML.ENERGY Leaderboard v3.0, github.com/ml-energy/leaderboard, vLLM 0.11.1)"): median ITL
// (issue 3) and, where listed, J per output token and W per GPU (issue 6), each within 15%.
//
// Each case runs the moesim binary on a scenario of tests/calibration/scenarios (the workload and
// serving assumptions are written there) with max_num_seqs = batch and 4 x batch requests sent at
// once, and measures the run as ML.ENERGY's benchmark does (calibration.hpp: steady state between
// the batch-th and the (N - batch)-th first token; median ITL over the whole run).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/calibration/calibration.hpp"
#include "tests/e2e/cli_runner.hpp"

namespace moesim::calibration {
namespace {

constexpr double kTolerancePct = 15.0;
constexpr const char* kFamily = "mlenergy";
constexpr const char* kSource =
    "anchors README: Energy per token (ML.ENERGY Leaderboard v3.0, github.com/ml-energy/leaderboard, vLLM 0.11.1)";

struct Case {
  std::string name;      ///< test name
  std::string anchor;    ///< row label
  std::string scenario;  ///< under tests/calibration/scenarios
  int batch = 0, gpus = 1;
  double itl_ms = 0, watts = 0, joules_per_token = 0, tokens_per_s = 0;  ///< published
  bool energy_rows = true;  ///< issue 6 lists J/token and W for this case
  bool slow = false;        ///< a minute or more: only with MOESIM_CALIBRATION_FULL=1
  Expectation itl = within_tolerance(), power = within_tolerance(), energy = within_tolerance();
  std::string extra_sets;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

std::vector<Case> cases() {
  const std::string q30 = "mlenergy_qwen3_30b_a3b.yaml", q30ep = "mlenergy_qwen3_30b_a3b_ep2.yaml",
                    q235 = "mlenergy_qwen3_235b_a22b_fp8_ep8.yaml";
  std::vector<Case> v;
  auto add = [&](std::string name, std::string anchor, const std::string& sc, int b, int g, double itl, double w, double j, double tps,
                 bool energy_rows, bool slow) {
    Case c;
    c.name = std::move(name);
    c.anchor = std::move(anchor);
    c.scenario = sc;
    c.batch = b;
    c.gpus = g;
    c.itl_ms = itl;
    c.watts = w;
    c.joules_per_token = j;
    c.tokens_per_s = tps;
    c.energy_rows = energy_rows;
    c.slow = slow;
    v.push_back(std::move(c));
  };
  add("qwen3_30b_1xh100_b8", "Qwen3-30B-A3B 1xH100 batch 8", q30, 8, 1, 12.9, 399, 0.6531, 611, true, false);
  add("qwen3_30b_1xh100_b32", "Qwen3-30B-A3B 1xH100 batch 32", q30, 32, 1, 22.6, 468, 0.3357, 1394, true, false);
  add("qwen3_30b_1xh100_b64", "Qwen3-30B-A3B 1xH100 batch 64", q30, 64, 1, 28.9, 480, 0.2218, 2164, true, false);
  add("qwen3_30b_1xh100_b96", "Qwen3-30B-A3B 1xH100 batch 96", q30, 96, 1, 32.1, 494, 0.1859, 2659, true, false);
  add("qwen3_30b_2xh100_ep2_b8", "Qwen3-30B-A3B 2xH100 EP2 batch 8", q30ep, 8, 2, 9.4, 342, 0.8230, 831, true, false);
  add("qwen3_30b_2xh100_ep2_b64", "Qwen3-30B-A3B 2xH100 EP2 batch 64", q30ep, 64, 2, 18.7, 447, 0.2719, 3290, true, false);
  add("qwen3_30b_2xh100_ep2_b256", "Qwen3-30B-A3B 2xH100 EP2 batch 256", q30ep, 256, 2, 34.6, 477, 0.1335, 7154, true, true);
  add("qwen3_235b_fp8_8xh100_ep8_b8", "Qwen3-235B-A22B-FP8 8xH100 EP8 batch 8", q235, 8, 8, 24.7, 450, 11.3896, 316, false, true);
  add("qwen3_235b_fp8_8xh100_ep8_b64", "Qwen3-235B-A22B-FP8 8xH100 EP8 batch 64", q235, 64, 8, 34.7, 466, 2.1160, 1761, true, true);
  add("qwen3_235b_fp8_8xh100_ep8_b128", "Qwen3-235B-A22B-FP8 8xH100 EP8 batch 128", q235, 128, 8, 42.1, 484, 1.3641, 2840, true, true);
  return v;
}

class MlEnergy : public ::testing::TestWithParam<Case> {};

TEST_P(MlEnergy, median_itl_power_and_energy_per_token_within_tolerance) {
  const Case& c = GetParam();
  if (c.slow) MOESIM_CALIBRATION_SLOW_ROW();
  const auto out = test::scratch_dir("calibration-" + c.name) / "run";
  std::string args = catalog_option() + "run tests/calibration/scenarios/" + c.scenario + " --quiet --out '" + out.string() +
                           "' --set serving.max_num_seqs=" + std::to_string(c.batch) +
                           " --set workload.requests=" + std::to_string(4 * c.batch) + " " + c.extra_sets;
  for (const auto& set : family_sets(kFamily)) args += " --set '" + set + "'";
  const test::CliResult r = test::run_cli(args, c.name);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const SteadyState s = measure_steady_state(out, c.batch, c.gpus);
  std::printf("%s: steady state %.1f s, %.0f output tokens, mean running %.1f, %.0f tok/s (published %.0f)\n", c.name.c_str(),
              s.seconds, s.output_tokens, s.mean_running, s.output_tokens_per_s, c.tokens_per_s);
  ASSERT_GT(s.seconds, 0) << "no steady state in " << out;
  check({kFamily, c.anchor, kSource, "median ITL", "ms", c.itl_ms, s.median_itl_ms, kTolerancePct, c.itl});
  if (c.energy_rows) {
    check({kFamily, c.anchor, kSource, "J per output token", "J", c.joules_per_token, s.joules_per_output_token, kTolerancePct, c.energy});
    check({kFamily, c.anchor, kSource, "power per GPU", "W", c.watts, s.power_w_per_gpu, kTolerancePct, c.power});
  }
  std::filesystem::remove_all(out.parent_path());
}

INSTANTIATE_TEST_SUITE_P(Calibration, MlEnergy, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
}  // namespace moesim::calibration
