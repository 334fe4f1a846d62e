#include "sim/exec/layout.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

ParallelLayout make_layout(const Scenario& sc) {
  const ModelSpec& m = sc.model.spec;
  ParallelLayout lay;
  lay.mode = sc.parallel.mode;
  lay.attention = sc.parallel.attention;
  lay.instances = sc.parallel.dp;
  lay.gpus_per_instance = sc.parallel.gpus_per_instance();
  const int n = lay.gpus_per_instance;
  const bool replicated_attention = lay.mode == ParallelMode::ep && lay.attention == EpAttention::dp;
  lay.attention_shards = replicated_attention ? 1 : n;
  lay.attention_ranks = replicated_attention ? n : 1;

  const double wb = bytes_per_element(m.weight_dtype);
  const double eb = bytes_per_element(m.expert_weight_dtype);
  const double non_expert = (m.num_layers * m.attention_params_per_layer() + m.num_dense_layers * m.dense_ffn_params() +
                             m.num_moe_layers() * (m.shared_expert_params() + m.router_params()) + m.embedding_params()) * wb;
  const int physical_experts = m.num_experts + (sc.routing.eplb_placement() ? sc.routing.num_redundant_experts : 0);
  const double experts = static_cast<double>(m.num_moe_layers()) * physical_experts * m.expert_params() * eb;
  lay.weight_bytes_per_gpu = non_expert / lay.attention_shards + experts / n;

  double kv = m.kv_bytes_per_token();
  if (m.attention == AttentionKind::gqa && lay.attention_shards > 1) {
    const int heads_per_gpu = std::max(1, static_cast<int>(std::ceil(static_cast<double>(m.num_kv_heads) / lay.attention_shards)));
    kv = kv * heads_per_gpu / m.num_kv_heads;
  }
  lay.kv_bytes_per_token_per_gpu = kv;

  const auto& gpu = sc.cluster.gpu.spec;
  lay.usable_bytes_per_gpu = gpu.hbm_capacity_bytes() * sc.serving.gpu_memory_utilization - sc.serving.activation_reserve_gb * 1e9;
  const double free_bytes = lay.usable_bytes_per_gpu - lay.weight_bytes_per_gpu;
  lay.kv_capacity_tokens = free_bytes > 0 && kv > 0 ? static_cast<std::int64_t>(std::floor(free_bytes / kv)) : 0;
  return lay;
}

}  // namespace moesim
