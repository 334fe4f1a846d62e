#include <gtest/gtest.h>

#include <memory>

#include <algorithm>
#include <cmath>
#include <set>

#include "models/common/rng.hpp"
#include "models/common/stats.hpp"
#include "models/network/collectives.hpp"
#include "models/routing/router.hpp"
#include "models/serving/scheduler.hpp"
#include "models/workload/request_generator.hpp"

namespace moesim {
namespace {

TEST(Rng, same_seed_and_path_give_the_same_stream) {
  RngStream a(7, "router/uniform"), b(7, "router/uniform");
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
}

TEST(Rng, different_paths_give_independent_streams) {
  RngStream a(7, "workload/arrival"), b(7, "workload/prompt_tokens");
  int equal = 0;
  for (int i = 0; i < 100; ++i) equal += a.next_u64() == b.next_u64();
  EXPECT_EQ(equal, 0);
}

TEST(Rng, uniform_index_is_in_range_and_unbiased) {
  RngStream r(1, "t");
  std::vector<int> counts(8, 0);
  const int n = 80000;
  for (int i = 0; i < n; ++i) counts[r.uniform_index(8)]++;
  for (int c : counts) EXPECT_NEAR(c, n / 8, 5 * std::sqrt(n / 8.0));
}

TEST(Rng, exponential_and_normal_have_their_moments) {
  RngStream r(3, "t");
  std::vector<double> e, z;
  for (int i = 0; i < 50000; ++i) {
    e.push_back(r.exponential(4.0));
    z.push_back(r.standard_normal());
  }
  EXPECT_NEAR(mean_of(e), 0.25, 0.01);
  EXPECT_NEAR(mean_of(z), 0.0, 0.02);
  EXPECT_NEAR(stddev_of(z), 1.0, 0.02);
}

TEST(Stats, percentiles_interpolate_like_numpy) {
  const std::vector<double> xs{4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile_of(xs, 99), 3.97);  // numpy.percentile([1,2,3,4], 99)
  EXPECT_DOUBLE_EQ(median_of(xs), 2.5);
  EXPECT_DOUBLE_EQ(stddev_of(xs), std::sqrt(1.25));  // population std
  EXPECT_DOUBLE_EQ(coefficient_of_variation(std::vector<double>{1, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(max_over_mean(std::vector<double>{0, 0, 4, 0}), 4.0);
}

TEST(Stats, percentiles_by_selection_equal_the_sorted_ones) {
  RngStream rng(3, "stats/selection");
  for (std::size_t n : {0u, 1u, 2u, 3u, 4u, 10u, 101u, 5000u}) {
    std::vector<double> xs(n);
    // Few distinct values (as inter-token latencies of one step), so ties are common.
    for (double& x : xs) x = static_cast<double>(rng.uniform_index(7)) + (rng.uniform01() < 0.3 ? rng.uniform01() : 0.0);
    for (const std::vector<double>& ps : {std::vector<double>{50, 90, 95, 99}, std::vector<double>{0, 0, 1, 100},
                                           std::vector<double>{25, 25.1, 50, 50, 75, 99.9}}) {
      std::vector<double> work = xs, out(ps.size());
      percentiles_in_place(work, ps, out);
      for (std::size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(out[i], percentile_of(xs, ps[i])) << n << " p" << ps[i];
    }
  }
}

TEST(Stats, streaming_sample_is_exact_below_its_limit_and_within_a_bin_beyond) {
  RngStream rng(7, "streaming");
  std::vector<double> xs;
  StreamingSample exact(1u << 20), binned(1000);
  for (int i = 0; i < 200000; ++i) {
    const double x = i % 1000 == 0 ? 0.0 : 0.005 + 0.03 * rng.uniform01() + (i % 97 == 0 ? 0.2 : 0.0);  // ITL-like, with zeros
    xs.push_back(x);
    exact.add(x);
    binned.add(x);
  }
  ASSERT_TRUE(exact.exact());
  ASSERT_FALSE(binned.exact());
  EXPECT_EQ(binned.count(), xs.size());
  EXPECT_TRUE(binned.values().empty());  // nothing kept per value past the limit
  for (double p : {0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 100.0}) {
    EXPECT_DOUBLE_EQ(exact.percentile(p), percentile_of(xs, p)) << p;
    EXPECT_NEAR(binned.percentile(p), percentile_of(xs, p), 1e-5 * percentile_of(xs, p) + 1e-12) << p;
  }
  EXPECT_DOUBLE_EQ(exact.mean(), mean_of(xs));
  EXPECT_NEAR(binned.mean(), mean_of(xs), 1e-12);
  EXPECT_NEAR(binned.stddev(), stddev_of(xs), 1e-9);
}

TEST(Workload, lognormal_lengths_have_the_requested_mean) {
  WorkloadParams p;
  p.requests = 20000;
  p.prompt_tokens = {"lognormal", 0, 512.0, 0.6, 1, 0};
  const auto reqs = generate_requests(p, 11, 1 << 20);
  std::vector<double> lens;
  for (const auto& r : reqs) lens.push_back(r.prompt_tokens);
  EXPECT_NEAR(mean_of(lens), 512.0, 10.0);
}

TEST(Workload, poisson_arrivals_have_the_requested_rate) {
  WorkloadParams p;
  p.requests = 20000;
  p.arrival = {"poisson", 8.0};
  const auto reqs = generate_requests(p, 5, 4096);
  EXPECT_NEAR(reqs.back().arrival_s, 20000 / 8.0, 0.03 * 20000 / 8.0);
  EXPECT_TRUE(std::is_sorted(reqs.begin(), reqs.end(), [](auto& a, auto& b) { return a.arrival_s < b.arrival_s; }));
}

TEST(Workload, every_request_fits_max_model_len) {
  WorkloadParams p;
  p.requests = 500;
  p.prompt_tokens = {"lognormal", 0, 3000.0, 1.0, 1, 0};
  p.output_tokens = {"fixed", 2000, 0, 0, 1, 0};
  for (const auto& r : generate_requests(p, 9, 4096)) {
    EXPECT_GE(r.prompt_tokens, 1);
    EXPECT_GE(r.output_tokens, 1);
    EXPECT_LE(r.prompt_tokens + r.output_tokens, 4096);
  }
}

TEST(Router, uniform_router_picks_distinct_experts_evenly) {
  RouterContext ctx;
  ctx.num_experts = 8;
  ctx.top_k = 2;
  ctx.seed = 42;
  auto router = token_routers().get("uniform")(ctx);
  std::vector<TokenInfo> tokens(20000);
  std::vector<std::int32_t> experts(tokens.size() * 2);
  router->route(0, tokens, experts, {});
  std::vector<double> load(8, 0.0);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    EXPECT_NE(experts[2 * t], experts[2 * t + 1]);
    load[experts[2 * t]] += 1;
    load[experts[2 * t + 1]] += 1;
  }
  EXPECT_LT(coefficient_of_variation(load), 0.03);
}

TEST(Router, dense_sampling_covers_all_experts) {
  RngStream r(1, "t");
  std::vector<std::int32_t> out(6);
  sample_distinct(r, 6, out);
  EXPECT_EQ(std::set<std::int32_t>(out.begin(), out.end()).size(), 6u);
}

// ---- scheduler ---------------------------------------------------------------------------------

SchedulerParams small_params() {
  SchedulerParams p;
  p.max_num_batched_tokens = 256;
  p.max_num_seqs = 4;
  p.max_model_len = 2048;
  p.kv_capacity_blocks = 1 << 20;
  return p;
}

/// Runs the scheduler dry until idle; returns the batches.
std::vector<Batch> drain(ContinuousBatchScheduler& s, std::vector<std::int64_t>* finished = nullptr) {
  std::vector<Batch> batches;
  for (int guard = 0; guard < 100000 && !s.idle(); ++guard) {
    Batch b = s.schedule();
    EXPECT_FALSE(b.empty());
    if (b.empty()) break;
    const auto out = s.complete(b);
    if (finished) finished->insert(finished->end(), out.finished.begin(), out.finished.end());
    batches.push_back(std::move(b));
  }
  return batches;
}

TEST(Scheduler, token_budget_and_max_num_seqs_are_never_exceeded) {
  ContinuousBatchScheduler s(small_params());
  for (int i = 0; i < 10; ++i) s.add({i, 0.0, 100 + 37 * i, 20});
  for (const auto& b : drain(s)) {
    EXPECT_LE(b.total_tokens(), 256);
    EXPECT_LE(b.items.size(), 4u);
  }
}

TEST(Scheduler, no_request_lost_and_every_token_computed_once) {
  ContinuousBatchScheduler s(small_params());
  int prompt_sum = 0, decode_expected = 0;
  for (int i = 0; i < 10; ++i) {
    s.add({i, 0.0, 50 + 90 * i, 5 + i});
    prompt_sum += 50 + 90 * i;
    decode_expected += 4 + i;
  }
  std::vector<std::int64_t> finished;
  int prefill = 0, decode = 0;
  for (const auto& b : drain(s, &finished)) {
    prefill += b.prefill_tokens;
    decode += b.decode_tokens;
  }
  EXPECT_EQ(prefill, prompt_sum);
  EXPECT_EQ(decode, decode_expected);
  std::sort(finished.begin(), finished.end());
  EXPECT_EQ(finished, (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Scheduler, long_prompt_is_chunked_over_steps) {
  ContinuousBatchScheduler s(small_params());
  s.add({0, 0.0, 1000, 3});
  const auto batches = drain(s);
  // ceil(1000 / 256) = 4 prefill steps, the last one emits the first token; then 2 decode steps.
  ASSERT_EQ(batches.size(), 6u);
  EXPECT_EQ(batches[0].prefill_tokens, 256);
  EXPECT_EQ(batches[3].prefill_tokens, 1000 - 3 * 256);
  EXPECT_TRUE(batches[3].items[0].emits_token);
  EXPECT_FALSE(batches[2].items[0].emits_token);
  EXPECT_EQ(batches[4].decode_tokens, 1);
}

TEST(Scheduler, kv_capacity_limits_admission) {
  SchedulerParams p = small_params();
  p.kv_capacity_blocks = 14;  // 224 tokens
  ContinuousBatchScheduler s(p);
  for (int i = 0; i < 3; ++i) s.add({i, 0.0, 100, 50});  // 7 blocks of prompt each: two fit at once
  const Batch first = s.schedule();
  EXPECT_EQ(first.items.size(), 2u);
  EXPECT_EQ(s.kv_blocks_in_use(0), 14);
}

TEST(Scheduler, hand_computed_schedule_matches_step_by_step) {
  // Budget 8 tokens, 2 sequences at most, blocks of 4 tokens, plenty of blocks.
  SchedulerParams p;
  p.max_num_batched_tokens = 8;
  p.max_num_seqs = 2;
  p.block_size = 4;
  p.kv_capacity_blocks = 100;
  ContinuousBatchScheduler s(p);
  s.add({0, 0.0, 6, 2});   // prompt 6, 2 output tokens
  s.add({1, 0.0, 5, 1});   // prompt 5, 1 output token
  s.add({2, 0.0, 3, 2});   // waits for a slot
  auto describe = [](const Batch& b) {
    std::string out;
    for (const auto& it : b.items)
      out += std::to_string(it.request_id) + (it.is_prefill ? "p" : "d") + std::to_string(it.num_tokens) + (it.emits_token ? "* " : " ");
    return out;
  };
  std::vector<std::string> steps;
  while (!s.idle()) {
    const Batch b = s.schedule();
    ASSERT_FALSE(b.empty());
    steps.push_back(describe(b));
    (void)s.complete(b);
  }
  // Step 1: r0 prefills all 6 (emits), r1 gets the 2 left of the budget.
  // Step 2: r0 decodes 1 (emits, done); r1 prefills its last 3 (emits, done) - 4 tokens.
  // Step 3: r2 admitted: prefill 3 (emits). Step 4: r2 decodes (emits, done).
  EXPECT_EQ(steps, (std::vector<std::string>{"0p6* 1p2 ", "0d1* 1p3* ", "2p3* ", "2d1* "}));
}

TEST(Scheduler, kv_exhaustion_preempts_and_every_request_still_finishes) {
  SchedulerParams p;
  p.max_num_batched_tokens = 64;
  p.max_num_seqs = 8;
  p.block_size = 4;
  p.kv_capacity_blocks = 12;  // 48 tokens: two sequences of 16 + 12 tokens each do not both fit
  ContinuousBatchScheduler s(p);
  std::int64_t prompt = 0, decode_expected = 0;
  for (int i = 0; i < 4; ++i) {
    s.add({i, 0.0, 16, 12});
    prompt += 16;
    decode_expected += 11;
  }
  std::vector<std::int64_t> finished;
  std::int64_t prefill = 0, decode = 0, preempted = 0;
  for (int guard = 0; guard < 10000 && !s.idle(); ++guard) {
    const Batch b = s.schedule();
    ASSERT_FALSE(b.empty());
    EXPECT_LE(s.kv_blocks_in_use(0), 12);
    prefill += b.prefill_tokens;
    decode += b.decode_tokens;
    preempted += static_cast<std::int64_t>(b.preempted.size());
    const auto out = s.complete(b);
    finished.insert(finished.end(), out.finished.begin(), out.finished.end());
  }
  std::sort(finished.begin(), finished.end());
  EXPECT_EQ(finished, (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_GT(s.stats().preemptions, 0);
  EXPECT_EQ(preempted, s.stats().preemptions);
  EXPECT_EQ(prefill, prompt + s.stats().recomputed_tokens);
  EXPECT_EQ(decode, decode_expected - s.stats().recompute_emissions);
}

TEST(Scheduler, no_request_starves_under_sustained_load) {
  SchedulerParams p;
  p.max_num_batched_tokens = 256;
  p.max_num_seqs = 16;
  p.kv_capacity_blocks = 200;
  ContinuousBatchScheduler s(p);
  std::vector<int> finished_at(400, -1);
  int next = 0;
  for (int step = 0; step < 100000 && (next < 400 || !s.idle()); ++step) {
    for (int a = 0; a < 2 && next < 400; ++a, ++next) s.add({next, 0.0, 40 + (next * 37) % 200, 10 + (next * 13) % 60});
    const Batch b = s.schedule();
    if (b.empty()) continue;
    for (auto id : s.complete(b).finished) finished_at[static_cast<std::size_t>(id)] = step;
  }
  for (int i = 0; i < 400; ++i) EXPECT_GE(finished_at[static_cast<std::size_t>(i)], 0) << i;
  // First come, first served: a request never finishes long after requests that arrived much later.
  for (int i = 0; i + 100 < 400; ++i) EXPECT_LT(finished_at[static_cast<std::size_t>(i)], finished_at[static_cast<std::size_t>(i + 100)]) << i;
}

TEST(Scheduler, prefix_caching_skips_shared_full_blocks_and_frees_them_with_the_last_user) {
  SchedulerParams p;
  p.max_num_batched_tokens = 1000;
  p.max_num_seqs = 8;
  p.block_size = 16;
  p.kv_capacity_blocks = 1000;
  p.prefix_caching = true;
  ContinuousBatchScheduler s(p);
  // Same 70-token prefix (4 full blocks = 64 tokens shareable), 100-token prompts.
  Request a{0, 0.0, 100, 3, -1, 7, 70}, b{1, 0.0, 100, 3, -1, 7, 70}, c{2, 0.0, 100, 3, -1, 8, 70};
  s.add(a);
  Batch first = s.schedule();
  EXPECT_EQ(first.prefill_tokens, 100);
  (void)s.complete(first);                 // a registers prefix 7 (4 blocks)
  EXPECT_EQ(s.kv_blocks_in_use(0), 7);     // ceil(100/16) = 7 blocks, 4 of them now shared
  s.add(b);
  s.add(c);
  Batch second = s.schedule();
  // a decodes 1; b computes 100 - 64 = 36 tokens; c (other prefix) computes all 100.
  EXPECT_EQ(second.decode_tokens, 1);
  EXPECT_EQ(second.prefill_tokens, 36 + 100);
  EXPECT_EQ(s.stats().prefix_hit_tokens, 64);
  while (!s.idle()) {
    const Batch bt = s.schedule();
    (void)s.complete(bt);
  }
  EXPECT_EQ(s.kv_blocks_in_use(0), 0);     // everything freed, shared blocks with their last user
}

TEST(Scheduler, a_freed_prefix_stays_hittable_until_allocation_reuses_its_blocks_last_block_first) {
  SchedulerParams p;
  p.max_num_batched_tokens = 1000;
  p.max_num_seqs = 8;
  p.block_size = 16;
  p.kv_capacity_blocks = 20;
  p.prefix_caching = true;
  ContinuousBatchScheduler s(p);
  // a computes prefix 7 (70 tokens: 4 shareable blocks) and finishes at once.
  s.add(Request{0, 0.0, 100, 1, -1, 7, 70});
  Batch b1 = s.schedule();
  EXPECT_EQ(b1.prefill_tokens, 100);
  EXPECT_EQ(s.complete(b1).finished.size(), 1u);
  EXPECT_EQ(s.kv_blocks_in_use(0), 0);
  EXPECT_EQ(s.kv_blocks_cached_free(0), 4);  // freed, still holding the prefix
  // x needs 17 blocks: the 16 never-used or contentless free blocks come first, then the
  // prefix's last block.
  s.add(Request{1, 0.0, 272, 1, -1, -1, 0});
  Batch b2 = s.schedule();
  EXPECT_EQ(b2.prefill_tokens, 272);
  EXPECT_EQ(s.kv_blocks_cached_free(0), 3);
  (void)s.complete(b2);
  // b shares what is left of the prefix: 3 blocks (48 tokens), and computes the rest.
  s.add(Request{2, 0.0, 100, 1, -1, 7, 70});
  Batch b3 = s.schedule();
  EXPECT_EQ(b3.prefill_tokens, 100 - 48);
  EXPECT_EQ(s.stats().prefix_hit_tokens, 48);
  EXPECT_EQ(s.kv_blocks_cached_free(0), 0);  // in use again
  (void)s.complete(b3);
  EXPECT_EQ(s.kv_blocks_in_use(0), 0);
  EXPECT_EQ(s.kv_blocks_cached_free(0), 3);
}

TEST(Scheduler, a_sequence_sharing_part_of_a_longer_prefix_never_holds_more_blocks_than_its_positions) {
  // b shares 2 blocks of the 6 a registered; once a leaves, b alone must grow to the whole cache
  // (10 blocks) without preempting itself for the 4 blocks of a's prefix it never used.
  SchedulerParams p;
  p.max_num_batched_tokens = 1000;
  p.max_num_seqs = 8;
  p.block_size = 16;
  p.kv_capacity_blocks = 10;
  p.prefix_caching = true;
  ContinuousBatchScheduler s(p);
  s.add(Request{0, 0.0, 100, 2, -1, 7, 96});
  (void)s.complete(s.schedule());
  s.add(Request{1, 0.0, 40, 119, -1, 7, 32});
  int finished = 0, empty_steps = 0;
  for (int step = 0; step < 1000 && finished < 2; ++step) {
    const Batch b = s.schedule();
    if (b.empty()) ++empty_steps;
    EXPECT_EQ(s.audit(), "");
    finished += static_cast<int>(s.complete(b).finished.size());
    EXPECT_EQ(s.audit(), "");
  }
  EXPECT_EQ(finished, 2);
  EXPECT_EQ(empty_steps, 0);
  EXPECT_EQ(s.stats().preemptions, 0);
  EXPECT_EQ(s.stats().prefix_hit_tokens, 32);
}

namespace {
Request with_hashes(std::int64_t id, int prompt, std::vector<std::int64_t> hashes, int hash_block_tokens) {
  Request r{id, 0.0, prompt, 1, -1, -1, 0};
  r.block_hashes = std::make_shared<const std::vector<std::int64_t>>(std::move(hashes));
  r.hash_block_tokens = hash_block_tokens;
  return r;
}
}  // namespace

TEST(Scheduler, trace_block_hashes_share_the_leading_run_of_matching_chained_hashes) {
  SchedulerParams p;
  p.max_num_batched_tokens = 4096;
  p.max_num_seqs = 8;
  p.block_size = 16;
  p.kv_capacity_blocks = 200;
  p.prefix_caching = true;
  ContinuousBatchScheduler s(p);
  auto prefill_of = [&](const Request& r) {
    s.add(r);
    const Batch b = s.schedule();
    (void)s.complete(b);
    EXPECT_EQ(s.audit(), "");
    return b.prefill_tokens;
  };
  // 64-token hash blocks: 4 engine blocks a hash.
  EXPECT_EQ(prefill_of(with_hashes(0, 256, {1, 2, 3, 4}, 64)), 256);
  // Shares the run [1, 2] (128 tokens), then its own blocks; they are registered as computed.
  EXPECT_EQ(prefill_of(with_hashes(1, 300, {1, 2, 9, 10, 11}, 64)), 300 - 128);
  EXPECT_EQ(prefill_of(with_hashes(2, 300, {1, 2, 9, 10, 12}, 64)), 300 - 256);
  // A first hash that differs shares nothing, even where later hashes agree.
  EXPECT_EQ(prefill_of(with_hashes(3, 256, {5, 2, 3, 4}, 64)), 256);
  // The same prompt again: everything but the last block's worth (at least one token computed).
  EXPECT_EQ(prefill_of(with_hashes(4, 200, {1, 2, 3, 4}, 64)), 200 - 192);
  EXPECT_EQ(s.stats().prefix_hit_tokens, 128 + 256 + 192);
}

TEST(Scheduler, engine_blocks_larger_than_the_trace_blocks_are_named_by_the_hash_that_completes_them) {
  SchedulerParams p;
  p.max_num_batched_tokens = 4096;
  p.max_num_seqs = 8;
  p.block_size = 64;
  p.kv_capacity_blocks = 100;
  p.prefix_caching = true;
  ContinuousBatchScheduler s(p);
  std::vector<std::int64_t> a(16), b(16);
  for (int i = 0; i < 16; ++i) {
    a[static_cast<std::size_t>(i)] = i;
    b[static_cast<std::size_t>(i)] = i < 9 ? i : 100 + i;  // agrees on 9 16-token blocks (144 tokens)
  }
  s.add(with_hashes(0, 256, a, 16));
  (void)s.complete(s.schedule());
  s.add(with_hashes(1, 256, b, 16));
  const Batch second = s.schedule();
  // Engine blocks 0 and 1 (hashes 3 and 7) are shared; block 2 needs hash 11, which differs.
  EXPECT_EQ(second.prefill_tokens, 256 - 128);
  EXPECT_EQ(s.audit(), "");
}

TEST(Scheduler, a_pool_of_resent_prompts_is_served_from_the_cache_after_its_first_round) {
  // Four prompts sent again and again, one at a time (a benchmark re-sending its prompt pool):
  // with room for all of them, only the first round computes their shareable blocks.
  SchedulerParams p;
  p.max_num_batched_tokens = 2048;
  p.max_num_seqs = 4;
  p.block_size = 16;
  p.kv_capacity_blocks = 200;
  p.prefix_caching = true;
  ContinuousBatchScheduler s(p);
  std::int64_t prefill = 0;
  for (int i = 0; i < 40; ++i) {
    s.add(Request{i, 0.0, 512, 2, -1, i % 4, 512});
    while (!s.idle()) {
      const Batch b = s.schedule();
      prefill += b.prefill_tokens;
      (void)s.complete(b);
    }
  }
  // 511 shareable tokens -> 31 blocks (496 tokens) per prompt; rounds 2-10 hit them all.
  EXPECT_EQ(s.stats().prefix_hit_tokens, 36 * 496);
  EXPECT_EQ(prefill, 40 * 512 - 36 * 496);
}

TEST(Scheduler, data_parallel_attention_spreads_sequences_over_ranks) {
  SchedulerParams p = small_params();
  p.attention_ranks = 4;
  p.max_num_seqs = 8;
  p.max_num_batched_tokens = 4096;
  ContinuousBatchScheduler s(p);
  for (int i = 0; i < 8; ++i) s.add({i, 0.0, 10, 5});
  const Batch b = s.schedule();
  std::vector<int> per_rank(4, 0);
  for (const auto& item : b.items) per_rank[item.attention_rank]++;
  EXPECT_EQ(per_rank, (std::vector<int>{2, 2, 2, 2}));
}

// ---- collectives -------------------------------------------------------------------------------

TEST(Collectives, ring_all_reduce_sends_two_n_minus_one_over_n_of_the_buffer) {
  const Collective c = ring_all_reduce(4, 1000.0);
  EXPECT_EQ(c.hops, 6);
  for (int r = 0; r < 4; ++r) EXPECT_DOUBLE_EQ(c.traffic.at(r, (r + 1) % 4), 1500.0);
  EXPECT_DOUBLE_EQ(c.traffic.total(), 6000.0);
}

TEST(Collectives, analytic_time_is_port_bound_plus_latencies) {
  InterconnectSpec nv{"nv", "", "nvlink", "intra_node", 100.0, 2.0, 0.5, 5.0};
  InterconnectSpec ib{"ib", "", "infiniband", "inter_node", 50.0, 4.0, 1.0, 20.0};
  const FabricView fabric{8, 0, nv, ib};
  const Collective c = ring_all_reduce(4, 1e9);
  // 1.5 GB through a 50 GB/s effective port, 6 hops of 2 us, 5 us software.
  EXPECT_NEAR(analytic_collective_seconds(c, fabric), 1.5e9 / 50e9 + 6 * 2e-6 + 5e-6, 1e-12);
}

TEST(Collectives, all_to_all_time_grows_with_bytes) {
  InterconnectSpec nv{"nv", "", "nvlink", "intra_node", 450.0, 2.0, 0.8, 5.0};
  const FabricView fabric{8, 0, nv, nv};
  Collective small{CollectiveKind::dispatch, TrafficMatrix(4), 1}, large{CollectiveKind::dispatch, TrafficMatrix(4), 1};
  for (int s = 0; s < 4; ++s)
    for (int d = 0; d < 4; ++d)
      if (s != d) {
        small.traffic.at(s, d) = 1e6;
        large.traffic.at(s, d) = 4e6;
      }
  EXPECT_LT(analytic_collective_seconds(small, fabric), analytic_collective_seconds(large, fabric));
}

TEST(Collectives, cross_node_traffic_uses_the_nic) {
  InterconnectSpec nv{"nv", "", "nvlink", "intra_node", 450.0, 2.0, 1.0, 0.0};
  InterconnectSpec ib{"ib", "", "infiniband", "inter_node", 50.0, 4.0, 1.0, 0.0};
  const FabricView fabric{2, 0, nv, ib};  // ranks 0,1 on node 0; 2,3 on node 1
  Collective c{CollectiveKind::dispatch, TrafficMatrix(4), 1};
  c.traffic.at(0, 2) = 50e9;  // one second over IB
  EXPECT_NEAR(analytic_collective_seconds(c, fabric), 1.0 + 4e-6, 1e-9);
}

}  // namespace
}  // namespace moesim
