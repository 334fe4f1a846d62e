#pragma once
// Expert-parallel load balancing as DeepSeek's reference algorithm (github.com/deepseek-ai/EPLB)
// defines it, reimplemented here.
//
// Hierarchical policy (used when the expert groups divide evenly over the nodes):
//   1. pack expert groups onto nodes by balanced packing of group loads;
//   2. inside each node, replicate the hottest experts: each extra physical slot goes to the
//      expert with the highest load per replica (first on ties);
//   3. pack the node's physical experts (load / replica count) onto its GPUs by balanced packing.
// Global policy (otherwise): the same with one group and one node.
// Balanced packing: items in descending load order (stable: lower index first on ties) go to the
// lightest pack that still has room; every pack holds the same number of items.
//
// Outputs, per layer: phy2log (physical slot -> logical expert), log2phy (logical expert -> its
// physical slots, -1 padded), logcnt (replicas per logical expert). GPU g holds slots
// [g * S/P, (g+1) * S/P).
#include <vector>

namespace moesim {

struct EplbResult {
  std::vector<std::vector<int>> phy2log;               ///< [layer][physical]
  std::vector<std::vector<std::vector<int>>> log2phy;  ///< [layer][logical][replica], -1 padded
  std::vector<std::vector<int>> logcnt;                ///< [layer][logical]
};

/// weight[layer][logical expert] = load; throws std::invalid_argument on impossible shapes.
[[nodiscard]] EplbResult rebalance_experts(const std::vector<std::vector<double>>& weight, int num_replicas, int num_groups,
                                           int num_nodes, int num_gpus);

/// Per layer, max/mean of GPU loads of the contiguous placement without replicas (numpy
/// array_split order: the first E mod P GPUs hold one expert more).
[[nodiscard]] std::vector<double> contiguous_gpu_max_over_mean(const std::vector<std::vector<double>>& weight, int num_gpus);

/// Per layer, max/mean of GPU loads when each physical slot carries load(expert) / replicas.
[[nodiscard]] std::vector<double> gpu_max_over_mean(const std::vector<std::vector<double>>& weight,
                                                    const std::vector<std::vector<int>>& phy2log, int num_gpus);

}  // namespace moesim
