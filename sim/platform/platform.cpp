#include "sim/platform/platform.hpp"

#include <simgrid/s4u.hpp>

namespace moesim {

void configure_simgrid(const std::vector<std::string>& extra_cfg) {
  namespace sg = simgrid::s4u;
  // Parallel tasks carry whole collectives; CM02 without TCP corrections gives exactly
  // latency + bytes / bandwidth for one transfer (SIMGRID_NOTES).
  sg::Engine::set_config("host/model:ptask_L07");
  sg::Engine::set_config("network/crosstraffic:0");
  sg::Engine::set_config("network/optim:Full");
  sg::Engine::set_config("network/TCP-gamma:0");
  for (const auto& cfg : extra_cfg) sg::Engine::set_config(cfg);
}

Platform build_platform(const Scenario& sc) {
  namespace sg = simgrid::s4u;
  using Dir = sg::LinkInRoute::Direction;
  const auto& gpu = sc.cluster.gpu.spec;
  const auto& intra = sc.cluster.intra_node.spec;
  const auto& inter = sc.cluster.inter_node.spec;
  const int n = sc.cluster.num_gpus();
  const int per_node = sc.cluster.gpus_per_node;

  Platform p;
  p.host_speed_flops = gpu.peak_flops(DType::bf16);
  auto* zone = sg::create_full_zone("cluster");
  std::vector<sg::SplitDuplexLink*> nvlink(static_cast<std::size_t>(n)), nic(static_cast<std::size_t>(n));
  for (int g = 0; g < n; ++g) {
    const std::string id = "node" + std::to_string(g / per_node) + "-gpu" + std::to_string(g % per_node);
    p.gpus.push_back(zone->create_host(id, p.host_speed_flops));
    nvlink[static_cast<std::size_t>(g)] = zone->create_split_duplex_link(id + "-nvlink", intra.effective_bytes_per_s());
    nvlink[static_cast<std::size_t>(g)]->set_latency(intra.latency_us * 0.5e-6)->seal();
    nic[static_cast<std::size_t>(g)] = zone->create_split_duplex_link(id + "-nic", inter.effective_bytes_per_s());
    nic[static_cast<std::size_t>(g)]->set_latency(inter.latency_us * 0.5e-6)->seal();
    p.rdma_ports.push_back(zone->create_host(id + "-rdma", p.host_speed_flops));
  }
  for (int node = 0; node * per_node < n; ++node)
    p.nvswitches.push_back(zone->create_host("node" + std::to_string(node) + "-nvswitch", p.host_speed_flops));
  p.fabric_switch = zone->create_host("fabric-switch", p.host_speed_flops);
  for (int g = 0; g < n; ++g) {
    const auto ug = static_cast<std::size_t>(g);
    auto* nvswitch = p.nvswitches[static_cast<std::size_t>(g / per_node)]->get_netpoint();
    auto* host = p.gpus[ug]->get_netpoint();
    zone->add_route(host, nvswitch, nullptr, nullptr, {sg::LinkInRoute(nvlink[ug], Dir::UP)}, false);
    zone->add_route(nvswitch, host, nullptr, nullptr, {sg::LinkInRoute(nvlink[ug], Dir::DOWN)}, false);
    zone->add_route(host, p.fabric_switch->get_netpoint(), nullptr, nullptr, {sg::LinkInRoute(nic[ug], Dir::UP)}, false);
    zone->add_route(p.fabric_switch->get_netpoint(), host, nullptr, nullptr, {sg::LinkInRoute(nic[ug], Dir::DOWN)}, false);
  }
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; ++b) {
      if (a == b) continue;
      const bool local = a / per_node == b / per_node;
      const auto& ports = local ? nvlink : nic;
      zone->add_route(p.gpus[static_cast<std::size_t>(a)]->get_netpoint(), p.gpus[static_cast<std::size_t>(b)]->get_netpoint(),
                      nullptr, nullptr,
                      {sg::LinkInRoute(ports[static_cast<std::size_t>(a)], Dir::UP),
                       sg::LinkInRoute(ports[static_cast<std::size_t>(b)], Dir::DOWN)},
                      false);
    }
    // Same-node pairs through the NICs, GPU a's own loopback included.
    const int node_first = a / per_node * per_node;
    for (int b = node_first; b < node_first + per_node && b < n; ++b)
      zone->add_route(p.gpus[static_cast<std::size_t>(a)]->get_netpoint(), p.rdma_ports[static_cast<std::size_t>(b)]->get_netpoint(),
                      nullptr, nullptr,
                      {sg::LinkInRoute(nic[static_cast<std::size_t>(a)], Dir::UP),
                       sg::LinkInRoute(nic[static_cast<std::size_t>(b)], Dir::DOWN)},
                      false);
  }
  zone->seal();
  return p;
}

}  // namespace moesim
