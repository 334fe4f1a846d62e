// Trace replay end to end: the shipped Azure and Mooncake excerpts run as workloads, and what
// the run replays is checked against independent counts from the files themselves.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

struct AzureLine {
  double offset_s;  // seconds after the file's first line (one day: the excerpt spans 10 minutes)
  int prompt, output;
};

std::vector<AzureLine> azure_lines(double window_s) {
  std::ifstream in(std::string(MOESIM_SOURCE_DIR) + "/datasets/traces/azure_code_2023_excerpt.csv");
  std::string line;
  std::getline(in, line);  // header
  std::vector<AzureLine> out;
  double first = -1;
  while (std::getline(in, line)) {
    // 2023-11-16 18:17:03.9799600,4808,10
    const double t = std::stod(line.substr(11, 2)) * 3600 + std::stod(line.substr(14, 2)) * 60 + std::stod(line.substr(17, 10));
    if (first < 0) first = t;
    if (t - first >= window_s) break;
    const auto c1 = line.find(','), c2 = line.find(',', c1 + 1);
    out.push_back({t - first, std::stoi(line.substr(c1 + 1, c2 - c1 - 1)), std::stoi(line.substr(c2 + 1))});
  }
  return out;
}

TEST(Trace, an_azure_window_replays_every_request_of_the_file_at_its_recorded_time) {
  const auto out = scratch_dir("trace_azure") / "run";
  const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.trace.duration_s=60 --out '" + out.string() + "'",
                              "trace_azure");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = azure_lines(60);
  const auto rows = read_rows(out / "requests.csv");
  ASSERT_EQ(rows.size(), lines.size());
  ASSERT_GT(rows.size(), 10u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_NEAR(std::stod(rows[i].at("arrival_s")), lines[i].offset_s, 1e-6) << i;
    EXPECT_EQ(std::stoi(rows[i].at("prompt_tokens")), lines[i].prompt) << i;
    EXPECT_EQ(std::stoi(rows[i].at("output_tokens")), lines[i].output) << i;
  }
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"].get<std::size_t>(), lines.size());
  EXPECT_EQ(s["trace"]["requests_in_window"].get<std::size_t>(), lines.size());
}

TEST(Trace, the_time_series_counts_each_intervals_arrivals_from_the_file_and_sums_to_the_runs_totals) {
  const auto out = scratch_dir("trace_series") / "run";
  const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.trace.duration_s=60 "
                              "--set outputs.timeseries_interval_s=5 --out '" + out.string() + "'",
                              "trace_series");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The independent count: the file's lines per 5 s of its own clock.
  std::vector<int> arrivals, prompt;
  for (const auto& l : azure_lines(60)) {
    const auto k = static_cast<std::size_t>(l.offset_s / 5);
    if (k >= arrivals.size()) arrivals.resize(k + 1), prompt.resize(k + 1);
    arrivals[k] += 1;
    prompt[k] += l.prompt;
  }
  const auto rows = read_rows(out / "timeseries.csv");
  ASSERT_GE(rows.size(), arrivals.size());
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  double output = 0, hits = 0, energy = 0, seconds = 0;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const auto& row = rows[k];
    const double dt = std::stod(row.at("interval_s"));
    EXPECT_NEAR(std::stod(row.at("time_s")), 5.0 * static_cast<double>(k), 1e-9);
    const int want = k < arrivals.size() ? arrivals[k] : 0;
    EXPECT_EQ(std::stoi(row.at("arrivals")), want) << "interval " << k;
    EXPECT_NEAR(std::stod(row.at("arrival_rate_per_s")), want / dt, 1e-5) << k;
    EXPECT_NEAR(std::stod(row.at("arrived_prompt_tokens_per_s")) * dt, k < prompt.size() ? prompt[k] : 0, 1e-2) << k;
    EXPECT_EQ(row.at("mean_ttft_ms").empty(), want == 0) << "latency is reported for intervals with arrivals only: " << k;
    output += std::stod(row.at("output_tokens_per_s")) * dt;
    hits += std::stod(row.at("prefix_hit_tokens_per_s")) * dt;
    energy += std::stod(row.at("power_w")) * dt;
    seconds += dt;
  }
  EXPECT_NEAR(output, s["total_output_tokens"].get<double>(), 1e-2);
  EXPECT_NEAR(hits, s["serving"]["prefix_hit_tokens"].get<double>(), 1e-2);
  EXPECT_NEAR(energy, s["energy"]["total_energy_j"].get<double>(), 1e-6 * s["energy"]["total_energy_j"].get<double>());
  EXPECT_NEAR(seconds, s["duration"].get<double>(), 1e-5);
  EXPECT_EQ(rows.back().at("in_flight"), "0");  // every request finished by the run's end
  EXPECT_EQ(rows.back().at("waiting"), "0");
  EXPECT_DOUBLE_EQ(s["timeseries"]["interval_s"].get<double>(), 5.0);
}

