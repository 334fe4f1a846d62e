// Reliability: byte-identical outputs for the same scenario and seed (repeated runs, sweeps at
// -j 1 and -j 2), sweeps that resume after SIGKILL with the same results, outputs that are never
// left half-written, limits that reject absurd sizes before anything is read or allocated, and
// requests the server rejects being counted with their reason.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

namespace fs = std::filesystem;

/// Every regular file under `dir`, by path relative to it, with its content.
std::map<std::string, std::string> files_under(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_text(e.path());
  return out;
}

/// Paths under `dir` whose name marks an unfinished write (write_file_atomically's temporaries).
std::vector<std::string> temporaries_under(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) out.push_back(e.path().string());
  return out;
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> f;
  std::stringstream ls(line);
  for (std::string x; std::getline(ls, x, sep);) f.push_back(x);
  return f;
}

/// A CSV with one column removed (by header name), rows joined back with commas. The files
/// compared here have no quoted commas in the rows that matter.
std::string csv_without_column(const std::string& text, const std::string& column) {
  std::stringstream in(text);
  std::string out, line;
  std::size_t drop = std::string::npos;
  for (bool header = true; std::getline(in, line); header = false) {
    auto fields = split(line, ',');
    if (header) drop = static_cast<std::size_t>(std::find(fields.begin(), fields.end(), column) - fields.begin());
    if (drop < fields.size()) fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(drop));
    for (std::size_t i = 0; i < fields.size(); ++i) out += (i ? "," : "") + fields[i];
    out += '\n';
  }
  EXPECT_NE(drop, std::string::npos) << "no column " << column;
  return out;
}

/// Compares two output trees file by file. The only value allowed to differ is the wall-clock
/// `wall_s`: a column of sweep.csv and a field of the done.json markers.
void expect_identical_trees(const fs::path& a, const fs::path& b) {
  const auto fa = files_under(a);
  const auto fb = files_under(b);
  std::set<std::string> na, nb;
  for (const auto& [k, v] : fa) na.insert(k);
  for (const auto& [k, v] : fb) nb.insert(k);
  ASSERT_EQ(na, nb);
  for (const auto& [rel, content] : fa) {
    const std::string name = fs::path(rel).filename().string();
    if (name.size() > 5 && name.rfind(".lock") == name.size() - 5) continue;  // a run folder's lock: the writer's pid
    if (name == "sweep.csv") {
      EXPECT_EQ(csv_without_column(content, "wall_s"), csv_without_column(fb.at(rel), "wall_s")) << rel;
    } else if (name == "done.json") {
      auto ja = nlohmann::json::parse(content), jb = nlohmann::json::parse(fb.at(rel));
      ja.erase("wall_s");
      jb.erase("wall_s");
      EXPECT_EQ(ja, jb) << rel;
    } else {
      EXPECT_TRUE(content == fb.at(rel)) << rel << " differs between " << a << " and " << b;
    }
  }
}

/// No file outside the temporaries looks valid while being partial: JSON parses, CSVs end with a
/// complete line.
void expect_every_file_complete(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0 || name == "stderr.txt") continue;
    const std::string text = read_text(e.path());
    if (e.path().extension() == ".json") {
      EXPECT_FALSE(nlohmann::json::parse(text, nullptr, false).is_discarded()) << e.path() << " is not whole JSON";
    } else if (e.path().extension() == ".csv") {
      EXPECT_TRUE(!text.empty() && text.back() == '\n') << e.path() << " ends in the middle of a line";
    }
  }
}

// ---- determinism ----------------------------------------------------------------------------

