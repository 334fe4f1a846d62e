#include "sim/config/schema.hpp"

#include <charconv>
#include <cmath>
#include <limits>

namespace moesim {

void ParseContext::record(const std::string& path, const YAML::Node& node) {
  const auto mark = node.Mark();
  if (mark.line >= 0 && !lines_.contains(path)) lines_[path] = mark.line + 1;
}

std::optional<std::string> ParseContext::override_for(const std::string& path) const {
  if (overrides_ == nullptr) return std::nullopt;
  std::optional<std::string> best;
  std::size_t best_len = 0;
  for (const auto& [key, text] : *overrides_) {
    const bool covers = path == key || (path.size() > key.size() && path.compare(0, key.size(), key) == 0 &&
                                        path[key.size()] == '.');
    if (covers && key.size() >= best_len) {
      best = text;
      best_len = key.size();
    }
  }
  return best;
}

Diagnostic ParseContext::make(int line, const std::string& path, std::string message) const {
  if (auto text = override_for(path)) return Diagnostic{"--set " + *text, 0, path, std::move(message)};
  return Diagnostic{origin_, line, path, std::move(message)};
}

void ParseContext::error(const YAML::Node& at, const std::string& path, std::string message) {
  const auto mark = at.Mark();
  int line = mark.line >= 0 ? mark.line + 1 : 0;
  if (line == 0) {
    if (auto it = lines_.find(path); it != lines_.end()) line = it->second;
  }
  sink_.push_back(make(line, path, std::move(message)));
}

void ParseContext::error_at(const std::string& path, std::string message) {
  std::string p = path;
  int line = 0;
  while (true) {
    if (auto it = lines_.find(p); it != lines_.end()) {
      line = it->second;
      break;
    }
    const auto dot = p.rfind('.');
    if (dot == std::string::npos) {
      if (auto it = lines_.find(""); it != lines_.end()) line = it->second;
      break;
    }
    p.resize(dot);
  }
  sink_.push_back(make(line, path, std::move(message)));
}

std::string describe_node(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "\"" + node.Scalar() + "\"";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Undefined: return "nothing";
  }
  return "?";
}

namespace {
bool scalar_or_error(const YAML::Node& n, const char* what, std::string& err) {
  if (n.IsScalar()) return true;
  err = std::string("expected ") + what + " (got " + describe_node(n) + ")";
  return false;
}
template <class I>
bool decode_integer(const YAML::Node& n, I& out, std::string& err, const char* what) {
  if (!scalar_or_error(n, what, err)) return false;
  const std::string& s = n.Scalar();
  const char* first = s.data();
  if (!s.empty() && s[0] == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, s.data() + s.size(), out);
  if (ec == std::errc::result_out_of_range) {
    err = std::string("out of range for ") + what + " (got \"" + s + "\")";
    return false;
  }
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) {
    err = std::string("expected ") + what + " (got \"" + s + "\")";
    return false;
  }
  return true;
}
}  // namespace

bool Codec<bool>::decode(const YAML::Node& n, bool& out, std::string& err) {
  if (!scalar_or_error(n, "true or false", err)) return false;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "yes") {
    out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "no") {
    out = false;
    return true;
  }
  err = "expected true or false (got \"" + s + "\")";
  return false;
}

bool Codec<int>::decode(const YAML::Node& n, int& out, std::string& err) {
  return decode_integer(n, out, err, "an integer");
}
bool Codec<std::int64_t>::decode(const YAML::Node& n, std::int64_t& out, std::string& err) {
  return decode_integer(n, out, err, "an integer");
}
bool Codec<std::uint64_t>::decode(const YAML::Node& n, std::uint64_t& out, std::string& err) {
  if (n.IsScalar() && !n.Scalar().empty() && n.Scalar()[0] == '-') {
    err = "expected a non-negative integer (got \"" + n.Scalar() + "\")";
    return false;
  }
  return decode_integer(n, out, err, "a non-negative integer");
}