TEST(Trace, a_drifting_domain_mix_follows_the_traces_own_clock_whatever_the_speedup) {
  // Programming until 30 s of the trace's clock, cooking from 30.001 s: at speedup 2 the switch
  // is at 15 s of simulated time.
  const std::string drift = "--set workload.domains={} --set 'workload.domain_drift.points=[{at_s: 0, domains: {programming: 1}}, "
                            "{at_s: 30, domains: {programming: 1}}, {at_s: 30.001, domains: {cooking: 1}}]' ";
  for (const double speedup : {1.0, 2.0}) {
    const auto out = scratch_dir("trace_drift") / ("run" + std::to_string(static_cast<int>(speedup)));
    const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.trace.duration_s=60 " + drift +
                                "--set workload.trace.speedup=" + std::to_string(speedup) + " --out '" + out.string() + "'",
                                "trace_drift");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    int before = 0, after = 0;
    for (const auto& row : read_rows(out / "requests.csv")) {
      const double trace_clock = std::stod(row.at("arrival_s")) * speedup;
      if (trace_clock < 30) {
        EXPECT_EQ(row.at("domain"), "programming") << trace_clock;
        ++before;
      } else if (trace_clock > 30.001) {
        EXPECT_EQ(row.at("domain"), "cooking") << trace_clock;
        ++after;
      }
    }
    EXPECT_GT(before, 5);
    EXPECT_GT(after, 5);
  }
  const CliResult order = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.domains={} "
                                  "--set 'workload.domain_drift.points=[{at_s: 10}, {at_s: 5}]' --out /dev/null",
                                  "trace_drift");
  EXPECT_EQ(order.exit_code, 2);
  EXPECT_NE(order.err.find("workload.domain_drift.points: point 1: at_s 5 must be greater than the previous point's 10"),
            std::string::npos) << order.err;
  const CliResult name = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.domains={} "
                                 "--set 'workload.domain_drift.points=[{at_s: 10, domains: {cookin: 1}}]' --out /dev/null",
                                 "trace_drift");
  EXPECT_EQ(name.exit_code, 2);
  EXPECT_NE(name.err.find("workload.domain_drift.points"), std::string::npos) << name.err;
  EXPECT_NE(name.err.find("did you mean \"cooking\""), std::string::npos) << name.err;
  const CliResult both = run_cli("run scenarios/trace_azure_code.yaml --quiet "
                                 "--set 'workload.domain_drift.points=[{at_s: 0, domains: {cooking: 1}}]' --out /dev/null",
                                 "trace_drift");
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("give workload.domains or workload.domain_drift, not both"), std::string::npos) << both.err;
}

struct FixtureCount {
  int requests = 0;
  double prompt = 0, output = 0, unbounded = 0;  ///< unbounded: 16-token hash ids (bailian)
};

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::size_t from = 0;
  for (std::size_t c; (c = line.find(',', from)) != std::string::npos; from = c + 1) out.push_back(line.substr(from, c - from));
  out.push_back(line.substr(from));
  return out;
}

