//! The resolved plan as an equivalent compose file (`orch plan --format compose`): what docker compose would need
//! to create the same environment, with orch's names, subnets, host ports and labels written out.

use serde_json::{Map, Value, json};

use crate::plan::{Plan, PortStrategy};

fn ms(v: Option<u64>) -> Option<Value> {
    v.map(|ms| Value::String(format!("{ms}ms")))
}

fn insert_some(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.into(), v);
    }
}

pub fn to_compose(plan: &Plan) -> Value {
    let id = &plan.identity;
    let mut services = Map::new();
    for (name, s) in &plan.services {
        let mut m = Map::new();
        m.insert("container_name".into(), json!(s.container_name));
        insert_some(&mut m, "image", s.image.as_ref().map(|i| json!(i)));
        if let Some(b) = &s.build {
            let mut bm = Map::new();
            bm.insert("context".into(), json!(b.context));
            insert_some(&mut bm, "dockerfile", b.dockerfile.as_ref().map(|d| json!(d)));
            insert_some(&mut bm, "target", b.target.as_ref().map(|d| json!(d)));
            if !b.args.is_empty() {
                bm.insert("args".into(), json!(b.args));
            }
            m.insert("build".into(), Value::Object(bm));
        }
        insert_some(&mut m, "command", s.command.as_ref().map(|c| json!(c)));
        insert_some(&mut m, "entrypoint", s.entrypoint.as_ref().map(|c| json!(c)));
        if !s.environment.is_empty() {
            m.insert("environment".into(), json!(s.environment));
        }
        let ports: Vec<Value> = s
            .ports
            .iter()
            .filter(|p| p.strategy != PortStrategy::Unpublished)
            .map(|p| {
                let ip = p.host_ip.as_ref().map(|i| format!("{i}:")).unwrap_or_default();
                let host = p.host_port.map(|h| h.to_string()).unwrap_or_default();
                if host.is_empty() && ip.is_empty() {
                    json!(format!("{}/{}", p.container_port, p.protocol))
                } else {
                    json!(format!("{ip}{host}:{}/{}", p.container_port, p.protocol))
                }
            })
            .collect();
        if !ports.is_empty() {
            m.insert("ports".into(), Value::Array(ports));
        }
        let mut nets = Map::new();
        for (n, a) in &s.networks {
            let mut am = Map::new();
            let mut aliases = a.aliases.clone();
            if let Some(c) = &s.requested_container_name
                && !aliases.contains(c)
            {
                aliases.push(c.clone());
            }
            if !aliases.is_empty() {
                am.insert("aliases".into(), json!(aliases));
            }
            insert_some(&mut am, "ipv4_address", a.ipv4_address.as_ref().map(|i| json!(i)));
            nets.insert(n.clone(), Value::Object(am));
        }
        m.insert("networks".into(), Value::Object(nets));
        if let Some(h) = &s.healthcheck {
            let mut hm = Map::new();
            hm.insert("test".into(), json!(h.test));
            insert_some(&mut hm, "interval", ms(h.interval_ms));
            insert_some(&mut hm, "timeout", ms(h.timeout_ms));
            insert_some(&mut hm, "retries", h.retries.map(|r| json!(r)));
            insert_some(&mut hm, "start_period", ms(h.start_period_ms));
            m.insert("healthcheck".into(), Value::Object(hm));
        }
        if !s.depends_on.is_empty() {
            let deps: Map<String, Value> = s.depends_on.iter().map(|(d, c)| (d.clone(), json!({ "condition": c }))).collect();
            m.insert("depends_on".into(), Value::Object(deps));
        }
        let r = &s.resources;
        if r.memory_limit.is_some() || r.cpus.is_some() || r.memory_reservation.is_some() {
            let mut limits = Map::new();
            insert_some(&mut limits, "memory", r.memory_limit.map(|b| json!(format!("{b}b"))));
            insert_some(&mut limits, "cpus", r.cpus.map(|c| json!(c.to_string())));
            let mut res = Map::new();
            res.insert("limits".into(), Value::Object(limits));
            if let Some(b) = r.memory_reservation {
                res.insert("reservations".into(), json!({ "memory": format!("{b}b") }));
            }
            m.insert("deploy".into(), json!({ "resources": res }));
        }
        if !s.tmpfs.is_empty() {
            m.insert("tmpfs".into(), json!(s.tmpfs));
        }
        if !s.volumes.is_empty() {
            let vols: Vec<Value> = s
                .volumes
                .iter()
                .map(|v| {
                    let src = match (&v.kind[..], &v.source) {
                        ("volume", Some(src)) => plan.volumes.get(src).map(|p| p.docker_name.clone()).unwrap_or_else(|| src.clone()),
                        (_, Some(src)) => src.clone(),
                        _ => String::new(),
                    };
                    let ro = if v.read_only { ":ro" } else { "" };
                    if src.is_empty() { json!(format!("{}{ro}", v.target)) } else { json!(format!("{src}:{}{ro}", v.target)) }
                })
                .collect();
            m.insert("volumes".into(), Value::Array(vols));
        }
        let mut labels = s.labels.clone();
        labels.extend(id.labels());
        labels.insert("orch.service".into(), name.clone());
        m.insert("labels".into(), json!(labels));
        insert_some(&mut m, "restart", s.restart.as_ref().map(|r| json!(r)));
        insert_some(&mut m, "user", s.user.as_ref().map(|r| json!(r)));
        insert_some(&mut m, "working_dir", s.working_dir.as_ref().map(|r| json!(r)));
        insert_some(&mut m, "hostname", s.hostname.as_ref().map(|r| json!(r)));
        if let Some(l) = &s.logging {
            m.insert("logging".into(), json!({ "driver": l.driver.clone().unwrap_or_else(|| "json-file".into()), "options": l.options }));
        }
        services.insert(name.clone(), Value::Object(m));
    }
    let mut networks = Map::new();
    for (name, n) in &plan.networks {
        let mut m = Map::new();
        m.insert("name".into(), json!(n.docker_name));
        if n.external {
            m.insert("external".into(), json!(true));
        } else {
            m.insert("driver".into(), json!(n.driver));
            if n.internal {
                m.insert("internal".into(), json!(true));
            }
            if !n.driver_opts.is_empty() {
                m.insert("driver_opts".into(), json!(n.driver_opts));
            }
            let mut c = Map::new();
            insert_some(&mut c, "subnet", n.subnet.as_ref().map(|v| json!(v)));
            insert_some(&mut c, "gateway", n.gateway.as_ref().map(|v| json!(v)));
            insert_some(&mut c, "ip_range", n.ip_range.as_ref().map(|v| json!(v)));
            m.insert("ipam".into(), json!({ "config": [Value::Object(c)] }));
            let mut labels = n.labels.clone();
            labels.extend(id.labels());
            m.insert("labels".into(), json!(labels));
        }
        networks.insert(name.clone(), Value::Object(m));
    }
    let mut out = Map::new();
    // Identity goes in an extension block: docker-compose v1 rejects a top-level `name:`.
    out.insert("x-orch".into(), json!({ "project": id.project, "env": id.env_id, "env_kind": id.env_kind }));
    out.insert("services".into(), Value::Object(services));
    out.insert("networks".into(), Value::Object(networks));
    if !plan.volumes.is_empty() {
        let vols: Map<String, Value> = plan
            .volumes
            .iter()
            .map(|(n, v)| {
                let body = if v.external { json!({ "name": v.docker_name, "external": true }) } else { json!({ "name": v.docker_name, "labels": id.labels() }) };
                (n.clone(), body)
            })
            .collect();
        out.insert("volumes".into(), Value::Object(vols));
    }
    Value::Object(out)
}
