#pragma once
// A Chrome / Perfetto trace (trace.json, the Trace Event Format's JSON object form): a process
// per serving instance, a track per GPU with its kernel and communication spans, an engine track
// with one span per step, and counter tracks for the batch (prefill and decode tokens) and the
// sequences running. Times are in microseconds of simulated time. GPU spans are kept for the
// first `max_steps` steps of each instance (a trace of every layer of a long run is too large to
// open); steps and counters are kept for all.
#include <cstdint>
#include <string>
#include <vector>

namespace moesim {

class TraceRecorder {
 public:
  explicit TraceRecorder(int max_steps) : max_steps_(max_steps) {}

  void name_instance(int instance, const std::vector<std::string>& gpu_names);
  [[nodiscard]] bool keep_spans(std::int64_t step) const { return max_steps_ <= 0 || step < max_steps_; }
  void span(int instance, int gpu, std::string name, double start_s, double end_s);
  void step(int instance, std::int64_t step, double start_s, double end_s, int prefill_tokens, int decode_tokens,
            int running);

  /// Power and die temperature of one GPU from time_s on.
  void gpu_counter(int instance, int gpu, double time_s, double power_w, double temp_c);

  [[nodiscard]] std::string render() const;
  [[nodiscard]] std::size_t num_spans() const { return spans_.size(); }

 private:
  struct Span {
    int pid, tid;
    std::string name;
    double start_s, end_s;
  };
  struct Counter {
    int pid;
    double t_s;
    int prefill, decode, running;
  };
  struct GpuCounter {
    int pid, gpu;
    double t_s, power_w, temp_c;
  };
  std::vector<GpuCounter> gpu_counters_;
  int max_steps_;
  std::vector<std::pair<int, std::vector<std::string>>> names_;
  std::vector<Span> spans_;
  std::vector<Counter> counters_;
};

}  // namespace moesim