/// The independent count over one of tests/e2e/traces/: the publisher's columns read directly.
FixtureCount fixture_count(const std::string& format, const std::string& group = "") {
  std::ifstream in(std::string(MOESIM_SOURCE_DIR) + "/tests/e2e/traces/" + format + (format == "burstgpt" || format == "splitwise" ? ".csv" : ".jsonl"));
  std::string line;
  FixtureCount c;
  std::set<std::int64_t> seen;
  if (format == "burstgpt" || format == "splitwise") std::getline(in, line);
  while (std::getline(in, line)) {
    double prompt = 0, output = 0;
    if (format == "burstgpt") {  // Timestamp,Model,Request tokens,Response tokens,...
      const auto f = split_csv(line);
      if (std::stoi(f[3]) == 0 || (!group.empty() && f[1] != group)) continue;  // failed requests dropped
      prompt = std::stod(f[2]), output = std::stod(f[3]);
    } else if (format == "splitwise") {  // ...,arrival_timestamp,batch_size,prompt_size,token_size
      const auto f = split_csv(line);
      prompt = std::stod(f[5]), output = std::stod(f[6]);
    } else {
      const auto j = nlohmann::json::parse(line);
      const bool bailian = format == "bailian";
      prompt = j[bailian ? "input_length" : "prompt_tokens"].get<double>();
      output = j[bailian ? "output_length" : "output_tokens"].get<double>();
      if (bailian) {
        const auto ids = j["hash_ids"].get<std::vector<std::int64_t>>();
        std::size_t run = 0;
        while (run < ids.size() && seen.contains(ids[run])) ++run;
        c.unbounded += std::min(static_cast<double>(run) * 16, prompt - 1);
        seen.insert(ids.begin(), ids.end());
      }
    }
    ++c.requests;
    c.prompt += prompt;
    c.output += output;
  }
  return c;
}

TEST(Trace, every_format_replays_from_a_one_line_change_with_the_files_requests_and_tokens) {
  for (const std::string format : {"burstgpt", "splitwise", "bailian", "moesim"}) {
    SCOPED_TRACE(format);
    const std::string file = std::string(MOESIM_SOURCE_DIR) + "/tests/e2e/traces/" + format +
                             (format == "burstgpt" || format == "splitwise" ? ".csv" : ".jsonl");
    const auto out = scratch_dir("trace_formats") / format;
    const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set 'workload.trace={format: " + format + ", path: " + file +
                                    "}' --set serving.prefix_caching=true --out '" + out.string() + "'",
                                "trace_formats");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const FixtureCount want = fixture_count(format);
    const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
    EXPECT_EQ(s["completed"].get<int>(), want.requests);
    EXPECT_EQ(s["trace"]["requests_in_window"].get<int>(), want.requests);
    EXPECT_DOUBLE_EQ(s["total_input_tokens"].get<double>(), want.prompt);
    EXPECT_DOUBLE_EQ(s["total_output_tokens"].get<double>(), want.output);
    if (format == "bailian") {
      ASSERT_GT(want.unbounded, 0);
      EXPECT_DOUBLE_EQ(s["trace"]["unbounded_prefix_hit_tokens"].get<double>(), want.unbounded);
      EXPECT_EQ(s["trace"]["hash_block_tokens"].get<int>(), 16);
      EXPECT_GT(s["serving"]["prefix_hit_tokens"].get<double>(), 0);
    }
    if (format == "burstgpt") EXPECT_EQ(s["trace"]["dropped_failed"].get<int>(), 2);
  }
  // BurstGPT's Model column as a group filter.
  const auto out = scratch_dir("trace_formats") / "gpt4";
  const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set 'workload.trace={format: burstgpt, path: " +
                                  std::string(MOESIM_SOURCE_DIR) + "/tests/e2e/traces/burstgpt.csv, groups: [GPT-4]}' --out '" +
                                  out.string() + "'",
                              "trace_formats");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  const FixtureCount gpt4 = fixture_count("burstgpt", "GPT-4");
  ASSERT_GT(gpt4.requests, 0);
  EXPECT_EQ(s["completed"].get<int>(), gpt4.requests);
  EXPECT_DOUBLE_EQ(s["total_input_tokens"].get<double>(), gpt4.prompt);
}

