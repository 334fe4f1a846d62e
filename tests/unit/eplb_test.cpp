#include <gtest/gtest.h>

#include "models/routing/eplb.hpp"

namespace moesim {
namespace {

const std::vector<std::vector<double>> kWeight{{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
                                               {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};

TEST(Eplb, eplb_matches_reference_example) {
  // github.com/deepseek-ai/EPLB README: 16 replicas, 4 groups, 2 nodes, 8 GPUs.
  const EplbResult r = rebalance_experts(kWeight, 16, 4, 2, 8);
  EXPECT_EQ(r.phy2log, (std::vector<std::vector<int>>{{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                                      {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}}));
  EXPECT_EQ(r.logcnt, (std::vector<std::vector<int>>{{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1}, {1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1}}));
  const auto after = gpu_max_over_mean(kWeight, r.phy2log, 8);
  EXPECT_NEAR(after[0], 1.208, 0.0005);
  EXPECT_NEAR(after[1], 1.242, 0.0005);
  const auto before = contiguous_gpu_max_over_mean(kWeight, 8);
  EXPECT_NEAR(before[0], 2.083, 0.0005);
  EXPECT_NEAR(before[1], 2.381, 0.0005);
  // log2phy inverts phy2log.
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t e = 0; e < 12; ++e)
      for (int s : r.log2phy[l][e]) {
        if (s < 0) continue;
        EXPECT_EQ(r.phy2log[l][static_cast<std::size_t>(s)], static_cast<int>(e));
      }
}

TEST(Eplb, global_policy_when_groups_do_not_divide_over_nodes) {
  const EplbResult r = rebalance_experts(kWeight, 16, 3, 2, 8);  // 3 groups over 2 nodes: global
  for (const auto& row : r.logcnt) {
    int total = 0;
    for (int c : row) total += c;
    EXPECT_EQ(total, 16);
  }
  const auto after = gpu_max_over_mean(kWeight, r.phy2log, 8);
  for (double x : after) EXPECT_LT(x, 1.5);
}

}  // namespace
}  // namespace moesim
