#pragma once
// Streaming readers for public production LLM request traces.
//
// Formats (the `format` argument), with the columns and keys their publishers document:
//   azure      Azure LLM inference trace 2023 and 2024. CSV `TIMESTAMP,ContextTokens,GeneratedTokens`;
//              TIMESTAMP is wall clock `2023-11-16 18:15:46.6805900`: 0 to 9 fractional digits or
//              none, 'T' also separates date and time, and an optional UTC offset (`Z`, `+00:00`,
//              `-0700`; the 2024 release writes `+00:00`) is applied. A time without offset is
//              read as UTC. Parsed exactly by integer arithmetic (no locale, no time zone data).
//   mooncake   Mooncake FAST'25. JSONL `{"timestamp": ms since start, "input_length": n,
//              "output_length": n, "hash_ids": [ints]}`; one hash id per 512-token block.
//   burstgpt   BurstGPT. CSV `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`;
//              Timestamp in seconds; group = Model. A record with Response tokens 0 is a failed
//              request (failed = true); its Request tokens may be 0 too (in BurstGPT_1.csv most
//              failed rows have both 0). Total tokens and Log Type are not read.
//   bailian    Alibaba qwen-bailian-usagetraces-anon. JSONL `chat_id`, `parent_chat_id` (-1: a
//              first turn), `timestamp` (s), `input_length`, `output_length`, `type` (string,
//              -> group), `turn`, `hash_ids` (16-token blocks); all required.
//   splitwise  Splitwise simulator requests. CSV `request_id,request_type,application_id,
//              arrival_timestamp,batch_size,prompt_size,token_size`; arrival_timestamp in s;
//              group = application_id as written. request_id, request_type, batch_size: not read.
//   moesim     The project's JSONL: `{"arrival_s": s, "prompt_tokens": n, "output_tokens": n}`,
//              optional "domain" (-> group), "hash_ids" (blocks of the caller's size, default 16),
//              "chat_id", "parent_chat_id", "turn". A `moesim gen-datasets` file with arrival_s
//              reads as such a trace.
// Common rules: CSV headers match the columns above exactly and in order (a UTF-8 BOM is
// skipped); a row has exactly the header's columns; RFC 4180 double-quoted fields are read (a
// line break inside quotes is not). JSONL keys not listed are ignored; a listed key that is
// missing or of the wrong type is an error. Blank lines are skipped; CRLF line ends are read.
// Timestamps must not decrease. Token counts are integers in int range; input >= 1 and
// output >= 1 (except a failed burstgpt record). hash_ids, where given, are non-negative integers,
// ceil(input / block) of them. Lines are bounded by kMaxDatasetLineBytes and JSON nesting by
// kMaxDatasetLineDepth (dataset.hpp).
//
// Time: TraceRecord::time_s counts seconds from the file's first record, for every format (the
// timestamp as written, in seconds, is recorded_s). The window of TraceFilter is on that clock.
//
// Streaming: the reader holds one line at a time and stops reading the file at the first record
// at or past the window's end, or after max_requests kept records. It throws InputError (file,
// 1-based line, field = column or key, message) at the first bad line.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/common/input_error.hpp"