bool Codec<double>::decode(const YAML::Node& n, double& out, std::string& err) {
  if (!scalar_or_error(n, "a number", err)) return false;
  const std::string& s = n.Scalar();
  const char* first = s.data();
  if (!s.empty() && s[0] == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, s.data() + s.size(), out);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty() || !std::isfinite(out)) {
    err = "expected a number (got \"" + s + "\")";
    return false;
  }
  return true;
}

YAML::Node Codec<double>::encode(double v) {
  // Shortest text that reads back to the same double.
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return YAML::Node(std::string(buf, ptr));
}

bool Codec<std::string>::decode(const YAML::Node& n, std::string& out, std::string& err) {
  if (!scalar_or_error(n, "a string", err)) return false;
  out = n.Scalar();
  return true;
}

bool Codec<std::map<std::string, double>>::decode(const YAML::Node& n, std::map<std::string, double>& out,
                                                  std::string& err) {
  if (n.IsNull()) {
    out.clear();
    return true;
  }
  if (!n.IsMap()) {
    err = "expected a mapping of name: weight (got " + describe_node(n) + ")";
    return false;
  }
  out.clear();
  for (auto it = n.begin(); it != n.end(); ++it) {
    double w = 0;
    std::string e;
    if (!it->first.IsScalar() || !Codec<double>::decode(it->second, w, e) || w < 0) {
      err = "weight of \"" + it->first.Scalar() + "\" must be a number >= 0 (got " + describe_node(it->second) + ")";
      return false;
    }
    out[it->first.Scalar()] = w;
  }
  return true;
}

YAML::Node Codec<std::map<std::string, double>>::encode(const std::map<std::string, double>& v) {
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& [k, w] : v) out[k] = Codec<double>::encode(w);
  return out;
}

bool Codec<std::vector<int>>::decode(const YAML::Node& n, std::vector<int>& out, std::string& err) {
  if (n.IsNull()) {
    out.clear();
    return true;
  }
  if (!n.IsSequence()) {
    err = "expected a list of integers (got " + describe_node(n) + ")";
    return false;
  }
  out.clear();
  for (const auto& item : n) {
    int v = 0;
    if (!Codec<int>::decode(item, v, err)) return false;
    out.push_back(v);
  }
  return true;
}

YAML::Node Codec<std::vector<int>>::encode(const std::vector<int>& v) {
  YAML::Node out(YAML::NodeType::Sequence);
  for (int x : v) out.push_back(x);
  out.SetStyle(YAML::EmitterStyle::Flow);
  return out;
}

bool Codec<std::vector<std::string>>::decode(const YAML::Node& n, std::vector<std::string>& out, std::string& err) {
  out.clear();
  if (n.IsNull()) return true;
  if (!n.IsSequence()) {
    err = "expected a list of names (got " + describe_node(n) + ")";
    return false;
  }
  for (const auto& item : n) {
    std::string v;
    if (!item.IsScalar() || !Codec<std::string>::decode(item, v, err)) {
      err = "expected a list of names (got an item " + describe_node(item) + ")";
      return false;
    }
    out.push_back(v);
  }
  return true;
}

YAML::Node Codec<std::vector<std::string>>::encode(const std::vector<std::string>& v) {
  YAML::Node out(YAML::NodeType::Sequence);
  for (const auto& x : v) out.push_back(x);
  out.SetStyle(YAML::EmitterStyle::Flow);
  return out;
}

bool Codec<std::map<std::string, std::string>>::decode(const YAML::Node& n, std::map<std::string, std::string>& out,
                                                       std::string& err) {
  out.clear();
  if (n.IsNull()) return true;
  if (!n.IsMap()) {
    err = "expected a mapping of name: name (got " + describe_node(n) + ")";
    return false;
  }
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!it->first.IsScalar() || !it->second.IsScalar()) {
      err = "expected name: name pairs (got " + describe_node(it->second) + ")";
      return false;
    }
    out[it->first.Scalar()] = it->second.Scalar();
  }
  return true;
}

YAML::Node Codec<std::map<std::string, std::string>>::encode(const std::map<std::string, std::string>& v) {
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& [k, x] : v) out[k] = x;
  return out;
}

}  // namespace moesim
