#include "models/workload/dataset.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "models/common/input_file.hpp"
#include "models/common/json_text.hpp"
#include "models/common/rng.hpp"

namespace moesim {

int DomainCorpus::index_of(const std::string& name) const {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<int>(i);
  return -1;
}

DomainCorpus DomainCorpus::load(const std::filesystem::path& file) {
  std::ifstream in = open_regular_file(file, "domain corpus");
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number beyond a double
    throw InputError({{file.string(), 0, "", std::string("malformed JSON: ") + e.what()}});
  }
  if (!j.is_object() || !j.contains("domains") || !j["domains"].is_object())
    throw InputError({{file.string(), 0, "domains", "expected an object mapping domain names to lists of queries"}});
  DomainCorpus c;
  std::vector<InputIssue> issues;
  for (const auto& [name, list] : j["domains"].items()) {
    if (!list.is_array() || list.empty()) {
      issues.push_back({file.string(), 0, "domains." + name, "expected a non-empty list of query strings"});
      continue;
    }
    std::vector<std::string> qs;
    for (const auto& q : list) {
      if (!q.is_string()) {
        issues.push_back({file.string(), 0, "domains." + name, "every query must be a string"});
        break;
      }
      qs.push_back(q.get<std::string>());
    }
    c.names.push_back(name);
    c.queries.push_back(std::move(qs));
  }
  if (!issues.empty()) throw InputError(issues);
  return c;
}

int estimate_prompt_tokens(const std::string& text) {
  return std::max(1, static_cast<int>(std::ceil(static_cast<double>(text.size()) / 4.0)));
}

std::vector<DatasetRecord> load_dataset(const std::filesystem::path& file, const DomainCorpus& corpus) {
  std::ifstream in = open_regular_file(file, "dataset");
  return load_dataset(in, file.string(), corpus);
}

int json_nesting_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

std::vector<DatasetRecord> load_dataset(std::istream& in, const std::string& name, const DomainCorpus& corpus) {
  std::vector<DatasetRecord> out;
  std::vector<InputIssue> issues;
  std::string line;
  int lineno = 0;
  double last_arrival = 0.0;
  bool any_arrival = false, any_without_arrival = false;
  std::size_t more_issues = 0;
  auto issue = [&](const std::string& field, const std::string& msg) {
    if (issues.size() < kMaxIssuesPerFile) issues.push_back({name, lineno, field, msg});
    else ++more_issues;
  };
  auto positive_int = [&](const nlohmann::json& j, const char* key, int& dst) {
    if (!j.contains(key)) {
      issue(key, "missing");
      return;
    }
    const auto& v = j[key];
    if (!v.is_number_integer() || v.get<long long>() < 1 || v.get<long long>() > 10'000'000) {
      issue(key, "must be an integer >= 1 (got " + json_value_text(v) + ")");
      return;
    }
    dst = v.get<int>();
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    // A line is one flat object: bound what one line may cost to parse before parsing it.
    if (line.size() > kMaxDatasetLineBytes) {
      issue("", "longer than " + std::to_string(kMaxDatasetLineBytes) + " bytes (got " + std::to_string(line.size()) + ")");
      continue;
    }
    if (json_nesting_depth(line) > kMaxDatasetLineDepth) {
      issue("", "nests objects or lists deeper than " + std::to_string(kMaxDatasetLineDepth) + " levels");
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error&) {
      issue("", "not valid JSON");
      continue;
    } catch (const nlohmann::json::exception& e) {  // out_of_range: a number beyond a double, e.g. 1e400
      issue("", std::string("not valid JSON: ") + e.what());
      continue;
    }
    if (!j.is_object()) {
      issue("", "expected a JSON object");
      continue;
    }
    DatasetRecord r;
    if (j.contains("prompt")) {
      if (j["prompt"].is_string()) r.prompt_digest = fnv1a64(j["prompt"].get_ref<const std::string&>());
      else issue("prompt", "must be a string");
    }
    positive_int(j, "prompt_tokens", r.prompt_tokens);
    positive_int(j, "output_tokens", r.output_tokens);
    if (!j.contains("domain")) {
      issue("domain", "missing");
    } else if (!j["domain"].is_string()) {
      issue("domain", "must be a string");
    } else {
      r.domain = corpus.index_of(j["domain"].get<std::string>());
      if (r.domain < 0) {
        std::string names;
        for (const auto& n : corpus.names) names += (names.empty() ? "" : ", ") + n;
        issue("domain", "unknown domain \"" + j["domain"].get<std::string>() + "\"; known: " + names);
      }
    }
    if (j.contains("prefix_id")) {
      if (!j["prefix_id"].is_string()) issue("prefix_id", "must be a string");
      else r.prefix_id = static_cast<std::int64_t>(fnv1a64(j["prefix_id"].get<std::string>()) >> 1);
      if (!j.contains("prefix_tokens") || !j["prefix_tokens"].is_number_integer() || j["prefix_tokens"].get<long long>() < 0 ||
          j["prefix_tokens"].get<long long>() > 10'000'000)
        issue("prefix_tokens", "must be an integer in [0, 10000000] when prefix_id is given");
      else r.prefix_tokens = j["prefix_tokens"].get<int>();
    }
    if (j.contains("arrival_s")) {
      const auto& v = j["arrival_s"];
      if (!v.is_number() || v.get<double>() < 0 || !std::isfinite(v.get<double>())) {
        issue("arrival_s", "must be a number >= 0 (got " + json_value_text(v) + ")");
      } else if (v.get<double>() < last_arrival) {
        issue("arrival_s", "must not decrease (previous " + std::to_string(last_arrival) + ", got " + json_value_text(v) + ")");
      } else {
        r.arrival_s = v.get<double>();
        last_arrival = *r.arrival_s;
      }
      any_arrival = true;
    } else {
      any_without_arrival = true;
    }
    out.push_back(std::move(r));
  }
  if (more_issues > 0)
    issues.push_back({name, 0, "", std::to_string(more_issues) + " more problems in this file (the first " +
                                       std::to_string(kMaxIssuesPerFile) + " are listed)"});
  if (any_arrival && any_without_arrival)
    issues.push_back({name, 0, "arrival_s", "present on some lines but not all: give it on every line or none"});
  if (out.empty() && issues.empty()) issues.push_back({name, 0, "", "dataset has no requests"});
  if (!issues.empty()) throw InputError(issues);
  return out;
}

}  // namespace moesim
