#include "models/routing/eplb.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace moesim {
namespace {

using Matrix = std::vector<std::vector<double>>;

/// Balanced packing of one row of n items into `packs` packs of n / packs items each.
void pack_row(const std::vector<double>& w, int packs, std::vector<int>& pack_of, std::vector<int>& rank_in_pack) {
  const int n = static_cast<int>(w.size());
  const int per_pack = n / packs;
  pack_of.assign(static_cast<std::size_t>(n), 0);
  rank_in_pack.assign(static_cast<std::size_t>(n), 0);
  if (per_pack == 1) {
    std::iota(pack_of.begin(), pack_of.end(), 0);
    return;
  }
  std::vector<int> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return w[static_cast<std::size_t>(a)] > w[static_cast<std::size_t>(b)]; });
  std::vector<double> load(static_cast<std::size_t>(packs), 0.0);
  std::vector<int> items(static_cast<std::size_t>(packs), 0);
  for (int item : order) {
    int best = -1;
    for (int p = 0; p < packs; ++p) {
      if (items[static_cast<std::size_t>(p)] >= per_pack) continue;
      if (best < 0 || load[static_cast<std::size_t>(p)] < load[static_cast<std::size_t>(best)]) best = p;
    }
    pack_of[static_cast<std::size_t>(item)] = best;
    rank_in_pack[static_cast<std::size_t>(item)] = items[static_cast<std::size_t>(best)]++;
    load[static_cast<std::size_t>(best)] += w[static_cast<std::size_t>(item)];
  }
}

/// Replicates the experts of one row up to `slots` physical slots.
void replicate_row(const std::vector<double>& w, int slots, std::vector<int>& phy2log, std::vector<int>& phy_rank,
                   std::vector<int>& count) {
  const int n = static_cast<int>(w.size());
  phy2log.resize(static_cast<std::size_t>(slots));
  phy_rank.assign(static_cast<std::size_t>(slots), 0);
  count.assign(static_cast<std::size_t>(n), 1);
  std::iota(phy2log.begin(), phy2log.begin() + n, 0);
  for (int i = n; i < slots; ++i) {
    int best = 0;
    for (int e = 1; e < n; ++e)
      if (w[static_cast<std::size_t>(e)] / count[static_cast<std::size_t>(e)] >
          w[static_cast<std::size_t>(best)] / count[static_cast<std::size_t>(best)])
        best = e;
    phy2log[static_cast<std::size_t>(i)] = best;
    phy_rank[static_cast<std::size_t>(i)] = count[static_cast<std::size_t>(best)]++;
  }
}

std::vector<int> inverse(const std::vector<int>& perm) {
  std::vector<int> inv(perm.size());
  for (std::size_t i = 0; i < perm.size(); ++i) inv[static_cast<std::size_t>(perm[i])] = static_cast<int>(i);
  return inv;
}

}  // namespace

