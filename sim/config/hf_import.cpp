#include "sim/config/hf_import.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "models/common/input_error.hpp"
#include "models/common/input_file.hpp"
#include "sim/config/catalog.hpp"
#include "sim/config/schema.hpp"

namespace moesim {

namespace {

using nlohmann::json;

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> types{"llama",     "mistral",     "mixtral",   "qwen2",  "qwen2_moe", "qwen3",
                                              "qwen3_moe", "olmoe",       "deepseek_v2", "deepseek_v3", "kimi_k2",
                                              "gpt_oss",   "glm4_moe"};
  return types;
}

class Reader {
 public:
  Reader(std::string file, const json& cfg, std::string origin) : file_(std::move(file)), cfg_(cfg), origin_(std::move(origin)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& message) const { throw InputError({{file_, 0, key, message}}); }

  [[nodiscard]] bool has(const std::string& key) const { return cfg_.contains(key) && !cfg_[key].is_null(); }
  [[nodiscard]] const json& at(const std::string& key) const { return cfg_[key]; }

  /// An integer key; `fallback` when absent (or fails when required).
  int integer(const std::string& key, std::optional<int> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      fail(key, "missing (needed for the card)");
    }
    const json& v = cfg_[key];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > (1LL << 30))
      fail(key, "must be a non-negative integer (got " + v.dump() + ")");
    return v.get<int>();
  }
  [[nodiscard]] std::string text(const std::string& key, const std::string& fallback = "") const {
    if (!has(key)) return fallback;
    if (!cfg_[key].is_string()) fail(key, "must be a string (got " + cfg_[key].dump() + ")");
    return cfg_[key].get<std::string>();
  }
  /// The first of `keys` present, or "" when none is.
  [[nodiscard]] std::string first_of(std::initializer_list<const char*> keys) const {
    for (const char* k : keys)
      if (has(k)) return k;
    return "";
  }
  /// A citation: "<origin> (key)".
  [[nodiscard]] std::string cite(const std::string& what) const { return origin_ + " (" + what + ")"; }

 private:
  std::string file_;
  const json& cfg_;
  std::string origin_;
};

json read_json(const std::filesystem::path& path, const char* what) {
  std::ifstream in = open_regular_file(path, what);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw InputError({{path.string(), 0, "", std::string("not a JSON object (a ") + what + ")"}});
  return j;
}

double billions(double params) { return std::round(params / 1e6) / 1e3; }

/// A module list names attention (self_attn / attn) among the modules left unquantised.
bool names_attention(const json& modules) {
  if (!modules.is_array()) return false;
  return std::any_of(modules.begin(), modules.end(), [](const json& m) {
    return m.is_string() && (m.get<std::string>().find("self_attn") != std::string::npos || m.get<std::string>().find(".attn") != std::string::npos);
  });
}

}  // namespace

