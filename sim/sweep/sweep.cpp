#include "sim/sweep/sweep.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <glob.h>
#include <nlohmann/json.hpp>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "sim/config/scenario.hpp"
#include "sim/metrics/report.hpp"

extern char** environ;

namespace moesim {

std::string SweepPoint::dir_name() const { return fmt::format("point-{:04d}", index); }

std::vector<std::string> SweepPoint::set_args() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : overrides) out.push_back(k + "=" + v);
  return out;
}

namespace {

using Values = std::vector<std::string>;

std::string value_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

Values expand_glob(const std::string& pattern, const std::filesystem::path& scenario) {
  auto run_glob = [](const std::string& pat) {
    Values out;
    glob_t g{};
    if (::glob(pat.c_str(), 0, nullptr, &g) == 0)
      for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    ::globfree(&g);
    return out;  // glob(3) sorts its matches
  };
  Values out = run_glob(pattern);
  if (out.empty() && !std::filesystem::path(pattern).is_absolute())
    out = run_glob((scenario.parent_path() / pattern).string());
  return out;
}

}  // namespace

SweepSpec load_sweep(const std::filesystem::path& scenario, const std::vector<std::string>& base_sets, const Catalog& catalog) {
  const std::string file = scenario.string();
  // The base scenario must be valid on its own.
  const Scenario base = load_scenario(scenario, base_sets, catalog);

  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    throw ConfigError({{file, e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "malformed YAML: " + e.msg}});
  }
  const YAML::Node sweep = root["sweep"];
  if (!sweep) throw ConfigError({{file, 0, "sweep", "this scenario has no sweep section; run it with `moesim run`"}});
  std::vector<Diagnostic> diags;
  auto line_of = [](const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; };
  if (!sweep.IsMap()) throw ConfigError({{file, line_of(sweep), "sweep", "expected a mapping with grid, zip and/or seeds"}});

  std::vector<std::pair<std::string, Values>> grid, zip;
  int seeds = 1;
  const std::vector<std::string> allowed{"grid", "zip", "seeds"};
  for (auto it = sweep.begin(); it != sweep.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "seeds") {
      std::string err;
      if (!Codec<int>::decode(it->second, seeds, err) || seeds < 1 || seeds > kMaxSweepPoints)
        diags.push_back({file, line_of(it->second), "sweep.seeds",
                         fmt::format("must be an integer in [1, {}] (got {})", kMaxSweepPoints, describe_node(it->second))});
      continue;
    }
    if (key != "grid" && key != "zip") {
      std::string msg = "unknown key \"" + key + "\"";
      if (auto near = closest_match(key, allowed); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
      diags.push_back({file, line_of(it->first), "sweep." + key, msg + "; allowed keys: grid, zip, seeds"});
      continue;
    }
    if (!it->second.IsMap()) {
      diags.push_back({file, line_of(it->second), "sweep." + key, "expected a mapping of key.path: values"});
      continue;
    }
    auto& target = key == "grid" ? grid : zip;
    for (auto kv = it->second.begin(); kv != it->second.end(); ++kv) {
      const std::string path = kv->first.Scalar();
      const std::string where = "sweep." + key + "." + path;
      Values values;
      if (kv->second.IsSequence()) {
        // Not `: kv->second`: operator-> returns a temporary proxy, so that range would dangle.
        const YAML::Node list = kv->second;
        for (const auto& v : list) values.push_back(value_text(v));
      } else if (kv->second.IsMap() && kv->second["glob"] && kv->second.size() == 1) {
        const std::string pattern = kv->second["glob"].Scalar();
        values = expand_glob(pattern, scenario);
        if (values.empty()) diags.push_back({file, line_of(kv->second), where, "glob \"" + pattern + "\" matches no file"});
      } else {
        diags.push_back({file, line_of(kv->second), where, "expected a list of values or {glob: PATTERN}"});
        continue;
      }
      if (values.empty() && kv->second.IsSequence()) diags.push_back({file, line_of(kv->second), where, "the list is empty"});
      target.emplace_back(path, std::move(values));
    }
  }
  {
    // A key swept twice would label rows with one value while the run used another.
    std::map<std::string, std::string> swept;
    for (const auto& [k, v] : grid) swept.emplace(k, "sweep.grid");
    for (const auto& [k, v] : zip) {
      auto [it, fresh] = swept.emplace(k, "sweep.zip");
      if (!fresh)
        diags.push_back({file, line_of(sweep["zip"]), "sweep.zip." + k,
                         "is also swept by sweep.grid." + k + "; a key may be swept in grid or in zip, not both"});
    }
    if (seeds > 1 && swept.contains("seed"))
      diags.push_back({file, line_of(sweep["seeds"]), "sweep.seeds",
                       "repeats every point with its own seed, but " + swept["seed"] + ".seed sweeps the seed too; use one of them"});
    for (const auto& set : base_sets) {
      const std::string key = set.substr(0, set.find('='));
      if (auto it = swept.find(key); it != swept.end())
        diags.push_back({"--set " + set, 0, key,
                         "is swept by " + it->second + "." + key + ", which would override it in every point; drop the --set or the swept key"});
      else if (key == "seed" && seeds > 1)
        diags.push_back({"--set " + set, 0, key, "is swept by sweep.seeds; drop the --set or set seeds to 1"});
    }
  }
  if (!zip.empty()) {
    for (const auto& [k, v] : zip)
      if (v.size() != zip.front().second.size())
        diags.push_back({file, line_of(sweep["zip"]), "sweep.zip." + k,
                         fmt::format("has {} values but sweep.zip.{} has {}; zipped lists advance together",
                                     v.size(), zip.front().first, zip.front().second.size())});
  }
  if (grid.empty() && zip.empty() && seeds == 1 && diags.empty())
    diags.push_back({file, line_of(sweep), "sweep", "sweeps nothing: give grid, zip or seeds > 1"});
  if (!diags.empty()) throw ConfigError(diags);
  {
    // Counted before expanding: a grid of absurd size must fail here, not exhaust memory.
    double points = seeds;
    std::string factors;
    for (const auto& [k, v] : grid) {
      points *= static_cast<double>(v.size());
      factors += fmt::format("{}{} values of {}", factors.empty() ? "" : " x ", v.size(), k);
    }
    if (!zip.empty()) {
      points *= static_cast<double>(zip.front().second.size());
      factors += fmt::format("{}{} zipped values", factors.empty() ? "" : " x ", zip.front().second.size());
    }
    if (seeds > 1) factors += fmt::format("{}{} seeds", factors.empty() ? "" : " x ", seeds);
    if (points > kMaxSweepPoints)
      throw ConfigError({{file, line_of(sweep), "sweep",
                          fmt::format("expands to {:.0f} points ({}), more than the limit of {} points per sweep; split it into "
                                      "several sweep files",
                                      points, factors, kMaxSweepPoints)}});
  }

  SweepSpec spec;
  spec.scenario = scenario;
  for (const auto& [k, v] : grid) spec.keys.push_back(k);
  for (const auto& [k, v] : zip) spec.keys.push_back(k);
  if (seeds > 1) spec.keys.push_back("seed");

  // Cartesian product, first grid key slowest.
  std::vector<std::vector<std::pair<std::string, std::string>>> combos{{}};
  for (const auto& [k, values] : grid) {
    std::vector<std::vector<std::pair<std::string, std::string>>> next;
    for (const auto& c : combos)
      for (const auto& v : values) {
        auto n = c;
        n.emplace_back(k, v);
        next.push_back(std::move(n));
      }
    combos = std::move(next);
  }
  if (!zip.empty()) {
    std::vector<std::vector<std::pair<std::string, std::string>>> next;
    for (const auto& c : combos)
      for (std::size_t i = 0; i < zip.front().second.size(); ++i) {
        auto n = c;
        for (const auto& [k, values] : zip) n.emplace_back(k, values[i]);
        next.push_back(std::move(n));
      }
    combos = std::move(next);
  }
  for (const auto& c : combos)
    for (int s = 0; s < seeds; ++s) {
      SweepPoint p;
      p.index = static_cast<int>(spec.points.size());
      p.overrides = c;
      if (seeds > 1) p.overrides.emplace_back("seed", std::to_string(base.seed + static_cast<std::uint64_t>(s)));
      spec.points.push_back(std::move(p));
    }

  // Every point must load: unknown keys, bad values and impossible layouts fail here.
  for (auto& p : spec.points) {
    auto sets = base_sets;
    for (const auto& a : p.set_args()) sets.push_back(a);
    try {
      p.fingerprint = scenario_fingerprint(load_scenario(scenario, sets, catalog));
    } catch (const ConfigError& e) {
      for (auto d : e.diagnostics()) {
        d.message += fmt::format(" (sweep point {})", p.index);
        diags.push_back(std::move(d));
      }
      if (diags.size() > 20) break;
    }
  }
  if (!diags.empty()) throw ConfigError(diags);
  return spec;
}

