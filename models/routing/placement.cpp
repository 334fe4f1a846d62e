#include "models/routing/placement.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace moesim {

int ExpertPlacement::experts_on_rank(int rank) const {
  return static_cast<int>(std::count(rank_of_expert.begin(), rank_of_expert.end(), rank));
}

ExpertPlacement contiguous_placement(int num_experts, int num_ranks) {
  // A dense model has no experts: an empty placement.
  if (num_ranks < 1 || num_experts < 0) throw std::invalid_argument("contiguous placement needs ranks and experts >= 0");
  ExpertPlacement p;
  p.num_ranks = num_ranks;
  p.rank_of_expert.resize(static_cast<std::size_t>(num_experts));
  for (int e = 0; e < num_experts; ++e)
    p.rank_of_expert[static_cast<std::size_t>(e)] = static_cast<int>(static_cast<std::int64_t>(e) * num_ranks / num_experts);
  return p;
}

}  // namespace moesim
