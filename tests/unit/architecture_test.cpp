// Architectures: dense models, leading dense layers, shared experts, as the step planner lays them
// out; named after the invariants they check.
#include <gtest/gtest.h>

#include <algorithm>

#include "sim/exec/step_plan.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

Batch decode_batch(int seqs, int context) {
  Batch b;
  for (int i = 0; i < seqs; ++i) b.items.push_back({i, 0, 1, -1, context, false, true});
  b.decode_tokens = seqs;
  return b;
}

int count(const StepPlan& plan, PhaseKind kind) {
  return static_cast<int>(std::count_if(plan.phases.begin(), plan.phases.end(), [kind](const Phase& p) { return p.kind == kind; }));
}

StepPlan plan_one_step(const Scenario& sc, const Batch& batch) {
  const ParallelLayout lay = make_layout(sc);
  StepPlanner planner(sc, lay, token_routers().get(sc.workload.routing.model)(router_context(sc.model.spec, sc.workload.routing, sc.seed, 0)));
  return planner.plan(batch);
}

TEST(Architecture, dense_model_has_a_dense_ffn_in_every_layer_and_routes_nothing) {
  for (const char* card : {"llama-2-7b", "llama-3.1-8b", "llama-3.1-70b"}) {
    const ModelSpec m = load_card<ModelSpec>(card);
    EXPECT_EQ(m.num_experts, 0) << card;
    EXPECT_EQ(m.num_moe_layers(), 0) << card;
    EXPECT_NEAR(m.total_params() / 1e9, m.total_params_b, 0.01 * m.total_params_b) << card;
    EXPECT_DOUBLE_EQ(m.active_params(), m.total_params()) << card;
  }
  const Scenario sc = quickstart({"model=llama-3.1-70b"});
  const StepPlan plan = plan_one_step(sc, decode_batch(16, 1000));
  EXPECT_EQ(count(plan, PhaseKind::dense_ffn), sc.model.spec.num_layers);
  EXPECT_EQ(count(plan, PhaseKind::moe), 0);
  EXPECT_DOUBLE_EQ(plan.load.dispatch_bytes, 0.0);
  EXPECT_TRUE(plan.load.layer_expert_counts.empty());
  // TP4: an all-reduce after attention and after the FFN of every layer.
  EXPECT_EQ(count(plan, PhaseKind::comm), 2 * sc.model.spec.num_layers);
}

TEST(Architecture, deepseek_v3_has_three_dense_layers_then_moe_layers_with_a_shared_expert) {
  const Scenario sc = quickstart({"model=deepseek-v3", "cluster.gpu=h800", "cluster.gpus_per_node=8", "cluster.nodes=2",
                                  "parallel.mode=ep", "parallel.attention=dp", "serving.max_model_len=4096"});
  Batch batch = decode_batch(64, 2000);
  for (std::size_t i = 0; i < batch.items.size(); ++i) batch.items[i].attention_rank = static_cast<int>(i % 16);
  const StepPlan plan = plan_one_step(sc, batch);
  EXPECT_EQ(count(plan, PhaseKind::dense_ffn), 3);
  EXPECT_EQ(count(plan, PhaseKind::moe), 58);
  // Every MoE layer dispatches and combines (data-parallel attention: no all-reduce).
  EXPECT_EQ(count(plan, PhaseKind::comm), 2 * 58);
  // FP8 dispatch (the model's weights are FP8) and BF16 combine: combine moves about twice the bytes.
  EXPECT_NEAR(plan.load.combine_bytes / plan.load.dispatch_bytes, 2.0 * 7168 / (7168 + 56 * 4), 0.02);
}

}  // namespace
}  // namespace moesim::test
