// Every model card runs end to end on a cluster it fits: MoE cards (shared experts, leading dense
// layers, group-limited routing, MXFP4 experts) and dense ones.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

struct ArchitectureCase {
  const char* model;
  const char* sets;  ///< cluster and parallel layout it fits
};

void PrintTo(const ArchitectureCase& c, std::ostream* os) { *os << c.model; }

class EveryModel : public ::testing::TestWithParam<ArchitectureCase> {};

TEST_P(EveryModel, runs_a_small_workload_to_completion) {
  const auto& c = GetParam();
  const auto out = scratch_dir(std::string("arch-") + c.model);
  const CliResult r = run_cli(std::string("run scenarios/quickstart.yaml --quiet --out '") + out.string() + "' --set model=" + c.model +
                                  " --set workload.requests=4 --set workload.output_tokens.value=8 --set serving.max_model_len=4096"
                                  " --set network.fidelity=analytic " + c.sets,
                              std::string("arch-") + c.model);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  EXPECT_EQ(s["completed"].get<int>(), 4);
  EXPECT_GT(s["output_throughput"].get<double>(), 0.0);
  std::filesystem::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(
    Cards, EveryModel,
    ::testing::Values(ArchitectureCase{"mixtral-8x7b", "--set parallel.mode=ep"},
                      ArchitectureCase{"mixtral-8x22b", "--set cluster.gpus_per_node=8"},
                      ArchitectureCase{"qwen3-30b-a3b", "--set cluster.gpus_per_node=1"},
                      ArchitectureCase{"qwen3-235b-a22b", "--set cluster.gpus_per_node=8 --set parallel.mode=ep"},
                      ArchitectureCase{"qwen1.5-moe-a2.7b", "--set cluster.gpus_per_node=1"},
                      ArchitectureCase{"olmoe-1b-7b", "--set parallel.mode=ep"},
                      ArchitectureCase{"deepseek-v2-lite", "--set cluster.gpus_per_node=2 --set parallel.mode=ep --set parallel.attention=dp"},
                      ArchitectureCase{"deepseek-v3",
                                       "--set cluster.gpu=h800 --set cluster.gpus_per_node=8 --set cluster.nodes=2 --set parallel.mode=ep"
                                       " --set parallel.attention=dp --set network.ep_mode=low_latency"
                                       " --set workload.routing.model=domain_affinity"},
                      ArchitectureCase{"gpt-oss-120b", "--set cluster.gpus_per_node=1"},
                      ArchitectureCase{"llama-2-7b", "--set cluster.gpu=a100-sxm4-80gb --set cluster.gpus_per_node=1"},
                      ArchitectureCase{"llama-3.1-8b", "--set cluster.gpus_per_node=1"},
                      ArchitectureCase{"llama-3.1-70b", "--set cluster.gpus_per_node=8 --set parallel.dp=2"}),
    [](const ::testing::TestParamInfo<ArchitectureCase>& param_info) {
      std::string name = param_info.param.model;
      for (char& ch : name)
        if (ch == '-' || ch == '.') ch = '_';
      return name;
    });

}  // namespace
}  // namespace moesim::test
