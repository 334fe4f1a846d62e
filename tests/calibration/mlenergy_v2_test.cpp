// Calibration against the ML.ENERGY Leaderboard v2 (github.com/ml-energy/leaderboard-v2, commit
// c3af7f3, data/llm_text_generation/chat/<GPU>/<model>/bs<max_num_seqs>+tp<TP>+pp1.json): dense
// Llama-3.1 and Mixtral served by vLLM 0.5.4 on A100-SXM4-40GB and H100 SXM, max_num_seqs swept.
//
// Each case runs the moesim binary on a scenario of tests/calibration/scenarios (the benchmark's
// settings and the workload assumptions are written there) with the published point's GPU, TP size,
// batch and mean output length, 2,000 requests sent at once, and measures the run as the
// leaderboard's aggregation (scripts/aggregate_leaderboard_data.py) does: the steady state lasts from
// the start to the first step after the second with no request waiting; output throughput and
// energy per output token over that window; the mean TPOT is the mean time between a sequence's
// tokens over the window's decode steps (the window's time over its decode steps: vLLM 0.5.4 runs
// prefill steps apart from decode steps, and a prefill step delays the next token of every running
// sequence).
//
// vLLM 0.5.4 spends most of a step on the CPU (HTTP server, scheduling, input preparation, output
// processing: blog.vllm.ai/2024/09/05/perf-update.html measured 62% of the time of Llama 3 8B on an
// H100 in those, with the GPU idle); the scenarios carry that as serving.step_overhead_us and
// serving.step_overhead_per_seq_us, fitted on these rows (tests/calibration/fit.yaml).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/calibration/calibration.hpp"
#include "tests/e2e/cli_runner.hpp"

