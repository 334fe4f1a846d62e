#pragma once
// Collective communication: the bytes each GPU sends each other GPU, and a closed-form time.
//
// A collective is described by a traffic matrix bytes[src][dst] over the ranks of a group, plus the
// number of dependent hops its algorithm takes. The same matrix drives both fidelity levels:
//   flow     : a SimGrid parallel task on the platform's links (sim/platform), contention simulated;
//   analytic : every GPU owns one up and one down port per fabric (NVLink to the node's switch,
//              one NIC to the cluster switch), switches are non-blocking, so
//                t = max over ports of (bytes through the port / effective port bandwidth)
//                    + hops * route latency + collective latency.
// The two agree exactly when a port is the only bottleneck, which is the case on this topology; a
// test keeps them within tolerance.
//
// Ring all-reduce of S bytes per rank over n ranks (Patarasuk & Yuan 2009, NCCL's ring):
// every rank sends 2(n-1)/n * S bytes to its successor in 2(n-1) steps. Reduce-scatter and
// all-gather are each half of it: (n-1)/n * S bytes in n-1 steps.
#include <string>
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

struct Collective {
  CollectiveKind kind = CollectiveKind::all_reduce;
  TrafficMatrix traffic;
  int hops = 1;  ///< dependent steps; each pays one route latency
};

[[nodiscard]] Collective ring_all_reduce(int ranks, double bytes_per_rank);
[[nodiscard]] Collective ring_reduce_scatter(int ranks, double bytes_per_rank);
[[nodiscard]] Collective ring_all_gather(int ranks, double bytes_per_rank);

/// The fabric a group of ranks communicates over: rank r is GPU `first_gpu + r` of the cluster.
struct FabricView {
  int gpus_per_node = 1;
  int first_gpu = 0;
  InterconnectSpec intra;
  InterconnectSpec inter;

  [[nodiscard]] bool same_node(int rank_a, int rank_b) const {
    return (first_gpu + rank_a) / gpus_per_node == (first_gpu + rank_b) / gpus_per_node;
  }
  /// One-way latency between two ranks: half a link at each end of the route.
  [[nodiscard]] double route_latency_s(int rank_a, int rank_b) const;
};

/// Closed-form time of a collective on the fabric (see the header comment).
[[nodiscard]] double analytic_collective_seconds(const Collective& c, const FabricView& fabric);
/// Part of the time a flow simulation does not see: the extra hops beyond the first and the
/// fixed software cost of the call. flow time = parallel-task time + this.
[[nodiscard]] double collective_overhead_seconds(const Collective& c, const FabricView& fabric);

}  // namespace moesim
