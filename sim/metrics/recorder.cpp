#include "sim/metrics/recorder.hpp"

#include <algorithm>
#include <stdexcept>

namespace moesim {

RunRecorder::RunRecorder(std::vector<Request> requests) {
  requests_.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].id != static_cast<std::int64_t>(i)) throw std::logic_error("request ids must be 0..n-1 in order");
    requests_.push_back({requests[i]});
  }
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
}

void RunRecorder::on_finished(std::int64_t id, double now) { requests_.at(static_cast<std::size_t>(id)).finish_s = now; }

}  // namespace moesim
