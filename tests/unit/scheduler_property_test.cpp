// Property test of the continuous-batching scheduler over random valid configurations: whatever
// the budget, KV capacity, chunking, prefix sharing and attention ranks, every request finishes
// with all its output tokens and the token accounting closes (prefilled = prompt + recomputed -
// prefix hits; decoded = output - 1 - recompute emissions), and the KV cache never overflows.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include "models/common/rng.hpp"
#include "models/serving/scheduler.hpp"

namespace moesim {
namespace {

struct Outcome {
  bool all_finished = true;
  std::int64_t prefill = 0, decode = 0, prompt = 0, decode_expected = 0;
};

struct CampaignTotals {
  std::int64_t preemptions = 0, mid_prefill_preemptions = 0, prefix_hit_tokens = 0;
};

/// Chained block hashes as a trace records them: a trie of prompts with two children a node, so
/// that requests often share a leading run; hash k names the path to block k.
class HashTrie {
 public:
  std::shared_ptr<const std::vector<std::int64_t>> path(RngStream& rng, int blocks) {
    auto out = std::make_shared<std::vector<std::int64_t>>();
    std::int64_t parent = -1;
    for (int k = 0; k < blocks; ++k) {
      const auto child = std::make_pair(parent, static_cast<int>(rng.uniform_index(k == 0 ? 2 : 3)));
      auto [it, fresh] = ids_.try_emplace(child, static_cast<std::int64_t>(ids_.size()));
      out->push_back(it->second);
      parent = it->second;
    }
    return out;
  }

