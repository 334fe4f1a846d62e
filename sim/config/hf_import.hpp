#pragma once
// `moesim import-hf`: a model card from a Hugging Face config.json (and ModelOpt's
// hf_quant_config.json), every field cited to the key it came from.
//
// Read from `text_config` when present (multimodal wrappers). Mapped keys:
//   num_layers               num_hidden_layers
//   hidden_size, vocab_size, max_position_embeddings, tie_word_embeddings (default false)
//   attention                mla when kv_lora_rank is set (q_lora_rank, kv_lora_rank, qk_nope_head_dim,
//                            qk_rope_head_dim, v_head_dim; head_dim = v_head_dim, kv heads = heads),
//                            gqa otherwise (num_key_value_heads, default num_attention_heads;
//                            head_dim, default hidden_size / num_attention_heads)
//   num_experts              num_local_experts | n_routed_experts | num_experts (absent or 0: dense)
//   top_k                    num_experts_per_tok | experts_per_token
//   moe_intermediate_size    moe_intermediate_size, else intermediate_size (Mixtral, gpt-oss)
//   num_dense_layers         first_k_dense_replace (dense_intermediate_size = intermediate_size);
//                            every layer for a dense model
//   shared experts           n_shared_experts x moe_intermediate_size, or shared_expert_intermediate_size
//   n_group, topk_group      with topk_method group_limited_greedy or noaux_tc and n_group > 1
//   scoring_func             sigmoid | softmax (default)
//   dtypes                   torch_dtype; quantization_config.quant_method fp8 (all linear layers) or
//                            mxfp4 (experts; the rest as modules_to_not_convert says); ModelOpt
//                            quantization.quant_algo FP8 | NVFP4 and kv_cache_quant_algo FP8
//   total / active params    computed from the architecture (ModelSpec::total_params), or the
//                            published figures given on the command line (then checked within 1%)
// Refused, naming the key: a model_type outside the supported list; MoE layers interleaved with
// dense ones (moe_layer_freq != 1, decoder_sparse_step != 1, mlp_only_layers,
// interleave_moe_layer_step != 1); linear-attention layers (layer_types); other quantization
// methods. Sliding-window and chunked attention layers are refused unless approximations are
// allowed, when they are costed as full attention and the card says so.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "models/llm/model_spec.hpp"

namespace moesim {

struct HfImportOptions {
  std::string name;                     ///< card name; default: from hf_id or the config's folder
  std::string hf_id;                    ///< default: the config's _name_or_path
  double total_params_b = 0;            ///< published figures (0: computed)
  double active_params_b = 0;
  bool allow_approximations = false;    ///< sliding-window / chunked layers costed as full attention
};

struct HfImport {
  ModelSpec spec;
  std::map<std::string, std::string> sources;    ///< field -> the key(s) it came from
  std::map<std::string, std::string> estimates;  ///< field -> why it is an estimate
  std::vector<std::string> notes;                ///< approximations and parts not modelled
  double computed_total_params_b = 0, computed_active_params_b = 0;
};

/// Throws InputError (file, key, message) for a config it cannot map faithfully.
[[nodiscard]] HfImport import_hf_config(const std::filesystem::path& config, const std::filesystem::path& quant_config,
                                        const HfImportOptions& options);

/// The card's YAML text: the fields in schema order, then sources and estimates.
[[nodiscard]] std::string hf_card_yaml(const HfImport& imported);

}  // namespace moesim