TEST(Determinism, same_scenario_and_seed_give_byte_identical_run_outputs_in_tp_and_ep) {
  const auto dir = scratch_dir("det-run");
  const std::string common =
      "run scenarios/quickstart.yaml --quiet --set workload.requests=12 --set outputs.trace=true "
      "--set outputs.trace_max_steps=10 --set outputs.gpus_csv_interval_s=0.001";
  const std::map<std::string, std::string> modes{
      {"tp", ""}, {"ep", " --set parallel.mode=ep --set workload.routing.model=domain_affinity"}};
  for (const auto& [mode, extra] : modes) {
    for (const char* rep : {"a", "b"}) {
      const auto out = dir / (mode + rep);
      const CliResult r = run_cli(common + extra + " --out '" + out.string() + "'", "det-" + mode + rep);
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const auto files = files_under(dir / (mode + "a"));
    for (const char* f : {"summary.json", "requests.csv", "steps.csv", "gpus.csv", "experts.csv", "trace.json",
                          "config.resolved.yaml", "gate_logs/gate_logs_0.json", "moe_expert_tracking/moe_expert_activations.csv",
                          "moe_expert_tracking/moe_expert_coselection.csv", "moe_expert_tracking/moe_routing_weights_hist.csv",
                          "moe_expert_tracking/moe_load_imbalance.csv", "moe_expert_tracking/moe_summary.json"})
      EXPECT_TRUE(files.count(f)) << mode << ": " << f << " not written";
    expect_identical_trees(dir / (mode + "a"), dir / (mode + "b"));
  }
  // The two modes really differ: the comparison above is not between empty or trivial files.
  EXPECT_NE(read_text(dir / "tpa/steps.csv"), read_text(dir / "epa/steps.csv"));
}

std::filesystem::path write_sweep_file(const fs::path& dir, const std::string& body) {
  const auto file = dir / "sweep.yaml";
  std::ofstream(file) << "model: mixtral-8x7b\n"
                         "seed: 11\n"
                         "cluster: {gpu: h100-sxm, gpus_per_node: 4}\n"
                         "serving: {max_num_batched_tokens: 8192, max_num_seqs: 32, max_model_len: 4096}\n"
                         "workload: {requests: 6, routing: {model: domain_affinity}, arrival: {process: burst}, dataset: "
                      << (kSourceDir / "datasets/imbalance/001_0.2171.jsonl").string()
                      << "}\n"
                         "network: {fidelity: analytic}\n"
                      << body;
  return file;
}

TEST(Determinism, sweep_outputs_are_byte_identical_at_j1_and_j2) {
  const auto dir = scratch_dir("det-sweep");
  const auto file = write_sweep_file(dir, "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n  seeds: 3\n");
  for (const char* j : {"1", "2"}) {
    const CliResult r = run_cli("sweep '" + file.string() + "' -j " + j + " --out '" + (dir / j).string() + "'", "det-sweep");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(split(read_text(dir / "1/sweep.csv"), '\n').size(), 7u);  // header + 6 points
  expect_identical_trees(dir / "1", dir / "2");
  // Different seeds give different runs, so equal files above are not an accident of the setup.
  EXPECT_NE(read_text(dir / "1/point-0000/run/requests.csv"), read_text(dir / "1/point-0001/run/requests.csv"));
}

// ---- crash-safe sweeps ----------------------------------------------------------------------

/// Starts `moesim <args>` in its own process group (so that the group can be killed as a whole).
pid_t start_in_own_process_group(const std::vector<std::string>& args) {
  std::vector<std::string> full{kBinary.string()};
  full.insert(full.end(), args.begin(), args.end());
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    if (::chdir(kSourceDir.c_str()) != 0) ::_exit(127);
    ::setenv("MOESIM_HOME", kSourceDir.c_str(), 1);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before the parent may kill it
  return pid;
}

int count_done_markers(const fs::path& out) {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(out, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (fs::exists(it->path() / "done.json")) ++n;
  return n;
}

TEST(CrashSafety, sweep_killed_midway_resumes_to_the_same_table_with_every_point_once) {
  constexpr int kPoints = 12;
  const auto dir = scratch_dir("crash");
  const auto file = write_sweep_file(dir, "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n"
                                          "    workload.requests: [20, 30, 40, 50, 60, 70]\n");
  const auto ref = dir / "reference";
  const auto out = dir / "out";
  const CliResult whole = run_cli("sweep '" + file.string() + "' -j 2 --out '" + ref.string() + "'", "crash-ref");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;

  // Orphans of the killed sweep (its point runs) come back to this process to be reaped.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  const pid_t sweep = start_in_own_process_group({"sweep", file.string(), "-j", "2", "--out", out.string()});
  ASSERT_GT(sweep, 0);
  int done_at_kill = 0;
  bool exited_first = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    done_at_kill = count_done_markers(out);
    if (done_at_kill >= 1) {
      ::kill(-sweep, SIGKILL);
      break;
    }
    int status = 0;
    if (::waitpid(sweep, &status, WNOHANG) == sweep) {
      exited_first = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Reap the sweep and every point run it had started.
  while (true) {
    int status = 0;
    const pid_t p = ::waitpid(-1, &status, 0);
    if (p < 0 && errno == ECHILD) break;
  }
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
  ASSERT_FALSE(exited_first) << "the sweep ended before a point finished";
  const int done_after_kill = count_done_markers(out);
  ASSERT_GE(done_after_kill, 1);
  ASSERT_LT(done_after_kill, kPoints) << "every point finished before the kill; the test proves nothing";

  // What the kill left: markers only beside complete runs, and no file that is partial yet looks whole.
  for (const auto& e : fs::directory_iterator(out))
    if (fs::exists(e.path() / "done.json")) {
      EXPECT_TRUE(fs::exists(e.path() / "run/summary.json")) << e.path();
    }
  expect_every_file_complete(out);

  const CliResult resumed = run_cli("sweep '" + file.string() + "' -j 2 --out '" + out.string() + "'", "crash-resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find(" of 12 points already complete, skipped"), std::string::npos) << resumed.err;

  const auto rows = split(read_text(out / "sweep.csv"), '\n');
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(kPoints + 1));
  std::multiset<std::string> points;
  for (std::size_t i = 1; i < rows.size(); ++i) points.insert(split(rows[i], ',').at(0));
  for (int p = 0; p < kPoints; ++p) EXPECT_EQ(points.count(std::to_string(p)), 1u) << "point " << p;
  EXPECT_EQ(csv_without_column(read_text(out / "sweep.csv"), "wall_s"), csv_without_column(read_text(ref / "sweep.csv"), "wall_s"));
  // Every point's outputs equal the uninterrupted sweep's, and no temporary is left behind.
  for (int p = 0; p < kPoints; ++p) {
    char name[32];
    std::snprintf(name, sizeof name, "point-%04d/run", p);
    const auto a = files_under(ref / name);
    const auto b = files_under(out / name);
    ASSERT_EQ(a.size(), b.size()) << name;
    for (const auto& [rel, content] : a) EXPECT_TRUE(b.count(rel) && b.at(rel) == content) << name << "/" << rel;
  }
  EXPECT_EQ(temporaries_under(out), std::vector<std::string>{});
}

// ---- outputs that cannot be written ---------------------------------------------------------

const std::string kSmallRun = "run scenarios/quickstart.yaml --quiet --set workload.requests=4 --set network.fidelity=analytic";

TEST(Outputs, an_output_directory_that_cannot_be_created_fails_naming_it_before_running) {
  const auto dir = scratch_dir("out-blocked");
  std::ofstream(dir / "a_file") << "not a directory\n";
  std::vector<fs::path> targets{dir / "a_file" / "run", "/proc/moesim-cannot-exist/run"};
  if (::geteuid() != 0) {  // as root, permissions do not stop writes
    fs::create_directories(dir / "read_only");
    fs::permissions(dir / "read_only", fs::perms::owner_read | fs::perms::owner_exec);
    targets.push_back(dir / "read_only" / "run");
  }
  for (const auto& out : targets) {
    const CliResult r = run_cli(kSmallRun + " --out '" + out.string() + "'", "blocked");
    EXPECT_EQ(r.exit_code, 3) << out;
    EXPECT_NE(r.err.find("error: cannot create output directory " + out.string() + ": "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("nothing was run"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  // The same for a sweep's folder.
  const auto sweep_file = write_sweep_file(dir, "sweep:\n  grid:\n    parallel.mode: [tp, ep]\n");
  const auto sweep_out = dir / "a_file" / "sweep";
  const CliResult s = run_cli("sweep '" + sweep_file.string() + "' --out '" + sweep_out.string() + "'", "blocked-sweep");
  EXPECT_EQ(s.exit_code, 3);
  EXPECT_EQ(s.err, "error: cannot create sweep directory " + sweep_out.string() + ": Not a directory; nothing was run\n");
}

TEST(Outputs, a_full_disk_fails_naming_the_file_and_keeps_the_previous_complete_result) {
  const auto out = scratch_dir("out-full") / "run";
  const CliResult first = run_cli(kSmallRun + " --out '" + out.string() + "'", "full-first");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_TRUE(fs::exists(out / "summary.json"));
  const auto before = files_under(out);
  // A file-size limit makes every write past 16 KiB fail the way a full disk does (write(2)
  // returns an error part-way through a file); SIGXFSZ is ignored so the error reaches moesim.
  const auto io = scratch_dir("full-io");
  const std::string cmd = "cd '" + kSourceDir.string() + "' && (trap '' XFSZ; ulimit -f 16; MOESIM_HOME='" + kSourceDir.string() +
                          "' exec '" + kBinary.string() + "' " + kSmallRun + " --out '" + out.string() + "') > '" +
                          (io / "out").string() + "' 2> '" + (io / "err").string() + "'";
  const int status = std::system(cmd.c_str());
  const std::string err = read_text(io / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << err;
  EXPECT_NE(err.find("error: cannot write " + out.string() + "/"), std::string::npos) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_NE(err.find("no outputs were written"), std::string::npos) << err;
  EXPECT_NE(err.find("the previous result in " + out.string() + " is unchanged"), std::string::npos) << err;
  // The outputs were staged beside the folder: the previous complete result is untouched, and
  // no staging folder or temporary is left behind.
  EXPECT_EQ(files_under(out), before);
  EXPECT_EQ(temporaries_under(out), std::vector<std::string>{});
  for (const auto& e : fs::directory_iterator(out.parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".staging-"), std::string::npos) << e.path();
  expect_every_file_complete(out);
}

TEST(Outputs, two_runs_into_one_folder_never_mix_the_second_is_refused_while_the_first_writes) {
  const auto out = scratch_dir("out-two") / "run";
  const auto io = scratch_dir("out-two-io");
  // A run of about a second in the background, then a second run into the same folder.
  const std::string slow = "run scenarios/quickstart.yaml --quiet --set workload.requests=2000 --set workload.arrival.rate_per_s=400 "
                           "--set network.fidelity=analytic --out '" + out.string() + "'";
  const std::string bg = "cd '" + kSourceDir.string() + "' && { MOESIM_HOME='" + kSourceDir.string() + "' '" + kBinary.string() + "' " +
                         slow + " > /dev/null 2> '" + (io / "err1").string() + "'; echo $? > '" + (io / "rc1").string() + "'; } &";
  ASSERT_EQ(std::system(bg.c_str()), 0);
  // Wait until the first run holds the lock (it writes its pid into the lock file).
  for (int i = 0; i < 500 && read_text(out.parent_path() / ".run.lock").empty(); ++i) ::usleep(5'000);
  const CliResult second = run_cli(kSmallRun + " --out '" + out.string() + "'", "out-two-2");
  EXPECT_EQ(second.exit_code, 3);
  EXPECT_NE(second.err.find("another moesim run (pid "), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("nothing was run"), std::string::npos) << second.err;
  std::string rc;
  for (int i = 0; i < 3000 && rc.empty(); ++i) {
    ::usleep(10'000);
    rc = read_text(io / "rc1");
  }
  ASSERT_EQ(rc, "0\n") << read_text(io / "err1");
  // The folder is the first run's, whole.
  const auto summary = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(summary["completed"].get<int>(), 2000);
  EXPECT_EQ(read_rows(out / "requests.csv").size(), 2000u);
  // Once it is done, the next run may write the folder (and replaces it whole).
  const CliResult third = run_cli(kSmallRun + " --out '" + out.string() + "'", "out-two-3");
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_EQ(read_rows(out / "requests.csv").size(), 4u);
}

TEST(Outputs, a_symlink_planted_beside_the_outputs_is_never_written_through) {
  const auto dir = scratch_dir("out-symlink");
  const auto out = dir / "run";
  const auto victim = dir / "victim.txt";
  std::ofstream(victim) << "precious\n";
  // The lock's name is predictable: a symlink there makes the run fail, and the victim is untouched.
  fs::create_symlink(victim, dir / ".run.lock");
  const CliResult r = run_cli(kSmallRun + " --out '" + out.string() + "'", "symlink-1");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("cannot create output directory"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(victim), "precious\n");
  fs::remove(dir / ".run.lock");
  // Temporaries have random names created exclusively: symlinks at the old predictable names
  // (".tmp-<file>-<pid>") are not followed, and the run succeeds.
  ASSERT_EQ(run_cli(kSmallRun + " --out '" + out.string() + "'", "symlink-2").exit_code, 0);
  for (const char* f : {"summary.json", "steps.csv", "requests.csv", "gpus.csv"})
    for (int pid = 1; pid < 50; ++pid) fs::create_symlink(victim, out / (std::string(".tmp-") + f + "-" + std::to_string(pid)));
  ASSERT_EQ(run_cli(kSmallRun + " --out '" + out.string() + "'", "symlink-3").exit_code, 0);
  EXPECT_EQ(read_text(victim), "precious\n");
}

TEST(Outputs, a_file_size_limit_is_the_documented_exit_3_error_not_a_signal) {
  const auto out = scratch_dir("out-xfsz") / "run";
  const auto io = scratch_dir("out-xfsz-io");
  // No `trap '' XFSZ` here: moesim itself must ignore SIGXFSZ.
  const std::string cmd = "cd '" + kSourceDir.string() + "' && (ulimit -f 16; MOESIM_HOME='" + kSourceDir.string() + "' exec '" +
                          kBinary.string() + "' " + kSmallRun + " --out '" + out.string() + "') > /dev/null 2> '" + (io / "err").string() + "'";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal";
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_NE(read_text(io / "err").find("File too large"), std::string::npos) << read_text(io / "err");
  EXPECT_FALSE(fs::exists(out));
}

TEST(Outputs, a_killed_runs_leftovers_are_removed_by_the_next_run) {
  const auto dir = scratch_dir("out-leftover");
  const auto out = dir / "run";
  // What a run killed while writing leaves: its staging folder, with a partial file.
  fs::create_directories(dir / ".run.staging-AbC123");
  std::ofstream(dir / ".run.staging-AbC123" / "steps.csv") << "step,inst";
  fs::create_directories(dir / ".run.old-AbC123");
  ASSERT_EQ(run_cli(kSmallRun + " --out '" + out.string() + "'", "leftover").exit_code, 0);
  std::vector<std::string> hidden;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().front() == '.' && e.path().filename() != ".run.lock") hidden.push_back(e.path().filename());
  EXPECT_EQ(hidden, std::vector<std::string>{});
  // A killed run leaves the previous result as it was (no commit happened).
  EXPECT_TRUE(fs::exists(out / "summary.json"));
}

TEST(Outputs, a_folder_of_other_files_is_not_replaced_by_a_run) {
  const auto dir = scratch_dir("out-foreign");
  std::ofstream(dir / "thesis.tex") << "\\documentclass{article}\n";
  const CliResult r = run_cli(kSmallRun + " --out '" + dir.string() + "'", "foreign");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("holds other files and no run's outputs"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir / "thesis.tex"));
  for (const std::string bad : {".", "..", "results/.."}) {
    const CliResult c = run_cli(kSmallRun + " --out '" + bad + "'", "foreign-dot");
    EXPECT_EQ(c.exit_code, 3) << bad;
    EXPECT_NE(c.err.find("must be a folder of its own"), std::string::npos) << bad << ": " << c.err;
  }
}

TEST(Inputs, a_folder_where_a_file_is_expected_is_an_error_naming_it_not_a_crash) {
  const auto dir = scratch_dir("in-folder");
  // eplb --weights
  fs::create_directories(dir / "weights.json");
  CliResult r = run_cli("eplb --weights '" + (dir / "weights.json").string() + "' --replicas 4 --gpus 2", "in-folder-1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: " + (dir / "weights.json").string() + ": is a folder; weights files are files\n");
  // a gate-log folder whose log is a folder
  fs::create_directories(dir / "logs" / "gate_logs_0.json");
  std::ofstream(dir / "trace.yaml") << "model: mixtral-8x7b\ncluster: {gpu: h100-sxm, gpus_per_node: 4}\n"
                                       "workload: {requests: 3, routing: {model: trace, trace: " << (dir / "logs").string() << "}}\n";
  r = run_cli("validate '" + (dir / "trace.yaml").string() + "'", "in-folder-2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("gate_logs_0.json: is a folder, but a gate log is a file"), std::string::npos) << r.err;
  // the domain corpus of a catalog
  fs::create_directories(dir / "home" / "datasets" / "domain_queries.json");
  fs::create_directory_symlink(kSourceDir / "models", dir / "home" / "models");
  r = run_cli("--catalog '" + (dir / "home").string() + "' validate scenarios/quickstart.yaml", "in-folder-3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("domain_queries.json: is a folder; domain corpora are files"), std::string::npos) << r.err;
  // a dataset, and a scenario file
  fs::create_directories(dir / "data.jsonl");
  r = run_cli("validate scenarios/quickstart.yaml --set workload.dataset='" + (dir / "data.jsonl").string() + "'", "in-folder-4");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("data.jsonl is a folder"), std::string::npos) << r.err;
  fs::create_directories(dir / "scenario.yaml");
  r = run_cli("run '" + (dir / "scenario.yaml").string() + "'", "in-folder-5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("scenario.yaml: is a folder; scenario files are files"), std::string::npos) << r.err;
}

TEST(Inputs, report_on_a_sweep_table_with_a_short_row_names_the_line) {
  const auto dir = scratch_dir("in-short-row");
  std::ofstream(dir / "sweep.csv") << "point,parallel.mode,status,wall_s,error,mean_ttft_ms\n0,tp,ok,0.1,,12.5\n1\n";
  const CliResult r = run_cli("report '" + dir.string() + "'", "in-short-row");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: " + (dir / "sweep.csv").string() + ":3: has 1 fields but the header has 6\n");
}

// ---- limits ---------------------------------------------------------------------------------

/// A sparse file of 1 TB (or, where the file system caps file sizes lower, just over the 1 GiB
/// input limit): its size is what must be rejected, before any byte is read.
fs::path huge_sparse_file(const fs::path& dir, const std::string& name) {
  const auto p = dir / name;
  std::ofstream(p).put('{');
  std::error_code ec;
  fs::resize_file(p, 1ULL << 40, ec);
  if (ec) fs::resize_file(p, (1ULL << 30) + 1);
  return p;
}

TEST(Limits, a_terabyte_dataset_or_trace_is_rejected_by_size_before_it_is_read) {
  const auto dir = scratch_dir("limits-huge");
  const auto dataset = huge_sparse_file(dir, "huge.jsonl");
  const auto trace = huge_sparse_file(dir, "moe_expert_activations.csv");
  const std::string size = std::to_string(fs::file_size(dataset));
  const auto t0 = std::chrono::steady_clock::now();
  const CliResult d = run_cli("validate scenarios/quickstart.yaml --set workload.dataset=" + dataset.string(), "huge-d");
  EXPECT_EQ(d.exit_code, 2);
  EXPECT_EQ(d.err.substr(0, d.err.find('\n')),
            "error: --set workload.dataset=" + dataset.string() + ": workload.dataset: " + dataset.string() + " is " + size +
                " bytes, more than the limit of 1 GiB (1073741824 bytes) for datasets and traces; nothing was read");
  const CliResult t = run_cli("validate scenarios/quickstart.yaml --set workload.routing.model=trace --set workload.routing.trace=" +
                                  trace.string(),
                              "huge-t");
  EXPECT_EQ(t.exit_code, 2);
  EXPECT_NE(t.err.find("workload.routing.trace: " + trace.string() + " is " + size + " bytes, more than the limit of 1 GiB"),
            std::string::npos)
      << t.err;
  // A scenario file itself is bounded too (16 MiB): it is read whole before it is parsed.
  const auto scenario = dir / "huge.yaml";
  std::ofstream(scenario) << "model: mixtral-8x7b\n";
  fs::resize_file(scenario, (16ULL << 20) + 1);
  const CliResult y = run_cli("validate '" + scenario.string() + "'", "huge-y");
  EXPECT_EQ(y.exit_code, 2);
  EXPECT_EQ(y.err.substr(0, y.err.find('\n')), "error: " + scenario.string() +
                                                   ": is 16777217 bytes, more than the limit of 16 MiB (16777216 bytes) for "
                                                   "scenario files; nothing was read");
  const CliResult r = run_cli("run scenarios/quickstart.yaml --set workload.dataset=" + dataset.string() + " --out '" +
                                  (dir / "out").string() + "'",
                              "huge-run");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

TEST(Limits, a_gate_log_file_past_its_size_limit_is_refused_before_it_is_parsed) {
  // A gate-log file is parsed whole (about 9 bytes of memory per byte): one file past 128 MiB is
  // refused by its size (a sparse file: nothing is read), so memory stays bounded.
  const auto dir = scratch_dir("big-gate-log");
  fs::create_directories(dir / "logs");
  { std::ofstream(dir / "logs" / "gate_logs_0.json") << "{}"; }
  fs::resize_file(dir / "logs" / "gate_logs_0.json", (129ULL << 20));
  const auto t0 = std::chrono::steady_clock::now();
  const CliResult r = run_cli("validate scenarios/quickstart.yaml --set workload.routing.model=trace --set workload.routing.trace=" +
                                  (dir / "logs").string(),
                              "big-gate-log");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("gate_logs_0.json: a gate-log file may have at most 128 MiB (got 129 MiB)"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  fs::remove_all(dir);
}

TEST(Limits, a_dataset_of_junk_gives_a_short_report_in_bounded_memory) {
  const auto dir = scratch_dir("junk");
  {
    // 10 MB of lines that are not JSON, and one line nested 4 million levels deep.
    std::ofstream f(dir / "junk.jsonl");
    const std::string line = "{\"prompt\": [[x, \"domain\" cooking}} ,, \"output_tokens\" ] not json at all ....................\n";
    for (std::size_t written = 0; written < 10'000'000; written += line.size()) f << line;
    f << std::string(4'000'000, '[') << std::string(4'000'000, ']') << "\n";
  }
  const auto io = scratch_dir("junk-io");
  const std::string cmd = "cd '" + kSourceDir.string() + "' && /usr/bin/time -f '%M' -o '" + (io / "rss").string() + "' '" +
                          kBinary.string() + "' validate scenarios/quickstart.yaml --set workload.dataset='" + (dir / "junk.jsonl").string() +
                          "' > /dev/null 2> '" + (io / "err").string() + "'";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string err = read_text(io / "err");
  EXPECT_LE(std::count(err.begin(), err.end(), '\n'), 25) << err.substr(0, 2000);
  EXPECT_NE(err.find("more problems in this file (the first 20 are listed)"), std::string::npos) << err.substr(0, 2000);
  // GNU time writes "Command exited with non-zero status 2" before the figure.
  std::string rss = read_text(io / "rss");
  while (!rss.empty() && rss.back() == '\n') rss.pop_back();
  const long rss_kb = std::stol(rss.substr(rss.find_last_of('\n') + 1));
  EXPECT_LT(rss_kb, 200'000) << "peak memory " << rss_kb << " KB";
}

TEST(Limits, a_device_given_as_dataset_is_rejected_instead_of_read_without_end) {
  const CliResult r = run_cli("validate scenarios/quickstart.yaml --set workload.dataset=/dev/zero", "dev-zero");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "error: --set workload.dataset=/dev/zero: workload.dataset: /dev/zero is not a regular file; datasets and traces "
            "are read from regular files");
}

TEST(Limits, absurd_sizes_given_with_set_are_rejected_naming_the_limit) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"workload.requests=1000000000000", "workload.requests: must be in [1, 10000000] (got 1000000000000)"},
      {"workload.requests=1e12", "workload.requests: must be in [1, 10000000] (got 1e12)"},
      {"cluster.nodes=1000000", "cluster.nodes: must be in [1, 4096] (got 1000000)"},
      {"serving.max_num_batched_tokens=1e10", "serving.max_num_batched_tokens: must be in [1, 1048576] (got 1e10)"},
      {"serving.max_num_seqs=10000000", "serving.max_num_seqs: must be in [1, 65536] (got 10000000)"},
      {"serving.max_model_len=4294967296", "serving.max_model_len: must be in [0, 16777216] (got 4294967296)"},
      {"model.num_experts=1000000000", "model.num_experts: must be in [0, 16384] (got 1000000000)"},
      {"model.num_layers=100000", "model.num_layers: must be in [1, 1024] (got 100000)"},
      {"workload.output_tokens.value=1000000000", "workload.output_tokens.value: must be in [1, 16777216] (got 1000000000)"},
  };
  for (const auto& [set, expected] : cases) {
    const CliResult r = run_cli("validate scenarios/quickstart.yaml --set " + set, "absurd");
    EXPECT_EQ(r.exit_code, 2) << set;
    EXPECT_EQ(r.err.substr(0, r.err.find('\n')), "error: --set " + set + ": " + expected);
  }
}

TEST(Limits, gen_datasets_refuses_more_prompts_than_the_request_limit) {
  const auto out = scratch_dir("limits-gen") / "out";
  const CliResult r = run_cli("gen-datasets --count 100000 --prompts 1000000 --out '" + out.string() + "'", "gen-limit");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: --count x --prompts = 100000 x 1000000 = 100000000000 prompts, more than the limit of 10000000\n");
  EXPECT_FALSE(fs::exists(out));
}

TEST(Limits, a_sweep_over_the_point_limit_is_rejected_before_it_is_expanded) {
  const auto dir = scratch_dir("limits-sweep");
  std::string values;
  for (int i = 1; i <= 101; ++i) values += (i > 1 ? ", " : "") + std::to_string(i);
  const auto file = write_sweep_file(dir, "sweep:\n  grid:\n    workload.requests: [" + values + "]\n    serving.max_num_seqs: [" +
                                              values + "]\n  seeds: 1000\n");
  const auto t0 = std::chrono::steady_clock::now();
  const CliResult r = run_cli("sweep '" + file.string() + "' --out '" + (dir / "out").string() + "'", "sweep-limit");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "error: " + file.string() +
                ":8: sweep: expands to 10201000 points (101 values of workload.requests x 101 values of serving.max_num_seqs x "
                "1000 seeds), more than the limit of 10000 points per sweep; split it into several sweep files");
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
}

// ---- requests in = finished + rejected --------------------------------------------------------

TEST(Admission, requests_longer_than_max_model_len_are_rejected_with_a_reason_and_counted) {
  const auto dir = scratch_dir("admission");
  std::ofstream(dir / "mixed.jsonl") << "{\"domain\": \"cooking\", \"prompt_tokens\": 100, \"output_tokens\": 20}\n"
                                        "{\"domain\": \"cooking\", \"prompt_tokens\": 4000, \"output_tokens\": 200}\n"
                                        "{\"domain\": \"travel\", \"prompt_tokens\": 50, \"output_tokens\": 10}\n"
                                        "{\"domain\": \"travel\", \"prompt_tokens\": 5000, \"output_tokens\": 1}\n";
  const auto out = dir / "run";
  const CliResult r = run_cli(kSmallRun + " --set workload.dataset=" + (dir / "mixed.jsonl").string() + " --set workload.requests=4" +
                                  " --out '" + out.string() + "'",
                              "admission");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"], 2);
  EXPECT_EQ(s["rejected"], 2);
  EXPECT_EQ(s["rejected_reasons"], (nlohmann::json{{"exceeds_max_model_len", 2}}));
  EXPECT_EQ(s["total_input_tokens"], 150);  // only what was served
  const auto rows = split(read_text(out / "requests.csv"), '\n');
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(split(rows[1], ',').at(0), "0");
  EXPECT_EQ(split(rows[2], ',').at(0), "2");
}

TEST(Admission, a_run_where_every_request_is_rejected_reports_null_latencies_not_zero) {
  const auto dir = scratch_dir("all-rejected");
  std::ofstream(dir / "long.jsonl") << "{\"domain\": \"cooking\", \"prompt_tokens\": 4000, \"output_tokens\": 200}\n"
                                       "{\"domain\": \"travel\", \"prompt_tokens\": 5000, \"output_tokens\": 1}\n";
  const auto out = dir / "run";
  const CliResult r = run_cli(kSmallRun + " --set workload.dataset=" + (dir / "long.jsonl").string() + " --set workload.requests=2" +
                                  " --out '" + out.string() + "'",
                              "all-rejected");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"], 0);
  EXPECT_EQ(s["rejected"], 2);
  for (const char* name : {"ttft", "tpot", "itl", "e2el", "queue"})
    for (const char* stat : {"mean_", "median_", "std_", "p90_", "p95_", "p99_"}) {
      const std::string key = std::string(stat) + name + "_ms";
      ASSERT_TRUE(s.contains(key)) << key;
      EXPECT_TRUE(s[key].is_null()) << key << " = " << s[key].dump();
    }
  for (const auto& [k, v] : s["imbalance"].items())
    EXPECT_FALSE(v.is_number_float()) << "imbalance." << k << " = " << v.dump() << " with no step run";
}

}  // namespace
}  // namespace moesim::test
