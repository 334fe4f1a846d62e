#pragma once
// Architecture of a Mixture-of-Experts language model, as read from a catalog card
// (models/llm/cards/*.yaml, numbers from each model's Hugging Face config.json).
//
// Parameter counts (per transformer layer, H = hidden_size):
//   GQA attention  : H*(n_heads*d) [Q] + 2*H*(n_kv*d) [K,V] + (n_heads*d)*H [O]
//   MLA attention  : Q   = H*q_lora + q_lora*n_heads*(d_nope+d_rope)   (or H*n_heads*(d_nope+d_rope) without q_lora)
//                    KV  = H*(kv_lora+d_rope) + kv_lora*n_heads*(d_nope+d_v)
//                    O   = n_heads*d_v*H
//   routed expert  : 3*H*I_moe (gate, up, down projections of a SwiGLU FFN)
//   shared experts : 3*H*I_shared (I_shared = total width of all shared experts)
//   dense FFN      : 3*H*I_dense on the leading num_dense_layers
//   router         : H*E
//   embeddings     : V*H, plus V*H for the LM head unless tied
// KV cache bytes per token and layer: GQA 2*n_kv*d*b_kv, MLA (kv_lora+d_rope)*b_kv (the
// compressed latent is what MLA caches).
#include <cstdint>
#include <string>

namespace moesim {

enum class DType { bf16, fp16, fp8, fp4 };

[[nodiscard]] double bytes_per_element(DType dtype);
[[nodiscard]] const char* to_string(DType dtype);

enum class AttentionKind { gqa, mla };

/// How the gate turns logits into expert scores: softmax over all experts (Mixtral, Qwen3, OLMoE,
/// DeepSeek-V2) or an independent sigmoid per expert (DeepSeek-V3). Selection is the top k of the
/// logits either way (both are monotone); the weights of the chosen experts differ.
enum class GateScoring { softmax, sigmoid };

struct ModelSpec {
  std::string name;
  std::string display_name;
  std::string hf_id;
  int num_layers = 0;
  int hidden_size = 0;
  int vocab_size = 0;
  bool tie_word_embeddings = false;
  int max_position_embeddings = 0;
  AttentionKind attention = AttentionKind::gqa;
  int num_attention_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int q_lora_rank = 0;
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  int num_experts = 0;
  int top_k = 0;
  int moe_intermediate_size = 0;
  int num_shared_experts = 0;
  int shared_expert_intermediate_size = 0;
  int num_dense_layers = 0;
  int dense_intermediate_size = 0;
  int n_group = 0;
  int topk_group = 0;
  GateScoring scoring_func = GateScoring::softmax;
  DType weight_dtype = DType::bf16;
  DType expert_weight_dtype = DType::bf16;
  DType kv_cache_dtype = DType::bf16;
  double total_params_b = 0.0;
  double active_params_b = 0.0;
  double routing_specialization = 0.5;  ///< sigma of log expert popularity per (layer, domain)
  double routing_locality = 0.25;       ///< P(token repeats its predecessor's first-choice expert)

  [[nodiscard]] int num_moe_layers() const { return num_layers - num_dense_layers; }
  /// Attention parameters of one layer (Q, K, V, O projections, MLA low-rank factors).
  [[nodiscard]] double attention_params_per_layer() const;
  /// Width of the query-key dot product per head (GQA head_dim, MLA nope + rope).
  [[nodiscard]] int qk_head_dim() const;
  /// Width of the value vectors per head.
  [[nodiscard]] int value_head_dim() const;
  [[nodiscard]] double expert_params() const { return 3.0 * hidden_size * moe_intermediate_size; }
  [[nodiscard]] double shared_expert_params() const { return 3.0 * hidden_size * shared_expert_intermediate_size; }
  [[nodiscard]] double dense_ffn_params() const { return 3.0 * hidden_size * dense_intermediate_size; }
  [[nodiscard]] double router_params() const { return static_cast<double>(hidden_size) * num_experts; }
  [[nodiscard]] double embedding_params() const {
    return static_cast<double>(vocab_size) * hidden_size * (tie_word_embeddings ? 1.0 : 2.0);
  }
  /// All parameters computed from the architecture (compare with total_params_b from the card).
  [[nodiscard]] double total_params() const;
  /// Parameters one token touches (top_k routed experts).
  [[nodiscard]] double active_params() const;
  [[nodiscard]] double kv_bytes_per_token_per_layer() const;
  [[nodiscard]] double kv_bytes_per_token() const { return kv_bytes_per_token_per_layer() * num_layers; }
};

}  // namespace moesim
