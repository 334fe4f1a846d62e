#pragma once
// Calibration against published measurements (../shared/anchors/README.md): shared helpers.
//
// Every calibration test writes its rows to <dir>/<family>.csv, dir = $MOESIM_CALIBRATION_OUT or
// <build dir>/calibration, with the header
//   family,anchor,source,metric,unit,published,simulated,error_pct,tolerance_pct,pass
// (pass: true, false, or known_gap for a row whose test documents why it stays outside its
// tolerance). Tests of one family may run in parallel processes: a row replaces the row of the
// same (anchor, metric) under an exclusive lock on the family's file.
// tests/calibration/make_report.py turns all CSVs into tests/calibration/REPORT.md.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace moesim::calibration {

inline constexpr const char* kHeader = "family,anchor,source,metric,unit,published,simulated,error_pct,tolerance_pct,pass";

/// Whether a row is expected within tolerance, or is a documented gap of the model.
struct Expectation {
  bool known_gap = false;
  std::string why;  ///< for a known gap: what the model lacks (shown by the test, kept in REPORT.md)
};
inline Expectation within_tolerance() { return {}; }
inline Expectation known_gap(std::string why) { return {true, std::move(why)}; }

struct Row {
  std::string family, anchor, source, metric, unit;
  double published = 0, simulated = 0, tolerance_pct = 0;
  Expectation expect;

  [[nodiscard]] double error_pct() const { return published != 0 ? 100.0 * (simulated - published) / published : 0.0; }
  [[nodiscard]] bool within() const { return std::isfinite(simulated) && std::abs(error_pct()) <= tolerance_pct; }
};

/// Slow rows (a minute or more each) run only when MOESIM_CALIBRATION_FULL=1, as `make calibration`
/// sets; `make test` skips them and runs the fast ones.
inline bool full_run() {
  const char* env = std::getenv("MOESIM_CALIBRATION_FULL");
  return env != nullptr && std::string(env) == "1";
}
#define MOESIM_CALIBRATION_SLOW_ROW()                                                                     \
  do {                                                                                                  \
    if (!::moesim::calibration::full_run()) GTEST_SKIP() << "slow calibration row: `make calibration` runs it"; \
  } while (0)

/// The catalog the rows read their cards from: $MOESIM_HOME when set (tests/calibration/loso.py
/// points it at a copy of the cards with some constants changed), else the source tree. The moesim
/// binary the rows run reads the same variable.
inline std::filesystem::path catalog_home() {
  if (const char* env = std::getenv("MOESIM_HOME"); env != nullptr && *env != '\0') return env;
  return MOESIM_SOURCE_DIR;
}

/// The moesim command-line prefix that makes a run read the cards of catalog_home() (the test
/// runner sets $MOESIM_HOME to the source tree for every run it starts).
inline std::string catalog_option() { return "--catalog '" + catalog_home().string() + "' "; }

/// Scenario overrides for every row of one family, from $MOESIM_CALIBRATION_SET_<FAMILY> (the
/// family upper-cased): `key=value` items separated by ';'. tests/calibration/loso.py sets engine
/// constants (e.g. serving.sampler_bytes_per_logit) this way for the families that use them.
inline std::vector<std::string> family_sets(const std::string& family) {
  std::string name = "MOESIM_CALIBRATION_SET_";
  for (char c : family) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::vector<std::string> out;
  const char* env = std::getenv(name.c_str());
  if (env == nullptr) return out;
  std::string item;
  for (const char* p = env;; ++p) {
    if (*p == ';' || *p == '\0') {
      if (!item.empty()) out.push_back(item);
      item.clear();
      if (*p == '\0') break;
    } else {
      item += *p;
    }
  }
  return out;
}

inline std::filesystem::path output_dir() {
  if (const char* env = std::getenv("MOESIM_CALIBRATION_OUT"); env != nullptr && *env != '\0') return env;
  return MOESIM_CALIBRATION_DIR;
}

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

/// Splits one CSV line (RFC 4180 quoting).
inline std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

inline std::string number(double v, int digits = 6) {
  std::ostringstream s;
  s.precision(digits);
  s << v;
  return s.str();
}

/// Writes `row` into its family's CSV, replacing an earlier row of the same anchor and metric.
inline void record(const Row& row) {
  const auto dir = output_dir();
  std::filesystem::create_directories(dir);
  const auto file = dir / (row.family + ".csv");
  const int lock = ::open((dir / ("." + row.family + ".csv.lock")).c_str(), O_CREAT | O_RDWR, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  std::vector<std::string> lines;
  {
    std::ifstream in(file);
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (first) {
        first = false;
        continue;  // header
      }
      if (line.empty()) continue;
      const auto f = csv_split(line);
      if (f.size() >= 4 && f[1] == row.anchor && f[3] == row.metric) continue;
      lines.push_back(line);
    }
  }
  const std::string pass = row.within() ? "true" : row.expect.known_gap ? "known_gap" : "false";
  lines.push_back(csv_field(row.family) + "," + csv_field(row.anchor) + "," + csv_field(row.source) + "," + csv_field(row.metric) +
                  "," + csv_field(row.unit) + "," + number(row.published) + "," + number(row.simulated) + "," +
                  number(row.error_pct(), 4) + "," + number(row.tolerance_pct) + "," + pass);
  const auto tmp = (dir / ("." + row.family + ".csv.tmp")).string();
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kHeader << "\n";
    for (const auto& l : lines) out << l << "\n";
  }
  std::filesystem::rename(tmp, file);
  if (lock >= 0) {
    ::flock(lock, LOCK_UN);
    ::close(lock);
  }
}

