//! The compose specification's field names, by the object they belong to. A name outside these lists is a typo or a
//! field of another tool, and is refused with the nearest valid name, as `docker compose` refuses it.

pub const TOP: &[&str] = &["configs", "include", "models", "name", "networks", "secrets", "services", "version", "volumes"];

pub const SERVICE: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

pub const BUILD: &[&str] = &[
    "additional_contexts",
    "args",
    "cache_from",
    "cache_to",
    "context",
    "dockerfile",
    "dockerfile_inline",
    "entitlements",
    "extra_hosts",
    "isolation",
    "labels",
    "network",
    "no_cache",
    "platforms",
    "privileged",
    "provenance",
    "pull",
    "sbom",
    "secrets",
    "shm_size",
    "ssh",
    "tags",
    "target",
    "ulimits",
];

pub const HEALTHCHECK: &[&str] = &["disable", "interval", "retries", "start_interval", "start_period", "test", "timeout"];

pub const DEPLOY: &[&str] = &["endpoint_mode", "labels", "mode", "placement", "replicas", "resources", "restart_policy", "rollback_config", "update_config"];

pub const RESOURCES: &[&str] = &["limits", "reservations"];
pub const PLACEMENT: &[&str] = &["constraints", "max_replicas_per_node", "preferences"];
pub const LIMITS: &[&str] = &["cpus", "memory", "pids"];
pub const RESERVATIONS: &[&str] = &["cpus", "devices", "generic_resources", "memory"];
pub const DEVICE_REQUEST: &[&str] = &["capabilities", "count", "device_ids", "driver", "options"];
pub const RESTART_POLICY: &[&str] = &["condition", "delay", "max_attempts", "window"];

pub const NETWORK: &[&str] = &["attachable", "driver", "driver_opts", "enable_ipv4", "enable_ipv6", "external", "internal", "ipam", "labels", "name"];
pub const IPAM: &[&str] = &["config", "driver", "options"];
pub const IPAM_CONFIG: &[&str] = &["aux_addresses", "gateway", "ip_range", "subnet"];

pub const VOLUME: &[&str] = &["driver", "driver_opts", "external", "labels", "name"];
pub const SECRET: &[&str] = &["content", "driver", "driver_opts", "environment", "external", "file", "labels", "name", "template_driver"];

pub const SERVICE_NETWORK: &[&str] =
    &["aliases", "driver_opts", "gw_priority", "interface_name", "ipv4_address", "ipv6_address", "link_local_ips", "mac_address", "priority"];
pub const SERVICE_SECRET: &[&str] = &["gid", "mode", "source", "target", "uid"];
pub const PORT: &[&str] = &["app_protocol", "host_ip", "mode", "name", "protocol", "published", "target"];
pub const MOUNT: &[&str] = &["bind", "consistency", "image", "read_only", "source", "target", "tmpfs", "type", "volume"];
pub const MOUNT_BIND: &[&str] = &["create_host_path", "propagation", "recursive", "selinux"];
pub const MOUNT_VOLUME: &[&str] = &["labels", "nocopy", "subpath"];
pub const MOUNT_TMPFS: &[&str] = &["mode", "size"];
pub const DEPENDS_ON: &[&str] = &["condition", "required", "restart"];
pub const LOGGING: &[&str] = &["driver", "options"];
pub const EXTENDS: &[&str] = &["file", "service"];
pub const INCLUDE: &[&str] = &["env_file", "path", "project_directory"];
pub const ENV_FILE: &[&str] = &["format", "path", "required"];
pub const ULIMIT: &[&str] = &["hard", "soft"];
pub const BLKIO: &[&str] = &["device_read_bps", "device_read_iops", "device_write_bps", "device_write_iops", "weight", "weight_device"];
pub const DEVICE: &[&str] = &["permissions", "source", "target"];
pub const WATCH: &[&str] = &["action", "exec", "ignore", "include", "initial_sync", "path", "target"];

/// The valid name closest to `name` (Jaro-Winkler similarity, case and `-`/`_` folded).
pub fn nearest(name: &str, valid: &[&'static str]) -> Option<&'static str> {
    let lowered = name.to_ascii_lowercase().replace('-', "_");
    valid.iter().map(|v| (strsim::jaro_winkler(&lowered, v), *v)).max_by(|a, b| a.0.total_cmp(&b.0)).map(|(_, v)| v)
}

/// The message for a field the specification does not know.
pub fn unknown_message(name: &str, valid: &[&'static str]) -> String {
    match nearest(name, valid) {
        Some(v) if valid.len() > 12 => {
            format!("unknown field `{name}`; the nearest valid field is `{v}` (fields of your own must start with `x-`)")
        }
        _ => format!(
            "unknown field `{name}`; {}valid fields here: {} (fields of your own must start with `x-`)",
            nearest(name, valid).map(|v| format!("the nearest is `{v}`; ")).unwrap_or_default(),
            valid.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_field() {
        assert!(nearest("wrongField", SERVICE).is_some());
        assert_eq!(nearest("enviroment", SERVICE), Some("environment"));
        assert_eq!(nearest("helthcheck", SERVICE), Some("healthcheck"));
        assert_eq!(nearest("depends-on", SERVICE), Some("depends_on"));
        assert_eq!(nearest("imagee", SERVICE), Some("image"));
        assert!(unknown_message("intervall", HEALTHCHECK).contains("the nearest is `interval`; valid fields here: disable, interval"));
    }

    #[test]
    fn tables_are_sorted_and_unique() {
        for t in [TOP, SERVICE, BUILD, HEALTHCHECK, DEPLOY, NETWORK, VOLUME, SECRET, SERVICE_NETWORK, PORT, MOUNT] {
            let mut sorted = t.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted, t.to_vec());
        }
    }
}
