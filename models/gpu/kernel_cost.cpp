#include "models/gpu/kernel_cost.hpp"

#include <algorithm>

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

double RooflineModel::compute_seconds(const KernelWork& work) const {
  return work.flops / (gpu_.peak_flops(work.math_dtype) * gpu_.compute_efficiency);
}

double RooflineModel::memory_seconds(const KernelWork& work) const {
  return work.bytes / (gpu_.hbm_bytes_per_s() * gpu_.memory_efficiency);
}

KernelTime RooflineModel::time(const KernelWork& work) const {
  if (work.flops <= 0.0 && work.bytes <= 0.0) return {};
  const double c = compute_seconds(work);
  const double m = memory_seconds(work);
  return {gpu_.kernel_launch_us * 1e-6 + std::max(c, m), c >= m};
}

}  // namespace moesim
