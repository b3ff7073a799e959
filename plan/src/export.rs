//! The resolved plan as an equivalent compose file (`orch plan --format compose`): what docker compose would need
//! to create the same environment, with orch's names, subnets, host ports and labels written out.

use serde_json::{Map, Value, json};

use orch_compose::{Mount, Runtime};

use crate::plan::{FileSource, Plan, PortStrategy};

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
    let (mut secrets, mut configs) = (Map::new(), Map::new());
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
            // The rest only when set: several are newer than docker-compose v1.
            insert_some(&mut bm, "dockerfile_inline", b.dockerfile_inline.as_ref().map(|d| json!(d)));
            insert_some(&mut bm, "network", b.network.as_ref().map(|d| json!(d)));
            insert_some(&mut bm, "shm_size", b.shm_size.map(|d| json!(d)));
            insert_some(&mut bm, "platforms", b.platform.as_ref().map(|p| json!([p])));
            insert_some(&mut bm, "pull", b.pull.map(|d| json!(d)));
            insert_some(&mut bm, "no_cache", b.no_cache.map(|d| json!(d)));
            for (key, list) in [("extra_hosts", &b.extra_hosts), ("cache_from", &b.cache_from), ("tags", &b.tags)] {
                if !list.is_empty() {
                    bm.insert(key.into(), json!(list));
                }
            }
            if !b.labels.is_empty() {
                bm.insert("labels".into(), json!(b.labels));
            }
            if !b.additional_contexts.is_empty() {
                bm.insert("additional_contexts".into(), json!(b.additional_contexts));
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
            let vols: Vec<Value> = s.volumes.iter().map(mount).collect();
            m.insert("volumes".into(), Value::Array(vols));
        }
        let mut labels = s.labels.clone();
        labels.extend(id.labels());
        labels.insert(crate::labels::SERVICE.into(), name.clone());
        m.insert("labels".into(), json!(labels));
        insert_some(&mut m, "restart", s.restart.as_ref().map(|r| json!(r)));
        insert_some(&mut m, "user", s.user.as_ref().map(|r| json!(r)));
        insert_some(&mut m, "working_dir", s.working_dir.as_ref().map(|r| json!(r)));
        insert_some(&mut m, "hostname", s.hostname.as_ref().map(|r| json!(r)));
        if let Some(l) = &s.logging {
            m.insert("logging".into(), json!({ "driver": l.driver.clone().unwrap_or_else(|| "json-file".into()), "options": l.options }));
        }
        insert_some(&mut m, "stop_grace_period", ms(s.stop_grace_period_ms));
        if !s.expose.is_empty() {
            m.insert("expose".into(), json!(s.expose));
        }
        insert_some(&mut m, "network_mode", s.network_mode.as_ref().map(|n| json!(n)));
        if s.network_mode.is_some() {
            m.remove("networks");
        }
        if !s.volumes_from.is_empty() {
            m.insert("volumes_from".into(), json!(s.volumes_from));
        }
        if !s.links.is_empty() {
            m.insert("links".into(), json!(s.links.iter().map(|(svc, alias)| format!("{svc}:{alias}")).collect::<Vec<_>>()));
        }
        insert_some(&mut m, "pull_policy", s.pull_policy.as_ref().map(|n| json!(n)));
        for kind in ["secret", "config"] {
            let refs: Vec<Value> = s
                .files
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| {
                    let mut r = Map::new();
                    r.insert("source".into(), json!(f.name));
                    r.insert("target".into(), json!(f.target));
                    insert_some(&mut r, "uid", f.uid.as_ref().map(|v| json!(v)));
                    insert_some(&mut r, "gid", f.gid.as_ref().map(|v| json!(v)));
                    insert_some(&mut r, "mode", f.mode.map(|v| json!(v)));
                    Value::Object(r)
                })
                .collect();
            if !refs.is_empty() {
                m.insert(format!("{kind}s"), Value::Array(refs));
            }
            for f in s.files.iter().filter(|f| f.kind == kind) {
                let def = match &f.source {
                    FileSource::File { path } => json!({ "file": path }),
                    FileSource::Environment { variable, .. } => json!({ "environment": variable }),
                    FileSource::Content { content } => json!({ "content": content }),
                };
                let table = if kind == "secret" { &mut secrets } else { &mut configs };
                table.insert(f.name.clone(), def);
            }
        }
        runtime(&mut m, &s.runtime);
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
                let body =
                    if v.external { json!({ "name": v.docker_name, "external": true }) } else { json!({ "name": v.docker_name, "labels": id.labels() }) };
                (n.clone(), body)
            })
            .collect();
        out.insert("volumes".into(), Value::Object(vols));
    }
    if !secrets.is_empty() {
        out.insert("secrets".into(), Value::Object(secrets));
    }
    if !configs.is_empty() {
        out.insert("configs".into(), Value::Object(configs));
    }
    let mut out = Value::Object(out);
    escape_dollars(&mut out);
    out
}

