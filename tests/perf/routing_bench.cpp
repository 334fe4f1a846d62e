// Routing speed: token-level top-k for Mixtral-sized routing, count-level for DeepSeek-V3-sized.
// Prints one line per case with the figure the workload issue asks for. Run: make bench.
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>

#include "models/routing/router.hpp"

using namespace moesim;
using Clock = std::chrono::steady_clock;

namespace {

RouterContext ctx(const char* model, const char* name, int experts, int k, int layers, int n_group, int topk_group,
                  double spec, double locality) {
  RouterContext c;
  c.num_experts = experts;
  c.top_k = k;
  c.num_moe_layers = layers;
  c.n_group = n_group;
  c.topk_group = topk_group;
  c.seed = 1;
  c.model_name = name;
  c.num_domains = 25;
  c.params.model = model;
  c.params.specialization = spec;
  c.params.locality = locality;
  return c;
}

double token_level_seconds(const char* model, double locality) {
  auto router = token_routers().get(model)(ctx(model, "mixtral-8x7b", 8, 2, 32, 0, 0, 0.25, locality));
  const int step_tokens = 8192, total = 1 << 20;
  std::vector<TokenInfo> tokens(step_tokens);
  std::vector<std::int32_t> experts(static_cast<std::size_t>(step_tokens) * 2);
  std::vector<float> weights;
  const auto t0 = Clock::now();
  for (int done = 0, seq = 0; done < total; done += step_tokens) {
    for (int i = 0; i < step_tokens; ++i) tokens[static_cast<std::size_t>(i)] = {seq + i / 512, i % 512, (seq + i / 512) % 25};
    seq += step_tokens / 512;
    for (int l = 0; l < 32; ++l) router->route(l, tokens, experts, weights);
    for (int s = seq - step_tokens / 512; s < seq; ++s) router->forget(s);
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double count_level_ms_per_step() {
  auto router = token_routers().get("domain_affinity")(ctx("domain_affinity", "deepseek-v3", 256, 8, 58, 8, 4, 1.5, 0.25));
  const TokenGroup group{0, 3, 16384};
  std::vector<double> counts(256);
  for (int l = 0; l < 58; ++l) router->route_counts(l, std::span<const TokenGroup>(&group, 1), counts);  // warm the caches
  const int steps = 200;
  const auto t0 = Clock::now();
  double sink = 0;
  for (int s = 0; s < steps; ++s)
    for (int l = 0; l < 58; ++l) {
      router->route_counts(l, std::span<const TokenGroup>(&group, 1), counts);
      sink += counts[0];
    }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
  return sink > 0 ? ms : ms;
}

}  // namespace

int main() {
  std::printf("%-62s %10s\n", "case", "figure");
  std::printf("%-62s %8.3f s\n", "token-level uniform, 1M tokens x 32 layers x top-2", token_level_seconds("uniform", 0));
  std::printf("%-62s %8.3f s\n", "token-level domain_affinity (locality 0.25), 1M x 32 x top-2",
              token_level_seconds("domain_affinity", 0.25));
  std::printf("%-62s %8.3f ms\n", "count-level DeepSeek-V3 (256 experts, top-8, 58 layers), 16k tok/step",
              count_level_ms_per_step());
  return 0;
}
