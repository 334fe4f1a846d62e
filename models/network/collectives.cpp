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

namespace {
Collective ring(CollectiveKind kind, int ranks, double bytes_per_rank, double factor, int hops) {
  Collective c{kind, TrafficMatrix(ranks), hops};
  if (ranks < 2) {
    c.hops = 0;
    return c;
  }
  const double per_link = factor * (ranks - 1) / ranks * bytes_per_rank;
  for (int r = 0; r < ranks; ++r) c.traffic.at(r, (r + 1) % ranks) = per_link;
  return c;
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

double FabricView::route_latency_s(int rank_a, int rank_b) const {
  return (same_node(rank_a, rank_b) ? intra.latency_us : inter.latency_us) * 1e-6;
}

namespace {
double max_route_latency(const Collective& c, const FabricView& fabric) {
  double lat = 0.0;
  const int n = c.traffic.ranks;
  for (int s = 0; s < n; ++s)
    for (int d = 0; d < n; ++d)
      if (s != d && c.traffic.at(s, d) > 0.0) lat = std::max(lat, fabric.route_latency_s(s, d));
  return lat;
}
double software_latency(const Collective& c, const FabricView& fabric) {
  const int n = c.traffic.ranks;
  bool crosses_nodes = false;
  for (int s = 0; s < n && !crosses_nodes; ++s)
    for (int d = 0; d < n; ++d)
      if (c.traffic.at(s, d) > 0.0 && !fabric.same_node(s, d)) crosses_nodes = true;
  return (crosses_nodes ? fabric.inter.collective_latency_us : fabric.intra.collective_latency_us) * 1e-6;
}
}  // namespace

double collective_overhead_seconds(const Collective& c, const FabricView& fabric) {
  if (c.traffic.empty()) return 0.0;
  return std::max(0, c.hops - 1) * max_route_latency(c, fabric) + software_latency(c, fabric);
}

double analytic_collective_seconds(const Collective& c, const FabricView& fabric) {
  if (c.traffic.empty()) return 0.0;
  const int n = c.traffic.ranks;
  const double intra_bw = fabric.intra.effective_bytes_per_s();
  const double inter_bw = fabric.inter.effective_bytes_per_s();
  double worst = 0.0;
  for (int r = 0; r < n; ++r) {
    double out_intra = 0, out_inter = 0, in_intra = 0, in_inter = 0;
    for (int p = 0; p < n; ++p) {
      if (p == r) continue;
      const bool local = fabric.same_node(r, p);
      (local ? out_intra : out_inter) += c.traffic.at(r, p);
      (local ? in_intra : in_inter) += c.traffic.at(p, r);
    }
    worst = std::max({worst, out_intra / intra_bw, in_intra / intra_bw, out_inter / inter_bw, in_inter / inter_bw});
  }
  return worst + max_route_latency(c, fabric) + collective_overhead_seconds(c, fabric);
}

}  // namespace moesim