/// Records the row, then checks it: within tolerance, or (a known gap) still outside it, so a gap
/// that closes is noticed and its mark removed.
inline void check(const Row& row) {
  record(row);
  const std::string what = row.anchor + " " + row.metric + ": published " + number(row.published) + " " + row.unit +
                           ", simulated " + number(row.simulated) + " (" + number(row.error_pct(), 3) + "%, tolerance " +
                           number(row.tolerance_pct) + "%)";
  std::printf("calibration %s | %s\n", row.family.c_str(), what.c_str());
  if (row.expect.known_gap) {
    EXPECT_FALSE(row.within()) << what << " is now within tolerance: remove its known_gap mark (" << row.expect.why << ")";
  } else {
    EXPECT_TRUE(row.within()) << what;
  }
}

// --- Reading a run's outputs -------------------------------------------------------------------

/// A CSV file as column name -> values (numbers), for steps.csv and requests.csv.
class Table {
 public:
  explicit Table(const std::filesystem::path& file) {
    std::ifstream in(file);
    std::string line;
    if (!std::getline(in, line)) return;
    names_ = csv_split(line);
    cols_.assign(names_.size(), {});
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto f = csv_split(line);
      for (std::size_t i = 0; i < names_.size() && i < f.size(); ++i) {
        char* end = nullptr;
        const double v = std::strtod(f[i].c_str(), &end);
        cols_[i].push_back(end != f[i].c_str() ? v : std::nan(""));
      }
    }
  }
  [[nodiscard]] const std::vector<double>& col(const std::string& name) const {
    const auto it = std::find(names_.begin(), names_.end(), name);
    if (it == names_.end()) throw std::runtime_error("no column " + name);
    return cols_[static_cast<std::size_t>(it - names_.begin())];
  }
  [[nodiscard]] std::size_t rows() const { return cols_.empty() ? 0 : cols_[0].size(); }

 private:
  std::vector<std::string> names_;
  std::vector<std::vector<double>> cols_;
};

/// ML.ENERGY's measurement of a run (github.com/ml-energy/benchmark, mlenergy/llm/benchmark.py):
/// with N requests sent at once and max_num_seqs = B, the steady state lasts from the moment B
/// requests have their first token to the moment N - B requests have theirs; energy, power and
/// output throughput are taken over that window. The median ITL is over every inter-token gap of
/// the whole run (a decode step's duration is the gap to the token it emits).
struct SteadyState {
  double seconds = 0, energy_j = 0, output_tokens = 0;
  double power_w_per_gpu = 0, output_tokens_per_s = 0, joules_per_output_token = 0;
  double median_itl_ms = 0, mean_running = 0;
};

inline SteadyState measure_steady_state(const std::filesystem::path& run_dir, int batch, int gpus) {
  const Table steps(run_dir / "steps.csv");
  const Table reqs(run_dir / "requests.csv");
  std::vector<double> first = reqs.col("first_token_s");
  std::sort(first.begin(), first.end());
  SteadyState s;
  const auto n = static_cast<int>(first.size());
  if (n < 2 * batch || batch < 1) return s;
  const double t0 = first[static_cast<std::size_t>(batch - 1)], t1 = first[static_cast<std::size_t>(n - batch - 1)];
  const auto& start = steps.col("start_s");
  const auto& dur = steps.col("duration_ms");
  const auto& energy = steps.col("energy_j");
  const auto& decode = steps.col("decode_tokens");
  const auto& running = steps.col("running");
  double run_sum = 0;
  int in_window = 0;
  std::vector<std::pair<double, double>> itl;  // (ms, tokens)
  for (std::size_t i = 0; i < steps.rows(); ++i) {
    if (decode[i] > 0) itl.emplace_back(dur[i], decode[i]);
    const double end = start[i] + dur[i] * 1e-3;
    if (start[i] + 1e-12 < t0 || end > t1 + 1e-12) continue;
    s.seconds += dur[i] * 1e-3;
    s.energy_j += energy[i];
    s.output_tokens += decode[i];
    run_sum += running[i];
    ++in_window;
  }
  for (double f : first)
    if (f > t0 && f <= t1) s.output_tokens += 1;  // first tokens come from prefill steps
  if (s.seconds <= 0 || s.output_tokens <= 0) return s;
  s.power_w_per_gpu = s.energy_j / s.seconds / gpus;
  s.output_tokens_per_s = s.output_tokens / s.seconds;
  s.joules_per_output_token = s.energy_j / s.output_tokens;
  s.mean_running = in_window > 0 ? run_sum / in_window : 0;
  std::sort(itl.begin(), itl.end());
  double total = 0;
  for (const auto& p : itl) total += p.second;
  double acc = 0;
  for (const auto& p : itl) {
    acc += p.second;
    if (acc >= total / 2) {
      s.median_itl_ms = p.first;
      break;
    }
  }
  return s;
}

}  // namespace moesim::calibration
