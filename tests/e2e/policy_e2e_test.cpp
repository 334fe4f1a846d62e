// Expert placement policies in the simulation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

nlohmann::json run(const std::string& sets, const std::string& tag) {
  const auto out = scratch_dir(tag) / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set parallel.mode=ep --set workload.routing.model=hot_experts "
                              "--set 'workload.routing.hot_experts=[0, 1]' --set workload.routing.hot_share=0.6 " + sets +
                                  " --out '" + out.string() + "'",
                              tag);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(read_text(out / "summary.json"));
}

TEST(Policies, eplb_replicas_lower_the_gpu_load_imbalance_of_hot_experts) {
  const auto stat = run("--set routing.policy=static", "static");
  const auto eplb = run("--set routing.policy=eplb --set routing.num_redundant_experts=8 --set routing.interval_steps=20 "
                        "--set routing.window_steps=20",
                        "eplb");
  EXPECT_EQ(stat["routing"]["rebalances"].get<int>(), 0);
  EXPECT_GT(eplb["routing"]["rebalances"].get<int>(), 10);
  EXPECT_LT(eplb["imbalance"]["gpu_max_over_mean_per_step_mean"].get<double>(),
            0.7 * stat["imbalance"]["gpu_max_over_mean_per_step_mean"].get<double>());
  EXPECT_EQ(eplb["completed"].get<int>(), 30);
}

TEST(Policies, eplb_needs_expert_parallelism_and_slots_that_divide) {
  const CliResult tp = run_cli("validate scenarios/quickstart.yaml --set routing.policy=eplb", "eplb-tp");
  EXPECT_EQ(tp.exit_code, 2);
  EXPECT_NE(tp.err.find("routing.policy: eplb places experts on an EP group: needs parallel.mode ep"), std::string::npos) << tp.err;
  const CliResult slots = run_cli("validate scenarios/quickstart.yaml --set parallel.mode=ep --set routing.policy=eplb "
                                  "--set routing.num_redundant_experts=3",
                                  "eplb-slots");
  EXPECT_EQ(slots.exit_code, 2);
  EXPECT_NE(slots.err.find("routing.num_redundant_experts: experts + redundant experts (8 + 3) must divide evenly over ep = 4 GPUs"),
            std::string::npos)
      << slots.err;
}

}  // namespace
}  // namespace moesim::test
