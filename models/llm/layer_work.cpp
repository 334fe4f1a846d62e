#include "models/llm/layer_work.hpp"

namespace moesim {
namespace {
/// GEMM of `tokens` rows through `params` weights laid out as k x n with k + n = `io_width`.
KernelWork gemm(double tokens, double params, double io_width, DType wdtype, int launches) {
  if (tokens <= 0.0 || params <= 0.0) return {0.0, 0.0, wdtype};
  KernelWork w;
  w.flops = 2.0 * tokens * params;
  w.bytes = params * bytes_per_element(wdtype) + tokens * io_width * kActivationBytes;
  w.math_dtype = wdtype;
  w.rows = tokens;
  w.row_flops = 2.0 * params;
  w.launches = launches;
  return w;
}

/// Activation-quantisation kernels in front of a block of FP8 GEMMs (kFp8ActivationQuantKernels).
int quant_kernels(DType weights, bool fused = false) {
  return weights == DType::fp8 && !fused ? kFp8ActivationQuantKernels : 0;
}

/// Per-token elementwise traffic of a layer: two fused residual-add RMSNorms, each reading and
/// writing the hidden state and the residual.
constexpr double kNormAccessesPerLayer = 8.0;
}  // namespace

KernelWork attention_projection_work(const ModelSpec& m, double tokens, int shards) {
  const double h = m.hidden_size;
  const double io = 2.0 * h + (m.num_attention_heads * (m.qk_head_dim() + m.value_head_dim())) / static_cast<double>(shards);
  const int launches = (m.attention == AttentionKind::mla ? kMlaProjectionKernels : kGqaProjectionKernels) + quant_kernels(m.weight_dtype);
  KernelWork w = gemm(tokens, m.attention_params_per_layer() / shards, io, m.weight_dtype, launches);
  w.bytes += tokens * h * kActivationBytes * kNormAccessesPerLayer;
  return w;
}

KernelWork attention_core_work(const ModelSpec& m, double new_tokens, double cached_tokens, int shards) {
  if (new_tokens <= 0.0) return {0.0, 0.0, DType::bf16};
  const double pairs = new_tokens * cached_tokens + new_tokens * (new_tokens + 1.0) / 2.0;
  const double heads = static_cast<double>(m.num_attention_heads) / shards;
  KernelWork w;
  w.math_dtype = DType::bf16;
  w.launches = kAttentionCoreKernels;
  const double kv_per_token = m.kv_bytes_per_token_per_layer();
  if (m.attention == AttentionKind::mla) {
    // The latent cache is replicated on every shard: each reads all of it.
    if (new_tokens <= 1.0) {
      const double latent = m.kv_lora_rank + m.qk_rope_head_dim;
      w.flops = 2.0 * pairs * heads * (2.0 * m.kv_lora_rank + m.qk_rope_head_dim);
      const double q_and_out = new_tokens * heads * (latent + m.kv_lora_rank) * kActivationBytes;
      w.bytes = (cached_tokens + 2.0 * new_tokens) * kv_per_token + q_and_out;
    } else {
      const double qk = m.qk_head_dim(), v = m.value_head_dim();
      const double up = 2.0 * cached_tokens * m.kv_lora_rank * heads * (m.qk_nope_head_dim + v);
      w.flops = 2.0 * pairs * heads * (qk + v) + up;
      const double q_and_out = new_tokens * heads * (qk + v) * kActivationBytes;
      // Cached latents read, new ones written, and the decompressed K/V of the context written
      // and read back by the attention kernel.
      w.bytes = (cached_tokens + 2.0 * new_tokens) * kv_per_token + q_and_out +
                2.0 * cached_tokens * heads * (qk + v) * kActivationBytes;
    }
  } else {
    w.flops = 2.0 * pairs * heads * (m.qk_head_dim() + m.value_head_dim());
    double kv = kv_per_token;
    if (shards > 1) {
      const double kv_heads = m.num_kv_heads >= shards ? static_cast<double>(m.num_kv_heads) / shards : 1.0;
      kv = kv * kv_heads / m.num_kv_heads;
    }
    const double q_and_out = new_tokens * heads * (m.qk_head_dim() + m.value_head_dim()) * kActivationBytes;
    w.bytes = (cached_tokens + 2.0 * new_tokens) * kv + q_and_out;
  }
  // The M rows of the attention GEMMs: each new token's query heads that share one K/V (a GQA
  // group; all heads of an absorbed-MLA decode, whose heads share the latent). Short prompts and
  // decodes with few heads per K/V sit low on the small-M curve.
  double rows_per_token = 1.0;
  if (m.attention == AttentionKind::mla) rows_per_token = new_tokens <= 1.0 ? heads : 1.0;
  else rows_per_token = static_cast<double>(m.num_attention_heads) / m.num_kv_heads;
  w.row_flops = w.flops / (new_tokens * rows_per_token);
  return w;
}

KernelWork expert_ffn_work(const ModelSpec& m, double tokens, int shards, MoeKernel kernel) {
  const double width = static_cast<double>(m.moe_intermediate_size) / shards;
  const int launches = kMoeKernels + quant_kernels(m.expert_weight_dtype, kernel == MoeKernel::deepgemm);
  KernelWork w = gemm(tokens, m.expert_params() / shards, 2.0 * m.hidden_size + 2.0 * width, m.expert_weight_dtype, launches);
  w.grouped = true;
  return w;
}

KernelWork shared_expert_work(const ModelSpec& m, double tokens, int shards, MoeKernel kernel) {
  const double width = static_cast<double>(m.shared_expert_intermediate_size) / shards;
  return gemm(tokens, m.shared_expert_params() / shards, 2.0 * m.hidden_size + 2.0 * width, m.expert_weight_dtype,
              kSharedExpertKernels + quant_kernels(m.expert_weight_dtype, kernel == MoeKernel::deepgemm));
}

KernelWork dense_ffn_work(const ModelSpec& m, double tokens, int shards) {
  const double width = static_cast<double>(m.dense_intermediate_size) / shards;
  return gemm(tokens, m.dense_ffn_params() / shards, 2.0 * m.hidden_size + 2.0 * width, m.weight_dtype,
              kDenseFfnKernels + quant_kernels(m.weight_dtype));
}

KernelWork lm_head_work(const ModelSpec& m, double tokens, int shards) {
  const double vocab = static_cast<double>(m.vocab_size) / shards;
  const double params = vocab * m.hidden_size;
  return gemm(tokens, params, m.hidden_size + vocab, m.weight_dtype, kLmHeadKernels - kSamplerKernels);
}

KernelWork sampler_work(const ModelSpec& m, double tokens, double bytes_per_logit) {
  if (tokens <= 0.0) return {};
  KernelWork w;
  w.bytes = tokens * static_cast<double>(m.vocab_size) * bytes_per_logit;
  w.math_dtype = DType::bf16;
  w.launches = kSamplerKernels;
  return w;
}

}  // namespace moesim
