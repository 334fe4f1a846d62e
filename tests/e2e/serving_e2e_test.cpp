// Serving end to end: preemption under a small KV cache, data-parallel routers, goodput and the
// latency definitions.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

TEST(Serving, a_small_kv_cache_preempts_and_every_request_still_finishes) {
  const auto out = scratch_dir("preempt") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set serving.gpu_memory_utilization=0.32 --out '" +
                                  out.string() + "'",
                              "preempt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"].get<int>(), 30);
  EXPECT_GT(s["serving"]["preemptions"].get<int>(), 0);
  EXPECT_GT(s["serving"]["recomputed_tokens"].get<int>(), 0);
  int preempted = 0;
  for (const auto& row : read_rows(out / "steps.csv")) {
    preempted += std::stoi(row.at("preempted"));
    EXPECT_LE(std::stol(row.at("kv_blocks_used")), s["serving"]["kv_blocks_per_attention_rank"].get<long>());
  }
  EXPECT_EQ(preempted, s["serving"]["preemptions"].get<int>());
}

TEST(Serving, prefill_tokens_are_conserved_when_kv_pressure_preempts_requests_mid_prefill) {
  // Long prompts, a KV cache of about 10 of them and a burst: sequences are preempted while their
  // chunked prefill is still running, and the run must still finish with its accounting closed.
  const auto out = scratch_dir("preempt-mid") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set serving.activation_reserve_gb=48 "
                              "--set serving.max_model_len=4096 --set workload.requests=40 --set workload.arrival.process=burst "
                              "--set workload.prompt_tokens.dist=fixed --set workload.prompt_tokens.value=2000 "
                              "--set workload.output_tokens.value=300 --set network.fidelity=analytic --out '" + out.string() + "'",
                              "preempt-mid");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"].get<int>(), 40);
  EXPECT_GT(s["serving"]["preemptions"].get<int>(), 0);
  std::int64_t prefilled = 0;
  for (const auto& row : read_rows(out / "steps.csv")) prefilled += std::stoll(row.at("prefill_tokens"));
  EXPECT_EQ(prefilled, 40 * 2000 + s["serving"]["recomputed_tokens"].get<std::int64_t>());
}

TEST(Serving, least_outstanding_router_balances_instances_within_one_request) {
  const auto out = scratch_dir("dp") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set cluster.gpus_per_node=8 --set parallel.dp=2 "
                              "--set parallel.dp_router=least_outstanding --set workload.requests=61 "
                              "--set workload.arrival.process=burst --out '" + out.string() + "'",
                              "dp");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, int> per_instance;
  for (const auto& row : read_rows(out / "requests.csv")) per_instance[row.at("instance")]++;
  ASSERT_EQ(per_instance.size(), 2u);
  EXPECT_LE(std::abs(per_instance["0"] - per_instance["1"]), 1);
}

TEST(Serving, disaggregated_prefill_moves_every_kv_cache_to_the_decode_pool) {
  const auto out = scratch_dir("pd") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set cluster.gpus_per_node=8 --set parallel.dp=2 "
                              "--set parallel.prefill_instances=1 --out '" + out.string() + "'",
                              "pd");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"].get<int>(), 30);
  EXPECT_EQ(s["serving"]["kv_transfers"].get<int>(), 30);  // every request has more than one output token
  // KV bytes: prompt tokens x 32 layers x 2 (K, V) x 8 KV heads x 128 x 2 bytes.
  EXPECT_DOUBLE_EQ(s["serving"]["kv_transfer_bytes"].get<double>(), s["total_input_tokens"].get<double>() * 32 * 2 * 8 * 128 * 2);
  EXPECT_GT(s["serving"]["mean_kv_transfer_ms"].get<double>(), 0.0);
  // Every request ends on the decode instance; the prefill instance only prefilled.
  for (const auto& row : read_rows(out / "requests.csv")) EXPECT_EQ(row.at("instance"), "1");
  for (const auto& row : read_rows(out / "steps.csv")) {
    if (row.at("instance") != "0") continue;
    EXPECT_EQ(row.at("decode_tokens"), "0");
  }
  const CliResult bad = run_cli("validate scenarios/quickstart.yaml --set cluster.gpus_per_node=8 --set parallel.dp=2 "
                                "--set parallel.prefill_instances=2", "pd-bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("parallel.prefill_instances: must leave at least one decode instance: < dp (2) (got 2)"), std::string::npos)
      << bad.err;
}

