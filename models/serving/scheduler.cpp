#include "models/serving/scheduler.hpp"

#include <algorithm>
#include <iterator>
#include <numeric>
#include <stdexcept>

namespace moesim {

PrefixChain::PrefixChain(const Request& r, int block_size) : r_(r), block_size_(block_size) {
  hit_limit_ = std::max(0, r.prompt_tokens - 1) / block_size;
  limit_ = hit_limit_;
  if (r.block_hashes && r.hash_block_tokens > 0) {
    const std::int64_t t = r.hash_block_tokens;
    // Output blocks named by hashes are registered only where no hash spans two engine blocks,
    // so that the hit limit never cuts a segment.
    if (r.cacheable_tokens > r.prompt_tokens && t <= block_size) {
      const std::int64_t computed = static_cast<std::int64_t>(r.prompt_tokens) + r.output_tokens - 1;
      limit_ = std::max(limit_, std::min<std::int64_t>(r.cacheable_tokens, computed) / block_size);
    }
    // The first hash whose block reaches a limit is the last with a block of its own.
    const auto size = static_cast<std::int64_t>(r.block_hashes->size());
    auto segments = [&](std::int64_t limit) {
      return static_cast<int>(limit == 0 ? 0 : std::min<std::int64_t>(size, (limit * block_size + t - 1) / t));
    };
    count_ = segments(limit_);
    hit_count_ = segments(hit_limit_);
  } else if (limit_ > 0 && r.prefix_id >= 0 && r.prefix_tokens >= block_size) {
    count_ = hit_count_ = 1;
  }
}

std::int64_t PrefixChain::key(int k) const {
  return r_.block_hashes && r_.hash_block_tokens > 0 ? (*r_.block_hashes)[static_cast<std::size_t>(k)] : r_.prefix_id;
}

std::int64_t PrefixChain::end_block(int k) const {
  const std::int64_t tokens = r_.block_hashes && r_.hash_block_tokens > 0
                                  ? (static_cast<std::int64_t>(k) + 1) * r_.hash_block_tokens
                                  : static_cast<std::int64_t>(r_.prefix_tokens);
  return std::min(tokens / block_size_, limit_);
}

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

void ContinuousBatchScheduler::use_prefix(int rank, PrefixEntry& entry, std::int64_t take) {
  if (entry.users == 0) {
    // Freed but not yet reused: the blocks it hits leave the free queue (they are not a fresh
    // allocation, so nothing is evicted for them); blocks past the hit stay free, no longer cached,
    // so that a sequence never holds more blocks than its own positions.
    if (take < entry.blocks) {
      entry.run->blocks -= take;
      entry.run->prefix = false;
      entry.blocks = take;
    } else {
      free_queue_[static_cast<std::size_t>(rank)].erase(entry.run);
    }
    blocks_used_[static_cast<std::size_t>(rank)] += entry.blocks;
  }
  if (take < entry.blocks) entry.short_uses.push_back(take);
  entry.users += 1;
}

void ContinuousBatchScheduler::leave_entry(const PrefixKey& key, PrefixEntry& entry, std::int64_t uses) {
  entry.users -= 1;
  if (uses < entry.blocks) {
    entry.short_uses.erase(std::find(entry.short_uses.begin(), entry.short_uses.end(), uses));
    return;
  }
  if (entry.users == 0) {
    free_blocks(key.first, entry.blocks, &key);
    return;
  }
  if (static_cast<int>(entry.short_uses.size()) < entry.users) return;  // another uses all of it
  // Only shorter users remain: the blocks past the longest of them go free, uncached.
  const std::int64_t longest = *std::max_element(entry.short_uses.begin(), entry.short_uses.end());
  free_blocks(key.first, entry.blocks - longest, nullptr);
  entry.blocks = longest;
  std::erase(entry.short_uses, longest);
}

void ContinuousBatchScheduler::register_segments(Sequence& s) {
  if (!params_.prefix_caching || s.prefix_closed) return;
  const PrefixChain chain(s.request, params_.block_size);
  if (s.segments_joined >= chain.size()) return;
  // The end and key of the last segment with blocks before the first one not yet joined.
  std::int64_t prev_end = 0, parent = -1;
  for (int k = s.segments_joined; k-- > 0;)
    if (chain.end_block(k) > (k == 0 ? 0 : chain.end_block(k - 1))) {
      prev_end = chain.end_block(k);
      parent = chain.key(k);
      break;
    }
  for (int k = s.segments_joined; k < chain.size(); ++k) {
    const std::int64_t end = chain.end_block(k);
    if (end == prev_end) {  // no block of its own
      s.segments_joined = k + 1;
      continue;
    }
    if (s.cached < end * params_.block_size) return;  // not computed yet
    const PrefixKey key{s.attention_rank, chain.key(k)};
    const std::int64_t blocks = end - prev_end;
    const bool last = end == chain.blocks();
    auto it = prefixes_.find(key);
    if (it != prefixes_.end() && it->second.users == 0 && it->second.parent == parent && !last) {
      // A freed copy nobody uses: this sequence's fresh copy takes its place in the cache.
      it->second.run->prefix = false;
      prefixes_.erase(it);
      it = prefixes_.end();
    }
    if (it == prefixes_.end()) {
      prefixes_[key] = PrefixEntry{blocks, 1, parent, {}, {}};
      s.blocks -= blocks;
      s.shared_blocks += blocks;
    } else if (!last && it->second.users > 0 && it->second.parent == parent && it->second.blocks >= blocks) {
      // Registered by another meanwhile: join it and free this copy, so that the chain goes on
      // and no sequence holds more blocks than its own positions.
      it->second.users += 1;
      if (blocks < it->second.blocks) it->second.short_uses.push_back(blocks);
      s.blocks -= blocks;
      s.shared_blocks += blocks;
      free_blocks(s.attention_rank, blocks, nullptr);
    } else {
      // The last segment waits for the entry to go (it may be evicted while this sequence runs);
      // a mismatched or partly evicted entry ends the chain.
      if (!last) s.prefix_closed = true;
      return;
    }
    s.segments_joined = k + 1;
    prev_end = end;
    parent = key.second;
  }
}

void ContinuousBatchScheduler::leave_prefix(Sequence& s) {
  if (s.segments_joined == 0) return;
  const PrefixChain chain(s.request, params_.block_size);
  for (int k = std::min(s.segments_joined, chain.size()); k-- > 0;) {
    if (chain.end_block(k) == (k == 0 ? 0 : chain.end_block(k - 1))) continue;
    const PrefixKey key{s.attention_rank, chain.key(k)};
    auto it = prefixes_.find(key);
    if (it == prefixes_.end()) continue;
    const std::int64_t want = chain.end_block(k) - (k == 0 ? 0 : chain.end_block(k - 1));
    leave_entry(key, it->second, std::min(want, it->second.blocks));
  }
}

void ContinuousBatchScheduler::add(const Request& request) {
  Sequence s;
  s.request = request;
  s.prefill_target = request.prompt_tokens;
  waiting_.push_back(s);
}

void ContinuousBatchScheduler::add_prefilled(Sequence s) {
  // Its KV cache arrives whole: this engine holds every block itself, none from a prefix cache.
  s.blocks = 0;
  s.shared_blocks = 0;
  s.segments_joined = 0;
  s.prefix_closed = true;
  waiting_.push_back(s);
}

std::string ContinuousBatchScheduler::audit() const {
  const std::size_t ranks = blocks_used_.size();
  std::vector<std::int64_t> held(ranks, 0), queued(ranks, 0);
  std::map<PrefixKey, std::vector<std::int64_t>> uses;  // per entry, what each joined sequence wants of it
  for (const Sequence& s : running_) {
    held[static_cast<std::size_t>(s.attention_rank)] += s.blocks;
    const PrefixChain chain(s.request, params_.block_size);
    for (int k = 0; k < std::min(s.segments_joined, chain.size()); ++k) {
      const std::int64_t want = chain.end_block(k) - (k == 0 ? 0 : chain.end_block(k - 1));
      if (want > 0) uses[PrefixKey{s.attention_rank, chain.key(k)}].push_back(want);
    }
  }
  for (const auto& [key, entry] : prefixes_) {
    const std::string name = "prefix entry (" + std::to_string(key.first) + ", " + std::to_string(key.second) + ")";
    const auto it = uses.find(key);
    std::vector<std::int64_t> wants = it == uses.end() ? std::vector<std::int64_t>{} : it->second;
    if (entry.users != static_cast<int>(wants.size()))
      return name + " has " + std::to_string(entry.users) + " users, " + std::to_string(wants.size()) + " running sequences joined it";
    if (entry.users == 0) continue;
    std::vector<std::int64_t> shorter;
    for (std::int64_t w : wants)
      if (w < entry.blocks) shorter.push_back(w);
    std::vector<std::int64_t> recorded = entry.short_uses;
    std::sort(shorter.begin(), shorter.end());
    std::sort(recorded.begin(), recorded.end());
    if (shorter != recorded) return name + ": its shorter uses do not match the sequences that joined it";
    if (shorter.size() == wants.size()) return name + ": holds " + std::to_string(entry.blocks) + " blocks no user needs";
    held[static_cast<std::size_t>(key.first)] += entry.blocks;
  }
  for (std::size_t r = 0; r < ranks; ++r) {
    for (const FreeRun& run : free_queue_[r]) queued[r] += run.blocks;
    if (held[r] != blocks_used_[r])
      return "rank " + std::to_string(r) + ": " + std::to_string(blocks_used_[r]) + " blocks in use, sequences and entries hold " +
             std::to_string(held[r]);
    if (params_.kv_capacity_blocks > 0 && queued[r] != params_.kv_capacity_blocks - blocks_used_[r])
      return "rank " + std::to_string(r) + ": the free queue holds " + std::to_string(queued[r]) + " blocks, " +
             std::to_string(params_.kv_capacity_blocks - blocks_used_[r]) + " are free";
  }
  return {};
}

std::int64_t ContinuousBatchScheduler::kv_blocks_in_use() const {
  return std::accumulate(blocks_used_.begin(), blocks_used_.end(), std::int64_t{0});
}

int ContinuousBatchScheduler::pick_attention_rank() const {
  return static_cast<int>(std::min_element(seqs_on_rank_.begin(), seqs_on_rank_.end()) - seqs_on_rank_.begin());
}

void ContinuousBatchScheduler::release(Sequence& s) {
  // Tail first: the sequence's own blocks enter the free queue before its prefix's.
  free_blocks(s.attention_rank, s.blocks, nullptr);
  seqs_on_rank_[static_cast<std::size_t>(s.attention_rank)] -= 1;
  leave_prefix(s);
  s.blocks = 0;
  s.shared_blocks = 0;
  s.segments_joined = 0;
  s.prefix_closed = false;
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
    // Cached leading segments on this rank: start with their tokens in the cache, their blocks shared.
    std::int64_t hit = 0, revived = 0;
    int joined = 0;
    bool closed = false;
    hit_entries_.clear();
    if (params_.prefix_caching && s.cached == 0 && s.in_prefill()) {
      const PrefixChain chain(s.request, params_.block_size);
      std::int64_t prev_end = 0, parent = -1;
      for (int k = 0; k < chain.hit_size(); ++k) {
        const std::int64_t end = chain.end_block(k);
        if (end == prev_end) continue;
        auto it = prefixes_.find(PrefixKey{rank, chain.key(k)});
        if (it == prefixes_.end() || it->second.parent != parent) break;
        const std::int64_t want = end - prev_end, take = std::min(want, it->second.blocks);
        hit += take;
        joined = k + 1;
        if (it->second.users == 0) revived += take;  // leaves the free queue on a hit
        hit_entries_.emplace_back(&it->second, take);
        if (take < want) {  // partly evicted: its leading blocks serve, the rest is computed
          closed = true;
          break;
        }
        prev_end = end;
        parent = chain.key(k);
      }
    }
    const std::int64_t free = params_.kv_capacity_blocks - blocks_used_[static_cast<std::size_t>(rank)];
    auto first_chunk = [&](std::int64_t hit_blocks) {
      const int cached = s.cached + static_cast<int>(hit_blocks * params_.block_size);
      return cached < s.prefill_target ? std::min(s.prefill_target - cached, budget) : 1;
    };
    // Reviving a freed prefix takes the blocks it hits back: when they and this chunk do not fit, the
    // request starts without the prefix (its allocation may then reuse those very blocks).
    if (revived > 0 && blocks_for(s.cached + hit * params_.block_size + first_chunk(hit)) - hit + revived > free) {
      hit = revived = 0;
      joined = 0;
      closed = false;
      hit_entries_.clear();
    }
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
      s.segments_joined = joined;
      s.prefix_closed = closed;
      for (auto [e, take] : hit_entries_) use_prefix(rank, *e, take);
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
    // The first sequence past a prefix segment hands its blocks to the prefix cache.
    register_segments(s);
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