/// Plan values are final (interpolated): every `$` is written as `$$` so that compose reads back the same text.
fn escape_dollars(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Array(items) => items.iter_mut().for_each(escape_dollars),
        Value::Object(m) => m.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

/// A mount in compose's long syntax, which carries every option; named volumes keep their compose key (the
/// top-level entry maps it to the engine-side name).
fn mount(v: &Mount) -> Value {
    // A bind that creates its host path is the short syntax (`create_host_path` is unknown to docker-compose v1).
    if v.kind == "bind" && v.create_host_path {
        let opts: Vec<&str> = [v.read_only.then_some("ro"), v.selinux.as_deref(), v.propagation.as_deref()].into_iter().flatten().collect();
        let src = v.source.as_deref().unwrap_or_default();
        return if opts.is_empty() { json!(format!("{src}:{}", v.target)) } else { json!(format!("{src}:{}:{}", v.target, opts.join(","))) };
    }
    let mut m = Map::new();
    m.insert("type".into(), json!(v.kind));
    insert_some(&mut m, "source", v.source.as_ref().map(|s| json!(s)));
    m.insert("target".into(), json!(v.target));
    if v.read_only {
        m.insert("read_only".into(), json!(true));
    }
    match v.kind.as_str() {
        "bind" => {
            let mut b = Map::new();
            insert_some(&mut b, "propagation", v.propagation.as_ref().map(|p| json!(p)));
            insert_some(&mut b, "selinux", v.selinux.as_ref().map(|p| json!(p)));
            if !b.is_empty() {
                m.insert("bind".into(), Value::Object(b));
            }
        }
        "volume" if v.nocopy || v.subpath.is_some() => {
            let mut b = Map::new();
            if v.nocopy {
                b.insert("nocopy".into(), json!(true));
            }
            insert_some(&mut b, "subpath", v.subpath.as_ref().map(|p| json!(p)));
            m.insert("volume".into(), Value::Object(b));
        }
        "tmpfs" if v.tmpfs_size.is_some() || v.tmpfs_mode.is_some() => {
            let mut t = Map::new();
            insert_some(&mut t, "size", v.tmpfs_size.map(|b| json!(b)));
            insert_some(&mut t, "mode", v.tmpfs_mode.map(|b| json!(b)));
            m.insert("tmpfs".into(), Value::Object(t));
        }
        _ => {}
    }
    Value::Object(m)
}

/// Container options under their compose names.
fn runtime(m: &mut Map<String, Value>, rt: &Runtime) {
    let Value::Object(fields) = serde_json::to_value(rt).expect("runtime serialises") else {
        return;
    };
    for (k, v) in fields {
        match k.as_str() {
            "blkio" => {
                let b = rt.blkio.clone().unwrap_or_default();
                let pairs = |list: &[(String, u64)]| list.iter().map(|(p, r)| json!({ "path": p, "rate": r })).collect::<Vec<_>>();
                let mut o = Map::new();
                insert_some(&mut o, "weight", b.weight.map(|w| json!(w)));
                for (name, list) in [
                    ("device_read_bps", &b.device_read_bps),
                    ("device_write_bps", &b.device_write_bps),
                    ("device_read_iops", &b.device_read_iops),
                    ("device_write_iops", &b.device_write_iops),
                ] {
                    if !list.is_empty() {
                        o.insert(name.into(), json!(pairs(list)));
                    }
                }
                if !b.weight_device.is_empty() {
                    o.insert("weight_device".into(), json!(b.weight_device.iter().map(|(p, w)| json!({ "path": p, "weight": w })).collect::<Vec<_>>()));
                }
                m.insert("blkio_config".into(), Value::Object(o));
            }
            "devices" => {
                m.insert("devices".into(), json!(rt.devices.iter().map(|d| format!("{}:{}:{}", d.source, d.target, d.permissions)).collect::<Vec<_>>()));
            }
            "placement" => {
                let deploy = m.entry("deploy").or_insert_with(|| json!({})).as_object_mut().expect("deploy is a mapping");
                deploy.insert("placement".into(), json!({ "constraints": v }));
            }
            "device_requests" => {
                let deploy = m.entry("deploy").or_insert_with(|| json!({})).as_object_mut().expect("deploy is a mapping");
                let resources = deploy.entry("resources").or_insert_with(|| json!({})).as_object_mut().expect("resources is a mapping");
                let reservations = resources.entry("reservations").or_insert_with(|| json!({})).as_object_mut().expect("reservations is a mapping");
                reservations.insert("devices".into(), v);
            }
            _ => {
                m.insert(k, v);
            }
        }
    }
}
