#include "models/routing/router.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

namespace moesim {

void sample_distinct(RngStream& rng, int n, std::span<std::int32_t> out) {
  const int k = static_cast<int>(out.size());
  if (2 * k <= n) {
    // Rejection: with k <= n/2 each draw is accepted with probability >= 1/2.
    for (int i = 0; i < k; ++i) {
      std::int32_t e;
      do {
        e = static_cast<std::int32_t>(rng.uniform_index(static_cast<std::uint64_t>(n)));
      } while (std::find(out.begin(), out.begin() + i, e) != out.begin() + i);
      out[i] = e;
    }
    return;
  }
  // Partial Fisher-Yates for dense picks.
  std::vector<std::int32_t> pool(static_cast<std::size_t>(n));
  std::iota(pool.begin(), pool.end(), 0);
  for (int i = 0; i < k; ++i) {
    const auto j = i + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(n - i)));
    std::swap(pool[i], pool[j]);
    out[i] = pool[i];
  }
}

namespace {

class UniformRouter final : public TokenRouter {
 public:
  explicit UniformRouter(const RouterContext& ctx) : ctx_(ctx), rng_(ctx.seed, "router/uniform") {}

  void route(int /*moe_layer*/, std::span<const TokenInfo> tokens, std::span<std::int32_t> experts) override {
    const auto k = static_cast<std::size_t>(ctx_.top_k);
    for (std::size_t t = 0; t < tokens.size(); ++t) sample_distinct(rng_, ctx_.num_experts, experts.subspan(t * k, k));
  }

 private:
  RouterContext ctx_;
  RngStream rng_;
};

Registry<RouterFactory> make_router_registry() {
  Registry<RouterFactory> r("router");
  r.add("uniform", "top_k distinct experts uniformly at random per token and layer",
        [](const RouterContext& ctx) { return std::make_unique<UniformRouter>(ctx); });
  return r;
}

}  // namespace

const Registry<RouterFactory>& token_routers() {
  static const Registry<RouterFactory> registry = make_router_registry();
  return registry;
}

}  // namespace moesim
