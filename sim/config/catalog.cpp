#include "sim/config/catalog.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#ifndef MOESIM_DEFAULT_HOME
#define MOESIM_DEFAULT_HOME "."
#endif

namespace moesim {

const std::vector<std::pair<std::string, DType>>& EnumNames<DType>::get() {
  static const std::vector<std::pair<std::string, DType>> names{
      {"bf16", DType::bf16}, {"fp16", DType::fp16}, {"fp8", DType::fp8}, {"fp4", DType::fp4}};
  return names;
}

const std::vector<std::pair<std::string, AttentionKind>>& EnumNames<AttentionKind>::get() {
  static const std::vector<std::pair<std::string, AttentionKind>> names{{"gqa", AttentionKind::gqa},
                                                                         {"mla", AttentionKind::mla}};
  return names;
}

const std::vector<std::pair<std::string, GateScoring>>& EnumNames<GateScoring>::get() {
  static const std::vector<std::pair<std::string, GateScoring>> names{{"softmax", GateScoring::softmax},
                                                                       {"sigmoid", GateScoring::sigmoid}};
  return names;
}

void describe(Schema<ModelSpec>& s) {
  using M = ModelSpec;
  s.field("name", &M::name).doc("card name (the file stem)");
  s.field("display_name", &M::display_name).doc("name as published");
  s.field("hf_id", &M::hf_id).doc("Hugging Face repository id");
  s.field("num_layers", &M::num_layers).min(1).max(1024).doc("transformer layers (num_hidden_layers)");
  s.field("hidden_size", &M::hidden_size).min(1).max(1 << 20).unit("elements");
  s.field("vocab_size", &M::vocab_size).min(1).max(1 << 24).unit("tokens");
  s.field("tie_word_embeddings", &M::tie_word_embeddings).doc("LM head shares the embedding matrix");
  s.field("max_position_embeddings", &M::max_position_embeddings).min(1).max(1 << 24).unit("tokens");
  s.field("attention", &M::attention).doc("gqa: grouped-query attention; mla: multi-head latent attention");
  s.field("num_attention_heads", &M::num_attention_heads).min(1).max(4096);
  s.field("num_kv_heads", &M::num_kv_heads).min(1).max(4096);
  s.field("head_dim", &M::head_dim).min(1).max(1 << 16).unit("elements");
  s.field("q_lora_rank", &M::q_lora_rank).min(0).max(1 << 20).doc("MLA query compression rank; 0 for none");
  s.field("kv_lora_rank", &M::kv_lora_rank).min(0).max(1 << 20).doc("MLA KV latent rank; 0 for GQA");
  s.field("qk_nope_head_dim", &M::qk_nope_head_dim).min(0).max(1 << 20);
  s.field("qk_rope_head_dim", &M::qk_rope_head_dim).min(0).max(1 << 20);
  s.field("v_head_dim", &M::v_head_dim).min(0).max(1 << 20);
  s.field("num_experts", &M::num_experts).min(0).max(16384).doc("routed experts per MoE layer; 0: a dense model");
  s.field("top_k", &M::top_k).min(0).max(64).doc("routed experts per token (0 for a dense model)");
  s.field("moe_intermediate_size", &M::moe_intermediate_size).min(0).max(1 << 20).unit("elements")
      .doc("FFN width of one routed expert (0 for a dense model)");
  s.field("num_shared_experts", &M::num_shared_experts).min(0).max(1024);
  s.field("shared_expert_intermediate_size", &M::shared_expert_intermediate_size).min(0).max(1 << 20).unit("elements")
      .doc("FFN width of all shared experts together");
  s.field("num_dense_layers", &M::num_dense_layers).min(0).doc("leading layers with a dense FFN instead of MoE");
  s.field("dense_intermediate_size", &M::dense_intermediate_size).min(0).max(1 << 20).unit("elements");
  s.field("n_group", &M::n_group).min(0).max(16384).doc("expert groups for group-limited routing; 0 for none");
  s.field("topk_group", &M::topk_group).min(0).max(16384).doc("groups a token may use; 0 for none");
  s.field("scoring_func", &M::scoring_func)
      .doc("gate scores: softmax over all experts, or sigmoid per expert (DeepSeek-V3); the top k is the same, the routing "
           "weights of the chosen experts (renormalised over them) differ");
  s.field("weight_dtype", &M::weight_dtype).doc("attention, dense and embedding weights");
  s.field("expert_weight_dtype", &M::expert_weight_dtype).doc("routed and shared expert weights");
  s.field("kv_cache_dtype", &M::kv_cache_dtype);
  s.field("total_params_b", &M::total_params_b).greater_than(0).unit("billion parameters").doc("as published");
  s.field("active_params_b", &M::active_params_b).greater_than(0).unit("billion parameters").doc("as published");
  s.field("routing_specialization", &M::routing_specialization).min(0).max(5)
      .doc("spread (sigma of log popularity) of the gate's expert preferences per layer and domain");
  s.field("routing_locality", &M::routing_locality).min(0).max(1)
      .doc("probability that a token repeats the previous token's first-choice expert");
  s.check([](const M& m, Checker& c) {
    if (m.num_experts == 0) {
      // A dense model: every layer has a dense FFN and nothing is routed.
      if (m.top_k != 0) c.error("top_k", "must be 0 for a dense model (num_experts 0) (got " + std::to_string(m.top_k) + ")");
      if (m.num_dense_layers != m.num_layers)
        c.error("num_dense_layers", "must equal num_layers (" + std::to_string(m.num_layers) +
                                        ") for a dense model (num_experts 0): every layer is dense (got " +
                                        std::to_string(m.num_dense_layers) + ")");
    } else {
      if (m.top_k > m.num_experts)
        c.error("top_k", "must be <= num_experts (" + std::to_string(m.num_experts) + ") (got " + std::to_string(m.top_k) + ")");
      if (m.top_k < 1) c.error("top_k", "must be >= 1 when num_experts > 0 (got " + std::to_string(m.top_k) + ")");
      if (m.moe_intermediate_size < 1) c.error("moe_intermediate_size", "must be >= 1 when num_experts > 0");
      if (m.num_dense_layers >= m.num_layers)
        c.error("num_dense_layers", "must be < num_layers (" + std::to_string(m.num_layers) + ") (got " +
                                        std::to_string(m.num_dense_layers) + "); a dense model has num_experts 0");
    }
    if (m.num_dense_layers > 0 && m.dense_intermediate_size < 1)
      c.error("dense_intermediate_size", "must be >= 1 when num_dense_layers > 0");
    if (m.attention == AttentionKind::gqa && m.num_attention_heads % m.num_kv_heads != 0)
      c.error("num_kv_heads", "must divide num_attention_heads (" + std::to_string(m.num_attention_heads) + ") (got " +
                                  std::to_string(m.num_kv_heads) + ")");
    if (m.attention == AttentionKind::mla && (m.kv_lora_rank < 1 || m.v_head_dim < 1 || m.qk_nope_head_dim < 1))
      c.error("kv_lora_rank", "mla attention needs kv_lora_rank, qk_nope_head_dim and v_head_dim >= 1");
    if ((m.n_group == 0) != (m.topk_group == 0))
      c.error("topk_group", "n_group and topk_group must both be 0 or both be >= 1");
    else if (m.n_group > 0 && (m.num_experts % m.n_group != 0 || m.topk_group > m.n_group))
      c.error("n_group", "must divide num_experts and be >= topk_group");
  });
}

void describe(Schema<GpuSpec>& s) {
  using G = GpuSpec;
  s.field("name", &G::name).doc("card name (the file stem)");
  s.field("display_name", &G::display_name);
  s.field("vendor", &G::vendor).one_of([] { return std::vector<std::string>{"amd", "nvidia"}; });
  s.field("architecture", &G::architecture);
  s.field("peak_tflops_fp16", &G::peak_tflops_fp16).greater_than(0).unit("TFLOP/s").doc("dense tensor-core peak");
  s.field("peak_tflops_bf16", &G::peak_tflops_bf16).greater_than(0).unit("TFLOP/s").doc("dense tensor-core peak");
  s.field("peak_tflops_fp8", &G::peak_tflops_fp8).min(0).unit("TFLOP/s").doc("0: no FP8 tensor cores");
  s.field("peak_tflops_fp4", &G::peak_tflops_fp4).min(0).unit("TFLOP/s").doc("0: no FP4 tensor cores");
  s.field("hbm_bw_tbytes_per_s", &G::hbm_bw_tbytes_per_s).greater_than(0).unit("TB/s");
  s.field("hbm_capacity_gb", &G::hbm_capacity_gb).greater_than(0).unit("GB");
  s.field("nvlink_bw_bidir_gbytes_per_s", &G::nvlink_bw_bidir_gbytes_per_s).greater_than(0).unit("GB/s")
      .doc("scale-up bandwidth per GPU, both directions");
  s.field("default_intra_node", &G::default_intra_node).doc("interconnect card of the node's scale-up fabric");
  s.field("tdp_w", &G::tdp_w).greater_than(0).unit("W");
  s.field("power_limit_min_w", &G::power_limit_min_w).greater_than(0).unit("W");
  s.field("idle_w", &G::idle_w).greater_than(0).unit("W").doc("idle with a model loaded");
  s.field("temp_slowdown_sw_c", &G::temp_slowdown_sw_c).greater_than(0).unit("degC");
  s.field("temp_slowdown_hw_c", &G::temp_slowdown_hw_c).greater_than(0).unit("degC");
  s.field("temp_shutdown_c", &G::temp_shutdown_c).greater_than(0).unit("degC");
  s.field("temp_hbm_max_c", &G::temp_hbm_max_c).greater_than(0).unit("degC");
  s.field("compute_efficiency", &G::compute_efficiency).greater_than(0).max(1).doc("fraction of peak FLOPs large GEMMs reach");
  s.field("gemm_m_half_rows", &G::gemm_m_half_rows).min(0).max(1 << 20).unit("rows")
      .doc("small-M curve: a GEMM of M rows reaches compute_efficiency * M / (M + this) of peak");
  s.field("gemm_tile_m_min", &G::gemm_tile_m_min).min(1).max(4096).unit("rows").doc("smallest M tile GEMM rows are padded to");
  s.field("gemm_tile_m_max", &G::gemm_tile_m_max).min(1).max(4096).unit("rows").doc("largest M tile GEMM rows are padded to");
  s.field("memory_efficiency", &G::memory_efficiency).greater_than(0).max(1).doc("fraction of HBM bandwidth reached");
  s.field("moe_fp8_memory_efficiency", &G::moe_fp8_memory_efficiency).greater_than(0).max(1)
      .doc("fraction of HBM bandwidth FP8 routed experts reach in vLLM's fused-MoE Triton kernel (serving.moe_kernel triton)");
  s.field("kernel_launch_us", &G::kernel_launch_us).min(0).max(1e6).unit("us").doc("fixed cost per kernel launched eagerly");
  s.field("kernel_graph_launch_us", &G::kernel_graph_launch_us).min(0).max(1e6).unit("us")
      .doc("fixed cost per kernel replayed from a CUDA graph (serving.cuda_graphs)");
  s.field("sm_count", &G::sm_count).min(1).max(100000).unit("SMs")
      .doc("streaming multiprocessors (AMD: compute units); communication kernels overlapped with compute take serving.overlap_comm_sms of them");
  s.field("clock_max_mhz", &G::clock_max_mhz).greater_than(0).unit("MHz").doc("highest (boost) graphics clock");
  s.field("clock_min_mhz", &G::clock_min_mhz).greater_than(0).unit("MHz").doc("lowest settable graphics clock");
  s.field("clock_step_mhz", &G::clock_step_mhz).greater_than(0).unit("MHz").doc("clock bin width");
  s.field("voltage_min_v", &G::voltage_min_v).greater_than(0).unit("V").doc("core voltage at clock_min_mhz");
  s.field("voltage_max_v", &G::voltage_max_v).greater_than(0).unit("V").doc("core voltage at clock_max_mhz");
  s.field("power_compute_w", &G::power_compute_w).min(0).unit("W").doc("dynamic power at full compute utilisation and f_max");
  s.field("power_memory_w", &G::power_memory_w).min(0).unit("W").doc("dynamic power at full HBM utilisation");
  s.field("power_comm_w", &G::power_comm_w).min(0).unit("W").doc("extra power while in a collective");
  s.field("leakage_ref_w", &G::leakage_ref_w).min(0).unit("W").doc("leakage scale: L_ref (exp(beta (T - T_ref)) - 1)");
  s.field("leakage_beta_per_k", &G::leakage_beta_per_k).min(0).max(1).unit("1/K");
  s.field("leakage_ref_temp_c", &G::leakage_ref_temp_c).unit("degC").doc("temperature at which idle_w was measured");
  s.field("sw_slowdown_clock_fraction", &G::sw_slowdown_clock_fraction).greater_than(0).max(1)
      .doc("clock limit in SW thermal slowdown, as a fraction of clock_max_mhz");
  s.field("throttle_hysteresis_c", &G::throttle_hysteresis_c).min(0).unit("K");
  s.field("thermal_r_die_sink_k_per_w", &G::thermal_r_die_sink_k_per_w).greater_than(0).unit("K/W");
  s.field("thermal_r_sink_inlet_k_per_w", &G::thermal_r_sink_inlet_k_per_w).greater_than(0).unit("K/W");
  s.field("thermal_c_die_j_per_k", &G::thermal_c_die_j_per_k).greater_than(0).unit("J/K");
  s.field("thermal_c_sink_j_per_k", &G::thermal_c_sink_j_per_k).greater_than(0).unit("J/K");
  s.check([](const G& g, Checker& c) {
    if (g.idle_w >= g.tdp_w) c.error("idle_w", "must be < tdp_w (" + Rules<double>::num(g.tdp_w) + ")");
    if (g.power_limit_min_w > g.tdp_w) c.error("power_limit_min_w", "must be <= tdp_w (" + Rules<double>::num(g.tdp_w) + ")");
    if (g.clock_min_mhz >= g.clock_max_mhz) c.error("clock_min_mhz", "must be < clock_max_mhz");
    if (g.gemm_tile_m_min > g.gemm_tile_m_max) c.error("gemm_tile_m_min", "must be <= gemm_tile_m_max");
    if (g.voltage_min_v > g.voltage_max_v) c.error("voltage_min_v", "must be <= voltage_max_v");
    if (!(g.temp_slowdown_sw_c <= g.temp_slowdown_hw_c && g.temp_slowdown_hw_c <= g.temp_shutdown_c))
      c.error("temp_slowdown_hw_c", "thresholds must satisfy temp_slowdown_sw_c <= temp_slowdown_hw_c <= temp_shutdown_c");
  });
}

void describe(Schema<InterconnectSpec>& s) {
  using I = InterconnectSpec;
  s.field("name", &I::name).doc("card name (the file stem)");
  s.field("display_name", &I::display_name);
  s.field("kind", &I::kind).one_of([] { return std::vector<std::string>{"infiniband", "nvlink", "roce", "xgmi"}; });
  s.field("scope", &I::scope).one_of([] { return std::vector<std::string>{"inter_node", "intra_node"}; });
  s.field("bw_gbytes_per_s", &I::bw_gbytes_per_s).greater_than(0).unit("GB/s").doc("per GPU, per direction");
  s.field("latency_us", &I::latency_us).min(0).unit("us").doc("one-way GPU-to-GPU latency");
  s.field("achievable_fraction", &I::achievable_fraction).greater_than(0).max(1)
      .doc("fraction of bw_gbytes_per_s collectives reach");
  s.field("collective_latency_us", &I::collective_latency_us).min(0).unit("us").doc("fixed software cost per collective");
}

std::vector<std::string> Catalog::card_names(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") out.push_back(entry.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<YAML::Node> Catalog::read_yaml(const std::filesystem::path& file, std::vector<Diagnostic>& sink) {
  if (auto problem = input_file_problem(file, kMaxScenarioFileBytes, "catalog cards"); !problem.empty()) {
    sink.push_back({file.string(), 0, "", problem});
    return std::nullopt;
  }
  std::ifstream in(file);
  if (!in) {
    sink.push_back({file.string(), 0, "", "cannot open file"});
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  if (const auto bad = first_invalid_utf8(text.view())) {
    sink.push_back({file.string(), bad->first, "", invalid_utf8_message(*bad)});
    return std::nullopt;
  }
  try {
    YAML::Node root = YAML::Load(text.str());
    if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    return root;
  } catch (const YAML::Exception& e) {
    sink.push_back({file.string(), e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "malformed YAML: " + e.msg});
    return std::nullopt;
  }
}

void Catalog::check_provenance(const YAML::Node& root, const std::vector<std::string>& fields, ParseContext& ctx) {
  const YAML::Node sources = root["sources"];
  const YAML::Node estimates = root["estimates"];
  auto check_block = [&](const YAML::Node& block, const char* key) {
    if (!block) return;
    ctx.record(key, block);
    if (!block.IsMap()) {
      ctx.error(block, key, "expected a mapping of field: citation");
      return;
    }
    for (auto it = block.begin(); it != block.end(); ++it) {
      const std::string field = it->first.Scalar();
      const std::string path = std::string(key) + "." + field;
      if (std::find(fields.begin(), fields.end(), field) == fields.end()) {
        std::string msg = "not a field of this card";
        if (auto near = closest_match(field, fields); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
        ctx.error(it->first, path, msg);
      } else if (!it->second.IsScalar() || it->second.Scalar().empty()) {
        ctx.error(it->second, path, "expected a non-empty citation or reason");
      }
    }
  };
  check_block(sources, "sources");
  check_block(estimates, "estimates");
  for (const auto& field : fields) {
    const bool cited = sources && sources.IsMap() && sources[field];
    const bool estimated = estimates && estimates.IsMap() && estimates[field];
    if (!cited && !estimated)
      ctx.error(root, field, "has no entry in `sources` or `estimates`: every number needs a source or is marked an estimate");
    else if (cited && estimated)
      ctx.error(root, field, "appears in both `sources` and `estimates`; keep one");
  }
}

std::filesystem::path default_catalog_home() {
  if (const char* env = std::getenv("MOESIM_HOME"); env != nullptr && *env != '\0') return env;
  return MOESIM_DEFAULT_HOME;
}

}  // namespace moesim
