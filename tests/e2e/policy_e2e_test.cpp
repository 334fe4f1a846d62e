// Expert placement policies in the simulation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>

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
  EXPECT_EQ(stat["routing"]["rebalances"]["count"].get<int>(), 0);
  EXPECT_GT(eplb["routing"]["rebalances"]["count"].get<int>(), 10);
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


nlohmann::json hot(const std::string& policy, const std::string& extra, const std::string& tag) {
  return run("--set routing.policy=" + policy + " --set routing.num_redundant_experts=4 --set routing.interval_steps=50 "
             "--set routing.window_steps=50 " + extra, tag);
}

TEST(Policies, a_weight_migration_over_idle_links_takes_bytes_over_bandwidth_plus_latency) {
  // Stalled serving: the copies have the links to themselves, so SimGrid's flow time equals the
  // closed form max over ports of bytes / bandwidth + latency.
  const auto s = hot("eplb", "--set routing.migration=stall --set network.fidelity=flow", "mig-stall");
  const auto& r = s["routing"]["rebalances"];
  EXPECT_GT(r["weight_moves"].get<int>(), 0);
  EXPECT_GT(r["bytes_moved"].get<double>(), 1e9);
  EXPECT_NEAR(r["seconds"].get<double>(), r["analytic_seconds"].get<double>(), 1e-6 * r["analytic_seconds"].get<double>());
  // The GPUs draw power meanwhile: at least idle power x time x GPUs.
  EXPECT_GT(r["energy_j"].get<double>(), 4 * 60.0 * r["seconds"].get<double>());
  EXPECT_DOUBLE_EQ(s["energy"]["migration_energy_j"].get<double>(), r["energy_j"].get<double>());
}

TEST(Policies, overlapped_migration_finishes_the_workload_sooner_than_stalling_serving) {
  const auto stall = hot("eplb", "--set routing.migration=stall", "mig-stall2");
  const auto overlap = hot("eplb", "--set routing.migration=overlap", "mig-overlap");
  const auto none = hot("eplb", "--set routing.migration=none", "mig-none");
  EXPECT_LT(overlap["duration"].get<double>(), stall["duration"].get<double>());
  EXPECT_LE(none["duration"].get<double>(), stall["duration"].get<double>());
  EXPECT_EQ(none["routing"]["rebalances"]["weight_moves"].get<int>(), 0);
  EXPECT_EQ(overlap["routing"]["rebalances"]["energy_j"].get<double>(), 0.0);
}

TEST(Policies, replica_steering_policies_lower_the_gpu_load_imbalance_below_the_default_rule) {
  const auto eplb = hot("eplb", "", "steer-eplb");
  const auto ll = hot("least_loaded", "", "steer-ll");
  const auto p2c = hot("least_loaded", "--set routing.least_loaded_choices=2", "steer-p2c");
  const auto nectar = hot("nectar", "--set routing.nectar.mode=replica", "steer-nectar");
  const double base = eplb["routing"]["gpu_load_max_over_mean_after"].get<double>();
  EXPECT_EQ(eplb["routing"]["rerouted_fraction"].get<double>(), 0.0);
  for (const auto* s : {&ll, &p2c, &nectar}) {
    EXPECT_LT((*s)["routing"]["gpu_load_max_over_mean_after"].get<double>(), base) << (*s)["routing"].dump();
    EXPECT_GT((*s)["routing"]["rerouted_fraction"].get<double>(), 0.0);
    EXPECT_EQ((*s)["routing"]["selection_divergence"].get<double>(), 0.0);
    EXPECT_EQ((*s)["completed"].get<int>(), 30);
  }
  // "before" is the gate's own selection on the contiguous map: the same workload, whatever the policy.
  EXPECT_NEAR(ll["routing"]["gpu_load_max_over_mean_before"].get<double>(), eplb["routing"]["gpu_load_max_over_mean_before"].get<double>(),
              0.05);
  EXPECT_EQ(ll["routing"]["per_layer_gpu_load_max_over_mean"]["after"].size(), 32u);
}

/// experts.csv of a run: tokens per GPU and the number of GPUs each (layer 0) expert computed on.
struct ExpertRows {
  std::map<int, double> gpu_tokens;
  std::map<int, std::set<int>> gpus_of_expert0;  // layer 0
  double total = 0;
};

