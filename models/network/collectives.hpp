#pragma once
// Collective communication: the bytes each GPU sends each other GPU, and a closed-form time.
//
// A collective is described by a traffic matrix bytes[src][dst] over the ranks of a group, the
// transport its pairs use, and the number of dependent hops its algorithm takes. The same
// description drives both fidelity levels:
//   flow     : a SimGrid parallel task on the platform's links (sim/platform), contention simulated;
//   analytic : every GPU owns one up and one down port per fabric (NVLink to the node's switch,
//              one NIC to the cluster switch), switches are non-blocking, so
//                t = max over ports of (bytes through the port / effective port bandwidth)
//                    + hops * route latency + collective latency.
// The two agree exactly when a port is the only bottleneck, which is the case on this topology as
// long as one collective runs at a time; tests keep them within 10% (tests/e2e/network_test.cpp).
//
// Transport: `fabric` sends same-node pairs over NVLink and other pairs over the NICs; `rdma` sends
// every pair over the NICs (DeepEP's low-latency kernels are pure RDMA, inside a node too). Bytes
// a rank sends itself are a local copy and cost nothing, except `rdma_loopback[r]`: bytes that pass
// through rank r's own RDMA port on the way out and back in (DeepEP's internode kernels stage a
// token's copy for its own node through the RDMA buffer like those for remote nodes; see
// models/network/ep_traffic.hpp for the evidence).
//
// Ring all-reduce of S bytes per rank over n ranks (Patarasuk & Yuan 2009, NCCL's ring):
// every rank sends 2(n-1)/n * S bytes to its successor in 2(n-1) steps. Reduce-scatter and
// all-gather are each half of it: (n-1)/n * S bytes in n-1 steps.
// Tree all-reduce (NCCL's double binary tree, Sanders, Speck & Traeff 2009): two binary trees over
// the ranks, the second the mirror image of the first, each reducing half of the buffer to its
// root and broadcasting it back, pipelined. A rank is inner in one tree and a leaf in the other,
// so its port carries at most 3/2 S + 1/2 S = 2 S per direction, over 2 * depth hops
// (depth = floor(log2 n)). all_reduce() takes whichever of the two is faster on the fabric, as
// NCCL's tuner does; the tree is considered only when the group spans nodes (inside one node NCCL
// runs rings).
#include <string>
#include <utility>
#include <vector>

#include "models/network/interconnect_spec.hpp"

namespace moesim {

struct TrafficMatrix {
  int ranks = 0;
  std::vector<double> bytes;  ///< row-major: bytes[src * ranks + dst]

  TrafficMatrix() = default;
  explicit TrafficMatrix(int n) : ranks(n), bytes(static_cast<std::size_t>(n) * n, 0.0) {}
  double& at(int src, int dst) { return bytes[static_cast<std::size_t>(src) * ranks + dst]; }
  [[nodiscard]] double at(int src, int dst) const { return bytes[static_cast<std::size_t>(src) * ranks + dst]; }
  [[nodiscard]] double total() const;
  [[nodiscard]] bool empty() const { return total() <= 0.0; }
};

/// migration: expert weights copied point to point to a new placement (EPLB).
enum class CollectiveKind { all_reduce, reduce_scatter, all_gather, dispatch, combine, migration };
[[nodiscard]] const char* to_string(CollectiveKind kind);

enum class Transport {
  fabric,  ///< NVLink inside a node, NICs across nodes
  rdma,    ///< NICs for every pair, same node included
};

struct Collective {
  Collective() = default;
  Collective(CollectiveKind k, TrafficMatrix t, int h = 1) : kind(k), traffic(std::move(t)), hops(h) {}

  CollectiveKind kind = CollectiveKind::all_reduce;
  TrafficMatrix traffic;
  int hops = 1;  ///< dependent steps; each pays one route latency
  Transport transport = Transport::fabric;
  std::vector<double> rdma_loopback;  ///< per rank: bytes through its own NIC, out and back in (empty: none)
  std::string algorithm;              ///< for reports: ring, tree, normal, low_latency, ...
  /// Port totals its builder found (expert-parallel traffic: EpTrafficBuilder), 4 per rank as
  /// port_load gives them, for a fabric whose rank r is GPU ports_first_gpu + r of
  /// ports_gpus_per_node-GPU nodes: port_load then reads them instead of the matrix, which may
  /// be left empty (ranks 0) when nothing needs per-pair bytes.
  std::vector<double> ports;
  int ports_first_gpu = -1, ports_gpus_per_node = 0;
  bool ports_intra_used = false, ports_crosses_nodes = false, ports_same_node_rdma = false;

  [[nodiscard]] bool has_loopback() const;
  /// Bytes moved over links: the matrix (self pairs excluded) plus the loopback.
  [[nodiscard]] double link_bytes() const;
};

[[nodiscard]] Collective ring_all_reduce(int ranks, double bytes_per_rank);
[[nodiscard]] Collective tree_all_reduce(int ranks, double bytes_per_rank);
[[nodiscard]] Collective ring_reduce_scatter(int ranks, double bytes_per_rank);
[[nodiscard]] Collective ring_all_gather(int ranks, double bytes_per_rank);

/// The fabric a group of ranks communicates over: rank r is GPU `first_gpu + r` of the cluster.
struct FabricView {
  int gpus_per_node = 1;
  int first_gpu = 0;
  InterconnectSpec intra;
  InterconnectSpec inter;

  [[nodiscard]] int node_of(int rank) const { return (first_gpu + rank) / gpus_per_node; }
  [[nodiscard]] bool same_node(int rank_a, int rank_b) const { return node_of(rank_a) == node_of(rank_b); }
  /// Whether ranks [0, ranks) live on more than one node.
  [[nodiscard]] bool spans_nodes(int ranks) const { return ranks > 0 && node_of(0) != node_of(ranks - 1); }
  /// One-way latency between two ranks: half a link at each end of the route.
  [[nodiscard]] double route_latency_s(int rank_a, int rank_b) const;
};

/// All-reduce of `bytes_per_rank` over `ranks`: ring or tree, whichever the fabric runs faster.
[[nodiscard]] Collective all_reduce(int ranks, double bytes_per_rank, const FabricView& fabric);

/// What a collective puts on the ports, found in one pass over its matrix.
struct PortLoad {
  double bottleneck_s = 0;    ///< max over ports of bytes / effective bandwidth
  double route_latency_s = 0; ///< the longest route any of its pairs takes
  bool crosses_nodes = false; ///< some bytes go through a NIC
  bool same_node_rdma = false;  ///< some same-node pair or loopback must take the NICs (flow: RDMA ports)
};
/// `ports`, when given, receives the bytes through every port: 4 per rank, [NVLink out, NVLink in,
/// NIC out, NIC in].
[[nodiscard]] PortLoad port_load(const Collective& c, const FabricView& fabric, std::vector<double>* ports = nullptr);

/// Closed-form time of a collective on the fabric (see the header comment).
[[nodiscard]] double analytic_collective_seconds(const Collective& c, const FabricView& fabric);
/// Part of the time a flow simulation does not see: the extra hops beyond the first and the
/// fixed software cost of the call. flow time = parallel-task time + this.
[[nodiscard]] double collective_overhead_seconds(const Collective& c, const FabricView& fabric);
[[nodiscard]] double collective_overhead_seconds(const Collective& c, const FabricView& fabric, const PortLoad& load);

}  // namespace moesim