 private:
  std::map<std::pair<std::int64_t, int>, std::int64_t> ids_;
};

CampaignTotals run_campaign(const char* stream, bool chained_hashes, int trials) {
  RngStream rng(2026, stream);
  CampaignTotals totals;
  std::int64_t& total_preemptions = totals.preemptions;
  std::int64_t& mid_prefill_preemptions = totals.mid_prefill_preemptions;
  for (int trial = 0; trial < trials; ++trial) {
    SchedulerParams p;
    const int block_sizes[] = {1, 4, 16};
    p.block_size = block_sizes[rng.uniform_index(3)];
    p.max_model_len = 16 + static_cast<int>(rng.uniform_index(400));
    p.chunked_prefill = rng.uniform_index(4) != 0;
    p.max_num_batched_tokens = 8 + static_cast<int>(rng.uniform_index(512));
    if (!p.chunked_prefill) p.max_num_batched_tokens = std::max(p.max_num_batched_tokens, p.max_model_len);
    p.max_num_seqs = 1 + static_cast<int>(rng.uniform_index(48));
    p.attention_ranks = 1 + static_cast<int>(rng.uniform_index(3));
    p.prefix_caching = chained_hashes || rng.uniform_index(2) == 0;
    const int hash_sizes[] = {4, 16, 24, 64};
    const int hash_block_tokens = hash_sizes[rng.uniform_index(4)];
    HashTrie trie;
    // At least one whole max_model_len sequence fits a rank (the scenario validation's rule),
    // often not much more, so that preemption is frequent.
    const std::int64_t one_seq = (p.max_model_len + p.block_size - 1) / p.block_size;
    p.kv_capacity_blocks = one_seq + static_cast<std::int64_t>(rng.uniform_index(static_cast<std::uint64_t>(3 * one_seq)));
    ContinuousBatchScheduler s(p);
    const int n = 1 + static_cast<int>(rng.uniform_index(40));
    std::vector<Request> reqs;
    for (int i = 0; i < n; ++i) {
      Request r;
      r.id = i;
      r.output_tokens = 1 + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(p.max_model_len / 2)));
      r.prompt_tokens = 1 + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(p.max_model_len - r.output_tokens)));
      if (chained_hashes) {
        r.hash_block_tokens = hash_block_tokens;
        r.block_hashes = trie.path(rng, (r.prompt_tokens + hash_block_tokens - 1) / hash_block_tokens);
      } else if (p.prefix_caching && rng.uniform_index(2) == 0) {
        r.prefix_id = static_cast<std::int64_t>(rng.uniform_index(3));
        r.prefix_tokens = std::min(r.prompt_tokens, 8 + static_cast<int>(rng.uniform_index(64)));
      }
      reqs.push_back(r);
    }
    std::map<std::int64_t, int> emitted;
    std::map<std::int64_t, bool> in_prefill_when_preempted;
    Outcome o;
    for (const auto& r : reqs) {
      o.prompt += r.prompt_tokens;
      o.decode_expected += r.output_tokens - 1;
    }
    std::size_t next = 0;
    int finished = 0;
    for (int step = 0; step < 200000 && finished < n; ++step) {
      // Arrivals spread over the first steps.
      while (next < reqs.size() && rng.uniform_index(3) != 0) s.add(reqs[next++]);
      if (next < reqs.size() && s.idle()) s.add(reqs[next++]);
      const Batch b = s.schedule();
      for (int rank = 0; rank < p.attention_ranks; ++rank) EXPECT_LE(s.kv_blocks_in_use(rank), p.kv_capacity_blocks) << trial;
      if (testing::Test::HasFailure()) return totals;
      if (b.empty()) {
        EXPECT_TRUE(s.idle() || next < reqs.size()) << "trial " << trial << ": nothing scheduled with work waiting";
        if (testing::Test::HasFailure()) return totals;
        continue;
      }
      EXPECT_LE(b.total_tokens(), p.max_num_batched_tokens);
      for (auto id : b.preempted) in_prefill_when_preempted[id] = emitted[id] == 0;
      o.prefill += b.prefill_tokens;
      o.decode += b.decode_tokens;
      const std::string after_schedule = s.audit();
      EXPECT_EQ(after_schedule, "") << "trial " << trial << " step " << step << ", after schedule()";
      const StepOutcome out = s.complete(b);
      const std::string after_complete = s.audit();
      EXPECT_EQ(after_complete, "") << "trial " << trial << " step " << step << ", after complete()";
      if (testing::Test::HasFailure()) return totals;
      for (auto id : out.emitted) emitted[id] += 1;
      finished += static_cast<int>(out.finished.size());
    }
    EXPECT_EQ(finished, n) << "trial " << trial << ": requests left unfinished";
    if (finished != n) return totals;
    for (const auto& r : reqs) EXPECT_EQ(emitted[r.id], r.output_tokens) << "trial " << trial << " request " << r.id;
    const SchedulerStats& st = s.stats();
    EXPECT_EQ(o.prefill, o.prompt + st.recomputed_tokens - st.prefix_hit_tokens) << "trial " << trial;
    EXPECT_EQ(o.decode, o.decode_expected - st.recompute_emissions) << "trial " << trial;
    // Every block is free at the end (a prefix entry's users all left), cached or not.
    for (int rank = 0; rank < p.attention_ranks; ++rank) EXPECT_EQ(s.kv_blocks_in_use(rank), 0) << trial;
    if (testing::Test::HasFailure()) return totals;
    total_preemptions += st.preemptions;
    totals.prefix_hit_tokens += st.prefix_hit_tokens;
    for (const auto& [id, mid] : in_prefill_when_preempted) mid_prefill_preemptions += mid;
  }
  return totals;
}

TEST(SchedulerProperty, every_request_finishes_and_tokens_are_conserved_under_random_kv_pressure) {
  const CampaignTotals t = run_campaign("test/scheduler_property", false, 3000);
  // The campaign must exercise what it is about: preemptions, some of them in the middle of a prefill.
  EXPECT_GT(t.preemptions, 1000);
  EXPECT_GT(t.mid_prefill_preemptions, 100);
}

TEST(SchedulerProperty, tokens_are_conserved_and_the_cache_drains_with_chained_trace_prefixes) {
  // Trace block hashes of 4 to 64 tokens against engine blocks of 1 to 16: segments of several
  // blocks, of one, and hashes that complete no block of their own.
  const CampaignTotals t = run_campaign("test/scheduler_property_chains", true, 800);
  EXPECT_GT(t.preemptions, 1000);
  EXPECT_GT(t.prefix_hit_tokens, 100000) << t.prefix_hit_tokens;
}

}  // namespace
}  // namespace moesim
