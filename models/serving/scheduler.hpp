#pragma once
// Continuous batching in the manner of vLLM's V1 scheduler, with a paged KV cache.
//
// Every step has a budget of max_num_batched_tokens. Running sequences are served first, in
// order: a decoding sequence takes 1 token, a sequence in prefill takes min(remaining, budget)
// tokens (chunked prefill). Each sequence holds ceil(cached tokens / block_size) KV blocks of its
// attention rank, allocated when a step is scheduled. When a running sequence needs a block and
// none is free, the most recently admitted running sequence of that rank is preempted (vLLM's
// recompute mode): its blocks are freed and it goes back to the front of the waiting queue, to
// prefill its prompt and the tokens it already generated again. Waiting sequences are admitted
// in order, only in steps that preempted nothing, while the budget lasts, fewer than
// max_num_seqs run and their first chunk's blocks are free. Without chunked prefill a prompt is
// admitted only if it fits the remaining budget whole.
//
// A sequence emits an output token at the end of the step that completes its (re)prefill, then
// one token per decode step; it finishes when it has emitted output_tokens tokens.
//
// With attention_ranks > 1 (data-parallel attention inside an expert-parallel group) each admitted
// sequence is pinned to the rank with the fewest running sequences (lowest rank on ties): its
// attention and KV blocks live there.
//
// With prefix caching, a request's shareable prefix is a chain of segments, each a run of full KV
// blocks named by a key: a dataset line's prefix_id is one segment of prefix_tokens tokens; a
// trace's chained block hashes (Mooncake: 512 tokens a hash, Bailian: 16) are one segment per
// hash, engine block b belonging to the hash of trace block floor(((b + 1) * block_size - 1) /
// hash_block_tokens), the one that completes it (when the engine's blocks are larger than the
// trace's, some hashes complete no block and are skipped). A request shares the leading segments
// cached on its rank whose keys and parents match (vLLM's block hash also chains the parent's),
// leaving at least one prompt token to compute. Segments are registered as prefill completes
// them: the first sequence past a segment hands its blocks to the cache; a sequence that computed
// a segment another registered meanwhile keeps its own copy when it is the last, and otherwise
// frees its copy and joins that entry, so that it can register the segments that follow (vLLM
// caches each full block as it is computed). A turn of a conversation whose next turn resends
// its prompt and answer also registers the full blocks its decode completes, under the next
// turn's hashes (vLLM caches generated blocks too), so the next turn hits its parent's whole
// context while it is cached. A hit on a freed entry takes only the blocks it
// uses out of the free queue, and when the last user of an entry's tail leaves while shorter
// users remain, the tail goes free; those blocks leave the cache, so that the running sequences
// never hold more blocks than their own positions (a lone sequence always fits).
// As in vLLM's block pool (vllm/v1/core/block_pool.py, kv_cache_utils.FreeKVCacheBlockQueue), a
// freed block keeps its contents: each rank's free blocks form a queue in the order they were
// freed (a sequence's own blocks before its prefix's, its last segment first, since vLLM frees a
// request's blocks tail first), allocation takes blocks from the front, and a segment whose last
// user left stays in the cache, free but hittable, until allocation reaches its blocks (its last
// blocks go first, so a partly reused segment still serves its leading blocks). A hit on such a
// segment takes its blocks out of the queue again.
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "models/workload/request.hpp"