TEST(Trace, a_target_rate_scales_every_gap_by_one_factor_keeping_the_burstiness) {
  const auto out = scratch_dir("trace_rate") / "run";
  const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.trace.duration_s=60 "
                              "--set workload.trace.rate_per_s=4 --out '" + out.string() + "'",
                              "trace_rate");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = azure_lines(60);
  const auto rows = read_rows(out / "requests.csv");
  ASSERT_EQ(rows.size(), lines.size());
  const double n = static_cast<double>(lines.size());
  const double last = std::stod(rows.back().at("arrival_s"));
  EXPECT_NEAR((n - 1) / last, 4.0, 1e-6);  // the mean rate asked for
  const double factor = last / (lines.back().offset_s - lines.front().offset_s);
  for (std::size_t i = 0; i < rows.size(); ++i)
    EXPECT_NEAR(std::stod(rows[i].at("arrival_s")), (lines[i].offset_s - lines.front().offset_s) * factor, 1e-6) << i;
}

struct MooncakeCount {
  int requests = 0;
  double unbounded = 0;
};

/// The independent count over the Mooncake excerpt's records before `until_ms`: per request in
/// order, the leading run of its hash ids seen in earlier requests, 512 tokens an id, at most its
/// prompt - 1.
MooncakeCount mooncake_count(double until_ms) {
  std::ifstream in(std::string(MOESIM_SOURCE_DIR) + "/datasets/traces/mooncake_conversation_excerpt.jsonl");
  std::string line;
  std::set<std::int64_t> seen;
  MooncakeCount c;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j["timestamp"].get<double>() >= until_ms) break;
    ++c.requests;
    std::int64_t run = 0;
    const auto ids = j["hash_ids"].get<std::vector<std::int64_t>>();
    while (run < static_cast<std::int64_t>(ids.size()) && seen.contains(ids[static_cast<std::size_t>(run)])) ++run;
    c.unbounded += std::min<double>(static_cast<double>(run) * 512, j["input_length"].get<int>() - 1);
    seen.insert(ids.begin(), ids.end());
  }
  return c;
}

TEST(Trace, trace_info_counts_what_the_file_holds) {
  const CliResult az = run_cli("trace-info datasets/traces/azure_code_2023_excerpt.csv --format azure --duration-s 60 --json", "trace_info");
  ASSERT_EQ(az.exit_code, 0) << az.err;
  const auto a = nlohmann::json::parse(az.out);
  const auto lines = azure_lines(60);
  double prompt = 0, output = 0;
  for (const auto& l : lines) prompt += l.prompt, output += l.output;
  EXPECT_EQ(a["requests"].get<std::size_t>(), lines.size());
  EXPECT_DOUBLE_EQ(a["prompt_tokens"].get<double>(), prompt);
  EXPECT_DOUBLE_EQ(a["output_tokens"].get<double>(), output);
  EXPECT_NEAR(a["span_s"].get<double>(), lines.back().offset_s, 1e-6);
  const CliResult mc = run_cli("trace-info datasets/traces/mooncake_conversation_excerpt.jsonl --format mooncake --json", "trace_info");
  ASSERT_EQ(mc.exit_code, 0) << mc.err;
  const auto m = nlohmann::json::parse(mc.out);
  const MooncakeCount want = mooncake_count(1e18);
  EXPECT_EQ(m["requests"].get<int>(), want.requests);
  EXPECT_DOUBLE_EQ(m["unbounded_prefix_hit_tokens"].get<double>(), want.unbounded);
  EXPECT_EQ(m["hash_block_tokens"].get<int>(), 512);
  const CliResult bad = run_cli("trace-info datasets/traces/azure_code_2023_excerpt.csv --format mooncake", "trace_info");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("azure_code_2023_excerpt.csv:1"), std::string::npos) << bad.err;
}

