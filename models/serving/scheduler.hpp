#pragma once
// Continuous batching in the manner of vLLM's V1 scheduler (first version).
//
// Every step has a budget of max_num_batched_tokens. Running sequences are served first, in
// admission order: a decoding sequence takes 1 token, a sequence still in prefill takes
// min(remaining prompt, budget) tokens (chunked prefill). Then waiting requests are admitted in
// arrival order while the budget lasts, fewer than max_num_seqs sequences run, and the KV cache can
// hold the request's whole length (prompt + output tokens are reserved at admission, so no
// sequence is ever preempted). Without chunked prefill a prompt is admitted only if it fits the
// remaining budget whole.
//
// A sequence emits its first output token at the end of the step that completes its prompt, then
// one token per decode step; it finishes when it has emitted output_tokens tokens.
//
// With attention_ranks > 1 (data-parallel attention inside an expert-parallel group) each admitted
// sequence is pinned to the rank with the fewest running sequences (lowest rank on ties): its
// attention and KV cache live there.
#include <cstdint>
#include <deque>
#include <vector>

#include "models/workload/request.hpp"

namespace moesim {

struct SchedulerParams {
  int max_num_batched_tokens = 8192;
  int max_num_seqs = 256;
  int max_model_len = 4096;
  bool chunked_prefill = true;
  std::int64_t kv_capacity_tokens = 0;  ///< per attention rank
  int attention_ranks = 1;
};

struct Sequence {
  Request request;
  int prefilled = 0;   ///< prompt tokens already computed
  int generated = 0;   ///< output tokens emitted
  int attention_rank = 0;

  [[nodiscard]] bool in_prefill() const { return prefilled < request.prompt_tokens; }
  [[nodiscard]] int context() const { return prefilled + generated; }
  [[nodiscard]] int reserved_tokens() const { return request.prompt_tokens + request.output_tokens; }
};

/// One sequence's share of a step.
struct BatchItem {
  std::int64_t request_id = 0;
  int attention_rank = 0;
  int num_tokens = 0;      ///< tokens computed this step (prompt chunk, or 1 for decode)
  int domain = -1;         ///< the request's domain (for routing)
  int context_before = 0;  ///< tokens already in the KV cache before this step
  bool is_prefill = false;
  bool emits_token = false;  ///< the step ends with a new output token for this sequence
};

struct Batch {
  std::vector<BatchItem> items;
  int prefill_tokens = 0;
  int decode_tokens = 0;

  [[nodiscard]] int total_tokens() const { return prefill_tokens + decode_tokens; }
  [[nodiscard]] bool empty() const { return items.empty(); }
};

struct StepOutcome {
  std::vector<std::int64_t> emitted;   ///< request ids that got an output token
  std::vector<std::int64_t> finished;  ///< request ids that completed
};

class ContinuousBatchScheduler {
 public:
  explicit ContinuousBatchScheduler(SchedulerParams params);

  void add(const Request& request);
  /// Forms the next step's batch; empty when nothing can run.
  [[nodiscard]] Batch schedule();
  /// Applies a computed batch: advances prefill, emits tokens, retires finished sequences.
  StepOutcome complete(const Batch& batch);

  [[nodiscard]] bool idle() const { return running_.empty() && waiting_.empty(); }
  [[nodiscard]] std::size_t num_running() const { return running_.size(); }
  [[nodiscard]] std::size_t num_waiting() const { return waiting_.size(); }
  [[nodiscard]] std::int64_t kv_tokens_in_use(int rank) const { return kv_in_use_[static_cast<std::size_t>(rank)]; }
  [[nodiscard]] const SchedulerParams& params() const { return params_; }

 private:
  [[nodiscard]] int pick_attention_rank() const;

  SchedulerParams params_;
  std::deque<Request> waiting_;
  std::vector<Sequence> running_;
  std::vector<std::int64_t> kv_in_use_;
  std::vector<int> seqs_on_rank_;
};

}  // namespace moesim
