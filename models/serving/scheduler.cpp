#include "models/serving/scheduler.hpp"

#include <algorithm>
#include <iterator>
#include <numeric>
#include <stdexcept>

namespace moesim {

ContinuousBatchScheduler::ContinuousBatchScheduler(SchedulerParams params)
    : free_queue_(static_cast<std::size_t>(std::max(1, params.attention_ranks))),
      params_(params),
      blocks_used_(static_cast<std::size_t>(std::max(1, params.attention_ranks)), 0),
      seqs_on_rank_(static_cast<std::size_t>(std::max(1, params.attention_ranks)), 0) {
  if (params_.kv_capacity_blocks > 0)
    for (auto& q : free_queue_) q.push_back(FreeRun{params_.kv_capacity_blocks, false, {}});
}

std::int64_t ContinuousBatchScheduler::kv_blocks_cached_free(int rank) const {
  std::int64_t n = 0;
  for (const FreeRun& run : free_queue_[static_cast<std::size_t>(rank)])
    if (run.prefix) n += run.blocks;
  return n;
}

void ContinuousBatchScheduler::allocate(int rank, std::int64_t n) {
  blocks_used_[static_cast<std::size_t>(rank)] += n;
  auto& queue = free_queue_[static_cast<std::size_t>(rank)];
  while (n > 0 && !queue.empty()) {
    FreeRun& run = queue.front();
    const std::int64_t take = std::min(n, run.blocks);
    run.blocks -= take;
    n -= take;
    if (run.prefix) {
      // Reusing a freed prefix's blocks evicts them, its last blocks first.
      auto it = prefixes_.find(run.key);
      if (it != prefixes_.end()) {
        it->second.blocks -= take;
        if (it->second.blocks <= 0) prefixes_.erase(it);
      }
    }
    if (run.blocks == 0) queue.pop_front();
  }
}

void ContinuousBatchScheduler::free_blocks(int rank, std::int64_t n, const PrefixKey* key) {
  if (n <= 0) return;
  blocks_used_[static_cast<std::size_t>(rank)] -= n;
  auto& queue = free_queue_[static_cast<std::size_t>(rank)];
  if (key == nullptr) {
    if (!queue.empty() && !queue.back().prefix) queue.back().blocks += n;
    else queue.push_back(FreeRun{n, false, {}});
    return;
  }
  queue.push_back(FreeRun{n, true, *key});
  prefixes_[*key].run = std::prev(queue.end());
}

void ContinuousBatchScheduler::use_prefix(const PrefixKey& key, PrefixEntry& entry) {
  if (entry.users == 0) {
    // Freed but not yet reused: its blocks leave the free queue (they are not a fresh
    // allocation, so nothing is evicted for them).
    free_queue_[static_cast<std::size_t>(key.first)].erase(entry.run);
    blocks_used_[static_cast<std::size_t>(key.first)] += entry.blocks;
  }
  entry.users += 1;
}

void ContinuousBatchScheduler::add(const Request& request) {
  Sequence s;
  s.request = request;
  s.prefill_target = request.prompt_tokens;
  waiting_.push_back(s);
}

void ContinuousBatchScheduler::add_prefilled(Sequence s) {
  s.blocks = 0;
  waiting_.push_back(s);
}

std::int64_t ContinuousBatchScheduler::kv_blocks_in_use() const {
  return std::accumulate(blocks_used_.begin(), blocks_used_.end(), std::int64_t{0});
}

int ContinuousBatchScheduler::pick_attention_rank() const {
  return static_cast<int>(std::min_element(seqs_on_rank_.begin(), seqs_on_rank_.end()) - seqs_on_rank_.begin());
}

std::int64_t ContinuousBatchScheduler::shareable_blocks(const Request& r) const {
  if (!params_.prefix_caching || r.prefix_id < 0) return 0;
  return std::min(r.prefix_tokens, r.prompt_tokens - 1) / params_.block_size;
}

void ContinuousBatchScheduler::release(Sequence& s) {
  // Tail first: the sequence's own blocks enter the free queue before its prefix's.
  free_blocks(s.attention_rank, s.blocks, nullptr);
  seqs_on_rank_[static_cast<std::size_t>(s.attention_rank)] -= 1;
  if (s.shared_blocks > 0) {
    const PrefixKey key{s.attention_rank, s.request.prefix_id};
    auto it = prefixes_.find(key);
    if (it != prefixes_.end() && --it->second.users == 0) free_blocks(s.attention_rank, it->second.blocks, &key);
  }
  s.blocks = 0;
  s.shared_blocks = 0;
}

void ContinuousBatchScheduler::preempt(std::size_t index, Batch& batch) {
  Sequence s = running_[index];
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  release(s);
  // Recompute mode: the prompt and every token generated so far are prefilled again.
  s.cached = 0;
  s.prefill_target = s.request.prompt_tokens + s.generated;
  waiting_.push_front(s);
  batch.preempted.push_back(s.request.id);
  stats_.preemptions += 1;
}

Batch ContinuousBatchScheduler::schedule() {
  Batch batch;
  int budget = params_.max_num_batched_tokens;
  for (std::size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& s = running_[i];
    const int n = s.in_prefill() ? std::min(s.prefill_target - s.cached, budget) : 1;
    const std::int64_t need = blocks_for(s.cached + n) - s.blocks - s.shared_blocks;
    const auto rank = static_cast<std::size_t>(s.attention_rank);
    bool self_preempted = false;
    while (need > params_.kv_capacity_blocks - blocks_used_[rank]) {
      // Preempt the most recently admitted running sequence of this rank not yet in the batch.
      std::size_t victim = running_.size();
      for (std::size_t j = running_.size(); j-- > i;)
        if (running_[j].attention_rank == s.attention_rank) {
          victim = j;
          break;
        }
      if (victim == i) {
        preempt(i, batch);
        self_preempted = true;
        break;
      }
      preempt(victim, batch);
    }
    if (self_preempted) continue;
    Sequence& t = running_[i];  // the vector may have shrunk behind i, not before it
    allocate(t.attention_rank, need);
    t.blocks += need;
    BatchItem item{t.request.id, t.attention_rank, n, t.request.domain, t.cached, t.in_prefill(), false};
    if (item.is_prefill) {
      item.emits_token = t.cached + n == t.prefill_target;
      batch.prefill_tokens += n;
    } else {
      item.emits_token = true;
      batch.decode_tokens += 1;
    }
    budget -= n;
    batch.items.push_back(item);
    ++i;
  }
  while (batch.preempted.empty() && budget > 0 && !waiting_.empty() &&
         static_cast<int>(running_.size()) < params_.max_num_seqs) {
    Sequence s = waiting_.front();
    const int rank = pick_attention_rank();
    // A cached prefix on this rank: start with its tokens in the cache, its blocks shared.
    std::int64_t hit = 0, revived = 0;
    const PrefixKey key{rank, s.request.prefix_id};
    auto entry = prefixes_.end();
    if (s.cached == 0 && s.in_prefill()) {
      const std::int64_t share = shareable_blocks(s.request);
      entry = prefixes_.find(key);
      if (share > 0 && entry != prefixes_.end()) {
        hit = std::min(share, entry->second.blocks);
        if (entry->second.users == 0) revived = entry->second.blocks;  // leaves the free queue on a hit
      }
    }
    const std::int64_t free = params_.kv_capacity_blocks - blocks_used_[static_cast<std::size_t>(rank)];
    auto first_chunk = [&](std::int64_t hit_blocks) {
      const int cached = s.cached + static_cast<int>(hit_blocks * params_.block_size);
      return cached < s.prefill_target ? std::min(s.prefill_target - cached, budget) : 1;
    };
    // Reviving a freed prefix takes all its blocks back: when they and this chunk do not fit, the
    // request starts without the prefix (its allocation may then reuse those very blocks).
    if (revived > 0 && blocks_for(s.cached + hit * params_.block_size + first_chunk(hit)) - hit + revived > free) hit = revived = 0;
    s.cached += static_cast<int>(hit * params_.block_size);
    const bool prefill = s.in_prefill();
    const int n = first_chunk(0);
    if (prefill && !params_.chunked_prefill && s.prefill_target - s.cached > budget) break;
    const std::int64_t need = blocks_for(s.cached + n) - hit;
    if (need + revived > free) break;
    waiting_.pop_front();
    s.attention_rank = rank;
    s.blocks = need;
    if (hit > 0) {
      s.shared_blocks = hit;
      use_prefix(key, entry->second);
      const int hit_tokens = static_cast<int>(hit * params_.block_size);
      stats_.prefix_hit_tokens += std::max(0, hit_tokens - s.prompt_covered);
      s.prompt_covered = std::max(s.prompt_covered, hit_tokens);
    }
    allocate(rank, need);
    seqs_on_rank_[static_cast<std::size_t>(rank)] += 1;
    BatchItem item{s.request.id, rank, n, s.request.domain, s.cached, prefill, prefill ? s.cached + n == s.prefill_target : true};
    (prefill ? batch.prefill_tokens : batch.decode_tokens) += n;
    budget -= n;
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
    const bool recompute = item.is_prefill && s.prefill_target > s.request.prompt_tokens;
    if (item.is_prefill) {
      // Positions [cached, cached + n): those past the high-water mark and inside the prompt are
      // computed for the first time; the rest were computed before a preemption.
      const int end = std::min(s.cached + item.num_tokens, s.request.prompt_tokens);
      const int first_time = std::max(0, end - std::max(s.cached, s.prompt_covered));
      stats_.recomputed_tokens += item.num_tokens - first_time;
      s.prompt_covered = std::max(s.prompt_covered, end);
    }
    s.cached += item.num_tokens;
    // The first sequence past its shareable prefix hands those blocks to the prefix cache (a
    // sequence that computed the prefix while another registered it keeps its own copy).
    if (s.shared_blocks == 0) {
      const std::int64_t share = shareable_blocks(s.request);
      const PrefixKey key{s.attention_rank, s.request.prefix_id};
      if (share > 0 && s.cached >= share * params_.block_size && !prefixes_.contains(key)) {
        prefixes_[key] = PrefixEntry{share, 1, {}};
        s.blocks -= share;
        s.shared_blocks = share;
      }
    }
    if (item.emits_token) {
      if (recompute) stats_.recompute_emissions += 1;
      s.generated += 1;
      out.emitted.push_back(s.request.id);
      if (s.generated >= s.request.output_tokens) out.finished.push_back(s.request.id);
    }
  }
  if (prefill_only_) {
    // The first token ends a sequence's stay here: it moves on with its KV cache.
    for (const Sequence& s : running_)
      if (!s.in_prefill() && s.generated >= 1 && s.generated < s.request.output_tokens) out.handed_off.push_back(s);
  }
  if (!out.finished.empty() || !out.handed_off.empty()) {
    auto done = [&](Sequence& s) {
      const bool leaves = prefill_only_ && !s.in_prefill() && s.generated >= 1;
      if (s.generated < s.request.output_tokens && !leaves) return false;
      release(s);
      return true;
    };
    running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
  }
  return out;
}

}  // namespace moesim