void parse_shard(const std::string& text, SweepOptions& options) {
  int i = 0, n = 0;
  char slash = 0, extra = 0;
  std::istringstream in(text);
  if (!(in >> i >> slash >> n) || slash != '/' || (in >> extra) || n < 1 || i < 1 || i > n)
    throw ConfigError({{"--shard " + text, 0, "", "expected i/N with 1 <= i <= N (e.g. 2/4)"}});
  options.shard_index = i;
  options.shard_count = n;
}

namespace {

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in, nullptr, false);
}

/// A summary.json a finished run wrote: a JSON object with the blocks every run has.
bool valid_summary(const nlohmann::json& j) {
  return j.is_object() && j.contains("completed") && j["completed"].is_number_integer() && j.contains("run") &&
         j["run"].is_object() && j.contains("energy") && j["energy"].is_object();
}

/// What the folder of a point holds, judged against the point as it would run now.
enum class PointState { absent, complete, stale, invalid, failed };

struct PointStatus {
  PointState state = PointState::absent;
  std::string why;  ///< stale, invalid: what is wrong
};

PointStatus point_status(const SweepPoint& p, const std::filesystem::path& dir) {
  std::error_code ec;
  const auto marker = dir / "done.json";
  if (std::filesystem::is_regular_file(marker, ec)) {
    const auto j = read_json(marker);
    if (j.is_discarded() || !j.is_object() || !j.contains("overrides") || !j.contains("fingerprint") || !j["fingerprint"].is_string())
      return {PointState::invalid, "done.json is unreadable or from an older moesim"};
    nlohmann::json expected = nlohmann::json::object();
    for (const auto& [k, v] : p.overrides) expected[k] = v;
    if (j["overrides"] != expected) return {PointState::stale, "the point's overrides changed since it ran"};
    if (j["fingerprint"].get<std::string>() != p.fingerprint)
      return {PointState::stale, "the resolved configuration (base scenario, --set, cards or input files) changed since it ran"};
    const auto summary = dir / "run" / "summary.json";
    if (!std::filesystem::is_regular_file(summary, ec)) return {PointState::invalid, "run/summary.json is missing"};
    if (!valid_summary(read_json(summary))) return {PointState::invalid, "run/summary.json is empty, corrupt or incomplete"};
    return {PointState::complete, ""};
  }
  if (std::filesystem::is_regular_file(dir / "failed.json", ec)) return {PointState::failed, ""};
  return {PointState::absent, ""};
}

