#include "models/gpu/kernel_cost.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

double GpuSpec::peak_flops(DType dtype) const {
  double tflops = peak_tflops_bf16;
  switch (dtype) {
    case DType::fp16: tflops = peak_tflops_fp16; break;
    case DType::bf16: tflops = peak_tflops_bf16; break;
    case DType::fp8: tflops = peak_tflops_fp8 > 0 ? peak_tflops_fp8 : peak_tflops_bf16; break;
    case DType::fp4:
      tflops = peak_tflops_fp4 > 0 ? peak_tflops_fp4 : peak_tflops_bf16;
      break;
  }
  return tflops * 1e12;
}

double RooflineModel::tile_rows(double rows) const {
  const double lo = std::max(1.0, gpu_.gemm_tile_m_min), hi = std::max(lo, gpu_.gemm_tile_m_max);
  if (rows <= lo) return lo;
  const double pow2 = std::exp2(std::ceil(std::log2(rows)));
  return std::min(hi, pow2);
}

double RooflineModel::compute_fraction(double rows) const {
  if (rows <= 0) return 0;
  return gpu_.compute_efficiency * rows / (rows + gpu_.gemm_m_half_rows);
}

namespace {
/// FLOPs the tensor cores execute: the rows padded to the tile.
double executed_flops(const KernelWork& work, double tile) {
  if (work.rows <= 0) return work.flops;
  return work.flops * std::ceil(work.rows / tile - 1e-9) * tile / work.rows;
}
}  // namespace

double RooflineModel::compute_seconds(const KernelWork& work, double tile) const {
  const double exec = executed_flops(work, tile > 0 ? tile : tile_rows(work.rows));
  return (exec + gpu_.gemm_m_half_rows * work.row_flops) / (gpu_.peak_flops(work.math_dtype) * gpu_.compute_efficiency);
}

double RooflineModel::memory_seconds(const KernelWork& work) const {
  return work.bytes / (gpu_.hbm_bytes_per_s() * gpu_.memory_efficiency);
}

double RooflineModel::grouped_memory_efficiency(const KernelWork& part) const {
  const bool triton_fp8 = moe_kernel_ == MoeKernel::triton && part.grouped && part.math_dtype == DType::fp8;
  return triton_fp8 ? gpu_.moe_fp8_memory_efficiency : gpu_.memory_efficiency;
}

double RooflineModel::launch_seconds(int launches) const {
  const double us = mode_ == LaunchMode::graph ? gpu_.kernel_graph_launch_us : gpu_.kernel_launch_us;
  return std::max(0, launches) * us * 1e-6;
}

KernelTime RooflineModel::one(const KernelWork& work, double tile, int launches, double memory_efficiency) const {
  KernelTime t;
  if (work.empty()) return t;
  const double rate = gpu_.peak_flops(work.math_dtype) * gpu_.compute_efficiency;
  const double exec = executed_flops(work, tile > 0 ? tile : tile_rows(work.rows));
  // Tensor-core work (the power model's u_c) is the executed FLOPs; the small-M term is stall time.
  const double c = (exec + gpu_.gemm_m_half_rows * work.row_flops) / rate;
  const double m = work.bytes / (gpu_.hbm_bytes_per_s() * memory_efficiency);
  t.launch_s = launch_seconds(launches);
  t.seconds = t.launch_s + std::max(c, m);
  if (c >= m) t.compute_bound_s = c;
  t.compute_busy_s = exec / rate;
  t.memory_busy_s = m;
  // Below the card's streaming efficiency the kernel is SM-bound, not HBM-bound: HBM is busy for
  // the time the bytes take at memory_efficiency, the SMs for the rest (it counts as compute for
  // the power model and stretches with the clock).
  if (const double nominal = work.bytes / (gpu_.hbm_bytes_per_s() * gpu_.memory_efficiency); m > c && m > nominal) {
    t.memory_busy_s = nominal;
    t.compute_busy_s += m - nominal;
    t.compute_bound_s = m - nominal;
  }
  return t;
}

KernelTime RooflineModel::time(const KernelWork& work) const { return one(work, 0, work.launches, gpu_.memory_efficiency); }

KernelTime RooflineModel::sequence(std::span<const KernelWork> kernels) const {
  KernelTime t;
  for (const auto& k : kernels) t += time(k);
  return t;
}

KernelTime RooflineModel::grouped(std::span<const KernelWork> parts) const {
  double rows = 0, active = 0;
  int group_launches = 0;
  for (const auto& k : parts) {
    if (!k.grouped || k.empty()) continue;
    rows += k.rows;
    active += 1;
    group_launches = std::max(group_launches, k.launches);
  }
  const double tile = active > 0 ? tile_rows(rows / active) : 0;
  KernelTime t;
  for (const auto& k : parts) t += k.grouped ? one(k, tile, 0, grouped_memory_efficiency(k)) : time(k);
  const double launch = launch_seconds(group_launches);
  t.seconds += launch;
  t.launch_s += launch;
  return t;
}

}  // namespace moesim
