// Compute beside communication: shared-expert overlap and dual-batch overlap (two micro-batches),
// named after the invariants they check.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "sim/exec/step_plan.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

/// DeepSeek-V2-Lite (2 shared experts, 64 routed) with EP16 over two H100 nodes, DP attention:
/// dispatch and combine cross InfiniBand.
Scenario two_node_ep(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets{"model=deepseek-v2-lite", "parallel.mode=ep", "parallel.attention=dp", "cluster.nodes=2",
                                "cluster.gpus_per_node=8", "serving.max_num_batched_tokens=65536", "serving.max_num_seqs=1024"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return quickstart(sets);
}

StepPlan plan_of(const Scenario& sc, const Batch& batch) {
  const ParallelLayout lay = make_layout(sc);
  StepPlanner planner(sc, lay, token_routers().get("uniform")(router_context(sc.model.spec, sc.workload.routing, sc.seed, 0)));
  return planner.plan(batch);
}

double step_s(const StepPlan& plan, const Scenario& sc) {
  const FabricView fabric{sc.cluster.gpus_per_node, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
  return analytic_step_times(plan, fabric).total();
}

/// `seqs` sequences spread over `ranks` attention ranks.
Batch batch_of(int seqs, int tokens_each, int context, int ranks) {
  Batch b;
  for (int i = 0; i < seqs; ++i) {
    const bool prefill = tokens_each > 1;
    b.items.push_back({i, i % ranks, tokens_each, -1, context, prefill, true});
    (prefill ? b.prefill_tokens : b.decode_tokens) += tokens_each;
  }
  return b;
}

double collectives_s(const StepPlan& plan, const Scenario& sc) {
  const FabricView fabric{sc.cluster.gpus_per_node, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
  double t = 0;
  for (const Phase& ph : plan.phases)
    if (ph.kind == PhaseKind::comm) t += analytic_collective_seconds(ph.collective, fabric);
  return t;
}

TEST(Overlap, shared_expert_overlap_saves_at_most_the_dispatch_time) {
  const Batch batch = batch_of(64, 256, 0, 16);
  const Scenario plain_sc = two_node_ep(), beside_sc = two_node_ep({"serving.shared_expert_overlap=true"});
  const StepPlan plain = plan_of(plain_sc, batch), beside = plan_of(beside_sc, batch);
  // The same phases, except that each dispatch now carries the shared experts' kernels.
  ASSERT_EQ(plain.phases.size(), beside.phases.size());
  int overlapped = 0;
  for (const Phase& ph : beside.phases)
    if (ph.overlapped()) {
      ++overlapped;
      EXPECT_EQ(ph.collective.kind, CollectiveKind::dispatch);
      EXPECT_EQ(ph.overlap_kind, PhaseKind::moe);
      EXPECT_GT(ph.slowest_compute_s(), 0.0);
    }
  EXPECT_EQ(overlapped, plain_sc.model.spec.num_moe_layers());
  // Hidden: shared-expert time up to each dispatch's length, never more than the dispatches last.
  const double t_plain = step_s(plain, plain_sc), t_beside = step_s(beside, beside_sc);
  EXPECT_LT(t_beside, t_plain);
  double dispatch_s = 0;
  const FabricView fabric{8, 0, beside_sc.cluster.intra_node.spec, beside_sc.cluster.inter_node.spec};
  for (const Phase& ph : beside.phases)
    if (ph.overlapped()) dispatch_s += analytic_collective_seconds(ph.collective, fabric);
  EXPECT_GE(t_beside, t_plain - dispatch_s);
  EXPECT_DOUBLE_EQ(collectives_s(plain, plain_sc), collectives_s(beside, beside_sc));
}

TEST(Overlap, shared_expert_overlap_changes_nothing_without_shared_experts) {
  // Mixtral has no shared experts: the plan is the one without the option.
  const Scenario a = quickstart({"parallel.mode=ep"}), b = quickstart({"parallel.mode=ep", "serving.shared_expert_overlap=true"});
  const Batch batch = batch_of(16, 128, 0, 1);
  EXPECT_EQ(step_s(plan_of(a, batch), a), step_s(plan_of(b, batch), b));
}

/// A synthetic chain: compute phases named by their one GPU's time, collectives by their bytes.
Phase compute(double s) {
  Phase ph = Phase::compute(PhaseKind::attention, 1);
  ph.compute_s[0] = s;
  return ph;
}
Phase comm(double bytes) {
  Phase ph;
  ph.kind = PhaseKind::comm;
  TrafficMatrix t(2);
  t.at(0, 1) = bytes;
  ph.collective = Collective(CollectiveKind::dispatch, t);
  return ph;
}

TEST(Overlap, micro_batches_alternate_compute_beside_the_other_micro_batch_collectives) {
  // A: a1 X a2 Y a3     B: b1 U b2 V b3
  const std::vector<Phase> a{compute(1), comm(10), compute(2), comm(20), compute(3)};
  const std::vector<Phase> b{compute(100), comm(1000), compute(200), comm(2000), compute(300)};
  std::vector<Phase> out;
  overlap_micro_batches(a, b, out, [](const Collective&) { return 1.0; });
  // a1 | X + b1 | U + a2 | Y + b2 | V + a3 | b3
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(out[0].kind, PhaseKind::attention);
  EXPECT_EQ(out[0].compute_s[0], 1);
  const double expect_bytes[] = {10, 1000, 20, 2000};
  const double expect_beside[] = {100, 2, 200, 3};
  for (int i = 0; i < 4; ++i) {
    const Phase& ph = out[static_cast<std::size_t>(i + 1)];
    ASSERT_TRUE(ph.overlapped()) << i;
    EXPECT_EQ(ph.collective.traffic.at(0, 1), expect_bytes[i]) << i;
    EXPECT_EQ(ph.compute_s[0], expect_beside[i]) << i;
  }
  EXPECT_EQ(out[5].compute_s[0], 300);
}

TEST(Overlap, micro_batches_keep_every_collective_and_all_compute) {
  // Uneven chains (B has one collective fewer, A starts with two back-to-back collectives).
  const std::vector<Phase> a{compute(1), comm(10), comm(11), compute(2), comm(20), compute(3)};
  const std::vector<Phase> b{compute(4), compute(5), comm(30), compute(6)};
  std::vector<Phase> out;
  overlap_micro_batches(a, b, out, [](const Collective&) { return 1.0; });
  double compute_total = 0, bytes = 0;
  std::vector<double> order;
  for (const Phase& ph : out) {
    if (!ph.compute_s.empty()) compute_total += ph.compute_s[0];
    if (ph.kind == PhaseKind::comm) {
      bytes += ph.collective.traffic.at(0, 1);
      order.push_back(ph.collective.traffic.at(0, 1));
    }
  }
  EXPECT_EQ(compute_total, 1 + 2 + 3 + 4 + 5 + 6);
  EXPECT_EQ(bytes, 10 + 11 + 20 + 30);
  // Each micro-batch's collectives in their own order.
  const std::vector<double> expected{10, 11, 30, 20};
  EXPECT_EQ(order, expected);
}

TEST(Overlap, overlapped_compute_bound_time_stretches_by_the_sms_communication_takes) {
  Phase beside = Phase::compute(PhaseKind::moe, 1);
  beside.compute_s[0] = 10;
  beside.compute_bound_s[0] = 6;
  Phase c = comm(1);
  c.add_compute(beside, 132.0 / 112.0);
  EXPECT_DOUBLE_EQ(c.compute_bound_s[0], 6 * 132.0 / 112.0);
  EXPECT_DOUBLE_EQ(c.compute_s[0], 4 + 6 * 132.0 / 112.0);
}

TEST(Overlap, dual_batch_overlap_routes_the_same_tokens_as_one_batch) {
  const Batch batch = batch_of(64, 256, 0, 16);
  const Scenario one = two_node_ep(), two = two_node_ep({"serving.dual_batch_overlap=true"});
  const StepPlan p1 = plan_of(one, batch), p2 = plan_of(two, batch);
  EXPECT_EQ(p1.micro_batches, 1);
  EXPECT_EQ(p2.micro_batches, 2);
  EXPECT_EQ(p1.load.layer_expert_counts, p2.load.layer_expert_counts);
  EXPECT_DOUBLE_EQ(p1.load.dispatch_bytes, p2.load.dispatch_bytes);
  // The micro-batches' collectives carry the step's bytes between them.
  double bytes1 = 0, bytes2 = 0;
  for (const Phase& ph : p1.phases)
    if (ph.kind == PhaseKind::comm && ph.collective.kind == CollectiveKind::dispatch) bytes1 += ph.collective.link_bytes();
  for (const Phase& ph : p2.phases)
    if (ph.kind == PhaseKind::comm && ph.collective.kind == CollectiveKind::dispatch) bytes2 += ph.collective.link_bytes();
  EXPECT_NEAR(bytes2, bytes1, 1e-9 * bytes1);
}

TEST(Overlap, dual_batch_overlap_helps_network_bound_prefill_and_costs_weight_bound_decode) {
  const Scenario one = two_node_ep(), two = two_node_ep({"serving.dual_batch_overlap=true"});
  // Prefill of 16k tokens over InfiniBand: the collectives hide behind the other half's compute.
  const Batch prefill = batch_of(64, 256, 0, 16);
  EXPECT_LT(step_s(plan_of(two, prefill), two), 0.9 * step_s(plan_of(one, prefill), one));
  // Small decode batch: every micro-batch reads all its expert and attention weights again.
  const Batch decode = batch_of(32, 1, 1000, 16);
  EXPECT_GT(step_s(plan_of(two, decode), two), step_s(plan_of(one, decode), one));
}

TEST(Overlap, dual_batch_overlap_step_time_between_the_overlap_bound_and_the_serial_sum) {
  const Scenario two = two_node_ep({"serving.dual_batch_overlap=true", "serving.overlap_comm_sms=0"});
  const Batch batch = batch_of(64, 256, 0, 16);
  const StepPlan merged = plan_of(two, batch);
  const double t = step_s(merged, two);
  double compute_only = 0, comm_only = collectives_s(merged, two);
  const FabricView fabric{8, 0, two.cluster.intra_node.spec, two.cluster.inter_node.spec};
  double serial = 0;
  for (const Phase& ph : merged.phases) {
    compute_only += ph.slowest_compute_s();
    const double c = ph.kind == PhaseKind::comm ? analytic_collective_seconds(ph.collective, fabric) : 0.0;
    serial += c + ph.slowest_compute_s();
  }
  // Never faster than either stream alone, never slower than running them back to back.
  EXPECT_GE(t, std::max(compute_only - 1e-12, comm_only - 1e-12) * (1 - 1e-12));
  EXPECT_LE(t, serial * (1 + 1e-12));
  EXPECT_LT(t, serial);
}

TEST(Overlap, one_sequence_per_rank_decode_runs_without_micro_batches) {
  // A micro-batch would be empty: the step runs as one batch.
  const Scenario two = two_node_ep({"serving.dual_batch_overlap=true"});
  const StepPlan p = plan_of(two, batch_of(1, 1, 100, 16));
  EXPECT_EQ(p.micro_batches, 1);
}

TEST(Overlap, a_prefill_chunk_across_the_middle_is_cut_between_the_micro_batches) {
  // One 4096-token prompt on one GPU: halves of 2048 tokens, the second continuing the first.
  const Scenario two = quickstart({"model=deepseek-v2-lite", "parallel.mode=ep", "cluster.gpus_per_node=2", "serving.dual_batch_overlap=true"});
  const StepPlan p = plan_of(two, batch_of(1, 4096, 0, 1));
  EXPECT_EQ(p.micro_batches, 2);
  const Scenario one = quickstart({"model=deepseek-v2-lite", "parallel.mode=ep", "cluster.gpus_per_node=2"});
  const StepPlan q = plan_of(one, batch_of(1, 4096, 0, 1));
  EXPECT_EQ(p.load.layer_expert_counts, q.load.layer_expert_counts);
}

}  // namespace
}  // namespace moesim::test