bool completed(const SweepPoint& p, const std::filesystem::path& dir) { return point_status(p, dir).state == PointState::complete; }

std::string tail_of(const std::filesystem::path& file, std::size_t max_chars) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > max_chars) text = "..." + text.substr(text.size() - max_chars);
  return text;
}

nlohmann::json marker_json(const SweepPoint& p, const std::string& status, double wall, const std::string& error) {
  nlohmann::json j;
  j["point"] = p.index;
  nlohmann::json o = nlohmann::json::object();
  for (const auto& [k, v] : p.overrides) o[k] = v;
  j["overrides"] = o;
  j["fingerprint"] = p.fingerprint;
  j["status"] = status;
  j["wall_s"] = wall;
  if (!error.empty()) j["error"] = error;
  return j;
}

/// fork() for a sweep point. In the child (0 returned) the point dies with the sweep, however the
/// sweep ends (even SIGKILL), takes the default action of the signals the sweep handles, and
/// writes its stdout to /dev/null and its stderr to `err_path`.
pid_t fork_point(const std::string& err_path) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot fork a sweep point: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(128 + SIGTERM);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, SIG_DFL);
    const int out = ::open("/dev/null", O_WRONLY);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || ::dup2(out, STDOUT_FILENO) < 0 || ::dup2(err, STDERR_FILENO) < 0) ::_exit(126);
    ::close(out);
    ::close(err);
  }
  return pid;
}

