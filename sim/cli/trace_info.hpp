#pragma once
// `moesim trace-info`: one streamed pass over a production trace (models/workload/trace_reader):
// what a window of it holds before a scenario replays it. Requests, time span and rate (mean, the
// busiest and quietest hour), prompt and output tokens, groups, failed requests, hash ids and the
// prompt share an unbounded prefix cache would serve. Memory stays bounded on a week-long file:
// one line at a time, a counter per hour and per group, and the distinct hash ids.
#include <iosfwd>
#include <string>
#include <vector>

namespace moesim {

struct TraceInfoOptions {
  std::string file;
  std::string format;
  double start_s = 0;
  double duration_s = 0;
  long long max_requests = 0;
  std::vector<std::string> groups;
  bool keep_failed = false;
  int block_tokens = 16;  ///< moesim format: tokens per hash id
  bool json = false;      ///< one JSON object instead of the table
};

/// Exit status 0, or 2 with a file:line message on stderr for a bad file or option.
int run_trace_info(const TraceInfoOptions& opt, std::ostream& out, std::ostream& err);

}  // namespace moesim
