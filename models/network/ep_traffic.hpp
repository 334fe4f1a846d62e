#pragma once
// Expert-parallel dispatch and combine traffic, as DeepEP's kernels move it
// (github.com/deepseek-ai/DeepEP, README of 2025-02-24; kernels csrc/kernels/{intranode,internode,
// internode_ll}.cu).
//
// Dispatch sends each token's hidden state to the GPUs holding its selected experts; combine
// returns one result per dispatched copy and is its mirror image (reversed pairs, combine bytes).
// Bytes of one token's hidden state: hidden x dtype bytes, plus for FP8 one FP32 scale per 128
// channels (DeepEP's per-token, per-128-channel quantisation): hidden + 4 * ceil(hidden / 128).
//
// Normal kernels (throughput-oriented):
//   - group inside one node (intranode kernels): a token goes once to each other GPU that holds
//     at least one of its experts, over NVLink;
//   - group across nodes (internode kernels): a token goes once per destination node over RDMA,
//     to the GPU of that node with the sender's local index (its "rail"), which forwards it over
//     NVLink to every GPU of its node that needs it; tokens for the sender's own node go over
//     NVLink directly. The two legs are pipelined (one parallel task, the slower port sets the
//     time; two route latencies). The copy for the sender's own node is staged through the RDMA
//     buffer like the others: modelled as loopback bytes through the sender's NIC. Evidence:
//     DeepEP's benchmark (tests/test_internode.py) reports RDMA bandwidth as every (token,
//     destination node) pair, own node included, over the kernel time, and reads 43-46 GB/s flat
//     over EP16, EP32 and EP64, where the own-node share of the pairs falls from 1/2 to 1/4 and 1/9;
//     counted over remote nodes only the same runs would have moved 22, 33 and 40 GB/s.
//     When the rail GPU is outside the group (a group that covers part of a node), the token goes
//     directly to each destination GPU over RDMA.
// Low-latency kernels (decode): pure RDMA, every (token, selected expert) pair is a message of its
//   own (no deduplication per GPU, same-node pairs over the NICs too); copies to the sender's own
//   GPU are local. Their fixed per-call cost is the inter-node card's collective_latency_us.
//
// Count-level routing gives assignments per (source GPU, destination GPU) without token
// identity. The distinct tokens among c assignments of T top-k tokens are estimated as
//   u(T, c) = T (1 - (1 - c / (T k))^k)
// (each of a token's k selections lands on the destination with probability c / (T k),
// independently), for GPUs and for nodes alike. Selections of one token are distinct experts,
// so the true chance is a little higher (uniform top-6 of 64 experts, 4 per GPU: 0.332 against
// 0.321) and group-limited routing concentrates a token's selections on fewer nodes.
#include <span>
#include <vector>

#include "models/network/collectives.hpp"

namespace moesim {

enum class EpKernels { normal, low_latency };
[[nodiscard]] const char* to_string(EpKernels kernels);

/// Bytes of one token's hidden state in a dtype of `bytes_per_element`; FP8 (1 byte) adds one
/// FP32 scale per 128 channels.
[[nodiscard]] double token_bytes(int hidden_size, double bytes_per_element);

/// Expected distinct tokens among `assignments` of `tokens` top-`top_k` tokens (see the header).
[[nodiscard]] double expected_distinct_tokens(double tokens, double assignments, int top_k);

class EpTrafficBuilder {
 public:
  /// `ranks` GPUs, rank r being GPU first_gpu + r of a cluster of gpus_per_node-GPU nodes.
  EpTrafficBuilder(EpKernels kernels, int ranks, int gpus_per_node, int first_gpu);

  /// Clears the traffic (keeps the shape).
  void reset();
  /// One token living on `src` whose selected experts sit on `dest_ranks` (one entry per selected
  /// expert that is computed; repeats allowed).
  void add_token(int src, std::span<const int> dest_ranks);
  /// Count level: `tokens` top-`top_k` tokens on `src` whose assignments per destination rank are
  /// `assignments[rank]`.
  void add_counts(int src, double tokens, int top_k, std::span<const double> assignments);

  /// The two collectives, `dispatch_token_bytes` and `combine_token_bytes` per token copy.
  [[nodiscard]] Collective dispatch(double dispatch_token_bytes) const;
  [[nodiscard]] Collective combine(double combine_token_bytes) const;

  /// Whether the collectives carry their per-pair matrix (flow fidelity at pair granularity
  /// needs it); without, they carry only port totals (Collective::ports), which is all analytic
  /// timing and port-granularity flow read. On by default.
  void set_pair_traffic(bool on);

  [[nodiscard]] bool internode() const { return internode_; }
  [[nodiscard]] EpKernels kernels() const { return kernels_; }
  /// Token copies through each RDMA port as DeepEP's benchmark counts them (normal internode:
  /// every (token, destination node) pair, own node included; low latency: every remote
  /// selection), summed over the group.
  [[nodiscard]] double rdma_token_pairs() const;

 private:
  [[nodiscard]] int node_of(int rank) const { return (first_gpu_ + rank) / gpus_per_node_; }
  /// Rank of node `node`'s GPU with local index `local`, or -1 when outside the group.
  [[nodiscard]] int rank_at(int node, int local) const;
  [[nodiscard]] Collective build(CollectiveKind kind, double token_bytes, bool reverse) const;
  /// `x` token copies from rank s to rank d (s != d): the matrix (when kept) and the port totals.
  void add_copy(int s, int d, double x) {
    if (!(x > 0)) return;
    if (pairs_) copies_.at(s, d) += x;
    const bool nic = kernels_ == EpKernels::low_latency || node_of(s) != node_of(d);
    port_copies_[4 * static_cast<std::size_t>(s) + (nic ? 2 : 0)] += x;
    port_copies_[4 * static_cast<std::size_t>(d) + (nic ? 3 : 1)] += x;
    if (nic) {
      crosses_nodes_ = true;
      if (node_of(s) == node_of(d)) same_node_rdma_ = true;
    } else {
      intra_used_ = true;
    }
  }
  /// `x` token copies staged through rank r's own NIC (out and back in).
  void add_loopback(int r, double x) {
    if (!(x > 0)) return;
    loopback_[static_cast<std::size_t>(r)] += x;
    port_copies_[4 * static_cast<std::size_t>(r) + 2] += x;
    port_copies_[4 * static_cast<std::size_t>(r) + 3] += x;
    crosses_nodes_ = same_node_rdma_ = true;
  }

  EpKernels kernels_;
  int n_, gpus_per_node_, first_gpu_;
  bool internode_ = false;
  bool pairs_ = true;
  TrafficMatrix copies_;              ///< token copies per (src, dst) pair (when pairs_)
  std::vector<double> loopback_;      ///< token copies staged through each rank's own RDMA port
  std::vector<double> port_copies_;   ///< token copies per rank: [NVLink out, NVLink in, NIC out, NIC in]
  bool intra_used_ = false, crosses_nodes_ = false, same_node_rdma_ = false;
  // Scratch.
  std::vector<int> dests_, nodes_;
  std::vector<double> node_assign_;
};

}  // namespace moesim
