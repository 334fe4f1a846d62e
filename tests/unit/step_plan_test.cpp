// Roofline sanity of the step executor's plans, named after the invariants they check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/llm/layer_work.hpp"
#include "sim/exec/step_plan.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

/// Sends every token to experts 0..k-1: the worst imbalance there is.
class HotExpertRouter final : public TokenRouter {
 public:
  explicit HotExpertRouter(int k) : k_(k) {}
  void route(int, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts, std::span<float>) override {
    for (std::size_t t = 0; t < tokens.size(); ++t)
      for (int j = 0; j < k_; ++j) experts[t * static_cast<std::size_t>(k_) + static_cast<std::size_t>(j)] = j;
  }

 private:
  int k_;
};

std::unique_ptr<TokenRouter> uniform_router(const Scenario& sc) {
  return token_routers().get("uniform")(router_context(sc.model.spec, sc.workload.routing, sc.seed, 0));
}

/// Step time with the analytic network: per compute phase the slowest GPU, plus collectives.
double step_seconds(const StepPlan& plan, const Scenario& sc) {
  const FabricView fabric{sc.cluster.gpus_per_node, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
  double t = 0;
  for (const auto& ph : plan.phases) {
    if (ph.kind == PhaseKind::comm) t += analytic_collective_seconds(ph.collective, fabric);
    else t += *std::max_element(ph.compute_s.begin(), ph.compute_s.end());
  }
  return t;
}

Batch decode_batch(int seqs, int context) {
  Batch b;
  for (int i = 0; i < seqs; ++i) b.items.push_back({i, 0, 1, -1, context, false, true});
  b.decode_tokens = seqs;
  return b;
}

Batch prefill_batch(int seqs, int prompt) {
  Batch b;
  for (int i = 0; i < seqs; ++i) b.items.push_back({i, 0, prompt, -1, 0, true, true});
  b.prefill_tokens = seqs * prompt;
  return b;
}

TEST(StepPlan, repeated_dense_layers_visit_the_same_phases_and_time_as_the_full_plan) {
  // Dense Llama on TP1 and TP4 (collectives inside the block), and DeepSeek-V3's three dense
  // layers before its MoE layers.
  const std::vector<std::vector<std::string>> cases{
      {"model=llama-3.1-8b", "cluster.gpus_per_node=1"},
      {"model=llama-3.1-8b"},
      {"model=deepseek-v3", "parallel.mode=ep", "cluster.nodes=4", "cluster.gpus_per_node=8"},
  };
  for (const auto& sets : cases) {
    const Scenario sc = quickstart(sets);
    const ParallelLayout lay = make_layout(sc);
    StepPlanner full_planner(sc, lay, uniform_router(sc)), repeat_planner(sc, lay, uniform_router(sc));
    Batch batch = prefill_batch(2, 300);
    for (const BatchItem& d : decode_batch(5, 700).items) batch.items.push_back(d);
    batch.decode_tokens = 5;
    const StepPlan full = full_planner.plan(batch);
    StepPlan repeated;
    repeat_planner.plan_into(repeated, batch, 0.0, {}, true);
    ASSERT_GT(sc.model.spec.num_dense_layers, 1) << sets.front();
    EXPECT_EQ(repeated.repeat, sc.model.spec.num_dense_layers) << sets.front();
    EXPECT_LT(repeated.phases.size(), full.phases.size()) << sets.front();
    std::vector<const Phase*> visited;
    for_each_phase(repeated, [&](const Phase& ph) { visited.push_back(&ph); });
    ASSERT_EQ(visited.size(), full.phases.size()) << sets.front();
    for (std::size_t i = 0; i < visited.size(); ++i) {
      EXPECT_EQ(visited[i]->kind, full.phases[i].kind) << sets.front() << " phase " << i;
      EXPECT_TRUE(std::equal(visited[i]->compute_s.begin(), visited[i]->compute_s.end(), full.phases[i].compute_s.begin(),
                             full.phases[i].compute_s.end()))
          << sets.front() << " phase " << i;
      EXPECT_EQ(visited[i]->collective.traffic.bytes, full.phases[i].collective.traffic.bytes) << sets.front() << " phase " << i;
    }
    const FabricView fabric{sc.cluster.gpus_per_node, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
    // A block without collectives is visited once and scaled by its copies: the same time up to
    // the rounding of a product against a sum.
    const double t_full = analytic_step_times(full, fabric).total();
    EXPECT_NEAR(analytic_step_times(repeated, fabric).total(), t_full, 1e-12 * t_full) << sets.front();
    double copies = 0;
    for_each_phase_weighted(repeated, [&](const Phase&, double c) { copies += c; });
    EXPECT_DOUBLE_EQ(copies, static_cast<double>(full.phases.size())) << sets.front();
  }
}

TEST(StepPlan, decode_step_time_at_least_weight_bytes_read_over_hbm_bandwidth) {
  for (const char* mode : {"tp", "ep"}) {
    const Scenario sc = quickstart({std::string("parallel.mode=") + mode});
    const ParallelLayout lay = make_layout(sc);
    StepPlanner planner(sc, lay, uniform_router(sc));
    // 32 sequences x top-2 of 8 experts: every expert is hit in every layer, so each GPU reads
    // all of its weights once.
    const StepPlan plan = planner.plan(decode_batch(32, 1000));
    const double lower = lay.weight_bytes_per_gpu / sc.cluster.gpu.spec.hbm_bytes_per_s();
    EXPECT_GE(step_seconds(plan, sc), lower) << mode;
    // ... and the roofline is not wildly pessimistic either: within 2x of the bandwidth bound.
    EXPECT_LE(step_seconds(plan, sc), 2.0 * lower / sc.cluster.gpu.spec.memory_efficiency) << mode;
  }
}

TEST(StepPlan, prefill_step_time_at_least_flops_over_peak) {
  const Scenario sc = quickstart();
  const ParallelLayout lay = make_layout(sc);
  StepPlanner planner(sc, lay, uniform_router(sc));
  const int tokens = 8192;
  const StepPlan plan = planner.plan(prefill_batch(4, tokens / 4));
  // Active-parameter FLOPs of a forward pass, 2 per parameter per token, split over 4 GPUs.
  const double flops_per_gpu = 2.0 * sc.model.spec.active_params() * tokens / lay.gpus_per_instance;
  EXPECT_GE(step_seconds(plan, sc), flops_per_gpu / sc.cluster.gpu.spec.peak_flops(DType::bf16));
}

TEST(StepPlan, ep_step_time_grows_when_all_tokens_go_to_one_expert) {
  const Scenario sc = quickstart({"parallel.mode=ep"});
  const ParallelLayout lay = make_layout(sc);
  StepPlanner balanced(sc, lay, uniform_router(sc));
  StepPlanner hot(sc, lay, std::make_unique<HotExpertRouter>(sc.model.spec.top_k));
  const Batch batch = prefill_batch(4, 1024);
  const StepPlan b = balanced.plan(batch);
  const StepPlan h = hot.plan(batch);
  EXPECT_GT(step_seconds(h, sc), 1.5 * step_seconds(b, sc));
  EXPECT_GT(h.load.gpu_max_over_mean, 3.9);  // experts 0 and 1 both live on GPU 0 of 4
  EXPECT_LT(b.load.gpu_max_over_mean, 1.1);
}

TEST(StepPlan, tp_step_time_does_not_depend_on_which_experts_are_hot_when_all_are_hit) {
  // In mode tp every GPU computes a shard of every expert: a balanced and a skewed routing with
  // the same per-expert token counts cost the same.
  const Scenario sc = quickstart();
  const ParallelLayout lay = make_layout(sc);
  StepPlanner a(sc, lay, uniform_router(sc));
  const StepPlan plan = a.plan(decode_batch(32, 100));
  for (const auto& ph : plan.phases) {
    if (ph.kind == PhaseKind::comm) continue;
    EXPECT_TRUE(std::all_of(ph.compute_s.begin(), ph.compute_s.end(), [&](double s) { return s == ph.compute_s[0]; }));
  }
}

TEST(StepPlan, every_token_is_routed_to_top_k_experts_in_every_moe_layer) {
  for (const char* mode : {"tp", "ep"}) {
    const Scenario sc = quickstart({std::string("parallel.mode=") + mode});
    StepPlanner planner(sc, make_layout(sc), uniform_router(sc));
    const StepPlan plan = planner.plan(prefill_batch(3, 100));
    const double routed = std::accumulate(plan.load.layer_expert_counts.begin(), plan.load.layer_expert_counts.end(), 0.0);
    EXPECT_DOUBLE_EQ(routed, 300.0 * sc.model.spec.top_k * sc.model.spec.num_moe_layers()) << mode;
  }
}

TEST(StepPlan, data_parallel_instances_draw_their_own_policy_streams_and_one_instance_repeats_its_own) {
  // Random replica selection over EPLB replicas: the same gate choices (all to experts 0 and 1,
  // both replicated) are spread over the replicas by the policy's random stream.
  const Scenario sc = quickstart({"parallel.mode=ep", "routing.policy=eplb", "routing.num_redundant_experts=4",
                                  "routing.replica_selection=random"});
  const ParallelLayout lay = make_layout(sc);
  const auto slot_loads = [&](int instance) {
    StepPlanner planner(sc, lay, std::make_unique<HotExpertRouter>(sc.model.spec.top_k), 0, instance);
    return planner.plan(prefill_batch(4, 256)).load.layer_slot_loads;
  };
  const auto a = slot_loads(0), again = slot_loads(0), b = slot_loads(1), c = slot_loads(2);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, again);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  // Each instance still computes every assignment exactly once.
  for (const auto* v : {&a, &b, &c})
    EXPECT_DOUBLE_EQ(std::accumulate(v->begin(), v->end(), 0.0), 1024.0 * sc.model.spec.top_k * sc.model.spec.num_moe_layers());
}

TEST(StepPlan, dispatch_sends_each_token_once_per_remote_gpu) {
  const Scenario sc = quickstart({"parallel.mode=ep", "model.num_layers=1"});
  StepPlanner hot(sc, make_layout(sc), std::make_unique<HotExpertRouter>(2));
  // 8 tokens spread over 4 GPUs (2 each); experts 0 and 1 both live on GPU 0, so the 6 tokens on
  // GPUs 1-3 each send one hidden state to GPU 0.
  const StepPlan plan = hot.plan(prefill_batch(1, 8));
  EXPECT_DOUBLE_EQ(plan.load.dispatch_bytes, 6.0 * sc.model.spec.hidden_size * kActivationBytes);
  EXPECT_DOUBLE_EQ(plan.load.combine_bytes, plan.load.dispatch_bytes);
}

TEST(Layout, kv_blocks_for_mixtral_tp4_on_h100_match_a_hand_calculation) {
  // Per GPU: 80e9 B x 0.9 - 2e9 B activation reserve = 70e9 B usable; weights 46.7B params x 2 B / 4;
  // KV per token per GPU: 32 layers x 2 (K, V) x (8 KV heads / 4) x 128 x 2 B = 32768 B.
  const Scenario sc = quickstart();
  const ParallelLayout lay = make_layout(sc);
  const double weights = sc.model.spec.total_params() * 2.0 / 4.0;
  EXPECT_NEAR(lay.weight_bytes_per_gpu, weights, 1.0);
  EXPECT_DOUBLE_EQ(lay.kv_bytes_per_token_per_gpu, 32768.0);
  const auto tokens = static_cast<std::int64_t>(std::floor((70e9 - weights) / 32768.0));
  EXPECT_EQ(lay.kv_capacity_tokens, tokens);
  EXPECT_EQ(lay.kv_capacity_tokens / 16, tokens / 16);  // blocks of 16 tokens
  // By hand: (70e9 - 46.7e9 x 2 / 4) / 32768 = 1,423,645 tokens = 88,977 blocks of 16.
  EXPECT_NEAR(static_cast<double>(tokens / 16), 88977.0, 5.0);
}

TEST(Layout, tp_splits_weights_and_ep_keeps_whole_experts) {
  const Scenario tp = quickstart();
  const Scenario ep = quickstart({"parallel.mode=ep"});
  const double total = tp.model.spec.total_params() * 2.0;  // bf16
  EXPECT_NEAR(make_layout(tp).weight_bytes_per_gpu, total / 4, 1e6);
  // Attention tp inside the EP group: the same split.
  EXPECT_NEAR(make_layout(ep).weight_bytes_per_gpu, total / 4, 1e6);
  const Scenario dp = quickstart({"parallel.mode=ep", "parallel.attention=dp"});
  EXPECT_GT(make_layout(dp).weight_bytes_per_gpu, total / 4);
  EXPECT_GT(make_layout(tp).kv_capacity_tokens, 100000);
}

}  // namespace
}  // namespace moesim::test
