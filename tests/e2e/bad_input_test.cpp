// Bad input: every malformed scenario, missing file or impossible configuration exits non-zero
// with a message naming file:line, key path and what is wrong, and writes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

struct BadInputCase {
  const char* file;      ///< under tests/bad_input/
  const char* expected;  ///< the exact first error line; <home> stands for the catalog folder
  const char* extra_args = "";
};

/// The model cards of the catalog, comma-separated, as an unknown-card error lists them.
std::string model_cards() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir / "models/llm/cards"))
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string expand(std::string s) {
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"<home>", kSourceDir.string()}, {"<model-cards>", model_cards()}})
    for (auto pos = s.find(key); pos != std::string::npos; pos = s.find(key)) s.replace(pos, key.size(), value);
  return s;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

void PrintTo(const BadInputCase& c, std::ostream* os) { *os << c.file; }

class BadInput : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(BadInput, validate_reports_exact_error_and_fails) {
  const auto& c = GetParam();
  const std::string path = std::string("tests/bad_input/") + c.file;
  const CliResult r = run_cli("validate " + path + " " + c.extra_args, c.file);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(first_line(r.err), expand("error: " + path + c.expected));
  EXPECT_EQ(r.out, "");
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadInput,
    ::testing::Values(
        BadInputCase{"unknown_key.yaml",
                     ":4: serving.max_num_seq: unknown key \"max_num_seq\" (did you mean \"max_num_seqs\"?); allowed keys: "
                     "max_num_batched_tokens, max_num_seqs, max_model_len, gpu_memory_utilization, activation_reserve_gb, "
                     "chunked_prefill, block_size, prefix_caching, cuda_graph_max_tokens, step_overhead_us, step_overhead_per_seq_us, step_overhead_per_worker_us, "
                     "sampler_bytes_per_logit, async_scheduling, shared_expert_overlap, dual_batch_overlap, overlap_comm_sms, moe_kernel"},
        BadInputCase{"name_is_a_path.yaml",
                     ":2: name: must be 1 to 100 characters of A-Z a-z 0-9 . _ -, not starting with . or - (it names the output "
                     "folder results/<name>) (got \"../../outside\")"},
        BadInputCase{"invalid_utf8.yaml", ":3: invalid UTF-8 at line 3, byte 18 of the line (scenarios, cards and --set values must be UTF-8 text)"},
        BadInputCase{"wrong_type.yaml", ":4: serving.max_num_batched_tokens: expected an integer (got \"lots\")"},
        BadInputCase{"negative_bandwidth.yaml", ":7: cluster.inter_node.bw_gbytes_per_s: must be > 0 (got -50)"},
        BadInputCase{"tp_ep_dp_mismatch.yaml",
                     ":4: parallel: tp x ep x dp = 2 x 1 x 1 = 2 must equal the cluster's GPUs, nodes x gpus_per_node = "
                     "1 x 4 = 4"},
        BadInputCase{"model_does_not_fit.yaml",
                     ":1: model: does not fit: mixtral-8x22b needs 140.6 GB of weights per GPU in mode tp plus 0.5 GB of "
                     "KV cache for one 4096-token sequence, but each h100-sxm has 70.0 GB usable (80.0 GB x "
                     "gpu_memory_utilization 0.9 - activation_reserve_gb 2); use more GPUs or a smaller model"},
        BadInputCase{"missing_card.yaml",
                     ":1: model: unknown model card \"mixtral-8x9b\" (did you mean \"mixtral-8x7b\"?); available in "
                     "<home>/models/llm/cards: <model-cards>"},
        BadInputCase{"missing_gpu_card.yaml",
                     ":3: cluster.gpu: unknown gpu card \"h100-pcie\"; available in <home>/models/gpu/cards: "
                     "a100-sxm4-40gb, a100-sxm4-80gb, b200, h100-sxm, h200, h800, mi300x"},
        BadInputCase{"malformed.yaml", ":3: malformed YAML: end of sequence flow not found"},
        BadInputCase{"experts_not_divisible.yaml", ":3: parallel.ep: the model's 8 experts must divide evenly over ep = 3 GPUs (or use the eplb placement with redundant experts that make experts + routing.num_redundant_experts divide)"},
        BadInputCase{"top_k_over_experts.yaml", ":3: model.top_k: must be <= num_experts (8) (got 9)"},
        BadInputCase{"unknown_attention.yaml", ":4: model.attention: must be one of: gqa, mla (got \"sliding_window\")"},
        BadInputCase{"fp8_on_a100.yaml",
                     ":2: model.weight_dtype: fp8 is not supported by the a100-sxm4-80gb (peak_tflops_fp8 0 on its card: no fp8 "
                     "tensor cores); use a bf16 or fp16 variant of mixtral-8x7b or a GPU with fp8 support"},
        BadInputCase{"ep_on_dense_model.yaml",
                     ":4: parallel.mode: ep places routed experts on GPUs, but llama-3.1-8b is a dense model (num_experts 0): "
                     "use mode tp (tensor parallelism) or dp instances"},
        BadInputCase{"overlap_in_tp.yaml",
                     ":4: serving.dual_batch_overlap: overlaps compute with mode ep's dispatch and combine: needs parallel.mode ep (got tp)"},
        BadInputCase{"unknown_mode.yaml", ":4: parallel.mode: must be one of: tp, ep (got \"xp\")"},
        BadInputCase{"unknown_moe_kernel.yaml", ":5: serving.moe_kernel: unknown value \"cutlass\"; must be one of: triton, deepgemm"},
        BadInputCase{"missing_model.yaml", ":1: missing required key \"model\""},
        BadInputCase{"unknown_distribution.yaml",
                     ":5: workload.prompt_tokens.dist: unknown value \"lognorm\" (did you mean \"lognormal\"?); must be "
                     "one of: fixed, lognormal, normal, uniform"},
        BadInputCase{"max_model_len_too_long.yaml",
                     ":4: serving.max_model_len: must be <= the model's max_position_embeddings (32768) (got 100000)"},
        BadInputCase{"ep_with_tp.yaml",
                     ":3: parallel.tp: must be 1 in mode ep (got 2); attention inside the EP group is set by "
                     "parallel.attention"},
        BadInputCase{"negative_rate.yaml", ":4: workload.arrival.rate_per_s: must be > 0 (got -3)"},
        BadInputCase{"duplicate_key.yaml", ":4: seed: duplicate key"},
        BadInputCase{"not_a_mapping.yaml", ":1: a scenario must be a mapping of keys (got a list)"},
        BadInputCase{"uniform_without_max.yaml", ":4: workload.output_tokens.max: uniform needs max >= min >= 1 (got max 0)"},
        BadInputCase{"does_not_exist.yaml", ": cannot open scenario file"},
        BadInputCase{"too_many_requests.yaml", ":4: workload.requests: must be in [1, 10000000] (got 1000000000000)"},
        BadInputCase{"too_many_gpus.yaml",
                     ":2: cluster: nodes x gpus_per_node = 1024 x 8 = 8192 GPUs, more than the limit of 4096 GPUs (the "
                     "platform's routes grow as GPUs squared)"},
        BadInputCase{"batch_too_large.yaml", ":4: serving.max_num_batched_tokens: must be in [1, 1048576] (got 100000000)"},
        BadInputCase{"absurd_max_model_len.yaml", ":4: serving.max_model_len: must be in [0, 16777216] (got 1e12)"}),
    [](const ::testing::TestParamInfo<BadInputCase>& param_info) {
      std::string name = param_info.param.file;
      return name.substr(0, name.find('.'));
    });