ExpertRows expert_rows(const std::filesystem::path& csv) {
  ExpertRows r;
  for (const auto& row : read_rows(csv)) {
    const double t = std::stod(row.at("tokens"));
    const int gpu = std::stoi(row.at("gpu"));
    r.gpu_tokens[gpu] += t;
    r.total += t;
    if (row.at("layer") == "0" && t > 0) r.gpus_of_expert0[std::stoi(row.at("expert"))].insert(gpu);
  }
  return r;
}

TEST(Policies, balancedness_per_layer_gpu_imbalance_and_experts_csv_follow_the_placement_in_use) {
  const auto dir = scratch_dir("placement-stats");
  const auto one = [&](const std::string& policy) {
    const auto out = dir / policy;
    const std::string replicas = policy == "static" ? "" : "--set routing.num_redundant_experts=4 ";
    const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set parallel.mode=ep --set workload.routing.model=hot_experts "
                                "--set 'workload.routing.hot_experts=[0, 1]' --set workload.routing.hot_share=0.6 "
                                "--set routing.interval_steps=20 --set routing.window_steps=20 " + replicas +
                                "--set routing.policy=" + policy + " --out '" + out.string() + "'",
                                policy);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::make_pair(nlohmann::json::parse(read_text(out / "summary.json")), expert_rows(out / "experts.csv"));
  };
  const auto [stat, stat_rows] = one("static");
  const auto [eplb, eplb_rows] = one("eplb");
  const auto [ll, ll_rows] = one("least_loaded");
  const double b_static = stat["imbalance"]["balancedness"].get<double>();
  const double b_eplb = eplb["imbalance"]["balancedness"].get<double>();
  const double b_ll = ll["imbalance"]["balancedness"].get<double>();
  // Hot experts 0 and 1 share GPU 0 in the contiguous map; replicas spread them.
  EXPECT_GT(b_eplb, b_static + 0.05);
  EXPECT_GT(b_ll, b_static + 0.05);
  EXPECT_NE(b_eplb, b_ll);
  const auto layer0_gpu_mom = [](const nlohmann::json& s) { return s["imbalance"]["per_layer"][0]["gpu_max_over_mean"].get<double>(); };
  EXPECT_LT(layer0_gpu_mom(eplb), layer0_gpu_mom(stat) - 0.2);
  // The per-layer figure and the step-mean figure describe the same placement: the summary's
  // routing.per_layer "after" (per-step mean) is at least the aggregated ratio of the window.
  EXPECT_LE(layer0_gpu_mom(eplb), eplb["routing"]["per_layer_gpu_load_max_over_mean"]["after"][0].get<double>() + 1e-9);
  // experts.csv: in static every expert computes on its one contiguous GPU; under eplb the hot
  // expert 0 computes on its replicas' GPUs too, and GPU 0 carries a smaller share.
  for (const auto& [e, gpus] : stat_rows.gpus_of_expert0) {
    EXPECT_EQ(gpus.size(), 1u) << "expert " << e;
    EXPECT_EQ(*gpus.begin(), e / 2) << "expert " << e;
  }
  EXPECT_GT(eplb_rows.gpus_of_expert0.at(0).size(), 1u);
  EXPECT_LT(eplb_rows.gpu_tokens.at(0) / eplb_rows.total, stat_rows.gpu_tokens.at(0) / stat_rows.total - 0.1);
  // Every token-expert assignment of the run is in experts.csv exactly once, whatever the placement.
  for (const auto* s : {&stat, &eplb, &ll}) {
    const auto& rows = s == &stat ? stat_rows : s == &eplb ? eplb_rows : ll_rows;
    EXPECT_NEAR(rows.total, (*s)["routing"]["computed_assignments"].get<double>(), 0.5);
  }
}

TEST(Policies, dropped_assignments_are_counted_and_conserved) {
  const auto out = scratch_dir("capacity") / "run";
  const CliResult r = run_cli("run scenarios/quickstart.yaml --quiet --set parallel.mode=ep --set workload.routing.model=hot_experts "
                              "--set 'workload.routing.hot_experts=[0, 1]' --set workload.routing.hot_share=0.6 "
                              "--set routing.policy=capacity --set routing.capacity.factor=1.0 --out '" + out.string() + "'",
                              "capacity");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(read_text(out / "summary.json"));
  const auto& rt = s["routing"];
  const double dropped = rt["dropped_assignments"].get<double>();
  EXPECT_GT(dropped, 0);
  EXPECT_DOUBLE_EQ(rt["computed_assignments"].get<double>() + dropped, rt["token_expert_assignments"].get<double>());
  // steps.csv's per-step drops add up to the summary's.
  double sum = 0;
  for (const auto& row : read_rows(out / "steps.csv")) sum += std::stod(row.at("dropped_assignments"));
  EXPECT_DOUBLE_EQ(sum, dropped);
}

