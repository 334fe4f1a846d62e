// Sweeps: expansion, one process per point, resume, shards and merge, failures, bad input; the
// Perfetto trace's structure.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

/// A small sweep over the quickstart setting: 2 modes x 2 datasets, few requests, analytic.
std::filesystem::path write_sweep(const std::filesystem::path& dir, const std::string& sweep_block) {
  const auto file = dir / "sweep.yaml";
  std::ofstream f(file);
  f << "model: mixtral-8x7b\n"
       "seed: 3\n"
       "cluster: {gpu: h100-sxm, gpus_per_node: 4}\n"
       "serving: {max_num_batched_tokens: 8192, max_num_seqs: 32, max_model_len: 4096}\n"
       "workload: {requests: 6, routing: {model: domain_affinity}, arrival: {process: burst}, dataset: "
    << (kSourceDir / "datasets/imbalance/001_0.2171.jsonl").string()
    << "}\n"
       "network: {fidelity: analytic}\n"
       "outputs: {expert_profiler: false}\n"
    << sweep_block;
  return file;
}

const std::string kTwoByTwo = "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n    workload.dataset: {glob: \"" +
                              (kSourceDir / "datasets/imbalance/00[12]_*.jsonl").string() + "\"}\n";

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& p) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream in(read_text(p));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
    rows.push_back(f);
  }
  return rows;
}

std::size_t column(const std::vector<std::string>& header, const std::string& name) {
  return static_cast<std::size_t>(std::find(header.begin(), header.end(), name) - header.begin());
}

TEST(Sweep, grid_with_glob_expands_in_a_fixed_order) {
  const auto dir = scratch_dir("sweep-list");
  const auto file = write_sweep(dir, kTwoByTwo);
  const CliResult r = run_cli("sweep '" + file.string() + "' --list", "sweep-list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::stringstream lines(r.out);
  std::vector<std::string> points;
  for (std::string l; std::getline(lines, l);) points.push_back(l);
  ASSERT_EQ(points.size(), 4u);
  EXPECT_EQ(points[0].rfind("0 parallel.mode=tp workload.dataset=", 0), 0u);
  EXPECT_NE(points[1].find("002_0.1413.jsonl"), std::string::npos);
  EXPECT_EQ(points[2].rfind("2 parallel.mode=ep", 0), 0u);
}

TEST(Sweep, every_point_runs_once_and_a_rerun_skips_completed_points) {
  const auto dir = scratch_dir("sweep-run");
  const auto file = write_sweep(dir, kTwoByTwo);
  const auto out = dir / "out";
  const CliResult r = run_cli("sweep '" + file.string() + "' -j 2 --out '" + out.string() + "'", "sweep-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = read_csv(out / "sweep.csv");
  ASSERT_EQ(rows.size(), 5u);
  const auto& h = rows[0];
  EXPECT_EQ(h[0], "point");
  EXPECT_EQ(h[1], "parallel.mode");
  EXPECT_EQ(h[2], "workload.dataset");
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][column(h, "status")], "ok");
    EXPECT_EQ(rows[i][column(h, "completed")], "6");
  }
  // The same dataset gives the same routing in TP and EP, so the imbalance columns agree.
  EXPECT_EQ(rows[1][column(h, "imbalance.cv_aggregated")], rows[3][column(h, "imbalance.cv_aggregated")]);
  const std::string first = read_text(out / "point-0000/run/summary.json");
  const CliResult again = run_cli("sweep '" + file.string() + "' -j 2 --out '" + out.string() + "'", "sweep-rerun");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("4 of 4 points already complete, skipped"), std::string::npos) << again.err;
  EXPECT_EQ(read_csv(out / "sweep.csv").size(), 5u);
}

