#include "sim/cli/kernels.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <ostream>

#include "models/routing/router.hpp"
#include "sim/config/scenario.hpp"
#include "sim/exec/layout.hpp"
#include "sim/exec/step_plan.hpp"
#include "sim/metrics/report.hpp"

namespace moesim {
namespace {

struct KernelRow {
  int layer = 0;
  std::string block;  ///< dense | moe (the layer's FFN), or lm_head
  std::string phase;
  double seconds = 0, compute_s = 0, memory_s = 0, link_bytes = 0;
  std::string bound, detail;
};

/// The flags as --set overrides, in a fixed order (a --set given explicitly comes after and wins).
std::vector<std::string> flag_overrides(const KernelsOptions& o, const Catalog& catalog) {
  std::vector<std::string> sets;
  if (!o.model.empty()) sets.push_back("model=" + o.model);
  if (!o.gpu.empty()) sets.push_back("cluster.gpu=" + o.gpu);
  if (!o.mode.empty()) sets.push_back("parallel.mode=" + o.mode);
  if (o.tp > 0) sets.push_back("parallel.tp=" + std::to_string(o.tp));
  if (o.ep > 0) sets.push_back("parallel.ep=" + std::to_string(o.ep));
  if (!o.attention.empty()) sets.push_back("parallel.attention=" + o.attention);
  if (!o.ep_mode.empty()) sets.push_back("network.ep_mode=" + o.ep_mode);
  if (!o.routing.empty()) sets.push_back("workload.routing.model=" + o.routing);
  if (!o.fidelity.empty()) sets.push_back("network.fidelity=" + o.fidelity);
  int nodes = o.nodes, per_node = o.gpus_per_node;
  if (o.scenario.empty() && nodes == 0 && per_node == 0) {
    // The cluster is the instance: tp or ep GPUs, in nodes of up to 8.
    const int gpus = std::max(1, o.mode == "ep" ? o.ep : o.tp);
    per_node = std::min(gpus, 8);
    nodes = (gpus + per_node - 1) / per_node;
  }
  if (nodes > 0) sets.push_back("cluster.nodes=" + std::to_string(nodes));
  if (per_node > 0) sets.push_back("cluster.gpus_per_node=" + std::to_string(per_node));
  if (o.scenario.empty() && !o.model.empty()) {
    // Room for the step's sequences, within the model's context.
    std::vector<Diagnostic> sink;
    if (const auto m = catalog.load<ModelSpec>(o.model, sink)) {
      const int per_seq = o.prefill ? std::max(1, o.batch_tokens / std::max(1, o.seqs)) + 1 : 1;
      const long want = std::max(2L, static_cast<long>(o.context) + per_seq + 1);
      sets.push_back("serving.max_model_len=" + std::to_string(std::min<long>(want, m->max_position_embeddings)));
    }
  }
  return sets;
}

Batch make_batch(const KernelsOptions& o, const ParallelLayout& lay, int domains) {
  Batch b;
  const int ranks = std::max(1, lay.attention_ranks);
  auto add = [&](int id, int tokens) {
    BatchItem item;
    item.request_id = id;
    item.attention_rank = id % ranks;
    item.num_tokens = tokens;
    item.domain = domains > 0 ? id % domains : -1;
    item.context_before = o.context;
    item.is_prefill = o.prefill;
    item.emits_token = true;
    b.items.push_back(item);
  };
  if (o.prefill) {
    const int seqs = std::max(1, std::min(o.seqs, o.batch_tokens));
    for (int s = 0; s < seqs; ++s) add(s, o.batch_tokens / seqs + (s < o.batch_tokens % seqs ? 1 : 0));
    b.prefill_tokens = o.batch_tokens;
  } else {
    for (int s = 0; s < o.batch_tokens; ++s) add(s, 1);
    b.decode_tokens = o.batch_tokens;
  }
  return b;
}

std::string phase_name(const Phase& ph) {
  if (ph.overlapped()) return std::string(to_string(ph.collective.kind)) + " || " + to_string(ph.overlap_kind);
  if (ph.kind == PhaseKind::comm) return to_string(ph.collective.kind);
  return to_string(ph.kind);
}

/// The port that bounds a collective, and its bytes.
std::string bottleneck_port(const Collective& c, const FabricView& fabric) {
  std::vector<double> ports;
  (void)port_load(c, fabric, &ports);
  static const char* kNames[] = {"NVLink out", "NVLink in", "NIC out", "NIC in"};
  const double bw[] = {fabric.intra.effective_bytes_per_s(), fabric.intra.effective_bytes_per_s(), fabric.inter.effective_bytes_per_s(),
                       fabric.inter.effective_bytes_per_s()};
  std::size_t best = 0;
  double worst = -1;
  for (std::size_t i = 0; i < ports.size(); ++i)
    if (ports[i] / bw[i % 4] > worst) {
      worst = ports[i] / bw[i % 4];
      best = i;
    }
  if (ports.empty()) return "";
  return fmt::format("{}, {} of GPU {} {:.2f} MB", c.algorithm, kNames[best % 4], best / 4, ports[best] / 1e6);
}

std::vector<KernelRow> rows_of(const StepPlan& plan, const ModelSpec& model, const FabricView& fabric) {
  std::vector<KernelRow> rows;
  int attentions = 0;  // one per layer, or one per micro-batch and layer (dual-batch overlap)
  for (const Phase& ph : plan.phases) {
    if (ph.kind == PhaseKind::attention || (ph.overlapped() && ph.overlap_kind == PhaseKind::attention)) ++attentions;
    const int layer = std::max(0, attentions - 1) / plan.micro_batches;
    KernelRow r;
    r.layer = layer;
    r.block = ph.kind == PhaseKind::lm_head ? "lm_head" : r.layer < model.num_dense_layers ? "dense" : "moe";
    r.phase = phase_name(ph);
    if (ph.kind == PhaseKind::comm) {
      const double collective = analytic_collective_seconds(ph.collective, fabric);
      r.seconds = phase_seconds(ph, collective);
      r.link_bytes = ph.collective.link_bytes();
      r.bound = r.seconds > collective ? "compute beside network" : "network";
      r.detail = bottleneck_port(ph.collective, fabric);
      if (ph.overlapped()) {
        const auto slowest = static_cast<std::size_t>(std::max_element(ph.compute_s.begin(), ph.compute_s.end()) - ph.compute_s.begin());
        r.compute_s = ph.compute_util[slowest] * ph.compute_s[slowest];
        r.memory_s = ph.memory_util[slowest] * ph.compute_s[slowest];
      }
      if (ph.overlapped())
        r.detail += fmt::format("; collective {:.1f} us beside {:.1f} us of {} on the slowest GPU", collective * 1e6,
                                ph.slowest_compute_s() * 1e6, to_string(ph.overlap_kind));
    } else {
      const auto slowest = static_cast<std::size_t>(std::max_element(ph.compute_s.begin(), ph.compute_s.end()) - ph.compute_s.begin());
      r.seconds = ph.compute_s[slowest];
      r.compute_s = ph.compute_util[slowest] * r.seconds;
      r.memory_s = ph.memory_util[slowest] * r.seconds;
      // The larger of the two busy times, unless fixed per-kernel costs take most of the time.
      r.bound = r.seconds <= 0                                     ? "-"
                : std::max(r.compute_s, r.memory_s) < 0.5 * r.seconds ? "overhead"
                : r.compute_s >= r.memory_s                        ? "compute"
                                                                   : "memory";
      const double mean = std::accumulate(ph.compute_s.begin(), ph.compute_s.end(), 0.0) / static_cast<double>(ph.compute_s.size());
      if (ph.compute_s.size() > 1 && mean > 0) r.detail = fmt::format("slowest GPU {}, max/mean {:.3f}", slowest, r.seconds / mean);
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

/// The kernels of one layer of each kind, on the GPU whose phase is slowest (per micro-batch).
void print_kernels(std::ostream& out, const std::vector<KernelLogEntry>& log, int micro_batches) {
  out << fmt::format("\nkernels of one layer of each kind, on the GPU whose phase is slowest:\n{:<12} {:<44} {:>8} {:>12} {:>12} {:>10} {}\n",
                     "phase", "kernel", "launches", "GFLOP", "HBM MB", "time_us", "bound");
  for (int mb = 0; mb < micro_batches; ++mb) {
    if (micro_batches > 1) out << fmt::format("micro-batch {}:\n", mb + 1);
    for (PhaseKind kind : {PhaseKind::attention, PhaseKind::dense_ffn, PhaseKind::moe, PhaseKind::lm_head}) {
      // The first MoE layer only; the rank whose entries of this phase add up to the most time.
      int first_layer = -1;
      for (const auto& e : log)
        if (e.phase == kind && e.micro_batch == mb && (first_layer < 0 || (e.moe_layer >= 0 && e.moe_layer < first_layer))) first_layer = e.moe_layer;
      std::vector<double> per_rank;
      for (const auto& e : log) {
        if (e.phase != kind || e.micro_batch != mb || e.moe_layer != first_layer) continue;
        if (per_rank.size() <= static_cast<std::size_t>(e.rank)) per_rank.resize(static_cast<std::size_t>(e.rank) + 1, 0.0);
        per_rank[static_cast<std::size_t>(e.rank)] += e.time.seconds;
      }
      if (per_rank.empty()) continue;
      const int slowest = static_cast<int>(std::max_element(per_rank.begin(), per_rank.end()) - per_rank.begin());
      for (const auto& e : log) {
        if (e.phase != kind || e.micro_batch != mb || e.moe_layer != first_layer || e.rank != slowest) continue;
        const double busy = std::max(e.time.compute_busy_s, e.time.memory_busy_s);
        const char* bound = busy < 0.5 * e.time.seconds ? "overhead" : e.time.compute_busy_s >= e.time.memory_busy_s ? "compute" : "memory";
        const std::string phase = kind == PhaseKind::moe ? fmt::format("moe L{}", first_layer) : to_string(kind);
        out << fmt::format("{:<12} {:<44} {:>8} {:>12.3f} {:>12.3f} {:>10.2f} {} (GPU {})\n", phase, e.name, e.work.launches,
                           e.work.flops / 1e9, e.work.bytes / 1e6, e.time.seconds * 1e6, bound, slowest);
      }
    }
  }
}

std::string csv_text(const std::vector<KernelRow>& rows) {
  std::string s = "layer,block,phase,time_us,bound,compute_us,memory_us,link_bytes,detail\n";
  for (const auto& r : rows)
    s += fmt::format("{},{},{},{:.3f},{},{:.3f},{:.3f},{:.0f},\"{}\"\n", r.layer, r.block, r.phase, r.seconds * 1e6, r.bound,
                     r.compute_s * 1e6, r.memory_s * 1e6, r.link_bytes, r.detail);
  return s;
}

}  // namespace

int run_kernels_command(const KernelsOptions& o, const Catalog& catalog, std::ostream& out, std::ostream& err) {
  if (o.scenario.empty() && (o.model.empty() || o.gpu.empty())) {
    err << "error: moesim kernels needs a scenario file, or --model and --gpu\n";
    return 2;
  }
  if (o.batch_tokens < 1) {
    err << "error: --batch-tokens: must be >= 1 (got " << o.batch_tokens << ")\n";
    return 2;
  }
  if (o.context < 0) {
    err << "error: --context: must be >= 0 (got " << o.context << ")\n";
    return 2;
  }
  std::vector<std::string> sets = flag_overrides(o, catalog);
  sets.insert(sets.end(), o.sets.begin(), o.sets.end());
  Scenario sc;
  try {
    if (!o.scenario.empty()) {
      sc = load_scenario(o.scenario, sets, catalog);
    } else {
      // A minimal scenario the flags complete (their errors name the flag as a --set).
      const auto dir = std::filesystem::temp_directory_path() / ("moesim-kernels-" + std::to_string(::getpid()));
      std::filesystem::create_directories(dir);
      const auto file = dir / "kernels.yaml";
      {
        std::ofstream f(file);
        f << "model: mixtral-8x7b\ncluster: {gpu: h100-sxm}\nworkload: {requests: 1}\n";
      }
      try {
        sc = load_scenario(file, sets, catalog);
      } catch (...) {
        std::filesystem::remove_all(dir);
        throw;
      }
      std::filesystem::remove_all(dir);
    }
  } catch (const ConfigError& e) {
    for (const auto& d : e.diagnostics()) err << "error: " << d.format() << "\n";
    err << fmt::format("{} error{}; nothing was run\n", e.diagnostics().size(), e.diagnostics().size() == 1 ? "" : "s");
    return 2;
  }
  const ParallelLayout lay = make_layout(sc);
  const ModelSpec& model = sc.model.spec;
  const int domains = sc.inputs ? static_cast<int>(sc.inputs->corpus.names.size()) : 0;
  auto router = token_routers().get(sc.workload.routing.model)(router_context(model, sc.workload.routing, sc.seed, domains));
  StepPlanner planner(sc, lay, std::move(router));
  const Batch batch = make_batch(o, lay, planner.router().uses_domains() ? domains : 0);
  std::vector<KernelLogEntry> kernel_log;
  if (o.kernels) planner.set_kernel_log(&kernel_log);
  const StepPlan plan = planner.plan(batch);
  planner.set_kernel_log(nullptr);
  const FabricView fabric{sc.cluster.gpus_per_node, 0, sc.cluster.intra_node.spec, sc.cluster.inter_node.spec};
  const std::vector<KernelRow> rows = rows_of(plan, model, fabric);
  const StepTimes t = analytic_step_times(plan, fabric);

  const std::string mode = lay.mode == ParallelMode::tp ? "tp " + std::to_string(lay.gpus_per_instance)
                                                        : "ep " + std::to_string(lay.gpus_per_instance) + ", attention " +
                                                              (lay.attention == EpAttention::dp ? "dp" : "tp");
  out << fmt::format("moesim kernels: {} on {} x {} ({} x {} per node) | {} | {} step: {} tokens, {} sequences, context {}\n",
                     model.name, lay.gpus_per_instance, sc.cluster.gpu.spec.name, sc.cluster.nodes, sc.cluster.gpus_per_node, mode,
                     o.prefill ? "prefill" : "decode", batch.total_tokens(), batch.items.size(), o.context);
  out << fmt::format("  network: {} intra-node, {} inter-node, DeepEP {} kernels; routing {}\n", sc.cluster.intra_node.spec.name,
                     sc.cluster.inter_node.spec.name, to_string(sc.network.ep_mode), sc.workload.routing.model);
  if (plan.micro_batches > 1)
    out << "  dual-batch overlap: the rows are the merged timeline of two micro-batches (\"x || y\": collective x with compute y "
           "beside it); layer numbers follow the attention phases\n";
  out << fmt::format("{:>5} {:<8} {:<15} {:>12} {:<9} {:>12} {:>12} {:>12}  {}\n", "layer", "block", "phase", "time_us", "bound",
                     "compute_us", "memory_us", "link_MB", "detail");
  for (const auto& r : rows)
    out << fmt::format("{:>5} {:<8} {:<15} {:>12.2f} {:<9} {:>12.2f} {:>12.2f} {:>12.3f}  {}\n", r.layer, r.block, r.phase,
                       r.seconds * 1e6, r.bound, r.compute_s * 1e6, r.memory_s * 1e6, r.link_bytes / 1e6, r.detail);
  out << fmt::format("step total {:.3f} ms: attention {:.3f}, dense_ffn {:.3f}, moe {:.3f}, lm_head {:.3f}, comm {:.3f} ms "
                     "(each compute segment as its slowest GPU)\n",
                     t.total() * 1e3, t.attention * 1e3, t.dense * 1e3, t.moe * 1e3, t.lm_head * 1e3, t.comm * 1e3);
  if (o.kernels) print_kernels(out, kernel_log, plan.micro_batches);
  if (!o.csv.empty()) {
    try {
      write_file_atomically(o.csv, csv_text(rows));
    } catch (const std::exception& e) {
      err << "error: " << e.what() << "\n";
      return 3;
    }
    out << "table: " << o.csv << "\n";
  }
  return 0;
}

}  // namespace moesim
