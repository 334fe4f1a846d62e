#pragma once
// The SimGrid platform of a cluster, built in code from the scenario's cards.
//
// One host per GPU (speed: the card's dense BF16 peak, so an exec of t * speed flops lasts t
// seconds). Every GPU has its own split-duplex NVLink port into the node's NVSwitch and its own
// NIC into the cluster switch; switches are non-blocking and therefore not links (see
// SIMGRID_NOTES). Routes: same node [nvlink_a up, nvlink_b down], across nodes [nic_a up,
// nic_b down]. Each port carries the card's bandwidth x achievable_fraction and half the card's
// one-way latency, so a route costs exactly the card's latency.
//
// Traffic that must take the NICs between GPUs of the same node (DeepEP's pure-RDMA low-latency
// kernels, and the internode kernels' staging of a GPU's own-node copy through its RDMA buffer)
// cannot use the GPU pair's route, which is NVLink. Each GPU therefore also has an "RDMA port"
// host, a host without work, with routes from every GPU of its node: gpu_a -> rdma_b is
// [nic_a up, nic_b down] (gpu_a -> rdma_a is the loopback through GPU a's own NIC). A collective
// with such bytes runs as a parallel task over the GPUs and their RDMA ports.
//
// Switch hosts, for collectives aggregated per port (network.flow_granularity): each node has an
// NVSwitch host and the cluster one fabric-switch host, with one-port routes gpu_a -> nvswitch
// [nvlink_a up], nvswitch -> gpu_b [nvlink_b down], gpu_a -> fabric switch [nic_a up], fabric
// switch -> gpu_b [nic_b down]. Under the ptask_L07 model a parallel task is one variable whose
// share of every link is the bytes its pairs put on that link, so a task that sends each GPU's
// port totals through the switch hosts puts exactly the same bytes on every link as the task with
// one entry per GPU pair, with 4 N entries instead of N^2 (tests/e2e/network_test.cpp checks the
// two agree). Its routes are one port long: it sees half a route's latency, and the other half is
// paid after it with the collective's fixed costs.
#include <string>
#include <vector>

#include <simgrid/forward.h>

#include "sim/config/scenario.hpp"

namespace moesim {

struct Platform {
  std::vector<simgrid::s4u::Host*> gpus;  ///< cluster GPU index -> host
  std::vector<simgrid::s4u::Host*> rdma_ports;  ///< cluster GPU index -> its RDMA port (see above)
  std::vector<simgrid::s4u::Host*> nvswitches;  ///< node index -> its NVSwitch host
  simgrid::s4u::Host* fabric_switch = nullptr;  ///< the cluster's scale-out switch host
  double host_speed_flops = 0;
};

/// Sets SimGrid's models; call once per process, before build_platform.
void configure_simgrid(const std::vector<std::string>& extra_cfg);
[[nodiscard]] Platform build_platform(const Scenario& scenario);

}  // namespace moesim