pid_t spawn_point(const SweepPoint& p, const SweepSpec& spec, const SweepOptions& opt, const std::filesystem::path& dir) {
  std::vector<std::string> args{opt.self_exe.string()};
  for (const auto& a : opt.extra_args) args.push_back(a);
  args.insert(args.end(), {"run", spec.scenario.string(), "--quiet", "--out", (dir / "run").string()});
  for (const auto& a : opt.base_sets) args.insert(args.end(), {"--set", a});
  for (const auto& a : p.set_args()) args.insert(args.end(), {"--set", a});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string err_path = (dir / "stderr.txt").string();
  if (opt.entry != nullptr) {
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    const pid_t pid = fork_point(err_path);
    if (pid == 0) {
      int code = 1;
      try {
        code = opt.entry(static_cast<int>(args.size()), argv.data());
      } catch (...) {
        code = 3;
      }
      std::cout.flush();
      std::cerr.flush();
      std::fflush(nullptr);
      ::_exit(code);
    }
    return pid;
  }
  // A fresh exec of the binary, with the same tie to the sweep's life as a fork.
  std::fflush(nullptr);
  const pid_t pid = fork_point(err_path);
  if (pid == 0) {
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  return pid;
}

/// Removes the temporaries a killed run left under `dir` (write_file_atomically's ".tmp-*" files),
/// so that a resumed point starts from a directory holding only complete files.
void remove_stale_temporaries(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return;
  std::vector<std::filesystem::path> stale;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec) && it->path().filename().string().rfind(".tmp-", 0) == 0) stale.push_back(it->path());
  for (const auto& p : stale) std::filesystem::remove(p, ec);
}

class Progress {
 public:
  Progress(int total) : total_(total), tty_(::isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()) {}
  void update(int done, int failed, const std::string& last) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double eta = done > 0 ? elapsed / done * (total_ - done) : 0.0;
    if (tty_) {
      const int width = 30;
      const int filled = total_ > 0 ? width * done / total_ : width;
      std::cerr << fmt::format("\r[{}{}] {}/{} points, {} failed, {:.1f} s elapsed, ETA {:.1f} s   ", std::string(filled, '#'),
                               std::string(width - filled, '.'), done, total_, failed, elapsed, eta)
                << std::flush;
      if (done == total_) std::cerr << "\n";
    } else {
      std::cerr << fmt::format("sweep: {}/{} done ({} failed), {} , {:.1f} s elapsed, ETA {:.1f} s\n", done, total_, failed, last,
                               elapsed, eta);
    }
  }

 private:
  int total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

/// Handles SIGINT, SIGTERM and SIGHUP for the life of a sweep (without SA_RESTART, so that a
/// blocking waitpid returns to look at the flag), and restores the previous handlers after.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &previous_[i]);
  }
  ~StopSignals() {
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &previous_[i], nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> previous_{};
};

