#pragma once
// Small self-contained SVG charts for `moesim report` (no scripts, no external resources): one
// series per group, points joined in x order, axes with rounded ticks, a legend.
#include <string>
#include <vector>

namespace moesim {

struct ChartSeries {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
};

struct ChartSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<std::string> x_categories;  ///< when not empty, x values are indices into these labels
  int width = 640;
  int height = 360;
};

[[nodiscard]] std::string svg_line_chart(const ChartSpec& spec, const std::vector<ChartSeries>& series);
/// "Nice" tick values covering [lo, hi] (about `target` of them, steps of 1, 2 or 5 x 10^k).
[[nodiscard]] std::vector<double> nice_ticks(double lo, double hi, int target = 5);
[[nodiscard]] std::string html_escape(const std::string& text);

}  // namespace moesim
