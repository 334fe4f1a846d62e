// moesim_property: property and fault campaigns over random valid scenarios.
//
//   moesim_property --count N [--seed S] [--jobs J]        simulation properties
//   moesim_property --faults N --moesim BIN [--seed S]     fault injection through the CLI
//
// Simulation properties: each drawn scenario the loader accepts runs in its own process (one
// SimGrid engine per process) and must finish (exit 0, within --timeout), pass the run's own
// invariants and the independent checks of its output files (output_checks.hpp); every
// --deterministic-every-th one runs twice and must give byte-identical folders. A draw the
// loader refuses must be refused with a configuration error, never anything else.
//
// Faults: a drawn scenario's output folder holds a complete earlier result; a run of it is then
// killed (SIGKILL or SIGTERM at a random moment), limited in file size (a full disk), raced by a
// second run into the same folder, or pointed at a folder it cannot create. Afterwards the folder
// must hold a complete result, the earlier one or the new one, never a mix, and a clean rerun
// must succeed leaving nothing behind.
//
// Prints one line per failure (with the scenario file kept under --keep) and the totals; exits 1
// when any property failed.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sim/actors/simulation.hpp"
#include "sim/config/diagnostics.hpp"
#include "sim/metrics/report.hpp"
#include "tests/property/output_checks.hpp"
#include "tests/property/scenario_generator.hpp"

namespace fs = std::filesystem;
using namespace moesim;
using namespace moesim::property;

