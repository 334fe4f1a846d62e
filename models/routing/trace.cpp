#include "models/routing/trace.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <istream>
#include <map>
#include <sstream>

#include "models/common/input_file.hpp"
#include "models/common/json_text.hpp"

namespace moesim {
namespace {

RoutingTrace load_gate_logs(const std::filesystem::path& dir, int layers, int experts) {
  std::vector<std::pair<long, std::filesystem::path>> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("gate_logs_", 0) != 0 || entry.path().extension() != ".json") continue;
    const std::string index = name.substr(10, name.size() - 15);
    try {
      files.emplace_back(std::stol(index), entry.path());
    } catch (const std::exception&) {
      throw InputError({{entry.path().string(), 0, "", "gate log file names are gate_logs_<number>.json"}});
    }
  }
  if (files.empty()) throw InputError({{dir.string(), 0, "", "no gate_logs_<k>.json files in this folder"}});
  std::sort(files.begin(), files.end());
  RoutingTrace t;
  t.num_experts = experts;
  t.num_moe_layers = layers;
  for (const auto& [index, file] : files) {
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(file, ec);
    if (!ec && bytes > kMaxGateLogFileBytes)
      throw InputError({{file.string(), 0, "", "a gate-log file may have at most " + std::to_string(kMaxGateLogFileBytes >> 20) +
                                                   " MiB (got " + std::to_string(bytes >> 20) +
                                                   " MiB); split its steps over several gate_logs_<k>.json files"}});
    std::ifstream in = open_regular_file(file, "gate log");
    read_gate_log(in, file.string(), t);
  }
  if (t.steps.empty()) throw InputError({{dir.string(), 0, "steps", "the gate logs hold no steps"}});
  return t;
}

RoutingTrace load_activations_csv(const std::filesystem::path& file, int layers, int experts) {
  std::ifstream in = open_regular_file(file, "activations CSV");
  return read_activations_csv(in, file.string(), layers, experts);
}

}  // namespace

void read_gate_log(std::istream& in, const std::string& file, RoutingTrace& t) {
  const int layers = t.num_moe_layers;
  const int experts = t.num_experts;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number beyond a double
    throw InputError({{file, 0, "", std::string("malformed JSON: ") + e.what()}});
  }
  if (!j.is_object() || !j.contains("steps") || !j["steps"].is_array())
    throw InputError({{file, 0, "steps", "expected an object with a \"steps\" list"}});
  if (j.contains("num_experts") && j["num_experts"] != experts)
    throw InputError({{file, 0, "num_experts",
                       j["num_experts"].is_number_integer()
                           ? "the trace has " + json_value_text(j["num_experts"]) + " experts but the model has " +
                                 std::to_string(experts)
                           : "must be an integer (got " + json_value_text(j["num_experts"]) + ")"}});
  std::size_t si = 0;
  for (const auto& step : j["steps"]) {
    const std::string where = "steps[" + std::to_string(si++) + "].expert_counts";
    if (!step.contains("expert_counts") || !step["expert_counts"].is_array()) throw InputError({{file, 0, where, "missing"}});
    const auto& counts = step["expert_counts"];
    if (static_cast<int>(counts.size()) != layers)
      throw InputError({{file, 0, where, "has " + std::to_string(counts.size()) + " layers but the model has " +
                                             std::to_string(layers) + " MoE layers"}});
    std::vector<std::vector<double>> s;
    for (const auto& layer : counts) {
      if (!layer.is_array() || static_cast<int>(layer.size()) != experts)
        throw InputError({{file, 0, where, "every layer needs " + std::to_string(experts) + " expert counts"}});
      std::vector<double> row;
      double total = 0;
      for (const auto& c : layer) {
        if (!c.is_number() || c.get<double>() < 0) throw InputError({{file, 0, where, "counts must be numbers >= 0"}});
        row.push_back(c.get<double>());
        total += row.back();
      }
      if (!std::isfinite(total)) throw InputError({{file, 0, where, "the counts of a layer add up to more than a double holds"}});
      s.push_back(std::move(row));
    }
    t.steps.push_back(std::move(s));
  }
}

RoutingTrace read_activations_csv(std::istream& in, const std::string& file, int layers, int experts) {
  std::string line;
  std::getline(in, line);
  if (line.rfind("layer_idx,expert_id,activation_count", 0) != 0)
    throw InputError({{file, 1, "", "expected the header layer_idx,expert_id,activation_count,percentage"}});
  std::map<int, std::vector<double>> by_layer;
  int lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string a, b, c;
    std::getline(ss, a, ',');
    std::getline(ss, b, ',');
    std::getline(ss, c, ',');
    int layer = 0, expert = 0;
    double count = 0;
    try {
      layer = std::stoi(a);
      expert = std::stoi(b);
      count = std::stod(c);
    } catch (const std::exception&) {
      throw InputError({{file, lineno, "", "expected integers layer_idx, expert_id and a count"}});
    }
    if (expert < 0 || expert >= experts)
      throw InputError({{file, lineno, "expert_id", "must be in [0, " + std::to_string(experts - 1) +
                                                       "] for this model (got " + std::to_string(expert) + ")"}});
    if (!std::isfinite(count) || count < 0)
      throw InputError({{file, lineno, "activation_count", "must be a finite number >= 0 (got " + c + ")"}});
    auto& row = by_layer[layer];
    row.resize(static_cast<std::size_t>(experts), 0.0);
    row[static_cast<std::size_t>(expert)] += count;
  }
  for (const auto& [layer, row] : by_layer) {
    double total = 0;
    for (double x : row) total += x;
    if (!std::isfinite(total))
      throw InputError({{file, 0, "activation_count", "the counts of layer " + std::to_string(layer) +
                                                          " add up to more than a double holds"}});
  }
  if (static_cast<int>(by_layer.size()) != layers)
    throw InputError({{file, 0, "layer_idx", "the profile has " + std::to_string(by_layer.size()) +
                                                 " layers but the model has " + std::to_string(layers) + " MoE layers"}});
  RoutingTrace t;
  t.num_experts = experts;
  t.num_moe_layers = layers;
  t.per_step = false;
  std::vector<std::vector<double>> step;
  for (auto& [layer, row] : by_layer) step.push_back(row);
  t.steps.push_back(std::move(step));
  return t;
}

RoutingTrace load_routing_trace(const std::filesystem::path& path, int num_moe_layers, int num_experts) {
  if (std::filesystem::is_directory(path)) return load_gate_logs(path, num_moe_layers, num_experts);
  if (!std::filesystem::exists(path)) throw InputError({{path.string(), 0, "", "no such file or folder"}});
  return load_activations_csv(path, num_moe_layers, num_experts);
}

}  // namespace moesim
