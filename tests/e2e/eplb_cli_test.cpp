// `moesim eplb` reproduces DeepSeek's EPLB README example exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

TEST(EplbCli, prints_the_reference_example_exactly) {
  const auto dir = scratch_dir("eplb");
  std::ofstream(dir / "w.json") << "[[90,132,40,61,104,165,39,4,73,56,183,86],[20,107,104,64,19,197,187,157,172,86,16,27]]";
  const CliResult r = run_cli("eplb --weights '" + (dir / "w.json").string() + "' --replicas 16 --groups 4 --nodes 2 --gpus 8", "eplb");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["phy2log"], nlohmann::json::parse("[[5,6,5,7,8,4,3,4,10,9,10,2,0,1,11,1],[7,10,6,8,6,11,8,9,2,4,5,1,5,0,3,1]]"));
  EXPECT_EQ(j["logcnt"], nlohmann::json::parse("[[1,2,1,1,2,2,1,1,1,1,2,1],[1,2,1,1,1,2,2,1,2,1,1,1]]"));
  EXPECT_NEAR(j["gpu_max_over_mean_before"][0].get<double>(), 2.083, 5e-4);
  EXPECT_NEAR(j["gpu_max_over_mean_after"][1].get<double>(), 1.242, 5e-4);
  std::ofstream(dir / "bad.json") << "[[1,2],[3]]";
  const CliResult bad = run_cli("eplb --weights '" + (dir / "bad.json").string() + "' --replicas 4 --gpus 2", "eplb-bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("expected a JSON list of layers, each a list of the same number of loads >= 0"), std::string::npos);
}

}  // namespace
}  // namespace moesim::test
