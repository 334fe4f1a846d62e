// Calibration against DeepEP's published kernel performance (github.com/deepseek-ai/DeepEP,
// README of 2025-02-24, as quoted in ../shared/anchors/README.md): H800 nodes of 8 GPUs on NVLink
// (nvswitch-h800 card), one ConnectX-7 400 Gb/s InfiniBand NIC per GPU (ib-ndr400 card).
//
// Each row replays DeepEP's own benchmark (tests/test_intranode.py, test_internode.py,
// test_low_latency.py of that release) through moesim's communication model:
//   - the routing: every rank draws scores |N(0,1)| + 1 over 256 experts for each of its tokens and
//     keeps the top 8; internode, the groups are the nodes and a token may use the top
//     min(nodes, 4) of them (by their best expert's score), as the benchmark does;
//   - the traffic: models/network/ep_traffic.hpp (the code the simulator runs), FP8 dispatch
//     (hidden + one FP32 scale per 128 channels) and BF16 combine;
//   - the time: the closed form of models/network/collectives.hpp on the two cards (the flow
//     fidelity runs the same collective as one SimGrid parallel task and agrees with it to rounding:
//     tests/e2e/network_test.cpp);
//   - the metric, counted as the benchmark counts it: normal intranode "NVLink bandwidth" = tokens a
//     rank receives (its own included) x token bytes / time; normal internode "RDMA bandwidth" =
//     (token, destination node) pairs a rank sends, its own node included, x token bytes / time;
//     low latency: the kernel time.
// The parameters are the cards' bandwidth, achievable_fraction, latency_us and
// collective_latency_us, one set per card for every row. Tolerance 15% (issue 3, part 6).
//
// Rows go to $MOESIM_CALIBRATION_OUT/deepep.csv (default: <build dir>/calibration/deepep.csv).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "models/common/rng.hpp"
#include "models/network/ep_traffic.hpp"
#include "sim/config/catalog.hpp"
#include "tests/calibration/calibration.hpp"

namespace moesim::test {
namespace {

constexpr double kTolerancePct = 15.0;
constexpr int kExperts = 256, kTopK = 8, kHidden = 7168, kGpusPerNode = 8;
const char* const kSourceNormal =
    "github.com/deepseek-ai/DeepEP README 2025-02-24, normal kernels (H800, CX7 400 Gb/s; 4096 tokens, hidden 7168, "
    "top-8 of 256, top-4 groups, FP8 dispatch, BF16 combine)";
const char* const kSourceLowLatency =
    "github.com/deepseek-ai/DeepEP README 2025-02-24, low-latency kernels (H800, CX7 400 Gb/s; 128 tokens, hidden "
    "7168, top-8, FP8 dispatch, BF16 combine)";

InterconnectSpec card(const std::string& name) {
  std::vector<Diagnostic> sink;
  auto spec = Catalog(calibration::catalog_home()).load<InterconnectSpec>(name, sink);
  if (!spec) throw std::runtime_error(name + ": " + (sink.empty() ? std::string("cannot load") : sink.front().format()));
  return *spec;
}

struct Row {
  std::string anchor, source, metric, unit;
  double published = 0, simulated = 0;

