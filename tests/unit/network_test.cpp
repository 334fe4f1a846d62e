// Communication models: collective algorithms and DeepEP's dispatch/combine traffic, named after
// the invariants they check.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "models/common/rng.hpp"
#include "models/network/collectives.hpp"
#include "models/network/ep_traffic.hpp"

namespace moesim::test {
namespace {

InterconnectSpec nvlink(double gbps = 200.0) { return {"nv", "", "nvlink", "intra_node", gbps, 2.0, 1.0, 5.0}; }
InterconnectSpec ib(double gbps = 50.0) { return {"ib", "", "infiniband", "inter_node", gbps, 3.0, 1.0, 15.0}; }

TEST(Collectives, fp8_token_carries_one_fp32_scale_per_128_channels) {
  EXPECT_DOUBLE_EQ(token_bytes(7168, 1.0), 7168.0 + 56 * 4.0);
  EXPECT_DOUBLE_EQ(token_bytes(7168, 2.0), 14336.0);
  EXPECT_DOUBLE_EQ(token_bytes(2880, 1.0), 2880.0 + 23 * 4.0);  // a partial last block has its scale too
}

TEST(Collectives, tree_all_reduce_keeps_every_port_within_twice_the_buffer) {
  for (int n : {2, 3, 8, 16, 33}) {
    const Collective c = tree_all_reduce(n, 1000.0);
    for (int r = 0; r < n; ++r) {
      double out = 0, in = 0;
      for (int p = 0; p < n; ++p) {
        out += c.traffic.at(r, p);
        in += c.traffic.at(p, r);
      }
      EXPECT_LE(out, 2000.0 + 1e-9) << n << " rank " << r;
      EXPECT_LE(in, 2000.0 + 1e-9) << n << " rank " << r;
      EXPECT_GT(out, 0.0) << n << " rank " << r;
    }
    EXPECT_EQ(c.hops, 2 * static_cast<int>(std::floor(std::log2(n)))) << n;
  }
}

TEST(Collectives, all_reduce_takes_the_tree_for_small_buffers_across_nodes_and_the_ring_for_large_ones) {
  const FabricView two_nodes{8, 0, nvlink(), ib()};
  EXPECT_EQ(all_reduce(16, 64e3, two_nodes).algorithm, "tree");  // latency-bound: 8 hops against 30
  // Bandwidth-bound with one GPU per node (every pair on the NICs): the ring's 1.875 S per port
  // against the tree's 2 S.
  const FabricView one_gpu_per_node{1, 0, nvlink(), ib()};
  EXPECT_EQ(all_reduce(16, 1e9, one_gpu_per_node).algorithm, "ring");
  EXPECT_EQ(all_reduce(16, 64e3, one_gpu_per_node).algorithm, "tree");
  const FabricView one_node{8, 0, nvlink(), ib()};
  EXPECT_EQ(all_reduce(8, 64e3, one_node).algorithm, "ring");     // inside a node NCCL runs rings
  // Whichever is chosen is the faster of the two.
  for (double bytes : {1e3, 1e5, 1e7, 1e9}) {
    const double chosen = analytic_collective_seconds(all_reduce(16, bytes, two_nodes), two_nodes);
    EXPECT_LE(chosen, analytic_collective_seconds(ring_all_reduce(16, bytes), two_nodes) + 1e-15);
    EXPECT_LE(chosen, analytic_collective_seconds(tree_all_reduce(16, bytes), two_nodes) + 1e-15);
  }
}

TEST(EpTraffic, intranode_normal_sends_a_token_once_per_other_gpu) {
  EpTrafficBuilder b(EpKernels::normal, 8, 8, 0);
  const std::vector<int> dests{0, 3, 3, 5};  // own GPU 0, GPU 3 twice, GPU 5
  b.add_token(0, dests);
  const Collective d = b.dispatch(100.0);
  EXPECT_EQ(d.transport, Transport::fabric);
  EXPECT_DOUBLE_EQ(d.traffic.at(0, 3), 100.0);
  EXPECT_DOUBLE_EQ(d.traffic.at(0, 5), 100.0);
  EXPECT_DOUBLE_EQ(d.link_bytes(), 200.0);
  EXPECT_FALSE(d.has_loopback());
  const Collective c = b.combine(200.0);
  EXPECT_DOUBLE_EQ(c.traffic.at(3, 0), 200.0);  // the mirror image, in combine bytes
  EXPECT_DOUBLE_EQ(c.traffic.at(5, 0), 200.0);
}

TEST(EpTraffic, internode_normal_crosses_once_per_node_to_the_rail_gpu_then_forwards_over_nvlink) {
  // 16 ranks on 2 nodes of 8; the token lives on rank 2 (node 0, local 2).
  EpTrafficBuilder b(EpKernels::normal, 16, 8, 0);
  const std::vector<int> dests{1, 9, 10, 13};
  b.add_token(2, dests);
  const Collective d = b.dispatch(1.0);
  EXPECT_EQ(d.hops, 2);
  EXPECT_DOUBLE_EQ(d.traffic.at(2, 1), 1.0);    // own node: NVLink directly
  EXPECT_DOUBLE_EQ(d.traffic.at(2, 10), 1.0);   // once over RDMA to node 1's local 2 ...
  EXPECT_DOUBLE_EQ(d.traffic.at(10, 9), 1.0);   // ... which forwards over NVLink
  EXPECT_DOUBLE_EQ(d.traffic.at(10, 13), 1.0);
  EXPECT_DOUBLE_EQ(d.traffic.at(2, 9), 0.0);
  EXPECT_DOUBLE_EQ(d.rdma_loopback[2], 1.0);    // the own-node copy staged through rank 2's RDMA port
  EXPECT_DOUBLE_EQ(b.rdma_token_pairs(), 2.0);  // (token, node 0) and (token, node 1), as DeepEP counts
  const FabricView fabric{8, 0, nvlink(), ib()};
  const PortLoad load = port_load(d, fabric);
  EXPECT_TRUE(load.crosses_nodes);
  EXPECT_TRUE(load.same_node_rdma);
  // Rank 2's NIC carries the remote copy and the loopback: 2 bytes at 50 GB/s.
  EXPECT_NEAR(load.bottleneck_s, 2.0 / 50e9, 1e-20);
}

TEST(EpTraffic, a_group_without_the_rail_gpu_sends_directly_over_rdma) {
  // 12 ranks: node 0 whole, node 1 only locals 0-3; a token on local 5 has no rail on node 1.
  EpTrafficBuilder b(EpKernels::normal, 12, 8, 0);
  const std::vector<int> dests{8, 11};
  b.add_token(5, dests);
  const Collective d = b.dispatch(1.0);
  EXPECT_DOUBLE_EQ(d.traffic.at(5, 8), 1.0);
  EXPECT_DOUBLE_EQ(d.traffic.at(5, 11), 1.0);
  EXPECT_DOUBLE_EQ(d.link_bytes(), 2.0);
}

TEST(EpTraffic, low_latency_sends_every_selection_over_rdma_but_none_to_itself) {
  EpTrafficBuilder b(EpKernels::low_latency, 8, 8, 0);
  const std::vector<int> dests{0, 3, 3, 5};
  b.add_token(0, dests);
  const Collective d = b.dispatch(1.0);
  EXPECT_EQ(d.transport, Transport::rdma);
  EXPECT_DOUBLE_EQ(d.traffic.at(0, 3), 2.0);  // one message per selected expert
  EXPECT_DOUBLE_EQ(d.traffic.at(0, 5), 1.0);
  EXPECT_DOUBLE_EQ(d.traffic.at(0, 0), 0.0);
  const FabricView fabric{8, 0, nvlink(), ib()};
  const PortLoad load = port_load(d, fabric);
  EXPECT_TRUE(load.same_node_rdma);  // same node, yet over the NICs
  EXPECT_NEAR(load.bottleneck_s, 3.0 / 50e9, 1e-20);
  // The inter-node card's per-call cost applies.
  EXPECT_NEAR(analytic_collective_seconds(d, fabric), 3.0 / 50e9 + 3e-6 + 15e-6, 1e-12);
}

TEST(EpTraffic, builder_port_totals_equal_the_ports_of_its_pair_matrix_for_every_kernel_and_layout) {
  // Random tokens and counts over layouts with whole nodes, a partial node (no rail) and one
  // node; each collective's port totals (what port_load reads) against the ports of its own
  // matrix, and a builder without matrices against one with.
  RngStream rng(5, "ports-vs-pairs");
  const FabricView fabric_of[] = {{8, 0, nvlink(), ib()}, {8, 4, nvlink(), ib()}};
  for (EpKernels kernels : {EpKernels::normal, EpKernels::low_latency})
    for (int ranks : {8, 12, 24})
      for (int f = 0; f < 2; ++f) {
        const FabricView& fabric = fabric_of[f];
        EpTrafficBuilder with(kernels, ranks, 8, fabric.first_gpu), without(kernels, ranks, 8, fabric.first_gpu);
        without.set_pair_traffic(false);
        for (int src = 0; src < ranks; ++src) {
          std::vector<int> dests;
          for (int j = 0; j < 6; ++j) dests.push_back(static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(ranks))));
          with.add_token(src, dests);
          without.add_token(src, dests);
          std::vector<double> per_rank(static_cast<std::size_t>(ranks));
          for (double& a : per_rank) a = static_cast<double>(rng.uniform_index(20));
          with.add_counts(src, 40, 8, per_rank);
          without.add_counts(src, 40, 8, per_rank);
        }
        for (bool combine : {false, true}) {
          Collective c = combine ? with.combine(3.0) : with.dispatch(2.0);
          const Collective bare = combine ? without.combine(3.0) : without.dispatch(2.0);
          EXPECT_EQ(bare.traffic.ranks, 0);
          std::vector<double> from_builder, from_matrix, from_bare;
          const PortLoad a = port_load(c, fabric, &from_builder);
          const PortLoad bl = port_load(bare, fabric, &from_bare);
          const double builder_bytes = c.link_bytes();
          c.ports.clear();  // the matrix alone
          const PortLoad m = port_load(c, fabric, &from_matrix);
          ASSERT_EQ(from_builder.size(), from_matrix.size());
          for (std::size_t i = 0; i < from_matrix.size(); ++i) {
            EXPECT_NEAR(from_builder[i], from_matrix[i], 1e-9 * (1 + from_matrix[i])) << ranks << " port " << i;
            EXPECT_EQ(from_bare[i], from_builder[i]);
          }
          EXPECT_NEAR(a.bottleneck_s, m.bottleneck_s, 1e-12 * m.bottleneck_s);
          EXPECT_EQ(a.route_latency_s, m.route_latency_s);
          EXPECT_EQ(a.crosses_nodes, m.crosses_nodes);
          EXPECT_EQ(a.same_node_rdma, m.same_node_rdma);
          EXPECT_EQ(bl.bottleneck_s, a.bottleneck_s);
          EXPECT_NEAR(builder_bytes, c.link_bytes(), 1e-9 * c.link_bytes());
        }
        EXPECT_NEAR(with.rdma_token_pairs(), without.rdma_token_pairs(), 1e-9 * with.rdma_token_pairs());
      }
}

