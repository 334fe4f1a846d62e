#pragma once
// What a run measured: one record per request and per engine step. The core fills it; writers in
// sim/metrics turn it into files. Pure C++.
#include <cstdint>
#include <string>
#include <vector>

#include "models/common/stats.hpp"
#include "models/workload/request.hpp"

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
  double energy_j = 0;   ///< all GPUs of the instance, start to end of the step
  double max_die_c = 0;  ///< hottest GPU of the instance at the step's end
};

class RunRecorder {
 public:
  explicit RunRecorder(std::vector<Request> requests);

  void on_scheduled(std::int64_t request_id, double now);
  void on_token(std::int64_t request_id, double now);
  void on_finished(std::int64_t request_id, double now);
  /// The request is refused at arrival and never reaches an engine; `reason` is a short name.
  void on_rejected(std::int64_t request_id, std::string reason) {
    requests_.at(static_cast<std::size_t>(request_id)).rejected_reason = std::move(reason);
  }
  void on_step(const StepRecord& step) { steps_.push_back(step); }
  void on_energy(std::int64_t request_id, double joules, bool prefill) {
    auto& r = requests_.at(static_cast<std::size_t>(request_id));
    (prefill ? r.prefill_energy_j : r.decode_energy_j) += joules;
  }
  /// Closed-loop arrivals: the request is sent now.
  void on_sent(std::int64_t request_id, double now) { requests_.at(static_cast<std::size_t>(request_id)).request.arrival_s = now; }
  void set_instance(std::int64_t request_id, int instance) { requests_.at(static_cast<std::size_t>(request_id)).instance = instance; }

  [[nodiscard]] const std::vector<RequestRecord>& requests() const { return requests_; }
  [[nodiscard]] const std::vector<StepRecord>& steps() const { return steps_; }
  [[nodiscard]] std::size_t num_steps() const { return steps_.size(); }
  /// Inter-token latencies in seconds, streamed: exact up to 4M values, a fine histogram beyond.
  [[nodiscard]] const StreamingSample& inter_token_latencies_s() const { return itls_; }

 private:
  std::vector<RequestRecord> requests_;
  std::vector<StepRecord> steps_;
  StreamingSample itls_;
};

}  // namespace moesim