EplbResult rebalance_experts(const Matrix& weight, int num_replicas, int num_groups, int num_nodes, int num_gpus) {
  if (weight.empty()) throw std::invalid_argument("weights have no layers");
  const int logical = static_cast<int>(weight[0].size());
  for (const auto& row : weight)
    if (static_cast<int>(row.size()) != logical) throw std::invalid_argument("every layer needs the same number of experts");
  if (num_groups % num_nodes != 0) {  // global policy
    num_groups = 1;
    num_nodes = 1;
  }
  if (logical % num_groups != 0) throw std::invalid_argument("groups must divide the experts");
  if (num_gpus % num_nodes != 0 || num_replicas % num_gpus != 0) throw std::invalid_argument("GPUs must divide evenly over nodes and replicas over GPUs");
  if (num_replicas < logical) throw std::invalid_argument("fewer replicas than experts");
  const int group_size = logical / num_groups, groups_per_node = num_groups / num_nodes;
  const int log_per_node = logical / num_nodes, phy_per_node = num_replicas / num_nodes;
  const int gpus_per_node = num_gpus / num_nodes, phy_per_gpu = num_replicas / num_gpus;

  EplbResult out;
  for (const auto& w : weight) {
    // 1. Groups onto nodes.
    std::vector<double> group_load(static_cast<std::size_t>(num_groups), 0.0);
    for (int e = 0; e < logical; ++e) group_load[static_cast<std::size_t>(e / group_size)] += w[static_cast<std::size_t>(e)];
    std::vector<int> gpack, grank;
    pack_row(group_load, num_nodes, gpack, grank);
    std::vector<int> log2mlog(static_cast<std::size_t>(logical));  // logical -> node-major logical
    for (int e = 0; e < logical; ++e) {
      const int g = e / group_size;
      log2mlog[static_cast<std::size_t>(e)] =
          (gpack[static_cast<std::size_t>(g)] * groups_per_node + grank[static_cast<std::size_t>(g)]) * group_size + e % group_size;
    }
    const std::vector<int> mlog2log = inverse(log2mlog);

    std::vector<int> phy2log(static_cast<std::size_t>(num_replicas)), phyrank(static_cast<std::size_t>(num_replicas));
    std::vector<int> logcnt(static_cast<std::size_t>(logical));
    for (int node = 0; node < num_nodes; ++node) {
      // 2. Replicas inside the node.
      std::vector<double> node_w(static_cast<std::size_t>(log_per_node));
      for (int i = 0; i < log_per_node; ++i)
        node_w[static_cast<std::size_t>(i)] = w[static_cast<std::size_t>(mlog2log[static_cast<std::size_t>(node * log_per_node + i)])];
      std::vector<int> p2m, prank, mcnt;
      replicate_row(node_w, phy_per_node, p2m, prank, mcnt);
      // 3. Physical experts onto the node's GPUs.
      std::vector<double> phy_w(static_cast<std::size_t>(phy_per_node));
      for (int s = 0; s < phy_per_node; ++s) {
        const auto m = static_cast<std::size_t>(p2m[static_cast<std::size_t>(s)]);
        phy_w[static_cast<std::size_t>(s)] = node_w[m] / mcnt[m];
      }
      std::vector<int> pack, rank;
      pack_row(phy_w, gpus_per_node, pack, rank);
      std::vector<int> phy2pphy(static_cast<std::size_t>(phy_per_node));
      for (int s = 0; s < phy_per_node; ++s)
        phy2pphy[static_cast<std::size_t>(s)] = pack[static_cast<std::size_t>(s)] * phy_per_gpu + rank[static_cast<std::size_t>(s)];
      const std::vector<int> pphy2phy = inverse(phy2pphy);
      for (int slot = 0; slot < phy_per_node; ++slot) {
        const int s = pphy2phy[static_cast<std::size_t>(slot)];
        const int mlog = node * log_per_node + p2m[static_cast<std::size_t>(s)];
        phy2log[static_cast<std::size_t>(node * phy_per_node + slot)] = mlog2log[static_cast<std::size_t>(mlog)];
        phyrank[static_cast<std::size_t>(node * phy_per_node + slot)] = prank[static_cast<std::size_t>(s)];
      }
      for (int i = 0; i < log_per_node; ++i)
        logcnt[static_cast<std::size_t>(mlog2log[static_cast<std::size_t>(node * log_per_node + i)])] = mcnt[static_cast<std::size_t>(i)];
    }
    const int max_cnt = *std::max_element(logcnt.begin(), logcnt.end());
    std::vector<std::vector<int>> l2p(static_cast<std::size_t>(logical), std::vector<int>(static_cast<std::size_t>(max_cnt), -1));
    for (int s = 0; s < num_replicas; ++s)
      l2p[static_cast<std::size_t>(phy2log[static_cast<std::size_t>(s)])][static_cast<std::size_t>(phyrank[static_cast<std::size_t>(s)])] = s;
    out.phy2log.push_back(std::move(phy2log));
    out.log2phy.push_back(std::move(l2p));
    out.logcnt.push_back(std::move(logcnt));
  }
  return out;
}

std::vector<double> contiguous_gpu_max_over_mean(const Matrix& weight, int num_gpus) {
  std::vector<double> out;
  for (const auto& w : weight) {
    const int n = static_cast<int>(w.size());
    const int base = n / num_gpus, extra = n % num_gpus;
    std::vector<double> gpu(static_cast<std::size_t>(num_gpus), 0.0);
    for (int g = 0, e = 0; g < num_gpus; ++g)
      for (int k = 0; k < base + (g < extra ? 1 : 0); ++k, ++e) gpu[static_cast<std::size_t>(g)] += w[static_cast<std::size_t>(e)];
    const double mean = std::accumulate(gpu.begin(), gpu.end(), 0.0) / num_gpus;
    out.push_back(mean > 0 ? *std::max_element(gpu.begin(), gpu.end()) / mean : 1.0);
  }
  return out;
}

std::vector<double> gpu_max_over_mean(const Matrix& weight, const std::vector<std::vector<int>>& phy2log, int num_gpus) {
  std::vector<double> out;
  for (std::size_t l = 0; l < weight.size(); ++l) {
    const auto& map = phy2log[l];
    std::vector<int> count(weight[l].size(), 0);
    for (int e : map) ++count[static_cast<std::size_t>(e)];
    std::vector<double> gpu(static_cast<std::size_t>(num_gpus), 0.0);
    const std::size_t per_gpu = map.size() / static_cast<std::size_t>(num_gpus);
    for (std::size_t s = 0; s < map.size(); ++s) {
      const auto e = static_cast<std::size_t>(map[s]);
      gpu[s / per_gpu] += weight[l][e] / count[e];
    }
    const double mean = std::accumulate(gpu.begin(), gpu.end(), 0.0) / num_gpus;
    out.push_back(mean > 0 ? *std::max_element(gpu.begin(), gpu.end()) / mean : 1.0);
  }
  return out;
}

}  // namespace moesim
