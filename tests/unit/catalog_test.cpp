#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>
#include <fstream>

#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

template <class S>
void expect_every_card_loads(const std::vector<std::string>& expected_names) {
  const Catalog catalog = source_catalog();
  EXPECT_EQ(catalog.names<S>(), expected_names);
  for (const auto& name : catalog.names<S>()) {
    std::vector<Diagnostic> sink;
    const auto spec = catalog.load<S>(name, sink);
    EXPECT_TRUE(spec.has_value()) << name << ": " << (sink.empty() ? "" : sink.front().format());
    if (spec) {
      EXPECT_EQ(spec->name, name);
    }
  }
}

TEST(Catalog, every_model_card_loads_with_provenance) {
  expect_every_card_loads<ModelSpec>({"deepseek-v2-lite", "deepseek-v3", "gpt-oss-120b", "llama-2-7b", "llama-3.1-70b",
                                      "llama-3.1-8b", "mixtral-8x22b", "mixtral-8x7b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b",
                                      "qwen3-235b-a22b", "qwen3-235b-a22b-fp8", "qwen3-30b-a3b"});
}

TEST(Catalog, every_gpu_card_loads_with_provenance) {
  expect_every_card_loads<GpuSpec>({"a100-sxm4-40gb", "a100-sxm4-80gb", "b200", "h100-sxm", "h200", "h800", "mi300x"});
}

TEST(Catalog, every_interconnect_card_loads_with_provenance) {
  expect_every_card_loads<InterconnectSpec>({"ib-hdr200", "ib-ndr400", "nvswitch-a100", "nvswitch-b200", "nvswitch-h100",
                                             "nvswitch-h800", "roce-400", "xgmi-mi300x"});
}

TEST(Catalog, every_gpu_names_an_existing_intra_node_fabric) {
  const Catalog catalog = source_catalog();
  const auto fabrics = catalog.names<InterconnectSpec>();
  for (const auto& name : catalog.names<GpuSpec>()) {
    std::vector<Diagnostic> sink;
    const auto gpu = catalog.load<GpuSpec>(name, sink);
    ASSERT_TRUE(gpu);
    EXPECT_NE(std::find(fabrics.begin(), fabrics.end(), gpu->default_intra_node), fabrics.end()) << name;
  }
}

// The architecture fields must reproduce the parameter counts the authors publish: a wrong width
// or layer count in a card shows up here.
TEST(Catalog, architecture_params_match_published_totals) {
  const Catalog catalog = source_catalog();
  for (const auto& name : catalog.names<ModelSpec>()) {
    std::vector<Diagnostic> sink;
    const auto m = catalog.load<ModelSpec>(name, sink);
    ASSERT_TRUE(m) << name;
    const double computed_b = m->total_params() / 1e9;
    std::printf("%-20s computed %8.2f B, published %8.2f B\n", name.c_str(), computed_b, m->total_params_b);
    EXPECT_NEAR(computed_b, m->total_params_b, 0.01 * m->total_params_b) << name;
  }
}

TEST(Catalog, mixtral_8x7b_counts_match_the_paper) {
  std::vector<Diagnostic> sink;
  const auto m = source_catalog().load<ModelSpec>("mixtral-8x7b", sink);
  ASSERT_TRUE(m);
  EXPECT_NEAR(m->total_params() / 1e9, 46.7, 0.1);
  EXPECT_NEAR(m->active_params() / 1e9, 12.9, 0.1);
  // GQA: 2 (K, V) x 8 KV heads x 128 x 2 bytes per layer.
  EXPECT_DOUBLE_EQ(m->kv_bytes_per_token_per_layer(), 4096.0);
}

/// A catalog home under the temp directory holding one card of the source tree, `dir/card.yaml`,
/// with `edit` applied to its text.
std::filesystem::path home_with_edited_card(const std::string& home_name, const std::string& dir, const std::string& card,
                                            const std::function<void(std::string&)>& edit) {
  const auto home = std::filesystem::temp_directory_path() / home_name;
  std::filesystem::remove_all(home);
  std::filesystem::create_directories(home / dir);
  std::ifstream in(kSourceDir / dir / (card + ".yaml"));
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  edit(s);
  std::ofstream out(home / dir / (card + ".yaml"));
  out << s;
  return home;
}

TEST(Catalog, card_without_a_source_does_not_load) {
  // Drop the citation of latency_us and of kind.
  const auto home = home_with_edited_card("moesim-catalog-test", "models/network/cards", "ib-ndr400", [](std::string& s) {
    for (const std::string prefix : {"latency_us", "kind"}) {
      const auto pos = s.find("\n  " + prefix + ":");
      if (pos != std::string::npos) s.erase(pos, s.find('\n', pos + 1) - pos);
    }
  });
  std::vector<Diagnostic> sink;
  const auto spec = Catalog(home).load<InterconnectSpec>("ib-ndr400", sink);
  EXPECT_FALSE(spec.has_value());
  ASSERT_FALSE(sink.empty());
  bool found = false;
  for (const auto& d : sink)
    found = found || (d.key_path == "latency_us" &&
                      d.message == "has no entry in `sources` or `estimates`: every number needs a source or is marked an estimate");
  EXPECT_TRUE(found);
  std::filesystem::remove_all(home);
}

TEST(Catalog, gpu_card_with_a_zero_thermal_resistance_does_not_load) {
  const std::string key = "\nthermal_r_die_sink_k_per_w: ";
  const auto home = home_with_edited_card("moesim-catalog-thermal-test", "models/gpu/cards", "h100-sxm", [&key](std::string& s) {
    const auto pos = s.find(key);
    if (pos != std::string::npos) s.replace(pos, s.find('\n', pos + 1) - pos, key + "0.0");
  });
  std::vector<Diagnostic> sink;
  EXPECT_FALSE(Catalog(home).load<GpuSpec>("h100-sxm", sink).has_value());
  bool found = false;
  for (const auto& d : sink) found = found || (d.key_path == "thermal_r_die_sink_k_per_w" && d.message.find("> 0") != std::string::npos);
  EXPECT_TRUE(found) << (sink.empty() ? std::string("no diagnostic") : sink.front().key_path + ": " + sink.front().message);
  std::filesystem::remove_all(home);
}

}  // namespace
}  // namespace moesim::test
