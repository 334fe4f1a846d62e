#include "sim/actors/simulation.hpp"

#include <simgrid/s4u.hpp>
#include <xbt/log.h>

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <unordered_map>
#include <memory>
#include <span>
#include <stdexcept>

#include "models/routing/router.hpp"
#include "sim/exec/layout.hpp"
#include "sim/exec/step_plan.hpp"
#include "sim/platform/platform.hpp"

#include <fmt/format.h>
#include <algorithm>

#if defined(__SANITIZE_ADDRESS__)
#define MOESIM_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOESIM_ADDRESS_SANITIZER 1
#endif
#endif

namespace moesim {
namespace {

namespace sg = simgrid::s4u;

/// Shared state of one serving instance: its scheduler, planner, GPUs and synchronisation.
struct Instance {
  int index = 0;
  std::vector<sg::Host*> hosts;
  std::vector<sg::Host*> rdma_ports;  ///< each GPU's RDMA port host (same-node traffic over the NICs)
  bool port_granularity = false;      ///< collectives as port totals through switch hosts
  std::vector<sg::Host*> nvswitches;  ///< the NVSwitch hosts of the instance's nodes, first node first
  sg::Host* fabric_switch = nullptr;
  FabricView fabric;
  NetworkFidelity fidelity = NetworkFidelity::flow;
  double host_speed = 0;
  std::vector<double> zero_flops;  ///< parallel tasks of collectives compute nothing
  std::vector<double> zero_bytes;  ///< ... and those of analytic steps move nothing (n x n)
  std::vector<double> analytic_flops, analytic_busy, analytic_wait;  ///< run_step_analytic_instance's scratch
  std::vector<double> flow_cursor;          ///< run_overlap_slot's scratch
  std::vector<const Phase*> flow_segment;   ///< run_step_flow_instance's scratch
  ContinuousBatchScheduler scheduler;
  StepPlanner planner;

  std::deque<Sequence> inbox;
  enum class Role { mixed, prefill, decode } role = Role::mixed;
  sg::MutexPtr mutex = sg::Mutex::create();
  sg::ConditionVariablePtr arrivals = sg::ConditionVariable::create();
  bool arrivals_done = false;

  StepPlan step_plan;                ///< the engine plans every step into this one (storage reused)
  std::int64_t step = 0;             ///< index of the step being executed
  std::vector<GpuPowerState>* gpus = nullptr;  ///< cluster-wide power/thermal state
  int first_gpu = 0;                 ///< cluster index of this instance's GPU 0
  double sync_wait_energy_j = 0;     ///< GPUs waiting for the slowest before a collective
  double imbalance_energy_j = 0;     ///< ... when the compute before it was MoE (expert imbalance)
  double idle_energy_j = 0;          ///< between this instance's steps
  double step_energy_accounted_j = 0;
  TraceRecorder* trace = nullptr;    ///< null unless outputs.trace
  StepTimes times;
  StepTimes analytic_times;  ///< the step's closed-form timeline (analytic fidelity), computed once
  bool engine_finished = false;
  std::int64_t outstanding = 0;  ///< requests routed here and not finished
  std::vector<double> last_step_power_w;  ///< mean power of each GPU over the instance's last step
  std::optional<Migration> overlapping;   ///< routing.migration overlap: weights in flight
  bool overlap_done = false;
  PolicyTotals policy;
  std::string planner_migration_mode;     ///< routing.migration

