// The fuzz targets (tests/fuzz/targets.hpp) on every seed of tests/fuzz/corpus/<target>/ and
// every input that once broke a loader, tests/fuzz/regressions/<target>/: each input loads, or
// is rejected with the project's input error; nothing else escapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "models/routing/trace.hpp"
#include "models/workload/dataset.hpp"
#include "sim/config/scenario.hpp"
#include "tests/fuzz/targets.hpp"

namespace moesim::fuzz {
namespace {

const std::filesystem::path kFuzzDir = std::filesystem::path(MOESIM_SOURCE_DIR) / "tests/fuzz";

struct FuzzInput {
  const Target* target;
  std::filesystem::path file;
};

void PrintTo(const FuzzInput& c, std::ostream* os) { *os << c.file.string(); }

std::vector<FuzzInput> inputs_under(const char* folder) {
  std::vector<FuzzInput> out;
  for (const auto& t : targets()) {
    const auto dir = kFuzzDir / folder / t.name;
    if (!std::filesystem::is_directory(dir)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (entry.is_regular_file()) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) out.push_back({&t, f});
  }
  return out;
}

std::string read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string test_name(const ::testing::TestParamInfo<FuzzInput>& info) {
  std::string name = std::string(info.param.target->name) + "_" + info.param.file.filename().string();
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

class FuzzRegression : public ::testing::TestWithParam<FuzzInput> {};

TEST_P(FuzzRegression, input_loads_or_is_rejected_with_the_input_error) {
  const auto& c = GetParam();
  const std::string bytes = read_bytes(c.file);
  EXPECT_NO_THROW((void)c.target->run(bytes)) << c.file;
}

INSTANTIATE_TEST_SUITE_P(Regressions, FuzzRegression, ::testing::ValuesIn(inputs_under("regressions")), test_name);
INSTANTIATE_TEST_SUITE_P(Seeds, FuzzRegression, ::testing::ValuesIn(inputs_under("corpus")), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FuzzRegression);

// A seed corpus that only holds rejected inputs would never reach the checks on loaded values.
TEST(FuzzCorpus, every_target_has_a_seed_that_loads) {
  for (const auto& t : targets()) {
    int loaded = 0;
    for (const auto& c : inputs_under("corpus"))
      if (c.target == &t && t.run(read_bytes(c.file))) ++loaded;
    EXPECT_GT(loaded, 0) << t.name;
  }
}

TEST(FuzzTargets, scenario_input_applies_the_set_lines_after_the_separator) {
  const std::string yaml = read_bytes(std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios/quickstart.yaml");
  EXPECT_TRUE(scenario(yaml));
  EXPECT_TRUE(scenario(yaml + std::string(kSetSeparator) + "\nserving.max_num_seqs=16\n"));
  EXPECT_FALSE(scenario(yaml + std::string(kSetSeparator) + "\nserving.max_num_seqs=0\n"));
  EXPECT_FALSE(scenario(yaml + std::string(kSetSeparator) + "\n\nnot-an-override\n"));
}

// ---- invariants the fuzzers found broken ------------------------------------------------------

/// The issues of the InputError `load` throws, formatted; empty when it loads.
template <class F>
std::vector<std::string> input_errors(F load) {
  try {
    load();
  } catch (const InputError& e) {
    std::vector<std::string> out;
    for (const auto& i : e.issues()) out.push_back(InputError::format(i));
    return out;
  }
  return {};
}

std::vector<std::string> dataset_errors(const std::string& text) {
  static const DomainCorpus corpus = DomainCorpus::load(std::filesystem::path(MOESIM_SOURCE_DIR) / "datasets/domain_queries.json");
  return input_errors([&] {
    std::istringstream in(text);
    (void)load_dataset(in, "d.jsonl", corpus);
  });
}

std::vector<std::string> gate_log_errors(const std::string& text, int layers, int experts) {
  return input_errors([&] {
    std::istringstream in(text);
    RoutingTrace t;
    t.num_moe_layers = layers;
    t.num_experts = experts;
    read_gate_log(in, "gate_logs_0.json", t);
  });
}

std::vector<std::string> profile_errors(const std::string& text, int layers, int experts) {
  return input_errors([&] {
    std::istringstream in(text);
    (void)read_activations_csv(in, "acts.csv", layers, experts);
  });
}

TEST(InputInvariants, json_number_beyond_a_double_is_an_input_error) {
  EXPECT_EQ(dataset_errors("{\"domain\": \"law\", \"prompt_tokens\": 5, \"output_tokens\": 8}\n"
                           "{\"domain\": \"law\", \"prompt_tokens\": 1e400, \"output_tokens\": 8}\n"),
            (std::vector<std::string>{
                "d.jsonl:2: not valid JSON: [json.exception.out_of_range.406] number overflow parsing '1e400'"}));
  EXPECT_EQ(gate_log_errors("{\"steps\": [{\"expert_counts\": [[1e400, 0]]}]}", 1, 2),
            (std::vector<std::string>{
                "gate_logs_0.json: malformed JSON: [json.exception.out_of_range.406] number overflow parsing '1e400'"}));
}

TEST(InputInvariants, deeply_nested_json_value_is_reported_by_kind_without_recursing) {
  const std::size_t depth = 1'000'000;  // a recursive dump of this overflows an 8 MB stack
  const std::string nested = std::string(depth, '[') + std::string(depth, ']');
  // A dataset line is refused for its nesting before it is parsed at all.
  EXPECT_EQ(dataset_errors("{\"domain\": \"law\", \"prompt_tokens\": " + nested + ", \"output_tokens\": 8}\n"),
            (std::vector<std::string>{"d.jsonl:1: nests objects or lists deeper than 16 levels"}));
  EXPECT_EQ(dataset_errors("{\"domain\": \"law\", \"prompt_tokens\": [[1]], \"output_tokens\": 8}\n"),
            (std::vector<std::string>{"d.jsonl:1: prompt_tokens: must be an integer >= 1 (got a list)"}));
  EXPECT_EQ(gate_log_errors("{\"num_experts\": " + nested + ", \"steps\": []}", 1, 2),
            (std::vector<std::string>{"gate_logs_0.json: num_experts: must be an integer (got a list)"}));
  const std::string long_string(10'000, 'x');
  EXPECT_EQ(dataset_errors("{\"domain\": \"law\", \"prompt_tokens\": \"" + long_string + "\", \"output_tokens\": 8}\n"),
            (std::vector<std::string>{"d.jsonl:1: prompt_tokens: must be an integer >= 1 (got \"" + long_string.substr(0, 79) +
                                      "...)"}));
}

TEST(InputInvariants, dataset_prefix_tokens_fit_an_int) {
  // 2^31 once wrapped to a negative prefix length.
  EXPECT_EQ(dataset_errors("{\"domain\": \"law\", \"prompt_tokens\": 5, \"output_tokens\": 8, \"prefix_id\": \"p\", "
                           "\"prefix_tokens\": 2147483648}\n"),
            (std::vector<std::string>{"d.jsonl:1: prefix_tokens: must be an integer in [0, 10000000] when prefix_id is given"}));
}

TEST(InputInvariants, parallel_sizes_are_multiplied_without_overflow) {
  // 4096^3 once overflowed an int (undefined behaviour; in practice "= 0").
  const auto file = std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios/quickstart.yaml";
  std::vector<std::string> messages;
  try {
    (void)load_scenario(file, {"parallel.mode=ep", "parallel.tp=4096", "parallel.ep=4096", "parallel.dp=4096"},
                        Catalog(MOESIM_SOURCE_DIR));
  } catch (const ConfigError& e) {
    for (const auto& d : e.diagnostics())
      if (d.key_path == "parallel") messages.push_back(d.message);
  }
  EXPECT_EQ(messages, (std::vector<std::string>{"tp x ep x dp = 4096 x 4096 x 4096 = 68719476736 must equal the cluster's "
                                                "GPUs, nodes x gpus_per_node = 1 x 4 = 4"}));
}

TEST(InputInvariants, profile_counts_are_finite) {
  const std::string header = "layer_idx,expert_id,activation_count,percentage\n";
  EXPECT_EQ(profile_errors(header + "0,0,5,50\n0,1,inf,50\n", 1, 2),
            (std::vector<std::string>{"acts.csv:3: activation_count: must be a finite number >= 0 (got inf)"}));
  EXPECT_EQ(profile_errors(header + "0,0,nan,50\n0,1,5,50\n", 1, 2),
            (std::vector<std::string>{"acts.csv:2: activation_count: must be a finite number >= 0 (got nan)"}));
  EXPECT_EQ(profile_errors(header + "0,0,1e308,50\n0,1,1e308,50\n", 1, 2),
            (std::vector<std::string>{"acts.csv: activation_count: the counts of layer 0 add up to more than a double holds"}));
  EXPECT_EQ(profile_errors(header + "0,0,1e308,50\n0,1,5,50\n", 1, 2), std::vector<std::string>{});
}

TEST(InputInvariants, gate_log_layer_counts_add_up_to_a_finite_total) {
  EXPECT_EQ(gate_log_errors("{\"steps\": [{\"expert_counts\": [[1e308, 1e308]]}]}", 1, 2),
            (std::vector<std::string>{
                "gate_logs_0.json: steps[0].expert_counts: the counts of a layer add up to more than a double holds"}));
  EXPECT_EQ(gate_log_errors("{\"steps\": [{\"expert_counts\": [[1e308, 0]]}]}", 1, 2), std::vector<std::string>{});
}

}  // namespace
}  // namespace moesim::fuzz
