#pragma once
// FLOPs and HBM bytes of the kernels of one transformer layer on one GPU, for the roofline model
// (models/gpu/kernel_cost.hpp). A GEMM of m tokens by a (k x n) weight costs 2*m*k*n FLOPs and
// reads the weight once (k*n*b_w bytes) plus its activations (m*(k+n)*b_a bytes); its M = m rows
// are what the roofline pads to the tile and puts on the small-M curve. `shards` splits weights
// and heads over a tensor-parallel group (Megatron-style column/row split).
//
//   attention projections : weights = attention_params_per_layer / shards, plus the per-token
//                           elementwise traffic of the layer (two fused residual-add RMSNorms)
//   attention core        : for a sequence that adds n tokens after c cached ones, each new token
//                           attends to c + i keys (causal): pairs = n*c + n(n+1)/2
//     GQA                 : 2 * pairs * heads/shards * (d_qk + d_v) FLOPs; reads the (c + n)-token
//                           KV cache once (KV heads split over shards, replicated below one per shard)
//     MLA, decode (n = 1) : absorbed form (FlashMLA): queries move into the latent space, so
//                           2 * pairs * heads/shards * (2*kv_lora + d_rope) FLOPs over the cached
//                           latent of (kv_lora + d_rope) elements per token, read once for all heads
//     MLA, prefill        : naive form: 2 * pairs * heads/shards * (d_qk + d_v) FLOPs, plus the
//                           up-projection of the c cached latents to K and V
//                           (2 * c * kv_lora * heads/shards * (d_nope + d_v) FLOPs) and their traffic
//   routed expert         : 3 GEMMs (gate, up, down) over its n tokens; weights read once when n > 0;
//                           one of the GEMMs of the grouped fused-MoE kernel
//   shared experts, dense FFN: the same over every token
//   LM head               : logits only for the tokens that emit an output token
//   sampler               : every emitting sequence's full-vocabulary logits, bytes_per_logit each
//
// Kernel counts (each pays the card's per-kernel cost) follow a vLLM decoder layer: see the
// k*Kernels constants.
#include "models/gpu/kernel_cost.hpp"
#include "models/llm/model_spec.hpp"

namespace moesim {

/// Bytes of one activation element moving between kernels (BF16 hidden states).
inline constexpr double kActivationBytes = 2.0;

/// Kernels per block of a decoder layer as vLLM runs it.
/// Attention projections, GQA: input RMSNorm, QKV GEMM, RoPE, KV-cache write, O GEMM.
inline constexpr int kGqaProjectionKernels = 5;
/// Attention projections, MLA: input RMSNorm, q_a GEMM, q_a RMSNorm, q_b GEMM, kv_a GEMM, kv_a
/// RMSNorm, RoPE, latent-cache write, W_UK/W_UV batched GEMMs (absorbed) or kv_b GEMM, O GEMM.
inline constexpr int kMlaProjectionKernels = 10;
/// The attention kernel of a batch (one varlen launch for its prefill sequences, one for its decodes).
inline constexpr int kAttentionCoreKernels = 1;
/// MoE block: post-attention RMSNorm, router GEMM, top-k, token sort/align, gate-up grouped GEMM,
/// activation, down grouped GEMM, weighted sum of the top-k outputs.
inline constexpr int kMoeKernels = 8;
/// Shared experts beside the routed ones: gate-up GEMM, activation, down GEMM.
inline constexpr int kSharedExpertKernels = 3;
/// Dense FFN layer: post-attention RMSNorm, gate-up GEMM, activation, down GEMM.
inline constexpr int kDenseFfnKernels = 4;
/// FP8 GEMMs quantise their BF16 input activations on the fly (one scale per token and 128
/// channels) with a kernel of their own before each block-scaled GEMM, as vLLM's FP8 linear and
/// fused-MoE paths do: attention projections (QKV, O), dense FFN and shared experts (gate-up,
/// down), and the routed experts in the Triton fused-MoE kernel (gate-up, down). DeepSeek's stack
/// (MoeKernel::deepgemm) fuses the routed and shared experts' quantisation into the dispatch and
/// the activation kernel.
inline constexpr int kFp8ActivationQuantKernels = 2;
/// LM head: final RMSNorm, vocabulary GEMM, sampler.
inline constexpr int kLmHeadKernels = 3;
inline constexpr int kSamplerKernels = 1;

[[nodiscard]] KernelWork attention_projection_work(const ModelSpec& m, double tokens, int shards);
/// One sequence's attention core: `new_tokens` queries over `cached_tokens` + new keys.
[[nodiscard]] KernelWork attention_core_work(const ModelSpec& m, double new_tokens, double cached_tokens, int shards);
/// One routed expert over `tokens` tokens, its weights split `shards` ways (mode tp) or whole (1).
[[nodiscard]] KernelWork expert_ffn_work(const ModelSpec& m, double tokens, int shards, MoeKernel kernel = MoeKernel::triton);
[[nodiscard]] KernelWork shared_expert_work(const ModelSpec& m, double tokens, int shards, MoeKernel kernel = MoeKernel::triton);
[[nodiscard]] KernelWork dense_ffn_work(const ModelSpec& m, double tokens, int shards);
[[nodiscard]] KernelWork lm_head_work(const ModelSpec& m, double tokens, int shards);
/// Sampling the next token of `tokens` sequences from their full-vocabulary logits: HBM traffic of
/// `bytes_per_logit` per vocabulary entry (serving.sampler_bytes_per_logit: a sort-based top-p /
/// top-k sampler passes over FP32 logits and int64 indices many times; greedy argmax reads 4 bytes).
[[nodiscard]] KernelWork sampler_work(const ModelSpec& m, double tokens, double bytes_per_logit);

}  // namespace moesim
