#include "sim/cli/trace_info.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <ostream>

#include "models/common/input_file.hpp"
#include "models/workload/trace_reader.hpp"

namespace moesim {

int run_trace_info(const TraceInfoOptions& opt, std::ostream& out, std::ostream& err) {
  const auto& formats = trace_formats();
  if (std::find(formats.begin(), formats.end(), opt.format) == formats.end()) {
    err << fmt::format("error: --format {}: unknown trace format; one of {}\n", opt.format, fmt::join(formats, ", "));
    return 2;
  }
  if (opt.start_s < 0 || opt.duration_s < 0 || opt.max_requests < 0 || opt.block_tokens < 1) {
    err << "error: --start-s, --duration-s and --max-requests must be >= 0, --block-tokens >= 1\n";
    return 2;
  }
  TraceSummary s;
  try {
    s = summarize_trace(opt.file, opt.format, {opt.start_s, opt.duration_s, opt.max_requests, opt.groups, opt.keep_failed},
                        opt.block_tokens);
  } catch (const InputError& e) {
    for (const auto& i : e.issues()) err << "error: " << InputError::format(i) << "\n";
    return 2;
  }
  const double n = static_cast<double>(s.records);
  const double span = s.last_s - s.first_s;
  // Whole hours only (the last, cut by the trace's end, would read as a quiet hour).
  const auto full_hours = std::min(s.per_hour_records.size(),
                                   static_cast<std::size_t>(std::max(0.0, (s.last_s - opt.start_s) / 3600.0)));
  std::int64_t busiest = 0, quietest = full_hours > 0 ? s.per_hour_records.front() : 0;
  std::size_t busiest_at = 0;
  for (std::size_t h = 0; h < full_hours; ++h) {
    if (s.per_hour_records[h] > busiest) busiest = s.per_hour_records[h], busiest_at = h;
    quietest = std::min(quietest, s.per_hour_records[h]);
  }
  nlohmann::ordered_json j;
  j["file"] = opt.file;
  j["format"] = opt.format;
  j["lines_read"] = s.counters.lines;
  j["records_read"] = s.counters.records;
  j["requests"] = s.records;
  j["skipped_before_window"] = s.counters.skipped_before_window;
  j["dropped_failed"] = s.counters.dropped_failed;
  j["dropped_by_group"] = s.counters.dropped_filtered;
  j["failed_kept"] = s.failed;
  j["first_s"] = s.first_s;
  j["last_s"] = s.last_s;
  j["span_s"] = span;
  j["mean_rate_per_s"] = span > 0 ? (n - 1) / span : 0.0;
  j["full_hours"] = full_hours;
  if (full_hours > 0) {
    j["busiest_hour"] = busiest_at;
    j["busiest_hour_rate_per_s"] = static_cast<double>(busiest) / 3600.0;
    j["quietest_hour_rate_per_s"] = static_cast<double>(quietest) / 3600.0;
  }
  j["prompt_tokens"] = s.input_tokens_sum;
  j["output_tokens"] = s.output_tokens_sum;
  j["mean_prompt_tokens"] = n > 0 ? s.input_tokens_sum / n : 0.0;
  j["mean_output_tokens"] = n > 0 ? s.output_tokens_sum / n : 0.0;
  j["max_prompt_tokens"] = s.max_input_tokens;
  j["max_output_tokens"] = s.max_output_tokens;
  j["hash_block_tokens"] = s.hash_block_tokens;
  j["distinct_hash_ids"] = s.distinct_hash_ids;
  j["unbounded_prefix_hit_tokens"] = s.unbounded_prefix_hit_tokens;
  j["unbounded_prefix_hit_rate"] = s.input_tokens_sum > 0 ? s.unbounded_prefix_hit_tokens / s.input_tokens_sum : 0.0;
  nlohmann::ordered_json groups = nlohmann::ordered_json::object();
  for (const auto& [g, count] : s.group_records) groups[g] = count;
  j["groups"] = groups;
  j["per_hour_requests"] = s.per_hour_records;
  if (opt.json) {
    out << j.dump(2) << "\n";
    return 0;
  }
  out << fmt::format("{} ({}): {} requests in {:.6g} s ({} lines read)\n", opt.file, opt.format, s.records, span, s.counters.lines);
  out << fmt::format("  {:<34} {:>14.6g}\n", "mean rate (requests/s)", j["mean_rate_per_s"].get<double>());
  if (full_hours > 0) {
    out << fmt::format("  {:<34} {:>14.6g}  (hour {} of {})\n", "busiest hour (requests/s)", j["busiest_hour_rate_per_s"].get<double>(),
                       busiest_at, full_hours);
    out << fmt::format("  {:<34} {:>14.6g}\n", "quietest hour (requests/s)", j["quietest_hour_rate_per_s"].get<double>());
  }
  out << fmt::format("  {:<34} {:>14.6g}  (max {})\n", "mean prompt tokens", j["mean_prompt_tokens"].get<double>(), s.max_input_tokens);
  out << fmt::format("  {:<34} {:>14.6g}  (max {})\n", "mean output tokens", j["mean_output_tokens"].get<double>(), s.max_output_tokens);
  out << fmt::format("  {:<34} {:>14}\n", "skipped before the window", s.counters.skipped_before_window);
  out << fmt::format("  {:<34} {:>14}\n", "failed: dropped / kept", fmt::format("{} / {}", s.counters.dropped_failed, s.failed));
  if (s.counters.dropped_filtered > 0) out << fmt::format("  {:<34} {:>14}\n", "dropped by group", s.counters.dropped_filtered);
  if (s.hash_block_tokens > 0) {
    out << fmt::format("  {:<34} {:>14}  ({} tokens each)\n", "distinct hash ids", s.distinct_hash_ids, s.hash_block_tokens);
    out << fmt::format("  {:<34} {:>14.6g}\n", "unbounded prefix-cache hit rate", j["unbounded_prefix_hit_rate"].get<double>());
  }
  for (const auto& [g, count] : s.group_records) out << fmt::format("  group {:<28} {:>14}\n", g.empty() ? "(none)" : g, count);
  return 0;
}

}  // namespace moesim
