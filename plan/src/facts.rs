//! Facts the planner must respect: subnets and host ports already in use, images present locally. They come from
//! the engine (every network and published port, not only orch's) and from the host's routing table.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub taken_subnets: BTreeSet<Ipv4Net>,
    pub taken_host_ports: BTreeSet<u16>,
    pub local_images: BTreeSet<String>,
    /// Whether the engine was consulted (plans made without it cannot see its networks).
    pub engine_consulted: bool,
    /// Whether the engine places services on nodes (a swarm), so placement constraints apply.
    pub places_services: bool,
    /// Where in each pool carving starts: 0 is the first free subnet (plans are reproducible). A carving the engine
    /// refused is redone from a spot of its own, so that processes racing for the same first free subnet (other
    /// users' orch, which share no state directory) spread out instead of colliding again.
    pub carve_offset: u64,
}

impl Facts {
    /// Adds the host's IPv4 routes (except the default route).
    pub fn add_host_routes(&mut self) {
        self.taken_subnets.extend(crate::procfs::routes());
    }

    /// Adds TCP ports something on the host listens on, so plans avoid them.
    pub fn add_host_listeners(&mut self) {
        self.taken_host_ports.extend(crate::procfs::listening_ports());
    }
}