TEST(Sweep, resume_reruns_points_whose_resolved_configuration_changed) {
  const auto dir = scratch_dir("sweep-stale");
  const auto file = write_sweep(dir, "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n");
  const auto out = dir / "out";
  const std::string cmd = "sweep '" + file.string() + "' --out '" + out.string() + "'";
  ASSERT_EQ(run_cli(cmd, "stale-1").exit_code, 0);
  // Another --set on the sweep: every point's configuration differs, so none is reused.
  const CliResult with_set = run_cli(cmd + " --set workload.requests=4", "stale-2");
  ASSERT_EQ(with_set.exit_code, 0) << with_set.err;
  EXPECT_EQ(with_set.err.find("already complete"), std::string::npos) << with_set.err;
  auto rows = read_csv(out / "sweep.csv");
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(rows[i][column(rows[0], "completed")], "4");
  // An edit of the base scenario file (the same overrides): rerun as well.
  {
    std::string text = read_text(file);
    text.replace(text.find("requests: 6"), 11, "requests: 5");
    std::ofstream(file) << text;
  }
  // A merge without running lists the points as stale, without their old numbers.
  const CliResult merged = run_cli(cmd + " --merge", "stale-3");
  EXPECT_EQ(merged.exit_code, 3);
  rows = read_csv(out / "sweep.csv");
  ASSERT_EQ(rows.size(), 3u);
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][column(rows[0], "status")], "stale");
    EXPECT_EQ(column(rows[0], "completed"), rows[0].size());  // no metric columns at all
  }
  ASSERT_EQ(run_cli(cmd, "stale-4").exit_code, 0);
  rows = read_csv(out / "sweep.csv");
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(rows[i][column(rows[0], "completed")], "5");
  // Unchanged now: both skipped.
  const CliResult again = run_cli(cmd, "stale-5");
  EXPECT_NE(again.err.find("2 of 2 points already complete, skipped"), std::string::npos) << again.err;
}

TEST(Sweep, a_corrupt_or_empty_point_summary_is_neither_merged_as_ok_nor_skipped) {
  const auto dir = scratch_dir("sweep-corrupt");
  const auto file = write_sweep(dir, "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n");
  const auto out = dir / "out";
  const std::string cmd = "sweep '" + file.string() + "' --out '" + out.string() + "'";
  ASSERT_EQ(run_cli(cmd, "corrupt-1").exit_code, 0);
  std::ofstream(out / "point-0000/run/summary.json", std::ios::trunc).flush();          // empty
  std::ofstream(out / "point-0001/run/summary.json", std::ios::trunc) << "{\"compl";   // cut short
  EXPECT_EQ(run_cli(cmd + " --merge", "corrupt-2").exit_code, 3);
  auto rows = read_csv(out / "sweep.csv");
  ASSERT_EQ(rows.size(), 3u);
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(rows[i][column(rows[0], "status")], "invalid");
  const CliResult rerun = run_cli(cmd, "corrupt-3");
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_EQ(rerun.err.find("already complete"), std::string::npos) << rerun.err;
  rows = read_csv(out / "sweep.csv");
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][column(rows[0], "status")], "ok");
    EXPECT_EQ(rows[i][column(rows[0], "completed")], "6");
  }
}