/// Terminates the running points (SIGTERM, then SIGKILL after 5 s) and reaps them.
void stop_points(const std::map<pid_t, std::pair<const SweepPoint*, std::chrono::steady_clock::time_point>>& running) {
  for (const auto& [pid, point] : running) ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::set<pid_t> left;
  for (const auto& [pid, point] : running) left.insert(pid);
  while (!left.empty()) {
    for (auto it = left.begin(); it != left.end();) {
      int status = 0;
      const pid_t r = ::waitpid(*it, &status, WNOHANG);
      it = (r == *it || (r < 0 && errno == ECHILD)) ? left.erase(it) : std::next(it);
    }
    if (left.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (pid_t pid : left) ::kill(pid, SIGKILL);
      for (pid_t pid : left) ::waitpid(pid, nullptr, 0);
      break;
    }
    ::usleep(10'000);
  }
}

}  // namespace

SweepOutcome run_sweep(const SweepSpec& spec, const SweepOptions& opt) {
  const StopSignals stop_signals;
  std::error_code ec;
  std::filesystem::create_directories(opt.out, ec);
  if (ec) throw std::runtime_error("cannot create sweep directory " + opt.out.string() + ": " + ec.message() + "; nothing was run");
  // One sweep (or one shard of it) at a time per folder: two would run the same points at once.
  const ExclusiveLock lock(opt.out / (opt.shard_count > 1 ? fmt::format(".sweep.shard-{}-of-{}.lock", opt.shard_index, opt.shard_count)
                                                          : std::string(".sweep.lock")),
                           "sweep directory " + opt.out.string());
  std::vector<const SweepPoint*> todo;
  int mine = 0;
  for (const auto& p : spec.points) {
    if (p.index % opt.shard_count != opt.shard_index - 1) continue;
    ++mine;
    if (!completed(p, opt.out / p.dir_name())) todo.push_back(&p);
  }
  if (mine > static_cast<int>(todo.size()))
    std::cerr << fmt::format("sweep: {} of {} points already complete, skipped\n", mine - static_cast<int>(todo.size()), mine);
  Progress progress(static_cast<int>(todo.size()));
  std::map<pid_t, std::pair<const SweepPoint*, std::chrono::steady_clock::time_point>> running;
  std::size_t next = 0;
  int done = 0, failed = 0;
  std::fflush(stdout);
  while (next < todo.size() || !running.empty()) {
    if (g_stop_signal != 0) break;
    while (g_stop_signal == 0 && next < todo.size() && static_cast<int>(running.size()) < std::max(1, opt.jobs)) {
      const SweepPoint& p = *todo[next++];
      const auto dir = opt.out / p.dir_name();
      std::filesystem::create_directories(dir);
      std::filesystem::remove(dir / "done.json");
      remove_stale_temporaries(dir);
      running[spawn_point(p, spec, opt, dir)] = {&p, std::chrono::steady_clock::now()};
    }
    if (running.empty()) continue;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const SweepPoint& p = *it->second.first;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second.second).count();
    running.erase(it);
    const auto dir = opt.out / p.dir_name();
    // A point the stop signal reached (the terminal sends Ctrl-C to every process of the group)
    // was interrupted, not failed: no marker, so that a resume runs it again.
    if (g_stop_signal != 0 && WIFSIGNALED(status)) continue;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && valid_summary(read_json(dir / "run" / "summary.json"));
    if (ok) {
      std::filesystem::remove(dir / "failed.json");
      write_file_atomically(dir / "done.json", marker_json(p, "ok", wall, "").dump(2) + "\n");
    } else {
      ++failed;
      std::string error = tail_of(dir / "stderr.txt", 400);
      if (error.empty()) error = WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status)) : "failed without a message";
      write_file_atomically(dir / "failed.json", marker_json(p, "failed", wall, error).dump(2) + "\n");
    }
    ++done;
    progress.update(done, failed, fmt::format("point {} {}", p.index, ok ? "ok" : "FAILED"));
  }
  SweepOutcome outcome{failed, static_cast<int>(g_stop_signal)};
  if (outcome.interrupted != 0) {
    stop_points(running);
    std::cerr << fmt::format("\nsweep: stopped by signal {} ({}): {} of {} points done; run the same command again to resume\n",
                             outcome.interrupted, strsignal(outcome.interrupted), done, todo.size());
  }
  const std::string csv = opt.shard_count > 1 ? fmt::format("sweep.shard-{}-of-{}.csv", opt.shard_index, opt.shard_count) : "sweep.csv";
  write_sweep_csv(spec, opt.out, csv, opt.shard_index, opt.shard_count);
  return outcome;
}

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += "\"\"";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out + "\"";
}

