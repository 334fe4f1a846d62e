// The kernel cost model (models/gpu/kernel_cost.hpp) and the per-layer work it is given
// (models/llm/layer_work.hpp), checked against their closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "models/llm/layer_work.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

GpuSpec h100() { return load_card<GpuSpec>("h100-sxm"); }

KernelWork gemm_rows(double rows, double params, DType dtype = DType::bf16) {
  KernelWork w;
  w.flops = 2.0 * rows * params;
  w.bytes = params * bytes_per_element(dtype);
  w.math_dtype = dtype;
  w.rows = rows;
  w.row_flops = 2.0 * params;
  w.launches = 1;
  return w;
}

TEST(KernelCost, gemm_rows_are_padded_to_the_power_of_two_tile_within_the_card_bounds) {
  const RooflineModel rf(h100());
  EXPECT_EQ(rf.tile_rows(1), 16);
  EXPECT_EQ(rf.tile_rows(6), 16);
  EXPECT_EQ(rf.tile_rows(17), 32);
  EXPECT_EQ(rf.tile_rows(100), 128);
  EXPECT_EQ(rf.tile_rows(5000), 128);
  // 6 rows run as a 16-row tile: the executed FLOPs are 16/6 of the useful ones.
  const GpuSpec g = h100();
  const KernelWork w = gemm_rows(6, 1e8);
  const double rate = g.peak_flops(DType::bf16) * g.compute_efficiency;
  EXPECT_NEAR(rf.time(w).compute_busy_s, 2.0 * 16 * 1e8 / rate, 1e-12);
  // 200 rows in 128-row tiles: 256 rows executed.
  EXPECT_NEAR(rf.time(gemm_rows(200, 1e8)).compute_busy_s, 2.0 * 256 * 1e8 / rate, 1e-12);
}

TEST(KernelCost, small_m_curve_reaches_half_the_large_gemm_efficiency_at_gemm_m_half_rows) {
  const GpuSpec g = h100();
  const RooflineModel rf(g);
  EXPECT_NEAR(rf.compute_fraction(g.gemm_m_half_rows), g.compute_efficiency / 2, 1e-12);
  EXPECT_NEAR(rf.compute_fraction(1e7), g.compute_efficiency, 1e-5);
  // A GEMM whose rows fill its tile exactly runs at the curve's fraction of peak.
  const KernelWork w = gemm_rows(64, 1e9);
  EXPECT_NEAR(rf.compute_seconds(w), w.flops / (g.peak_flops(DType::bf16) * rf.compute_fraction(64)), 1e-12);
}

TEST(KernelCost, roofline_takes_the_larger_of_compute_and_memory_plus_the_launch) {
  const GpuSpec g = h100();
  const RooflineModel rf(g);
  const KernelWork decode = gemm_rows(8, 1e9);  // memory-bound
  const KernelTime t = rf.time(decode);
  EXPECT_NEAR(t.seconds, g.kernel_launch_us * 1e-6 + decode.bytes / (g.hbm_bytes_per_s() * g.memory_efficiency), 1e-12);
  EXPECT_EQ(t.compute_bound_s, 0.0);
  const KernelWork prefill = gemm_rows(8192, 1e8);  // compute-bound
  const KernelTime p = rf.time(prefill);
  EXPECT_GT(p.compute_bound_s, 0.0);
  EXPECT_NEAR(p.seconds, g.kernel_launch_us * 1e-6 + rf.compute_seconds(prefill), 1e-12);
}

TEST(KernelCost, cuda_graph_replay_costs_kernel_graph_launch_us_per_kernel) {
  const GpuSpec g = h100();
  RooflineModel rf(g);
  KernelWork w = gemm_rows(8, 1e6);
  w.launches = 10;
  const double eager = rf.time(w).launch_s;
  rf.set_launch_mode(LaunchMode::graph);
  EXPECT_NEAR(eager, 10 * g.kernel_launch_us * 1e-6, 1e-15);
  EXPECT_NEAR(rf.time(w).launch_s, 10 * g.kernel_graph_launch_us * 1e-6, 1e-15);
}