TEST(EpTraffic, expected_distinct_tokens_is_exact_at_the_ends_and_matches_independent_selections_between) {
  EXPECT_DOUBLE_EQ(expected_distinct_tokens(100, 0, 8), 0.0);
  EXPECT_NEAR(expected_distinct_tokens(100, 1, 8), 1.0, 0.01);
  EXPECT_DOUBLE_EQ(expected_distinct_tokens(100, 800, 8), 100.0);  // every selection lands here
  EXPECT_DOUBLE_EQ(expected_distinct_tokens(100, 100, 1), 100.0);  // top-1: no token repeats
  // Each of a token's 8 selections lands here with probability 1/4: P(hit) = 1 - (3/4)^8.
  EXPECT_NEAR(expected_distinct_tokens(1000, 2000, 8), 1000 * (1 - std::pow(0.75, 8)), 1e-9);
}

TEST(EpTraffic, count_level_traffic_matches_token_level_on_average) {
  // 16 ranks on 2 nodes, 64 experts (4 per rank), top-6 uniform: token-level traffic against the
  // count-level estimate from the same per-rank assignment counts.
  const int ranks = 16, experts = 64, k = 6, tokens = 512;
  RngStream rng(11, "count-vs-token");
  EpTrafficBuilder by_token(EpKernels::normal, ranks, 8, 0), by_count(EpKernels::normal, ranks, 8, 0);
  for (int src = 0; src < ranks; ++src) {
    std::vector<double> per_rank(ranks, 0.0);
    for (int t = 0; t < tokens; ++t) {
      std::vector<int> chosen, dests;
      while (static_cast<int>(chosen.size()) < k) {
        const int e = static_cast<int>(rng.uniform_index(experts));
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      for (int e : chosen) {
        dests.push_back(e / (experts / ranks));
        per_rank[static_cast<std::size_t>(dests.back())] += 1;
      }
      by_token.add_token(src, dests);
    }
    by_count.add_counts(src, tokens, k, per_rank);
  }
  const double exact = by_token.dispatch(1.0).link_bytes(), estimate = by_count.dispatch(1.0).link_bytes();
  EXPECT_NEAR(estimate, exact, 0.03 * exact);
  EXPECT_NEAR(by_count.rdma_token_pairs(), by_token.rdma_token_pairs(), 0.03 * by_token.rdma_token_pairs());
}

}  // namespace
}  // namespace moesim::test
