// moesim import-hf: a published config.json maps onto the same card the catalog ships, and what
// cannot be mapped faithfully is refused naming the key.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

const char* const kArchitecture[] = {"num_layers", "hidden_size", "vocab_size", "tie_word_embeddings", "max_position_embeddings",
                                     "attention", "num_attention_heads", "num_kv_heads", "head_dim", "q_lora_rank", "kv_lora_rank",
                                     "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "num_experts", "top_k",
                                     "moe_intermediate_size", "num_shared_experts", "shared_expert_intermediate_size",
                                     "num_dense_layers", "dense_intermediate_size", "n_group", "topk_group", "scoring_func",
                                     "weight_dtype", "expert_weight_dtype", "kv_cache_dtype"};

TEST(ImportHf, a_published_config_gives_the_shipped_cards_architecture_and_its_published_parameter_counts) {
  for (const std::string card : {"mixtral-8x7b", "deepseek-v3", "gpt-oss-120b"}) {
    SCOPED_TRACE(card);
    const auto out = scratch_dir("import_hf") / (card + ".yaml");
    const CliResult r = run_cli("import-hf tests/e2e/hf_configs/" + card + ".json --hf-id x/" + card + " --name imported-" + card +
                                    " --allow-approximations --force --out '" + out.string() + "'",
                                "import_hf");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const YAML::Node got = YAML::LoadFile(out.string());
    const YAML::Node want = YAML::LoadFile(std::string(MOESIM_SOURCE_DIR) + "/models/llm/cards/" + card + ".yaml");
    for (const char* key : kArchitecture) EXPECT_EQ(got[key].as<std::string>(), want[key].as<std::string>()) << key;
    // Total parameters from the architecture within 1% of the published figure.
    EXPECT_NEAR(got["total_params_b"].as<double>(), want["total_params_b"].as<double>(), 0.01 * want["total_params_b"].as<double>());
    EXPECT_TRUE(got["sources"]["num_experts"].IsDefined());
  }
}

TEST(ImportHf, what_the_card_cannot_represent_is_refused_naming_the_key) {
  const CliResult window = run_cli("import-hf tests/e2e/hf_configs/gpt-oss-120b.json --out /dev/null", "import_hf");
  EXPECT_EQ(window.exit_code, 2);
  EXPECT_NE(window.err.find("layer_types: 18 of 36 layers use windowed attention"), std::string::npos) << window.err;
  const auto dir = scratch_dir("import_hf_bad");
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const CliResult arch = run_cli("import-hf '" + write("a.json", R"({"model_type": "llama4", "num_hidden_layers": 48})") + "'", "import_hf");
  EXPECT_EQ(arch.exit_code, 2);
  EXPECT_NE(arch.err.find("model_type: \"llama4\" is not an architecture moesim imports"), std::string::npos) << arch.err;
  const CliResult freq = run_cli("import-hf '" + write("b.json", R"({"model_type": "deepseek_v3", "moe_layer_freq": 2})") + "'", "import_hf");
  EXPECT_EQ(freq.exit_code, 2);
  EXPECT_NE(freq.err.find("moe_layer_freq: MoE layers interleaved with dense ones (2)"), std::string::npos) << freq.err;
  const CliResult params = run_cli("import-hf tests/e2e/hf_configs/mixtral-8x7b.json --total-params-b 56 --out /dev/null", "import_hf");
  EXPECT_EQ(params.exit_code, 2);
  EXPECT_NE(params.err.find("total_params_b: the architecture gives 46.7 B parameters"), std::string::npos) << params.err;
}

}  // namespace
}  // namespace moesim::test
