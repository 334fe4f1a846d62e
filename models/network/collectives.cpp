#include "models/network/collectives.hpp"

#include <algorithm>
#include <numeric>

namespace moesim {

double TrafficMatrix::total() const { return std::accumulate(bytes.begin(), bytes.end(), 0.0); }

const char* to_string(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::all_reduce: return "all_reduce";
    case CollectiveKind::reduce_scatter: return "reduce_scatter";
    case CollectiveKind::all_gather: return "all_gather";
    case CollectiveKind::dispatch: return "dispatch";
    case CollectiveKind::combine: return "combine";
    case CollectiveKind::migration: return "migration";
  }
  return "?";
}

bool Collective::has_loopback() const {
  return std::any_of(rdma_loopback.begin(), rdma_loopback.end(), [](double b) { return b > 0; });
}

double Collective::link_bytes() const {
  if (!ports.empty()) {
    // Every byte on a link leaves through one out port (NVLink or NIC, loopback included).
    double out = 0;
    for (std::size_t r = 0; r + 3 < ports.size(); r += 4) out += ports[r] + ports[r + 2];
    return out;
  }
  double sum = std::accumulate(rdma_loopback.begin(), rdma_loopback.end(), 0.0);
  const int n = traffic.ranks;
  for (int s = 0; s < n; ++s)
    for (int d = 0; d < n; ++d)
      if (s != d) sum += traffic.at(s, d);
  return sum;
}

namespace {
Collective ring(CollectiveKind kind, int ranks, double bytes_per_rank, double factor, int hops) {
  Collective c{kind, TrafficMatrix(ranks), hops};
  c.algorithm = "ring";
  if (ranks < 2) {
    c.hops = 0;
    return c;
  }
  const double per_link = factor * (ranks - 1) / ranks * bytes_per_rank;
  for (int r = 0; r < ranks; ++r) c.traffic.at(r, (r + 1) % ranks) = per_link;
  return c;
}

int floor_log2(int n) {
  int depth = 0;
  while ((2 << depth) <= n) ++depth;
  return depth;
}
}  // namespace

Collective ring_all_reduce(int ranks, double bytes_per_rank) {
  return ring(CollectiveKind::all_reduce, ranks, bytes_per_rank, 2.0, 2 * (ranks - 1));
}
Collective ring_reduce_scatter(int ranks, double bytes_per_rank) {
  return ring(CollectiveKind::reduce_scatter, ranks, bytes_per_rank, 1.0, ranks - 1);
}
Collective ring_all_gather(int ranks, double bytes_per_rank) {
  return ring(CollectiveKind::all_gather, ranks, bytes_per_rank, 1.0, ranks - 1);
}

Collective tree_all_reduce(int ranks, double bytes_per_rank) {
  Collective c{CollectiveKind::all_reduce, TrafficMatrix(ranks), 0};
  c.algorithm = "tree";
  if (ranks < 2) return c;
  // Heap-ordered binary tree (parent of i is (i-1)/2) and its mirror (rank i in place n-1-i); each
  // tree reduces half of the buffer up and broadcasts it down.
  const double half = 0.5 * bytes_per_rank;
  for (int mirror = 0; mirror < 2; ++mirror) {
    auto rank_at = [&](int pos) { return mirror == 0 ? pos : ranks - 1 - pos; };
    for (int pos = 1; pos < ranks; ++pos) {
      const int child = rank_at(pos), parent = rank_at((pos - 1) / 2);
      c.traffic.at(child, parent) += half;
      c.traffic.at(parent, child) += half;
    }
  }
  c.hops = 2 * floor_log2(ranks);
  return c;
}

Collective all_reduce(int ranks, double bytes_per_rank, const FabricView& fabric) {
  Collective ring_ar = ring_all_reduce(ranks, bytes_per_rank);
  if (!fabric.spans_nodes(ranks)) return ring_ar;
  Collective tree_ar = tree_all_reduce(ranks, bytes_per_rank);
  return analytic_collective_seconds(tree_ar, fabric) < analytic_collective_seconds(ring_ar, fabric) ? tree_ar : ring_ar;
}

double FabricView::route_latency_s(int rank_a, int rank_b) const {
  return (same_node(rank_a, rank_b) ? intra.latency_us : inter.latency_us) * 1e-6;
}

