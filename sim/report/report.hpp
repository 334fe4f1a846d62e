#pragma once
// `moesim report DIR`: a sweep's (or a single run's) headline metrics as a table on stdout and a
// self-contained HTML page (inline SVG charts, no scripts, no network) written to DIR/report.html.
//   sweep directory (sweep.csv): each headline metric against the first swept key, one series per
//     value of the other swept keys; the table lists every point.
//   run directory (summary.json, steps.csv): step duration, batch tokens and expert-load CV over
//     simulated time; the table lists the summary's headline metrics.
#include <filesystem>
#include <string>

namespace moesim {

struct ReportResult {
  std::string table;          ///< what is printed
  std::filesystem::path html;
  int charts = 0;
};

/// Throws std::runtime_error naming the missing file or column.
[[nodiscard]] ReportResult write_report(const std::filesystem::path& dir);

}  // namespace moesim
