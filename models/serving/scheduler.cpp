#include "models/serving/scheduler.hpp"

#include <algorithm>
#include <stdexcept>

namespace moesim {

ContinuousBatchScheduler::ContinuousBatchScheduler(SchedulerParams params)
    : params_(params),
      kv_in_use_(static_cast<std::size_t>(std::max(1, params.attention_ranks)), 0),
      seqs_on_rank_(static_cast<std::size_t>(std::max(1, params.attention_ranks)), 0) {}

void ContinuousBatchScheduler::add(const Request& request) { waiting_.push_back(request); }

int ContinuousBatchScheduler::pick_attention_rank() const {
  return static_cast<int>(std::min_element(seqs_on_rank_.begin(), seqs_on_rank_.end()) - seqs_on_rank_.begin());
}

Batch ContinuousBatchScheduler::schedule() {
  Batch batch;
  int budget = params_.max_num_batched_tokens;
  for (const Sequence& s : running_) {
    if (budget <= 0) break;
    BatchItem item{s.request.id, s.attention_rank, 0, s.request.domain, s.context(), s.in_prefill(), false};
    if (s.in_prefill()) {
      item.num_tokens = std::min(s.request.prompt_tokens - s.prefilled, budget);
      item.emits_token = s.prefilled + item.num_tokens == s.request.prompt_tokens;
      batch.prefill_tokens += item.num_tokens;
    } else {
      item.num_tokens = 1;
      item.emits_token = true;
      batch.decode_tokens += 1;
    }
    budget -= item.num_tokens;
    batch.items.push_back(item);
  }
  while (budget > 0 && !waiting_.empty() && static_cast<int>(running_.size()) < params_.max_num_seqs) {
    const Request& next = waiting_.front();
    const int rank = pick_attention_rank();
    const std::int64_t need = next.prompt_tokens + next.output_tokens;
    if (kv_in_use_[static_cast<std::size_t>(rank)] + need > params_.kv_capacity_tokens) break;
    if (!params_.chunked_prefill && next.prompt_tokens > budget) break;
    Sequence s{next, 0, 0, rank};
    waiting_.pop_front();
    kv_in_use_[static_cast<std::size_t>(rank)] += need;
    seqs_on_rank_[static_cast<std::size_t>(rank)] += 1;
    BatchItem item{s.request.id, rank, std::min(s.request.prompt_tokens, budget), s.request.domain, 0, true, false};
    item.emits_token = item.num_tokens == s.request.prompt_tokens;
    batch.prefill_tokens += item.num_tokens;
    budget -= item.num_tokens;
    batch.items.push_back(item);
    running_.push_back(s);
  }
  return batch;
}

StepOutcome ContinuousBatchScheduler::complete(const Batch& batch) {
  StepOutcome out;
  // Batch items follow the order of running_ (running sequences first, then the admitted ones,
  // which were appended in order), so one forward walk pairs them.
  std::size_t si = 0;
  for (const BatchItem& item : batch.items) {
    while (si < running_.size() && running_[si].request.id != item.request_id) ++si;
    if (si == running_.size()) throw std::logic_error("batch item for a sequence that is not running");
    Sequence& s = running_[si];
    if (item.is_prefill) s.prefilled += item.num_tokens;
    if (item.emits_token) {
      s.generated += 1;
      out.emitted.push_back(s.request.id);
      if (s.generated >= s.request.output_tokens) out.finished.push_back(s.request.id);
    }
  }
  if (!out.finished.empty()) {
    auto done = [&](const Sequence& s) {
      if (s.generated < s.request.output_tokens) return false;
      kv_in_use_[static_cast<std::size_t>(s.attention_rank)] -= s.reserved_tokens();
      seqs_on_rank_[static_cast<std::size_t>(s.attention_rank)] -= 1;
      return true;
    };
    running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
  }
  return out;
}

}  // namespace moesim
