// Property test of the continuous-batching scheduler over random valid configurations: whatever
// the budget, KV capacity, chunking, prefix sharing and attention ranks, every request finishes
// with all its output tokens and the token accounting closes (prefilled = prompt + recomputed -
// prefix hits; decoded = output - 1 - recompute emissions), and the KV cache never overflows.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "models/common/rng.hpp"
#include "models/serving/scheduler.hpp"

namespace moesim {
namespace {

struct Outcome {
  bool all_finished = true;
  std::int64_t prefill = 0, decode = 0, prompt = 0, decode_expected = 0;
};

TEST(SchedulerProperty, every_request_finishes_and_tokens_are_conserved_under_random_kv_pressure) {
  RngStream rng(2026, "test/scheduler_property");
  std::int64_t total_preemptions = 0, mid_prefill_preemptions = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    SchedulerParams p;
    const int block_sizes[] = {1, 4, 16};
    p.block_size = block_sizes[rng.uniform_index(3)];
    p.max_model_len = 16 + static_cast<int>(rng.uniform_index(400));
    p.chunked_prefill = rng.uniform_index(4) != 0;
    p.max_num_batched_tokens = 8 + static_cast<int>(rng.uniform_index(512));
    if (!p.chunked_prefill) p.max_num_batched_tokens = std::max(p.max_num_batched_tokens, p.max_model_len);
    p.max_num_seqs = 1 + static_cast<int>(rng.uniform_index(48));
    p.attention_ranks = 1 + static_cast<int>(rng.uniform_index(3));
    p.prefix_caching = rng.uniform_index(2) == 0;
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
      if (p.prefix_caching && rng.uniform_index(2) == 0) {
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
      for (int rank = 0; rank < p.attention_ranks; ++rank) ASSERT_LE(s.kv_blocks_in_use(rank), p.kv_capacity_blocks) << trial;
      if (b.empty()) {
        ASSERT_TRUE(s.idle() || next < reqs.size()) << "trial " << trial << ": nothing scheduled with work waiting";
        continue;
      }
      ASSERT_LE(b.total_tokens(), p.max_num_batched_tokens);
      for (auto id : b.preempted) in_prefill_when_preempted[id] = emitted[id] == 0;
      o.prefill += b.prefill_tokens;
      o.decode += b.decode_tokens;
      const StepOutcome out = s.complete(b);
      for (auto id : out.emitted) emitted[id] += 1;
      finished += static_cast<int>(out.finished.size());
    }
    ASSERT_EQ(finished, n) << "trial " << trial << ": requests left unfinished";
    for (const auto& r : reqs) ASSERT_EQ(emitted[r.id], r.output_tokens) << "trial " << trial << " request " << r.id;
    const SchedulerStats& st = s.stats();
    ASSERT_EQ(o.prefill, o.prompt + st.recomputed_tokens - st.prefix_hit_tokens) << "trial " << trial;
    ASSERT_EQ(o.decode, o.decode_expected - st.recompute_emissions) << "trial " << trial;
    for (int rank = 0; rank < p.attention_ranks; ++rank) ASSERT_EQ(s.kv_blocks_in_use(rank), 0) << trial;
    total_preemptions += st.preemptions;
    for (const auto& [id, mid] : in_prefill_when_preempted) mid_prefill_preemptions += mid;
  }
  // The campaign must exercise what it is about: preemptions, some of them in the middle of a prefill.
  EXPECT_GT(total_preemptions, 1000);
  EXPECT_GT(mid_prefill_preemptions, 100);
}

}  // namespace
}  // namespace moesim
