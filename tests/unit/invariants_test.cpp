// The conservation checks every run ends with: requests in = finished + rejected (with a reason).
// A broken invariant is an internal error naming what broke (moesim run turns it into exit 3 and
// writes nothing).
#include <gtest/gtest.h>

#include "sim/metrics/report.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

std::vector<Request> three_requests() {
  std::vector<Request> reqs;
  for (int i = 0; i < 3; ++i) {
    Request r;
    r.id = i;
    r.arrival_s = 0.1 * i;
    r.prompt_tokens = 10;
    r.output_tokens = 2;
    reqs.push_back(r);
  }
  return reqs;
}

/// A result holding only the request records; the members the simulation fills stay empty.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
RunResult recorded_only(std::vector<Request> requests) { return RunResult{.recorder = RunRecorder(std::move(requests))}; }
#pragma GCC diagnostic pop

std::string invariant_error(const RunResult& result) {
  try {
    check_invariants(quickstart(), result);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Invariants, a_request_neither_finished_nor_rejected_breaks_requests_in_equal_finished_plus_rejected) {
  RunResult result = recorded_only(three_requests());
  result.recorder.on_rejected(0, "exceeds_max_model_len");
  // Request 1 was served to the end; request 2 vanished.
  result.recorder.on_scheduled(1, 0.1);
  result.recorder.on_token(1, 0.2);
  result.recorder.on_token(1, 0.3);
  result.recorder.on_finished(1, 0.3);
  EXPECT_EQ(invariant_error(result), "invariant broken: request 2 arrived at 0.200000 s but never finished");
}

TEST(Invariants, a_rejected_request_that_was_also_served_breaks_the_accounting) {
  RunResult result = recorded_only(three_requests());
  result.recorder.on_rejected(0, "exceeds_max_model_len");
  result.recorder.on_rejected(1, "exceeds_max_model_len");
  result.recorder.on_scheduled(1, 0.1);
  EXPECT_EQ(invariant_error(result), "invariant broken: request 1 was rejected (exceeds_max_model_len) but was also served");
}

TEST(Admission, only_requests_that_fit_max_model_len_are_admitted) {
  Request r;
  r.prompt_tokens = 4000;
  r.output_tokens = 96;
  EXPECT_EQ(admission_problem(r, 4096), std::nullopt);
  r.output_tokens = 97;
  EXPECT_EQ(admission_problem(r, 4096), std::optional<std::string>("exceeds_max_model_len"));
}

TEST(Workload, dataset_lengths_are_kept_as_written_so_the_server_can_reject_them) {
  WorkloadParams p;
  p.requests = 2;
  p.arrival = {"burst", 1.0};
  std::vector<DatasetRecord> dataset(2);
  dataset[0].prompt_tokens = 100;
  dataset[0].output_tokens = 10;
  dataset[1].prompt_tokens = 9000;
  dataset[1].output_tokens = 500;
  const auto reqs = generate_requests(p, 1, 4096, {}, &dataset);
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].prompt_tokens, 9000);
  EXPECT_EQ(reqs[1].output_tokens, 500);
}

TEST(Workload, heavy_tailed_lengths_are_clamped_without_integer_overflow) {
  WorkloadParams p;
  p.requests = 200;
  p.prompt_tokens = {"lognormal", 0, 1e10, 1.0, 1, 0};  // most draws beyond the int range
  p.output_tokens = {"fixed", 16, 0, 0, 1, 0};
  for (const auto& r : generate_requests(p, 3, 4096)) {
    EXPECT_GE(r.prompt_tokens, 1);
    EXPECT_LE(r.prompt_tokens + r.output_tokens, 4096);
  }
}

}  // namespace
}  // namespace moesim::test
