#include "sim/metrics/trace.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace moesim {

namespace {
constexpr int kEngineTrack = 1000;
std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }
}  // namespace

void TraceRecorder::name_instance(int instance, const std::vector<std::string>& gpu_names) {
  names_.emplace_back(instance, gpu_names);
}

void TraceRecorder::span(int instance, int gpu, std::string name, double start_s, double end_s) {
  spans_.push_back({instance, gpu, std::move(name), start_s, end_s});
}

void TraceRecorder::step(int instance, std::int64_t step, double start_s, double end_s, int prefill_tokens, int decode_tokens,
                         int running) {
  spans_.push_back({instance, kEngineTrack, fmt::format("step {}", step), start_s, end_s});
  counters_.push_back({instance, start_s, prefill_tokens, decode_tokens, running});
}

void TraceRecorder::gpu_counter(int instance, int gpu, double time_s, double power_w, double temp_c) {
  gpu_counters_.push_back({instance, gpu, time_s, power_w, temp_c});
}

std::string TraceRecorder::render() const {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  auto add = [&](const std::string& event) {
    if (!first) out += ",\n";
    out += event;
    first = false;
  };
  for (const auto& [pid, gpus] : names_) {
    add(fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"tid":0,"args":{{"name":"instance {}"}}}})", pid, pid));
    add(fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":"engine"}}}})", pid, kEngineTrack));
    add(fmt::format(R"({{"ph":"M","name":"thread_sort_index","pid":{},"tid":{},"args":{{"sort_index":-1}}}})", pid, kEngineTrack));
    for (std::size_t g = 0; g < gpus.size(); ++g)
      add(fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":{}}}}})", pid, g, quoted(gpus[g])));
  }
  for (const auto& s : spans_)
    add(fmt::format(R"({{"ph":"X","cat":"{}","name":{},"pid":{},"tid":{},"ts":{:.3f},"dur":{:.3f}}})",
                    s.tid == kEngineTrack ? "step" : "gpu", quoted(s.name), s.pid, s.tid, s.start_s * 1e6,
                    (s.end_s - s.start_s) * 1e6));
  for (const auto& c : counters_) {
    add(fmt::format(R"({{"ph":"C","name":"batch tokens","pid":{},"tid":0,"ts":{:.3f},"args":{{"prefill":{},"decode":{}}}}})",
                    c.pid, c.t_s * 1e6, c.prefill, c.decode));
    add(fmt::format(R"({{"ph":"C","name":"sequences","pid":{},"tid":0,"ts":{:.3f},"args":{{"running":{}}}}})", c.pid,
                    c.t_s * 1e6, c.running));
  }
  for (const auto& c : gpu_counters_) {
    add(fmt::format(R"({{"ph":"C","name":"gpu {} power_w","pid":{},"tid":0,"ts":{:.3f},"args":{{"power_w":{:.2f}}}}})", c.gpu, c.pid,
                    c.t_s * 1e6, c.power_w));
    add(fmt::format(R"({{"ph":"C","name":"gpu {} temp_c","pid":{},"tid":0,"ts":{:.3f},"args":{{"die":{:.3f}}}}})", c.gpu, c.pid,
                    c.t_s * 1e6, c.temp_c));
  }
  out += "\n]}\n";
  return out;
}

}  // namespace moesim