  Instance(int idx, SchedulerParams sp, StepPlanner p) : index(idx), scheduler(sp), planner(std::move(p)) {}
};

struct SharedState {
  RunRecorder* recorder = nullptr;
  ExpertProfiler* profiler = nullptr;
  std::string error;  ///< first failure inside an actor
  bool frontend_finished = false;
  // Disaggregation: KV transfers in flight and prefill engines still running.
  int transfers_in_flight = 0;
  double kv_bytes_per_token = 0;  ///< whole model, all layers
  int prefill_engines_running = 0;
  std::int64_t kv_transfers = 0;
  double kv_transfer_bytes = 0, kv_transfer_seconds = 0;
  std::vector<Instance*> decode_pool;
  // Closed-loop arrivals: the frontend waits for completions.
  std::int64_t finished = 0;
  bool log_finished = false;               ///< sessions: finished_ids is kept
  std::vector<std::int64_t> finished_ids;  ///< request ids in the order they finished
  sg::MutexPtr completion_mutex = sg::Mutex::create();
  sg::ConditionVariablePtr completion = sg::ConditionVariable::create();
};

/// One collective as one parallel task. Bytes that must take the NICs inside a node (pure-RDMA
/// pairs, loopback staging) go to the destination's RDMA port host (sim/platform/platform.hpp), so
/// the task then spans the GPUs and their RDMA ports.
/// A parallel task started without waiting (the caller keeps the ExecPtr and waits on it).
sg::ExecPtr start_parallel(const std::vector<sg::Host*>& hosts, const std::vector<double>& flops, const std::vector<double>& bytes) {
  sg::ExecPtr exec = sg::this_actor::exec_init(hosts, flops, bytes);
  exec->start();
  return exec;
}

sg::ExecPtr start_collective_task(Instance& inst, const Collective& c, const PortLoad& load) {
  if (inst.port_granularity) {
    // Each GPU port's total through the switch hosts (sim/platform/platform.hpp).
    std::vector<double> ports;
    (void)port_load(c, inst.fabric, &ports);
    const auto n = inst.hosts.size(), k = inst.nvswitches.size(), m = n + k + 1;
    std::vector<double> bytes(m * m, 0.0);
    const std::size_t fabric_switch = n + k;
    for (std::size_t r = 0; r < n; ++r) {
      const auto nvswitch = n + static_cast<std::size_t>(inst.fabric.node_of(static_cast<int>(r)) - inst.fabric.node_of(0));
      bytes[r * m + nvswitch] = ports[4 * r];
      bytes[nvswitch * m + r] = ports[4 * r + 1];
      bytes[r * m + fabric_switch] = ports[4 * r + 2];
      bytes[fabric_switch * m + r] = ports[4 * r + 3];
    }
    std::vector<sg::Host*> hosts(inst.hosts);
    hosts.insert(hosts.end(), inst.nvswitches.begin(), inst.nvswitches.end());
    hosts.push_back(inst.fabric_switch);
    return start_parallel(hosts, std::vector<double>(m, 0.0), bytes);
  }
  if (!load.same_node_rdma) return start_parallel(inst.hosts, inst.zero_flops, c.traffic.bytes);
  const auto n = inst.hosts.size(), n2 = 2 * n;
  std::vector<double> bytes(n2 * n2, 0.0);
  const bool rdma = c.transport == Transport::rdma;
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t d = 0; d < n; ++d) {
      const double b = c.traffic.bytes[s * n + d];
      if (b <= 0 || s == d) continue;
      const bool to_port = rdma && inst.fabric.same_node(static_cast<int>(s), static_cast<int>(d));
      bytes[s * n2 + (to_port ? n + d : d)] = b;
    }
  for (std::size_t r = 0; r < c.rdma_loopback.size() && r < n; ++r) bytes[r * n2 + n + r] += c.rdma_loopback[r];
  std::vector<sg::Host*> hosts(inst.hosts);
  hosts.insert(hosts.end(), inst.rdma_ports.begin(), inst.rdma_ports.end());
  return start_parallel(hosts, std::vector<double>(n2, 0.0), bytes);
}

void run_collective_task(Instance& inst, const Collective& c, const PortLoad& load) { start_collective_task(inst, c, load)->wait(); }


/// A collective's fixed costs beyond its transfers (per-call latency, launch).
double fixed_overhead_seconds(const Instance& inst, const Collective& c, const PortLoad& load) {
  // Routes through the switch hosts are one port long: the other half of the route latency.
  return collective_overhead_seconds(c, inst.fabric, load) + (inst.port_granularity ? 0.5 * load.route_latency_s : 0.0);
}

/// Runs consecutive collectives (no compute between them, so nobody needs to synchronise in
/// between) and returns when the last transfer ends, with the fixed per-collective overheads
/// still to pay: the caller's next wait covers them (they hold no link).
double run_collectives(Instance& inst, std::span<const Phase> comms) {
  double overhead = 0;
  for (const Phase& ph : comms) {
    const PortLoad load = port_load(ph.collective, inst.fabric);
    run_collective_task(inst, ph.collective, load);
    overhead += fixed_overhead_seconds(inst, ph.collective, load);
  }
  return overhead;
}

/// A comm phase's name on the trace: its collective, with the compute that overlaps it.
std::string span_name(const Phase& ph) {
  std::string name = to_string(ph.collective.kind);
  if (ph.overlapped()) name += std::string(" || ") + to_string(ph.overlap_kind);
  return name;
}

/// GPU spans of an analytic step, rebuilt from its closed-form timeline.
void trace_analytic_step(Instance& inst, int rank, const StepPlan& plan, double start) {
  const auto n = static_cast<std::size_t>(plan.gpus);
  double segment_start = start;
  std::vector<double> cursor(n, start);
  for_each_phase(plan, [&](const Phase& ph) {
    if (ph.kind == PhaseKind::comm) {
      segment_start = *std::max_element(cursor.begin(), cursor.end());
      const double end = segment_start + phase_seconds(ph, analytic_collective_seconds(ph.collective, inst.fabric));
      inst.trace->span(inst.index, rank, span_name(ph), segment_start, end);
      std::fill(cursor.begin(), cursor.end(), end);
      return;
    }
    for (std::size_t r = 0; r < n; ++r) {
      const double s = ph.compute_s[r];
      if (r == static_cast<std::size_t>(rank) && s > 0) inst.trace->span(inst.index, rank, to_string(ph.kind), cursor[r], cursor[r] + s);
      cursor[r] += s;
    }
  });
}

GpuPowerState& gpu_state(Instance& inst, int rank) {
  return (*inst.gpus)[static_cast<std::size_t>(inst.first_gpu + rank)];
}

double instance_energy(Instance& inst, double now) {
  double e = 0;
  for (std::size_t r = 0; r < inst.hosts.size(); ++r) {
    auto& g = gpu_state(inst, static_cast<int>(r));
    g.advance_to(now);
    e += g.energy_j();
  }
  return e;
}

void fail_if_shut_down(Instance& inst, int rank) {
  const auto& g = gpu_state(inst, rank);
  if (g.state() == ThrottleState::shutdown)
    throw std::runtime_error(fmt::format("GPU {} shut down at {:.6f} s: its die reached the shutdown temperature ({:.1f} degC); "
                                         "the work in flight is lost",
                                         inst.hosts[static_cast<std::size_t>(rank)]->get_name(), *g.failed_at(), g.max_die_c()));
}

/// Advances GPU `rank` through `seconds` of kernel time (at f_max, `compute_bound_s` of it
/// compute-bound) from `now` on its own timeline, at the clock its power state allows, chunked at
/// throttle crossings; returns when its kernels end.
double advance_compute(Instance& inst, int rank, double now, double seconds, double compute_bound_s, const Activity& activity) {
  auto& g = gpu_state(inst, rank);
  double remaining = 1.0;
  for (int guard = 0; remaining > 1e-12 && guard < 1000; ++guard) {
    g.set_activity(activity, now);
    fail_if_shut_down(inst, rank);
    const double full = seconds + compute_bound_s * (g.clock_ratio() - 1.0);
    const double need = remaining * full;
    const auto cross = g.time_to_next_threshold(need);
    const double run = cross ? std::max(*cross, 1e-12) : need;
    now += run;
    remaining -= run / full;
    g.advance_to(now);
  }
  fail_if_shut_down(inst, rank);
  return now;
}

/// Analytic fidelity, the whole instance in one activity: each GPU's busy time is known in closed
/// form (its clock only changes when a throttle threshold is crossed, which the GPU's RC model
/// predicts), so the engine advances every GPU's power state through its own step, runs the
/// step's kernels as one parallel task over the instance's GPUs (flops per GPU = its busy time,
/// ending with the slowest). Returns the time the step's closed-form timeline ends (the caller sleeps
/// until then).
double run_step_analytic_instance(Instance& inst, const StepPlan& plan) {
  const double start = sg::Engine::get_clock();
  const StepTimes& t = inst.analytic_times;
  const auto n = static_cast<std::size_t>(plan.gpus);
  std::vector<double>& flops = inst.analytic_flops;
  flops.assign(n, 0.0);
  double longest = 0, step_end = start;
  // Per GPU: busy time, its compute-bound part, time-weighted utilisations, and the time spent
  // waiting for the slowest GPU before each collective (closed-form timeline), in one pass.
  std::vector<double>& busy = inst.analytic_busy;
  busy.assign(4 * n, 0.0);
  double* bound = busy.data() + n;
  double* uc = busy.data() + 2 * n;
  double* um = busy.data() + 3 * n;
  std::vector<double>& wait = inst.analytic_wait;
  wait.assign(2 * n, 0.0);
  double* moe_wait = wait.data() + n;
  std::vector<double> segment(n, 0.0);
  bool moe = false;
  for_each_phase_weighted(plan, [&](const Phase& ph, double copies) {
    if (ph.kind == PhaseKind::comm) {
      const double slowest = *std::max_element(segment.begin(), segment.end());
      for (std::size_t r = 0; r < n; ++r) {
        wait[r] += slowest - segment[r];
        if (moe) moe_wait[r] += slowest - segment[r];
      }
      std::fill(segment.begin(), segment.end(), 0.0);
      moe = false;
      if (ph.overlapped()) {
        // Compute beside the collective: busy while it runs, then waiting for the slower of the
        // collective and the slowest GPU.
        const double collective = analytic_collective_seconds(ph.collective, inst.fabric);
        const double wall = phase_seconds(ph, collective);
        for (std::size_t r = 0; r < n; ++r) {
          const double s = ph.compute_s[r];
          busy[r] += s;
          bound[r] += ph.compute_bound_s[r];
          uc[r] += ph.compute_util[r] * s;
          um[r] += ph.memory_util[r] * s;
          const double idle = std::max(0.0, wall - std::max(s, collective));
          wait[r] += idle;
          if (ph.overlap_kind == PhaseKind::moe) moe_wait[r] += idle;
        }
      }
      return;
    }
    moe = moe || ph.kind == PhaseKind::moe;
    for (std::size_t r = 0; r < n; ++r) {
      const double s = ph.compute_s[r] * copies;
      segment[r] += s;
      busy[r] += s;
      bound[r] += ph.compute_bound_s[r] * copies;
      uc[r] += ph.compute_util[r] * s;
      um[r] += ph.memory_util[r] * s;
    }
  });
  for (std::size_t r = 0; r < n; ++r) {
    const int rank = static_cast<int>(r);
    if (inst.trace != nullptr && inst.trace->keep_spans(inst.step)) trace_analytic_step(inst, rank, plan, start);
    // The GPU's kernels at the clock its power state allows, chunked at throttle crossings, on
    // the GPU's own timeline.
    auto& g = gpu_state(inst, rank);
    const double now = busy[r] > 0 ? advance_compute(inst, rank, start, busy[r], bound[r], {uc[r] / busy[r], um[r] / busy[r], false}) : start;
    flops[r] = (now - start) * inst.host_speed;
    longest = std::max(longest, now - start);
    // The rest of the timeline (waits, collectives) follows the GPU's kernels, however long a
    // lowered clock made them.
    step_end = std::max(step_end, now + (t.total() - busy[r]));
    g.set_activity({0, 0, true}, now);
    inst.sync_wait_energy_j += wait[r] * g.power_w();
    inst.imbalance_energy_j += moe_wait[r] * g.power_w();
  }
  if (longest > 0) {
    if (n == 1) sg::this_actor::execute(flops[0]);  // one GPU: a plain execution is the cheaper activity
    else sg::this_actor::parallel_execute(inst.hosts, flops, inst.zero_bytes);
  }
  // The GPUs go idle when the step's timeline ends; the engine sleeps until then (and through its
  // own host work) in one go.
  step_end = std::max(step_end, sg::Engine::get_clock());
  for (std::size_t r = 0; r < n; ++r) gpu_state(inst, static_cast<int>(r)).set_activity({0, 0, false}, step_end);
  inst.times = t;
  return step_end;
}

/// A collective with compute beside it (Phase::overlapped), entered by every GPU of the instance
/// together at the current time: the transfer starts, every GPU runs its kernels on its own
/// timeline, and the slot ends when both are done. Time a GPU spends after its kernels and after
/// the collective, waiting for a slower GPU, counts as synchronisation wait (as imbalance when the
/// compute is the MoE's).
void run_overlap_slot(Instance& inst, const Phase& ph) {
  const auto n = inst.hosts.size();
  const double start = sg::Engine::get_clock();
  const PortLoad load = port_load(ph.collective, inst.fabric);
  const sg::ExecPtr transfer = start_collective_task(inst, ph.collective, load);
  const double overhead = fixed_overhead_seconds(inst, ph.collective, load);
  std::vector<double>& computed = inst.flow_cursor;
  computed.assign(n, start);
  for (std::size_t r = 0; r < n; ++r) {
    const int rank = static_cast<int>(r);
    if (ph.compute_s[r] > 0)
      computed[r] = advance_compute(inst, rank, start, ph.compute_s[r], ph.compute_bound_s[r], {ph.compute_util[r], ph.memory_util[r], false});
    gpu_state(inst, rank).set_activity({0, 0, true}, computed[r]);
  }
  transfer->wait();
  const double comm_end = transfer->get_finish_time() + overhead;
  const double end = std::max(comm_end, *std::max_element(computed.begin(), computed.end()));
  if (end > sg::Engine::get_clock()) sg::this_actor::sleep_until(end);
  for (std::size_t r = 0; r < n; ++r) {
    auto& g = gpu_state(inst, static_cast<int>(r));
    const double polled_from = g.energy_j();
    g.advance_to(end);
    // From the end of its kernels the GPU polls at constant activity; the part after the
    // collective too is waiting for the slowest GPU.
    const double polled = end - computed[r];
    const double idle = end - std::max(computed[r], comm_end);
    if (polled > 0 && idle > 0) {
      const double waited = (g.energy_j() - polled_from) * idle / polled;
      inst.sync_wait_energy_j += waited;
      if (ph.overlap_kind == PhaseKind::moe) inst.imbalance_energy_j += waited;
    }
  }
  const double collective = std::min(end, comm_end) - start;
  inst.times.comm += collective;
  inst.times.add(ph.overlap_kind, end - start - collective);
}

/// Flow fidelity, driven by the engine alone: kernels do not contend for anything SimGrid
/// models, so each GPU's kernels advance its power state on its own timeline in closed form (as at
/// analytic fidelity, throttle crossings included), and the engine sleeps to the slowest GPU before
/// each run of collectives, which move as parallel tasks on the links, contending with every other
/// transfer of the cluster. Returns when the step's last segment ends.
void run_step_flow_instance(Instance& inst, const StepPlan& plan) {
  const auto n = static_cast<std::size_t>(plan.gpus);
  const bool tracing = inst.trace != nullptr && inst.trace->keep_spans(inst.step);
  std::vector<double> cursor(n, sg::Engine::get_clock()), polled_from(n, 0.0);
  std::vector<const Phase*>& segment = inst.flow_segment;
  segment.clear();
  double segment_start = sg::Engine::get_clock();
  // Every GPU polls from the end of its kernels until the slowest is done.
  auto synchronise = [&] {
    for (std::size_t r = 0; r < n; ++r) {
      auto& g = gpu_state(inst, static_cast<int>(r));
      g.set_activity({0, 0, true}, cursor[r]);
      polled_from[r] = g.energy_j();
    }
    const double slowest = *std::max_element(cursor.begin(), cursor.end());
    if (slowest > sg::Engine::get_clock()) sg::this_actor::sleep_until(slowest);
    return sg::Engine::get_clock();
  };
  const auto& phases = plan.phases;
  for (std::size_t i = 0; i < phases.size();) {
    const Phase& ph = phases[i];
    if (ph.kind != PhaseKind::comm) {
      for (std::size_t r = 0; r < n; ++r) {
        const double s = ph.compute_s[r];
        if (s <= 0) continue;
        const double t0 = cursor[r];
        cursor[r] = advance_compute(inst, static_cast<int>(r), t0, s, ph.compute_bound_s[r], {ph.compute_util[r], ph.memory_util[r], false});
        if (tracing) inst.trace->span(inst.index, static_cast<int>(r), to_string(ph.kind), t0, cursor[r]);
      }
      segment.push_back(&ph);
      ++i;
      continue;
    }
    std::size_t run_end = i;
    while (run_end < phases.size() && phases[run_end].kind == PhaseKind::comm) ++run_end;
    // Waiting for the slowest GPU, then the collectives: SMs poll inside the comm kernel.
    const double comm_start = synchronise();
    const bool moe = std::any_of(segment.begin(), segment.end(), [](const Phase* p) { return p->kind == PhaseKind::moe; });
    for (std::size_t r = 0; r < n; ++r) {
      auto& g = gpu_state(inst, static_cast<int>(r));
      g.advance_to(comm_start);
      const double waited = g.energy_j() - polled_from[r];
      inst.sync_wait_energy_j += waited;
      if (moe) inst.imbalance_energy_j += waited;
    }
    attribute_segment(inst.times, segment, comm_start - segment_start);
    segment.clear();
    // The run's collectives in order: plain ones back to back, each with overlapped compute in a
    // slot of its own.
    double owed = 0;  // fixed overheads of the last plain collectives, paid by the next wait
    for (std::size_t c = i; c < run_end;) {
      if (phases[c].overlapped()) {
        if (owed > 0) sg::this_actor::sleep_for(owed);
        owed = 0;
        run_overlap_slot(inst, phases[c]);
        ++c;
        continue;
      }
      std::size_t e = c;
      while (e < run_end && !phases[e].overlapped()) ++e;
      if (owed > 0) sg::this_actor::sleep_for(owed);
      const double plain_start = sg::Engine::get_clock();
      owed = run_collectives(inst, std::span<const Phase>(phases.data() + c, e - c));
      inst.times.comm += sg::Engine::get_clock() + owed - plain_start;
      c = e;
    }
    const double comm_end = sg::Engine::get_clock() + owed;
    if (tracing) {
      std::string name;
      for (std::size_t c = i; c < run_end; ++c) {
        if (!name.empty()) name += '+';
        name += span_name(phases[c]);
      }
      for (std::size_t r = 0; r < n; ++r) inst.trace->span(inst.index, static_cast<int>(r), name, comm_start, comm_end);
    }
    std::fill(cursor.begin(), cursor.end(), comm_end);
    segment_start = comm_end;
    i = run_end;
  }
  const double end = synchronise();
  attribute_segment(inst.times, segment, end - segment_start);
  for (std::size_t r = 0; r < n; ++r) gpu_state(inst, static_cast<int>(r)).set_activity({0, 0, false}, end);
}

/// Wraps an actor body so that a C++ exception becomes a reported failure, not an abort.
template <class F>
auto guarded(SharedState& shared, F body) {
  return [&shared, body]() {
    try {
      body();
    } catch (const std::exception& e) {
      if (shared.error.empty()) shared.error = e.what();
    }
  };
}


/// Once no prefill engine runs and no KV transfer is in flight, decode instances get no more work.
void close_decode_pool_if_done(SharedState& shared) {
  if (shared.prefill_engines_running > 0 || shared.transfers_in_flight > 0) return;
  for (Instance* d : shared.decode_pool) {
    std::unique_lock<sg::Mutex> lock(*d->mutex);
    d->arrivals_done = true;
    d->arrivals->notify_all();
  }
}

/// Moves a prefilled sequence's KV cache from its prefill instance to the decode instance with the
/// fewest outstanding requests: every source GPU sends its share to every destination GPU as one
/// parallel task on the platform's links. The first output token reaches the user when the
/// transfer ends.
void start_kv_transfer(Instance& from, const Sequence& seq, SharedState& shared) {
  Instance* to = *std::min_element(shared.decode_pool.begin(), shared.decode_pool.end(),
                                   [](const Instance* a, const Instance* b) { return a->outstanding < b->outstanding; });
  to->outstanding += 1;
  shared.transfers_in_flight += 1;
  const double bytes = static_cast<double>(seq.cached) * shared.kv_bytes_per_token;
  std::vector<sg::Host*> hosts(from.hosts);
  hosts.insert(hosts.end(), to->hosts.begin(), to->hosts.end());
  const std::size_t ns = from.hosts.size(), n = hosts.size();
  std::vector<double> matrix(n * n, 0.0);
  for (std::size_t a = 0; a < ns; ++a)
    for (std::size_t b = ns; b < n; ++b) matrix[a * n + b] = bytes / static_cast<double>(ns * (n - ns));
  sg::Actor::create("kv-transfer-" + std::to_string(seq.request.id), from.hosts[0],
                    guarded(shared, [hosts, matrix, seq, to, bytes, &shared] {
                      const double t0 = sg::Engine::get_clock();
                      sg::this_actor::parallel_execute(hosts, std::vector<double>(hosts.size(), 0.0), matrix);
                      const double t1 = sg::Engine::get_clock();
                      shared.recorder->on_token(seq.request.id, t1);
                      shared.recorder->set_instance(seq.request.id, to->index);
                      shared.kv_transfers += 1;
                      shared.kv_transfer_bytes += bytes;
                      shared.kv_transfer_seconds += t1 - t0;
                      {
                        std::unique_lock<sg::Mutex> lock(*to->mutex);
                        to->inbox.push_back(seq);
                        to->arrivals->notify_all();
                      }
                      shared.transfers_in_flight -= 1;
                      close_decode_pool_if_done(shared);
                    }));
}

void record_policy(Instance& inst, const StepPlan& plan) {
  PolicyTotals& t = inst.policy;
  const PolicyCounters& c = plan.load.policy;
  t.assignments += c.assignments;
  t.computed += c.computed;
  t.dropped += c.dropped;
  t.rerouted += c.rerouted;
  t.changed += c.changed;
  if (plan.load.layer_gpu_mom_after.empty()) return;
  t.layer_gpu_mom_before.resize(plan.load.layer_gpu_mom_before.size(), 0.0);
  t.layer_gpu_mom_after.resize(plan.load.layer_gpu_mom_after.size(), 0.0);
  for (std::size_t l = 0; l < plan.load.layer_gpu_mom_after.size(); ++l) {
    t.layer_gpu_mom_before[l] += plan.load.layer_gpu_mom_before[l];
    t.layer_gpu_mom_after[l] += plan.load.layer_gpu_mom_after[l];
  }
  t.ep_steps += 1;
}

/// Copies moved expert weights between the instance's GPUs: one parallel task carrying every
/// (source, destination) pair's bytes at flow fidelity, the closed form at analytic fidelity.
void copy_weights(Instance& inst, const Migration& m) {
  const Collective c{CollectiveKind::migration, m.traffic, 1};
  inst.policy.migration_analytic_seconds += analytic_collective_seconds(c, inst.fabric);
  if (inst.fidelity == NetworkFidelity::analytic) {
    sg::this_actor::sleep_for(analytic_collective_seconds(c, inst.fabric));
    return;
  }
  sg::this_actor::parallel_execute(inst.hosts, inst.zero_flops, m.traffic.bytes);
  if (const double extra = collective_overhead_seconds(c, inst.fabric); extra > 0) sg::this_actor::sleep_for(extra);
}

/// A rebalance's weights move: stall stops serving until the copy ends (GPUs in their
/// communication state); overlap copies beside serving and switches placement when it ends.
void start_migration(Instance& inst, Migration m, SharedState& shared) {
  PolicyTotals& t = inst.policy;
  t.migrations += 1;
  t.migration_bytes += m.bytes;
  if (inst.planner_migration_mode == "overlap") {
    inst.overlapping = std::move(m);
    inst.overlap_done = false;
    sg::Actor::create("migration-" + std::to_string(inst.index), inst.hosts[0], guarded(shared, [&inst] {
                        const double t0 = sg::Engine::get_clock();
                        copy_weights(inst, *inst.overlapping);
                        inst.policy.migration_seconds += sg::Engine::get_clock() - t0;
                        inst.overlap_done = true;
                      }));
    return;
  }
  const double t0 = sg::Engine::get_clock();
  const double e0 = instance_energy(inst, t0);
  for (std::size_t r = 0; r < inst.hosts.size(); ++r) gpu_state(inst, static_cast<int>(r)).set_activity({0, 0, true}, t0);
  copy_weights(inst, m);
  const double t1 = sg::Engine::get_clock();
  for (std::size_t r = 0; r < inst.hosts.size(); ++r) gpu_state(inst, static_cast<int>(r)).set_activity({0, 0, false}, t1);
  const double energy = instance_energy(inst, t1) - e0;
  t.migration_seconds += t1 - t0;
  t.migration_energy_j += energy;
  inst.step_energy_accounted_j += energy;  // not idle time between steps
  inst.planner.apply_migration(m);
}

void engine(Instance& inst, SharedState& shared) {
  RunRecorder& rec = *shared.recorder;
  std::int64_t step = 0;
  while (true) {
    if (inst.inbox.empty() && inst.scheduler.idle() && !inst.arrivals_done) {
      std::unique_lock<sg::Mutex> lock(*inst.mutex);
      while (inst.inbox.empty() && inst.scheduler.idle() && !inst.arrivals_done) inst.arrivals->wait(lock);
    }
    // SimGrid runs one actor at a time and switches only inside its calls: taking what the inbox
    // holds needs no lock (a lock and unlock per step cost two simcalls).
    while (!inst.inbox.empty()) {
      if (inst.inbox.front().cached > 0) inst.scheduler.add_prefilled(inst.inbox.front());
      else inst.scheduler.add(inst.inbox.front().request);
      inst.inbox.pop_front();
    }
    if (inst.scheduler.idle()) {
      if (inst.arrivals_done) break;
      continue;
    }
    const std::int64_t hits_before = inst.scheduler.stats().prefix_hit_tokens;
    const Batch batch = inst.scheduler.schedule();
    const std::int64_t step_hits = inst.scheduler.stats().prefix_hit_tokens - hits_before;
    if (batch.empty()) {
      shared.error = "instance " + std::to_string(inst.index) + ": requests wait but none can be scheduled "
                     "(KV cache or token budget too small)";
      break;
    }
    if (inst.overlapping && inst.overlap_done) {
      inst.planner.apply_migration(*inst.overlapping);
      inst.overlapping.reset();
      inst.overlap_done = false;
    }
    const double start = sg::Engine::get_clock();
    const double energy_before = instance_energy(inst, start);
    std::vector<double> gpu_energy_before(inst.hosts.size());
    std::vector<GpuSignal> signals(inst.hosts.size());
    for (std::size_t r = 0; r < inst.hosts.size(); ++r) {
      const auto& g = gpu_state(inst, static_cast<int>(r));
      gpu_energy_before[r] = g.energy_j();
      signals[r] = {g.clock_ratio(), inst.last_step_power_w.empty() ? 0.0 : inst.last_step_power_w[r], g.die_c(),
                    g.state() != ThrottleState::none};
    }
    inst.idle_energy_j += energy_before - inst.step_energy_accounted_j;
    for (const BatchItem& item : batch.items)
      rec.on_scheduled(item.request_id, start);  // the first time counts
    StepPlan& plan = inst.step_plan;
    inst.planner.plan_into(plan, batch, start, signals, inst.fidelity == NetworkFidelity::analytic);
    inst.times = {};
    if (inst.fidelity == NetworkFidelity::analytic) inst.analytic_times = analytic_step_times(plan, inst.fabric);
    inst.step = step;
    // The engine's CPU work for the step follows the GPUs' work: the GPUs idle meanwhile (async
    // scheduling hides the part that ran during the GPU time).
    auto host_after = [&plan, start](double gpus_done) {
      return plan.host_overlapped ? std::max(0.0, plan.host_s - (gpus_done - start)) : plan.host_s;
    };
    if (inst.fidelity == NetworkFidelity::analytic) {
      // One sleep to the end of the host work (run_step_analytic_instance set the GPUs' states).
      const double gpus_done = run_step_analytic_instance(inst, plan);
      const double until = gpus_done + host_after(gpus_done);
      if (until > sg::Engine::get_clock()) sg::this_actor::sleep_until(until);
    } else {
      run_step_flow_instance(inst, plan);
      const double host = host_after(sg::Engine::get_clock());
      if (host > 0) sg::this_actor::sleep_for(host);
    }
    const double end = sg::Engine::get_clock();
    const double step_energy = instance_energy(inst, end) - energy_before;
    inst.step_energy_accounted_j = energy_before + step_energy;
    inst.last_step_power_w.resize(inst.hosts.size());
    for (std::size_t r = 0; r < inst.hosts.size(); ++r)
      inst.last_step_power_w[r] = end > start ? (gpu_state(inst, static_cast<int>(r)).energy_j() - gpu_energy_before[r]) / (end - start) : 0.0;
    record_policy(inst, plan);
    // A step's energy goes to its sequences by their share of its tokens.
    const double tokens = batch.total_tokens();
    for (const BatchItem& item : batch.items)
      rec.on_energy(item.request_id, step_energy * item.num_tokens / tokens, item.is_prefill);
    const StepOutcome outcome = inst.scheduler.complete(batch);
    for (auto id : outcome.emitted) {
      const bool moves_on = std::any_of(outcome.handed_off.begin(), outcome.handed_off.end(),
                                        [id](const Sequence& q) { return q.request.id == id; });
      if (!moves_on) rec.on_token(id, end);  // a moving sequence's first token arrives after its KV transfer
    }
    inst.outstanding -= static_cast<std::int64_t>(outcome.handed_off.size());
    for (const Sequence& q : outcome.handed_off) start_kv_transfer(inst, q, shared);
    inst.outstanding -= static_cast<std::int64_t>(outcome.finished.size());
    for (auto id : outcome.finished) {
      rec.on_finished(id, end);
      inst.planner.router().forget(id);
    }
    if (!outcome.finished.empty()) {
      std::unique_lock<sg::Mutex> lock(*shared.completion_mutex);
      shared.finished += static_cast<std::int64_t>(outcome.finished.size());
      if (shared.log_finished) shared.finished_ids.insert(shared.finished_ids.end(), outcome.finished.begin(), outcome.finished.end());
      shared.completion->notify_all();
    }

    StepRecord sr;
    sr.step = step++;
    sr.instance = inst.index;
    sr.start_s = start;
    sr.end_s = end;
    sr.prefill_tokens = batch.prefill_tokens;
    sr.decode_tokens = batch.decode_tokens;
    sr.num_seqs = static_cast<int>(batch.items.size());
    sr.attention_s = inst.times.attention;
    sr.dense_s = inst.times.dense;
    sr.moe_s = inst.times.moe;
    sr.lm_head_s = inst.times.lm_head;
    sr.comm_s = inst.times.comm;
    sr.expert_load_cv = plan.load.expert_cv_mean;
    sr.expert_load_max_over_mean = plan.load.expert_max_over_mean;
    sr.gpu_load_max_over_mean = plan.load.gpu_max_over_mean;
    sr.gpu_load_max_over_mean_before = plan.load.gpu_max_over_mean_before;
    const double assigned = plan.load.policy.assignments;
    sr.rerouted_fraction = assigned > 0 ? plan.load.policy.rerouted / assigned : 0.0;
    sr.selection_divergence = assigned > 0 ? plan.load.policy.changed / assigned : 0.0;
    sr.dropped_assignments = plan.load.policy.dropped;
    sr.attention_rank_max_over_mean = plan.load.attention_rank_max_over_mean;
    sr.dispatch_bytes = plan.load.dispatch_bytes;
    sr.combine_bytes = plan.load.combine_bytes;
    sr.energy_j = step_energy;
    sr.running = static_cast<int>(inst.scheduler.num_running());
    sr.waiting = static_cast<int>(inst.scheduler.num_waiting());
    sr.kv_blocks_used = inst.scheduler.kv_blocks_in_use();
    sr.preempted = static_cast<int>(batch.preempted.size());
    sr.prefix_hit_tokens = step_hits;
    double max_die = 0;
    for (std::size_t r = 0; r < inst.hosts.size(); ++r) max_die = std::max(max_die, gpu_state(inst, static_cast<int>(r)).die_c());
    sr.max_die_c = max_die;
    rec.on_step(sr);
    if (inst.trace != nullptr)
      inst.trace->step(inst.index, sr.step, start, end, batch.prefill_tokens, batch.decode_tokens, sr.num_seqs);
    shared.profiler->on_step(inst.index, sr.step, start, batch.total_tokens(), plan.load, inst.planner);
    if (auto m = inst.planner.take_migration()) start_migration(inst, std::move(*m), shared);
  }
  inst.engine_finished = true;
  if (inst.role == Instance::Role::prefill && --shared.prefill_engines_running == 0) close_decode_pool_if_done(shared);
}

/// The instance a request goes to (parallel.dp_router).
std::size_t route_request(const std::string& router, const Request& r, std::vector<std::unique_ptr<Instance>>& all) {
  // Requests enter at the prefill pool when prefill and decode are disaggregated.
  std::vector<Instance*> instances;
  for (auto& i : all)
    if (i->role != Instance::Role::decode) instances.push_back(i.get());
  const auto n = instances.size();
  if (router == "round_robin" || n == 1) return static_cast<std::size_t>(instances[static_cast<std::size_t>(r.id) % n]->index);
  std::size_t best = 0;
  double best_load = 1e300;
  for (std::size_t i = 0; i < n; ++i) {
    const Instance& inst = *instances[i];
    const double load = router == "least_outstanding"
                            ? static_cast<double>(inst.outstanding)
                            : static_cast<double>(inst.scheduler.kv_blocks_in_use()) /
                                      std::max<double>(1.0, static_cast<double>(inst.scheduler.params().kv_capacity_blocks)) +
                                  1e-9 * static_cast<double>(inst.outstanding);
    if (load < best_load) {
      best_load = load;
      best = static_cast<std::size_t>(inst.index);
    }
  }
  return best;
}

/// Hot-air recirculation (thermal.recirculation_k_per_kw): each node's inlet follows its GPUs'
/// power through a first-order lag, inlet = inlet_c + k * P_lag / 1000, updated every tick. The
/// node's power over a tick is each GPU's energy over its own timeline since the last tick (at
/// analytic fidelity a GPU's state may already stand at the end of its current step: the new inlet
/// applies from there, at most one step late, against a lag of recirculation_tau_s).
void recirculation(std::vector<GpuPowerState>& gpus, int gpus_per_node, const ThermalConfig& cfg) {
  const double tick = std::min(1.0, cfg.recirculation_tau_s / 10.0);
  const double keep = std::exp(-tick / cfg.recirculation_tau_s);
  const std::size_t per_node = static_cast<std::size_t>(std::max(1, gpus_per_node));
  const std::size_t nodes = (gpus.size() + per_node - 1) / per_node;
  std::vector<double> lag(nodes, 0.0), last_energy(gpus.size()), last_time(gpus.size());
  for (std::size_t g = 0; g < gpus.size(); ++g) {
    last_energy[g] = gpus[g].energy_j();
    last_time[g] = gpus[g].time_s();
  }
  for (std::size_t node = 0; node < nodes; ++node)
    for (std::size_t g = node * per_node; g < std::min(gpus.size(), (node + 1) * per_node); ++g) lag[node] += gpus[g].power_w();
  while (true) {
    sg::this_actor::sleep_for(tick);
    const double now = sg::Engine::get_clock();
    for (std::size_t node = 0; node < nodes; ++node) {
      double power = 0;
      const std::size_t first = node * per_node, end = std::min(gpus.size(), (node + 1) * per_node);
      for (std::size_t g = first; g < end; ++g) {
        GpuPowerState& st = gpus[g];
        if (st.time_s() < now) st.advance_to(now);
        const double dt = st.time_s() - last_time[g];
        power += dt > 0 ? (st.energy_j() - last_energy[g]) / dt : st.power_w();
        last_energy[g] = st.energy_j();
        last_time[g] = st.time_s();
      }
      lag[node] = keep * lag[node] + (1.0 - keep) * power;
      const double inlet = cfg.inlet_c + cfg.recirculation_k_per_kw * lag[node] / 1000.0;
      for (std::size_t g = first; g < end; ++g) gpus[g].set_inlet(inlet, now);
    }
  }
}

/// Hands a request to the instance the DP router picks.
void dispatch(const Request& r, std::vector<std::unique_ptr<Instance>>& instances, SharedState& shared, const std::string& router) {
  Instance& inst = *instances[route_request(router, r, instances)];
  inst.outstanding += 1;
  shared.recorder->set_instance(r.id, inst.index);
  std::unique_lock<sg::Mutex> lock(*inst.mutex);
  Sequence seq;
  seq.request = r;
  seq.prefill_target = r.prompt_tokens;
  inst.inbox.push_back(seq);
  inst.arrivals->notify_all();
}

/// Multi-turn sessions: a turn whose parent is served waits for the parent to finish, then for its
/// think time (and, unless `from_parent_only`, for its recorded time); the others go at their times.
/// Turns become due in time order, ties in request order.
void send_sessions(const std::vector<Request>& requests, std::vector<std::unique_ptr<Instance>>& instances, SharedState& shared,
                   const std::string& router, bool from_parent_only) {
  std::unordered_map<std::int64_t, std::size_t> index_of;
  for (std::size_t i = 0; i < requests.size(); ++i) index_of.emplace(requests[i].id, i);
  std::unordered_map<std::int64_t, std::vector<std::size_t>> children;
  using Due = std::pair<double, std::size_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    if (r.parent >= 0 && r.think_s >= 0 && index_of.count(r.parent) > 0) children[r.parent].push_back(i);
    else due.emplace(r.arrival_s, i);
  }
  shared.log_finished = true;
  std::size_t seen = 0, sent = 0;
  while (sent < requests.size()) {
    std::unique_lock<sg::Mutex> lock(*shared.completion_mutex);
    const double now = sg::Engine::get_clock();
    for (; seen < shared.finished_ids.size(); ++seen) {
      const auto it = children.find(shared.finished_ids[seen]);
      if (it == children.end()) continue;
      for (std::size_t c : it->second) {
        const Request& r = requests[c];
        due.emplace(from_parent_only ? now + r.think_s : std::max(r.arrival_s, now + r.think_s), c);
      }
      children.erase(it);
    }
    if (due.empty()) {
      shared.completion->wait(lock);
      continue;
    }
    if (due.top().first > now) {
      // Woken by a completion, or at the due time (the clock then equals it).
      if (shared.completion->wait_until(lock, due.top().first) == std::cv_status::no_timeout) continue;
    }
    Request r = requests[due.top().second];
    due.pop();
    lock.unlock();
    r.arrival_s = sg::Engine::get_clock();
    shared.recorder->on_sent(r.id, r.arrival_s);
    ++sent;
    dispatch(r, instances, shared, router);
  }
}

