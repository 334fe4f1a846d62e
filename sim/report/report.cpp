#include "models/common/input_file.hpp"
#include "sim/report/report.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "sim/metrics/report.hpp"
#include "sim/report/svg_chart.hpp"

namespace moesim {
namespace {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  [[nodiscard]] int column(const std::string& name) const {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int>(i);
    return -1;
  }
};

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.push_back(field);
      field.clear();
    } else {
      field += c;
    }
  }
  out.push_back(field);
  return out;
}

Table read_csv(const std::filesystem::path& file) {
  std::ifstream in = open_regular_file(file, "CSV table");
  Table t;
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error(file.string() + ": empty file");
  t.header = split_csv_line(line);
  // Every row has the header's fields: the report indexes rows by column, and a short row (a file
  // cut off, or edited by hand) would be read past its end.
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    auto row = split_csv_line(line);
    if (row.size() != t.header.size())
      throw std::runtime_error(fmt::format("{}:{}: has {} fields but the header has {}", file.string(), number, row.size(), t.header.size()));
    t.rows.push_back(std::move(row));
  }
  return t;
}

bool to_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(out);
}

std::string short_value(const std::string& v) {
  const auto slash = v.find_last_of('/');
  return slash == std::string::npos ? v : v.substr(slash + 1);
}

const char* const kHeadline[] = {"completed", "duration", "request_throughput", "output_throughput", "mean_ttft_ms",
                                 "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms", "mean_e2el_ms", "imbalance.cv_aggregated"};

std::string page(const std::string& title, const std::string& intro, const std::vector<std::string>& charts,
                 const std::string& table_html) {
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
                     "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
                     ".charts{display:flex;flex-wrap:wrap;gap:12px}table{border-collapse:collapse;font-size:12px}"
                     "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
                     "td:first-child,th:first-child{text-align:left}</style></head><body>\n";
  html += "<h1>" + html_escape(title) + "</h1>\n<p>" + intro + "</p>\n<div class=\"charts\">\n";
  for (const auto& c : charts) html += c + "\n";
  html += "</div>\n" + table_html + "</body></html>\n";
  return html;
}

