// SimGrid settings given as --cfg=... reach the engine: context settings too, which SimGrid reads
// only when the engine starts (set afterwards, contexts/factory ended every run with bad_alloc).
#include <gtest/gtest.h>

#include "tests/e2e/cli_runner.hpp"

namespace moesim::test {
namespace {

TEST(SimgridConfig, a_context_factory_given_with_cfg_runs_and_gives_the_same_results) {
  const auto base = scratch_dir("cfg-contexts");
  const std::string run =
      "run scenarios/quickstart.yaml --set workload.requests=2 --set workload.output_tokens.value=16 --quiet --out '";
  const CliResult plain = run_cli(run + (base / "default").string() + "'", "cfg-default");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  for (const std::string factory : {"thread", "ucontext"}) {
    const CliResult r = run_cli(run + (base / factory).string() + "' --cfg=contexts/factory:" + factory, "cfg-" + factory);
    ASSERT_EQ(r.exit_code, 0) << factory << ": " << r.err;
    for (const char* file : {"requests.csv", "steps.csv"})
      EXPECT_EQ(read_text(base / factory / file), read_text(base / "default" / file)) << factory << ": " << file;
  }
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace moesim::test