TEST(KernelCost, grouped_gemm_pays_its_launches_once_and_one_tile_for_all_experts) {
  const ModelSpec m = load_card<ModelSpec>("qwen3-30b-a3b");
  const RooflineModel rf(h100());
  std::vector<KernelWork> parts;
  for (int e = 0; e < 8; ++e) parts.push_back(expert_ffn_work(m, 3, 1));
  const KernelTime g = rf.grouped(parts);
  EXPECT_NEAR(g.launch_s, kMoeKernels * h100().kernel_launch_us * 1e-6, 1e-15);
  // Each expert's 3 tokens run in a 16-row tile; weights are read once per expert.
  double bytes = 0;
  for (const auto& p : parts) bytes += p.bytes;
  EXPECT_NEAR(g.memory_busy_s, bytes / (h100().hbm_bytes_per_s() * h100().memory_efficiency), 1e-12);
  const double rate = h100().peak_flops(DType::bf16) * h100().compute_efficiency;
  EXPECT_NEAR(g.compute_busy_s, 8 * 2.0 * 16 * m.expert_params() / rate, 1e-12);
  // An expert without tokens reads nothing and costs nothing.
  EXPECT_TRUE(expert_ffn_work(m, 0, 1).empty());
}

TEST(KernelCost, fp8_weights_use_the_fp8_peak_and_read_half_the_bytes) {
  const RooflineModel rf(h100());
  const KernelWork bf = gemm_rows(4096, 1e8, DType::bf16), f8 = gemm_rows(4096, 1e8, DType::fp8);
  EXPECT_NEAR(rf.compute_seconds(f8) / rf.compute_seconds(bf), 989.0 / 1979.0, 1e-9);  // dense peaks of the card
  EXPECT_NEAR(f8.bytes, bf.bytes / 2, 1e-6);
}

TEST(KernelCost, triton_fp8_experts_stream_at_the_moe_fp8_efficiency_and_the_rest_of_their_time_is_sm_bound) {
  const ModelSpec m = load_card<ModelSpec>("qwen3-235b-a22b-fp8");
  const GpuSpec g = h100();
  ASSERT_LT(g.moe_fp8_memory_efficiency, g.memory_efficiency);
  RooflineModel rf(g);
  rf.set_launch_mode(LaunchMode::graph);
  std::vector<KernelWork> parts;
  for (int e = 0; e < 4; ++e) parts.push_back(expert_ffn_work(m, 2, 1));  // decode: memory-bound
  double bytes = 0;
  for (const auto& p : parts) bytes += p.bytes;
  const double bw = g.hbm_bytes_per_s();
  const KernelTime triton = rf.grouped(parts);
  EXPECT_NEAR(triton.seconds - triton.launch_s, bytes / (bw * g.moe_fp8_memory_efficiency), 1e-12);
  // HBM is busy for the bytes at the streaming efficiency; the SMs for the rest, which stretches
  // with the clock like compute-bound time.
  EXPECT_NEAR(triton.memory_busy_s, bytes / (bw * g.memory_efficiency), 1e-12);
  const double sm_bound = bytes / (bw * g.moe_fp8_memory_efficiency) - bytes / (bw * g.memory_efficiency);
  EXPECT_NEAR(triton.compute_bound_s, sm_bound, 1e-12);
  EXPECT_GT(triton.compute_busy_s, sm_bound);
  // DeepGEMM streams the same experts at memory_efficiency, with the FP8 quantisation fused.
  rf.set_moe_kernel(MoeKernel::deepgemm);
  std::vector<KernelWork> fused;
  for (int e = 0; e < 4; ++e) fused.push_back(expert_ffn_work(m, 2, 1, MoeKernel::deepgemm));
  const KernelTime deepgemm = rf.grouped(fused);
  EXPECT_NEAR(deepgemm.seconds - deepgemm.launch_s, bytes / (bw * g.memory_efficiency), 1e-12);
  EXPECT_EQ(deepgemm.compute_bound_s, 0.0);
  EXPECT_NEAR(triton.launch_s - deepgemm.launch_s, kFp8ActivationQuantKernels * g.kernel_graph_launch_us * 1e-6, 1e-15);
  // BF16 experts are not affected by the kernel choice.
  const ModelSpec bf = load_card<ModelSpec>("qwen3-235b-a22b");
  const std::vector<KernelWork> bf_parts(4, expert_ffn_work(bf, 2, 1));
  rf.set_moe_kernel(MoeKernel::triton);
  const KernelTime bf_triton = rf.grouped(bf_parts);
  rf.set_moe_kernel(MoeKernel::deepgemm);
  EXPECT_DOUBLE_EQ(rf.grouped(bf_parts).seconds, bf_triton.seconds);
}