namespace moesim {

struct SchedulerParams {
  int max_num_batched_tokens = 8192;
  int max_num_seqs = 256;
  int max_model_len = 4096;
  bool chunked_prefill = true;
  int block_size = 16;                  ///< tokens per KV block
  std::int64_t kv_capacity_blocks = 0;  ///< per attention rank
  int attention_ranks = 1;
  bool prefix_caching = false;          ///< share full KV blocks of identical prompt prefixes
};

/// The prefix segments a request may share on an engine with `block_size`-token blocks: segment
/// k ends at block end_block(k) (non-decreasing in k; a segment with no block of its own is empty)
/// and is named by key(k). The first hit_size() segments lie inside the prompt (at least one
/// prompt token left to compute) and may be hit; all size() of them are registered as computed:
/// past the prompt when the request's hashes name its output blocks (Request::cacheable_tokens,
/// hashes of at most one engine block each).
class PrefixChain {
 public:
  PrefixChain(const Request& r, int block_size);
  [[nodiscard]] int size() const { return count_; }
  [[nodiscard]] int hit_size() const { return hit_count_; }
  [[nodiscard]] std::int64_t key(int k) const;
  [[nodiscard]] std::int64_t end_block(int k) const;
  /// Blocks the whole registered chain covers.
  [[nodiscard]] std::int64_t blocks() const { return count_ == 0 ? 0 : end_block(count_ - 1); }

 private:
  const Request& r_;
  int block_size_;
  std::int64_t hit_limit_ = 0;  ///< full blocks of the prompt's first prompt_tokens - 1 tokens
  std::int64_t limit_ = 0;      ///< full blocks registered: hit_limit_, or up to cacheable_tokens
  int count_ = 0;
  int hit_count_ = 0;
};

struct Sequence {
  Request request;
  int cached = 0;          ///< tokens whose KV is in the cache
  int prefill_target = 0;  ///< prompt (+ tokens generated before a preemption)
  int generated = 0;       ///< output tokens emitted
  int attention_rank = 0;
  std::int64_t blocks = 0;         ///< blocks this sequence owns
  std::int64_t shared_blocks = 0;  ///< prefix blocks it uses from the prefix cache
  /// Prefix segments [0, segments_joined) are entries this sequence uses (their blocks shared, or
  /// its own copy of a segment another registered first); it may register the next one when its
  /// prefill completes it, unless `prefix_closed`.
  int segments_joined = 0;
  bool prefix_closed = false;
  /// Prompt positions [0, prompt_covered) were computed or served from the prefix cache at least
  /// once. Prefill goes in position order from 0, so this high-water mark is all the history the
  /// recompute accounting needs: a prefilled position below it, or past the prompt, is a
  /// recomputation; a prefix hit below it is not a new hit.
  int prompt_covered = 0;

  [[nodiscard]] bool in_prefill() const { return cached < prefill_target; }
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
  std::vector<std::int64_t> preempted;  ///< request ids preempted while forming this batch

  [[nodiscard]] int total_tokens() const { return prefill_tokens + decode_tokens; }
  [[nodiscard]] bool empty() const { return items.empty(); }
};

struct StepOutcome {
  std::vector<std::int64_t> emitted;   ///< request ids that got an output token
  std::vector<std::int64_t> finished;  ///< request ids that completed
  std::vector<Sequence> handed_off;    ///< prefill-only: sequences whose prefill completed, to move on
};

/// Running totals the run reports and checks.
struct SchedulerStats {
  std::int64_t preemptions = 0;
  /// Prefill tokens spent on positions a preempted sequence had computed (or been served) before,
  /// or had generated: prefilled = prompt + recomputed - prefix hits, preempted mid-prefill or not.
  std::int64_t recomputed_tokens = 0;
  std::int64_t recompute_emissions = 0;   ///< output tokens emitted by a re-prefill instead of a decode
  std::int64_t prefix_hit_tokens = 0;     ///< prompt positions first covered by the prefix cache (not computed)
};

class ContinuousBatchScheduler {
 public:
  explicit ContinuousBatchScheduler(SchedulerParams params);

  void add(const Request& request);
  /// A sequence that arrives with its KV cache already computed elsewhere (disaggregated decode).
  void add_prefilled(Sequence s);
  /// Prefill-only instance: a sequence leaves (blocks freed) once its prefill emits its first token.
  void set_prefill_only(bool on) { prefill_only_ = on; }
  /// Forms the next step's batch (allocating its KV blocks, preempting if needed); empty when
  /// nothing can run.
  [[nodiscard]] Batch schedule();
  /// Applies a computed batch: advances prefill, emits tokens, retires finished sequences.
  StepOutcome complete(const Batch& batch);