void flatten(const nlohmann::json& j, const std::string& prefix, std::vector<std::pair<std::string, std::string>>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object()) flatten(v, key, out);
    else if (v.is_number_integer()) out.emplace_back(key, std::to_string(v.get<long long>()));
    else if (v.is_number()) out.emplace_back(key, fmt::format("{}", v.get<double>()));
    else if (v.is_string()) out.emplace_back(key, v.get<std::string>());
    else if (v.is_boolean()) out.emplace_back(key, v.get<bool>() ? "true" : "false");
    else if (v.is_null()) out.emplace_back(key, "");
  }
}

}  // namespace

int write_sweep_csv(const SweepSpec& spec, const std::filesystem::path& out, const std::string& file_name, int shard_index,
                    int shard_count) {
  struct Row {
    const SweepPoint* point;
    std::string status, wall, error;
    std::vector<std::pair<std::string, std::string>> metrics;
  };
  std::vector<Row> rows;
  std::vector<std::string> metric_columns;
  std::set<std::string> seen;
  int with_result = 0;
  for (const auto& p : spec.points) {
    if (p.index % shard_count != shard_index - 1) continue;
    const auto dir = out / p.dir_name();
    Row r{&p, "", "", "", {}};
    const PointStatus st = point_status(p, dir);
    if (st.state == PointState::complete) {
      r.status = "ok";
      r.wall = fmt::format("{:.3f}", read_json(dir / "done.json").value("wall_s", 0.0));
      flatten(read_json(dir / "run" / "summary.json"), "", r.metrics);
      ++with_result;
    } else if (st.state == PointState::failed) {
      const auto j = read_json(dir / "failed.json");
      r.status = "failed";
      if (j.is_object()) {
        r.wall = fmt::format("{:.3f}", j.value("wall_s", 0.0));
        r.error = j.value("error", "");
      } else {
        r.error = "failed.json is unreadable";
      }
      ++with_result;
    } else if (st.state == PointState::stale || st.state == PointState::invalid) {
      // Listed, without numbers: its outputs are not a result of this sweep as it stands.
      r.status = st.state == PointState::stale ? "stale" : "invalid";
      r.error = st.why + "; run the sweep again to redo the point";
    } else {
      continue;  // not run (another shard, or not yet)
    }
    for (const auto& [k, v] : r.metrics)
      if (seen.insert(k).second) metric_columns.push_back(k);
    rows.push_back(std::move(r));
  }
  std::string csv = "point";
  auto add = [&csv](const std::string& field) {
    csv += ',';
    csv += csv_field(field);
  };
  for (const auto& k : spec.keys) add(k);
  for (const char* k : {"status", "wall_s", "error"}) add(k);
  for (const auto& k : metric_columns) add(k);
  csv += '\n';
  for (const auto& r : rows) {
    std::map<std::string, std::string> values(r.point->overrides.begin(), r.point->overrides.end());
    std::map<std::string, std::string> metrics(r.metrics.begin(), r.metrics.end());
    csv += std::to_string(r.point->index);
    for (const auto& k : spec.keys) add(values[k]);
    add(r.status);
    add(r.wall);
    add(r.error);
    for (const auto& k : metric_columns) add(metrics.count(k) ? metrics[k] : std::string());
    csv += '\n';
  }
  write_file_atomically(out / file_name, csv);
  return with_result;
}

}  // namespace moesim
