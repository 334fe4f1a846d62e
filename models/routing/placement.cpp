#include "models/routing/placement.hpp"

#include <algorithm>
#include <stdexcept>

namespace moesim {

int ExpertPlacement::experts_on_rank(int rank) const {
  return static_cast<int>(std::count(rank_of_expert.begin(), rank_of_expert.end(), rank));
}

ExpertPlacement contiguous_placement(int num_experts, int num_ranks) {
  if (num_ranks < 1 || num_experts % num_ranks != 0)
    throw std::invalid_argument("contiguous placement needs experts divisible by ranks");
  ExpertPlacement p;
  p.num_ranks = num_ranks;
  p.rank_of_expert.resize(static_cast<std::size_t>(num_experts));
  const int per_rank = num_experts / num_ranks;
  for (int e = 0; e < num_experts; ++e) p.rank_of_expert[static_cast<std::size_t>(e)] = e / per_rank;
  return p;
}

}  // namespace moesim
