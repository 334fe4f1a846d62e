#include "models/network/ep_traffic.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

const char* to_string(EpKernels kernels) { return kernels == EpKernels::normal ? "normal" : "low_latency"; }

double token_bytes(int hidden_size, double bytes_per_element) {
  const double h = hidden_size;
  // DeepEP quantises per token and per 128 channels, one FP32 scale each (per_token_cast_to_fp8).
  const double scales = bytes_per_element <= 1.0 ? 4.0 * std::ceil(h / 128.0) : 0.0;
  return h * bytes_per_element + scales;
}

double expected_distinct_tokens(double tokens, double assignments, int top_k) {
  if (tokens <= 0 || assignments <= 0 || top_k < 1) return 0.0;
  const double p = std::min(1.0, assignments / (tokens * top_k));
  if (p >= 1.0) return tokens;
  return tokens * -std::expm1(top_k * std::log1p(-p));
}

EpTrafficBuilder::EpTrafficBuilder(EpKernels kernels, int ranks, int gpus_per_node, int first_gpu)
    : kernels_(kernels),
      n_(ranks),
      gpus_per_node_(std::max(1, gpus_per_node)),
      first_gpu_(first_gpu),
      copies_(ranks),
      loopback_(static_cast<std::size_t>(ranks), 0.0),
      port_copies_(4 * static_cast<std::size_t>(ranks), 0.0) {
  internode_ = ranks > 0 && node_of(0) != node_of(ranks - 1);
  const int nodes = node_of(std::max(0, ranks - 1)) - node_of(0) + 1;
  node_assign_.assign(static_cast<std::size_t>(nodes), 0.0);
}

void EpTrafficBuilder::reset() {
  std::fill(copies_.bytes.begin(), copies_.bytes.end(), 0.0);
  std::fill(loopback_.begin(), loopback_.end(), 0.0);
  std::fill(port_copies_.begin(), port_copies_.end(), 0.0);
  intra_used_ = crosses_nodes_ = same_node_rdma_ = false;
}

void EpTrafficBuilder::set_pair_traffic(bool on) {
  pairs_ = on;
  copies_ = TrafficMatrix(on ? n_ : 0);
  reset();
}

int EpTrafficBuilder::rank_at(int node, int local) const {
  const int rank = node * gpus_per_node_ + local - first_gpu_;
  return rank >= 0 && rank < n_ ? rank : -1;
}

void EpTrafficBuilder::add_token(int src, std::span<const int> dest_ranks) {
  if (kernels_ == EpKernels::low_latency) {
    for (int d : dest_ranks)
      if (d != src) add_copy(src, d, 1.0);
    return;
  }
  if (!internode_) {
    // Once per distinct destination (top-k is small: a look back beats sorting).
    for (std::size_t i = 0; i < dest_ranks.size(); ++i) {
      const int d = dest_ranks[i];
      if (d == src || std::find(dest_ranks.begin(), dest_ranks.begin() + static_cast<std::ptrdiff_t>(i), d) !=
                          dest_ranks.begin() + static_cast<std::ptrdiff_t>(i))
        continue;
      add_copy(src, d, 1.0);
    }
    return;
  }
  dests_.assign(dest_ranks.begin(), dest_ranks.end());
  std::sort(dests_.begin(), dests_.end());
  dests_.erase(std::unique(dests_.begin(), dests_.end()), dests_.end());
  const int own = node_of(src);
  const int local = (first_gpu_ + src) % gpus_per_node_;
  // dests_ is sorted by rank, hence by node: walk it node by node.
  for (std::size_t i = 0; i < dests_.size();) {
    const int node = node_of(dests_[i]);
    std::size_t j = i;
    while (j < dests_.size() && node_of(dests_[j]) == node) ++j;
    if (node == own) {
      add_loopback(src, 1.0);
      for (std::size_t q = i; q < j; ++q)
        if (dests_[q] != src) add_copy(src, dests_[q], 1.0);
    } else if (const int rail = rank_at(node, local); rail >= 0) {
      add_copy(src, rail, 1.0);
      for (std::size_t q = i; q < j; ++q)
        if (dests_[q] != rail) add_copy(rail, dests_[q], 1.0);
    } else {
      for (std::size_t q = i; q < j; ++q) add_copy(src, dests_[q], 1.0);
    }
    i = j;
  }
}