HfImport import_hf_config(const std::filesystem::path& config, const std::filesystem::path& quant_config, const HfImportOptions& opt) {
  const json root = read_json(config, "Hugging Face config.json");
  const bool nested = root.contains("text_config") && root["text_config"].is_object();
  const json& cfg = nested ? root["text_config"] : root;
  const std::string hf_id = !opt.hf_id.empty() ? opt.hf_id : root.value("_name_or_path", std::string());
  const std::string origin = hf_id.empty() ? config.filename().string()
                                           : "https://huggingface.co/" + hf_id + "/blob/main/config.json";
  const std::string prefix = nested ? "text_config." : "";
  Reader r(config.string(), cfg, origin);
  auto cite = [&](const std::string& keys) { return r.cite(prefix + keys); };

  HfImport out;
  ModelSpec& m = out.spec;
  auto& src = out.sources;
  const std::string model_type = r.text("model_type", root.value("model_type", std::string()));
  const auto& types = supported_model_types();
  if (std::find(types.begin(), types.end(), model_type) == types.end())
    r.fail("model_type", fmt::format("\"{}\" is not an architecture moesim imports; supported: {}", model_type, fmt::join(types, ", ")));

  // ---- layers the card cannot represent ------------------------------------------------------
  if (r.has("moe_layer_freq")) {
    const json& f = r.at("moe_layer_freq");
    if (!f.is_number_integer() || f.get<int>() != 1)
      r.fail("moe_layer_freq", "MoE layers interleaved with dense ones (" + f.dump() +
                                   ") are not modelled: a card has leading dense layers, then MoE layers");
  }
  if (r.has("decoder_sparse_step") && r.integer("decoder_sparse_step") != 1)
    r.fail("decoder_sparse_step", "MoE every " + std::to_string(r.integer("decoder_sparse_step")) +
                                      " layers is not modelled: a card has leading dense layers, then MoE layers");
  if (r.has("mlp_only_layers") && r.at("mlp_only_layers").is_array() && !r.at("mlp_only_layers").empty())
    r.fail("mlp_only_layers", "dense layers among the MoE layers are not modelled");
  if (r.has("interleave_moe_layer_step") && r.integer("interleave_moe_layer_step") != 1)
    r.fail("interleave_moe_layer_step", "MoE layers interleaved with dense ones are not modelled");
  if (r.has("layer_types")) {
    const json& lt = r.at("layer_types");
    if (!lt.is_array()) r.fail("layer_types", "must be a list of layer kinds");
    int windowed = 0;
    for (const auto& t : lt) {
      const std::string kind = t.is_string() ? t.get<std::string>() : t.dump();
      if (kind == "full_attention") continue;
      if (kind == "sliding_attention" || kind == "chunked_attention") {
        ++windowed;
        continue;
      }
      r.fail("layer_types", "layer kind \"" + kind + "\" is not modelled (full_attention; sliding_attention and "
                            "chunked_attention as full attention with --allow-approximations)");
    }
    if (windowed > 0) {
      if (!opt.allow_approximations)
        r.fail("layer_types", fmt::format("{} of {} layers use windowed attention, which moesim costs as full attention; "
                                          "pass --allow-approximations to import it so",
                                          windowed, lt.size()));
      out.notes.push_back(fmt::format("{} of {} layers use sliding-window or chunked attention (layer_types): costed as "
                                      "full attention, which overstates their KV cache and attention time at long context",
                                      windowed, lt.size()));
    }
  } else if (r.has("sliding_window") && (model_type == "mistral" || model_type == "mixtral" || cfg.value("use_sliding_window", false))) {
    if (!opt.allow_approximations)
      r.fail("sliding_window", "sliding-window attention is costed as full attention; pass --allow-approximations to import it so");
    out.notes.push_back("sliding_window " + r.at("sliding_window").dump() + ": costed as full attention");
  }
  if (r.has("attention_chunk_size")) {
    if (!opt.allow_approximations) r.fail("attention_chunk_size", "chunked attention is costed as full attention; pass --allow-approximations");
    out.notes.push_back("attention_chunk_size: costed as full attention");
  }
  for (const char* mtp : {"num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules"})
    if (r.has(mtp) && r.integer(mtp) > 0)
      out.notes.push_back(fmt::format("{} {}: the multi-token-prediction module is not modelled (not counted in num_layers "
                                      "or the parameters)",
                                      mtp, r.integer(mtp)));

  // ---- the shape -----------------------------------------------------------------------------
  m.hf_id = hf_id;
  src["hf_id"] = hf_id.empty() ? "not given (the config names no _name_or_path)" : "https://huggingface.co/" + hf_id + " (model repository)";
  m.num_layers = r.integer("num_hidden_layers");
  src["num_layers"] = cite("num_hidden_layers");
  m.hidden_size = r.integer("hidden_size");
  src["hidden_size"] = cite("hidden_size");
  m.vocab_size = r.integer("vocab_size");
  src["vocab_size"] = cite("vocab_size");
  m.tie_word_embeddings = cfg.value("tie_word_embeddings", root.value("tie_word_embeddings", false));
  src["tie_word_embeddings"] = cite(cfg.contains("tie_word_embeddings") ? "tie_word_embeddings" : "tie_word_embeddings absent: false");
  m.max_position_embeddings = r.integer("max_position_embeddings");
  src["max_position_embeddings"] = cite("max_position_embeddings");
  m.num_attention_heads = r.integer("num_attention_heads");
  src["num_attention_heads"] = cite("num_attention_heads");
  if (m.num_attention_heads < 1) r.fail("num_attention_heads", "must be >= 1");
  if (r.has("kv_lora_rank")) {
    m.attention = AttentionKind::mla;
    src["attention"] = cite("kv_lora_rank: multi-head latent attention");
    m.q_lora_rank = r.integer("q_lora_rank", 0);
    m.kv_lora_rank = r.integer("kv_lora_rank");
    m.qk_nope_head_dim = r.integer("qk_nope_head_dim");
    m.qk_rope_head_dim = r.integer("qk_rope_head_dim");
    m.v_head_dim = r.integer("v_head_dim");
    m.head_dim = m.v_head_dim;
    m.num_kv_heads = m.num_attention_heads;
    src["q_lora_rank"] = cite(r.has("q_lora_rank") ? "q_lora_rank" : "q_lora_rank null: no query compression");
    for (const char* k : {"kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}) src[k] = cite(k);
    src["head_dim"] = cite("v_head_dim, used as head_dim for MLA");
    src["num_kv_heads"] = cite("num_attention_heads: MLA caches one latent, the card's kv heads equal the heads");
  } else {
    m.attention = AttentionKind::gqa;
    m.num_kv_heads = r.integer("num_key_value_heads", m.num_attention_heads);
    m.head_dim = r.integer("head_dim", m.hidden_size / m.num_attention_heads);
    src["attention"] = cite(m.num_kv_heads < m.num_attention_heads ? "num_key_value_heads < num_attention_heads: grouped-query attention"
                                                                   : "no kv_lora_rank: multi-head attention, as gqa with kv heads = heads");
    src["num_kv_heads"] = cite(r.has("num_key_value_heads") ? "num_key_value_heads" : "num_key_value_heads absent: num_attention_heads");
    src["head_dim"] = cite(r.has("head_dim") ? "head_dim" : "head_dim absent: hidden_size / num_attention_heads");
    for (const char* k : {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"})
      src[k] = cite("no kv_lora_rank: not MLA, 0 by definition of this field");
  }

  // ---- experts -------------------------------------------------------------------------------
  const std::string experts_key = r.first_of({"num_local_experts", "n_routed_experts", "num_experts"});
  m.num_experts = experts_key.empty() ? 0 : r.integer(experts_key);
  const std::string intermediate = r.has("intermediate_size") ? "intermediate_size" : "";
  if (m.num_experts == 0) {
    m.top_k = 0;
    m.num_dense_layers = m.num_layers;
    m.dense_intermediate_size = r.integer("intermediate_size");
    src["num_experts"] = cite(experts_key.empty() ? "no expert count: a dense model" : experts_key + " 0: a dense model");
    src["top_k"] = cite("a dense model: nothing is routed");
    src["moe_intermediate_size"] = src["top_k"];
    src["num_dense_layers"] = cite("a dense model: every layer has a dense FFN");
    src["dense_intermediate_size"] = cite("intermediate_size");
  } else {
    src["num_experts"] = cite(experts_key);
    const std::string k_key = r.first_of({"num_experts_per_tok", "experts_per_token"});
    if (k_key.empty()) r.fail("num_experts_per_tok", "missing: an MoE config needs num_experts_per_tok or experts_per_token");
    m.top_k = r.integer(k_key);
    src["top_k"] = cite(k_key);
    const bool own_width = r.has("moe_intermediate_size");
    m.moe_intermediate_size = r.integer(own_width ? "moe_intermediate_size" : "intermediate_size");
    src["moe_intermediate_size"] = cite(own_width ? "moe_intermediate_size" : "intermediate_size: the width of each expert");
    m.num_dense_layers = r.integer("first_k_dense_replace", 0);
    src["num_dense_layers"] = cite(r.has("first_k_dense_replace") ? "first_k_dense_replace" : "no first_k_dense_replace: every layer is MoE");
    if (m.num_dense_layers > 0) {
      m.dense_intermediate_size = r.integer("intermediate_size");
      src["dense_intermediate_size"] = cite("intermediate_size: the FFN width of the leading dense layers");
    } else {
      src["dense_intermediate_size"] = cite("no dense layers: 0");
    }
    if (r.has("n_shared_experts") && r.integer("n_shared_experts") > 0) {
      m.num_shared_experts = r.integer("n_shared_experts");
      m.shared_expert_intermediate_size = m.num_shared_experts * m.moe_intermediate_size;
      src["num_shared_experts"] = cite("n_shared_experts");
      src["shared_expert_intermediate_size"] = cite("n_shared_experts x moe_intermediate_size");
    } else if (r.has("shared_expert_intermediate_size") && r.integer("shared_expert_intermediate_size") > 0) {
      m.num_shared_experts = 1;
      m.shared_expert_intermediate_size = r.integer("shared_expert_intermediate_size");
      src["num_shared_experts"] = cite("shared_expert_intermediate_size: one shared expert");
      src["shared_expert_intermediate_size"] = cite("shared_expert_intermediate_size");
    } else {
      src["num_shared_experts"] = cite("no n_shared_experts or shared_expert_intermediate_size: none");
      src["shared_expert_intermediate_size"] = src["num_shared_experts"];
    }
    const std::string method = r.text("topk_method");
    if ((method == "group_limited_greedy" || method == "noaux_tc") && r.integer("n_group", 1) > 1) {
      m.n_group = r.integer("n_group");
      m.topk_group = r.integer("topk_group");
      src["n_group"] = cite("n_group; topk_method " + method);
      src["topk_group"] = cite("topk_group");
    } else {
      src["n_group"] = cite("no group-limited routing (topk_method " + (method.empty() ? std::string("absent") : method) + "): 0");
      src["topk_group"] = src["n_group"];
    }
  }
  if (m.num_experts == 0) {
    src["num_shared_experts"] = cite("a dense model: none");
    src["shared_expert_intermediate_size"] = src["num_shared_experts"];
    src["n_group"] = src["num_shared_experts"];
    src["topk_group"] = src["num_shared_experts"];
  }
  const std::string scoring = r.text("scoring_func", "softmax");
  if (scoring != "softmax" && scoring != "sigmoid") r.fail("scoring_func", "must be softmax or sigmoid (got \"" + scoring + "\")");
  m.scoring_func = scoring == "sigmoid" ? GateScoring::sigmoid : GateScoring::softmax;
  src["scoring_func"] = cite(r.has("scoring_func") ? "scoring_func" : "scoring_func absent: softmax");

  // ---- precision -----------------------------------------------------------------------------
  const std::string torch_dtype = r.text("torch_dtype", root.value("torch_dtype", std::string("bfloat16")));
  const DType base = torch_dtype == "float16" ? DType::fp16 : DType::bf16;
  m.weight_dtype = m.expert_weight_dtype = m.kv_cache_dtype = base;
  std::string dtype_src = "torch_dtype " + torch_dtype;
  std::string expert_src = dtype_src, kv_src = dtype_src + " (no FP8 KV cache set)";
  const json* qc = root.contains("quantization_config") ? &root["quantization_config"]
                                                        : (cfg.contains("quantization_config") ? &cfg["quantization_config"] : nullptr);
  if (qc != nullptr && qc->is_object()) {
    const std::string qm = qc->value("quant_method", std::string());
    if (qm == "fp8") {
      m.weight_dtype = m.expert_weight_dtype = DType::fp8;
      dtype_src = expert_src = "quantization_config: quant_method fp8";
    } else if (qm == "mxfp4") {
      m.expert_weight_dtype = DType::fp4;
      expert_src = "quantization_config: quant_method mxfp4";
      const json modules = qc->value("modules_to_not_convert", json::array());
      if (!names_attention(modules)) m.weight_dtype = DType::fp4;
      dtype_src = names_attention(modules) ? "quantization_config.modules_to_not_convert lists attention: " + torch_dtype
                                           : "quantization_config: quant_method mxfp4";
    } else {
      throw InputError({{config.string(), 0, "quantization_config.quant_method",
                         "\"" + qm + "\" is not a quantization moesim imports (fp8, mxfp4; NVFP4 through hf_quant_config.json)"}});
    }
  }
  if (!quant_config.empty()) {
    const json q = read_json(quant_config, "ModelOpt hf_quant_config.json");
    const json quant = q.value("quantization", json::object());
    const std::string algo = quant.value("quant_algo", std::string());
    const std::string qorigin = quant_config.filename().string();
    if (algo == "FP8" || algo == "NVFP4") {
      const DType d = algo == "FP8" ? DType::fp8 : DType::fp4;
      m.expert_weight_dtype = d;
      expert_src = qorigin + " (quantization.quant_algo " + algo + ")";
      if (!names_attention(quant.value("exclude_modules", json::array()))) {
        m.weight_dtype = d;
        dtype_src = expert_src;
      }
    } else {
      throw InputError({{quant_config.string(), 0, "quantization.quant_algo", "\"" + algo + "\" is not FP8 or NVFP4"}});
    }
    if (quant.contains("kv_cache_quant_algo") && quant["kv_cache_quant_algo"].is_string()) {
      const std::string kv = quant["kv_cache_quant_algo"].get<std::string>();
      if (kv != "FP8") throw InputError({{quant_config.string(), 0, "quantization.kv_cache_quant_algo", "\"" + kv + "\" is not FP8"}});
      m.kv_cache_dtype = DType::fp8;
      kv_src = qorigin + " (quantization.kv_cache_quant_algo FP8)";
    }
  }
  src["weight_dtype"] = r.cite(dtype_src);
  src["expert_weight_dtype"] = r.cite(expert_src);
  src["kv_cache_dtype"] = r.cite(kv_src);

  // ---- names and counts ----------------------------------------------------------------------
  std::string name = opt.name;
  if (name.empty()) {
    name = hf_id.empty() ? config.parent_path().filename().string() : hf_id.substr(hf_id.find('/') + 1);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  if (name.empty() || name.size() > 100 || name[0] == '.' || name[0] == '-' ||
      !std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '_' || c == '-'; }))
    throw InputError({{config.string(), 0, "", "card name \"" + name + "\" must be 1-100 of A-Z a-z 0-9 . _ -, not starting with . or - (--name)"}});
  m.name = name;
  m.display_name = hf_id.empty() ? name : hf_id.substr(hf_id.find('/') + 1);
  out.computed_total_params_b = billions(m.total_params());
  out.computed_active_params_b = billions(m.active_params());
  const auto count = [&](double published, double computed, double& field, const char* key) {
    if (published > 0) {
      if (std::fabs(computed - published) > 0.01 * published)
        throw InputError({{config.string(), 0, key, fmt::format("the architecture gives {:.4g} B parameters, {:.1f}% from the published {:.4g} B: "
                                                                "a part of the model is not mapped (or the figure is wrong)",
                                                                computed, 100 * (computed - published) / published, published)}});
      field = published;
      src[key] = fmt::format("as published (given to moesim import-hf); the config's architecture gives {:.4g} B", computed);
    } else {
      field = computed;
      src[key] = r.cite(fmt::format("computed by moesim import-hf from the architecture: {:.4g} B", computed));
    }
  };
  count(opt.total_params_b, out.computed_total_params_b, m.total_params_b, "total_params_b");
  count(opt.active_params_b, out.computed_active_params_b, m.active_params_b, "active_params_b");
  const bool dense = m.num_experts == 0;
  m.routing_specialization = dense ? 0.0 : 1.0;
  m.routing_locality = dense ? 0.0 : 0.25;
  if (dense) {
    src["routing_specialization"] = "a dense model: nothing is routed";
    src["routing_locality"] = src["routing_specialization"];
  } else {
    out.estimates["routing_specialization"] = "estimate: config.json does not say how the gate specialises by domain; "
                                              "the catalog's default for fine-grained MoE (1.0); fit it to a routing trace";
    out.estimates["routing_locality"] = "estimate: no published measurement; Mixtral-8x7B deep-layer value (0.25, Mixtral paper section 5) assumed";
  }
  if (!out.notes.empty()) src["num_layers"] += "; " + fmt::format("{}", fmt::join(out.notes, "; "));
  return out;
}

std::string hf_card_yaml(const HfImport& imported) {
  YAML::Node node = schema_of<ModelSpec>().dump(imported.spec);
  YAML::Node sources(YAML::NodeType::Map), estimates(YAML::NodeType::Map);
  for (const auto& f : schema_of<ModelSpec>().fields()) {
    if (auto it = imported.sources.find(f.name); it != imported.sources.end()) sources[f.name] = it->second;
    if (auto it = imported.estimates.find(f.name); it != imported.estimates.end()) estimates[f.name] = it->second;
  }
  node["sources"] = sources;
  if (estimates.size() > 0) node["estimates"] = estimates;
  YAML::Emitter e;
  e << node;
  return std::string("# Imported by moesim import-hf; check the estimates before relying on them.\n") + e.c_str() + "\n";
}

}  // namespace moesim
