// Calibration of the power model against the Splitwise simulator's phase powers (anchors README,
// section "GPUs": github.com/Mutinifni/splitwise-sim, configs/power_model/constant.yaml, per GPU
// prefill / decode: H100-80GB 700 / 380 W, A100-80GB 400 / 250 W), within 10%: Mixtral-8x7B TP4
// (the quickstart) prefill and decode steps at full clock and 45 degC, all-reduces included.
#include <gtest/gtest.h>

#include "models/power/power_model.hpp"
#include "sim/config/scenario.hpp"
#include "sim/exec/step_plan.hpp"
#include "tests/calibration/calibration.hpp"

namespace moesim::calibration {
namespace {

const std::filesystem::path kSourceDir = MOESIM_SOURCE_DIR;

/// Time-weighted average power of one GPU over a step plan at full clock and 45 degC.
double step_power(const StepPlan& plan, const PowerModel& pm, const FabricView& fabric) {
  double energy = 0, time = 0;
  for (const auto& ph : plan.phases) {
    if (ph.kind == PhaseKind::comm) {
      const double t = analytic_collective_seconds(ph.collective, fabric);
      energy += pm.power_w({0, 0, true}, pm.gpu().clock_max_mhz, 45) * t;
      time += t;
      continue;
    }
    const double t = ph.compute_s[0];
    const Activity a{ph.compute_util[0], ph.memory_util[0], false};
    energy += pm.power_w(a, pm.clock_for(a, 45, pm.gpu().clock_max_mhz), 45) * t;
    time += t;
  }
  return energy / time;
}

void phase_powers(const std::string& gpu, const std::string& label, double prefill_w, double decode_w) {
  std::vector<std::string> sets = family_sets("splitwise");
  sets.push_back("cluster.gpu=" + gpu);
  const Scenario sc = load_scenario(kSourceDir / "scenarios/quickstart.yaml", sets, Catalog(catalog_home()));
  const ParallelLayout lay = make_layout(sc);
  StepPlanner planner(sc, lay, token_routers().get("uniform")(router_context(sc.model.spec, sc.workload.routing, 1, 0)));
  const PowerModel pm(sc.cluster.gpu.spec, sc.cluster.gpu.spec.tdp_w);
  const FabricView fabric{4, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
  Batch prefill;
  for (int i = 0; i < 4; ++i) prefill.items.push_back({i, 0, 2048, -1, 0, true, true});
  prefill.prefill_tokens = 8192;
  Batch decode;
  for (int i = 0; i < 32; ++i) decode.items.push_back({i, 0, 1, -1, 1000, false, true});
  decode.decode_tokens = 32;
  const char* source =
      "anchors README: GPUs (Splitwise phase power, github.com/Mutinifni/splitwise-sim configs/power_model/constant.yaml)";
  const std::string anchor = label + " Mixtral-8x7B TP4 (quickstart)";
  check({"splitwise", anchor + " prefill 4x2048 tokens", source, "power per GPU", "W", prefill_w, step_power(planner.plan(prefill), pm, fabric),
         10.0, within_tolerance()});
  check({"splitwise", anchor + " decode 32 seqs, KV 1000", source, "power per GPU", "W", decode_w, step_power(planner.plan(decode), pm, fabric),
         10.0, within_tolerance()});
}

TEST(Splitwise, h100_prefill_and_decode_phase_power_within_10_percent) { phase_powers("h100-sxm", "H100-80GB", 700, 380); }
TEST(Splitwise, a100_prefill_and_decode_phase_power_within_10_percent) { phase_powers("a100-sxm4-80gb", "A100-80GB", 400, 250); }

}  // namespace
}  // namespace moesim::calibration
