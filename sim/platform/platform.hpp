#pragma once
// The SimGrid platform of a cluster, built in code from the scenario's cards.
//
// One host per GPU (speed: the card's dense BF16 peak, so an exec of t * speed flops lasts t
// seconds). Every GPU has its own split-duplex NVLink port into the node's NVSwitch and its own
// NIC into the cluster switch; switches are non-blocking and therefore not links (see
// SIMGRID_NOTES). Routes: same node [nvlink_a up, nvlink_b down], across nodes [nic_a up,
// nic_b down]. Each port carries the card's bandwidth x achievable_fraction and half the card's
// one-way latency, so a route costs exactly the card's latency.
#include <string>
#include <vector>

#include <simgrid/forward.h>

#include "sim/config/scenario.hpp"

namespace moesim {

struct Platform {
  std::vector<simgrid::s4u::Host*> gpus;  ///< cluster GPU index -> host
  double host_speed_flops = 0;
};

/// Sets SimGrid's models; call once per process, before build_platform.
void configure_simgrid(const std::vector<std::string>& extra_cfg);
[[nodiscard]] Platform build_platform(const Scenario& scenario);

}  // namespace moesim