TEST(Policies, selection_changing_policies_report_divergence_and_replica_policies_do_not) {
  const auto gate = hot("nectar", "--set routing.nectar.mode=gate_bias --set routing.nectar.strength=20", "gate-bias");
  const auto aux = hot("aux_free_bias", "--set routing.aux_free_update_speed=0.01", "aux-free");
  EXPECT_GT(gate["routing"]["selection_divergence"].get<double>(), 0.0);
  EXPECT_GT(aux["routing"]["selection_divergence"].get<double>(), 0.0);
  EXPECT_EQ(gate["routing"]["rerouted_fraction"].get<double>(), 0.0);
  // Biasing the gate away from the hot experts lowers the expert-level imbalance the experts see.
  const auto eplb = hot("eplb", "", "gate-eplb");
  EXPECT_LT(aux["imbalance"]["cv_per_step_mean"].get<double>(), eplb["imbalance"]["cv_per_step_mean"].get<double>());
}

TEST(Policies, rebalancing_follows_interval_s_or_an_imbalance_threshold) {
  const auto timed = run("--set routing.policy=eplb --set routing.num_redundant_experts=4 --set routing.interval_s=1.0", "interval-s");
  const double duration = timed["duration"].get<double>();
  const int by_time = timed["routing"]["rebalances"]["count"].get<int>();
  // One rebalance per simulated second (the first at >= 1 s), give or take the step in flight.
  EXPECT_GE(by_time, static_cast<int>(duration) - 1);
  EXPECT_LE(by_time, static_cast<int>(duration) + 1);
  const auto never = run("--set routing.policy=eplb --set routing.num_redundant_experts=4 --set routing.interval_steps=100000 "
                         "--set routing.window_steps=20",
                         "threshold-off");
  const auto early = run("--set routing.policy=eplb --set routing.num_redundant_experts=4 --set routing.interval_steps=100000 "
                         "--set routing.window_steps=20 --set routing.rebalance_threshold=0.05",
                         "threshold-on");
  // The threshold is a fraction over the mean: with 4 GPUs max/mean <= 4, so 3.5 (max/mean > 4.5)
  // can never be crossed.
  const auto unreachable = run("--set routing.policy=eplb --set routing.num_redundant_experts=4 --set routing.interval_steps=100000 "
                               "--set routing.window_steps=20 --set routing.rebalance_threshold=3.5",
                               "threshold-unreachable");
  EXPECT_EQ(never["routing"]["rebalances"]["count"].get<int>(), 0);
  EXPECT_GT(early["routing"]["rebalances"]["count"].get<int>(), 0);
  EXPECT_EQ(unreachable["routing"]["rebalances"]["count"].get<int>(), 0);
}

TEST(Policies, bad_policy_settings_are_validation_errors_naming_the_field) {
  const CliResult unknown = run_cli("validate scenarios/quickstart.yaml --set parallel.mode=ep --set routing.policy=fastest", "pol-unknown");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("routing.policy"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("aux_free_bias, capacity, eplb, least_loaded, nectar, static"), std::string::npos) << unknown.err;
  const CliResult slots = run_cli("validate scenarios/quickstart.yaml --set parallel.mode=ep --set routing.policy=eplb "
                                  "--set routing.num_redundant_experts=28",
                                  "pol-slots");
  EXPECT_EQ(slots.exit_code, 2);
  EXPECT_NE(slots.err.find("routing.num_redundant_experts: more replicas than slots: at most 24"), std::string::npos) << slots.err;
  const CliResult replica = run_cli("validate scenarios/quickstart.yaml --set parallel.mode=ep --set routing.policy=nectar", "pol-nectar");
  EXPECT_EQ(replica.exit_code, 2);
  EXPECT_NE(replica.err.find("routing.nectar.mode: replica mode steers among replicas"), std::string::npos) << replica.err;
  const CliResult choices = run_cli("validate scenarios/quickstart.yaml --set parallel.mode=ep --set routing.policy=least_loaded "
                                    "--set routing.num_redundant_experts=4 --set routing.least_loaded_choices=1",
                                    "pol-choices");
  EXPECT_EQ(choices.exit_code, 2);
  EXPECT_NE(choices.err.find("routing.least_loaded_choices: must be 0"), std::string::npos) << choices.err;
}

}  // namespace
}  // namespace moesim::test
