// moesim: command-line entry point. The only place that turns errors into messages and exit codes.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <unistd.h>

#include "models/common/input_file.hpp"
#include "models/routing/eplb.hpp"
#include "models/routing/router.hpp"
#include "models/workload/dataset_generator.hpp"
#include "sim/actors/simulation.hpp"
#include "sim/cli/kernels.hpp"
#include "sim/cli/trace_info.hpp"
#include "sim/config/hf_import.hpp"
#include "sim/config/scenario.hpp"
#include "sim/metrics/report.hpp"
#include "sim/report/report.hpp"
#include "sim/sweep/sweep.hpp"

namespace {

using namespace moesim;

constexpr int kExitOk = 0;
constexpr int kExitConfig = 2;
constexpr int kExitRun = 3;

/// Takes SimGrid's --cfg=... and --log=... arguments out of argv; CLI11 sees the rest.
void split_simgrid_args(int argc, char** argv, std::vector<std::string>& rest, RunOptions& sg) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--cfg=", 0) == 0) sg.simgrid_cfg.push_back(a.substr(6));
    else if (a.rfind("--log=", 0) == 0) sg.simgrid_log.push_back(a.substr(6));
    else rest.push_back(a);
  }
}

void print_config_error(const ConfigError& e) {
  // At most 50 lines: what follows the first errors of a bad input is rarely news.
  constexpr std::size_t kShown = 50;
  const auto& ds = e.diagnostics();
  for (std::size_t i = 0; i < ds.size() && i < kShown; ++i) std::cerr << "error: " << ds[i].format() << "\n";
  if (ds.size() > kShown) std::cerr << fmt::format("... {} more errors not shown\n", ds.size() - kShown);
  std::cerr << fmt::format("{} error{}; nothing was run\n", e.diagnostics().size(), e.diagnostics().size() == 1 ? "" : "s");
}

int cmd_list(const std::string& kind, const Catalog& catalog) {
  auto print_cards = [&](auto tag) {
    using S = decltype(tag);
    for (const auto& name : catalog.names<S>()) {
      std::vector<Diagnostic> sink;
      auto spec = catalog.load<S>(name, sink);
      std::cout << fmt::format("{:<20} {}\n", name, spec ? spec->display_name : "(invalid card: " + sink.front().format() + ")");
    }
  };
  auto print_registry = [](const auto& registry) {
    for (const auto& name : registry.names()) std::cout << fmt::format("{:<20} {}\n", name, registry.doc(name));
  };
  if (kind == "models") print_cards(ModelSpec{});
  else if (kind == "gpus") print_cards(GpuSpec{});
  else if (kind == "interconnects") print_cards(InterconnectSpec{});
  else if (kind == "routers") print_registry(token_routers());
  else if (kind == "policies") print_registry(routing_policies());
  else if (kind == "arrivals") print_registry(arrival_processes());
  else if (kind == "lengths") print_registry(length_distributions());
  else {
    std::cerr << "error: unknown list \"" << kind << "\"; valid: models, gpus, interconnects, routers, policies, arrivals, lengths\n";
    return kExitConfig;
  }
  return kExitOk;
}