TEST(Serving, prefix_caching_skips_shared_prefixes_of_a_dataset) {
  const auto dir = scratch_dir("prefix");
  {
    std::ofstream f(dir / "prefix.jsonl");
    for (int i = 0; i < 24; ++i)
      f << "{\"prompt\": \"x\", \"domain\": \"programming\", \"prompt_tokens\": 600, \"output_tokens\": 16, "
        << "\"prefix_id\": \"system-" << i % 2 << "\", \"prefix_tokens\": 512}\n";
  }
  nlohmann::json s[2];
  for (int on = 0; on < 2; ++on) {
    const auto out = dir / ("run" + std::to_string(on));
    const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set workload.dataset='" + (dir / "prefix.jsonl").string() +
                                    "' --set workload.arrival.process=burst --set serving.prefix_caching=" + (on ? "true" : "false") +
                                    " --out '" + out.string() + "'",
                                "prefix");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    s[on] = nlohmann::json::parse(read_text(out / "summary.json"));
  }
  EXPECT_EQ(s[0]["serving"]["prefix_hit_tokens"].get<int>(), 0);
  // 24 requests over 2 prefixes: those admitted after their prefix was computed skip its 512 tokens
  // (requests admitted in the same step as the first of their prefix cannot).
  const int hits = s[1]["serving"]["prefix_hit_tokens"].get<int>();
  EXPECT_GT(hits, 0);
  EXPECT_LE(hits, 22 * 512);
  EXPECT_EQ(hits % 512, 0);
  EXPECT_LT(s[1]["mean_ttft_ms"].get<double>(), s[0]["mean_ttft_ms"].get<double>());
}

TEST(Serving, latency_metrics_follow_vllm_definitions) {
  const auto out = scratch_dir("metrics") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set workload.requests=12 --set slo.ttft_ms=20 "
                              "--set slo.tpot_ms=10.2 --out '" + out.string() + "'",
                              "metrics");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  std::vector<double> ttft, tpot;
  int good = 0;
  double first_arrival = 1e300, last_finish = 0;
  for (const auto& row : read_rows(out / "requests.csv")) {
    const double arrival = std::stod(row.at("arrival_s")), first = std::stod(row.at("first_token_s"));
    const double finish = std::stod(row.at("finish_s"));
    const int n = std::stoi(row.at("output_tokens"));
    EXPECT_NEAR(std::stod(row.at("ttft_ms")), (first - arrival) * 1e3, 1e-5);
    EXPECT_NEAR(std::stod(row.at("tpot_ms")), (finish - first) * 1e3 / (n - 1), 1e-5);
    EXPECT_NEAR(std::stod(row.at("e2e_ms")), (finish - arrival) * 1e3, 1e-5);
    ttft.push_back(std::stod(row.at("ttft_ms")));
    tpot.push_back(std::stod(row.at("tpot_ms")));
    good += ttft.back() <= 20 && tpot.back() <= 10.2;
    first_arrival = std::min(first_arrival, arrival);
    last_finish = std::max(last_finish, finish);
  }
  double mean = 0;
  for (double x : ttft) mean += x;
  EXPECT_NEAR(s["mean_ttft_ms"].get<double>(), mean / static_cast<double>(ttft.size()), 1e-4);
  EXPECT_NEAR(s["duration"].get<double>(), last_finish - first_arrival, 1e-8);
  EXPECT_EQ(s["requests_meeting_slo"].get<int>(), good);
  EXPECT_NEAR(s["request_goodput"].get<double>(), good / s["duration"].get<double>(), 1e-9);
  for (const char* k : {"p95_ttft_ms", "p95_tpot_ms", "p95_itl_ms", "p95_e2el_ms"}) EXPECT_TRUE(s.contains(k)) << k;
}

}  // namespace
}  // namespace moesim::test
