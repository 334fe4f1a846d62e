#pragma once
// A GPU as read from a catalog card (models/gpu/cards/*.yaml; every number cites its source or is
// marked an estimate in the card).
#include <string>

#include "models/llm/model_spec.hpp"

namespace moesim {

struct GpuSpec {
  std::string name;
  std::string display_name;
  std::string vendor;
  std::string architecture;
  double peak_tflops_fp16 = 0.0;  ///< dense tensor-core peak, TFLOP/s
  double peak_tflops_bf16 = 0.0;
  double peak_tflops_fp8 = 0.0;   ///< 0 when the GPU has no FP8 tensor cores
  double peak_tflops_fp4 = 0.0;   ///< 0 when the GPU has no FP4 tensor cores
  double hbm_bw_tbytes_per_s = 0.0;
  double hbm_capacity_gb = 0.0;   ///< decimal GB as marketed
  double nvlink_bw_bidir_gbytes_per_s = 0.0;
  std::string default_intra_node;
  double tdp_w = 0.0;
  double power_limit_min_w = 0.0;
  double idle_w = 0.0;
  double temp_slowdown_sw_c = 0.0;
  double temp_slowdown_hw_c = 0.0;
  double temp_shutdown_c = 0.0;
  double temp_hbm_max_c = 0.0;
  // Kernel cost model (models/gpu/kernel_cost.hpp).
  double compute_efficiency = 0.7;  ///< fraction of peak FLOPs large GEMMs reach
  double gemm_m_half_rows = 32;     ///< GEMM rows at which half of compute_efficiency is reached
  double gemm_tile_m_min = 16;      ///< smallest M tile (rows) a GEMM is padded to
  double gemm_tile_m_max = 128;     ///< largest M tile
  double memory_efficiency = 0.8;   ///< fraction of HBM bandwidth streaming kernels reach
  double moe_fp8_memory_efficiency = 0.8;  ///< the same for FP8 experts in vLLM's fused-MoE Triton kernel
  double kernel_launch_us = 4.0;    ///< per kernel launched eagerly
  double kernel_graph_launch_us = 2.0;  ///< per kernel replayed from a CUDA graph
  int sm_count = 132;               ///< streaming multiprocessors (compute units on AMD): what overlapped communication kernels take from compute
  // Power and clocks (models/power/power_model.hpp).
  double clock_max_mhz = 1980;
  double clock_min_mhz = 345;
  double clock_step_mhz = 15;
  double voltage_min_v = 0.7;
  double voltage_max_v = 1.0;
  double power_compute_w = 540;      ///< dynamic power at full compute utilisation, f_max
  double power_memory_w = 230;       ///< dynamic power at full HBM utilisation
  double power_comm_w = 100;         ///< extra power while in a collective
  double leakage_ref_w = 40;         ///< leakage scale L_ref
  double leakage_beta_per_k = 0.036;
  double leakage_ref_temp_c = 45;
  double sw_slowdown_clock_fraction = 0.8;
  double throttle_hysteresis_c = 3;
  // Lumped two-node thermal network (models/thermal/rc_thermal.hpp).
  double thermal_r_die_sink_k_per_w = 0.015;
  double thermal_r_sink_inlet_k_per_w = 0.05;
  double thermal_c_die_j_per_k = 70;
  double thermal_c_sink_j_per_k = 4000;

  /// Dense peak in FLOP/s for matmuls whose operands are `dtype`. A dtype the tensor cores do not
  /// support runs at the BF16 peak (weight-only quantisation: dequantise to BF16, compute in BF16).
  [[nodiscard]] double peak_flops(DType dtype) const;
  [[nodiscard]] double hbm_bytes_per_s() const { return hbm_bw_tbytes_per_s * 1e12; }
  [[nodiscard]] double hbm_capacity_bytes() const { return hbm_capacity_gb * 1e9; }
};

}  // namespace moesim