namespace moesim {

struct TraceRecord {
  double time_s = 0;      ///< seconds since the file's first record (before any window shift)
  double recorded_s = 0;  ///< the timestamp as written, in seconds (azure: Unix time of the UTC wall clock)
  int input_tokens = 0;
  int output_tokens = 0;
  std::vector<std::int64_t> hash_ids;  ///< KV-block hashes of the prompt (mooncake, bailian, moesim); empty when none
  std::string group;  ///< burstgpt Model, bailian type, splitwise application_id, moesim domain; empty otherwise
  std::int64_t chat_id = -1;         ///< bailian / moesim sessions; -1 when none
  std::int64_t parent_chat_id = -1;  ///< -1: a first turn, or no session
  int turn = 0;
  bool failed = false;  ///< burstgpt: Response tokens == 0
  int line = 0;         ///< 1-based line in the file
};

struct TraceFilter {
  double start_s = 0;     ///< skip records with time_s < start_s
  double duration_s = 0;  ///< > 0: end at the first record with time_s >= start_s + duration_s (the rest is not read)
  std::int64_t max_requests = 0;    ///< > 0: end after this many kept records
  std::vector<std::string> groups;  ///< non-empty: keep only records whose group is listed
  bool keep_failed = false;         ///< false: drop failed records
};

/// What a reader has done so far. A record is checked whole, and counted, before the filters.
struct TraceCounters {
  std::int64_t lines = 0;    ///< lines read: header and blank lines included
  std::int64_t records = 0;  ///< records read before the window's end
  std::int64_t kept = 0;
  std::int64_t skipped_before_window = 0;  ///< time_s < start_s
  std::int64_t dropped_failed = 0;         ///< failed, and keep_failed is false
  std::int64_t dropped_filtered = 0;       ///< group not in TraceFilter::groups
  bool reached_window_end = false;  ///< stopped at a record at or past start_s + duration_s
};

class TraceReader {
 public:
  /// Opens `file` and reads a CSV header. `moesim_block_tokens` is the block size of the moesim
  /// format's hash_ids. Throws InputError: an unknown format (listing trace_formats()), a
  /// missing or non-regular file, a bad header, a bad filter, or groups given for a format
  /// without a group.
  TraceReader(const std::filesystem::path& file, const std::string& format, TraceFilter filter = {},
              int moesim_block_tokens = 16);
  ~TraceReader();
  TraceReader(TraceReader&&) noexcept;
  TraceReader& operator=(TraceReader&&) noexcept;

  /// The next kept record; nullopt at the end of the file, the window or max_requests.
  /// Throws InputError at the first bad line.
  [[nodiscard]] std::optional<TraceRecord> next();
  /// Tokens per hash id: 512 mooncake, 16 bailian, the caller's value for moesim, 0 otherwise.
  [[nodiscard]] int hash_block_tokens() const;
  [[nodiscard]] const TraceCounters& counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The format names, for messages listing the allowed values.
[[nodiscard]] const std::vector<std::string>& trace_formats();

/// One pass over a trace's kept records (for `moesim trace-info`).
struct TraceSummary {
  std::int64_t records = 0;  ///< kept records
  std::int64_t failed = 0;   ///< kept records marked failed (only with keep_failed)
  double first_s = 0;        ///< time_s of the first and last kept record (0 when none)
  double last_s = 0;
  double input_tokens_sum = 0;
  double output_tokens_sum = 0;
  int max_input_tokens = 0;
  int max_output_tokens = 0;
  /// [h]: kept records with start_s + h * 3600 <= time_s < start_s + (h + 1) * 3600.
  std::vector<std::int64_t> per_hour_records;
  /// Kept records per group, in order of first appearance; for the formats with a group only
  /// (a moesim record without a domain counts under "").
  std::vector<std::pair<std::string, std::int64_t>> group_records;
  int hash_block_tokens = 0;
  std::int64_t distinct_hash_ids = 0;
  /// Prompt tokens an unbounded prefix cache would serve, independent of any scheduler: per kept
  /// record in order, the longest leading run of its hash_ids seen in earlier kept records,
  /// times the block size, at most input_tokens - 1 (a request computes at least one token).
  double unbounded_prefix_hit_tokens = 0;
  TraceCounters counters;
};

/// Reads the trace once through a TraceReader. Memory: the set of distinct hash ids seen, and
/// one entry per group and per hour. Throws InputError as TraceReader does.
[[nodiscard]] TraceSummary summarize_trace(const std::filesystem::path& file, const std::string& format,
                                           const TraceFilter& filter = {}, int moesim_block_tokens = 16);

}  // namespace moesim
