#pragma once
// FLOPs and HBM bytes of the kernels of one transformer layer on one GPU, for the roofline model.
// A GEMM of m tokens by a (k x n) weight costs 2*m*k*n FLOPs and reads the weight once (k*n*b_w
// bytes) plus its activations (m*(k+n)*b_a bytes). `shards` splits weights and heads over a
// tensor-parallel group (Megatron-style column/row split).
//
//   attention projections : weights = attention_params_per_layer / shards
//   attention core        : for a sequence that adds n tokens after c cached ones, each new token
//                           attends to c + i keys (causal), so QK^T and PV cost
//                             2 * (n*c + n(n+1)/2) * heads/shards * (d_qk + d_v)  FLOPs
//                           and read the (c + n)-token KV cache once (writes n tokens).
//   routed expert         : 3 GEMMs (gate, up, down) over its n tokens; weights read once when n > 0
//   shared experts, dense FFN: the same over every token
//   LM head               : logits only for the tokens that emit an output token
#include "models/gpu/kernel_cost.hpp"
#include "models/llm/model_spec.hpp"

namespace moesim {

/// Bytes of one activation element moving between kernels (BF16 hidden states).
inline constexpr double kActivationBytes = 2.0;

[[nodiscard]] KernelWork attention_projection_work(const ModelSpec& m, double tokens, int shards);
/// One sequence's attention core: `new_tokens` queries over `cached_tokens` + new keys.
[[nodiscard]] KernelWork attention_core_work(const ModelSpec& m, double new_tokens, double cached_tokens, int shards);
/// One routed expert over `tokens` tokens, its weights split `shards` ways (mode tp) or whole (1).
[[nodiscard]] KernelWork expert_ffn_work(const ModelSpec& m, double tokens, int shards);
[[nodiscard]] KernelWork shared_expert_work(const ModelSpec& m, double tokens, int shards);
[[nodiscard]] KernelWork dense_ffn_work(const ModelSpec& m, double tokens, int shards);
[[nodiscard]] KernelWork lm_head_work(const ModelSpec& m, double tokens, int shards);

}  // namespace moesim