PortLoad port_load(const Collective& c, const FabricView& fabric, std::vector<double>* ports) {
  PortLoad load;
  if (!c.ports.empty() && c.ports_first_gpu == fabric.first_gpu && c.ports_gpus_per_node == fabric.gpus_per_node) {
    if (ports != nullptr) *ports = c.ports;
    const double intra_bw = fabric.intra.effective_bytes_per_s();
    const double inter_bw = fabric.inter.effective_bytes_per_s();
    double intra = 0, inter = 0;
    for (std::size_t r = 0; r + 3 < c.ports.size(); r += 4) {
      intra = std::max({intra, c.ports[r], c.ports[r + 1]});
      inter = std::max({inter, c.ports[r + 2], c.ports[r + 3]});
    }
    load.bottleneck_s = std::max(intra / intra_bw, inter / inter_bw);
    load.crosses_nodes = c.ports_crosses_nodes;
    load.same_node_rdma = c.ports_same_node_rdma;
    load.route_latency_s = std::max(load.crosses_nodes ? fabric.inter.latency_us * 1e-6 : 0.0,
                                    c.ports_intra_used ? fabric.intra.latency_us * 1e-6 : 0.0);
    return load;
  }
  const int n = c.traffic.ranks;
  if (ports != nullptr) ports->assign(4 * static_cast<std::size_t>(n), 0.0);
  if (n == 0) return load;
  const auto un = static_cast<std::size_t>(n);
  std::vector<int> node(un);
  for (int r = 0; r < n; ++r) node[static_cast<std::size_t>(r)] = fabric.node_of(r);
  // Per rank: [intra out, intra in, inter out, inter in].
  std::vector<double> own;
  std::vector<double>& port = ports != nullptr ? *ports : own;
  port.assign(4 * un, 0.0);
  const bool rdma = c.transport == Transport::rdma;
  bool intra_used = false;
  for (int s = 0; s < n; ++s) {
    const double* row = c.traffic.bytes.data() + static_cast<std::size_t>(s) * un;
    const int ns = node[static_cast<std::size_t>(s)];
    for (int d = 0; d < n; ++d) {
      const double b = row[d];
      if (b <= 0 || d == s) continue;
      const bool local = node[static_cast<std::size_t>(d)] == ns;
      const bool nic = rdma || !local;
      port[4 * static_cast<std::size_t>(s) + (nic ? 2 : 0)] += b;
      port[4 * static_cast<std::size_t>(d) + (nic ? 3 : 1)] += b;
      if (nic) {
        load.crosses_nodes = true;
        if (local) load.same_node_rdma = true;
      } else {
        intra_used = true;
      }
    }
  }
  for (std::size_t r = 0; r < c.rdma_loopback.size() && r < un; ++r) {
    const double b = c.rdma_loopback[r];
    if (b <= 0) continue;
    port[4 * r + 2] += b;
    port[4 * r + 3] += b;
    load.crosses_nodes = true;
    load.same_node_rdma = true;
  }
  const double intra_bw = fabric.intra.effective_bytes_per_s();
  const double inter_bw = fabric.inter.effective_bytes_per_s();
  for (std::size_t r = 0; r < un; ++r)
    load.bottleneck_s = std::max({load.bottleneck_s, port[4 * r] / intra_bw, port[4 * r + 1] / intra_bw,
                                  port[4 * r + 2] / inter_bw, port[4 * r + 3] / inter_bw});
  load.route_latency_s = std::max(load.crosses_nodes ? fabric.inter.latency_us * 1e-6 : 0.0,
                                  intra_used ? fabric.intra.latency_us * 1e-6 : 0.0);
  return load;
}

double collective_overhead_seconds(const Collective& c, const FabricView& fabric, const PortLoad& load) {
  if (load.bottleneck_s <= 0 && load.route_latency_s <= 0) return 0.0;
  const double software = (load.crosses_nodes ? fabric.inter.collective_latency_us : fabric.intra.collective_latency_us) * 1e-6;
  return std::max(0, c.hops - 1) * load.route_latency_s + software;
}

double collective_overhead_seconds(const Collective& c, const FabricView& fabric) {
  return collective_overhead_seconds(c, fabric, port_load(c, fabric));
}

double analytic_collective_seconds(const Collective& c, const FabricView& fabric) {
  const PortLoad load = port_load(c, fabric);
  if (load.bottleneck_s <= 0 && load.route_latency_s <= 0) return 0.0;
  return load.bottleneck_s + load.route_latency_s + collective_overhead_seconds(c, fabric, load);
}

}  // namespace moesim
