#pragma once
// Expert placement: which EP rank holds each logical expert.
//
//   contiguous : rank r holds experts [r*E/N, (r+1)*E/N) (vLLM's and DeepEP's default layout).
#include <vector>

namespace moesim {

struct ExpertPlacement {
  int num_ranks = 1;
  std::vector<int> rank_of_expert;  ///< logical expert -> EP rank

  [[nodiscard]] int experts_on_rank(int rank) const;
};

/// Rank of expert e is floor(e * ranks / experts): equal blocks when the ranks divide the experts.
[[nodiscard]] ExpertPlacement contiguous_placement(int num_experts, int num_ranks);

}  // namespace moesim
