#pragma once
// `moesim kernels`: one step of one serving instance, phase by phase and layer by layer, as the
// simulator costs it (StepPlanner and the analytic collective times of models/network; nothing is
// re-derived here).
//
// For every layer it prints each compute phase (attention: QKV/O projections and the attention
// core; the dense FFN; the MoE's grouped expert GEMMs with the shared expert; the LM head and
// sampler on the last layer) with the time of the slowest GPU, its compute and memory busy times
// and its bound (compute, memory, or overhead when launch costs dominate), and each communication
// phase (all-reduce, all-gather, dispatch, combine) with its time, algorithm and bottleneck port.
// The step total is the closed-form timeline the analytic fidelity runs (each compute segment
// lasts as long as its slowest GPU), split by phase kind. With --kernels it then lists the kernels
// behind the phases of one layer of each kind (attention, dense FFN, the first MoE layer, the LM
// head): each kernel (or fixed group of kernels: the attention projections, the fused-MoE block)
// with its launches, FLOPs, HBM bytes, time and bound on the GPU whose phase is slowest.
#include <iosfwd>
#include <string>
#include <vector>

#include "sim/config/catalog.hpp"

namespace moesim {

struct KernelsOptions {
  std::string scenario;            ///< optional scenario file; flags and --set override it
  std::vector<std::string> sets;   ///< key.path=value
  // Shorthands for --set (empty / 0: not given).
  std::string model, gpu, mode, attention, ep_mode, routing, fidelity;
  int tp = 0, ep = 0, nodes = 0, gpus_per_node = 0;
  // The batch of the step.
  int batch_tokens = 0;  ///< tokens computed in the step
  int context = 0;       ///< tokens already in each sequence's KV cache
  bool prefill = false;  ///< prefill chunks (default: decode, one token per sequence)
  int seqs = 0;          ///< prefill: sequences the tokens are split over (default 1)
  std::string csv;       ///< also write the table to this file
  bool kernels = false;  ///< also list each kernel of one layer of each kind on its slowest GPU
};

/// Runs the command; returns the exit code (0, 2 bad input, 3 cannot write the CSV).
int run_kernels_command(const KernelsOptions& options, const Catalog& catalog, std::ostream& out, std::ostream& err);

}  // namespace moesim
