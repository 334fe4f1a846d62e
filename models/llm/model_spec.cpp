#include "models/llm/model_spec.hpp"

namespace moesim {

double bytes_per_element(DType dtype) {
  switch (dtype) {
    case DType::bf16:
    case DType::fp16: return 2.0;
    case DType::fp8: return 1.0;
    case DType::fp4: return 0.5;
  }
  return 2.0;
}

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
    case DType::fp8: return "fp8";
    case DType::fp4: return "fp4";
  }
  return "bf16";
}

double ModelSpec::attention_params_per_layer() const {
  const double h = hidden_size;
  const double nh = num_attention_heads;
  if (attention == AttentionKind::gqa) {
    const double d = head_dim;
    return h * nh * d + 2.0 * h * num_kv_heads * d + nh * d * h;
  }
  const double qk = qk_nope_head_dim + qk_rope_head_dim;
  const double q = q_lora_rank > 0 ? h * q_lora_rank + static_cast<double>(q_lora_rank) * nh * qk : h * nh * qk;
  const double kv = h * (kv_lora_rank + qk_rope_head_dim) +
                    static_cast<double>(kv_lora_rank) * nh * (qk_nope_head_dim + v_head_dim);
  const double o = nh * v_head_dim * h;
  return q + kv + o;
}

int ModelSpec::qk_head_dim() const {
  return attention == AttentionKind::gqa ? head_dim : qk_nope_head_dim + qk_rope_head_dim;
}

int ModelSpec::value_head_dim() const { return attention == AttentionKind::gqa ? head_dim : v_head_dim; }

double ModelSpec::total_params() const {
  const double per_moe_layer = num_experts * expert_params() + shared_expert_params() + router_params();
  return num_layers * attention_params_per_layer() + num_moe_layers() * per_moe_layer +
         num_dense_layers * dense_ffn_params() + embedding_params();
}

double ModelSpec::active_params() const {
  const double per_moe_layer = top_k * expert_params() + shared_expert_params() + router_params();
  return num_layers * attention_params_per_layer() + num_moe_layers() * per_moe_layer +
         num_dense_layers * dense_ffn_params() + embedding_params();
}

double ModelSpec::kv_bytes_per_token_per_layer() const {
  const double b = bytes_per_element(kv_cache_dtype);
  if (attention == AttentionKind::mla) return (kv_lora_rank + qk_rope_head_dim) * b;
  return 2.0 * num_kv_heads * head_dim * b;
}

}  // namespace moesim