TEST(Trace, mooncake_prefix_hits_follow_the_hash_ids_and_stay_within_an_unbounded_cache) {
  const MooncakeCount count = mooncake_count(10000);
  const int requests = count.requests;
  const double unbounded = count.unbounded;
  ASSERT_GT(unbounded, 0);
  nlohmann::json s[2];
  for (int on = 0; on < 2; ++on) {
    const auto out = scratch_dir("trace_mooncake") / ("run" + std::to_string(on));
    const CliResult r = run_cli("run scenarios/trace_mooncake_ep.yaml --quiet --set workload.trace.duration_s=10 "
                                "--set workload.routing.model=uniform --set workload.routing.sampling=count "
                                "--set serving.prefix_caching=" + std::string(on ? "true" : "false") + " --out '" + out.string() + "'",
                                "trace_mooncake");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    s[on] = nlohmann::json::parse(read_text(out / "summary.json"));
  }
  EXPECT_EQ(s[1]["trace"]["requests_in_window"].get<int>(), requests);
  EXPECT_EQ(s[1]["completed"].get<int>() + s[1]["rejected"].get<int>(), requests);
  EXPECT_DOUBLE_EQ(s[1]["trace"]["unbounded_prefix_hit_tokens"].get<double>(), unbounded);
  EXPECT_EQ(s[0]["serving"]["prefix_hit_tokens"].get<double>(), 0);
  const double hits = s[1]["serving"]["prefix_hit_tokens"].get<double>();
  EXPECT_GT(hits, 0.5 * unbounded);  // a cache of millions of tokens keeps nearly all of a 10 s window
  EXPECT_LE(hits, unbounded);
  EXPECT_LT(s[1]["mean_ttft_ms"].get<double>(), s[0]["mean_ttft_ms"].get<double>());
}

TEST(Trace, a_bad_trace_setting_names_the_key_and_the_allowed_values) {
  const CliResult fmt = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.trace.format=azur --out /dev/null", "trace_bad");
  EXPECT_EQ(fmt.exit_code, 2);
  EXPECT_NE(fmt.err.find("workload.trace.format"), std::string::npos) << fmt.err;
  EXPECT_NE(fmt.err.find("mooncake"), std::string::npos) << fmt.err;
  const CliResult no_trace = run_cli("run scenarios/quickstart.yaml --quiet --set workload.arrival.process=trace --out /dev/null", "trace_bad");
  EXPECT_EQ(no_trace.exit_code, 2);
  EXPECT_NE(no_trace.err.find("trace arrivals need workload.trace"), std::string::npos) << no_trace.err;
}


/// A moesim-format conversation trace: `sessions` conversations of `turns` turns each, every turn
/// resending the whole context (the previous prompt and answer) plus 160 new tokens; all turns
/// of a conversation are recorded 10 ms apart, before any answer could have come back.
std::filesystem::path write_session_trace(const std::filesystem::path& dir, int sessions, int turns) {
  const auto path = dir / "sessions.jsonl";
  std::ofstream out(path);
  std::int64_t chat = 0;
  for (int s = 0; s < sessions; ++s) {
    int context = 0;
    std::int64_t parent = -1;
    for (int k = 0; k < turns; ++k) {
      const int prompt = context + 160, output = 96;
      out << R"({"arrival_s": )" << s * 0.5 + k * 0.01 << R"(, "prompt_tokens": )" << prompt << R"(, "output_tokens": )" << output
          << R"(, "chat_id": )" << chat << R"(, "parent_chat_id": )" << parent << "}\n";
      parent = chat++;
      context = prompt + output;
    }
  }
  return path;
}

std::string session_run(const std::filesystem::path& trace, const std::filesystem::path& out, const std::string& extra) {
  return "run scenarios/trace_azure_code.yaml --quiet --set workload.trace.format=moesim --set workload.trace.path='" + trace.string() +
         "' --set workload.trace.duration_s=0 --set serving.prefix_caching=true " + extra + " --out '" + out.string() + "'";
}