void frontend(const std::vector<Request>& requests, std::vector<std::unique_ptr<Instance>>& instances, SharedState& shared,
              int max_concurrency, const std::string& router, bool turns_from_parent_only) {
  const bool sessions = std::any_of(requests.begin(), requests.end(), [](const Request& r) { return r.parent >= 0 && r.think_s >= 0; });
  if (sessions) {
    send_sessions(requests, instances, shared, router, turns_from_parent_only);
  } else {
    std::int64_t sent = 0;
    for (Request r : requests) {
      if (max_concurrency > 0) {
        // Closed loop: wait for a free slot, then send now.
        std::unique_lock<sg::Mutex> lock(*shared.completion_mutex);
        while (sent - shared.finished >= max_concurrency) shared.completion->wait(lock);
        r.arrival_s = sg::Engine::get_clock();
        shared.recorder->on_sent(r.id, r.arrival_s);
      } else if (r.arrival_s > sg::Engine::get_clock()) {
        sg::this_actor::sleep_until(r.arrival_s);
      }
      ++sent;
      dispatch(r, instances, shared, router);
    }
  }
  for (auto& inst : instances) {
    if (inst->role == Instance::Role::decode) continue;  // closed when the prefill pool is done
    std::unique_lock<sg::Mutex> lock(*inst->mutex);
    inst->arrivals_done = true;
    inst->arrivals->notify_all();
  }
  shared.frontend_finished = true;
}

