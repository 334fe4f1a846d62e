#pragma once
// Roofline kernel cost model.
//
//   t(kernel) = launch + max( flops / (peak(dtype) * compute_efficiency),
//                             bytes / (hbm_bw * memory_efficiency) )
//
// Which of the two terms wins tells whether the kernel is compute- or memory-bound. Attention and
// expert GEMMs are described by their FLOPs and HBM bytes (weights read once per kernel, activations
// read and written, KV cache read); see step cost builders in sim/exec for the formulas per kernel.
#include "models/gpu/gpu_spec.hpp"
#include "models/llm/model_spec.hpp"

namespace moesim {

struct KernelWork {
  double flops = 0.0;
  double bytes = 0.0;
  DType math_dtype = DType::bf16;

  KernelWork& operator+=(const KernelWork& other) {
    flops += other.flops;
    bytes += other.bytes;
    return *this;
  }
};

struct KernelTime {
  double seconds = 0.0;
  bool compute_bound = false;
};

class RooflineModel {
 public:
  explicit RooflineModel(const GpuSpec& gpu) : gpu_(gpu) {}

  /// Time of one kernel, launch overhead included; zero work costs nothing (the kernel is skipped).
  [[nodiscard]] KernelTime time(const KernelWork& work) const;
  /// Compute-only and memory-only lower bounds, for tests and reports.
  [[nodiscard]] double compute_seconds(const KernelWork& work) const;
  [[nodiscard]] double memory_seconds(const KernelWork& work) const;
  [[nodiscard]] const GpuSpec& gpu() const { return gpu_; }

 private:
  GpuSpec gpu_;
};

}  // namespace moesim
