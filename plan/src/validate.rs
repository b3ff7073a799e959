//! Plan validation: everything that would make `up` fail or environments collide, found before anything starts.
//! Problems become diagnostics on the plan (errors stop it; warnings are shown).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::facts::Facts;
use crate::plan::{Level, Plan, PortStrategy, ServicePlan, SubnetRequest};

const SOURCE: &str = "orch";

/// RFC 1918 private space; anything else (e.g. 172.32.0.0/16) is someone's public address space.
pub fn is_private(net: &Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].iter().any(|p| p.parse::<Ipv4Net>().expect("literal").contains(net))
}

/// Problems found so far: (level, code, message, path).
#[derive(Default)]
struct Findings(Vec<(Level, &'static str, String, Option<String>)>);

impl Findings {
    fn err(&mut self, code: &'static str, message: String, path: String) {
        self.0.push((Level::Error, code, message, Some(path)));
    }
    fn warn(&mut self, code: &'static str, message: String, path: String) {
        self.0.push((Level::Warning, code, message, Some(path)));
    }
}

/// The most diagnostics of one code a plan carries; past it, one summary says how many more there were.
pub const PER_CODE: usize = 50;

/// Drops repeated diagnostics and caps each code at [`PER_CODE`], so no input can make the plan (and its output)
/// grow without bound.
pub fn bound_diagnostics(plan: &mut Plan) {
    let mut seen = BTreeSet::new();
    let mut per_code: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut kept = Vec::with_capacity(plan.diagnostics.len().min(1024));
    for d in std::mem::take(&mut plan.diagnostics) {
        if !seen.insert((d.code.clone(), d.message.clone(), d.path.clone())) {
            continue;
        }
        let n = per_code.entry((d.code.clone(), d.source.clone())).or_default();
        *n += 1;
        if *n <= PER_CODE {
            kept.push(d);
        }
    }
    for ((code, source), n) in per_code.into_iter().filter(|(_, n)| *n > PER_CODE) {
        let level = kept.iter().filter(|d| d.code == code).map(|d| d.level).max().unwrap_or(Level::Warning);
        kept.push(crate::plan::Diagnostic {
            level,
            code: code.clone(),
            message: format!("… and {} more {code} diagnostics like these", n - PER_CODE),
            path: None,
            source,
        });
    }
    plan.diagnostics = kept;
}

/// Placement constraints apply only where the engine places services. There the compose import's "not applied" note
/// is wrong and goes; on one engine a plugin's placement gets the note the compose file's placement gets.
fn placement_notes(plan: &mut Plan, facts: &Facts) {
    if facts.places_services {
        plan.diagnostics.retain(|d| !(d.code == "compose.not-applied" && d.path.as_deref().is_some_and(|p| p.ends_with("deploy.placement.constraints"))));
        // Where placement is applied its syntax matters: Swarm takes KEY==VALUE and KEY!=VALUE only.
        let mut bad = vec![];
        for (name, s) in &plan.services {
            for c in s.runtime.placement.iter().filter(|c| orch_compose::split_constraint(c).is_none()) {
                bad.push((
                    format!("service {name}: placement constraint {c:?} is neither KEY==VALUE nor KEY!=VALUE, which is all Swarm places by"),
                    format!("services.{name}.deploy.placement.constraints"),
                ));
            }
        }
        for (message, path) in bad {
            plan.diagnose(Level::Error, "plan.placement-invalid", message, Some(path), SOURCE);
        }
        return;
    }
    let mut notes = vec![];
    for (name, s) in plan.services.iter().filter(|(_, s)| !s.runtime.placement.is_empty()) {
        let path = format!("services.{name}.placement");
        if let Some(source) = plan.provenance.get(&path).and_then(|chain| chain.last()).filter(|s| s.starts_with("plugin:")) {
            let message = format!(
                "service {name}: placement {} (from {source}) is not applied: one engine is one node; only the swarm engine (--engine swarm) places services",
                s.runtime.placement.join(", ")
            );
            notes.push((message, path, source.clone()));
        }
    }
    for (message, path, source) in notes {
        plan.diagnose(Level::Warning, "plan.placement-not-applied", message, Some(path), &source);
    }
}

/// Checks the plan against itself and the facts: every finding becomes a diagnostic (naming the plugin that decided
/// the value at fault, if one did).
pub fn validate(plan: &mut Plan, facts: &Facts) {
    placement_notes(plan, facts);
    let mut f = Findings::default();
    let subnets = check_networks(plan, facts, &mut f);
    check_overlaps(&subnets, &mut f);
    // Host ports: (protocol, port) → (service, host ip) already holding it.
    let mut bound = Bound::new();
    for (sname, s) in &plan.services {
        check_network_mode(plan, sname, s, &mut f);
        check_references(plan, sname, s, &mut f);
        check_files(sname, s, &mut f);
        check_ports(plan, facts, sname, s, &mut bound, &mut f);
    }
    if let Some(cycle) = dependency_cycle(plan) {
        f.0.push((Level::Error, "plan.dependency-cycle", format!("services depend on each other in a cycle: {}", cycle.join(" → ")), None));
    }
    for (level, code, message, path) in f.0 {
        // A problem with a value a plugin decided names that plugin: the fix is in its settings, not the compose file.
        let message = match path.as_deref().and_then(|p| decided_by(plan, p)) {
            Some(plugin) => format!("{message} (the value comes from {plugin})"),
            None => message,
        };
        plan.diagnose(level, code, message, path, SOURCE);
    }
    bound_diagnostics(plan);
}

/// Each network's subnet, gateway and range; the subnets that parse, by network.
fn check_networks(plan: &Plan, facts: &Facts, f: &mut Findings) -> Vec<(String, Ipv4Net)> {
    let mut subnets: Vec<(String, Ipv4Net)> = vec![];
    let mut taken = crate::resolve::Taken::default();
    for t in &facts.taken_subnets {
        taken.insert(t);
    }
    for (name, n) in &plan.networks {
        let path = format!("networks.{name}");
        let Some(text) = &n.subnet else { continue };
        let Ok(net) = text.parse::<Ipv4Net>() else {
            f.err("plan.subnet-invalid", format!("network {name}: {text:?} is not an IPv4 CIDR"), path);
            continue;
        };
        if net.trunc() != net {
            f.err("plan.subnet-host-bits", format!("network {name}: subnet {net} has host bits set; did you mean {}?", net.trunc()), path.clone());
        }
        // Carved subnets avoid existing ones by construction; fixed ones are checked against what the engine has
        // (an external network is among what the engine has: its own subnet is no conflict).
        if !n.external
            && matches!(n.subnet_request, Some(SubnetRequest::Fixed(_)))
            && let Some(t) = taken.overlaps(&net.trunc())
        {
            f.err(
                "plan.subnet-taken",
                format!("network {name}: subnet {net} overlaps {t}, which an existing network or host route already uses; pick another subnet or let orch carve one (remove the fixed subnet)"),
                path.clone(),
            );
        }
        if !is_private(&net) {
            f.warn(
                "plan.subnet-public",
                format!("network {name}: subnet {net} is outside private address space (10/8, 172.16/12, 192.168/16); traffic for real hosts in it would be captured by this network"),
                path.clone(),
            );
        }
        if let Some(g) = &n.gateway {
            match g.parse::<Ipv4Addr>() {
                Ok(ip) if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() => {
                    f.err("plan.gateway-outside", format!("network {name}: gateway {ip} is not a host address of {net}"), path.clone())
                }
                Ok(_) => {}
                Err(_) => f.err("plan.gateway-invalid", format!("network {name}: gateway {g:?} is not an IPv4 address"), path.clone()),
            }
        }
        if let Some(r) = &n.ip_range {
            match r.parse::<Ipv4Net>() {
                Ok(range) if !net.contains(&range) => {
                    f.err("plan.ip-range-outside", format!("network {name}: ip_range {range} is not inside {net}"), path.clone())
                }
                Ok(_) => {}
                Err(_) => f.err("plan.ip-range-invalid", format!("network {name}: ip_range {r:?} is not an IPv4 CIDR"), path.clone()),
            }
        }
        subnets.push((name.clone(), net));
    }

    subnets
}

fn check_overlaps(subnets: &[(String, Ipv4Net)], f: &mut Findings) {
    let mut by_start: Vec<&(String, Ipv4Net)> = subnets.iter().collect();
    by_start.sort_by_key(|(_, n)| (u32::from(n.network()), std::cmp::Reverse(u32::from(n.broadcast()))));
    let mut widest: Option<&(String, Ipv4Net)> = None;
    for entry in by_start {
        let (name, net) = entry;
        match widest {
            Some((other, o)) if u32::from(net.network()) <= u32::from(o.broadcast()) => {
                f.err(
                    "plan.subnet-overlap",
                    format!("networks {other} ({o}) and {name} ({net}) overlap; give them disjoint subnets"),
                    format!("networks.{name}"),
                );
                if net.broadcast() > o.broadcast() {
                    widest = Some(entry);
                }
            }
            _ => widest = Some(entry),
        }
    }
}

type Bound = BTreeMap<(String, u16), Vec<(String, Option<String>)>>;

/// A service's network mode against its networks, the service it shares and its published ports.
fn check_network_mode(plan: &Plan, sname: &str, s: &ServicePlan, f: &mut Findings) {
    let sp = format!("services.{sname}");
    match &s.network_mode {
        None if s.networks.is_empty() => {
            f.err("plan.no-network", format!("service {sname} is attached to no network; attach it to at least one"), format!("{sp}.networks"));
        }
        None => {}
        Some(mode) => {
            if !s.networks.is_empty() {
                f.err(
                    "plan.network-mode-and-networks",
                    format!("service {sname} has network_mode {mode} and is also attached to networks ({}); a policy attached it, but a container with a network mode has no networks of its own", s.networks.keys().cloned().collect::<Vec<_>>().join(", ")),
                    format!("{sp}.networks"),
                );
            }
            if let Some(target) = mode.strip_prefix("service:") {
                match plan.services.get(target) {
                    None => f.err(
                        "plan.network-mode-missing",
                        format!("service {sname} shares the network of service {target:?}, which is not in the plan"),
                        format!("{sp}.network_mode"),
                    ),
                    Some(t) if t.network_mode.as_deref().is_some_and(|m| m.starts_with("service:")) => {}
                    Some(_) => {}
                }
            }
            let publishes = s.ports.iter().any(|p| p.strategy != PortStrategy::Unpublished);
            if publishes && mode != "bridge" {
                f.err(
                    "plan.network-mode-ports",
                    format!("service {sname} publishes ports but has network_mode {mode}; publish them on the service whose network it shares"),
                    format!("{sp}.ports"),
                );
            }
        }
    }
}

/// What a service names: services it takes volumes from, networks, dependencies.
fn check_references(plan: &Plan, sname: &str, s: &ServicePlan, f: &mut Findings) {
    let sp = format!("services.{sname}");
    for (i, v) in s.volumes_from.iter().enumerate() {
        let target = v.split(':').next().unwrap_or_default();
        if !v.starts_with("container:") && !plan.services.contains_key(target) {
            f.err(
                "plan.volumes-from-missing",
                format!("service {sname} takes volumes from {target:?}, which is not a service of this plan"),
                format!("{sp}.volumes_from[{i}]"),
            );
        }
    }
    for (net, att) in &s.networks {
        let Some(n) = plan.networks.get(net) else {
            f.err(
                "plan.network-missing",
                format!("service {sname} is attached to network {net:?}, which the plan does not define"),
                format!("{sp}.networks.{net}"),
            );
            continue;
        };
        if let (Some(ip), Some(subnet)) = (&att.ipv4_address, n.subnet.as_ref().and_then(|s| s.parse::<Ipv4Net>().ok())) {
            match ip.parse::<Ipv4Addr>() {
                Ok(addr) if subnet.contains(&addr) => {}
                _ => f.err(
                    "plan.address-outside",
                    format!("service {sname}: ipv4_address {ip} is not in network {net} ({subnet})"),
                    format!("{sp}.networks.{net}"),
                ),
            }
        }
    }
    for dep in s.depends_on.keys() {
        if !plan.services.contains_key(dep) {
            f.err(
                "plan.dependency-missing",
                format!("service {sname} depends on {dep:?}, which is not a service of this plan"),
                format!("{sp}.depends_on.{dep}"),
            );
        }
    }
}

fn check_files(sname: &str, s: &ServicePlan, f: &mut Findings) {
    let sp = format!("services.{sname}");
    // Files are copied into the container before it starts unless bind-mounted: a read-only root filesystem
    // refuses the copy, and a tmpfs mounted over the path at start would hide it.
    let under = |target: &str, dir: &str| target.starts_with(&format!("{}/", dir.trim_end_matches('/')));
    for file in s.files.iter().filter(|file| !file.is_bind()) {
        let tmpfs = s
            .tmpfs
            .iter()
            .map(|t| t.split(':').next().unwrap_or_default())
            .chain(s.volumes.iter().filter(|m| m.kind == "tmpfs").map(|m| m.target.as_str()))
            .find(|t| under(&file.target, t));
        let on_volume = s.volumes.iter().any(|m| m.kind != "tmpfs" && under(&file.target, &m.target));
        let why = match tmpfs {
            Some(t) => Some(format!("the tmpfs at {t} would hide it")),
            None if s.runtime.read_only && !on_volume => Some("the root filesystem is read-only".to_string()),
            None => None,
        };
        if let Some(why) = why {
            f.err(
                "plan.file-not-writable",
                format!(
                    "service {sname}: {} {} cannot be copied to {}: {why}; give it a `file:` source without uid/gid/mode (bind-mounted) or another target",
                    file.kind, file.name, file.target
                ),
                format!("{sp}.{}s", file.kind),
            );
        }
    }
}

fn check_ports(plan: &Plan, facts: &Facts, sname: &str, s: &ServicePlan, bound: &mut Bound, f: &mut Findings) {
    let sp = format!("services.{sname}");
    let only_internal = !s.networks.is_empty() && s.networks.keys().all(|n| plan.networks.get(n).is_some_and(|n| n.internal));
    for p in &s.ports {
        let pp = format!("{sp}.ports.{}", p.key());
        let Some(host) = p.host_port else { continue };
        if only_internal && p.strategy != PortStrategy::Unpublished {
            f.warn(
                "plan.port-on-internal",
                format!("service {sname} is only on internal networks, so its published port {host} will not be reachable"),
                pp.clone(),
            );
        }
        if matches!(p.strategy, PortStrategy::Fixed { .. }) && facts.taken_host_ports.contains(&host) {
            f.err(
                "plan.port-taken",
                format!("service {sname}: host port {host} is already in use on this machine; use a port range or an ephemeral port"),
                pp.clone(),
            );
        }
        let holders = bound.entry((p.protocol.clone(), host)).or_default();
        let wildcard = |ip: &Option<String>| ip.as_deref().is_none_or(|i| i == "0.0.0.0" || i == "::");
        if let Some((other, _)) = holders.iter().find(|(_, ip)| wildcard(ip) || wildcard(&p.host_ip) || ip == &p.host_ip) {
            f.err("plan.port-duplicate", format!("host port {host}/{} is published by both {other} and {sname}", p.protocol), pp.clone());
        }
        holders.push((sname.to_string(), p.host_ip.clone()));
    }
}

/// The plugin that last decided the field at `path` (or the subnet of the network at `path`), if one did.
fn decided_by(plan: &Plan, path: &str) -> Option<String> {
    [path.to_string(), format!("{path}.subnet")]
        .iter()
        .filter_map(|p| plan.provenance.get(p).and_then(|chain| chain.last()))
        .find(|who| who.starts_with("plugin:"))
        .cloned()
}

/// The first dependency cycle found, as a path that starts and ends with the same service.
pub fn dependency_cycle(plan: &Plan) -> Option<Vec<String>> {
    fn visit<'a>(plan: &'a Plan, s: &'a str, stack: &mut Vec<&'a str>, done: &mut BTreeSet<&'a str>) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|x| *x == s) {
            let mut cycle: Vec<String> = stack[i..].iter().map(|x| x.to_string()).collect();
            cycle.push(s.to_string());
            return Some(cycle);
        }
        if done.contains(s) {
            return None;
        }
        stack.push(s);
        if let Some(service) = plan.services.get(s) {
            for dep in service.depends_on.keys() {
                if let Some(c) = visit(plan, dep, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.insert(s);
        None
    }
    let mut done = BTreeSet::new();
    plan.services.keys().find_map(|s| visit(plan, s, &mut vec![], &mut done))
}

#[cfg(test)]
mod tests {
    use crate::plan::Level;

    #[test]
    fn private_space() {
        assert!(super::is_private(&"172.30.0.0/16".parse().unwrap()));
        assert!(!super::is_private(&"172.32.0.0/16".parse().unwrap()));
        assert!(super::is_private(&"10.192.3.0/24".parse().unwrap()));
    }

    /// Compose ignores placement on one engine; so does orch, there: `node=foo` is only wrong where Swarm places.
    #[test]
    fn placement_syntax_is_checked_only_where_placement_is_applied() {
        let compose = "services:\n  db:\n    image: postgres\n    deploy:\n      placement:\n        constraints: [node=foo]\n";
        let checked = |places_services: bool| {
            let mut plan = crate::test_support::drafted(compose, "pl", "t1");
            let facts = crate::facts::Facts { places_services, ..Default::default() };
            super::validate(&mut plan, &facts);
            plan.diagnostics
        };
        assert!(!checked(false).iter().any(|d| d.level == Level::Error), "one engine does not place: {:?}", checked(false));
        let placed = checked(true);
        assert!(placed.iter().any(|d| d.code == "plan.placement-invalid" && d.level == Level::Error && d.message.contains("node=foo")), "{placed:?}");
    }
}