namespace {

struct Options {
  int count = 0;
  int faults = 0;
  std::uint64_t seed = 1;
  int jobs = 2;
  int timeout_s = 120;
  int deterministic_every = 25;
  int max_attempts = 200;
  double slow_s = 1e9;
  std::string scratch = "/tmp";
  std::string moesim;
  std::string keep = "property-failures";
  DrawLimits limits;
};

struct Totals {
  int drawn = 0, refused = 0, ran = 0, finished = 0, run_errors = 0, wrong = 0, crashes = 0, hangs = 0, nondeterministic = 0,
      loader_failures = 0;
  int fault_trials = 0, data_lost = 0, fault_failures = 0, kept_earlier = 0, got_new = 0;
  double load_s = 0;  // drawing and loading scenarios, in the parent
  std::map<std::string, int> covered;  // runs that preempted, throttled, rebalanced, ...
  std::map<std::string, int> refusals;  // first words of the loader's first error
  std::vector<double> wall_s;
};

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

/// The loader's reason without the numbers, to group refusals.
std::string refusal_kind(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  const auto colon = line.find(": ");
  if (colon != std::string::npos) line = line.substr(colon + 2);
  std::string kind;
  for (char c : line) {
    if (std::isdigit(static_cast<unsigned char>(c)) != 0) continue;
    kind += c;
    if (kind.size() >= 70) break;
  }
  return kind;
}

/// A drawn scenario the loader accepts: its files in `dir` and the loaded scenario.
struct Valid {
  fs::path yaml;
  Scenario sc;
};

std::optional<Valid> draw_valid(const ScenarioGenerator& gen, const Catalog& catalog, const Options& o, std::uint64_t index,
                                const fs::path& dir, Totals& t) {
  const auto t0 = std::chrono::steady_clock::now();
  struct AddTime {
    Totals& t;
    std::chrono::steady_clock::time_point t0;
    ~AddTime() { t.load_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
  } add_time{t, t0};
  for (int attempt = 0; attempt < o.max_attempts; ++attempt) {
    const std::uint64_t draw_index = index * 1000 + static_cast<std::uint64_t>(attempt);
    const fs::path yaml = dir / fmt::format("s{}.yaml", draw_index), data = dir / fmt::format("s{}.jsonl", draw_index);
    const DrawnScenario d = gen.draw(o.seed, draw_index, data);
    write_file(yaml, d.yaml);
    if (!d.dataset_jsonl.empty()) write_file(data, d.dataset_jsonl);
    ++t.drawn;
    try {
      Scenario sc = load_scenario(yaml, {}, catalog);
      if (d.kv_room_tokens > 0) {
        write_file(yaml, set_kv_room(d.yaml, sc, d.kv_room_tokens));
        sc = load_scenario(yaml, {}, catalog);
      }
      return Valid{yaml, std::move(sc)};
    } catch (const ConfigError& e) {
      ++t.refused;
      ++t.refusals[refusal_kind(e.what())];
    } catch (const std::exception& e) {
      ++t.loader_failures;
      std::cout << "FAIL loader threw a non-configuration error on " << yaml << ": " << e.what() << "\n";
    }
    fs::remove(yaml);
    fs::remove(data);
  }
  return std::nullopt;
}

/// Child: runs the scenario into `out` and checks it; writes the problems to `fd`; exit 0 or 1.
[[noreturn]] void child_run(const Valid& v, const fs::path& out, int fd, int timeout_s) {
  alarm(static_cast<unsigned>(timeout_s));
  std::string report;
  bool ok = false;
  try {
    const RunResult result = run_simulation(v.sc, RunOptions{});
    check_invariants(v.sc, result);
    fs::create_directories(out);
    write_run_outputs(out, v.sc, result);
    for (const auto& p : check_run_outputs(out, v.sc)) report += "wrong: " + p + "\n";
    ok = report.empty();
    // What the run went through, so that the campaign shows what its scenarios covered.
    const auto s = make_summary(v.sc, result);
    std::string cover;
    if (s["serving"]["preemptions"].get<std::int64_t>() > 0) cover += " preempted";
    if (s["serving"]["kv_tokens_per_attention_rank"].get<double>() < 4.0 * v.sc.serving.max_model_len) cover += " kv_tight";
    if (s["serving"]["prefix_hit_tokens"].get<std::int64_t>() > 0) cover += " prefix_hits";
    if (s["serving"]["kv_transfers"].get<std::int64_t>() > 0) cover += " kv_transfers";
    if (s["rejected"].get<std::int64_t>() > 0) cover += " rejected";
    if (s["energy"]["throttled_s"].get<double>() > 0) cover += " throttled";
    if (s["routing"]["rebalances"]["count"].get<std::int64_t>() > 0) cover += " rebalanced";
    if (s["routing"]["dropped_assignments"].get<double>() > 0) cover += " dropped";
    if (s["completed"].get<std::int64_t>() == 0) cover += " none_completed";
    if (!cover.empty()) report = "cover:" + cover + "\n" + report;
  } catch (const std::exception& e) {
    report += std::string("error: ") + e.what() + "\n";
  }
  if (report.size() > 4000) report.resize(4000);
  (void)!::write(fd, report.data(), report.size());
  ::_exit(ok ? 0 : 1);
}

struct Running {
  pid_t pid;
  int fd;
  std::uint64_t index;
  fs::path yaml, out;
  int role;  // 0: the only run, 1/2: the two runs of a determinism pair
  std::chrono::steady_clock::time_point start;
};

void keep_failure(const Options& o, const fs::path& yaml) {
  fs::create_directories(o.keep);
  fs::copy_file(yaml, fs::path(o.keep) / yaml.filename(), fs::copy_options::overwrite_existing);
  auto data = yaml;
  data.replace_extension(".jsonl");
  if (fs::exists(data)) fs::copy_file(data, fs::path(o.keep) / data.filename(), fs::copy_options::overwrite_existing);
}

void simulation_campaign(const Options& o, const Catalog& catalog, const ScenarioGenerator& gen, const fs::path& work, Totals& t) {
  std::vector<Running> running;
  std::map<std::uint64_t, int> pair_left;  // determinism pairs: runs still going
  std::map<std::uint64_t, bool> pair_ok;
  std::uint64_t next = 0;
  std::vector<std::pair<Valid, int>> queue;  // (scenario, role)
  const auto reap = [&](bool block) {
    while (!running.empty()) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, block ? 0 : WNOHANG);
      if (pid <= 0) return;
      const auto it = std::find_if(running.begin(), running.end(), [&](const Running& r) { return r.pid == pid; });
      if (it == running.end()) continue;
      Running r = *it;
      running.erase(it);
      std::string report;
      char buf[4096];
      for (ssize_t n; (n = ::read(r.fd, buf, sizeof buf)) > 0;) report.append(buf, static_cast<std::size_t>(n));
      ::close(r.fd);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
      t.wall_s.push_back(wall);
      if (wall > o.slow_s) {
        std::cout << fmt::format("slow: {:.1f} s: {}\n", wall, r.yaml.string());
        keep_failure(o, r.yaml);
      }
      if (report.rfind("cover:", 0) == 0) {
        const auto eol = report.find('\n');
        std::stringstream words(report.substr(6, eol - 6));
        for (std::string w; words >> w;) ++t.covered[w];
        report.erase(0, eol + 1);
      }
      bool ok = false;
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        ++t.hangs;
        std::cout << "FAIL hang: no result after " << o.timeout_s << " s: " << r.yaml << "\n";
      } else if (WIFSIGNALED(status)) {
        ++t.crashes;
        std::cout << "FAIL crash: signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status)) << "): " << r.yaml << "\n";
      } else if (WEXITSTATUS(status) != 0) {
        if (report.rfind("error: ", 0) == 0) ++t.run_errors;
        else ++t.wrong;
        std::cout << "FAIL " << r.yaml << "\n" << report;
      } else {
        ++t.finished;
        ok = true;
      }
      if (!ok) keep_failure(o, r.yaml);
      if (r.role == 0) {
        if (ok) fs::remove_all(r.out);
      } else {
        pair_ok[r.index] = pair_ok.count(r.index) == 0 ? ok : pair_ok[r.index] && ok;
        if (--pair_left[r.index] == 0) {
          const fs::path a = r.out.parent_path() / fmt::format("o{}-1", r.index), b = r.out.parent_path() / fmt::format("o{}-2", r.index);
          if (pair_ok[r.index]) {
            const std::string diff = first_difference(folder_contents(a), folder_contents(b));
            if (!diff.empty()) {
              ++t.nondeterministic;
              keep_failure(o, r.yaml);
              std::cout << "FAIL not deterministic: two runs of " << r.yaml << ": " << diff << "\n";
            }
          }
          fs::remove_all(a);
          fs::remove_all(b);
        }
      }
      if (!block) continue;
      return;
    }
  };
  int valid = 0;
  while (valid < o.count || !queue.empty() || !running.empty()) {
    while (static_cast<int>(running.size()) < o.jobs && (!queue.empty() || valid < o.count)) {
      if (queue.empty()) {
        auto v = draw_valid(gen, catalog, o, next, work, t);
        const std::uint64_t index = next++;
        if (!v) {
          std::cout << "FAIL no valid draw in " << o.max_attempts << " attempts at index " << index << "\n";
          ++t.loader_failures;
          ++valid;
          continue;
        }
        ++valid;
        ++t.ran;
        if (o.deterministic_every > 0 && index % static_cast<std::uint64_t>(o.deterministic_every) == 0) {
          pair_left[index] = 2;
          queue.emplace_back(*v, 1);
          queue.emplace_back(std::move(*v), 2);
        } else {
          queue.emplace_back(std::move(*v), 0);
        }
      }
      auto [v, role] = std::move(queue.front());
      queue.erase(queue.begin());
      const std::uint64_t index = std::stoull(v.yaml.stem().string().substr(1)) / 1000;
      const fs::path out = work / (role == 0 ? fmt::format("o{}", index) : fmt::format("o{}-{}", index, role));
      int fds[2];
      if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
      std::cout.flush();
      const pid_t pid = ::fork();
      if (pid < 0) throw std::runtime_error("fork failed");
      if (pid == 0) {
        ::close(fds[0]);
        child_run(v, out, fds[1], o.timeout_s);
      }
      ::close(fds[1]);
      running.push_back({pid, fds[0], index, v.yaml, out, role, std::chrono::steady_clock::now()});
    }
    reap(true);
  }
}

