//! One service: every field of the specification is applied, refused, or reported as not applied.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::syntax::{check_protocol, parse_published, parse_short_port};
use super::{P, R, kind};
use crate::fields;
use crate::join;
use crate::model::*;

const SWARM_ONLY: &str = "it exists only in Docker Swarm; orch runs one container per service";

impl P<'_> {
    pub(crate) fn service(&mut self, v: &Value, path: &str) -> R<Service> {
        let m = self.mapping_or_empty(v, path)?;
        let mut s = Service::default();
        let mut default_network = true;
        let mut env_from_files: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut labels_from_files: BTreeMap<String, String> = BTreeMap::new();
        let mut deploy_restart = None;
        let mut pids_from_deploy = None;
        for (key, fp, v) in self.fields(&m, path, fields::SERVICE)? {
            let rt = &mut s.runtime;
            match key.as_str() {
                "image" => s.image = self.opt_string(v, &fp)?,
                "build" => s.build = Some(self.build(v, &fp)?),
                "command" => s.command = self.command(v, &fp)?,
                "entrypoint" => s.entrypoint = self.command(v, &fp)?,
                "environment" => s.environment = self.kv(v, &fp)?,
                "env_file" => env_from_files = self.env_files(v, &fp)?,
                "label_file" => {
                    for f in self.string_list(v, &fp)? {
                        let full = self.project_path(&f, &fp, "label_file")?;
                        let text = self.budget.read(&full, crate::input::MAX_ENV_FILE)?;
                        let parsed = crate::interpolate::parse_env_file(&text, &BTreeMap::new()).map_err(|(line, message)| crate::ComposeError::EnvFile {
                            file: full.clone(),
                            line,
                            message,
                        })?;
                        labels_from_files.extend(parsed);
                    }
                }
                "ports" => s.ports = self.ports(v, &fp)?,
                "expose" => s.expose = self.string_list(v, &fp)?,
                "volumes" => s.volumes = self.mounts(v, &fp)?,
                "tmpfs" => s.tmpfs = self.string_list(v, &fp)?,
                "healthcheck" => s.healthcheck = self.healthcheck(v, &fp)?,
                "depends_on" => s.depends_on = self.depends_on(v, &fp)?,
                "networks" => {
                    default_network = false;
                    s.networks = self.service_networks(v, &fp)?;
                }
                "network_mode" => {
                    let mode = self.string(v, &fp)?;
                    if mode.is_empty() {
                        return Err(self.err(&fp, "network_mode is empty; use none, host, bridge, service:NAME or container:NAME"));
                    }
                    if m.contains_key("networks") {
                        return Err(self.err(&fp, "network_mode and networks cannot be combined; keep one of them"));
                    }
                    default_network = false;
                    s.network_mode = Some(mode);
                }
                "profiles" => s.profiles = self.string_list(v, &fp)?,
                "deploy" => self.deploy(v, &fp, &mut s.resources, &mut s.runtime, &mut deploy_restart, &mut pids_from_deploy)?,
                "mem_limit" => s.resources.memory_limit = Some(self.bytes(v, &fp)?),
                "mem_reservation" => s.resources.memory_reservation = Some(self.bytes(v, &fp)?),
                "cpus" => s.resources.cpus = Some(self.float(v, &fp)?),
                "labels" => s.labels = self.labels(v, &fp)?,
                "secrets" => s.secrets = self.service_secrets(v, &fp, "/run/secrets")?,
                "configs" => s.configs = self.service_secrets(v, &fp, "")?,
                "restart" => s.restart = self.opt_string(v, &fp)?,
                "container_name" => s.container_name = self.opt_string(v, &fp)?,
                "hostname" => s.hostname = self.opt_string(v, &fp)?,
                "user" => s.user = self.opt_string(v, &fp)?,
                "working_dir" => s.working_dir = self.opt_string(v, &fp)?,
                "logging" => s.logging = Some(self.logging(v, &fp)?),
                "stop_grace_period" => s.stop_grace_period_ms = Some(self.duration(v, &fp)?),
                "volumes_from" => s.volumes_from = self.strict_list(v, &fp)?,
                "links" => {
                    for l in self.strict_list(v, &fp)? {
                        let (svc, alias) = l.split_once(':').unwrap_or((&l, &l));
                        s.links.push((svc.to_string(), alias.to_string()));
                    }
                }
                "pull_policy" => {
                    let p = self.string(v, &fp)?;
                    s.pull_policy = Some(match p.as_str() {
                        "always" | "never" | "missing" | "build" => p,
                        "if_not_present" => "missing".into(),
                        "daily" | "weekly" => "always".into(),
                        other if other.starts_with("every_") => "always".into(),
                        other => {
                            return Err(
                                self.err(&fp, format!("unknown pull_policy {other:?}; use always, never, missing, build, daily, weekly or every_<duration>"))
                            );
                        }
                    });
                }
                // Container options the engine applies as written.
                "cap_add" => rt.cap_add = self.strict_list(v, &fp)?,
                "cap_drop" => rt.cap_drop = self.strict_list(v, &fp)?,
                "init" => rt.init = Some(self.boolean(v, &fp)?),
                "ulimits" => rt.ulimits = self.ulimits(v, &fp)?,
                "shm_size" => rt.shm_size = Some(self.bytes(v, &fp)?),
                "sysctls" => rt.sysctls = self.labels(v, &fp)?,
                "extra_hosts" => rt.extra_hosts = self.extra_hosts(v, &fp)?,
                "dns" => rt.dns = self.string_list(v, &fp)?,
                "dns_search" => rt.dns_search = self.string_list(v, &fp)?,
                "dns_opt" => rt.dns_opt = self.strict_list(v, &fp)?,
                "read_only" => rt.read_only = self.boolean(v, &fp)?,
                "stop_signal" => rt.stop_signal = self.opt_string(v, &fp)?,
                "domainname" => rt.domainname = self.opt_string(v, &fp)?,
                "pids_limit" => rt.pids_limit = Some(self.integer(v, &fp)?),
                "security_opt" => rt.security_opt = self.strict_list(v, &fp)?,
                "privileged" => rt.privileged = self.boolean(v, &fp)?,
                "devices" => rt.devices = self.devices(v, &fp)?,
                "gpus" => rt.device_requests.extend(self.gpus(v, &fp)?),
                "device_cgroup_rules" => rt.device_cgroup_rules = self.strict_list(v, &fp)?,
                "tty" => rt.tty = self.boolean(v, &fp)?,
                "stdin_open" => rt.stdin_open = self.boolean(v, &fp)?,
                "ipc" => rt.ipc = self.opt_string(v, &fp)?,
                "pid" => rt.pid = self.opt_string(v, &fp)?,
                "uts" => rt.uts = self.opt_string(v, &fp)?,
                "userns_mode" => rt.userns_mode = self.opt_string(v, &fp)?,
                "cgroup" => {
                    let c = self.string(v, &fp)?;
                    if !matches!(c.as_str(), "host" | "private") {
                        return Err(self.err(&fp, format!("cgroup must be host or private, not {c:?}")));
                    }
                    rt.cgroup = Some(c);
                }
                "cgroup_parent" => rt.cgroup_parent = self.opt_string(v, &fp)?,
                "group_add" => rt.group_add = self.strict_list(v, &fp)?,
                "oom_score_adj" => {
                    let n = self.integer(v, &fp)?;
                    if !(-1000..=1000).contains(&n) {
                        return Err(self.err(&fp, format!("oom_score_adj must be between -1000 and 1000, not {n}")));
                    }
                    rt.oom_score_adj = Some(n);
                }
                "oom_kill_disable" => rt.oom_kill_disable = Some(self.boolean(v, &fp)?),
                "mem_swappiness" => {
                    let n = self.integer(v, &fp)?;
                    if !(0..=100).contains(&n) {
                        return Err(self.err(&fp, format!("mem_swappiness must be between 0 and 100, not {n}")));
                    }
                    rt.mem_swappiness = Some(n);
                }
                "memswap_limit" => rt.memswap_limit = Some(self.signed_bytes(v, &fp)?),
                "cpu_shares" => rt.cpu_shares = Some(self.integer(v, &fp)?),
                "cpuset" => rt.cpuset = self.opt_string(v, &fp)?,
                "cpu_period" => rt.cpu_period = Some(self.micros(v, &fp)?),
                "cpu_quota" => rt.cpu_quota = Some(self.micros(v, &fp)?),
                "cpu_rt_period" => rt.cpu_rt_period = Some(self.micros(v, &fp)?),
                "cpu_rt_runtime" => rt.cpu_rt_runtime = Some(self.micros(v, &fp)?),
                "cpu_count" => rt.cpu_count = Some(self.integer(v, &fp)?),
                "cpu_percent" => rt.cpu_percent = Some(self.integer(v, &fp)?),
                "blkio_config" => rt.blkio = Some(self.blkio(v, &fp)?),
                "storage_opt" => rt.storage_opt = self.labels(v, &fp)?,
                "platform" => rt.platform = self.opt_string(v, &fp)?,
                "mac_address" => self.not_applied(&fp, "a container's MAC address needs Docker API 1.44; this engine speaks 1.41"),
                "runtime" => rt.runtime = self.opt_string(v, &fp)?,
                "isolation" => rt.isolation = self.opt_string(v, &fp)?,
                // Known to the specification, not applied by orch on one engine: shown in the plan.
                "scale" => {
                    let n = self.integer(v, &fp)?;
                    if n != 1 {
                        self.not_applied(&fp, "orch runs one container per service; run more environments instead");
                    }
                }
                "develop" => {
                    self.develop(v, &fp)?;
                    self.not_applied(&fp, "orch does not watch files; rebuild with `orch up` again");
                }
                "extends" => {}
                "annotations" => self.not_applied(&fp, "container annotations need Docker API 1.43; this engine speaks 1.41"),
                "attach" => self.not_applied(&fp, "orch does not attach to service output; use `orch logs`"),
                "credential_spec" => self.not_applied(&fp, "credential specs are for Windows containers"),
                "external_links" => self.not_applied(&fp, "they point outside the environment, which orch keeps isolated"),
                "post_start" | "pre_stop" => self.not_applied(&fp, "lifecycle hooks are not run by orch yet; use an entrypoint script"),
                "pull_refresh_after" => self.not_applied(&fp, "orch never pulls; images are built or present locally"),
                "use_api_socket" => self.not_applied(&fp, "orch does not hand the engine's socket to containers"),
                "models" | "provider" => self.not_applied(&fp, "providers and models need Docker Desktop extensions"),
                _ => unreachable!("fields() admits only known names"),
            }
        }
        // env_file values are overridden by `environment:` entries; label_file by `labels:`.
        for (k, v) in env_from_files {
            s.environment.entry(k).or_insert(v);
        }
        for (k, v) in labels_from_files {
            s.labels.entry(k).or_insert(v);
        }
        if s.restart.is_none() {
            s.restart = deploy_restart;
        }
        if s.runtime.pids_limit.is_none() {
            s.runtime.pids_limit = pids_from_deploy;
        }
        if default_network {
            s.networks.insert("default".into(), ServiceNetwork::default());
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(self.err(path, "a service needs `image:` or `build:`"));
        }
        if s.network_mode.is_some() && !s.ports.is_empty() && s.network_mode.as_deref() != Some("bridge") {
            return Err(self.err(
                &join(path, "ports"),
                "a service with network_mode cannot publish ports (it has no network of its own); publish them on the service whose network it shares",
            ));
        }
        Ok(s)
    }

    fn signed_bytes(&self, v: &Value, path: &str) -> R<i64> {
        if self.string(v, path)?.trim() == "-1" {
            return Ok(-1);
        }
        let b = self.bytes(v, path)?;
        i64::try_from(b).map_err(|_| self.err(path, "size too large"))
    }

    /// A count of microseconds: a number, or a duration such as `400ms`.
    fn micros(&self, v: &Value, path: &str) -> R<i64> {
        let s = self.string(v, path)?;
        if let Ok(n) = s.trim().parse::<i64>() {
            return Ok(n);
        }
        let is_duration = s.trim().ends_with(|c: char| c.is_ascii_alphabetic());
        match crate::parse_duration_ms(&s) {
            Some(ms) if is_duration => i64::try_from(ms.saturating_mul(1000)).map_err(|_| self.err(path, "duration too large")),
            _ => Err(self.err(path, format!("expected microseconds or a duration such as 400ms, found {s:?}"))),
        }
    }

    pub(crate) fn build(&mut self, v: &Value, path: &str) -> R<Build> {
        if !matches!(v, Value::Mapping(_)) {
            let ctx = self.string(v, path)?;
            return Ok(Build { context: self.project_path(&ctx, path, "build context")?, ..Default::default() });
        }
        let m = self.mapping(v, path)?.clone();
        let mut b = Build { context: self.dir.to_path_buf(), ..Default::default() };
        for (key, fp, v) in self.fields(&m, path, fields::BUILD)? {
            match key.as_str() {
                "context" => {
                    let ctx = self.string(v, &fp)?;
                    if ctx.contains("://") || ctx.starts_with("git@") {
                        return Err(self.err(
                            &fp,
                            format!(
                                "remote build context {ctx:?} is not supported: orch builds from local directories; clone it and point `context:` at the clone"
                            ),
                        ));
                    }
                    b.context = self.project_path(&ctx, &fp, "build context")?;
                }
                "dockerfile" => b.dockerfile = self.opt_string(v, &fp)?,
                "dockerfile_inline" => b.dockerfile_inline = self.opt_string(v, &fp)?,
                "args" => {
                    // An arg without a value takes it from the environment or .env, and is left out when unset.
                    for (k, val) in self.kv(v, &fp)? {
                        if let Some(val) = val.or_else(|| self.vars.get(&k).cloned()) {
                            b.args.insert(k, val);
                        }
                    }
                }
                "target" => b.target = self.opt_string(v, &fp)?,
                "labels" => b.labels = self.labels(v, &fp)?,
                "network" => b.network = self.opt_string(v, &fp)?,
                "shm_size" => b.shm_size = Some(self.bytes(v, &fp)?),
                "extra_hosts" => b.extra_hosts = self.extra_hosts(v, &fp)?,
                "cache_from" => b.cache_from = self.strict_list(v, &fp)?,
                "platforms" => {
                    let list = self.strict_list(v, &fp)?;
                    if list.len() > 1 {
                        self.not_applied(&fp, "a multi-platform build needs BuildKit; orch builds the first platform only");
                    }
                    b.platform = list.into_iter().next();
                }
                "pull" => b.pull = Some(self.boolean(v, &fp)?),
                "no_cache" => b.no_cache = Some(self.boolean(v, &fp)?),
                "tags" => b.tags = self.strict_list(v, &fp)?,
                "ulimits" | "isolation" => self.not_applied(&fp, "the engine's build API (1.41) takes no build-time ulimits or isolation"),
                "additional_contexts" => {
                    for (name, source) in self.labels(v, &fp)? {
                        let cp = join(&fp, &name);
                        let resolved = if source.starts_with("docker-image://") || source.starts_with("service:") {
                            source
                        } else if source.contains("://") || source.starts_with("git@") {
                            return Err(self.err(
                                &cp,
                                format!("remote build context {source:?} is not supported: orch builds from local directories; clone it and name the clone"),
                            ));
                        } else if source.is_empty() {
                            return Err(self.err(&cp, "an additional context needs a directory, docker-image://REF or service:NAME"));
                        } else {
                            self.project_path(&source, &cp, "build context")?.to_string_lossy().into_owned()
                        };
                        b.additional_contexts.insert(name, resolved);
                    }
                }
                "ssh" | "secrets" | "cache_to" | "entitlements" | "privileged" | "provenance" | "sbom" => {
                    self.not_applied(&fp, "it needs BuildKit; this engine's API (1.41) builds with the classic builder")
                }
                _ => unreachable!("fields() admits only known names"),
            }
        }
        if b.dockerfile.is_some() && b.dockerfile_inline.is_some() {
            return Err(self.err(path, "dockerfile and dockerfile_inline cannot be combined; keep one of them"));
        }
        if let Some(df) = &b.dockerfile {
            let full = super::normalize_path(&b.context.join(df));
            if !crate::input::within(self.root, &full) {
                return Err(crate::input::outside(self.file, &join(path, "dockerfile"), "Dockerfile", &full, self.root));
            }
        }
        Ok(b)
    }

    fn env_files(&mut self, v: &Value, path: &str) -> R<BTreeMap<String, Option<String>>> {
        let mut entries: Vec<(String, bool)> = vec![];
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{path}[{i}]");
                    match item {
                        Value::Mapping(m) => {
                            let mut file = None;
                            let mut required = true;
                            for (key, fp, v) in self.fields(m, &ip, fields::ENV_FILE)? {
                                match key.as_str() {
                                    "path" => file = Some(self.string(v, &fp)?),
                                    "required" => required = self.boolean(v, &fp)?,
                                    _ => {
                                        if self.string(v, &fp)? != "raw" {
                                            return Err(self.err(&fp, "env_file format must be raw (or absent)"));
                                        }
                                    }
                                }
                            }
                            entries.push((file.ok_or_else(|| self.err(&ip, "env_file entry needs `path:`"))?, required));
                        }
                        other => entries.push((self.string(other, &ip)?, true)),
                    }
                }
            }
            other => entries.push((self.string(other, path)?, true)),
        }
        let mut out = BTreeMap::new();
        for (file, required) in entries {
            let full = self.project_path(&file, path, "env_file")?;
            if !required && !full.exists() {
                continue;
            }
            let text = match self.budget.read(&full, crate::input::MAX_ENV_FILE) {
                Ok(t) => t,
                Err(crate::ComposeError::Input { source, .. }) if source.io_kind().is_some() => {
                    return Err(self.err(path, format!("cannot read env_file {}: {source}; create it or mark it `required: false`", full.display())));
                }
                Err(e) => return Err(e),
            };
            let parsed = crate::interpolate::parse_env_file(&text, &BTreeMap::new()).map_err(|(line, message)| crate::ComposeError::EnvFile {
                file: full.clone(),
                line,
                message,
            })?;
            out.extend(parsed.into_iter().map(|(k, v)| (k, Some(v))));
        }
        Ok(out)
    }

    fn ports(&self, v: &Value, path: &str) -> R<Vec<Port>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of ports, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            match item {
                Value::Mapping(m) => out.push(self.long_port(m, &ip)?),
                other => {
                    let s = self.string(other, &ip)?;
                    out.extend(parse_short_port(&s).map_err(|e| self.err(&ip, e))?);
                }
            }
        }
        Ok(out)
    }

    fn long_port(&self, m: &Mapping, path: &str) -> R<Port> {
        let mut port = Port { target: 0, published: None, host_ip: None, protocol: "tcp".into(), name: None };
        for (key, fp, v) in self.fields(m, path, fields::PORT)? {
            match key.as_str() {
                "target" => {
                    let s = self.string(v, &fp)?;
                    port.target = s.parse().ok().filter(|p| *p > 0).ok_or_else(|| self.err(&fp, format!("invalid container port {s:?}")))?;
                }
                "published" => {
                    port.published = match self.opt_string(v, &fp)? {
                        None => None,
                        Some(s) if s.is_empty() => None,
                        Some(s) => Some(parse_published(&s).map_err(|e| self.err(&fp, e))?),
                    }
                }
                "host_ip" => port.host_ip = self.opt_string(v, &fp)?,
                "protocol" => port.protocol = self.string(v, &fp)?.to_lowercase(),
                "name" => port.name = self.opt_string(v, &fp)?,
                // `mode: ingress` is Swarm's routing mesh; on one engine every port is a host port.
                _ => {}
            }
        }
        if port.target == 0 {
            return Err(self.err(path, "a long-form port needs `target:`"));
        }
        check_protocol(&port.protocol).map_err(|e| self.err(&join(path, "protocol"), e))?;
        Ok(port)
    }

    fn mounts(&mut self, v: &Value, path: &str) -> R<Vec<Mount>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of volumes, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let mount = match item {
                Value::Mapping(m) => self.long_mount(m, &ip)?,
                other => {
                    let s = self.string(other, &ip)?;
                    self.short_mount(&s, &ip)?
                }
            };
            out.push(mount);
        }
        Ok(out)
    }

    fn long_mount(&mut self, m: &Mapping, ip: &str) -> R<Mount> {
        let mut mount = Mount::new("volume", "");
        let mut has_target = false;
        for (key, fp, v) in self.fields(m, ip, fields::MOUNT)? {
            match key.as_str() {
                "type" => mount.kind = self.string(v, &fp)?,
                "source" => mount.source = self.opt_string(v, &fp)?.filter(|s| !s.is_empty()),
                "target" => {
                    mount.target = self.string(v, &fp)?;
                    has_target = true;
                }
                "read_only" => mount.read_only = self.boolean(v, &fp)?,
                "consistency" => {}
                "bind" => {
                    let bm = self.mapping_or_empty(v, &fp)?;
                    for (bkey, bp, bv) in self.fields(&bm, &fp, fields::MOUNT_BIND)? {
                        match bkey.as_str() {
                            "propagation" => mount.propagation = Some(self.propagation(bv, &bp)?),
                            "create_host_path" => mount.create_host_path = self.boolean(bv, &bp)?,
                            "selinux" => {
                                let z = self.string(bv, &bp)?;
                                if !matches!(z.as_str(), "z" | "Z") {
                                    return Err(self.err(&bp, format!("selinux must be z or Z, not {z:?}")));
                                }
                                mount.selinux = Some(z);
                            }
                            _ => self.not_applied(&bp, "non-recursive bind options need Docker API 1.44"),
                        }
                    }
                }
                "volume" => {
                    let vm = self.mapping_or_empty(v, &fp)?;
                    for (vkey, vp, vv) in self.fields(&vm, &fp, fields::MOUNT_VOLUME)? {
                        match vkey.as_str() {
                            "nocopy" => mount.nocopy = self.boolean(vv, &vp)?,
                            "subpath" => mount.subpath = self.opt_string(vv, &vp)?,
                            _ => self.not_applied(&vp, "labels of an anonymous volume's mount are not applied; label the volume at top level"),
                        }
                    }
                }
                "tmpfs" => {
                    let tm = self.mapping_or_empty(v, &fp)?;
                    for (tkey, tp, tv) in self.fields(&tm, &fp, fields::MOUNT_TMPFS)? {
                        match tkey.as_str() {
                            "size" => mount.tmpfs_size = Some(self.bytes(tv, &tp)?),
                            _ => mount.tmpfs_mode = Some(self.tmpfs_mode(tv, &tp)?),
                        }
                    }
                }
                _ => self.not_applied(&fp, "image mounts need Docker API 1.47; this engine speaks 1.41"),
            }
        }
        if !has_target || mount.target.is_empty() {
            return Err(self.err(ip, "a long-form volume needs `target:`"));
        }
        match mount.kind.as_str() {
            "volume" | "tmpfs" => {}
            "bind" => match mount.source.as_deref() {
                None => {
                    return Err(self.err(ip, "a bind mount needs `source:` (the host path to mount)"));
                }
                Some(src) => mount.source = Some(self.relative_path(src).to_string_lossy().into_owned()),
            },
            "image" | "npipe" | "cluster" => {
                return Err(self.err(&join(ip, "type"), format!("volume type {:?} is not supported on this engine; use volume, bind or tmpfs", mount.kind)));
            }
            other => {
                return Err(self.err(&join(ip, "type"), format!("unknown volume type {other:?}; use volume, bind or tmpfs")));
            }
        }
        if mount.kind == "tmpfs" && mount.source.is_some() {
            return Err(self.err(&join(ip, "source"), "a tmpfs mount has no source"));
        }
        Ok(mount)
    }

    fn propagation(&self, v: &Value, path: &str) -> R<String> {
        let p = self.string(v, path)?;
        match p.as_str() {
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => Ok(p),
            other => Err(self.err(path, format!("unknown bind propagation {other:?}; use private, rprivate, shared, rshared, slave or rslave"))),
        }
    }

    /// A file mode: a YAML number is taken as the YAML reader gives it (`0440` and `0o440` are octal there), a string
    /// is read as octal (`"0440"`, `"440"`).
    pub(crate) fn file_mode(&self, v: &Value, path: &str) -> R<u32> {
        let parsed = match v {
            Value::Number(n) => n.as_u64().and_then(|m| u32::try_from(m).ok()),
            other => {
                let s = self.string(other, path)?;
                u32::from_str_radix(s.trim().trim_start_matches("0o"), 8).ok()
            }
        };
        parsed
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| self.err(path, format!("invalid file mode {}; use octal such as 0440", self.string(v, path).unwrap_or_default())))
    }

    /// A tmpfs mode is octal even when written as a plain number (`mode: 1777`), as `--tmpfs /x:mode=1777` is.
    fn tmpfs_mode(&self, v: &Value, path: &str) -> R<u32> {
        match v {
            Value::Number(n) if n.to_string().chars().all(|c| ('0'..='7').contains(&c)) => self.file_mode(&Value::String(n.to_string()), path),
            other => self.file_mode(other, path),
        }
    }

    fn short_mount(&self, s: &str, path: &str) -> R<Mount> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, None),
            [src, t] => (Some(*src), *t, None),
            [src, t, mode] => (Some(*src), *t, Some(*mode)),
            _ => {
                return Err(self.err(path, format!("invalid volume {s:?}; expected [SOURCE:]TARGET[:MODE]")));
            }
        };
        if !target.starts_with('/') {
            return Err(self.err(path, format!("volume target {target:?} must be an absolute path in the container")));
        }
        let mut m = Mount::new("volume", target);
        for opt in mode.unwrap_or_default().split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => m.read_only = true,
                "rw" => m.read_only = false,
                "z" | "Z" => m.selinux = Some(opt.into()),
                "nocopy" => m.nocopy = true,
                "cached" | "delegated" | "consistent" => {}
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => m.propagation = Some(opt.into()),
                other => return Err(self.err(path, format!("unknown volume option {other:?} in {s:?}; use ro, rw, z, Z, nocopy or a propagation mode"))),
            }
        }
        match source {
            None => {}
            Some(src) if src.starts_with('.') || src.starts_with('/') || src.starts_with('~') => {
                m.kind = "bind".into();
                m.source = Some(self.relative_path(src).to_string_lossy().into_owned());
                // The short syntax creates a missing host path, as `docker run -v` does.
                m.create_host_path = true;
            }
            Some("") => return Err(self.err(path, format!("invalid volume {s:?}: empty source"))),
            Some(src) => m.source = Some(src.into()),
        }
        if m.kind == "volume" && m.propagation.is_some() {
            return Err(self.err(path, format!("bind propagation applies to bind mounts, not to volume {:?}", m.source.as_deref().unwrap_or("(anonymous)"))));
        }
        Ok(m)
    }

    fn healthcheck(&mut self, v: &Value, path: &str) -> R<Option<Healthcheck>> {
        let m = self.mapping(v, path)?.clone();
        let mut h = Healthcheck::default();
        for (key, fp, v) in self.fields(&m, path, fields::HEALTHCHECK)? {
            match key.as_str() {
                "test" => {
                    h.test = match v {
                        Value::Sequence(_) => self.string_list(v, &fp)?,
                        other => vec!["CMD-SHELL".into(), self.string(other, &fp)?],
                    };
                    if let Some(first) = h.test.first()
                        && !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE")
                    {
                        return Err(self.err(&fp, format!("a list-form test must start with CMD, CMD-SHELL or NONE, not {first:?}")));
                    }
                }
                "disable" => {
                    if self.boolean(v, &fp)? {
                        h.test = vec!["NONE".into()];
                    }
                }
                "interval" => h.interval_ms = Some(self.duration(v, &fp)?),
                "timeout" => h.timeout_ms = Some(self.duration(v, &fp)?),
                "start_period" => h.start_period_ms = Some(self.duration(v, &fp)?),
                "start_interval" => h.start_interval_ms = Some(self.duration(v, &fp)?),
                _ => {
                    let s = self.string(v, &fp)?;
                    h.retries = Some(s.parse().map_err(|_| self.err(&fp, format!("retries must be a whole number, not {s:?}")))?);
                }
            }
        }
        Ok(Some(h))
    }

    fn depends_on(&self, v: &Value, path: &str) -> R<BTreeMap<String, Dependency>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(_) => {
                for name in self.string_list(v, path)? {
                    out.insert(name, Dependency { condition: Condition::ServiceStarted, required: true, restart: false });
                }
            }
            Value::Mapping(m) => {
                for (k, dv) in m {
                    let name = self.key(k, path)?;
                    let dp = join(path, &name);
                    let mut dep = Dependency { condition: Condition::ServiceStarted, required: true, restart: false };
                    let dm = self.mapping_or_empty(dv, &dp)?;
                    for (ckey, cp, cv) in self.fields(&dm, &dp, fields::DEPENDS_ON)? {
                        match ckey.as_str() {
                            "condition" => {
                                dep.condition = match self.string(cv, &cp)?.as_str() {
                                    "service_started" => Condition::ServiceStarted,
                                    "service_healthy" => Condition::ServiceHealthy,
                                    "service_completed_successfully" => Condition::ServiceCompletedSuccessfully,
                                    other => {
                                        return Err(self.err(
                                            &cp,
                                            format!("unknown condition {other:?}; use service_started, service_healthy or service_completed_successfully"),
                                        ));
                                    }
                                }
                            }
                            "required" => dep.required = self.boolean(cv, &cp)?,
                            _ => dep.restart = self.boolean(cv, &cp)?,
                        }
                    }
                    out.insert(name, dep);
                }
            }
            other => {
                return Err(self.err(path, format!("expected a list of services or a mapping, found {}", kind(other))));
            }
        }
        Ok(out)
    }

    fn service_networks(&mut self, v: &Value, path: &str) -> R<BTreeMap<String, ServiceNetwork>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(_) => {
                for n in self.string_list(v, path)? {
                    out.insert(n, ServiceNetwork::default());
                }
            }
            Value::Mapping(m) => {
                for (k, nv) in m {
                    let name = self.key(k, path)?;
                    let np = join(path, &name);
                    let mut sn = ServiceNetwork::default();
                    let am = self.mapping_or_empty(nv, &np)?;
                    for (akey, ap, av) in self.fields(&am, &np, fields::SERVICE_NETWORK)? {
                        match akey.as_str() {
                            "aliases" => sn.aliases = self.string_list(av, &ap)?,
                            "ipv4_address" => sn.ipv4_address = self.opt_string(av, &ap)?,
                            "priority" => {
                                let s = self.string(av, &ap)?;
                                sn.priority = Some(s.parse().map_err(|_| self.err(&ap, format!("priority must be a number, not {s:?}")))?);
                            }
                            "ipv6_address" => self.not_applied(&ap, "orch gives environments IPv4 subnets only"),
                            _ => self.not_applied(&ap, "per-attachment options need Docker API 1.44 or later"),
                        }
                    }
                    out.insert(name, sn);
                }
            }
            other => {
                return Err(self.err(path, format!("expected a list or mapping of networks, found {}", kind(other))));
            }
        }
        Ok(out)
    }

    fn deploy(&mut self, v: &Value, path: &str, r: &mut Resources, rt: &mut Runtime, restart: &mut Option<String>, pids: &mut Option<i64>) -> R<()> {
        let m = self.mapping_or_empty(v, path)?;
        for (key, fp, v) in self.fields(&m, path, fields::DEPLOY)? {
            match key.as_str() {
                "resources" => {
                    let rm = self.mapping_or_empty(v, &fp)?;
                    for (rkey, rp, rv) in self.fields(&rm, &fp, fields::RESOURCES)? {
                        let limits = rkey == "limits";
                        let lm = self.mapping_or_empty(rv, &rp)?;
                        let valid = if limits { fields::LIMITS } else { fields::RESERVATIONS };
                        for (lkey, lp, lv) in self.fields(&lm, &rp, valid)? {
                            match (lkey.as_str(), limits) {
                                ("memory", true) => r.memory_limit = Some(self.bytes(lv, &lp)?),
                                ("memory", false) => r.memory_reservation = Some(self.bytes(lv, &lp)?),
                                ("cpus", true) => r.cpus = Some(self.float(lv, &lp)?),
                                ("cpus", false) => r.cpus_reservation = Some(self.float(lv, &lp)?),
                                ("pids", _) => *pids = Some(self.integer(lv, &lp)?),
                                ("devices", _) => rt.device_requests.extend(self.device_requests(lv, &lp)?),
                                _ => self.not_applied(&lp, "generic resources exist only in Docker Swarm"),
                            }
                        }
                    }
                }
                "restart_policy" => {
                    let pm = self.mapping_or_empty(v, &fp)?;
                    let mut condition = "any".to_string();
                    let mut attempts = None;
                    for (pkey, pp, pv) in self.fields(&pm, &fp, fields::RESTART_POLICY)? {
                        match pkey.as_str() {
                            "condition" => condition = self.string(pv, &pp)?,
                            "max_attempts" => attempts = Some(self.integer(pv, &pp)?),
                            _ => self.not_applied(&pp, "restart delays and windows exist only in Docker Swarm"),
                        }
                    }
                    *restart = Some(match (condition.as_str(), attempts) {
                        ("none", _) => "no".into(),
                        ("on-failure", Some(n)) => format!("on-failure:{n}"),
                        ("on-failure", None) => "on-failure".into(),
                        ("any", _) => "always".into(),
                        (other, _) => {
                            return Err(self.err(&join(&fp, "condition"), format!("unknown restart condition {other:?}; use none, on-failure or any")));
                        }
                    });
                }
                "replicas" => {
                    let n = self.integer(v, &fp)?;
                    if n != 1 {
                        self.not_applied(&fp, "orch runs one container per service; run more environments instead");
                    }
                }
                "mode" => {
                    let mode = self.string(v, &fp)?;
                    if !matches!(mode.as_str(), "replicated" | "global" | "replicated-job" | "global-job") {
                        return Err(self.err(&fp, format!("unknown deploy mode {mode:?}; use replicated, global, replicated-job or global-job")));
                    }
                    if mode != "replicated" {
                        self.not_applied(&fp, SWARM_ONLY);
                    }
                }
                "placement" => {
                    let pm = self.mapping_or_empty(v, &fp)?;
                    for (pkey, pp, pv) in self.fields(&pm, &fp, fields::PLACEMENT)? {
                        match pkey.as_str() {
                            "constraints" => {
                                // Their syntax is checked where placement is applied (the swarm engine): compose
                                // ignores placement on one engine, and so does this import.
                                rt.placement = self.strict_list(pv, &pp)?;
                                self.not_applied(&pp, "one engine is one node: only the swarm engine (--engine swarm) places services");
                            }
                            _ => self.not_applied(&pp, SWARM_ONLY),
                        }
                    }
                }
                _ => self.not_applied(&fp, SWARM_ONLY),
            }
        }
        Ok(())
    }

    /// `deploy.resources.reservations.devices`.
    fn device_requests(&self, v: &Value, path: &str) -> R<Vec<DeviceRequest>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of devices, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let m = self.mapping(item, &ip)?;
            let mut d = DeviceRequest::default();
            for (key, fp, v) in self.fields(m, &ip, fields::DEVICE_REQUEST)? {
                match key.as_str() {
                    "capabilities" => d.capabilities = self.strict_list(v, &fp)?,
                    "count" => {
                        d.count = Some(match self.string(v, &fp)?.as_str() {
                            "all" => -1,
                            _ => self.integer(v, &fp)?,
                        })
                    }
                    "device_ids" => d.device_ids = self.strict_list(v, &fp)?,
                    "driver" => d.driver = self.opt_string(v, &fp)?,
                    _ => d.options = self.labels(v, &fp)?,
                }
            }
            if d.count.is_some() && !d.device_ids.is_empty() {
                return Err(self.err(&ip, "`count` and `device_ids` cannot be combined; keep one of them"));
            }
            if d.capabilities.is_empty() {
                return Err(self.err(&ip, "a device reservation needs `capabilities:` (e.g. [gpu])"));
            }
            out.push(d);
        }
        Ok(out)
    }

    /// `gpus: all` or a list of device requests; capabilities default to `gpu`.
    fn gpus(&self, v: &Value, path: &str) -> R<Vec<DeviceRequest>> {
        if let Value::String(s) = v {
            if s != "all" {
                return Err(self.err(path, format!("gpus takes `all` or a list of devices, not {s:?}")));
            }
            return Ok(vec![DeviceRequest { count: Some(-1), capabilities: vec!["gpu".into()], ..Default::default() }]);
        }
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("gpus takes `all` or a list of devices, found {}", kind(v))));
        };
        let mut with_caps = Value::Sequence(vec![]);
        if let Value::Sequence(out) = &mut with_caps {
            for item in items {
                let mut item = item.clone();
                if let Value::Mapping(m) = &mut item
                    && !m.contains_key("capabilities")
                {
                    m.insert("capabilities".into(), Value::Sequence(vec!["gpu".into()]));
                }
                out.push(item);
            }
        }
        self.device_requests(&with_caps, path)
    }

    fn devices(&self, v: &Value, path: &str) -> R<Vec<DeviceMapping>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of devices, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let d = match item {
                Value::Mapping(m) => {
                    let mut d = DeviceMapping { source: String::new(), target: String::new(), permissions: "rwm".into() };
                    for (key, fp, v) in self.fields(m, &ip, fields::DEVICE)? {
                        match key.as_str() {
                            "source" => d.source = self.string(v, &fp)?,
                            "target" => d.target = self.string(v, &fp)?,
                            _ => d.permissions = self.string(v, &fp)?,
                        }
                    }
                    if d.target.is_empty() {
                        d.target = d.source.clone();
                    }
                    d
                }
                other => {
                    let s = self.string(other, &ip)?;
                    let parts: Vec<&str> = s.split(':').collect();
                    match parts.as_slice() {
                        [src] => DeviceMapping { source: src.to_string(), target: src.to_string(), permissions: "rwm".into() },
                        [src, t] if t.chars().all(|c| "rwm".contains(c)) && !t.starts_with('/') => {
                            DeviceMapping { source: src.to_string(), target: src.to_string(), permissions: t.to_string() }
                        }
                        [src, t] => DeviceMapping { source: src.to_string(), target: t.to_string(), permissions: "rwm".into() },
                        [src, t, p] => DeviceMapping { source: src.to_string(), target: t.to_string(), permissions: p.to_string() },
                        _ => return Err(self.err(&ip, format!("invalid device {s:?}; expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]"))),
                    }
                }
            };
            if d.source.is_empty() {
                return Err(self.err(&ip, "a device needs a host path (`source:`)"));
            }
            if !d.permissions.chars().all(|c| "rwm".contains(c)) || d.permissions.is_empty() {
                return Err(self.err(&ip, format!("device permissions {:?} must be made of r, w and m", d.permissions)));
            }
            out.push(d);
        }
        Ok(out)
    }

    fn ulimits(&self, v: &Value, path: &str) -> R<BTreeMap<String, Ulimit>> {
        let mut out = BTreeMap::new();
        for (k, lv) in self.mapping_or_empty(v, path)?.iter() {
            let name = self.key(k, path)?;
            let lp = join(path, &name);
            let limit = match lv {
                Value::Mapping(m) => {
                    let (mut soft, mut hard) = (None, None);
                    for (key, fp, v) in self.fields(m, &lp, fields::ULIMIT)? {
                        if key == "soft" { soft = Some(self.integer(v, &fp)?) } else { hard = Some(self.integer(v, &fp)?) }
                    }
                    match (soft, hard) {
                        (Some(soft), Some(hard)) => Ulimit { soft, hard },
                        _ => {
                            return Err(self.err(&lp, "a ulimit mapping needs both `soft:` and `hard:`"));
                        }
                    }
                }
                other => {
                    let n = self.integer(other, &lp)?;
                    Ulimit { soft: n, hard: n }
                }
            };
            if limit.soft > limit.hard && limit.hard >= 0 {
                return Err(self.err(&lp, format!("ulimit {name}: soft limit {} is above hard limit {}", limit.soft, limit.hard)));
            }
            out.insert(name, limit);
        }
        Ok(out)
    }

    /// `HOST:IP`, `HOST=IP` or a mapping of host → IP (or list of IPs), as `HOST:IP` entries.
    fn extra_hosts(&self, v: &Value, path: &str) -> R<Vec<String>> {
        let mut out = vec![];
        let mut push = |host: &str, ip: &str, p: &str| -> R<()> {
            let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || ip.is_empty() {
                return Err(self.err(p, format!("invalid extra host {host:?} → {ip:?}; expected HOST:IP")));
            }
            out.push(format!("{host}:{ip}"));
            Ok(())
        };
        match v {
            Value::Mapping(m) => {
                for (k, iv) in m {
                    let host = self.key(k, path)?;
                    let hp = join(path, &host);
                    for ip in self.string_list(iv, &hp)? {
                        push(&host, &ip, &hp)?;
                    }
                }
            }
            other => {
                for (i, entry) in self.string_list(other, path)?.iter().enumerate() {
                    let ep = format!("{path}[{i}]");
                    let (host, ip) = entry
                        .split_once('=')
                        .or_else(|| entry.split_once(':'))
                        .ok_or_else(|| self.err(&ep, format!("invalid extra host {entry:?}; expected HOST:IP")))?;
                    push(host, ip, &ep)?;
                }
            }
        }
        Ok(out)
    }

    fn blkio(&self, v: &Value, path: &str) -> R<Blkio> {
        let m = self.mapping_or_empty(v, path)?;
        let mut b = Blkio::default();
        let weight = |p: &P, v: &Value, path: &str| -> R<u16> {
            let n = p.integer(v, path)?;
            u16::try_from(n)
                .ok()
                .filter(|w| (10..=1000).contains(w) || *w == 0)
                .ok_or_else(|| p.err(path, format!("blkio weight must be between 10 and 1000, not {n}")))
        };
        for (key, fp, v) in self.fields(&m, path, fields::BLKIO)? {
            if key == "weight" {
                b.weight = Some(weight(self, v, &fp)?);
                continue;
            }
            let Value::Sequence(items) = v else {
                return Err(self.err(&fp, format!("expected a list of {{path, ...}} entries, found {}", kind(v))));
            };
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{fp}[{i}]");
                let im = self.mapping(item, &ip)?;
                let dev = self.string(im.get("path").ok_or_else(|| self.err(&ip, "needs `path:` (the device)"))?, &join(&ip, "path"))?;
                if key == "weight_device" {
                    let w = im.get("weight").ok_or_else(|| self.err(&ip, "needs `weight:`"))?;
                    b.weight_device.push((dev, weight(self, w, &join(&ip, "weight"))?));
                    continue;
                }
                let rate = im.get("rate").ok_or_else(|| self.err(&ip, "needs `rate:`"))?;
                let rate = if key.ends_with("bps") { self.bytes(rate, &join(&ip, "rate"))? } else { self.integer(rate, &join(&ip, "rate"))?.max(0) as u64 };
                match key.as_str() {
                    "device_read_bps" => b.device_read_bps.push((dev, rate)),
                    "device_write_bps" => b.device_write_bps.push((dev, rate)),
                    "device_read_iops" => b.device_read_iops.push((dev, rate)),
                    _ => b.device_write_iops.push((dev, rate)),
                }
            }
        }
        Ok(b)
    }

    /// `develop.watch` is validated like compose does, though orch does not watch.
    fn develop(&self, v: &Value, path: &str) -> R<()> {
        let m = self.mapping_or_empty(v, path)?;
        let Some(watch) = m.get("watch") else {
            return Ok(());
        };
        let wp = join(path, "watch");
        let Value::Sequence(items) = watch else {
            return Err(self.err(&wp, format!("expected a list of watch rules, found {}", kind(watch))));
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{wp}[{i}]");
            let rule = self.mapping(item, &ip)?;
            self.fields(rule, &ip, fields::WATCH)?;
            if !rule.contains_key("path") {
                return Err(self.err(&ip, "a watch rule needs `path:`"));
            }
            match rule.get("action").map(|a| self.string(a, &join(&ip, "action"))).transpose()? {
                None => return Err(self.err(&ip, "a watch rule needs `action:` (sync, rebuild, restart, sync+restart or sync+exec)")),
                Some(a) if matches!(a.as_str(), "sync" | "rebuild" | "restart" | "sync+restart" | "sync+exec") => {}
                Some(a) => {
                    return Err(self.err(&join(&ip, "action"), format!("unknown watch action {a:?}; use sync, rebuild, restart, sync+restart or sync+exec")));
                }
            }
        }
        Ok(())
    }

    fn service_secrets(&self, v: &Value, path: &str, base: &str) -> R<Vec<ServiceSecret>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list, found {}", kind(v))));
        };
        let absolute = |t: &str| {
            if t.starts_with('/') { t.to_string() } else { format!("{base}/{t}") }
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            match item {
                Value::Mapping(m) => {
                    let mut s = ServiceSecret { source: String::new(), target: String::new(), uid: None, gid: None, mode: None };
                    for (key, fp, v) in self.fields(m, &ip, fields::SERVICE_SECRET)? {
                        match key.as_str() {
                            "source" => s.source = self.string(v, &fp)?,
                            "target" => s.target = self.string(v, &fp)?,
                            "uid" => s.uid = Some(self.string(v, &fp)?),
                            "gid" => s.gid = Some(self.string(v, &fp)?),
                            _ => s.mode = Some(self.file_mode(v, &fp)?),
                        }
                    }
                    if s.source.is_empty() {
                        return Err(self.err(&ip, "a long-form entry needs `source:`"));
                    }
                    s.target = absolute(if s.target.is_empty() { &s.source } else { &s.target });
                    out.push(s);
                }
                other => {
                    let src = self.string(other, &ip)?;
                    out.push(ServiceSecret { target: absolute(&src), source: src, uid: None, gid: None, mode: None });
                }
            }
        }
        Ok(out)
    }

    fn logging(&mut self, v: &Value, path: &str) -> R<Logging> {
        let mut l = Logging::default();
        let m = self.mapping_or_empty(v, path)?;
        for (key, fp, v) in self.fields(&m, path, fields::LOGGING)? {
            match key.as_str() {
                "driver" => l.driver = self.opt_string(v, &fp)?,
                _ => l.options = self.labels(v, &fp)?,
            }
        }
        Ok(l)
    }
}
