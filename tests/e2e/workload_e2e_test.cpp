// Workload features end to end: profiler files, gate-log replay, closed-loop arrivals, datasets.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

std::string first_line_of(const std::filesystem::path& p) {
  const std::string s = read_text(p);
  return s.substr(0, s.find('\n'));
}

TEST(ProfilerFiles, headers_match_the_expert_profiler_exactly) {
  const auto out = scratch_dir("prof") / "run";
  const CliResult r = run_cli("run scenarios/domain_skew.yaml --quiet --set workload.requests=4 --out '" + out.string() + "'", "prof");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto dir = out / "moe_expert_tracking";
  EXPECT_EQ(first_line_of(dir / "moe_expert_activations.csv"), "layer_idx,expert_id,activation_count,percentage");
  EXPECT_EQ(first_line_of(dir / "moe_expert_coselection.csv"), "layer_idx,expert_id_1,expert_id_2,coselection_count");
  EXPECT_EQ(first_line_of(dir / "moe_routing_weights_hist.csv"), "layer_idx,token_idx,expert_id,weight");
  EXPECT_EQ(first_line_of(dir / "moe_load_imbalance.csv"), "layer_idx,timestamp_sec,std_dev,max_min_ratio");
  EXPECT_EQ(first_line_of(out / "experts.csv"), "layer,expert,gpu,tokens,share");
  const auto summary = nlohmann::json::parse(read_text(dir / "moe_summary.json"));
  ASSERT_TRUE(summary.contains("layer_0"));
  for (const char* key : {"num_experts", "top_k", "total_activations", "unique_experts_activated", "activation_coverage_pct",
                          "mean_activations_per_expert", "std_dev_activations", "min_activations", "max_activations",
                          "load_balance_ratio"})
    EXPECT_TRUE(summary["layer_0"].contains(key)) << key;
  EXPECT_EQ(summary["layer_0"]["total_activations"].get<long>() % 2, 0);  // top-2
}

TEST(GateLogs, written_then_replayed_give_identical_counts) {
  const auto base = scratch_dir("replay");
  const std::string common = "--quiet --set workload.requests=10 --set parallel.mode=ep ";
  const CliResult a = run_cli("run scenarios/domain_skew.yaml " + common + "--out '" + (base / "a").string() + "'", "replay-a");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const CliResult b = run_cli("run scenarios/domain_skew.yaml " + common + "--set workload.routing.model=trace --set workload.routing.trace='" +
                                  (base / "a" / "gate_logs").string() + "' --out '" + (base / "b").string() + "'",
                              "replay-b");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto ga = nlohmann::json::parse(read_text(base / "a/gate_logs/gate_logs_0.json"));
  const auto gb = nlohmann::json::parse(read_text(base / "b/gate_logs/gate_logs_0.json"));
  ASSERT_EQ(ga["steps"].size(), gb["steps"].size());
  for (std::size_t i = 0; i < ga["steps"].size(); ++i)
    EXPECT_EQ(ga["steps"][i]["expert_counts"], gb["steps"][i]["expert_counts"]) << "step " << i;
  // Identical expert loads give identical expert compute (the token-to-expert pairing, and so the
  // dispatch traffic, may differ: the replay reproduces counts, not pairings).
  auto columns = [](const std::string& csv) {
    std::vector<std::string> rows;
    std::stringstream in(csv);
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> f;
      std::stringstream ls(line);
      for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
      rows.push_back(f[9] + "," + f[12] + "," + f[13] + "," + f[14]);  // moe_ms and the three load columns
    }
    return rows;
  };
  EXPECT_EQ(columns(read_text(base / "a/steps.csv")), columns(read_text(base / "b/steps.csv")));
}

TEST(Arrivals, closed_loop_never_exceeds_max_concurrency) {
  const auto out = scratch_dir("closed") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set workload.requests=20 --set workload.arrival.process=closed_loop "
                              "--set workload.arrival.max_concurrency=3 --out '" + out.string() + "'", "closed");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::stringstream csv(read_text(out / "requests.csv"));
  std::string line;
  std::getline(csv, line);
  std::vector<std::pair<double, int>> events;  // (time, +1 sent / -1 finished)
  int rows = 0;
  while (std::getline(csv, line)) {
    std::stringstream ls(line);
    std::vector<std::string> f;
    for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
    events.push_back({std::stod(f[5]), -1});
    events.push_back({std::stod(f[2]), +1});
    ++rows;
  }
  EXPECT_EQ(rows, 20);
  std::sort(events.begin(), events.end());  // at equal times a finish (-1) frees its slot first
  int in_flight = 0, peak = 0;
  for (const auto& [t, d] : events) peak = std::max(peak, in_flight += d);
  EXPECT_EQ(peak, 3);
}

TEST(Datasets, a_shipped_dataset_drives_lengths_and_domains) {
  const auto out = scratch_dir("dsrun") / "run";
  const CliResult r = run_cli("run scenarios/domain_skew.yaml --quiet --out '" + out.string() + "'", "dsrun");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"].get<int>(), 30);
  EXPECT_EQ(s["total_output_tokens"].get<int>(), 30 * 256);
  // A single-domain dataset under domain affinity is measurably skewed.
  EXPECT_GT(s["imbalance"]["cv_aggregated"].get<double>(), 0.1);
}

TEST(Datasets, bad_lines_are_reported_with_file_line_and_field) {
  const auto dir = scratch_dir("dsbad");
  {
    std::ofstream f(dir / "bad.jsonl");
    f << "{\"domain\": \"cooking\", \"prompt_tokens\": 5, \"output_tokens\": 8}\n"
      << "{\"domain\": \"cooking\", \"prompt_tokens\": 0, \"output_tokens\": 8}\n";
  }
  const CliResult r = run_cli("validate scenarios/domain_skew.yaml --set workload.dataset='" + (dir / "bad.jsonl").string() + "'", "dsbad");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "error: " + (dir / "bad.jsonl").string() + ":2: prompt_tokens: must be an integer >= 1 (got 0)");
}

TEST(Datasets, unknown_domain_in_the_mix_is_rejected) {
  const CliResult r = run_cli("validate scenarios/quickstart.yaml --set 'workload.domains={cookng: 1}'", "dom");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find(';')),
            "error: --set workload.domains={cookng: 1}: workload.domains: unknown domain \"cookng\" (did you mean \"cooking\"?)");
}

}  // namespace
}  // namespace moesim::test