int cmd_validate(const std::vector<std::string>& files, const std::vector<std::string>& sets, const Catalog& catalog) {
  int failed = 0;
  for (const auto& f : files) {
    try {
      const Scenario sc = load_scenario(f, sets, catalog);
      std::cout << "ok: " << f << "\n";
    } catch (const ConfigError& e) {
      for (const auto& d : e.diagnostics()) std::cerr << "error: " << d.format() << "\n";
      ++failed;
    }
  }
  if (failed > 0) {
    std::cerr << fmt::format("{} of {} scenario{} invalid\n", failed, files.size(), files.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  return kExitOk;
}

int cmd_import_hf(const std::string& config, const std::string& quant, const HfImportOptions& opt, const std::string& out_file,
                  bool force, const Catalog& catalog) {
  HfImport imported;
  try {
    imported = import_hf_config(config, quant, opt);
  } catch (const InputError& e) {
    for (const auto& i : e.issues()) std::cerr << "error: " << InputError::format(i) << "\n";
    return kExitConfig;
  }
  const std::string text = hf_card_yaml(imported);
  // The card must load as any catalog card does (schema, checks, a source for every number).
  std::error_code ec;
  const auto staging = std::filesystem::temp_directory_path() / fmt::format("moesim-import-{}", ::getpid());
  const auto staged = staging / CardTraits<ModelSpec>::folder / (imported.spec.name + ".yaml");
  std::filesystem::create_directories(staged.parent_path(), ec);
  std::vector<Diagnostic> problems;
  if (!ec) {
    write_file_atomically(staged, text);
    (void)Catalog(staging).load<ModelSpec>(imported.spec.name, problems);
  }
  std::filesystem::remove_all(staging, ec);
  if (!problems.empty()) {
    for (const auto& d : problems) std::cerr << "error: the imported card does not validate: " << d.format() << "\n";
    return kExitConfig;
  }
  const std::filesystem::path dest = out_file.empty() ? catalog.folder<ModelSpec>() / (imported.spec.name + ".yaml")
                                                      : std::filesystem::path(out_file);
  if (std::filesystem::exists(dest) && !force) {
    std::cerr << "error: " << dest.string() << " exists; pass --force to replace it, or --name / --out\n";
    return kExitConfig;
  }
  try {
    write_file_atomically(dest, text);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRun;
  }
  const auto& m = imported.spec;
  std::cout << fmt::format("moesim: wrote {} ({} layers, {} experts top-{}, {} attention; {:.4g} B parameters, {:.4g} B active)\n",
                           dest.string(), m.num_layers, m.num_experts, m.top_k, m.attention == AttentionKind::mla ? "MLA" : "GQA",
                           m.total_params_b, m.active_params_b);
  for (const auto& n : imported.notes) std::cout << "note: " << n << "\n";
  return kExitOk;
}

int cmd_describe() {
  std::cout << "Scenario fields (path, type, default, unit; constraint; doc). Catalog cards are described by\n"
               "their files under models/*/cards; a card field may be overridden as <field>.<card field>.\n\n";
  for (const auto& row : scenario_field_docs()) {
    std::cout << fmt::format("{:<34} {:<10} default {:<14} {}\n", row.path, row.type, row.default_value,
                             row.unit.empty() ? "" : "[" + row.unit + "]");
    if (!row.constraint.empty()) std::cout << fmt::format("    {}\n", row.constraint);
    if (!row.doc.empty()) std::cout << fmt::format("    {}\n", row.doc);
  }
  return kExitOk;
}

int cmd_gen_datasets(int count, int prompts, int output_tokens, std::uint64_t seed, const std::string& model_name,
                     const std::string& out_dir, const Catalog& catalog) {
  if (static_cast<std::int64_t>(count) * prompts > kMaxRequests) {
    std::cerr << fmt::format("error: --count x --prompts = {} x {} = {} prompts, more than the limit of {}\n", count, prompts,
                             static_cast<std::int64_t>(count) * prompts, kMaxRequests);
    return kExitConfig;
  }
  std::vector<Diagnostic> sink;
  const auto model = catalog.load<ModelSpec>(model_name, sink);
  if (!model) {
    for (const auto& d : sink) std::cerr << "error: " << d.format() << "\n";
    if (sink.empty()) std::cerr << "error: unknown model card \"" << model_name << "\"; see moesim list models\n";
    return kExitConfig;
  }
  DomainCorpus corpus;
  try {
    corpus = DomainCorpus::load(domain_corpus_path(catalog));
  } catch (const InputError& e) {
    for (const auto& i : e.issues()) std::cerr << "error: " << InputError::format(i) << "\n";
    return kExitConfig;
  }
  const auto datasets = generate_datasets(corpus, *model, count, prompts, output_tokens, seed);
  const std::filesystem::path dir(out_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::cerr << "error: cannot create " << dir.string() << ": " << ec.message() << "\n";
    return kExitRun;
  }
  std::string index = "index,file,strategy,predicted_imbalance,model,top_domain,top_domain_share\n";
  for (const auto& ds : datasets) {
    write_file_atomically(dir / ds.file_name(), ds.to_jsonl(corpus));
    const auto top = std::max_element(ds.domain_token_share.begin(), ds.domain_token_share.end()) - ds.domain_token_share.begin();
    index += fmt::format("{},{},{},{:.6f},{},{},{:.4f}\n", ds.index, ds.file_name(), ds.strategy, ds.score, model_name,
                         corpus.names[static_cast<std::size_t>(top)], ds.domain_token_share[static_cast<std::size_t>(top)]);
  }
  write_file_atomically(dir / "index.csv", index);
  std::cout << fmt::format("moesim: wrote {} datasets of {} prompts to {} (index.csv lists strategy and predicted imbalance)\n",
                           datasets.size(), prompts, dir.string());
  return kExitOk;
}

int cmd_sweep(const std::string& file, const std::vector<std::string>& sets, SweepOptions opt, bool list, bool merge,
              const std::string& shard, const Catalog& catalog) {
  SweepSpec spec;
  try {
    if (!shard.empty()) parse_shard(shard, opt);
    spec = load_sweep(file, sets, catalog);
  } catch (const ConfigError& e) {
    print_config_error(e);
    return kExitConfig;
  }
  if (list) {
    for (const auto& p : spec.points) {
      if (p.index % opt.shard_count != opt.shard_index - 1) continue;
      std::string line = fmt::format("{}", p.index);
      for (const auto& [k, v] : p.overrides) line += fmt::format(" {}={}", k, v);
      std::cout << line << "\n";
    }
    return kExitOk;
  }
  if (opt.out.empty()) opt.out = "results/" + std::filesystem::path(file).stem().string();
  try {
    if (merge) {
      const int n = write_sweep_csv(spec, opt.out);
      std::cout << fmt::format("moesim: merged {} of {} points into {}\n", n, spec.points.size(), (opt.out / "sweep.csv").string());
      return n == static_cast<int>(spec.points.size()) ? kExitOk : kExitRun;
    }
    const SweepOutcome outcome = run_sweep(spec, opt);
    if (outcome.interrupted != 0) return 128 + outcome.interrupted;
    const int failed = outcome.failed;
    std::cout << fmt::format("moesim: sweep of {} points in {} ({} failed); table: {}\n", spec.points.size(), opt.out.string(),
                             failed, (opt.out / (opt.shard_count > 1 ? fmt::format("sweep.shard-{}-of-{}.csv", opt.shard_index,
                                                                                    opt.shard_count)
                                                                      : std::string("sweep.csv")))
                                         .string());
    return failed == 0 ? kExitOk : kExitRun;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRun;
  }
}

int cmd_eplb(const std::string& weights_file, int replicas, int groups, int nodes, int gpus) {
  if (auto problem = input_file_problem(weights_file, kMaxScenarioFileBytes, "weights files"); !problem.empty()) {
    std::cerr << "error: " << weights_file << ": " << problem << "\n";
    return kExitConfig;
  }
  std::ifstream in;
  try {
    in = open_regular_file(weights_file, "weights file");
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitConfig;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  std::vector<std::vector<double>> weight;
  bool ok = j.is_array() && !j.empty();
  for (const auto& row : ok ? j : nlohmann::json::array()) {
    if (!row.is_array() || row.size() != j[0].size()) {
      ok = false;
      break;
    }
    std::vector<double> r;
    for (const auto& x : row) {
      if (!x.is_number() || x.get<double>() < 0) ok = false;
      else r.push_back(x.get<double>());
    }
    weight.push_back(std::move(r));
  }
  if (!ok) {
    std::cerr << "error: " << weights_file << ": expected a JSON list of layers, each a list of the same number of loads >= 0\n";
    return kExitConfig;
  }
  EplbResult r;
  try {
    r = rebalance_experts(weight, replicas, groups, nodes, gpus);
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << " (experts " << weight[0].size() << ", --replicas " << replicas << ", --groups " << groups
              << ", --nodes " << nodes << ", --gpus " << gpus << ")\n";
    return kExitConfig;
  }
  nlohmann::ordered_json out;
  out["phy2log"] = r.phy2log;
  out["log2phy"] = r.log2phy;
  out["logcnt"] = r.logcnt;
  out["gpu_max_over_mean_before"] = contiguous_gpu_max_over_mean(weight, gpus);
  out["gpu_max_over_mean_after"] = gpu_max_over_mean(weight, r.phy2log, gpus);
  std::cout << out.dump(2) << "\n";
  return kExitOk;
}

/// Host seconds of a run's parts (`run --timings`, the benchmarks of tests/perf).
struct RunTimings {
  double load_s = 0, simulate_s = 0, engine_s = 0, check_s = 0, outputs_s = 0, total_s = 0;
};

void print_run_table(const Scenario& sc, const nlohmann::ordered_json& s, const std::filesystem::path& out, const RunTimings& t,
                     double policy_wall_s) {
  const auto& run = s["run"];
  std::cout << fmt::format("moesim: {} | {} on {} x {} | mode {} (tp {}, ep {}, dp {}) | {} steps\n",
                           run["scenario"].get<std::string>(), run["model"].get<std::string>(), run["num_gpus"].get<int>(),
                           run["gpu"].get<std::string>(), run["mode"].get<std::string>(), run["tp"].get<int>(),
                           run["ep"].get<int>(), run["dp"].get<int>(), run["steps"].get<std::size_t>());
  std::cout << fmt::format("  KV cache: {} blocks of {} tokens per attention rank ({} tokens); {} preemptions\n",
                           s["serving"]["kv_blocks_per_attention_rank"].get<long>(), s["serving"]["kv_block_size"].get<int>(),
                           s["serving"]["kv_tokens_per_attention_rank"].get<long>(), s["serving"]["preemptions"].get<long>());
  std::cout << fmt::format("  {:<28}{:>12}\n", "requests completed", s["completed"].get<std::size_t>());
  for (const auto& [reason, count] : s["rejected_reasons"].items())
    std::cout << fmt::format("  {:<28}{:>12}  ({})\n", "requests rejected", count.get<std::size_t>(), reason);
  std::cout << fmt::format("  {:<28}{:>12.3f}\n", "duration (s)", s["duration"].get<double>());
  std::cout << fmt::format("  {:<28}{:>12}{:>12}{:>12}\n", "", "mean", "median", "p99");
  // A statistic with nothing to measure is null in summary.json and "n/a" here.
  const auto cell = [](const nlohmann::ordered_json& v) { return v.is_null() ? std::string("n/a") : fmt::format("{:.2f}", v.get<double>()); };
  for (const char* m : {"ttft", "tpot", "itl", "e2el"}) {
    const std::string k = m;
    std::cout << fmt::format("  {:<28}{:>12}{:>12}{:>12}\n", k + " (ms)", cell(s["mean_" + k + "_ms"]), cell(s["median_" + k + "_ms"]),
                             cell(s["p99_" + k + "_ms"]));
  }
  std::cout << fmt::format("  {:<28}{:>12.1f}\n", "output tokens/s", s["output_throughput"].get<double>());
  std::cout << fmt::format("  {:<28}{:>12.1f}\n", "total tokens/s", s["total_token_throughput"].get<double>());
  std::cout << fmt::format("  {:<28}{:>12.4f}\n", "joules per output token", s["energy"]["joules_per_output_token"].get<double>());
  std::cout << fmt::format("  {:<28}{:>12.1f}\n", "avg power per GPU (W)", s["energy"]["avg_power_w"].get<double>());
  std::cout << fmt::format("  {:<28}{:>12.1f}\n", "max GPU temperature (C)", s["energy"]["max_temp_c"].get<double>());
  if (sc.model.spec.num_moe_layers() > 0 && sc.model.spec.num_experts > 0)
    std::cout << fmt::format("  {:<28}{:>12.4f}\n", "expert load CV (per step)", s["imbalance"]["cv_per_step_mean"].get<double>());
  std::string files = "summary.json, requests.csv, steps.csv, timeseries.csv, gpus.csv, experts.csv";
  const bool routes = sc.model.spec.num_moe_layers() > 0 && sc.model.spec.num_experts > 0;
  if (sc.outputs.gate_logs && routes) files += ", gate_logs/";
  if (sc.outputs.expert_profiler && routes) files += ", moe_expert_tracking/";
  if (sc.outputs.trace) files += ", trace.json";
  std::cout << fmt::format("  outputs: {} ({}, config.resolved.yaml)\n", out.string(), files);
  std::cout << fmt::format("  wall time: {:.3f} s (load {:.3f}, simulate {:.3f}, check {:.3f}, write {:.3f}; routing policy {:.3f})\n",
                           t.total_s, t.load_s, t.simulate_s, t.check_s, t.outputs_s, policy_wall_s);
}

void print_timings(const RunTimings& t, const RunResult& r) {
  std::int64_t tokens = 0;
  for (const auto& q : r.recorder.requests()) tokens += q.tokens_emitted;
  nlohmann::ordered_json j;
  j["total_s"] = t.total_s;
  j["load_s"] = t.load_s;
  j["simulate_s"] = t.simulate_s;
  j["engine_s"] = t.engine_s;
  j["check_s"] = t.check_s;
  j["outputs_s"] = t.outputs_s;
  j["policy_s"] = r.policy.policy_wall_s;
  j["simulated_s"] = r.end_time_s;
  j["steps"] = r.recorder.num_steps();
  j["output_tokens"] = tokens;
  j["simgrid_activities"] = r.simgrid_activities;
  std::cout << "timings: " << j.dump() << "\n";
}

int cmd_run(const std::string& file, const std::vector<std::string>& sets, std::string out, bool quiet, bool timings,
            const RunOptions& opts, const Catalog& catalog) {
  using clock = std::chrono::steady_clock;
  const auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  const auto t0 = clock::now();
  RunTimings t;
  Scenario sc;
  try {
    sc = load_scenario(file, sets, catalog);
  } catch (const ConfigError& e) {
    print_config_error(e);
    return kExitConfig;
  }
  if (out.empty()) out = "results/" + sc.name;
  // The output folder is locked and staged before anything runs: a folder that cannot be made, or
  // that another run is writing, fails now; the outputs replace the previous result only whole.
  std::unique_ptr<StagedRunFolder> folder;
  try {
    folder = std::make_unique<StagedRunFolder>(out);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\nnothing was run\n";
    return kExitRun;
  }
  t.load_s = seconds_since(t0);
  try {
    auto mark = clock::now();
    RunOptions run_opts = opts;
    run_opts.stream_steps_to = folder->staging();
    const RunResult result = run_simulation(sc, run_opts);
    t.simulate_s = seconds_since(mark);
    t.engine_s = result.engine_wall_s;
    mark = clock::now();
    check_invariants(sc, result);
    t.check_s = seconds_since(mark);
    mark = clock::now();
    write_run_outputs(folder->staging(), sc, result);
    folder->commit();
    folder.reset();
    t.outputs_s = seconds_since(mark);
    t.total_s = seconds_since(t0);
    if (!quiet) print_run_table(sc, make_summary(sc, result), out, t, result.policy.policy_wall_s);
    if (timings) print_timings(t, result);
  } catch (const std::exception& e) {
    // The files went to the staging folder; the user knows them under the output folder.
    std::string what = e.what();
    if (folder) {
      const std::string staging = folder->staging().string();
      for (auto pos = what.find(staging); pos != std::string::npos; pos = what.find(staging, pos + out.size()))
        what.replace(pos, staging.size(), out);
    }
    std::cerr << "error: " << what << "\nno outputs were written"
              << (std::filesystem::exists(out) ? " (the previous result in " + out + " is unchanged)" : std::string()) << "\n";
    return kExitRun;
  }
  return kExitOk;
}

int moesim_main(int argc, char** argv);

}  // namespace

int main(int argc, char** argv) {
  // A file-size limit (ulimit -f) must fail a write with EFBIG, reported as the documented exit-3
  // error, not kill the process with SIGXFSZ.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    return moesim_main(argc, argv);
  } catch (const std::exception& e) {
    // Every command handles its own errors; one that escapes is still an error message and exit
    // code, never an abort.
    std::cerr << "error: " << e.what() << "\n";
    return kExitRun;
  }
}

namespace {

int moesim_main(int argc, char** argv) {
  RunOptions run_opts;
  std::vector<std::string> args;
  split_simgrid_args(argc, argv, args, run_opts);

  CLI::App app{"moesim: discrete-event simulator of Mixture-of-Experts LLM serving (TP vs EP, expert load, power)"};
  app.require_subcommand(1);
  std::string catalog_dir;
  app.add_option("--catalog", catalog_dir, "folder holding models/*/cards (default: $MOESIM_HOME or the source tree)");
  app.footer("SimGrid settings pass through as --cfg=name:value and --log=category.thresh:level.");

  auto* run = app.add_subcommand("run", "simulate a scenario and write its outputs");
  std::string scenario_file, out_dir;
  std::vector<std::string> sets;
  bool quiet = false;
  run->add_option("scenario", scenario_file, "scenario YAML file")->required();
  run->add_option("--out,-o", out_dir, "output directory (default: results/<scenario name>)");
  run->add_option("--set,-s", sets, "override a field: key.path=value (repeatable)")->allow_extra_args(false);
  run->add_flag("--quiet,-q", quiet, "print nothing on success");
  bool timings = false;
  run->add_flag("--timings", timings, "print one line 'timings: {json}' with the host seconds of each part, steps and SimGrid activities");

  auto* validate = app.add_subcommand("validate", "check scenarios without running them");
  std::vector<std::string> files;
  std::vector<std::string> validate_sets;
  validate->add_option("scenarios", files, "scenario YAML files")->required();
  validate->add_option("--set,-s", validate_sets, "override a field: key.path=value (repeatable)")->allow_extra_args(false);

  auto* describe_cmd = app.add_subcommand("describe", "print every scenario field with its type, default, unit and meaning");

  auto* gen = app.add_subcommand("gen-datasets", "write synthetic datasets of varying predicted expert-load imbalance");
  int gen_count = 50, gen_prompts = 30, gen_output = 256;
  std::uint64_t gen_seed = 0;
  std::string gen_model = "mixtral-8x7b", gen_out;
  gen->add_option("--count", gen_count, "datasets to write")->check(CLI::Range(1, 100000));
  gen->add_option("--prompts", gen_prompts, "prompts per dataset")->check(CLI::Range(1, 10000000));
  gen->add_option("--output-tokens", gen_output, "output tokens of every request")->check(CLI::Range(1, 1000000));
  gen->add_option("--seed", gen_seed, "random seed");
  gen->add_option("--model", gen_model, "model card whose routing model scores the datasets");
  gen->add_option("--out", gen_out, "output folder")->required();

  auto* sweep = app.add_subcommand("sweep", "run every point of a scenario's sweep section, each in its own process");
  std::string sweep_file, sweep_out, shard;
  std::vector<std::string> sweep_sets;
  int jobs = 1;
  bool sweep_list = false, sweep_merge = false;
  sweep->add_option("scenario", sweep_file, "scenario YAML with a sweep section")->required();
  sweep->add_option("--out,-o", sweep_out, "sweep directory (default: results/<scenario name>)");
  sweep->add_option("-j,--jobs", jobs, "points run at once")->check(CLI::Range(1, 1024));
  sweep->add_option("--set,-s", sweep_sets, "override a field of every point: key.path=value")->allow_extra_args(false);
  sweep->add_option("--shard", shard, "run only shard i of N (i/N): points with index % N == i - 1");
  sweep->add_flag("--list", sweep_list, "print the points and exit");
  sweep->add_flag("--merge", sweep_merge, "gather the points found in --out into sweep.csv (after sharded runs)");

  auto* report = app.add_subcommand("report", "print a sweep's (or a run's) headline metrics and write DIR/report.html");
  std::string report_dir;
  report->add_option("dir", report_dir, "sweep directory (with sweep.csv) or run directory (with summary.json)")->required();

  auto* eplb = app.add_subcommand("eplb", "DeepSeek's EPLB on a weights file: phy2log, log2phy, logcnt and GPU max/mean");
  std::string eplb_weights;
  int eplb_replicas = 0, eplb_groups = 1, eplb_nodes = 1, eplb_gpus = 1;
  eplb->add_option("--weights", eplb_weights, "JSON list of layers, each a list of expert loads")->required();
  eplb->add_option("--replicas", eplb_replicas, "physical expert slots")->required()->check(CLI::Range(1, 1 << 20));
  eplb->add_option("--groups", eplb_groups, "expert groups")->check(CLI::Range(1, 1 << 20));
  eplb->add_option("--nodes", eplb_nodes, "nodes")->check(CLI::Range(1, 1 << 20));
  eplb->add_option("--gpus", eplb_gpus, "GPUs")->required()->check(CLI::Range(1, 1 << 20));

  auto* kernels = app.add_subcommand("kernels", "one step's kernels and collectives per layer: time, bound, step total");
  KernelsOptions kopt;
  kernels->add_option("scenario", kopt.scenario, "scenario YAML file (optional: --model and --gpu describe one instead)");
  kernels->add_option("--set,-s", kopt.sets, "override a field: key.path=value (repeatable)")->allow_extra_args(false);
  kernels->add_option("--model", kopt.model, "model card (moesim list models)");
  kernels->add_option("--gpu", kopt.gpu, "GPU card (moesim list gpus)");
  kernels->add_option("--mode", kopt.mode, "tp or ep");
  kernels->add_option("--tp", kopt.tp, "tensor-parallel size")->check(CLI::Range(1, kMaxGpus));
  kernels->add_option("--ep", kopt.ep, "expert-parallel size")->check(CLI::Range(1, kMaxGpus));
  kernels->add_option("--attention", kopt.attention, "mode ep: tp (sharded) or dp (data-parallel) attention");
  kernels->add_option("--ep-mode", kopt.ep_mode, "DeepEP kernels: normal or low_latency");
  kernels->add_option("--routing", kopt.routing, "routing model (moesim list routers)");
  kernels->add_option("--nodes", kopt.nodes, "nodes (default: the instance's GPUs in nodes of up to 8)")->check(CLI::Range(1, 4096));
  kernels->add_option("--gpus-per-node", kopt.gpus_per_node, "GPUs per node")->check(CLI::Range(1, 72));
  kernels->add_option("--batch-tokens", kopt.batch_tokens, "tokens computed in the step")->required()->check(CLI::Range(1, kMaxBatchedTokens));
  kernels->add_option("--context", kopt.context, "tokens already in each sequence's KV cache")->check(CLI::Range(0, kMaxModelLen));
  bool decode_step = false;
  auto* decode_flag = kernels->add_flag("--decode", decode_step, "decode step: one token per sequence (default)");
  kernels->add_flag("--prefill", kopt.prefill, "prefill step: the tokens are prompt chunks")->excludes(decode_flag);
  kernels->add_option("--seqs", kopt.seqs, "prefill: sequences the tokens are split over (default 1)")->check(CLI::Range(1, kMaxNumSeqs));
  kernels->add_option("--csv", kopt.csv, "also write the table to this CSV file");
  kernels->add_flag("--kernels", kopt.kernels, "also list the kernels behind one layer of each kind (slowest GPU)");

  auto* trace_info = app.add_subcommand("trace-info", "one streamed pass over a production trace: requests, rates, tokens, groups, prefix reuse");
  TraceInfoOptions topt;
  trace_info->add_option("file", topt.file, "trace file")->required();
  trace_info->add_option("--format", topt.format, "azure | mooncake | burstgpt | bailian | splitwise | moesim")->required();
  trace_info->add_option("--start-s", topt.start_s, "window start, seconds after the first record");
  trace_info->add_option("--duration-s", topt.duration_s, "window length (0: to the end)");
  trace_info->add_option("--max-requests", topt.max_requests, "at most this many requests (0: all)");
  trace_info->add_option("--groups", topt.groups, "keep only these groups")->delimiter(',');
  trace_info->add_flag("--keep-failed", topt.keep_failed, "count failed requests too");
  trace_info->add_option("--block-tokens", topt.block_tokens, "moesim format: tokens per hash id");
  trace_info->add_flag("--json", topt.json, "print one JSON object (with requests per hour)");

  auto* import_hf = app.add_subcommand("import-hf", "write a model card from a Hugging Face config.json (and ModelOpt hf_quant_config.json)");
  std::string hf_config, hf_quant, hf_out;
  HfImportOptions hopt;
  bool hf_force = false;
  import_hf->add_option("config", hf_config, "config.json")->required();
  import_hf->add_option("quant_config", hf_quant, "hf_quant_config.json (ModelOpt FP8 / NVFP4)");
  import_hf->add_option("--name", hopt.name, "card name (default: from the Hugging Face id or the config's folder)");
  import_hf->add_option("--hf-id", hopt.hf_id, "Hugging Face id, e.g. deepseek-ai/DeepSeek-V3 (default: the config's _name_or_path)");
  import_hf->add_option("--total-params-b", hopt.total_params_b, "published total parameters (billions): checked within 1%");
  import_hf->add_option("--active-params-b", hopt.active_params_b, "published active parameters (billions): checked within 1%");
  import_hf->add_flag("--allow-approximations", hopt.allow_approximations, "cost sliding-window and chunked attention layers as full attention");
  import_hf->add_option("--out,-o", hf_out, "card file (default: the catalog's models/llm/cards/<name>.yaml)");
  import_hf->add_flag("--force", hf_force, "replace an existing card");

  auto* list = app.add_subcommand("list", "list catalog cards or registered components");
  std::string kind;
  list->add_option("kind", kind, "models | gpus | interconnects | routers | policies | arrivals | lengths")->required();

  std::vector<const char*> cargv{argv[0]};
  for (const auto& a : args) cargv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitConfig;
  }

  const Catalog catalog(catalog_dir.empty() ? default_catalog_home() : std::filesystem::path(catalog_dir));
  if (*list) return cmd_list(kind, catalog);
  if (*kernels) return run_kernels_command(kopt, catalog, std::cout, std::cerr);
  if (*trace_info) return run_trace_info(topt, std::cout, std::cerr);
  if (*import_hf) return cmd_import_hf(hf_config, hf_quant, hopt, hf_out, hf_force, catalog);
  if (*describe_cmd) return cmd_describe();
  if (*eplb) return cmd_eplb(eplb_weights, eplb_replicas, eplb_groups, eplb_nodes, eplb_gpus);
  if (*report) {
    try {
      const ReportResult r = write_report(report_dir);
      std::cout << r.table << fmt::format("moesim: report with {} charts: {}\n", r.charts, r.html.string());
      return kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return kExitConfig;
    }
  }
  if (*sweep) {
    SweepOptions opt;
    opt.out = sweep_out;
    opt.jobs = jobs;
    opt.base_sets = sweep_sets;
    opt.self_exe = std::filesystem::read_symlink("/proc/self/exe");
    opt.entry = &moesim_main;  // points run in forks of this process
    if (!catalog_dir.empty()) opt.extra_args = {"--catalog", catalog_dir};
    for (const auto& c : run_opts.simgrid_cfg) opt.extra_args.push_back("--cfg=" + c);
    for (const auto& l : run_opts.simgrid_log) opt.extra_args.push_back("--log=" + l);
    return cmd_sweep(sweep_file, sweep_sets, opt, sweep_list, sweep_merge, shard, catalog);
  }
  if (*gen) return cmd_gen_datasets(gen_count, gen_prompts, gen_output, gen_seed, gen_model, gen_out, catalog);
  if (*validate) return cmd_validate(files, validate_sets, catalog);
  return cmd_run(scenario_file, sets, out_dir, quiet, timings, run_opts, catalog);
}

}  // namespace