/// Activities completed in this process so far (all engines): one signal handler, connected once.
std::int64_t completed_activities() {
  static std::int64_t count = 0;
  static std::once_flag connected;
  std::call_once(connected, [] { sg::Activity::on_completion_cb([](const sg::Activity&) { ++count; }); });
  return count;
}

}  // namespace

RunResult run_simulation(const Scenario& sc, const RunOptions& options) {
  xbt_log_control_set("root.thresh:warning");
  for (const auto& l : options.simgrid_log) xbt_log_control_set(l.c_str());
  // Context settings (contexts/factory, contexts/stack-size, ...) take effect only when the engine
  // starts, so they go on its command line; set afterwards, a factory change broke the run.
  std::vector<std::string> args{"moesim"};
#if MOESIM_ADDRESS_SANITIZER
  // AddressSanitizer cannot follow the stack switches of the raw, boost and ucontext factories of a
  // libsimgrid built without it (an exception leaving an actor gave false stack-buffer-overflow
  // reports): one thread per actor. A --cfg=contexts/factory:... comes after, and wins.
  args.emplace_back("--cfg=contexts/factory:thread");
#endif
  std::vector<std::string> later;
  for (const auto& c : options.simgrid_cfg) {
    if (c.rfind("contexts/", 0) == 0) args.push_back("--cfg=" + c);
    else later.push_back(c);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(args.size());
  sg::Engine e(&argc, argv.data());
  configure_simgrid(later);
  const Platform platform = build_platform(sc);

  const ParallelLayout layout = make_layout(sc);
  const WorkloadInputs empty_inputs;
  const WorkloadInputs& inputs = sc.inputs ? *sc.inputs : empty_inputs;
  const std::vector<Request> arrivals =
      inputs.trace.empty() ? generate_requests(sc.workload, sc.seed, sc.serving.max_model_len, inputs.corpus.names,
                                               inputs.dataset.empty() ? nullptr : &inputs.dataset)
                           : requests_from_trace(sc.workload, sc.seed, inputs.trace, inputs.trace_hash_block_tokens, inputs.corpus.names);
  const auto& model = sc.model.spec;
  const bool expert_parallel = layout.mode == ParallelMode::ep;
  RunResult result{RunRecorder(arrivals, sc.outputs.timeseries_interval_s),
                   std::make_unique<ExpertProfiler>(model, expert_parallel ? layout.gpus_per_instance : 1, expert_parallel, sc.outputs), nullptr,
                   0.0, {}, {}, {}, {}};
  if (sc.outputs.trace) result.trace = std::make_unique<TraceRecorder>(sc.outputs.trace_max_steps);
  if (!options.stream_steps_to.empty()) result.recorder.stream_steps_csv(options.stream_steps_to);
  // Requests the server refuses at arrival are recorded with their reason and never reach an engine.
  std::vector<Request> requests;
  requests.reserve(arrivals.size());
  for (const auto& r : arrivals) {
    if (auto reason = admission_problem(r, sc.serving.max_model_len)) result.recorder.on_rejected(r.id, *reason);
    else requests.push_back(r);
  }
  const auto& gpu = sc.cluster.gpu.spec;
  const PowerModel power(gpu, effective_cap_w(sc));
  const RcThermal thermal(ThermalParams{gpu.thermal_r_die_sink_k_per_w, gpu.thermal_r_sink_inlet_k_per_w,
                                        gpu.thermal_c_die_j_per_k, gpu.thermal_c_sink_j_per_k});
  const RcThermal::State initial =
      sc.thermal.initial == ThermalStart::cold           ? RcThermal::State{}
      : sc.thermal.initial == ThermalStart::steady_power ? thermal.steady(sc.thermal.initial_power_w)
                                                         : thermal.steady(power.power_w({}, gpu.clock_max_mhz, sc.thermal.inlet_c));
  for (int g = 0; g < sc.cluster.num_gpus(); ++g)
    result.gpus.emplace_back(power, thermal, sc.thermal.inlet_c, initial, sc.outputs.gpus_csv_interval_s);
  SharedState shared;
  shared.recorder = &result.recorder;
  shared.profiler = result.profiler.get();

  SchedulerParams sp;
  sp.max_num_batched_tokens = sc.serving.max_num_batched_tokens;
  sp.max_num_seqs = sc.serving.max_num_seqs;
  sp.max_model_len = sc.serving.max_model_len;
  sp.chunked_prefill = sc.serving.chunked_prefill;
  sp.block_size = sc.serving.block_size;
  sp.prefix_caching = sc.serving.prefix_caching;
  sp.kv_capacity_blocks = layout.kv_capacity_tokens / sc.serving.block_size;
  sp.attention_ranks = layout.attention_ranks;

  const int n = layout.gpus_per_instance;
  std::vector<std::unique_ptr<Instance>> instances;
  for (int i = 0; i < layout.instances; ++i) {
    const RouterContext rc = router_context(model, sc.workload.routing, sc.seed ^ (0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(i + 1)),
                                            static_cast<int>(inputs.corpus.names.size()));
    auto router = token_routers().get(sc.workload.routing.model)(rc);
    auto inst = std::make_unique<Instance>(i, sp, StepPlanner(sc, layout, std::move(router), i * n, i));
    inst->planner.set_observer(result.profiler.get());
    for (int g = 0; g < n; ++g) {
      inst->hosts.push_back(platform.gpus[static_cast<std::size_t>(i * n + g)]);
      inst->rdma_ports.push_back(platform.rdma_ports[static_cast<std::size_t>(i * n + g)]);
    }
    const std::string& granularity = sc.network.flow_granularity;
    inst->port_granularity = granularity == "port" || (granularity == "auto" && n > 8);
    for (int node = (i * n) / sc.cluster.gpus_per_node; node <= (i * n + n - 1) / sc.cluster.gpus_per_node; ++node)
      inst->nvswitches.push_back(platform.nvswitches[static_cast<std::size_t>(node)]);
    inst->fabric_switch = platform.fabric_switch;
    if (result.trace) {
      std::vector<std::string> names;
      for (auto* h : inst->hosts) names.push_back(h->get_name());
      result.trace->name_instance(i, names);
      inst->trace = result.trace.get();
    }
    inst->fabric = FabricView{sc.cluster.gpus_per_node, i * n, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
    inst->fidelity = sc.network.fidelity;
    // Only flow fidelity at pair granularity runs collectives from their per-pair bytes.
    inst->planner.set_pair_traffic(inst->fidelity == NetworkFidelity::flow && !inst->port_granularity);
    inst->planner_migration_mode = sc.routing.migration;
    if (sc.parallel.prefill_instances > 0) {
      inst->role = i < sc.parallel.prefill_instances ? Instance::Role::prefill : Instance::Role::decode;
      inst->scheduler.set_prefill_only(inst->role == Instance::Role::prefill);
      if (inst->role == Instance::Role::prefill) shared.prefill_engines_running += 1;
    }
    inst->gpus = &result.gpus;
    inst->first_gpu = i * n;
    inst->host_speed = platform.host_speed_flops;
    inst->zero_flops.assign(static_cast<std::size_t>(n), 0.0);
    if (inst->fidelity == NetworkFidelity::analytic) inst->zero_bytes.assign(static_cast<std::size_t>(n) * n, 0.0);
    if (inst->role == Instance::Role::decode) shared.decode_pool.push_back(inst.get());
    instances.push_back(std::move(inst));
  }
  shared.kv_bytes_per_token = model.kv_bytes_per_token();

  for (auto& inst_ptr : instances) {
    Instance& inst = *inst_ptr;
    // The engine runs each step itself: as one parallel task (analytic fidelity,
    // run_step_analytic_instance) or collective by collective on the links (flow fidelity,
    // run_step_flow_instance).
    sg::Actor::create("engine-" + std::to_string(inst.index), inst.hosts[0], guarded(shared, [&inst, &shared] { engine(inst, shared); }));
  }
  const int max_concurrency =
      arrival_processes().get(sc.workload.arrival.process).closed_loop ? sc.workload.arrival.max_concurrency : 0;
  const std::string dp_router = sc.parallel.dp_router;
  const bool turns_from_parent_only = sc.workload.trace.sessions == "think_time";
  sg::Actor::create("frontend", platform.gpus[0],
                    guarded(shared, [&requests, &instances, &shared, max_concurrency, dp_router, turns_from_parent_only] {
                      frontend(requests, instances, shared, max_concurrency, dp_router, turns_from_parent_only);
                    }));

  if (sc.thermal.recirculation_k_per_kw > 0) {
    sg::Actor::create("recirculation", platform.gpus[0], guarded(shared, [&result, &sc] {
      recirculation(result.gpus, sc.cluster.gpus_per_node, sc.thermal);
    }))->daemonize();
  }

  bool deadlock = false;
  sg::Engine::on_deadlock_cb([&deadlock] { deadlock = true; });
  const std::int64_t activities_before = completed_activities();
  const auto wall0 = std::chrono::steady_clock::now();
  e.run();
  result.engine_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  result.simgrid_activities = completed_activities() - activities_before;
  result.end_time_s = sg::Engine::get_clock();

  if (!shared.error.empty()) throw std::runtime_error("simulation failed: " + shared.error);
  for (auto& g : result.gpus) g.advance_to(result.end_time_s);
  for (const auto& inst : instances) result.profiler->on_run_end(inst->planner);
  if (result.trace) {
    // Power and temperature counters from the GPU samples.
    for (std::size_t g = 0; g < result.gpus.size(); ++g) {
      const auto& st = result.gpus[g];
      const std::vector<double> mean = interval_mean_power_w(st.samples(), st.time_s(), st.energy_j());
      for (std::size_t i = 0; i < st.samples().size(); ++i)
        result.trace->gpu_counter(static_cast<int>(g) / n, static_cast<int>(g) % n, st.samples()[i].time_s, mean[i],
                                  st.samples()[i].temp_die_c);
    }
  }
  for (const auto& inst : instances) {
    const auto& st = inst->scheduler.stats();
    result.serving.preemptions += st.preemptions;
    result.serving.recomputed_tokens += st.recomputed_tokens;
    result.serving.recompute_emissions += st.recompute_emissions;
    result.serving.prefix_hit_tokens += st.prefix_hit_tokens;
    result.serving.rebalances += inst->planner.rebalances();
    const PolicyTotals& p = inst->policy;
    PolicyTotals& t = result.policy;
    t.assignments += p.assignments;
    t.computed += p.computed;
    t.dropped += p.dropped;
    t.rerouted += p.rerouted;
    t.changed += p.changed;
    t.migrations += p.migrations;
    t.migration_bytes += p.migration_bytes;
    t.migration_seconds += p.migration_seconds;
    t.migration_energy_j += p.migration_energy_j;
    t.migration_analytic_seconds += p.migration_analytic_seconds;
    t.layer_gpu_mom_before.resize(p.layer_gpu_mom_before.size(), 0.0);
    t.layer_gpu_mom_after.resize(p.layer_gpu_mom_after.size(), 0.0);
    for (std::size_t l = 0; l < p.layer_gpu_mom_after.size(); ++l) {
      t.layer_gpu_mom_before[l] += p.layer_gpu_mom_before[l];
      t.layer_gpu_mom_after[l] += p.layer_gpu_mom_after[l];
    }
    t.ep_steps += p.ep_steps;
    t.policy_wall_s += inst->planner.policy_wall_s();
  }
  result.serving.kv_blocks_per_rank = sp.kv_capacity_blocks;
  result.serving.kv_transfers = shared.kv_transfers;
  result.serving.kv_transfer_bytes = shared.kv_transfer_bytes;
  result.serving.kv_transfer_seconds = shared.kv_transfer_seconds;
  result.serving.block_size = sp.block_size;
  for (const auto& inst : instances) {
    result.energy.sync_wait_j += inst->sync_wait_energy_j;
    result.energy.imbalance_j += inst->imbalance_energy_j;
    result.energy.idle_between_steps_j += inst->idle_energy_j;
    double tail = -inst->step_energy_accounted_j;
    for (std::size_t r = 0; r < inst->hosts.size(); ++r) tail += result.gpus[static_cast<std::size_t>(inst->first_gpu) + r].energy_j();
    result.energy.idle_after_last_step_j += tail;
  }
  if (deadlock || !shared.frontend_finished) throw std::runtime_error("simulation deadlocked before every actor finished");
  for (const auto& inst : instances)
    if (!inst->engine_finished)
      throw std::runtime_error("instance " + std::to_string(inst->index) + " did not finish (deadlock)");
  return result;
}

}  // namespace moesim
