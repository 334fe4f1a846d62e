#pragma once
// How a model is laid out over the GPUs of one serving instance, and what memory that takes.
//
// mode tp (N = tp): attention, dense layers, shared experts, embeddings and every routed expert are
//   sharded N ways (Megatron column/row split; vocabulary-parallel embeddings). KV heads are split
//   over the N GPUs, replicated once N exceeds the KV heads; an MLA latent cache is replicated.
// mode ep (N = ep): each GPU holds E/N whole routed experts. Attention, dense layers, shared experts
//   and embeddings are
//     attention: tp -> sharded N ways as in mode tp (vLLM --enable-expert-parallel with TP = N);
//     attention: dp -> replicated on every GPU, each GPU serving its own sequences (DeepSeek's
//                      data-parallel attention), KV cache per GPU for its own sequences.
//
// Memory per GPU = weights + KV cache; usable = capacity * gpu_memory_utilization - activation
// reserve. A scenario must fit the weights plus one max_model_len sequence of KV cache.
#include <cstdint>

#include "sim/config/scenario.hpp"

namespace moesim {

struct ParallelLayout {
  ParallelMode mode = ParallelMode::tp;
  EpAttention attention = EpAttention::tp;
  int instances = 1;
  int gpus_per_instance = 1;
  int attention_shards = 1;  ///< GPUs one sequence's attention is split over
  int attention_ranks = 1;   ///< independent attention groups per instance (dp attention: N)
  double weight_bytes_per_gpu = 0;
  double kv_bytes_per_token_per_gpu = 0;
  double usable_bytes_per_gpu = 0;
  std::int64_t kv_capacity_tokens = 0;  ///< per attention rank

  [[nodiscard]] double kv_bytes_for(std::int64_t tokens) const { return kv_bytes_per_token_per_gpu * static_cast<double>(tokens); }
};

/// Needs the parallel sizes resolved (tp, ep >= 1).
[[nodiscard]] ParallelLayout make_layout(const Scenario& scenario);

}  // namespace moesim
