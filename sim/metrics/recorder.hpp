#pragma once
// What a run measured: one record per request and per engine step. The core fills it; writers in
// sim/metrics turn it into files. Pure C++.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "models/common/stats.hpp"
#include "models/workload/request.hpp"
#include "sim/metrics/timeseries.hpp"

namespace moesim {

struct RequestRecord {
  Request request;
  int instance = 0;
  double first_scheduled_s = -1;
  double first_token_s = -1;
  double last_token_s = -1;
  double finish_s = -1;
  int tokens_emitted = 0;
  double prefill_energy_j = 0;
  double decode_energy_j = 0;
  std::string rejected_reason{};  ///< why the server refused the request at arrival; empty when admitted

  [[nodiscard]] bool finished() const { return finish_s >= 0; }
  [[nodiscard]] bool rejected() const { return !rejected_reason.empty(); }
};

struct StepRecord {
  std::int64_t step = 0;  ///< per instance, from 0
  int instance = 0;
  double start_s = 0;
  double end_s = 0;
  int prefill_tokens = 0;
  int decode_tokens = 0;
  int num_seqs = 0;
  double attention_s = 0;  ///< wall time of attention phases (slowest GPU)
  double dense_s = 0;
  double moe_s = 0;
  double lm_head_s = 0;
  double comm_s = 0;
  double expert_load_cv = 0;
  double expert_load_max_over_mean = 1;
  double gpu_load_max_over_mean = 1;
  double gpu_load_max_over_mean_before = 1;  ///< the gate's selection on the contiguous map, no policy
  double rerouted_fraction = 0;     ///< assignments sent to another replica than the default rule
  double selection_divergence = 0;  ///< assignments whose expert the policy changed
  double dropped_assignments = 0;   ///< capacity overflow
  double attention_rank_max_over_mean = 1;
  double dispatch_bytes = 0;
  double combine_bytes = 0;
  int running = 0;       ///< sequences running after the step
  int waiting = 0;       ///< requests waiting after the step
  std::int64_t kv_blocks_used = 0;
  int preempted = 0;     ///< sequences preempted while forming the step
  std::int64_t prefix_hit_tokens = 0;  ///< prompt positions the prefix cache covered while forming the step
  double energy_j = 0;   ///< all GPUs of the instance, start to end of the step
  double max_die_c = 0;  ///< hottest GPU of the instance at the step's end
};

/// Running sums over a run's steps, in step order (what summary.json and the invariants need).
struct StepTotals {
  std::size_t steps = 0;
  std::int64_t prefill_tokens = 0, decode_tokens = 0;
  double energy_j = 0;
  double attention_s = 0, dense_s = 0, moe_s = 0, lm_head_s = 0, comm_s = 0;
  double dispatch_bytes = 0, combine_bytes = 0;
  double expert_load_max_over_mean = 0, gpu_load_max_over_mean = 0, attention_rank_max_over_mean = 0;  ///< sums
  void add(const StepRecord& s);
};

/// steps.csv's header and one row.
[[nodiscard]] const char* steps_csv_header();
void append_steps_csv_row(std::string& out, const StepRecord& s);

/// steps.csv written while the run goes: rows go to a hidden temporary in the output folder, which
/// commit() flushes to disk and renames; a run that never commits leaves nothing behind.
class StepsCsvStream {
 public:
  explicit StepsCsvStream(const std::filesystem::path& dir);
  ~StepsCsvStream();
  StepsCsvStream(const StepsCsvStream&) = delete;
  StepsCsvStream& operator=(const StepsCsvStream&) = delete;
  void add(const StepRecord& s);
  /// Writes what is buffered, syncs, and renames the temporary to `path`.
  void commit(const std::filesystem::path& path);

 private:
  void flush();
  std::filesystem::path tmp_;
  int fd_ = -1;
  std::string buffer_;
};

class RunRecorder {
 public:
  /// `timeseries_interval_s`: the width of engine_bins(); 0 chooses it from the arrivals' span.
  explicit RunRecorder(std::vector<Request> requests, double timeseries_interval_s = 0);

  void on_scheduled(std::int64_t request_id, double now);
  void on_token(std::int64_t request_id, double now);
  void on_finished(std::int64_t request_id, double now);
  /// The request is refused at arrival and never reaches an engine; `reason` is a short name.
  void on_rejected(std::int64_t request_id, std::string reason) {
    requests_.at(static_cast<std::size_t>(request_id)).rejected_reason = std::move(reason);
  }
  void on_step(const StepRecord& step) {
    totals_.add(step);
    engine_bins_.add_step(step.end_s, step.prefill_tokens, step.prefix_hit_tokens);
    if (stream_) stream_->add(step);
    else steps_.push_back(step);
  }
  /// Streams steps.csv into `dir` instead of keeping the steps (commit_steps_csv writes it).
  void stream_steps_csv(const std::filesystem::path& dir) { stream_ = std::make_shared<StepsCsvStream>(dir); }
  [[nodiscard]] bool steps_streamed() const { return stream_ != nullptr; }
  void commit_steps_csv(const std::filesystem::path& path) const { stream_->commit(path); }
  void on_energy(std::int64_t request_id, double joules, bool prefill) {
    auto& r = requests_.at(static_cast<std::size_t>(request_id));
    (prefill ? r.prefill_energy_j : r.decode_energy_j) += joules;
  }
  /// Closed-loop arrivals: the request is sent now.
  void on_sent(std::int64_t request_id, double now) { requests_.at(static_cast<std::size_t>(request_id)).request.arrival_s = now; }
  void set_instance(std::int64_t request_id, int instance) { requests_.at(static_cast<std::size_t>(request_id)).instance = instance; }

  [[nodiscard]] const std::vector<RequestRecord>& requests() const { return requests_; }
  /// The steps, unless they were streamed to steps.csv (then empty).
  [[nodiscard]] const std::vector<StepRecord>& steps() const { return steps_; }
  [[nodiscard]] const StepTotals& step_totals() const { return totals_; }
  [[nodiscard]] std::size_t num_steps() const { return totals_.steps; }
  /// Inter-token latencies in seconds, streamed: exact up to 1M values, a fine histogram beyond.
  [[nodiscard]] const StreamingSample& inter_token_latencies_s() const { return itls_; }
  /// Tokens prefilled, served from the prefix cache and emitted, over time (timeseries.hpp).
  [[nodiscard]] const EngineTimeBins& engine_bins() const { return engine_bins_; }

 private:
  std::vector<RequestRecord> requests_;
  std::vector<StepRecord> steps_;
  StepTotals totals_;
  std::shared_ptr<StepsCsvStream> stream_;
  StreamingSample itls_;
  EngineTimeBins engine_bins_;
};

}  // namespace moesim
