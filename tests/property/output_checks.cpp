#include "tests/property/output_checks.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace moesim::property {

namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// A moesim CSV (no quoted fields) as a header and rows of fields.
struct Csv {
  std::map<std::string, std::size_t> column;
  std::vector<std::vector<std::string>> rows;
  [[nodiscard]] double num(std::size_t row, const std::string& name) const { return std::stod(rows[row].at(column.at(name))); }
};

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ls(line);
  for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
  if (!line.empty() && line.back() == ',') f.emplace_back();
  return f;
}

Csv read_csv(const fs::path& p) {
  Csv c;
  std::stringstream in(read_all(p));
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error(p.filename().string() + " is empty");
  const auto header = split(line);
  for (std::size_t i = 0; i < header.size(); ++i) c.column[header[i]] = i;
  for (std::size_t n = 2; std::getline(in, line); ++n) {
    auto f = split(line);
    if (f.size() != header.size())
      throw std::runtime_error(fmt::format("{}:{} has {} fields, the header {}", p.filename().string(), n, f.size(), header.size()));
    c.rows.push_back(std::move(f));
  }
  return c;
}

bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol; }

}  // namespace

std::vector<std::string> check_run_outputs(const fs::path& dir, const Scenario& sc) {
  std::vector<std::string> problems;
  const auto fail = [&](std::string what) { problems.push_back(std::move(what)); };
  try {
    for (const char* f : {"summary.json", "requests.csv", "steps.csv", "gpus.csv", "experts.csv", "config.resolved.yaml"})
      if (!fs::is_regular_file(dir / f)) fail(std::string(f) + " is missing");
    if (!problems.empty()) return problems;
    const auto s = nlohmann::json::parse(read_all(dir / "summary.json"));
    const auto completed = s.at("completed").get<std::int64_t>(), rejected = s.at("rejected").get<std::int64_t>();
    if (completed + rejected != sc.workload.requests)
      fail(fmt::format("requests in {} != completed {} + rejected {}", sc.workload.requests, completed, rejected));
    const auto input = s.at("total_input_tokens").get<std::int64_t>(), output = s.at("total_output_tokens").get<std::int64_t>();
    const double end_s = s.at("run").at("simulated_end_s").get<double>();
    if (!s.at("duration").is_number()) fail("duration is not a number");
    if (completed > 0)
      for (const char* k : {"mean_ttft_ms", "p99_ttft_ms", "mean_e2el_ms", "mean_queue_ms", "request_throughput"})
        if (!s.at(k).is_number()) fail(fmt::format("{} is {} with {} requests completed", k, s.at(k).dump(), completed));

    // requests.csv: one row per completed request, its tokens and energy.
    const Csv req = read_csv(dir / "requests.csv");
    if (static_cast<std::int64_t>(req.rows.size()) != completed)
      fail(fmt::format("requests.csv has {} rows for {} completed requests", req.rows.size(), completed));
    std::int64_t prompt_sum = 0, output_sum = 0, output_tokens_gt1 = 0;
    double request_energy = 0;
    for (std::size_t r = 0; r < req.rows.size(); ++r) {
      const double arrival = req.num(r, "arrival_s"), sched = req.num(r, "first_scheduled_s"), first = req.num(r, "first_token_s"),
                   finish = req.num(r, "finish_s");
      if (!(arrival <= sched && sched < first && first <= finish && finish <= end_s + 1e-9))
        fail(fmt::format("requests.csv row {}: times out of order (arrival {}, scheduled {}, first token {}, finish {}, end {})", r, arrival,
                         sched, first, finish, end_s));
      const double e = req.num(r, "energy_j");
      if (!(e > 0) || !near(e, req.num(r, "prefill_energy_j") + req.num(r, "decode_energy_j"), 3e-6 + 1e-9 * e))
        fail(fmt::format("requests.csv row {}: energy {} J is not prefill + decode", r, e));
      if (!near(req.num(r, "ttft_ms"), (first - arrival) * 1e3, 1e-5))
        fail(fmt::format("requests.csv row {}: ttft_ms {} is not first token - arrival", r, req.num(r, "ttft_ms")));
      prompt_sum += std::stoll(req.rows[r].at(req.column.at("prompt_tokens")));
      const auto out_tokens = std::stoll(req.rows[r].at(req.column.at("output_tokens")));
      output_sum += out_tokens;
      output_tokens_gt1 += out_tokens > 1;
      request_energy += e;
    }
    if (prompt_sum != input) fail(fmt::format("requests.csv prompts sum to {} but total_input_tokens is {}", prompt_sum, input));
    if (output_sum != output) fail(fmt::format("requests.csv outputs sum to {} but total_output_tokens is {}", output_sum, output));
    if (output_tokens_gt1 > 0 && !s.at("mean_tpot_ms").is_number()) fail("mean_tpot_ms is null with requests of several tokens");

    // steps.csv: every prompt token prefilled once (plus recomputation, minus prefix hits), every
    // output token after the first decoded once, step energy what requests were given.
    const Csv steps = read_csv(dir / "steps.csv");
    std::int64_t prefill = 0, decode = 0;
    double step_energy = 0;
    for (std::size_t r = 0; r < steps.rows.size(); ++r) {
      prefill += std::stoll(steps.rows[r].at(steps.column.at("prefill_tokens")));
      decode += std::stoll(steps.rows[r].at(steps.column.at("decode_tokens")));
      step_energy += steps.num(r, "energy_j");
      if (!(steps.num(r, "duration_ms") > 0)) fail(fmt::format("steps.csv row {}: duration {} ms", r, steps.num(r, "duration_ms")));
      if (steps.num(r, "batch_size") > sc.serving.max_num_seqs)
        fail(fmt::format("steps.csv row {}: {} sequences over max_num_seqs {}", r, steps.num(r, "batch_size"), sc.serving.max_num_seqs));
    }
    const auto& sv = s.at("serving");
    const auto recomputed = sv.at("recomputed_tokens").get<std::int64_t>(), hits = sv.at("prefix_hit_tokens").get<std::int64_t>();
    if (prefill != input + recomputed - hits)
      fail(fmt::format("steps.csv prefills {} tokens, not {} prompt + {} recomputed - {} prefix hits", prefill, input, recomputed, hits));
    if (decode > output - completed || (sv.at("preemptions").get<std::int64_t>() == 0 && decode != output - completed))
      fail(fmt::format("steps.csv decodes {} tokens for {} outputs of {} requests", decode, output, completed));
    const auto& en = s.at("energy");
    const double total = en.at("total_energy_j").get<double>();
    if (!near(step_energy, en.at("step_energy_j").get<double>(), 1e-6 * static_cast<double>(steps.rows.size()) + 1e-9 * total))
      fail(fmt::format("steps.csv energy sums to {} J, summary step_energy_j {}", step_energy, en.at("step_energy_j").get<double>()));
    if (!near(request_energy, en.at("step_energy_j").get<double>(), 1e-6 * static_cast<double>(req.rows.size()) + 1e-9 * total))
      fail(fmt::format("requests.csv energy sums to {} J, summary step_energy_j {}", request_energy, en.at("step_energy_j").get<double>()));

    // gpus.csv integrates to each GPU's energy; the GPUs' energies sum to the total.
    const Csv gpus = read_csv(dir / "gpus.csv");
    std::map<int, std::pair<double, double>> last;
    std::map<int, double> integral;
    for (std::size_t r = 0; r < gpus.rows.size(); ++r) {
      const int g = std::stoi(gpus.rows[r].at(gpus.column.at("gpu")));
      const double t = gpus.num(r, "time_s"), p = gpus.num(r, "power_w");
      if (!(p >= 0) || !std::isfinite(gpus.num(r, "temp_die_c"))) fail(fmt::format("gpus.csv row {}: power {} W", r, p));
      if (last.count(g) != 0) {
        if (t < last[g].first) fail(fmt::format("gpus.csv row {}: GPU {} goes back in time", r, g));
        integral[g] += last[g].second * (t - last[g].first);
      }
      last[g] = {t, p};
    }
    double sum = 0;
    const auto& per_gpu = en.at("per_gpu");
    if (per_gpu.size() != static_cast<std::size_t>(sc.cluster.nodes * sc.cluster.gpus_per_node))
      fail(fmt::format("energy.per_gpu has {} GPUs of {}", per_gpu.size(), sc.cluster.nodes * sc.cluster.gpus_per_node));
    for (const auto& gj : per_gpu) {
      const int g = gj.at("gpu").get<int>();
      const double e = gj.at("energy_j").get<double>();
      sum += e;
      if (!near(integral[g], e, 1e-4 * end_s + 1e-6 * e + 1e-6))
        fail(fmt::format("gpus.csv power of GPU {} integrates to {} J, its energy is {} J", g, integral[g], e));
    }
    if (!near(sum, total, 1e-9 * std::max(1.0, total))) fail(fmt::format("GPU energies sum to {} J, total_energy_j {}", sum, total));
  } catch (const std::exception& e) {
    fail(std::string("reading the outputs failed: ") + e.what());
  }
  return problems;
}

std::map<std::string, std::string> folder_contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_all(e.path());
  return out;
}

std::string first_difference(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
  for (const auto& [name, bytes] : a) {
    const auto it = b.find(name);
    if (it == b.end()) return name + " only in the first";
    if (it->second != bytes) return name + " differs";
  }
  for (const auto& [name, bytes] : b)
    if (a.count(name) == 0) return name + " only in the second";
  return "";
}

}  // namespace moesim::property
