// `moesim kernels`: one step, layer by layer, as the simulator costs it.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

struct CsvRow {
  int layer = 0;
  std::string block, phase, bound;
  double time_us = 0;
};

std::vector<CsvRow> read_rows(const std::filesystem::path& csv) {
  std::vector<CsvRow> rows;
  std::istringstream in(read_text(csv));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "layer,block,phase,time_us,bound,compute_us,memory_us,link_bytes,detail");
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string cell; f.size() < 5 && std::getline(ls, cell, ',');) f.push_back(cell);
    if (f.size() < 5) continue;
    rows.push_back({std::stoi(f[0]), f[1], f[2], f[4], std::stod(f[3])});
  }
  return rows;
}

/// "step total X ms: ..., comm Y ms" from the printed table.
double printed_ms(const std::string& out, const std::string& key) {
  const auto at = out.find(key);
  if (at == std::string::npos) return -1;
  return std::stod(out.substr(at + key.size()));
}

TEST(Kernels, deepseek_v3_ep32_decode_lists_every_layer_with_dispatch_and_combine) {
  const auto dir = scratch_dir("kernels-v3");
  const auto csv = dir / "k.csv";
  const CliResult r = run_cli("kernels --model deepseek-v3 --gpu h800 --mode ep --ep 32 --attention dp --batch-tokens 4096 "
                              "--context 4096 --decode --csv '" + csv.string() + "'",
                              "kernels-v3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = read_rows(csv);
  std::set<int> layers;
  std::map<std::string, int> phases;
  double comm_us = 0;
  for (const auto& row : rows) {
    layers.insert(row.layer);
    phases[row.block + "/" + row.phase] += 1;
    EXPECT_GT(row.time_us, 0.0) << row.layer << " " << row.phase;
    if (row.bound == "network") comm_us += row.time_us;
    if (row.phase == "dispatch" || row.phase == "combine") {
      EXPECT_EQ(row.bound, "network");
    }
  }
  EXPECT_EQ(layers.size(), 61u);
  EXPECT_EQ(phases["dense/dense_ffn"], 3);     // first_k_dense_replace
  EXPECT_EQ(phases["moe/moe"], 58);
  EXPECT_EQ(phases["moe/dispatch"], 58);
  EXPECT_EQ(phases["moe/combine"], 58);
  EXPECT_EQ(phases["lm_head/lm_head"], 1);
  EXPECT_EQ(phases.count("moe/all_reduce"), 0u);  // data-parallel attention: no all-reduce
  // The printed communication total is the sum of the collective rows.
  EXPECT_NEAR(printed_ms(r.out, "comm "), comm_us / 1e3, 0.01);
  EXPECT_GT(printed_ms(r.out, "step total "), comm_us / 1e3);
  std::filesystem::remove_all(dir);
}

TEST(Kernels, listed_kernels_add_up_to_each_phase_on_its_slowest_gpu) {
  // DeepSeek-V3 EP32 decode with data-parallel attention: per-GPU attention and MoE loads differ.
  const auto dir = scratch_dir("kernels-list");
  const auto csv = dir / "k.csv";
  const CliResult r = run_cli("kernels --model deepseek-v3 --gpu h800 --mode ep --ep 32 --attention dp --batch-tokens 2048 "
                              "--context 2048 --decode --kernels --csv '" + csv.string() + "'",
                              "kernels-list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Phase rows: attention (every layer the same), dense_ffn of layer 0, moe of the first MoE layer, lm_head.
  std::map<std::string, double> phase_us;
  for (const auto& row : read_rows(csv)) {
    const std::string key = row.phase == "moe" ? "moe L0" : row.phase;
    if (row.phase == "moe" && row.layer != 3) continue;  // first_k_dense_replace = 3
    if (!phase_us.count(key)) phase_us[key] = row.time_us;
  }
  // Kernel lines: "<phase> <kernel name> <launches> <GFLOP> <MB> <time_us> <bound> (GPU n)".
  std::map<std::string, double> kernel_us;
  std::map<std::string, int> kernels;
  std::istringstream in(r.out.substr(r.out.find("kernels of one layer")));
  std::string line;
  std::getline(in, line);
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> t;
    std::istringstream ls(line);
    for (std::string w; ls >> w;) t.push_back(w);
    if (t.size() < 8 || t.back().back() != ')') break;  // past the list ("table: ..." follows)
    const std::string phase = line.substr(0, 12).substr(0, line.substr(0, 12).find_last_not_of(' ') + 1);
    kernel_us[phase] += std::stod(t[t.size() - 4]);
    kernels[phase] += 1;
  }
  for (const char* phase : {"attention", "dense_ffn", "moe L0", "lm_head"}) {
    ASSERT_TRUE(phase_us.count(phase) && kernel_us.count(phase)) << phase;
    EXPECT_NEAR(kernel_us[phase], phase_us[phase], 0.01 * kernels[phase] + 0.01) << phase;
  }
  EXPECT_EQ(kernels["lm_head"], 2);  // LM head and sampler
  EXPECT_EQ(kernels["moe L0"], 2);   // the fused routed experts and the shared expert
  std::filesystem::remove_all(dir);
}

TEST(Kernels, prefill_experts_are_compute_bound_and_small_decode_is_memory_bound) {
  const auto dir = scratch_dir("kernels-mix");
  const CliResult prefill =
      run_cli("kernels scenarios/quickstart.yaml --prefill --batch-tokens 8192 --seqs 4 --csv '" + (dir / "p.csv").string() + "'", "kp");
  ASSERT_EQ(prefill.exit_code, 0) << prefill.err;
  const CliResult decode =
      run_cli("kernels scenarios/quickstart.yaml --decode --batch-tokens 8 --context 512 --csv '" + (dir / "d.csv").string() + "'", "kd");
  ASSERT_EQ(decode.exit_code, 0) << decode.err;
  for (const auto& row : read_rows(dir / "p.csv"))
    if (row.phase == "moe") {
      EXPECT_EQ(row.bound, "compute") << row.layer;
    }
  for (const auto& row : read_rows(dir / "d.csv"))
    if (row.phase == "moe") {
      EXPECT_EQ(row.bound, "memory") << row.layer;
    }
  std::filesystem::remove_all(dir);
}

TEST(Kernels, a_dense_model_runs_in_tp_and_ep_is_a_validation_error) {
  const CliResult tp = run_cli("kernels --model llama-3.1-70b --gpu h100-sxm --tp 4 --batch-tokens 16 --context 1000", "kernels-dense");
  ASSERT_EQ(tp.exit_code, 0) << tp.err;
  EXPECT_NE(tp.out.find("dense_ffn"), std::string::npos);
  EXPECT_EQ(tp.out.find("dispatch"), std::string::npos);
  const CliResult ep = run_cli("kernels --model llama-3.1-8b --gpu h100-sxm --mode ep --ep 2 --batch-tokens 16", "kernels-dense-ep");
  EXPECT_EQ(ep.exit_code, 2);
  EXPECT_NE(ep.err.find("parallel.mode: ep places routed experts on GPUs, but llama-3.1-8b is a dense model"), std::string::npos) << ep.err;
}

TEST(Kernels, without_a_scenario_the_model_and_gpu_are_required) {
  const CliResult r = run_cli("kernels --batch-tokens 4", "kernels-none");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: moesim kernels needs a scenario file, or --model and --gpu\n");
}

}  // namespace
}  // namespace moesim::test
