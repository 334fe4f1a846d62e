#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "models/routing/router.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

TEST(Config, parallel_sizes_are_derived_from_the_gpus) {
  const Scenario tp = quickstart();
  EXPECT_EQ(tp.parallel.tp, 4);
  EXPECT_EQ(tp.parallel.ep, 1);
  const Scenario ep = quickstart({"parallel.mode=ep"});
  EXPECT_EQ(ep.parallel.tp, 1);
  EXPECT_EQ(ep.parallel.ep, 4);
}

TEST(Config, intra_node_fabric_defaults_to_the_gpu_card) {
  const Scenario sc = quickstart();
  EXPECT_EQ(sc.cluster.intra_node.card, "nvswitch-h100");
  EXPECT_EQ(sc.cluster.inter_node.card, "ib-ndr400");
  EXPECT_DOUBLE_EQ(sc.cluster.intra_node.spec.bw_gbytes_per_s, 450.0);
}

TEST(Config, card_fields_can_be_overridden_from_the_command_line) {
  const Scenario sc = quickstart({"model.num_layers=4", "cluster.gpu.hbm_bw_tbytes_per_s=4.8"});
  EXPECT_EQ(sc.model.card, "mixtral-8x7b");
  EXPECT_EQ(sc.model.spec.num_layers, 4);
  EXPECT_EQ(sc.model.spec.hidden_size, 4096);
  EXPECT_DOUBLE_EQ(sc.cluster.gpu.spec.hbm_bw_tbytes_per_s, 4.8);
}

TEST(Config, resolved_yaml_round_trips) {
  const Scenario sc = quickstart({"parallel.mode=ep", "serving.max_num_seqs=16"});
  const std::string first = resolved_yaml(sc);
  const auto file = std::filesystem::temp_directory_path() / "moesim-roundtrip.yaml";
  {
    std::ofstream f(file);
    f << first;
  }
  const Scenario again = load_scenario(file, {}, source_catalog());
  EXPECT_EQ(resolved_yaml(again), first);
  std::filesystem::remove(file);
}

TEST(Config, every_field_is_declared_once_with_docs) {
  for (const auto& f : schema_of<ServingConfig>().fields()) EXPECT_FALSE(f.doc.empty()) << f.name;
  for (const auto& f : schema_of<ParallelConfig>().fields()) EXPECT_FALSE(f.doc.empty()) << f.name;
  const auto names = schema_of<ServingConfig>().names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
}

TEST(Registries, registered_names_are_exactly_these) {
  EXPECT_EQ(token_routers().names(),
            (std::vector<std::string>{"domain_affinity", "hot_experts", "trace", "uniform", "zipf"}));
  EXPECT_EQ(arrival_processes().names(),
            (std::vector<std::string>{"burst", "closed_loop", "constant", "dataset", "gamma", "poisson", "trace"}));
  EXPECT_EQ(length_distributions().names(), (std::vector<std::string>{"fixed", "lognormal", "normal", "uniform"}));
}

TEST(Registries, unknown_name_lists_valid_names) {
  try {
    (void)arrival_processes().get("weibull");
    FAIL() << "expected an error";
  } catch (const UnknownNameError& e) {
    EXPECT_STREQ(e.what(), "unknown arrival process \"weibull\"; valid: burst, closed_loop, constant, dataset, gamma, poisson, trace");
  }
}

TEST(Diagnostics, closest_match_suggests_near_names_only) {
  EXPECT_EQ(closest_match("max_num_seq", {"max_num_seqs", "max_model_len"}), "max_num_seqs");
  EXPECT_EQ(closest_match("zzzz", {"max_num_seqs", "max_model_len"}), "");
}

}  // namespace
}  // namespace moesim::test

#include "sim/report/svg_chart.hpp"

namespace moesim::test {
namespace {

TEST(Report, nice_ticks_cover_the_range_in_round_steps) {
  for (auto [lo, hi] : {std::pair{11.03, 11.32}, std::pair{0.0, 1.0}, std::pair{2640.0, 2719.0}, std::pair{-3.0, 7.5}}) {
    const auto t = nice_ticks(lo, hi);
    EXPECT_LE(t.front(), lo) << lo;
    EXPECT_GE(t.back(), hi) << hi;
    EXPECT_GE(t.size(), 3u);
    EXPECT_LE(t.size(), 12u);
  }
  EXPECT_EQ(nice_ticks(0.0, 1.0), (std::vector<double>{0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0}));
}

TEST(Report, charts_escape_text_and_draw_every_series) {
  const std::string svg = svg_line_chart({"a < b", "x", "y", {}, 640, 360}, {{"s1", {1, 2}, {3, 4}}, {"s&2", {1, 2}, {5, 6}}});
  EXPECT_NE(svg.find("a &lt; b"), std::string::npos);
  EXPECT_NE(svg.find("s&amp;2"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '\n'), 0);
  std::size_t polylines = 0;
  for (auto pos = svg.find("<polyline"); pos != std::string::npos; pos = svg.find("<polyline", pos + 1)) ++polylines;
  EXPECT_EQ(polylines, 2u);
}

}  // namespace
}  // namespace moesim::test

namespace moesim {
namespace {

TEST(Utf8, invalid_sequences_are_found_at_their_line_and_byte) {
  EXPECT_FALSE(first_invalid_utf8("plain ascii\nand caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80").has_value());
  EXPECT_EQ(first_invalid_utf8("ok\nab\xff"), std::make_optional(std::make_pair(2, 3)));          // not a lead byte
  EXPECT_EQ(first_invalid_utf8("\xc3"), std::make_optional(std::make_pair(1, 1)));                // cut short
  EXPECT_EQ(first_invalid_utf8("x\xc0\xaf"), std::make_optional(std::make_pair(1, 2)));           // overlong '/'
  EXPECT_EQ(first_invalid_utf8("\xed\xa0\x80"), std::make_optional(std::make_pair(1, 1)));        // a surrogate
  EXPECT_EQ(first_invalid_utf8("\xf4\x90\x80\x80"), std::make_optional(std::make_pair(1, 1)));    // past U+10FFFF
  EXPECT_EQ(first_invalid_utf8("\xe2\x28\xa1"), std::make_optional(std::make_pair(1, 1)));        // bad continuation
}

}  // namespace
}  // namespace moesim