namespace moesim::calibration {
namespace {

constexpr double kTolerancePct = 15.0;
constexpr const char* kFamily = "mlenergy_v2";
constexpr const char* kSource =
    "ML.ENERGY Leaderboard v2 (github.com/ml-energy/leaderboard-v2 c3af7f3, vLLM 0.5.4, chat: ShareGPT, all requests at once)";

struct Case {
  std::string name, model, scenario, gpu, gpu_label;
  int tp = 1, batch = 0;
  double mean_output = 0, tokens_per_s = 0, tpot_s = 0, joules_per_token = 0;  ///< published
  bool slow = false;
  std::string gaps;  ///< known gaps: T (throughput), P (TPOT), E (energy); see the reasons below
};

const char* const kThroughputGap =
    "the published output throughput falls below batch / mean TPOT as the batch grows (0.98 of it at batch 64, 0.87 at "
    "256, 0.59 at 1,024 on 1 x H100): vLLM 0.5.4 runs prefills as steps of their own and preempts sequences when the KV "
    "cache fills, which costs time the model's mixed steps do not";
const char* const kTpotGap =
    "the engine's CPU time per step is not linear in the batch: the fitted per-sequence time overshoots at batch 1,024 "
    "and undershoots Llama-3.1-8B on the A100 at batch 128";
const char* const kEnergyGap =
    "the simulated GPUs draw 25-45% less power than measured (190-310 W per GPU): the model holds a GPU at idle_w while "
    "vLLM 0.5.4's CPU work keeps it waiting between steps, and either a waiting GPU draws more (clocks held) or vLLM "
    "0.5.4's GPU work takes longer than modelled; the throughput gap adds to it";

Expectation expectation(const Case& c, char metric) {
  if (c.gaps.find(metric) == std::string::npos) return within_tolerance();
  return known_gap(metric == 'T' ? kThroughputGap : metric == 'P' ? kTpotGap : kEnergyGap);
}

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

std::vector<Case> cases() {
  std::vector<Case> v;
  // name, model label, scenario suffix, gpu card, tp, batch, published: avg output tokens, output tok/s, avg TPOT s,
  // energy per request J (J per output token = energy per request / avg output tokens)
  auto add = [&](const std::string& model, const std::string& sc, const std::string& gpu, int tp, int batch, double out,
                 double tps, double tpot, double energy_per_req, bool slow, const std::string& gaps) {
    Case c;
    const bool a100 = gpu == "a100-sxm4-40gb";
    c.gpu = gpu;
    c.gpu_label = a100 ? "A100-40GB" : "H100";
    c.model = model;
    c.scenario = "mlenergy_v2_" + sc + ".yaml";
    c.tp = tp;
    c.batch = batch;
    c.mean_output = out;
    c.tokens_per_s = tps;
    c.tpot_s = tpot;
    c.joules_per_token = energy_per_req / out;
    c.slow = slow;
    c.gaps = gaps;
    c.name = sc + (a100 ? "_a100" : "_h100") + "_tp" + std::to_string(tp) + "_b" + std::to_string(batch);
    v.push_back(std::move(c));
  };
  const std::string a = "a100-sxm4-40gb", h = "h100-sxm";
  add("Llama-3.1-8B", "llama31_8b", a, 1, 32, 485.745, 938.496, 0.0338223, 102.6529, true, "E");
  add("Llama-3.1-8B", "llama31_8b", a, 1, 128, 480.943, 1516.768, 0.0792661, 59.6026, false, "EPT");
  add("Llama-3.1-8B", "llama31_8b", a, 1, 320, 484.4575, 1850.297, 0.1461811, 51.1172, true, "ET");
  add("Llama-3.1-70B", "llama31_70b", a, 8, 32, 457.485, 296.500, 0.1073458, 1226.2523, true, "");
  add("Llama-3.1-70B", "llama31_70b", a, 8, 128, 455.842, 828.035, 0.1476182, 529.1048, false, "");
  add("Llama-3.1-70B", "llama31_70b", a, 8, 512, 458.7835, 1218.427, 0.3134651, 438.9725, true, "ET");
  add("Mixtral-8x7B", "mixtral_8x7b", a, 4, 32, 380.247, 516.315, 0.0614286, 523.4444, true, "E");
  add("Mixtral-8x7B", "mixtral_8x7b", a, 4, 128, 378.0335, 1177.378, 0.1019483, 191.5925, false, "E");
  add("Mixtral-8x7B", "mixtral_8x7b", a, 4, 512, 380.836, 1667.679, 0.2137242, 108.8797, true, "ET");
  add("Llama-3.1-8B", "llama31_8b", h, 1, 64, 482.798, 1784.719, 0.0350546, 82.5858, true, "E");
  add("Llama-3.1-8B", "llama31_8b", h, 1, 256, 482.8205, 2289.143, 0.0971131, 58.2033, false, "ET");
  add("Llama-3.1-8B", "llama31_8b", h, 1, 1024, 482.116, 2177.686, 0.2789706, 53.9314, true, "EPT");
  add("Llama-3.1-70B", "llama31_70b", h, 4, 64, 461.246, 811.452, 0.0767699, 605.4784, true, "E");
  add("Llama-3.1-70B", "llama31_70b", h, 4, 256, 457.703, 1463.725, 0.1378594, 354.3098, false, "ET");
  add("Llama-3.1-70B", "llama31_70b", h, 4, 1024, 455.5247, 1923.285, 0.2678878, 281.6071, true, "EPT");
  add("Mixtral-8x7B", "mixtral_8x7b", h, 4, 64, 375.587, 873.836, 0.0710714, 377.7874, true, "E");
  add("Mixtral-8x7B", "mixtral_8x7b", h, 4, 256, 378.526, 1704.771, 0.1293275, 189.4139, false, "ET");
  add("Mixtral-8x7B", "mixtral_8x7b", h, 4, 1024, 375.3095, 2182.545, 0.2420632, 138.7820, true, "EPT");
  add("Mixtral-8x22B", "mixtral_8x22b", h, 8, 64, 382.336, 492.714, 0.1196186, 1274.2484, true, "E");
  add("Mixtral-8x22B", "mixtral_8x22b", h, 8, 256, 385.225, 1177.797, 0.1872645, 564.0029, true, "ET");
  add("Mixtral-8x22B", "mixtral_8x22b", h, 8, 1024, 386.667, 1753.198, 0.3064181, 365.2797, true, "EPT");
  return v;
}

/// The leaderboard's steady state of a run (see the file comment).
struct Window {
  double seconds = 0, energy_j = 0, output_tokens = 0, decode_steps = 0;
};

Window measure(const std::filesystem::path& run_dir) {
  const Table steps(run_dir / "steps.csv");
  const Table reqs(run_dir / "requests.csv");
  const auto& start = steps.col("start_s");
  const auto& dur = steps.col("duration_ms");
  const auto& energy = steps.col("energy_j");
  const auto& decode = steps.col("decode_tokens");
  const auto& waiting = steps.col("waiting");
  double end = -1;
  for (std::size_t i = 2; i < steps.rows(); ++i)
    if (waiting[i] == 0) {
      end = start[i];
      break;
    }
  Window w;
  if (end <= 0) return w;
  for (std::size_t i = 0; i < steps.rows(); ++i) {
    if (start[i] + dur[i] * 1e-3 > end + 1e-12) continue;
    w.seconds += dur[i] * 1e-3;
    w.energy_j += energy[i];
    w.output_tokens += decode[i];
    if (decode[i] > 0) w.decode_steps += 1;
  }
  for (double f : reqs.col("first_token_s"))
    if (f <= end) w.output_tokens += 1;  // first tokens come from prefill steps
  return w;
}

class MlEnergyV2 : public ::testing::TestWithParam<Case> {};

TEST_P(MlEnergyV2, output_throughput_mean_tpot_and_energy_per_token_within_tolerance) {
  const Case& c = GetParam();
  if (c.slow) MOESIM_CALIBRATION_SLOW_ROW();
  const auto out = test::scratch_dir("calibration-v2-" + c.name) / "run";
  std::string args = catalog_option() + "run tests/calibration/scenarios/" + c.scenario + " --quiet --out '" + out.string() + "' --set cluster.gpu=" + c.gpu +
                     " --set cluster.gpus_per_node=" + std::to_string(c.tp) + " --set serving.max_num_seqs=" + std::to_string(c.batch) +
                     " --set workload.output_tokens.mean=" + number(c.mean_output) +
                     " --set thermal.initial_power_w=" + (c.gpu == "h100-sxm" ? "420" : "240");
  for (const auto& set : family_sets(kFamily)) args += " --set '" + set + "'";
  const test::CliResult r = test::run_cli(args, "v2-" + c.name);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Window w = measure(out);
  ASSERT_GT(w.seconds, 0) << "no steady state in " << out;
  ASSERT_GT(w.decode_steps, 0);
  const std::string anchor = c.model + " " + std::to_string(c.tp) + "x" + c.gpu_label + " TP" + std::to_string(c.tp) + " batch " +
                             std::to_string(c.batch);
  check({kFamily, anchor, kSource, "output tokens/s", "tok/s", c.tokens_per_s, w.output_tokens / w.seconds, kTolerancePct, expectation(c, 'T')});
  check({kFamily, anchor, kSource, "mean TPOT", "ms", c.tpot_s * 1e3, w.seconds / w.decode_steps * 1e3, kTolerancePct, expectation(c, 'P')});
  check({kFamily, anchor, kSource, "J per output token", "J", c.joules_per_token, w.energy_j / w.output_tokens, kTolerancePct,
         expectation(c, 'E')});
  std::filesystem::remove_all(out.parent_path());
}

INSTANTIATE_TEST_SUITE_P(Calibration, MlEnergyV2, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
}  // namespace moesim::calibration
