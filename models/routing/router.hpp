#pragma once
// Token-to-expert routers: for every token of a step and every MoE layer, the top-k logical
// experts the model's gate would pick. The workload decides which router runs (workload.routing).
//
//   uniform : top_k distinct experts drawn uniformly at random (stream "router/uniform"); the
//             balanced reference every skewed workload is compared against.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "models/common/registry.hpp"
#include "models/common/rng.hpp"

namespace moesim {

/// What a router may know about a token.
struct TokenInfo {
  std::int64_t request_id = 0;
  int position = 0;  ///< index of the token in its sequence
};

class TokenRouter {
 public:
  virtual ~TokenRouter() = default;
  /// Writes tokens.size() * top_k expert ids (distinct within a token) into `experts`.
  virtual void route(int moe_layer, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts) = 0;
};

struct RouterContext {
  int num_experts = 0;
  int top_k = 0;
  std::uint64_t seed = 0;
};

using RouterFactory = std::function<std::unique_ptr<TokenRouter>(const RouterContext&)>;
[[nodiscard]] const Registry<RouterFactory>& token_routers();

/// Draws k distinct values from [0, n) into out (k <= n).
void sample_distinct(RngStream& rng, int n, std::span<std::int32_t> out);

}  // namespace moesim