TEST(BadInputReporting, all_errors_of_a_file_are_reported_together) {
  const CliResult r = run_cli("validate tests/bad_input/several_errors.yaml", "several");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "error: tests/bad_input/several_errors.yaml:4: serving.max_num_seqs: must be in [1, 65536] (got 0)\n"
            "error: tests/bad_input/several_errors.yaml:5: serving.gpu_memory_utilization: must be in (0, 1] (got 1.5)\n"
            "error: tests/bad_input/several_errors.yaml:7: workload.requests: expected an integer (got \"ten\")\n"
            "1 of 1 scenario invalid\n");
}

TEST(BadInputReporting, set_override_errors_name_the_option) {
  const CliResult r = run_cli("validate scenarios/quickstart.yaml --set parallel.mode=xp --set model.top_k=9", "set");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "error: --set model.top_k=9: model.top_k: must be <= num_experts (8) (got 9)\n"
            "error: --set parallel.mode=xp: parallel.mode: must be one of: tp, ep (got \"xp\")\n"
            "1 of 1 scenario invalid\n");
}

TEST(BadInputReporting, set_without_equals_is_rejected) {
  const CliResult r = run_cli("validate scenarios/quickstart.yaml --set parallel.mode", "seteq");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(first_line(r.err), "error: --set parallel.mode: expected key.path=value");
}

TEST(BadInputReporting, run_with_bad_input_writes_nothing) {
  const auto out = scratch_dir("bad-run") / "out";
  const CliResult r = run_cli("run tests/bad_input/unknown_key.yaml --out '" + out.string() + "'", "badrun");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("nothing was run"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(BadInputReporting, unknown_list_kind_names_valid_kinds) {
  const CliResult r = run_cli("list widgets", "list");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: unknown list \"widgets\"; valid: models, gpus, interconnects, routers, policies, arrivals, lengths\n");
}

}  // namespace
}  // namespace moesim::test
