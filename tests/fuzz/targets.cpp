#include "tests/fuzz/targets.hpp"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "models/routing/trace.hpp"
#include "models/workload/dataset.hpp"
#include "sim/config/scenario.hpp"

namespace moesim::fuzz {
namespace {

const std::filesystem::path kSourceDir = MOESIM_SOURCE_DIR;

void require(bool ok, const std::string& what) {
  if (!ok) throw InvariantViolation(what);
}

/// A rejection must say what is wrong, and where.
void check_error(const InputError& e) {
  require(!e.issues().empty(), "InputError without issues");
  for (const auto& i : e.issues()) require(!i.file.empty() && !i.message.empty(), "InputError issue without file or message");
}
void check_error(const ConfigError& e) {
  require(!e.diagnostics().empty(), "ConfigError without diagnostics");
  for (const auto& d : e.diagnostics())
    require(!d.origin.empty() && !d.message.empty(), "ConfigError diagnostic without origin or message: " + d.format());
}

/// A folder of its own for scenario files; datasets/ beside them points at the source tree's, so
/// that relative dataset paths resolve whatever the working directory.
class Workdir {
 public:
  Workdir() : dir_(std::filesystem::temp_directory_path() / ("moesim-fuzz-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
    std::error_code ec;
    std::filesystem::create_directory_symlink(kSourceDir / "datasets", dir_ / "datasets", ec);
  }
  ~Workdir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Workdir(const Workdir&) = delete;
  Workdir& operator=(const Workdir&) = delete;

  [[nodiscard]] std::filesystem::path write(const std::string& name, std::string_view text) const {
    const auto file = dir_ / name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    require(static_cast<bool>(out), "cannot write " + file.string());
    return file;
  }

 private:
  std::filesystem::path dir_;
};

const Workdir& workdir() {
  static const Workdir w;
  return w;
}

const Catalog& catalog() {
  static const Catalog c(kSourceDir);
  return c;
}

const DomainCorpus& corpus() {
  static const DomainCorpus c = DomainCorpus::load(kSourceDir / "datasets/domain_queries.json");
  return c;
}

void check_counts(const std::vector<std::vector<double>>& step, const std::string& what) {
  require(static_cast<int>(step.size()) == kTraceMoeLayers, what + ": wrong number of layers");
  for (const auto& row : step) {
    require(static_cast<int>(row.size()) == kTraceExperts, what + ": wrong number of experts");
    double total = 0;
    for (double c : row) {
      require(std::isfinite(c) && c >= 0, what + ": a count that is not a finite number >= 0");
      total += c;
    }
    require(std::isfinite(total), what + ": a layer's counts add up to infinity");
  }
}

}  // namespace

bool scenario(std::string_view data) {
  std::string_view yaml = data;
  std::vector<std::string> sets;
  std::size_t pos = 0;
  while (pos <= data.size()) {
    const std::size_t end = std::min(data.find('\n', pos), data.size());
    if (data.substr(pos, end - pos) == kSetSeparator) {
      yaml = data.substr(0, pos);
      for (std::size_t p = end + 1; p < data.size();) {
        const std::size_t e = std::min(data.find('\n', p), data.size());
        if (e > p) sets.emplace_back(data.substr(p, e - p));
        p = e + 1;
      }
      break;
    }
    pos = end + 1;
  }
  const auto file = workdir().write("scenario.yaml", yaml);
  Scenario sc;
  try {
    sc = load_scenario(file, sets, catalog());
  } catch (const ConfigError& e) {
    check_error(e);
    return false;
  }
  // config.resolved.yaml of a run must load, and resolve to itself.
  const std::string resolved = resolved_yaml(sc);
  const auto again = workdir().write("resolved.yaml", resolved);
  std::string reresolved;
  try {
    reresolved = resolved_yaml(load_scenario(again, {}, catalog()));
  } catch (const ConfigError& e) {
    throw InvariantViolation("the resolved YAML of a valid scenario does not load: " + e.diagnostics().front().format() +
                             "\n" + resolved);
  }
  require(reresolved == resolved, "the resolved YAML does not resolve to itself:\n" + resolved + "\n---\n" + reresolved);
  return true;
}

bool dataset(std::string_view data) {
  std::istringstream in{std::string(data)};
  std::vector<DatasetRecord> records;
  try {
    records = load_dataset(in, "fuzz.jsonl", corpus());
  } catch (const InputError& e) {
    check_error(e);
    return false;
  }
  require(!records.empty(), "a dataset loaded without requests");
  const bool timed = records.front().arrival_s.has_value();
  double last = 0;
  for (const auto& r : records) {
    require(r.prompt_tokens >= 1 && r.output_tokens >= 1, "a request with no prompt or no output tokens");
    require(r.domain >= 0 && r.domain < static_cast<int>(corpus().names.size()), "a request with an unknown domain");
    require(r.prefix_tokens >= 0, "a request with negative prefix_tokens");
    require(r.arrival_s.has_value() == timed, "arrival_s on some requests but not all");
    if (timed) {
      require(std::isfinite(*r.arrival_s) && *r.arrival_s >= last, "arrival times that are not finite and non-decreasing");
      last = *r.arrival_s;
    }
  }
  return true;
}

bool gate_log(std::string_view data) {
  std::istringstream in{std::string(data)};
  RoutingTrace t;
  t.num_moe_layers = kTraceMoeLayers;
  t.num_experts = kTraceExperts;
  try {
    read_gate_log(in, "gate_logs_0.json", t);
  } catch (const InputError& e) {
    check_error(e);
    return false;
  }
  for (const auto& step : t.steps) check_counts(step, "gate log step");
  return true;
}

bool profiler_csv(std::string_view data) {
  std::istringstream in{std::string(data)};
  RoutingTrace t;
  try {
    t = read_activations_csv(in, "moe_expert_activations.csv", kTraceMoeLayers, kTraceExperts);
  } catch (const InputError& e) {
    check_error(e);
    return false;
  }
  require(!t.per_step && t.steps.size() == 1, "a profile loaded as other than one distribution per layer");
  check_counts(t.steps.front(), "profile");
  return true;
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all{
      {"scenario", &scenario}, {"dataset", &dataset}, {"gate_log", &gate_log}, {"profiler_csv", &profiler_csv}};
  return all;
}

}  // namespace moesim::fuzz