// ---- faults through the CLI -----------------------------------------------------------------

struct Cli {
  int exit_code = -1;
  int signal = 0;
};

/// Starts `moesim run yaml --quiet --out out [extra]` (stdout/stderr to `log`); optionally with a
/// file-size limit in bytes.
pid_t start_cli(const Options& o, const fs::path& yaml, const fs::path& out, const std::vector<std::string>& extra, const fs::path& log,
                rlim_t fsize = RLIM_INFINITY) {
  std::vector<std::string> args{o.moesim, "run", yaml.string(), "--quiet", "--out", out.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    if (fsize != RLIM_INFINITY) {
      rlimit lim{fsize, fsize};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

Cli wait_cli(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  Cli c;
  if (WIFEXITED(status)) c.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) c.signal = WTERMSIG(status);
  return c;
}

std::string read_log(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void fault_campaign(const Options& o, const Catalog& catalog, const ScenarioGenerator& gen, const fs::path& work, Totals& t) {
  static const char* kFaults[] = {"SIGKILL", "SIGTERM", "full disk", "two runs at once", "unwritable folder"};
  for (int i = 0; i < o.faults; ++i) {
    const std::uint64_t index = 1'000'000 + static_cast<std::uint64_t>(i);
    auto v = draw_valid(gen, catalog, o, index, work, t);
    if (!v) continue;
    ++t.fault_trials;
    const int fault = i % 5;
    const fs::path dir = work / fmt::format("f{}", i), out = dir / "run", log = dir / "log";
    fs::create_directories(dir);
    const auto failed = [&](const std::string& why) {
      ++t.fault_failures;
      keep_failure(o, v->yaml);
      std::cout << "FAIL fault " << kFaults[fault] << " on " << v->yaml << ": " << why << "\n" << read_log(log);
    };
    // The new result, and an earlier complete one (another seed) in the folder.
    const fs::path ref = dir / "ref";
    const auto t0 = std::chrono::steady_clock::now();
    if (const Cli c = wait_cli(start_cli(o, v->yaml, ref, {}, log)); c.exit_code != 0) {
      failed(fmt::format("a clean run exited {} (signal {})", c.exit_code, c.signal));
      continue;
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto expected = folder_contents(ref);
    if (const Cli c = wait_cli(start_cli(o, v->yaml, out, {"--set", "seed=" + std::to_string(v->sc.seed + 1)}, log)); c.exit_code != 0) {
      failed(fmt::format("the run with another seed exited {}", c.exit_code));
      continue;
    }
    const auto earlier = folder_contents(out);
    // A random moment within the run.
    const unsigned seed_bits = static_cast<unsigned>(index * 2654435761u);
    const auto delay = std::chrono::duration<double>(wall * 1.2 * (seed_bits % 1000) / 1000.0);
    bool must_keep_earlier = false;
    if (fault == 0 || fault == 1) {
      const pid_t pid = start_cli(o, v->yaml, out, {}, log);
      std::this_thread::sleep_for(delay);
      ::kill(pid, fault == 0 ? SIGKILL : SIGTERM);
      (void)wait_cli(pid);
    } else if (fault == 2) {
      std::size_t largest = 1;
      for (const auto& [name, bytes] : expected) largest = std::max(largest, bytes.size());
      const rlim_t limit = 1 + (seed_bits % largest);
      const Cli c = wait_cli(start_cli(o, v->yaml, out, {}, log, limit));
      if (c.signal != 0) failed(fmt::format("a file-size limit of {} bytes killed the run with signal {}", limit, c.signal));
      if (c.exit_code != 0 && c.exit_code != 3) failed(fmt::format("a file-size limit of {} bytes gave exit {}, not 3", limit, c.exit_code));
      if (c.exit_code == 3) must_keep_earlier = true;
    } else if (fault == 3) {
      const fs::path log2 = dir / "log2";
      const pid_t a = start_cli(o, v->yaml, out, {}, log);
      std::this_thread::sleep_for(delay / 4);
      const pid_t b = start_cli(o, v->yaml, out, {}, log2);
      const Cli ca = wait_cli(a), cb = wait_cli(b);
      if (ca.exit_code != 0 && cb.exit_code != 0) failed(fmt::format("both racing runs failed ({}, {})", ca.exit_code, cb.exit_code));
      for (const auto& [c, l] : {std::pair{cb, log2}, std::pair{ca, log}})
        if (c.exit_code != 0 && read_log(l).find("another") == std::string::npos && read_log(l).find("lock") == std::string::npos)
          failed("a refused racing run did not say the folder is in use: " + read_log(l));
    } else {
      const fs::path blocker = dir / "file";
      write_file(blocker, "not a folder\n");
      const Cli c = wait_cli(start_cli(o, v->yaml, blocker / "run", {}, log));
      if (c.exit_code != 3 || read_log(log).find(blocker.string()) == std::string::npos)
        failed(fmt::format("an uncreatable folder gave exit {}, expected 3 naming it", c.exit_code));
      if (read_log(blocker) != "not a folder\n") failed("the file in the way was changed");
      must_keep_earlier = true;
    }
    const auto after = folder_contents(out);
    const bool is_earlier = first_difference(after, earlier).empty(), is_new = first_difference(after, expected).empty();
    if (!is_earlier && !is_new) {
      ++t.data_lost;
      failed("the folder holds neither the earlier result nor the new one: " + first_difference(after, earlier) + " / " +
             first_difference(after, expected));
    } else if (must_keep_earlier && !is_earlier) {
      ++t.data_lost;
      failed("a failed run replaced the earlier result");
    }
    t.kept_earlier += is_earlier;
    t.got_new += is_new && !is_earlier;
    // A clean rerun completes and leaves nothing but its lock beside the folder.
    if (const Cli c = wait_cli(start_cli(o, v->yaml, out, {}, log)); c.exit_code != 0) failed(fmt::format("the rerun exited {}", c.exit_code));
    if (const std::string diff = first_difference(folder_contents(out), expected); !diff.empty()) failed("the rerun's result differs: " + diff);
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(".run.", 0) == 0 && name != ".run.lock") failed("left behind: " + name);
    }
    fs::remove_all(dir);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moesim_property: property and fault campaigns over random valid scenarios"};
  Options o;
  std::string catalog_dir = MOESIM_SOURCE_DIR;
  app.add_option("--count", o.count, "scenarios the loader accepts to run and check");
  app.add_option("--faults", o.faults, "fault-injection trials through the CLI (needs --moesim)");
  app.add_option("--moesim", o.moesim, "the moesim binary for --faults");
  app.add_option("--seed", o.seed, "campaign seed: the same seed draws the same scenarios");
  app.add_option("--jobs,-j", o.jobs, "runs at once")->check(CLI::Range(1, 256));
  app.add_option("--timeout", o.timeout_s, "seconds a run may take before it counts as hung")->check(CLI::Range(1, 86400));
  app.add_option("--deterministic-every", o.deterministic_every, "run every n-th scenario twice and compare (0: never)");
  app.add_option("--max-requests", o.limits.max_requests, "most requests a drawn scenario has")->check(CLI::Range(1, 100000));
  app.add_option("--max-output-tokens", o.limits.max_output_tokens, "longest output a drawn request has")->check(CLI::Range(1, 1000000));
  app.add_option("--max-prompt-tokens", o.limits.max_prompt_tokens, "longest prompt a drawn request has")->check(CLI::Range(1, 1000000));
  app.add_option("--max-gpus", o.limits.max_gpus, "most GPUs a drawn scenario has")->check(CLI::Range(1, 4096));
  app.add_option("--slow", o.slow_s, "print (and keep) the scenarios whose run takes longer than this many seconds");
  app.add_option("--scratch", o.scratch, "folder for the runs' outputs (a tmpfs such as /dev/shm is fastest)");
  app.add_option("--keep", o.keep, "folder for the scenario files of failures");
  app.add_option("--catalog", catalog_dir, "folder holding models/*/cards");
  CLI11_PARSE(app, argc, argv);
  if (o.faults > 0 && o.moesim.empty()) {
    std::cerr << "error: --faults needs --moesim BIN\n";
    return 2;
  }
  const Catalog catalog(catalog_dir);
  const ScenarioGenerator gen(catalog, o.limits);
  std::string tmpl = (fs::path(o.scratch) / "moesim-property-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::cerr << "error: cannot make a scratch folder\n";
    return 3;
  }
  const fs::path work = tmpl.c_str();
  Totals t;
  const auto t0 = std::chrono::steady_clock::now();
  simulation_campaign(o, catalog, gen, work, t);
  fault_campaign(o, catalog, gen, work, t);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fs::remove_all(work);

  std::sort(t.wall_s.begin(), t.wall_s.end());
  const auto pct = [&](double p) { return t.wall_s.empty() ? 0.0 : t.wall_s[static_cast<std::size_t>(p * static_cast<double>(t.wall_s.size() - 1))]; };
  std::cout << fmt::format("seed {}: {} draws, {} refused by the loader, {} loader failures ({:.1f} s drawing and loading)\n", o.seed,
                           t.drawn, t.refused, t.loader_failures, t.load_s);
  std::cout << fmt::format("runs: {} scenarios, {} finished and checked, {} run errors, {} wrong results, {} crashes, {} hangs, "
                           "{} not deterministic\n",
                           t.ran, t.finished, t.run_errors, t.wrong, t.crashes, t.hangs, t.nondeterministic);
  std::cout << fmt::format("run wall time: median {:.3f} s, p99 {:.3f} s, max {:.3f} s; campaign {:.1f} s\n", pct(0.5), pct(0.99),
                           t.wall_s.empty() ? 0.0 : t.wall_s.back(), wall);
  if (!t.covered.empty()) {
    std::string line = "runs that went through:";
    for (const auto& [k, n] : t.covered) line += fmt::format(" {} {}", k, n);
    std::cout << line << "\n";
  }
  if (o.faults > 0)
    std::cout << fmt::format("faults: {} trials, {} failures, {} with data lost; afterwards {} held the earlier result, {} the new one\n",
                             t.fault_trials, t.fault_failures, t.data_lost, t.kept_earlier, t.got_new);
  std::vector<std::pair<int, std::string>> kinds;
  for (const auto& [k, n] : t.refusals) kinds.emplace_back(n, k);
  std::sort(kinds.rbegin(), kinds.rend());
  for (std::size_t i = 0; i < std::min<std::size_t>(kinds.size(), 8); ++i)
    std::cout << fmt::format("  refused {:5d} x {}\n", kinds[i].first, kinds[i].second);
  const bool failed = t.run_errors + t.wrong + t.crashes + t.hangs + t.nondeterministic + t.loader_failures + t.fault_failures > 0;
  return failed ? 1 : 0;
}
