//! Turns intents into concrete values: carves subnets from orch's pools around every subnet already in use, picks
//! host ports by strategy, and drops networks no service uses. Pure: the caller supplies the facts (and, for `up`,
//! holds the allocation lock while the result is in use).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::facts::Facts;
use crate::plan::{Level, Plan, PortStrategy, SubnetRequest, fnv1a};

/// orch's default address pool: inside 10.0.0.0/8, away from Docker's default pools (172.17–31/16,
/// 192.168/16); 4096 /24 networks.
pub const DEFAULT_POOL: &str = "10.192.0.0/12";
/// Prefix length of networks that ask for no particular size.
pub const DEFAULT_PREFIX: u8 = 24;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "no free /{prefix} subnet left for network {network} in the pools {pools}{covered}; remove stale environments (`orch gc`) or add a pool with --pool CIDR"
    )]
    PoolExhausted { network: String, prefix: u8, pools: String, covered: String },
    #[error("service {service}: no free host port in {start}-{end} for container port {port}; widen the range or stop other environments")]
    PortsExhausted { service: String, port: String, start: u16, end: u16 },
    #[error("network {network}: subnet {value:?} is not an IPv4 CIDR such as 10.1.2.0/24")]
    BadSubnet { network: String, value: String },
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Resolves subnets, gateways and host ports in place.
pub fn resolve(plan: &mut Plan, facts: &Facts, pools: &[Ipv4Net]) -> Result<(), ResolveError> {
    prune_unused_networks(plan);
    resolve_subnets(plan, facts, pools)?;
    resolve_ports(plan, facts)
}

/// Drops the networks no service uses (they are not created).
pub fn prune_unused_networks(plan: &mut Plan) {
    let used: BTreeSet<String> = plan.services.values().flat_map(|s| s.networks.keys().cloned()).collect();
    let unused: Vec<String> = plan.networks.keys().filter(|n| !used.contains(*n)).cloned().collect();
    for name in unused {
        plan.networks.remove(&name);
        plan.provenance.retain(|k, _| k != &format!("networks.{name}") && !k.starts_with(&format!("networks.{name}.")));
        plan.diagnose(
            Level::Debug,
            "plan.network-unused",
            format!("network {name} has no services; it is not created"),
            Some(format!("networks.{name}")),
            "orch",
        );
    }
}

/// Address ranges in use, merged into disjoint intervals: whether a candidate subnet is free, and where the next free
/// one can start, are answered in O(log n), so carving N subnets is near-linear however many are taken.
#[derive(Debug, Default, Clone)]
pub struct Taken {
    /// start → end (inclusive), disjoint and not adjacent.
    intervals: std::collections::BTreeMap<u32, u32>,
}

