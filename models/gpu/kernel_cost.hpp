#pragma once
// Roofline kernel cost model with shape-dependent efficiency, tile quantisation and a fixed cost
// per kernel.
//
//   t(kernel) = launches * t_launch + max( t_compute, t_memory )
//   t_compute = (F_exec + h * F_row) / (peak(dtype) * compute_efficiency)
//   t_memory  = bytes / (hbm_bw * memory_efficiency)
//
// F_exec    FLOPs the tensor cores execute: a GEMM's M rows are padded to its tile (M_pad =
//           ceil(M / tile) * tile, tile = the power of two >= M clamped to [gemm_tile_m_min,
//           gemm_tile_m_max]; a grouped GEMM picks one tile from its mean rows per group, as
//           fused-MoE kernels pick one BLOCK_SIZE_M per launch).
// F_row     FLOPs of one row of each independent GEMM the work stands for (summed). The term
//           h * F_row is the small-M curve: a GEMM of M rows reaches
//             eff(M) = compute_efficiency * M / (M + h),   h = gemm_m_half_rows,
//           of peak, i.e. half of the large-M efficiency at M = h rows (pipeline fill, epilogue and
//           tail waves that a short GEMM cannot amortise). Decode GEMMs and experts with few tokens
//           sit far left on this curve; they are memory-bound anyway, prefill is not.
// t_launch  kernel_launch_us per kernel launched eagerly, kernel_graph_launch_us inside a CUDA
//           graph (decode steps replay captured graphs: the CPU launch path disappears, the
//           GPU-side gap between dependent kernels stays).
//
// Grouped GEMMs of FP8 routed experts in vLLM's fused-MoE Triton kernel (MoeKernel::triton) stream
// their weights at the card's moe_fp8_memory_efficiency instead of memory_efficiency: block-scaled
// FP8 tiles carry scale loads and dequantisation in the K loop, so they reach a lower fraction of
// HBM bandwidth than the BF16 kernel (the card cites the published kernel timings behind it).
// Such a kernel is SM-bound: HBM is busy for bytes / (hbm_bw * memory_efficiency), the SMs for the
// rest of t_memory (u_c for power; that part stretches as f_max / f under a lowered clock).
// DeepGEMM's grouped GEMMs (MoeKernel::deepgemm) stream at memory_efficiency.
//
// Which term wins tells whether a kernel is compute- or memory-bound. The power model's
// utilisations come from the same numbers: u_c = F_exec / (peak * compute_efficiency) / t and
// u_m = t_memory / t (the small-M term is stall time, not tensor-core work).
#include <span>

#include "models/gpu/gpu_spec.hpp"
#include "models/llm/model_spec.hpp"

namespace moesim {

struct KernelWork {
  double flops = 0.0;      ///< useful FLOPs (unpadded)
  double bytes = 0.0;      ///< HBM bytes read and written
  DType math_dtype = DType::bf16;
  double rows = 0.0;       ///< M of a GEMM, padded to the tile; 0: not a GEMM (no padding)
  double row_flops = 0.0;  ///< FLOPs per row of each independent GEMM, summed (small-M term)
  int launches = 1;        ///< kernels this work stands for, each paying the per-kernel cost
  bool grouped = false;    ///< one of the GEMMs of a grouped (fused-MoE) kernel: its launches are paid once per group

  /// The work of one kernel that covers both (e.g. varlen attention over several sequences).
  KernelWork& operator+=(const KernelWork& other) {
    flops += other.flops;
    bytes += other.bytes;
    rows += other.rows;
    row_flops += other.row_flops;
    launches = launches > other.launches ? launches : other.launches;
    return *this;
  }
  [[nodiscard]] bool empty() const { return flops <= 0.0 && bytes <= 0.0; }
};

/// Time and utilisation of one kernel or of a GPU's kernels in a phase, summed.
struct KernelTime {
  double seconds = 0.0;
  double compute_bound_s = 0.0;  ///< compute time of the compute-bound kernels: stretches as f_max / f
  double compute_busy_s = 0.0;   ///< executed FLOPs / achievable FLOP rate (power: u_c)
  double memory_busy_s = 0.0;    ///< bytes / achievable bandwidth (power: u_m)
  double launch_s = 0.0;         ///< part of `seconds` that is per-kernel overhead

  [[nodiscard]] bool compute_bound() const { return compute_bound_s > 0.0; }
  KernelTime& operator+=(const KernelTime& o) {
    seconds += o.seconds;
    compute_bound_s += o.compute_bound_s;
    compute_busy_s += o.compute_busy_s;
    memory_busy_s += o.memory_busy_s;
    launch_s += o.launch_s;
    return *this;
  }
};

/// How kernels are issued: one by one from the CPU, or replayed from a captured CUDA graph.
enum class LaunchMode { eager, graph };

/// Which grouped-GEMM implementation runs the routed experts (serving.moe_kernel).
enum class MoeKernel { triton, deepgemm };

class RooflineModel {
 public:
  explicit RooflineModel(const GpuSpec& gpu) : gpu_(gpu) {}

  void set_launch_mode(LaunchMode mode) { mode_ = mode; }
  [[nodiscard]] LaunchMode launch_mode() const { return mode_; }
  void set_moe_kernel(MoeKernel kernel) { moe_kernel_ = kernel; }
  [[nodiscard]] MoeKernel moe_kernel() const { return moe_kernel_; }

  /// One kernel (or the `launches` kernels `work` stands for); zero work costs nothing.
  [[nodiscard]] KernelTime time(const KernelWork& work) const;
  /// Kernels launched one after another, each paying its launches.
  [[nodiscard]] KernelTime sequence(std::span<const KernelWork> kernels) const;
  /// A grouped GEMM (fused MoE) over several parts: one tile size for the group, the sum of the
  /// parts' rooflines, the group's launches paid once; parts not marked `grouped` (a shared expert
  /// next to the routed ones) pay their own.
  [[nodiscard]] KernelTime grouped(std::span<const KernelWork> parts) const;

  /// Compute time with tile padding at `tile` rows (0: the tile for the work's own rows).
  [[nodiscard]] double compute_seconds(const KernelWork& work, double tile = 0) const;
  [[nodiscard]] double memory_seconds(const KernelWork& work) const;
  /// Fraction of HBM bandwidth a part of a grouped (fused-MoE) kernel reaches.
  [[nodiscard]] double grouped_memory_efficiency(const KernelWork& part) const;
  [[nodiscard]] double launch_seconds(int launches) const;
  /// Tile rows for a GEMM of `rows` rows (see the header comment).
  [[nodiscard]] double tile_rows(double rows) const;
  /// Achievable fraction of peak FLOPs at M rows (the small-M curve).
  [[nodiscard]] double compute_fraction(double rows) const;
  [[nodiscard]] const GpuSpec& gpu() const { return gpu_; }

 private:
  [[nodiscard]] KernelTime one(const KernelWork& work, double tile, int launches, double memory_efficiency) const;
  GpuSpec gpu_;
  LaunchMode mode_ = LaunchMode::eager;
  MoeKernel moe_kernel_ = MoeKernel::triton;
};

}  // namespace moesim
