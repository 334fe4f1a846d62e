#include "sim/report/svg_chart.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace moesim {

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double pad = std::fabs(lo) > 0 ? std::fabs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  const double first = std::floor(lo / step) * step;
  for (int i = 0;; ++i) {
    const double t = first + i * step;  // multiply, not accumulate: no drift
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi - step * 1e-9) break;
  }
  return ticks;
}

namespace {
const char* const kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

std::string tick_label(double v) {
  if (v != 0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-3)) return fmt::format("{:.2g}", v);
  return fmt::format("{:g}", v);
}
}  // namespace

std::string svg_line_chart(const ChartSpec& spec, const std::vector<ChartSeries>& series) {
  const double left = 70, right = 20, top = 36, bottom = spec.x_categories.empty() ? 50 : 95;
  const double pw = spec.width - left - right - 150, ph = spec.height - top - bottom;  // 150: legend
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (!spec.x_categories.empty()) xmin = -0.5, xmax = static_cast<double>(spec.x_categories.size()) - 0.5;
  const auto yt = nice_ticks(ymin, ymax);
  const double y0 = yt.front(), y1 = yt.back();
  const auto xt = spec.x_categories.empty() ? nice_ticks(xmin, xmax) : std::vector<double>{};
  const double x0 = spec.x_categories.empty() ? xt.front() : xmin, x1 = spec.x_categories.empty() ? xt.back() : xmax;
  auto px = [&](double x) { return left + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * pw; };
  auto py = [&](double y) { return top + ph - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * ph; };

  std::string svg = fmt::format(R"svg(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" )svg"
                                R"svg(font-family="sans-serif" font-size="11" class="chart">)svg",
                                spec.width, spec.height, spec.width, spec.height);
  svg += fmt::format(R"svg(<rect width="{}" height="{}" fill="white"/>)svg", spec.width, spec.height);
  svg += fmt::format(R"svg(<text x="{}" y="20" font-size="13" font-weight="bold">{}</text>)svg", left, html_escape(spec.title));
  for (double t : yt) {
    svg += fmt::format(R"svg(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#ddd"/>)svg", left, py(t), left + pw, py(t));
    svg += fmt::format(R"svg(<text x="{:.1f}" y="{:.1f}" text-anchor="end">{}</text>)svg", left - 6, py(t) + 4, tick_label(t));
  }
  if (spec.x_categories.empty()) {
    for (double t : xt)
      svg += fmt::format(R"svg(<text x="{:.1f}" y="{:.1f}" text-anchor="middle">{}</text>)svg", px(t), top + ph + 16, tick_label(t));
  } else {
    const std::size_t n = spec.x_categories.size();
    const std::size_t every = std::max<std::size_t>(1, n / 25);
    for (std::size_t i = 0; i < n; i += every)
      svg += fmt::format(R"svg(<text transform="translate({:.1f},{:.1f}) rotate(-60)" text-anchor="end" font-size="9">{}</text>)svg",
                         px(static_cast<double>(i)), top + ph + 10, html_escape(spec.x_categories[i]));
  }
  svg += fmt::format(R"svg(<rect x="{}" y="{}" width="{:.1f}" height="{:.1f}" fill="none" stroke="#333"/>)svg", left, top, pw, ph);
  svg += fmt::format(R"svg(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)svg", left + pw / 2, spec.height - 6,
                     html_escape(spec.x_label));
  svg += fmt::format(R"svg(<text transform="translate(14,{:.1f}) rotate(-90)" text-anchor="middle">{}</text>)svg", top + ph / 2,
                     html_escape(spec.y_label));
  for (std::size_t si = 0; si < series.size(); ++si) {
    const auto& s = series[si];
    const char* colour = kColours[si % 8];
    std::vector<std::size_t> order(s.x.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return s.x[a] < s.x[b]; });
    std::string points;
    for (auto i : order)
      if (std::isfinite(s.y[i])) points += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
    svg += fmt::format(R"svg(<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>)svg", colour, points);
    for (auto i : order)
      if (std::isfinite(s.y[i]))
        svg += fmt::format(R"svg(<circle cx="{:.1f}" cy="{:.1f}" r="2.5" fill="{}"/>)svg", px(s.x[i]), py(s.y[i]), colour);
    if (si >= 12) {
      if (si == 12) svg += fmt::format(R"svg(<text x="{:.1f}" y="{:.1f}">... {} more</text>)svg", left + pw + 28, top + 12 + 16.0 * 12, series.size() - 12);
      continue;
    }
    const double ly = top + 12 + 16.0 * static_cast<double>(si);
    svg += fmt::format(R"svg(<rect x="{:.1f}" y="{:.1f}" width="12" height="3" fill="{}"/>)svg", left + pw + 12, ly - 4, colour);
    svg += fmt::format(R"svg(<text x="{:.1f}" y="{:.1f}">{}</text>)svg", left + pw + 28, ly, html_escape(s.name));
  }
  svg += "</svg>";
  return svg;
}

}  // namespace moesim