ReportResult sweep_report(const std::filesystem::path& dir) {
  const Table t = read_csv(dir / "sweep.csv");
  const int status = t.column("status");
  if (t.header.empty() || t.header[0] != "point" || status < 0)
    throw std::runtime_error((dir / "sweep.csv").string() + ": not a sweep table (needs the columns point and status)");
  std::vector<std::string> keys(t.header.begin() + 1, t.header.begin() + status);
  std::vector<std::string> metrics;
  for (const char* m : kHeadline)
    if (t.column(m) >= 0) metrics.push_back(m);

  ReportResult result;
  // Table (stdout and HTML).
  std::string text = fmt::format("{:<6}", "point");
  std::string html = "<table><tr><th>point</th>";
  for (const auto& k : keys) {
    text += fmt::format(" {:>18}", k.size() > 18 ? k.substr(k.size() - 18) : k);
    html += "<th>" + html_escape(k) + "</th>";
  }
  text += fmt::format(" {:>7}", "status");
  html += "<th>status</th>";
  for (const auto& m : metrics) {
    text += fmt::format(" {:>14}", m.size() > 14 ? m.substr(m.size() - 14) : m);
    html += "<th>" + html_escape(m) + "</th>";
  }
  text += "\n";
  html += "</tr>\n";
  for (const auto& row : t.rows) {
    text += fmt::format("{:<6}", row[0]);
    html += "<tr><td>" + html_escape(row[0]) + "</td>";
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const std::string v = short_value(row[k + 1]);
      text += fmt::format(" {:>18}", v.size() > 18 ? v.substr(0, 18) : v);
      html += "<td>" + html_escape(v) + "</td>";
    }
    text += fmt::format(" {:>7}", row[static_cast<std::size_t>(status)]);
    html += "<td>" + html_escape(row[static_cast<std::size_t>(status)]) + "</td>";
    for (const auto& m : metrics) {
      double v = 0;
      const std::string& cell = row[static_cast<std::size_t>(t.column(m))];
      const std::string shown = to_number(cell, v) ? fmt::format("{:.4g}", v) : cell;
      text += fmt::format(" {:>14}", shown);
      html += "<td>" + html_escape(shown) + "</td>";
    }
    text += "\n";
    html += "</tr>\n";
  }
  html += "</table>\n";

  // Charts: each metric against the swept key with the most distinct values, one series per
  // combination of the other keys.
  std::vector<std::string> charts;
  if (!keys.empty()) {
    std::size_t xk = 0, most = 0;
    for (std::size_t k = 0; k < keys.size(); ++k) {
      std::vector<std::string> distinct;
      for (const auto& row : t.rows)
        if (std::find(distinct.begin(), distinct.end(), row[k + 1]) == distinct.end()) distinct.push_back(row[k + 1]);
      if (distinct.size() > most) {
        most = distinct.size();
        xk = k;
      }
    }
    std::vector<std::string> categories;
    bool numeric = true;
    for (const auto& row : t.rows) {
      double v = 0;
      numeric = numeric && to_number(row[xk + 1], v);
      const std::string c = short_value(row[xk + 1]);
      if (std::find(categories.begin(), categories.end(), c) == categories.end()) categories.push_back(c);
    }
    for (const auto& m : metrics) {
      std::map<std::string, ChartSeries> by_group;
      std::vector<std::string> order;
      for (const auto& row : t.rows) {
        double y = 0;
        if (row[static_cast<std::size_t>(status)] != "ok" || !to_number(row[static_cast<std::size_t>(t.column(m))], y)) continue;
        std::string group;
        for (std::size_t k = 0; k < keys.size(); ++k) {
          if (k == xk) continue;
          if (!group.empty()) group += ", ";
          group += keys[k];
          group += '=';
          group += short_value(row[k + 1]);
        }
        if (group.empty()) group = m;
        if (!by_group.count(group)) order.push_back(group);
        auto& s = by_group[group];
        s.name = group;
        double x = 0;
        if (numeric) to_number(row[xk + 1], x);
        else x = static_cast<double>(std::find(categories.begin(), categories.end(), short_value(row[xk + 1])) - categories.begin());
        s.x.push_back(x);
        s.y.push_back(y);
      }
      std::vector<ChartSeries> series;
      for (const auto& g : order) series.push_back(by_group[g]);
      ChartSpec spec{m + " vs " + keys[xk], keys[xk], m, numeric ? std::vector<std::string>{} : categories, 720, 380};
      charts.push_back(svg_line_chart(spec, series));
    }
  }
  result.charts = static_cast<int>(charts.size());
  result.table = text;
  result.html = dir / "report.html";
  write_file_atomically(result.html, page("moesim sweep: " + dir.filename().string(),
                                          fmt::format("{} points, swept keys: {}.", t.rows.size(), html_escape(fmt::format("{}", fmt::join(keys, ", ")))),
                                          charts, html));
  return result;
}

