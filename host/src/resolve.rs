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
    #[error("no free /{prefix} subnet left for network {network} in the pools {pools}; remove stale environments (`orch gc`) or add a pool with --pool CIDR")]
    PoolExhausted { network: String, prefix: u8, pools: String },
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

fn prune_unused_networks(plan: &mut Plan) {
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

fn resolve_subnets(plan: &mut Plan, facts: &Facts, pools: &[Ipv4Net]) -> Result<(), ResolveError> {
    let mut taken: Vec<Ipv4Net> = facts.taken_subnets.iter().copied().collect();
    // Fixed subnets first, so carving avoids them; conflicts among them are reported by validation.
    for (name, n) in plan.networks.iter_mut() {
        if let Some(SubnetRequest::Fixed(cidr)) = &n.subnet_request {
            let net: Ipv4Net = cidr.parse().map_err(|_| ResolveError::BadSubnet { network: name.clone(), value: cidr.clone() })?;
            n.subnet = Some(net.to_string());
            taken.push(net.trunc());
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
        let found = pools
            .iter()
            .filter(|pool| pool.prefix_len() <= prefix)
            .flat_map(|pool| pool.subnets(prefix).into_iter().flatten())
            .find(|candidate| !taken.iter().any(|t| overlaps(t, candidate)));
        let Some(subnet) = found else {
            return Err(ResolveError::PoolExhausted { network: name, prefix, pools: pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ") });
        };
        taken.push(subnet);
        n.subnet = Some(subnet.to_string());
        plan.set_by(format!("networks.{name}.subnet"), "orch");
    }
    for (name, n) in plan.networks.iter_mut() {
        if n.gateway.is_none()
            && let Some(net) = n.subnet.as_ref().and_then(|s| s.parse::<Ipv4Net>().ok())
        {
            n.gateway = net.hosts().next().map(|g: Ipv4Addr| g.to_string());
            let _ = name;
        }
    }
    Ok(())
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
    let seed = plan.identity.seed();
    let mut assigned = vec![];
    for (sname, s) in plan.services.iter_mut() {
        for p in s.ports.iter_mut() {
            let key = p.key();
            p.host_port = match p.strategy {
                PortStrategy::Fixed { port } => Some(port),
                PortStrategy::Range { start, end } => {
                    let port = (start..=end).find(|c| !taken.contains(c)).ok_or_else(|| ResolveError::PortsExhausted {
                        service: sname.clone(),
                        port: key.clone(),
                        start,
                        end,
                    })?;
                    taken.insert(port);
                    Some(port)
                }
                PortStrategy::Hashed { start, end } => {
                    let len = u32::from(end - start) + 1;
                    let h = fnv1a(format!("{seed}/{sname}/{key}").as_bytes());
                    let first = (h % u64::from(len)) as u32;
                    let port = (0..len)
                        .map(|i| start + ((first + i) % len) as u16)
                        .find(|c| !taken.contains(c))
                        .ok_or_else(|| ResolveError::PortsExhausted { service: sname.clone(), port: key.clone(), start, end })?;
                    taken.insert(port);
                    Some(port)
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
    fn carving_skips_taken() {
        let pool: Ipv4Net = "10.192.0.0/22".parse().unwrap();
        let taken: Ipv4Net = "10.192.0.0/23".parse().unwrap();
        let first = pool.subnets(24).unwrap().find(|c| !overlaps(&taken, c)).unwrap();
        assert_eq!(first.to_string(), "10.192.2.0/24");
    }
}
