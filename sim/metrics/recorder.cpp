#include "sim/metrics/recorder.hpp"

#include "sim/metrics/output_files.hpp"

#include "sim/metrics/csv_text.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace moesim {

RunRecorder::RunRecorder(std::vector<Request> requests, double timeseries_interval_s) {
  requests_.reserve(requests.size());
  double span = 0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].id != static_cast<std::int64_t>(i)) throw std::logic_error("request ids must be 0..n-1 in order");
    requests_.push_back({requests[i]});
    span = std::max(span, requests[i].arrival_s);
  }
  engine_bins_ = timeseries_interval_s > 0 ? EngineTimeBins(timeseries_interval_s, /*fixed=*/true)
                                          : EngineTimeBins(EngineTimeBins::initial_width_s(span));
}

void RunRecorder::on_scheduled(std::int64_t id, double now) {
  auto& r = requests_.at(static_cast<std::size_t>(id));
  // SimGrid's sleep_until may wake a rounding error before the arrival time it was given.
  if (r.first_scheduled_s < 0) r.first_scheduled_s = std::max(now, r.request.arrival_s);
}

void RunRecorder::on_token(std::int64_t id, double now) {
  auto& r = requests_.at(static_cast<std::size_t>(id));
  if (r.tokens_emitted == 0) r.first_token_s = now;
  else itls_.add(now - r.last_token_s);
  r.last_token_s = now;
  r.tokens_emitted += 1;
  engine_bins_.add_output_token(now);
}

void StepTotals::add(const StepRecord& s) {
  ++steps;
  prefill_tokens += s.prefill_tokens;
  decode_tokens += s.decode_tokens;
  energy_j += s.energy_j;
  attention_s += s.attention_s;
  dense_s += s.dense_s;
  moe_s += s.moe_s;
  lm_head_s += s.lm_head_s;
  comm_s += s.comm_s;
  dispatch_bytes += s.dispatch_bytes;
  combine_bytes += s.combine_bytes;
  expert_load_max_over_mean += s.expert_load_max_over_mean;
  gpu_load_max_over_mean += s.gpu_load_max_over_mean;
  attention_rank_max_over_mean += s.attention_rank_max_over_mean;
}

const char* steps_csv_header() {
  return "step,instance,start_s,duration_ms,prefill_tokens,decode_tokens,batch_size,attention_ms,dense_ffn_ms,moe_ms,"
         "lm_head_ms,comm_ms,expert_load_cv,expert_load_max_over_mean,gpu_load_max_over_mean,dispatch_bytes,combine_bytes,energy_j,"
         "max_temp_c,running,waiting,kv_blocks_used,preempted,attention_rank_max_over_mean,gpu_load_max_over_mean_before,"
         "rerouted_fraction,selection_divergence,dropped_assignments\n";
}

void append_steps_csv_row(std::string& out, const StepRecord& s) {
  using namespace csv;
  integer_c(out, s.step);
  integer_c(out, s.instance);
  fixed_c(out, s.start_s, 9);
  fixed_c(out, (s.end_s - s.start_s) * 1e3, 6);
  integer_c(out, s.prefill_tokens);
  integer_c(out, s.decode_tokens);
  integer_c(out, s.num_seqs);
  for (double ms : {s.attention_s, s.dense_s, s.moe_s, s.lm_head_s, s.comm_s}) fixed_c(out, ms * 1e3, 6);
  fixed_c(out, s.expert_load_cv, 6);
  fixed_c(out, s.expert_load_max_over_mean, 6);
  fixed_c(out, s.gpu_load_max_over_mean, 6);
  fixed_c(out, s.dispatch_bytes, 0);
  fixed_c(out, s.combine_bytes, 0);
  fixed_c(out, s.energy_j, 6);
  fixed_c(out, s.max_die_c, 3);
  integer_c(out, s.running);
  integer_c(out, s.waiting);
  integer_c(out, s.kv_blocks_used);
  integer_c(out, s.preempted);
  fixed_c(out, s.attention_rank_max_over_mean, 6);
  fixed_c(out, s.gpu_load_max_over_mean_before, 6);
  fixed_c(out, s.rerouted_fraction, 6);
  fixed_c(out, s.selection_divergence, 6);
  fixed(out, s.dropped_assignments, 0);
  out += '\n';
}

namespace {
constexpr std::size_t kStreamBuffer = std::size_t{1} << 20;

[[noreturn]] void stream_failure(const std::filesystem::path& path, int err) {
  throw std::runtime_error(fmt::format("cannot write {}: {}", path.string(), std::strerror(err)));
}
}  // namespace

StepsCsvStream::StepsCsvStream(const std::filesystem::path& dir) {
  fd_ = create_exclusive_temporary(dir, ".tmp-steps.csv-", tmp_);
  buffer_.reserve(kStreamBuffer + 1024);
  buffer_ = steps_csv_header();
}

StepsCsvStream::~StepsCsvStream() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void StepsCsvStream::add(const StepRecord& s) {
  append_steps_csv_row(buffer_, s);
  if (buffer_.size() >= kStreamBuffer) flush();
}

void StepsCsvStream::flush() {
  for (std::size_t done = 0; done < buffer_.size();) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) stream_failure(tmp_, n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

void StepsCsvStream::commit(const std::filesystem::path& path) {
  if (fd_ < 0) throw std::logic_error("steps.csv committed twice");
  flush();
  if (::fsync(fd_) != 0) stream_failure(tmp_, errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    stream_failure(tmp_, errno);
  }
  if (::rename(tmp_.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    stream_failure(path, err);
  }
}

void RunRecorder::on_finished(std::int64_t id, double now) { requests_.at(static_cast<std::size_t>(id)).finish_s = now; }

}  // namespace moesim
