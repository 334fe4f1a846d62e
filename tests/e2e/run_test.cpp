// End-to-end runs of the CLI on the shipped scenarios.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

struct RunFiles {
  int exit_code = -1;
  std::string requests, steps, summary, config;
  std::string err;
};

RunFiles run_scenario(const std::string& scenario, const std::string& sets, const std::string& tag) {
  const auto out = scratch_dir("run-" + tag);
  const CliResult r = run_cli("run " + scenario + " --quiet --out '" + out.string() + "' " + sets, tag);
  RunFiles f;
  f.exit_code = r.exit_code;
  f.err = r.err;
  f.requests = read_text(out / "requests.csv");
  f.steps = read_text(out / "steps.csv");
  f.summary = read_text(out / "summary.json");
  f.config = read_text(out / "config.resolved.yaml");
  std::filesystem::remove_all(out);
  return f;
}

std::size_t count_lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

class QuickstartMode : public ::testing::TestWithParam<const char*> {};

TEST_P(QuickstartMode, completes_every_request_and_requests_in_equal_requests_out) {
  const std::string mode = GetParam();
  const RunFiles f = run_scenario("scenarios/quickstart.yaml", "--set parallel.mode=" + mode, "mode-" + mode);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  const auto summary = nlohmann::json::parse(f.summary);
  EXPECT_EQ(summary["completed"].get<int>(), 30);
  EXPECT_EQ(count_lines(f.requests), 31u);  // header + one row per request
  EXPECT_EQ(summary["run"]["mode"].get<std::string>(), mode);
  EXPECT_GT(summary["mean_ttft_ms"].get<double>(), 0.0);
  EXPECT_GT(summary["mean_tpot_ms"].get<double>(), 0.0);
  EXPECT_GT(summary["output_throughput"].get<double>(), 0.0);
  // 30 requests x 256 output tokens each.
  EXPECT_EQ(summary["total_output_tokens"].get<int>(), 30 * 256);
  for (const char* key : {"request_throughput", "total_token_throughput", "median_ttft_ms", "p99_ttft_ms", "std_tpot_ms",
                          "mean_itl_ms", "mean_e2el_ms", "duration", "total_input_tokens"})
    EXPECT_TRUE(summary.contains(key)) << key;
}

INSTANTIATE_TEST_SUITE_P(Modes, QuickstartMode, ::testing::Values("tp", "ep"));

TEST(Determinism, different_seed_changes_outputs) {
  const RunFiles a = run_scenario("scenarios/quickstart.yaml", "--set seed=1", "seed-1");
  const RunFiles b = run_scenario("scenarios/quickstart.yaml", "--set seed=2", "seed-2");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(a.requests, b.requests);
  EXPECT_NE(a.steps, b.steps);
}

TEST(Determinism, resolved_config_reproduces_the_run) {
  const auto dir = scratch_dir("resolved");
  const RunFiles a = run_scenario("scenarios/quickstart.yaml", "--set parallel.mode=ep --set workload.requests=12", "res-a");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  {
    std::ofstream f(dir / "quickstart.yaml");
    f << a.config;
  }
  const RunFiles b = run_scenario((dir / "quickstart.yaml").string(), "", "res-b");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.requests, b.requests);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.config, b.config);
}

TEST(NetworkFidelity, flow_and_analytic_collectives_agree_within_one_percent) {
  for (const char* mode : {"tp", "ep"}) {
    const std::string base = std::string("--set parallel.mode=") + mode + " --set workload.requests=10";
    const RunFiles flow = run_scenario("scenarios/quickstart.yaml", base + " --set network.fidelity=flow", "flow");
    const RunFiles analytic = run_scenario("scenarios/quickstart.yaml", base + " --set network.fidelity=analytic", "analytic");
    ASSERT_EQ(flow.exit_code, 0) << flow.err;
    ASSERT_EQ(analytic.exit_code, 0) << analytic.err;
    const auto f = nlohmann::json::parse(flow.summary);
    const auto a = nlohmann::json::parse(analytic.summary);
    const double fc = f["step_time_breakdown"]["comm_s"].get<double>();
    const double ac = a["step_time_breakdown"]["comm_s"].get<double>();
    EXPECT_GT(fc, 0.0) << mode;
    EXPECT_NEAR(fc, ac, 0.01 * ac) << mode;
    EXPECT_NEAR(f["duration"].get<double>(), a["duration"].get<double>(), 0.01 * a["duration"].get<double>()) << mode;
  }
}

TEST(Scenarios, every_shipped_scenario_validates) {
  std::string files;
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir / "scenarios"))
    if (entry.path().extension() == ".yaml") files += " scenarios/" + entry.path().filename().string();
  ASSERT_FALSE(files.empty());
  const CliResult r = run_cli("validate" + files, "scenarios");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST(Cli, list_models_prints_every_model_card) {
  const CliResult r = run_cli("list models", "list-models");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::size_t cards = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir / "models/llm/cards"))
    cards += entry.path().extension() == ".yaml" ? 1 : 0;
  EXPECT_EQ(count_lines(r.out), cards);
  EXPECT_NE(r.out.find("mixtral-8x7b"), std::string::npos);
  EXPECT_NE(r.out.find("deepseek-v3"), std::string::npos);
  EXPECT_NE(r.out.find("llama-3.1-8b"), std::string::npos);  // dense models are cards too
  EXPECT_EQ(r.out.find("invalid card"), std::string::npos);
}

TEST(Cli, list_gpus_and_interconnects_print_every_card) {
  const CliResult g = run_cli("list gpus", "list-gpus");
  EXPECT_EQ(g.exit_code, 0);
  EXPECT_EQ(count_lines(g.out), 7u);
  EXPECT_EQ(g.out.find("invalid card"), std::string::npos);
  const CliResult i = run_cli("list interconnects", "list-ic");
  EXPECT_EQ(i.exit_code, 0);
  EXPECT_EQ(count_lines(i.out), 8u);
  EXPECT_EQ(i.out.find("invalid card"), std::string::npos);
}

TEST(Cli, run_prints_summary_table_and_output_location) {
  const auto out = scratch_dir("table") / "q";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --set workload.requests=4 --out '" + out.string() + "'", "table");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("requests completed"), std::string::npos);
  EXPECT_NE(r.out.find("ttft (ms)"), std::string::npos);
  EXPECT_NE(r.out.find("tpot (ms)"), std::string::npos);
  EXPECT_NE(r.out.find("output tokens/s"), std::string::npos);
  EXPECT_NE(r.out.find("outputs: " + out.string()), std::string::npos);
}

}  // namespace
}  // namespace moesim::test