TEST(LayerWork, fp8_gemms_pay_one_activation_quantisation_kernel_each) {
  const ModelSpec f8 = load_card<ModelSpec>("qwen3-235b-a22b-fp8"), bf = load_card<ModelSpec>("qwen3-235b-a22b");
  EXPECT_EQ(attention_projection_work(bf, 8, 8).launches, kGqaProjectionKernels);
  EXPECT_EQ(attention_projection_work(f8, 8, 8).launches, kGqaProjectionKernels + kFp8ActivationQuantKernels);
  EXPECT_EQ(expert_ffn_work(bf, 8, 1).launches, kMoeKernels);
  EXPECT_EQ(expert_ffn_work(f8, 8, 1).launches, kMoeKernels + kFp8ActivationQuantKernels);
  EXPECT_EQ(expert_ffn_work(f8, 8, 1, MoeKernel::deepgemm).launches, kMoeKernels);
  const ModelSpec ds = load_card<ModelSpec>("deepseek-v3");
  EXPECT_EQ(shared_expert_work(ds, 8, 1).launches, kSharedExpertKernels + kFp8ActivationQuantKernels);
  EXPECT_EQ(shared_expert_work(ds, 8, 1, MoeKernel::deepgemm).launches, kSharedExpertKernels);
  EXPECT_EQ(dense_ffn_work(ds, 8, 1).launches, kDenseFfnKernels + kFp8ActivationQuantKernels);
}

TEST(LayerWork, causal_prefill_attention_flops_and_gqa_decode_kv_reads) {
  const ModelSpec m = load_card<ModelSpec>("qwen3-30b-a3b");
  const double d = m.head_dim, heads = m.num_attention_heads;
  // A 1000-token prompt: each token attends to itself and its predecessors.
  const KernelWork p = attention_core_work(m, 1000, 0, 1);
  EXPECT_NEAR(p.flops, 2.0 * (1000.0 * 1001.0 / 2.0) * heads * (d + d), 1.0);
  // One decode token over 3000 cached tokens reads their K and V once (4 KV heads, BF16).
  const KernelWork dec = attention_core_work(m, 1, 3000, 1);
  const double kv = 2.0 * m.num_kv_heads * d * 2.0;
  EXPECT_NEAR(dec.bytes, (3000 + 2) * kv + heads * 2 * d * 2.0, 1.0);
  // TP4 over 4 KV heads: each shard reads one KV head.
  EXPECT_NEAR(attention_core_work(m, 1, 3000, 4).bytes, (3000 + 2) * kv / 4 + heads / 4 * 2 * d * 2.0, 1.0);
}

TEST(LayerWork, mla_decode_reads_the_latent_once_for_all_heads_in_the_absorbed_form) {
  const ModelSpec m = load_card<ModelSpec>("deepseek-v3");
  const double latent = m.kv_lora_rank + m.qk_rope_head_dim;  // 576
  const double heads = m.num_attention_heads;
  const KernelWork dec = attention_core_work(m, 1, 4989, 1);
  // KV cache: the latent of every cached token, once (not per head).
  EXPECT_NEAR(dec.bytes, (4989 + 2) * latent * 2.0 + heads * (latent + m.kv_lora_rank) * 2.0, 1.0);
  // Absorbed: scores over kv_lora + rope, values in the latent space.
  EXPECT_NEAR(dec.flops, 2.0 * (4989 + 1) * heads * (2.0 * m.kv_lora_rank + m.qk_rope_head_dim), 1.0);
  // The M rows of the absorbed attention are the 128 heads: far from the small-M penalty of one row.
  EXPECT_NEAR(dec.row_flops, dec.flops / heads, 1.0);
  // Prefill over cached tokens up-projects their latents to K and V (naive form).
  const KernelWork pre = attention_core_work(m, 100, 1000, 1);
  const double up = 2.0 * 1000 * m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim);
  const double pairs = 100.0 * 1000 + 100.0 * 101 / 2;
  EXPECT_NEAR(pre.flops, 2.0 * pairs * heads * (m.qk_head_dim() + m.value_head_dim()) + up, 1.0);
}

TEST(LayerWork, sampler_traffic_is_per_emitting_sequence_over_the_whole_vocabulary) {
  const ModelSpec m = load_card<ModelSpec>("qwen3-30b-a3b");
  EXPECT_NEAR(sampler_work(m, 10, 700).bytes, 10.0 * m.vocab_size * 700, 1.0);
  EXPECT_TRUE(sampler_work(m, 0, 700).empty());
}

}  // namespace
}  // namespace moesim::test