TEST(Trace, a_turn_is_sent_only_after_its_parent_finishes_plus_its_think_time) {
  const auto dir = scratch_dir("trace_sessions");
  const auto trace = write_session_trace(dir, 6, 3);
  const auto out = dir / "run";
  const CliResult r = run_cli(session_run(trace, out, "--set workload.trace.sessions=after_parent --set workload.trace.think_time_s=2 "
                                                      "--set workload.trace.think_time_dist=fixed"),
                              "trace_sessions");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = read_rows(out / "requests.csv");
  ASSERT_EQ(rows.size(), 18u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double arrival = std::stod(rows[i].at("arrival_s"));
    if (i % 3 == 0) {
      EXPECT_NEAR(arrival, static_cast<double>(i / 3) * 0.5, 1e-9) << i;  // a first turn keeps its time
    } else {
      EXPECT_NEAR(arrival, std::stod(rows[i - 1].at("finish_s")) + 2.0, 1e-6) << i;  // parent's finish + think time
    }
  }
}

TEST(Trace, a_turn_hits_its_parents_prompt_and_answer_in_the_prefix_cache) {
  const auto dir = scratch_dir("trace_session_kv");
  const auto trace = write_session_trace(dir, 4, 3);
  const auto out = dir / "run";
  const CliResult r = run_cli(session_run(trace, out, "--set workload.trace.sessions=after_parent"), "trace_session_kv");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Turn k (k >= 1) resends its parent's context of 256 k tokens; the cache (16-token blocks,
  // nothing evicted at this load) serves its full blocks: 256 k, less the block holding the parent's
  // last generated token, whose KV the parent never computed.
  std::int64_t expected = 0;
  for (int k = 1; k < 3; ++k) expected += 4 * (((256 * k - 1) / 16) * 16);
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["serving"]["prefix_hit_tokens"].get<std::int64_t>(), expected);
  // Recorded times (the default) send each turn before its parent answers: it hits only what the
  // parent's prompt has registered by then, never more.
  const auto recorded = dir / "recorded";
  ASSERT_EQ(run_cli(session_run(trace, recorded, ""), "trace_session_kv2").exit_code, 0);
  const auto s2 = nlohmann::json::parse(read_text(recorded / "summary.json"));
  EXPECT_LT(s2["serving"]["prefix_hit_tokens"].get<std::int64_t>(), expected);
}

TEST(Trace, sessions_need_trace_arrivals) {
  const auto dir = scratch_dir("trace_session_bad");
  const auto trace = write_session_trace(dir, 2, 2);
  const CliResult r = run_cli(session_run(trace, dir / "run", "--set workload.trace.sessions=think_time --set workload.arrival.process=poisson"),
                              "trace_session_bad");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("workload.trace.sessions"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "run" / "summary.json"));
}

TEST(Trace, a_closed_loop_over_a_trace_keeps_its_lengths_and_never_exceeds_the_concurrency) {
  const auto out = scratch_dir("trace_closed") / "run";
  const CliResult r = run_cli("run scenarios/trace_azure_code.yaml --quiet --set workload.trace.duration_s=30 "
                              "--set workload.arrival.process=closed_loop --set workload.arrival.max_concurrency=4 --out '" +
                                  out.string() + "'",
                              "trace_closed");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = azure_lines(30);
  const auto rows = read_rows(out / "requests.csv");
  ASSERT_EQ(rows.size(), lines.size());
  std::vector<std::pair<double, int>> events;  // +1 at a send, -1 at a finish
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(std::stoi(rows[i].at("prompt_tokens")), lines[i].prompt) << i;
    EXPECT_EQ(std::stoi(rows[i].at("output_tokens")), lines[i].output) << i;
    events.emplace_back(std::stod(rows[i].at("arrival_s")), 1);
    events.emplace_back(std::stod(rows[i].at("finish_s")), -1);
  }
  std::sort(events.begin(), events.end());  // a finish sorts before a send at the same time
  int in_flight = 0, most = 0;
  for (const auto& [t, d] : events) most = std::max(most, in_flight += d);
  EXPECT_EQ(most, 4);
  EXPECT_EQ(in_flight, 0);
}

}  // namespace
}  // namespace moesim::test
