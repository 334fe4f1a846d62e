#include "models/llm/layer_work.hpp"

namespace moesim {
namespace {
/// GEMM of `tokens` rows through `params` weights laid out as k x n with k + n = `io_width`.
KernelWork gemm(double tokens, double params, double io_width, DType wdtype) {
  if (tokens <= 0.0 || params <= 0.0) return {0.0, 0.0, wdtype};
  return {2.0 * tokens * params, params * bytes_per_element(wdtype) + tokens * io_width * kActivationBytes, wdtype};
}
}  // namespace

KernelWork attention_projection_work(const ModelSpec& m, double tokens, int shards) {
  const double h = m.hidden_size;
  const double io = 2.0 * h + (m.num_attention_heads * (m.qk_head_dim() + m.value_head_dim())) / static_cast<double>(shards);
  return gemm(tokens, m.attention_params_per_layer() / shards, io, m.weight_dtype);
}

KernelWork attention_core_work(const ModelSpec& m, double new_tokens, double cached_tokens, int shards) {
  if (new_tokens <= 0.0) return {0.0, 0.0, DType::bf16};
  const double pairs = new_tokens * cached_tokens + new_tokens * (new_tokens + 1.0) / 2.0;
  const double heads = static_cast<double>(m.num_attention_heads) / shards;
  const double flops = 2.0 * pairs * heads * (m.qk_head_dim() + m.value_head_dim());
  double kv_per_token = m.kv_bytes_per_token_per_layer();
  if (m.attention == AttentionKind::gqa && shards > 1) {
    const double kv_heads = m.num_kv_heads >= shards ? static_cast<double>(m.num_kv_heads) / shards : 1.0;
    kv_per_token = kv_per_token * kv_heads / m.num_kv_heads;
  }
  const double q_and_out = new_tokens * heads * (m.qk_head_dim() + m.value_head_dim()) * kActivationBytes;
  const double bytes = (cached_tokens + 2.0 * new_tokens) * kv_per_token + q_and_out;
  return {flops, bytes, DType::bf16};
}

KernelWork expert_ffn_work(const ModelSpec& m, double tokens, int shards) {
  const double width = static_cast<double>(m.moe_intermediate_size) / shards;
  return gemm(tokens, m.expert_params() / shards, 2.0 * m.hidden_size + 2.0 * width, m.expert_weight_dtype);
}

KernelWork shared_expert_work(const ModelSpec& m, double tokens, int shards) {
  const double width = static_cast<double>(m.shared_expert_intermediate_size) / shards;
  return gemm(tokens, m.shared_expert_params() / shards, 2.0 * m.hidden_size + 2.0 * width, m.expert_weight_dtype);
}

KernelWork dense_ffn_work(const ModelSpec& m, double tokens, int shards) {
  const double width = static_cast<double>(m.dense_intermediate_size) / shards;
  return gemm(tokens, m.dense_ffn_params() / shards, 2.0 * m.hidden_size + 2.0 * width, m.weight_dtype);
}

KernelWork lm_head_work(const ModelSpec& m, double tokens, int shards) {
  const double params = static_cast<double>(m.vocab_size) * m.hidden_size / shards;
  return gemm(tokens, params, m.hidden_size + static_cast<double>(m.vocab_size) / shards, m.weight_dtype);
}

}  // namespace moesim