TEST(Sweep, a_signal_stops_the_sweep_and_no_point_outlives_it) {
  const auto dir = scratch_dir("sweep-signal");
  // Points of a few seconds each, so that the signals reach running points.
  const auto file = write_sweep(dir, "sweep:\n  grid:\n    workload.requests: [3000, 3001, 3002, 3003]\n");
  {
    std::string text = read_text(file);
    text.replace(text.find("arrival: {process: burst}"), 25, "arrival: {process: poisson, rate_per_s: 200}");
    std::ofstream(file) << text;
  }
  const auto out = dir / "out";
  const auto children_of = [](const std::string& pid) {
    const std::string cmd = "pgrep -P " + pid + " | wc -l";
    FILE* p = ::popen(cmd.c_str(), "r");
    int n = -1;
    if (p != nullptr && std::fscanf(p, "%d", &n) != 1) n = -1;
    if (p != nullptr) ::pclose(p);
    return n;
  };
  for (const char* sig : {"TERM", "KILL"}) {
    std::filesystem::remove_all(out);
    const std::string launch = "cd '" + kSourceDir.string() + "' && { '" + kBinary.string() + "' sweep '" + file.string() +
                               "' -j 2 --out '" + out.string() + "' > /dev/null 2>&1 & echo $! > '" + (dir / "pid").string() +
                               "'; wait $!; echo $? > '" + (dir / "rc").string() + "'; } &";
    std::filesystem::remove(dir / "rc");
    ASSERT_EQ(std::system(launch.c_str()), 0);
    std::string pid;
    for (int i = 0; i < 200 && pid.empty(); ++i) {
      ::usleep(10'000);
      pid = read_text(dir / "pid");
      while (!pid.empty() && pid.back() == '\n') pid.pop_back();
    }
    ASSERT_FALSE(pid.empty());
    int running = 0;
    for (int i = 0; i < 500 && running < 2; ++i) {
      ::usleep(10'000);
      running = children_of(pid);
    }
    ASSERT_EQ(running, 2) << "the sweep should run two points at once";
    std::vector<std::string> points;
    {
      FILE* p = ::popen(("pgrep -P " + pid).c_str(), "r");
      char buf[64];
      while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) points.emplace_back(buf);
      if (p != nullptr) ::pclose(p);
    }
    ASSERT_EQ(std::system(("kill -" + std::string(sig) + " " + pid).c_str()), 0);
    std::string rc;
    for (int i = 0; i < 1000 && rc.empty(); ++i) {
      ::usleep(10'000);
      rc = read_text(dir / "rc");
    }
    ASSERT_FALSE(rc.empty()) << "the sweep did not stop after SIG" << sig;
    EXPECT_EQ(std::stoi(rc), std::string(sig) == "TERM" ? 128 + 15 : 128 + 9) << sig;
    // Every point process is gone (PR_SET_PDEATHSIG for the SIGKILL case).
    for (int i = 0; i < 200; ++i) {
      bool alive = false;
      for (auto p : points) {
        while (!p.empty() && p.back() == '\n') p.pop_back();
        alive = alive || ::kill(std::stoi(p), 0) == 0;
      }
      if (!alive) break;
      ::usleep(10'000);
    }
    for (auto p : points) {
      while (!p.empty() && p.back() == '\n') p.pop_back();
      EXPECT_NE(::kill(std::stoi(p), 0), 0) << "point process " << p << " outlived the sweep after SIG" << sig;
    }
    // The interrupted points carry no marker: neither done nor failed.
    for (const char* point : {"point-0000", "point-0001"}) {
      EXPECT_FALSE(std::filesystem::exists(out / point / "done.json") && std::filesystem::exists(out / point / "failed.json"));
      EXPECT_FALSE(std::filesystem::exists(out / point / "failed.json")) << point << " after SIG" << sig;
    }
  }
}

TEST(Sweep, shards_run_with_gnu_parallel_then_merge_into_one_table) {
  const auto dir = scratch_dir("sweep-shard");
  const auto file = write_sweep(dir, kTwoByTwo);
  const auto out = dir / "out";
  const std::string cmd = "cd '" + kSourceDir.string() + "' && seq 1 2 | parallel -j 2 '" + kBinary.string() + "' sweep '" +
                          file.string() + "' --out '" + out.string() + "' --shard {}/2 > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_TRUE(std::filesystem::exists(out / "sweep.shard-1-of-2.csv"));
  EXPECT_EQ(read_csv(out / "sweep.shard-2-of-2.csv").size(), 3u);  // header + points 1 and 3
  const CliResult m = run_cli("sweep '" + file.string() + "' --out '" + out.string() + "' --merge", "merge");
  ASSERT_EQ(m.exit_code, 0) << m.err;
  const auto rows = read_csv(out / "sweep.csv");
  ASSERT_EQ(rows.size(), 5u);
  std::set<std::string> points;
  for (std::size_t i = 1; i < rows.size(); ++i) points.insert(rows[i][0]);
  EXPECT_EQ(points, (std::set<std::string>{"0", "1", "2", "3"}));
}

TEST(Sweep, a_failing_point_is_recorded_and_the_sweep_goes_on) {
  const auto dir = scratch_dir("sweep-fail");
  const auto file = write_sweep(dir, "sweep:\n  grid:\n    workload.requests: [2, 3]\n");
  const auto out = dir / "out";
  // A file where point 1's run directory should go makes that run fail when it writes outputs.
  std::filesystem::create_directories(out / "point-0001");
  std::ofstream(out / "point-0001" / "run") << "in the way\n";
  const CliResult r = run_cli("sweep '" + file.string() + "' --out '" + out.string() + "'", "fail");
  EXPECT_EQ(r.exit_code, 3);
  const auto rows = read_csv(out / "sweep.csv");
  ASSERT_EQ(rows.size(), 3u);
  const auto& h = rows[0];
  EXPECT_EQ(rows[1][column(h, "status")], "ok");
  EXPECT_EQ(rows[2][column(h, "status")], "failed");
  EXPECT_NE(rows[2][column(h, "error")].find("cannot create output directory"), std::string::npos) << rows[2][column(h, "error")];
  EXPECT_TRUE(std::filesystem::exists(out / "point-0001/failed.json"));
}

TEST(Report, sweep_report_prints_a_table_and_writes_a_self_contained_page) {
  const auto dir = scratch_dir("sweep-report");
  const auto file = write_sweep(dir, kTwoByTwo);
  const auto out = dir / "out";
  ASSERT_EQ(run_cli("sweep '" + file.string() + "' -j 2 --out '" + out.string() + "'", "rep-sweep").exit_code, 0);
  const CliResult r = run_cli("report '" + out.string() + "'", "report");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("mean_ttft_ms"), std::string::npos);
  EXPECT_NE(r.out.find("001_0.2171.jsonl"), std::string::npos);
  const std::string html = read_text(out / "report.html");
  std::size_t svgs = 0;
  for (auto pos = html.find("<svg"); pos != std::string::npos; pos = html.find("<svg", pos + 1)) ++svgs;
  EXPECT_EQ(svgs, 10u);  // one chart per headline metric
  // Self-contained: nothing fetched from anywhere (the only URL is the SVG namespace).
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  std::string without_ns = html;
  for (auto pos = without_ns.find("http://www.w3.org/2000/svg"); pos != std::string::npos; pos = without_ns.find("http://www.w3.org/2000/svg"))
    without_ns.erase(pos, 26);
  EXPECT_EQ(without_ns.find("http"), std::string::npos);
  const CliResult bad = run_cli("report '" + dir.string() + "'", "report-bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("neither a sweep directory (sweep.csv) nor a run directory (summary.json)"), std::string::npos);
}

TEST(SweepBadInput, unknown_key_is_rejected_with_a_suggestion_before_anything_runs) {
  const auto dir = scratch_dir("sweep-bad");
  const auto file = write_sweep(dir, "sweep:\n  grid:\n    parallel.mod: [tp, ep]\n");
  const auto out = dir / "out";
  const CliResult r = run_cli("sweep '" + file.string() + "' --out '" + out.string() + "'", "bad1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("parallel.mod: unknown key \"mod\" (did you mean \"mode\"?)"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(SweepBadInput, a_key_swept_twice_is_rejected_before_anything_runs) {
  const auto dir = scratch_dir("sweep-twice");
  const auto out = dir / "out";
  const auto both = write_sweep(dir, "sweep:\n  grid:\n    serving.max_num_seqs: [8, 16]\n  zip:\n    serving.max_num_seqs: [4, 32]\n");
  const CliResult r = run_cli("sweep '" + both.string() + "' --out '" + out.string() + "'", "twice-1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("sweep.zip.serving.max_num_seqs: is also swept by sweep.grid.serving.max_num_seqs"), std::string::npos) << r.err;
  const auto seeds = write_sweep(dir, "sweep:\n  grid:\n    seed: [1, 2]\n  seeds: 2\n");
  const CliResult s = run_cli("sweep '" + seeds.string() + "' --out '" + out.string() + "'", "twice-2");
  EXPECT_EQ(s.exit_code, 2);
  EXPECT_NE(s.err.find("sweep.seeds"), std::string::npos) << s.err;
  const auto grid = write_sweep(dir, "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n");
  const CliResult set = run_cli("sweep '" + grid.string() + "' --set parallel.mode=tp --out '" + out.string() + "'", "twice-3");
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_NE(set.err.find("parallel.mode: is swept by sweep.grid.parallel.mode"), std::string::npos) << set.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(SweepBadInput, empty_glob_and_bad_shard_are_errors) {
  const auto dir = scratch_dir("sweep-bad2");
  const auto file = write_sweep(dir, "sweep:\n  grid:\n    workload.dataset: {glob: \"/nonexistent/*.jsonl\"}\n");
  const CliResult g = run_cli("sweep '" + file.string() + "' --list", "bad2");
  EXPECT_EQ(g.exit_code, 2);
  EXPECT_NE(g.err.find("sweep.grid.workload.dataset: glob \"/nonexistent/*.jsonl\" matches no file"), std::string::npos) << g.err;
  const auto ok = write_sweep(dir, kTwoByTwo);
  const CliResult s = run_cli("sweep '" + ok.string() + "' --shard 3/2 --list", "bad3");
  EXPECT_EQ(s.exit_code, 2);
  EXPECT_EQ(s.err.substr(0, s.err.find('\n')), "error: --shard 3/2: expected i/N with 1 <= i <= N (e.g. 2/4)");
}

TEST(Trace, trace_json_has_gpu_tracks_steps_and_counters) {
  for (const char* fidelity : {"flow", "analytic"}) {
    const auto out = scratch_dir("trace") / "run";
    const CliResult r = run_cli(std::string("run scenarios/domain_skew.yaml --quiet --set workload.requests=4 --set outputs.trace=true "
                                            "--set outputs.trace_max_steps=2 --set network.fidelity=") + fidelity +
                                    " --out '" + out.string() + "'",
                                "trace");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(read_text(out / "trace.json"));
    std::set<int> gpu_tids;
    std::set<std::string> names;
    int steps = 0, counters = 0;
    double last_end = 0;
    for (const auto& e : j["traceEvents"]) {
      if (e["ph"] == "X" && e["cat"] == "gpu") {
        gpu_tids.insert(e["tid"].get<int>());
        names.insert(e["name"].get<std::string>());
        EXPECT_GE(e["dur"].get<double>(), 0.0);
        last_end = std::max(last_end, e["ts"].get<double>() + e["dur"].get<double>());
      }
      if (e["ph"] == "X" && e["cat"] == "step") ++steps;
      if (e["ph"] == "C") ++counters;
    }
    EXPECT_EQ(gpu_tids, (std::set<int>{0, 1, 2, 3})) << fidelity;
    EXPECT_TRUE(names.count("attention") && names.count("moe") && names.count("lm_head")) << fidelity;
    const auto summary = nlohmann::json::parse(read_text(out / "summary.json"));
    EXPECT_EQ(steps, summary["run"]["steps"].get<int>()) << fidelity;
    EXPECT_GE(counters, 2 * steps) << fidelity;
    const std::string text = read_text(out / "trace.json");
    EXPECT_NE(text.find("\"gpu 0 power_w\""), std::string::npos) << fidelity;
    EXPECT_NE(text.find("\"gpu 3 temp_c\""), std::string::npos) << fidelity;
  }
}

}  // namespace
}  // namespace moesim::test