ReportResult run_report(const std::filesystem::path& dir) {
  std::ifstream in = open_regular_file(dir / "summary.json", "run summary");
  const auto s = nlohmann::json::parse(in, nullptr, false);
  if (s.is_discarded()) throw std::runtime_error((dir / "summary.json").string() + ": not valid JSON");
  const Table steps = read_csv(dir / "steps.csv");
  for (const char* c : {"start_s", "duration_ms", "prefill_tokens", "decode_tokens", "expert_load_cv"})
    if (steps.column(c) < 0) throw std::runtime_error((dir / "steps.csv").string() + ": missing column " + c);
  ReportResult result;
  std::string html = "<table><tr><th>metric</th><th>value</th></tr>\n";
  for (const char* m : kHeadline) {
    const auto dot = std::string(m).find('.');
    const nlohmann::json* v = &s;
    if (dot != std::string::npos) {
      if (!s.contains(std::string(m).substr(0, dot))) continue;
      v = &s[std::string(m).substr(0, dot)];
    }
    const std::string key = dot == std::string::npos ? m : std::string(m).substr(dot + 1);
    if (!v->contains(key) || !(*v)[key].is_number()) continue;
    const std::string shown = fmt::format("{:.6g}", (*v)[key].get<double>());
    result.table += fmt::format("{:<28} {:>14}\n", m, shown);
    html += "<tr><td>" + std::string(m) + "</td><td>" + shown + "</td></tr>\n";
  }
  html += "</table>\n";
  auto col = [&](const char* name) {
    std::vector<double> v;
    const auto c = static_cast<std::size_t>(steps.column(name));
    for (const auto& r : steps.rows) {
      double x = 0;
      to_number(r[c], x);
      v.push_back(x);
    }
    return v;
  };
  const auto t = col("start_s");
  std::vector<double> tokens = col("prefill_tokens");
  const auto decode = col("decode_tokens");
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] += decode[i];
  std::vector<std::string> charts{
      svg_line_chart({"step duration", "simulated time (s)", "ms", {}, 720, 380}, {{"duration_ms", t, col("duration_ms")}}),
      svg_line_chart({"tokens per step", "simulated time (s)", "tokens", {}, 720, 380}, {{"tokens", t, tokens}}),
      svg_line_chart({"expert-load CV per step", "simulated time (s)", "CV", {}, 720, 380}, {{"expert_load_cv", t, col("expert_load_cv")}})};
  if (std::filesystem::exists(dir / "timeseries.csv")) {
    // The workload's shape over time beside what it cost: arrivals, tokens, prefix hits,
    // latency of each interval's arrivals, power and temperature.
    const Table ts = read_csv(dir / "timeseries.csv");
    if (ts.column("time_s") < 0) throw std::runtime_error((dir / "timeseries.csv").string() + ": missing column time_s");
    auto series = [&](const char* name) {
      ChartSeries out{name, {}, {}};
      const int c = ts.column(name);
      if (c < 0) throw std::runtime_error((dir / "timeseries.csv").string() + ": missing column " + name);
      const auto tc = static_cast<std::size_t>(ts.column("time_s"));
      for (const auto& r : ts.rows) {
        double x = 0, y = 0;
        // An interval without arrivals has no latency: a gap, not a zero.
        if (to_number(r[tc], x) && to_number(r[static_cast<std::size_t>(c)], y)) {
          out.x.push_back(x);
          out.y.push_back(y);
        }
      }
      return out;
    };
    const std::string x = "simulated time (s)";
    charts.push_back(svg_line_chart({"arrivals per second", x, "requests/s", {}, 720, 380}, {series("arrival_rate_per_s")}));
    charts.push_back(svg_line_chart({"tokens per second", x, "tokens/s", {}, 720, 380},
                                    {series("arrived_prompt_tokens_per_s"), series("prefill_tokens_per_s"),
                                     series("prefix_hit_tokens_per_s"), series("output_tokens_per_s")}));
    charts.push_back(svg_line_chart({"prefix-cache hit rate", x, "share of prompt positions", {}, 720, 380}, {series("prefix_hit_rate")}));
    charts.push_back(svg_line_chart({"TTFT of each interval's arrivals", x, "ms", {}, 720, 380},
                                    {series("mean_ttft_ms"), series("p99_ttft_ms")}));
    charts.push_back(svg_line_chart({"queue at each interval's end", x, "requests", {}, 720, 380}, {series("waiting"), series("in_flight")}));
    charts.push_back(svg_line_chart({"GPU power, all GPUs", x, "W", {}, 720, 380}, {series("power_w")}));
    charts.push_back(svg_line_chart({"hottest GPU die", x, "degC", {}, 720, 380}, {series("max_die_c")}));
  }
  result.charts = static_cast<int>(charts.size());
  result.html = dir / "report.html";
  write_file_atomically(result.html, page("moesim run: " + dir.filename().string(), fmt::format("{} steps.", steps.rows.size()), charts, html));
  return result;
}

}  // namespace

ReportResult write_report(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "sweep.csv")) return sweep_report(dir);
  if (std::filesystem::exists(dir / "summary.json")) return run_report(dir);
  throw std::runtime_error(dir.string() + ": neither a sweep directory (sweep.csv) nor a run directory (summary.json)");
}

}  // namespace moesim
