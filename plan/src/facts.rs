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
    /// Adds the host's IPv4 routes (except the default route) from `/proc/net/route`.
    pub fn add_host_routes(&mut self) {
        let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
            return;
        };
        self.taken_subnets.extend(parse_routes(&text));
    }
}

impl Facts {
    /// Adds TCP ports something on the host listens on (`/proc/net/tcp` and `tcp6`), so plans avoid them.
    pub fn add_host_listeners(&mut self) {
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(file) {
                self.taken_host_ports.extend(parse_listeners(&text));
            }
        }
    }
}

/// Local ports in state LISTEN (0A) from a `/proc/net/tcp`-format table.
pub fn parse_listeners(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.get(3) != Some(&"0A") {
                return None;
            }
            u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// Parses `/proc/net/route` (little-endian hex destination and mask columns).
pub fn parse_routes(text: &str) -> Vec<Ipv4Net> {
    let mut out = vec![];
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(cols[1], 16), u32::from_str_radix(cols[7], 16)) else {
            continue;
        };
        // The kernel prints the address words in native byte order.
        let (dest, mask) = (std::net::Ipv4Addr::from(dest.to_ne_bytes()), u32::from_be_bytes(mask.to_ne_bytes()));
        if mask == 0 {
            continue;
        }
        let prefix = mask.leading_ones() as u8;
        if let Ok(net) = Ipv4Net::new(dest, prefix) {
            out.push(net.trunc());
        }
    }
    out
}

/// (MemAvailable, MemTotal) in bytes from /proc/meminfo.
pub fn host_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> { text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024) };
    Some((field("MemAvailable:")?, field("MemTotal:")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn listeners() {
        let text = "  sl  local_address rem_address   st\n   0: 00000000:1F90 00000000:0000 0A 0\n   1: 0100007F:0277 0100007F:A0B2 01 0\n";
        assert_eq!(super::parse_listeners(text), vec![8080]);
    }

    #[test]
    fn routes() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(super::parse_routes(text), vec!["172.17.0.0/16".parse().unwrap()]);
    }
}