fn bounds(net: &Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

impl Taken {
    pub fn insert(&mut self, net: &Ipv4Net) {
        let (start, end) = bounds(net);
        self.insert_range(start, end);
    }

    fn insert_range(&mut self, mut start: u32, mut end: u32) {
        // Merge with the interval that starts before and reaches into (or touches) this one…
        if let Some((&s, &e)) = self.intervals.range(..=start).next_back()
            && e.saturating_add(1) >= start
        {
            start = s;
            end = end.max(e);
        }
        // …and with every interval that starts inside it or right after it.
        let next: Vec<(u32, u32)> = self.intervals.range(start..=end.saturating_add(1)).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in next {
            self.intervals.remove(&s);
            end = end.max(e);
        }
        self.intervals.insert(start, end);
    }

    /// The taken interval that overlaps [start, end], if any.
    fn overlapping(&self, start: u32, end: u32) -> Option<(u32, u32)> {
        self.intervals.range(..=end).next_back().filter(|(_, e)| **e >= start).map(|(s, e)| (*s, *e))
    }

    pub fn overlaps(&self, net: &Ipv4Net) -> Option<Ipv4Net> {
        let (start, end) = bounds(net);
        self.overlapping(start, end).map(|(s, e)| {
            // Report it as the smallest CIDR covering the interval's part that collides.
            let from = s.max(start);
            let to = e.min(end);
            let prefix = 32 - (32 - (from ^ to).leading_zeros()).min(32) as u8;
            Ipv4Net::new(Ipv4Addr::from(from), prefix).map(|n| n.trunc()).unwrap_or(*net)
        })
    }

    /// The first free subnet of `prefix` inside `pool` at or after slot `offset` (modulo the pool's slots), else the
    /// first before it.
    pub fn first_free_from(&self, pool: &Ipv4Net, prefix: u8, offset: u64) -> Option<Ipv4Net> {
        if offset == 0 || prefix < pool.prefix_len() || prefix > 32 {
            return self.first_free(pool, prefix);
        }
        let slots = 1u64 << (prefix - pool.prefix_len()).min(63);
        let size = 1u64 << (32 - prefix);
        let (pool_start, _) = bounds(&pool.trunc());
        let skip = (offset % slots) * size;
        if skip == 0 {
            return self.first_free(pool, prefix);
        }
        let mut later = self.clone();
        later.insert_range(pool_start, (u64::from(pool_start) + skip - 1) as u32);
        later.first_free(pool, prefix).or_else(|| self.first_free(pool, prefix))
    }

    /// The first free subnet of `prefix` inside `pool`.
    pub fn first_free(&self, pool: &Ipv4Net, prefix: u8) -> Option<Ipv4Net> {
        if prefix < pool.prefix_len() || prefix > 32 {
            return None;
        }
        let size: u64 = 1 << (32 - prefix);
        let (pool_start, pool_end) = bounds(&pool.trunc());
        let mut cursor = u64::from(pool_start);
        while cursor + size - 1 <= u64::from(pool_end) {
            let (start, end) = (cursor as u32, (cursor + size - 1) as u32);
            match self.overlapping(start, end) {
                // Jump past the interval in the way, to the next aligned candidate.
                Some((_, e)) => cursor = (u64::from(e) + 1).div_ceil(size) * size,
                None => return Ipv4Net::new(Ipv4Addr::from(start), prefix).ok(),
            }
        }
        None
    }
}

fn resolve_subnets(plan: &mut Plan, facts: &Facts, pools: &[Ipv4Net]) -> Result<(), ResolveError> {
    let mut taken = Taken::default();
    for t in &facts.taken_subnets {
        taken.insert(t);
    }
    // Fixed subnets first, so carving avoids them; conflicts among them are reported by validation.
    for (name, n) in plan.networks.iter_mut() {
        if let Some(SubnetRequest::Fixed(cidr)) = &n.subnet_request {
            let net: Ipv4Net = cidr.parse().map_err(|_| ResolveError::BadSubnet { network: name.clone(), value: cidr.clone() })?;
            n.subnet = Some(net.to_string());
            taken.insert(&net.trunc());
        }
    }
    let names: Vec<String> = plan.networks.keys().cloned().collect();
    for name in names {
        let n = plan.networks.get_mut(&name).expect("listed above");
        if n.external || n.subnet.is_some() {
            continue;
        }
        let prefix = match n.subnet_request {
            Some(SubnetRequest::Size(p)) => p,
            _ => DEFAULT_PREFIX,
        };
        let offset = if facts.carve_offset == 0 { 0 } else { crate::plan::fnv1a(format!("{}/{name}", facts.carve_offset).as_bytes()) };
        let Some(subnet) = pools.iter().find_map(|pool| taken.first_free_from(pool, prefix, offset)) else {
            // A pool taken whole by one range is no leak of environments: say which range it is.
            let whole: Vec<String> =
                pools.iter().flat_map(|p| facts.taken_subnets.iter().filter(move |t| t.contains(p)).map(move |t| format!("{t} covers {p}"))).collect();
            let covered = if whole.is_empty() {
                String::new()
            } else {
                format!(
                    " ({}: an existing network, a host route, or a swarm's address pool — Swarm's default is 10.0.0.0/8; `docker swarm init --default-addr-pool` sets another)",
                    whole.join(", ")
                )
            };
            let pools = pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            return Err(ResolveError::PoolExhausted { network: name, prefix, pools, covered });
        };
        taken.insert(&subnet);
        n.subnet = Some(subnet.to_string());
        plan.set_by(format!("networks.{name}.subnet"), "orch");
    }
    for n in plan.networks.values_mut() {
        if n.gateway.is_none()
            && let Some(net) = n.subnet.as_ref().and_then(|s| s.parse::<Ipv4Net>().ok())
        {
            n.gateway = net.hosts().next().map(|g: Ipv4Addr| g.to_string());
        }
    }
    Ok(())
}

/// Which host ports are still free: a union-find "next free port at or after p" over all 65,536 ports, so every
/// pick is near O(1) however many ports are taken and however many ranges are asked for.
struct FreePorts {
    next: Vec<u32>,
}

impl FreePorts {
    fn new(taken: &BTreeSet<u16>) -> FreePorts {
        let mut f = FreePorts { next: (0..=65_536).collect() };
        for p in taken {
            f.claim(*p);
        }
        f
    }

    fn find(&mut self, p: u32) -> u32 {
        let mut root = p;
        while self.next[root as usize] != root {
            root = self.next[root as usize];
        }
        let mut p = p;
        while self.next[p as usize] != root {
            let up = self.next[p as usize];
            self.next[p as usize] = root;
            p = up;
        }
        root
    }

    fn claim(&mut self, port: u16) {
        self.next[port as usize] = u32::from(port) + 1;
    }

    /// The first free port in [from, end], else in [start, from), claimed.
    fn take(&mut self, start: u16, end: u16, from: u16) -> Option<u16> {
        let found =
            Some(self.find(u32::from(from))).filter(|p| *p <= u32::from(end)).or_else(|| Some(self.find(u32::from(start))).filter(|p| *p < u32::from(from)))?;
        let port = found as u16;
        self.claim(port);
        Some(port)
    }
}

fn resolve_ports(plan: &mut Plan, facts: &Facts) -> Result<(), ResolveError> {
    let mut taken: BTreeSet<u16> = facts.taken_host_ports.clone();
    // Fixed ports are claimed before ranges are searched, so a range never hands out a port a fixed mapping uses.
    for s in plan.services.values() {
        for p in &s.ports {
            if let PortStrategy::Fixed { port } = p.strategy {
                taken.insert(port);
            }
        }
    }
    let mut free = FreePorts::new(&taken);
    let seed = plan.identity.seed();
    let mut assigned = vec![];
    for (sname, s) in plan.services.iter_mut() {
        for p in s.ports.iter_mut() {
            let key = p.key();
            let exhausted = |start, end| ResolveError::PortsExhausted { service: sname.clone(), port: key.clone(), start, end };
            p.host_port = match p.strategy {
                PortStrategy::Fixed { port } => Some(port),
                PortStrategy::Range { start, end } => Some(free.take(start, end, start).ok_or_else(|| exhausted(start, end))?),
                PortStrategy::Hashed { start, end } => {
                    let len = u32::from(end - start) + 1;
                    let h = fnv1a(format!("{seed}/{sname}/{key}").as_bytes());
                    let first = start + (h % u64::from(len)) as u16;
                    Some(free.take(start, end, first).ok_or_else(|| exhausted(start, end))?)
                }
                PortStrategy::Ephemeral | PortStrategy::Unpublished => None,
            };
            if p.host_port.is_some() && !matches!(p.strategy, PortStrategy::Fixed { .. }) {
                assigned.push(format!("services.{sname}.ports.{key}.host_port"));
            }
        }
    }
    for path in assigned {
        plan.set_by(path, "orch");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_set_carves_like_the_scan_did() {
        let pool: Ipv4Net = "10.192.0.0/22".parse().unwrap();
        let mut taken = Taken::default();
        taken.insert(&"10.192.0.0/23".parse().unwrap());
        assert_eq!(taken.first_free(&pool, 24).unwrap().to_string(), "10.192.2.0/24");
        taken.insert(&"10.192.2.128/25".parse().unwrap());
        assert_eq!(taken.first_free(&pool, 24).unwrap().to_string(), "10.192.3.0/24");
        assert_eq!(taken.first_free(&pool, 26).unwrap().to_string(), "10.192.2.0/26");
        taken.insert(&"10.192.3.0/24".parse().unwrap());
        assert_eq!(taken.first_free(&pool, 24), None);
        assert!(taken.overlaps(&"10.192.1.7/32".parse().unwrap()).is_some());
        assert!(taken.overlaps(&"10.193.0.0/16".parse().unwrap()).is_none());
        // Carved subnets merge into one interval, so the next pick jumps over all of them at once.
        let big: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let mut t = Taken::default();
        for _ in 0..20_000 {
            let n = t.first_free(&big, 28).unwrap();
            t.insert(&n);
        }
        assert_eq!(t.intervals.len(), 1);
    }

    #[test]
    fn carving_from_an_offset_spreads_out_and_wraps() {
        let pool: Ipv4Net = "10.192.0.0/22".parse().unwrap();
        let mut taken = Taken::default();
        taken.insert(&"10.192.0.0/24".parse().unwrap());
        assert_eq!(taken.first_free_from(&pool, 24, 0).unwrap().to_string(), "10.192.1.0/24", "offset 0 is first-free");
        assert_eq!(taken.first_free_from(&pool, 24, 2).unwrap().to_string(), "10.192.2.0/24");
        assert_eq!(taken.first_free_from(&pool, 24, 6).unwrap().to_string(), "10.192.2.0/24", "modulo the pool's four slots");
        taken.insert(&"10.192.3.0/24".parse().unwrap());
        assert_eq!(taken.first_free_from(&pool, 24, 3).unwrap().to_string(), "10.192.1.0/24", "wraps to the start");
        taken.insert(&"10.192.1.0/24".parse().unwrap());
        taken.insert(&"10.192.2.0/24".parse().unwrap());
        assert_eq!(taken.first_free_from(&pool, 24, 3), None);
    }

    #[test]
    fn free_ports_wrap_and_run_out() {
        let mut f = FreePorts::new(&BTreeSet::from([100, 101, 103]));
        assert_eq!(f.take(100, 104, 100), Some(102));
        assert_eq!(f.take(100, 104, 104), Some(104));
        assert_eq!(f.take(100, 104, 104), None);
        let mut g = FreePorts::new(&BTreeSet::new());
        assert_eq!(g.take(10, 12, 12), Some(12));
        assert_eq!(g.take(10, 12, 12), Some(10), "wraps to the start of the range");
        assert_eq!(g.take(65_535, 65_535, 65_535), Some(65_535));
        assert_eq!(g.take(65_535, 65_535, 65_535), None);
    }

    #[test]
    fn a_pool_taken_whole_is_named_with_what_covers_it() {
        let mut plan = crate::test_support::drafted("services:\n  a: {image: img}\n", "p", "e1");
        let mut facts = Facts::default();
        facts.taken_subnets.insert("10.0.0.0/8".parse().unwrap());
        let err = resolve(&mut plan, &facts, &[DEFAULT_POOL.parse().unwrap()]).expect_err("no subnet is free").to_string();
        assert!(err.contains("10.0.0.0/8 covers 10.192.0.0/12") && err.contains("--default-addr-pool"), "{err}");
    }

    #[test]
    fn carving_skips_taken() {
        let pool: Ipv4Net = "10.192.0.0/22".parse().unwrap();
        let taken: Ipv4Net = "10.192.0.0/23".parse().unwrap();
        let first = pool.subnets(24).unwrap().find(|c| !overlaps(&taken, c)).unwrap();
        assert_eq!(first.to_string(), "10.192.2.0/24");
    }
}