  [[nodiscard]] double error_pct() const { return 100.0 * (simulated - published) / published; }
  [[nodiscard]] bool pass() const { return std::abs(error_pct()) <= kTolerancePct; }
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void write_rows(const std::string& family, const std::vector<Row>& rows) {
  const char* env = std::getenv("MOESIM_CALIBRATION_OUT");
  const std::filesystem::path dir = env != nullptr && *env != '\0' ? std::filesystem::path(env) : std::filesystem::path(MOESIM_CALIBRATION_DEFAULT_DIR);
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / (family + ".csv"));
  f << "family,anchor,source,metric,unit,published,simulated,error_pct,tolerance_pct,pass\n";
  char num[64];
  for (const Row& r : rows) {
    f << family << ',' << csv_field(r.anchor) << ',' << csv_field(r.source) << ',' << csv_field(r.metric) << ',' << r.unit << ',';
    std::snprintf(num, sizeof num, "%.4g,%.4g,%.2f,%.0f,", r.published, r.simulated, r.error_pct(), kTolerancePct);
    f << num << (r.pass() ? "true" : "false") << '\n';
  }
}

/// One rank's tokens as DeepEP's benchmark routes them: per token the ranks of its top-8 experts.
std::vector<std::vector<int>> benchmark_routing(RngStream& rng, int tokens, int ranks, bool group_limited) {
  const int nodes = std::max(1, ranks / kGpusPerNode);
  const int groups_kept = std::min(nodes, 4);
  const int per_group = kExperts / nodes, per_rank = kExperts / ranks;
  std::vector<std::vector<int>> out(static_cast<std::size_t>(tokens));
  std::vector<double> score(kExperts);
  std::vector<int> order(kExperts), group_order(static_cast<std::size_t>(nodes));
  std::vector<double> group_best(static_cast<std::size_t>(nodes));
  for (auto& dests : out) {
    for (double& s : score) s = std::abs(rng.standard_normal()) + 1.0;
    if (group_limited && nodes > groups_kept) {
      for (int g = 0; g < nodes; ++g)
        group_best[static_cast<std::size_t>(g)] = *std::max_element(score.begin() + g * per_group, score.begin() + (g + 1) * per_group);
      std::iota(group_order.begin(), group_order.end(), 0);
      std::partial_sort(group_order.begin(), group_order.begin() + groups_kept, group_order.end(),
                        [&](int a, int b) { return group_best[static_cast<std::size_t>(a)] > group_best[static_cast<std::size_t>(b)]; });
      for (int i = groups_kept; i < nodes; ++i)
        for (int e = group_order[static_cast<std::size_t>(i)] * per_group; e < (group_order[static_cast<std::size_t>(i)] + 1) * per_group; ++e)
          score[static_cast<std::size_t>(e)] = -1.0;
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + kTopK, order.end(),
                      [&](int a, int b) { return score[static_cast<std::size_t>(a)] > score[static_cast<std::size_t>(b)]; });
    for (int j = 0; j < kTopK; ++j) dests.push_back(order[static_cast<std::size_t>(j)] / per_rank);
  }
  return out;
}

struct Measured {
  double dispatch_s = 0, combine_s = 0;
  double recv_tokens_per_rank = 0;   ///< tokens a rank receives, its own included (intranode metric)
  double rdma_pairs_per_rank = 0;    ///< (token, node) pairs a rank sends, own node included (internode metric)
};

Measured run_benchmark(EpKernels kernels, int ranks, int tokens_per_rank, std::uint64_t seed) {
  const FabricView fabric{kGpusPerNode, 0, card("nvswitch-h800"), card("ib-ndr400")};
  EpTrafficBuilder traffic(kernels, ranks, kGpusPerNode, 0);
  RngStream rng(seed, "deepep-benchmark/ep" + std::to_string(ranks));
  double received = 0;
  for (int src = 0; src < ranks; ++src) {
    for (const auto& dests : benchmark_routing(rng, tokens_per_rank, ranks, ranks > kGpusPerNode)) {
      traffic.add_token(src, dests);
      std::vector<int> unique(dests);
      std::sort(unique.begin(), unique.end());
      received += static_cast<double>(std::unique(unique.begin(), unique.end()) - unique.begin());
    }
  }
  Measured m;
  m.dispatch_s = analytic_collective_seconds(traffic.dispatch(token_bytes(kHidden, 1.0)), fabric);
  m.combine_s = analytic_collective_seconds(traffic.combine(token_bytes(kHidden, 2.0)), fabric);
  m.recv_tokens_per_rank = received / ranks;
  m.rdma_pairs_per_rank = traffic.rdma_token_pairs() / ranks;
  return m;
}

TEST(DeepEP, normal_and_low_latency_kernels_within_15_percent_of_the_published_numbers) {
  std::vector<Row> rows;
  const double fp8 = token_bytes(kHidden, 1.0), bf16 = token_bytes(kHidden, 2.0);

  // Normal kernels, intranode EP8: NVLink bottleneck bandwidth.
  {
    const Measured m = run_benchmark(EpKernels::normal, 8, 4096, 1);
    rows.push_back({"normal intranode EP8 dispatch", kSourceNormal, "NVLink bottleneck bandwidth", "GB/s", 153,
                    m.recv_tokens_per_rank * fp8 / m.dispatch_s / 1e9});
    rows.push_back({"normal intranode EP8 combine", kSourceNormal, "NVLink bottleneck bandwidth", "GB/s", 158,
                    m.recv_tokens_per_rank * bf16 / m.combine_s / 1e9});
  }
  // Normal kernels, internode: RDMA bottleneck bandwidth.
  const struct { int ep; double dispatch, combine; } internode[] = {{16, 43, 43}, {32, 44, 47}, {64, 46, 45}};
  for (const auto& p : internode) {
    const Measured m = run_benchmark(EpKernels::normal, p.ep, 4096, 2);
    const std::string ep = "EP" + std::to_string(p.ep);
    rows.push_back({"normal internode " + ep + " dispatch", kSourceNormal, "RDMA bottleneck bandwidth", "GB/s", p.dispatch,
                    m.rdma_pairs_per_rank * fp8 / m.dispatch_s / 1e9});
    rows.push_back({"normal internode " + ep + " combine", kSourceNormal, "RDMA bottleneck bandwidth", "GB/s", p.combine,
                    m.rdma_pairs_per_rank * bf16 / m.combine_s / 1e9});
  }
  // Low-latency kernels: latency per call.
  const struct { int ep; double dispatch_us, combine_us; } low_latency[] = {
      {8, 163, 318}, {16, 173, 329}, {32, 182, 350}, {64, 186, 353}, {128, 192, 369}, {256, 194, 360}};
  for (const auto& p : low_latency) {
    const Measured m = run_benchmark(EpKernels::low_latency, p.ep, 128, 3);
    const std::string ep = "EP" + std::to_string(p.ep);
    rows.push_back({"low-latency " + ep + " dispatch", kSourceLowLatency, "latency", "us", p.dispatch_us, m.dispatch_s * 1e6});
    rows.push_back({"low-latency " + ep + " combine", kSourceLowLatency, "latency", "us", p.combine_us, m.combine_s * 1e6});
  }

  write_rows("deepep", rows);
  for (const Row& r : rows) {
    std::printf("%-36s %-28s published %8.1f %-4s simulated %8.1f  error %+6.1f%%\n", r.anchor.c_str(), r.metric.c_str(), r.published,
                r.unit.c_str(), r.simulated, r.error_pct());
    EXPECT_TRUE(r.pass()) << r.anchor << ": simulated " << r.simulated << " " << r.unit << " against " << r.published << " ("
                          << r.error_pct() << "%, tolerance " << kTolerancePct << "%)";
  }
}

}  // namespace
}  // namespace moesim::test