void EpTrafficBuilder::add_counts(int src, double tokens, int top_k, std::span<const double> assignments) {
  auto distinct = [&](double a) { return expected_distinct_tokens(tokens, a, top_k); };
  if (kernels_ == EpKernels::low_latency) {
    for (int d = 0; d < n_; ++d)
      if (d != src && assignments[static_cast<std::size_t>(d)] > 0) add_copy(src, d, assignments[static_cast<std::size_t>(d)]);
    return;
  }
  if (!internode_) {
    for (int d = 0; d < n_; ++d)
      if (d != src) add_copy(src, d, distinct(assignments[static_cast<std::size_t>(d)]));
    return;
  }
  const int first_node = node_of(0);
  std::fill(node_assign_.begin(), node_assign_.end(), 0.0);
  for (int d = 0; d < n_; ++d) node_assign_[static_cast<std::size_t>(node_of(d) - first_node)] += assignments[static_cast<std::size_t>(d)];
  const int own = node_of(src);
  const int local = (first_gpu_ + src) % gpus_per_node_;
  for (std::size_t b = 0; b < node_assign_.size(); ++b) {
    if (node_assign_[b] <= 0) continue;
    const int node = first_node + static_cast<int>(b);
    const int lo = std::max(0, node * gpus_per_node_ - first_gpu_), hi = std::min(n_, (node + 1) * gpus_per_node_ - first_gpu_);
    if (node == own) {
      add_loopback(src, distinct(node_assign_[b]));
      for (int d = lo; d < hi; ++d)
        if (d != src) add_copy(src, d, distinct(assignments[static_cast<std::size_t>(d)]));
    } else if (const int rail = rank_at(node, local); rail >= 0) {
      add_copy(src, rail, distinct(node_assign_[b]));
      for (int d = lo; d < hi; ++d)
        if (d != rail) add_copy(rail, d, distinct(assignments[static_cast<std::size_t>(d)]));
    } else {
      for (int d = lo; d < hi; ++d) add_copy(src, d, distinct(assignments[static_cast<std::size_t>(d)]));
    }
  }
}

Collective EpTrafficBuilder::build(CollectiveKind kind, double bytes, bool reverse) const {
  Collective c{kind, TrafficMatrix(pairs_ ? n_ : 0), 1};
  c.algorithm = to_string(kernels_);
  if (kernels_ == EpKernels::low_latency) c.transport = Transport::rdma;
  if (pairs_)
    for (int s = 0; s < n_; ++s)
      for (int d = 0; d < n_; ++d) {
        const double copies = copies_.at(s, d);
        if (copies > 0) (reverse ? c.traffic.at(d, s) : c.traffic.at(s, d)) = copies * bytes;
      }
  // Port totals: combine runs every pair backwards, so a rank's out and in ports trade places.
  c.ports.resize(port_copies_.size());
  for (std::size_t r = 0; r < port_copies_.size(); r += 4) {
    c.ports[r] = port_copies_[r + (reverse ? 1 : 0)] * bytes;
    c.ports[r + 1] = port_copies_[r + (reverse ? 0 : 1)] * bytes;
    c.ports[r + 2] = port_copies_[r + (reverse ? 3 : 2)] * bytes;
    c.ports[r + 3] = port_copies_[r + (reverse ? 2 : 3)] * bytes;
  }
  c.ports_first_gpu = first_gpu_;
  c.ports_gpus_per_node = gpus_per_node_;
  c.ports_intra_used = intra_used_;
  c.ports_crosses_nodes = crosses_nodes_;
  c.ports_same_node_rdma = same_node_rdma_;
  if (kernels_ == EpKernels::normal && internode_) {
    c.hops = 2;  // RDMA to the rail GPU, then NVLink
    c.rdma_loopback.resize(loopback_.size());
    for (std::size_t r = 0; r < loopback_.size(); ++r) c.rdma_loopback[r] = loopback_[r] * bytes;
  }
  return c;
}

Collective EpTrafficBuilder::dispatch(double dispatch_token_bytes) const {
  return build(CollectiveKind::dispatch, dispatch_token_bytes, false);
}
Collective EpTrafficBuilder::combine(double combine_token_bytes) const {
  return build(CollectiveKind::combine, combine_token_bytes, true);
}

double EpTrafficBuilder::rdma_token_pairs() const {
  // Every copy through a NIC leaves through one NIC out port: remote pairs, all low-latency
  // pairs, and the loopback.
  double pairs = 0;
  for (std::size_t r = 0; r < port_copies_.size(); r += 4) pairs += port_copies_[r + 2];
  return pairs;
}

}  // namespace moesim