  [[nodiscard]] bool idle() const { return running_.empty() && waiting_.empty(); }
  [[nodiscard]] std::size_t num_running() const { return running_.size(); }
  [[nodiscard]] std::size_t num_waiting() const { return waiting_.size(); }
  [[nodiscard]] std::int64_t kv_blocks_in_use(int rank) const { return blocks_used_[static_cast<std::size_t>(rank)]; }
  /// Free blocks of `rank` that still hold a prefix nobody uses (hittable until reused).
  [[nodiscard]] std::int64_t kv_blocks_cached_free(int rank) const;
  [[nodiscard]] std::int64_t kv_blocks_in_use() const;
  [[nodiscard]] std::int64_t kv_tokens_in_use(int rank) const { return kv_blocks_in_use(rank) * params_.block_size; }
  [[nodiscard]] const SchedulerParams& params() const { return params_; }
  /// Checks the block accounting: per rank, blocks in use = the running sequences' own blocks +
  /// the blocks of prefix entries in use, the free queue holds the rest, and each entry's users
  /// are the running sequences that joined it. Returns what is wrong, empty when all holds.
  [[nodiscard]] std::string audit() const;
  [[nodiscard]] const SchedulerStats& stats() const { return stats_; }

 private:
  [[nodiscard]] int pick_attention_rank() const;
  [[nodiscard]] std::int64_t blocks_for(std::int64_t tokens) const {
    return (tokens + params_.block_size - 1) / params_.block_size;
  }
  void preempt(std::size_t index, Batch& batch);
  void release(Sequence& s);
  /// Registers the prefix segments `s`'s prefill has completed since the last call.
  void register_segments(Sequence& s);
  /// The sequence leaves its prefix entries, last segment first (freed entries go to the queue).
  void leave_prefix(Sequence& s);

  using PrefixKey = std::pair<int, std::int64_t>;  ///< (rank, segment key)
  /// A run of free blocks in a rank's free queue: a freed prefix's blocks (`prefix`), or blocks
  /// holding nothing anyone can hit (`prefix` false).
  struct FreeRun {
    std::int64_t blocks = 0;
    bool prefix = false;
    PrefixKey key{};
  };
  struct PrefixEntry {
    std::int64_t blocks = 0;
    int users = 0;
    std::int64_t parent = -1;  ///< key of the segment before it (-1: the first)
    /// Blocks used by users that use fewer than `blocks` (a shorter prompt, or a hit on a partly
    /// evicted copy): when the last user of all of them leaves, the blocks past the longest
    /// remaining use go free, uncached.
    std::vector<std::int64_t> short_uses;
    std::list<FreeRun>::iterator run{};  ///< its run in the free queue while users == 0
  };
  /// Takes `n` free blocks of `rank` from the front of its free queue (evicting prefixes there).
  void allocate(int rank, std::int64_t n);
  /// Returns `n` blocks to the back of `rank`'s free queue (a prefix's run when `key` is given).
  void free_blocks(int rank, std::int64_t n, const PrefixKey* key);
  /// A hit on `take` leading blocks of `entry`: its users grow by one, and a freed entry's hit
  /// blocks leave the free queue (the rest stay free, uncached).
  void use_prefix(int rank, PrefixEntry& entry, std::int64_t take);
  /// A user of `uses` leading blocks of `entry` leaves it (the entry is freed with its last user).
  void leave_entry(const PrefixKey& key, PrefixEntry& entry, std::int64_t uses);

  std::map<PrefixKey, PrefixEntry> prefixes_;
  std::vector<std::pair<PrefixEntry*, std::int64_t>> hit_entries_;  ///< scratch: entries an admission hits, blocks hit
  std::vector<std::list<FreeRun>> free_queue_;  ///< per rank; its blocks sum to capacity - in use

  SchedulerParams params_;
  std::deque<Sequence> waiting_;
  std::vector<Sequence> running_;
  std::vector<std::int64_t> blocks_used_;
  std::vector<int> seqs_on_rank_;
  SchedulerStats stats_;
  bool prefill_only_ = false;
};

}  // namespace moesim
