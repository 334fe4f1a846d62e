#pragma once
// Routing traces measured on real systems (or written by moesim), for replay.
//
// Gate logs: a folder of gate_logs_<k>.json files (k = 0, 1, ...), each
//   {"format": "moesim-gate-log-v1", "model": "...", "moe_layers": [0, 1, ...], "num_experts": E,
//    "top_k": k, "steps": [{"step": s, "instance": i, "time_s": t, "num_tokens": T,
//                           "expert_counts": [[c_e for e in experts] for each MoE layer]}]}
// Profiler activations: moe_expert_activations.csv with columns
//   layer_idx,expert_id,activation_count,percentage
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "models/common/input_error.hpp"

namespace moesim {

/// The most bytes one gate-log file may have: it is parsed whole (about 9 bytes of memory per byte
/// of JSON while it is read), so a folder's 1 GiB comes in files of at most this size; moesim
/// starts a new file past half of it.
inline constexpr std::uintmax_t kMaxGateLogFileBytes = 128ULL << 20;

struct RoutingTrace {
  int num_experts = 0;
  int num_moe_layers = 0;
  /// steps[s][layer][expert]: tokens routed (gate logs); a single step for activation profiles.
  std::vector<std::vector<std::vector<double>>> steps;
  bool per_step = true;  ///< false: a per-layer distribution (activations CSV)
};

/// Reads a gate-log folder or an activations CSV; checks it against the model's MoE layers and
/// experts. Throws InputError naming file, line and field.
[[nodiscard]] RoutingTrace load_routing_trace(const std::filesystem::path& path, int num_moe_layers, int num_experts);

/// Appends the steps of one gate-log file to `trace` (whose num_moe_layers and num_experts are
/// set); `name` stands for the file in messages. Throws InputError.
void read_gate_log(std::istream& in, const std::string& name, RoutingTrace& trace);

/// Reads a moe_expert_activations.csv from a stream; `name` stands for the file in messages.
[[nodiscard]] RoutingTrace read_activations_csv(std::istream& in, const std::string& name, int num_moe_layers, int num_experts);

}  // namespace moesim
