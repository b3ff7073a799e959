//! The short syntaxes of compose values: durations, sizes, ports, names and paths.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::model::{Port, Published};

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `p` with `.` and `..` resolved lexically (no file system access).
pub fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `1h2m3s`, `1m30s`, `500ms`, `10s`, `2.5s`, or a bare number of seconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0).then_some((secs * 1000.0).round() as u64);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += num * factor;
        rest = &rest[unit_end..];
    }
    Some(total.round() as u64)
}

/// `512m`, `1g`, `256MB`, `1.5g`, `1024` (bytes).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let num: f64 = s[..split].parse().ok()?;
    let factor: u64 = match s[split..].trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    (num >= 0.0).then(|| (num * factor as f64).round() as u64)
}

pub(crate) fn check_protocol(p: &str) -> Result<(), String> {
    match p {
        "tcp" | "udp" | "sctp" => Ok(()),
        other => Err(format!("unknown protocol {other:?}; use tcp, udp or sctp")),
    }
}

fn parse_port_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number {s:?}"))
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port_number(a)?, parse_port_number(b)?);
            if a > b {
                return Err(format!("port range {s:?} runs backwards"));
            }
            Ok((a, b))
        }
        None => {
            let p = parse_port_number(s)?;
            Ok((p, p))
        }
    }
}

pub(crate) fn parse_published(s: &str) -> Result<Published, String> {
    let (a, b) = parse_range(s)?;
    Ok(if a == b { Published::Port(a) } else { Published::Range(a, b) })
}

/// The short port syntax: `[[HOST_IP:][HOST_PORT[-END]]:]CONTAINER_PORT[-END][/PROTOCOL]`, IPv6 host IPs in brackets.
pub fn parse_short_port(spec: &str) -> Result<Vec<Port>, String> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    check_protocol(&protocol)?;
    // Split off a bracketed IPv6 host IP first; otherwise split on ':' from the right.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or_else(|| format!("unclosed [ in port {spec:?}"))?;
        let after = after.strip_prefix(':').ok_or_else(|| format!("expected ':' after ]{ip}] in port {spec:?}"))?;
        (Some(ip.to_string()), after)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, host, container) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (ip, [h, c]) if ip.is_some() => (ip, (!h.is_empty()).then_some(*h), *c),
        (None, [h, c]) => (None, (!h.is_empty()).then_some(*h), *c),
        (None, [ip, h, c]) => (Some(ip.to_string()), (!h.is_empty()).then_some(*h), *c),
        _ => {
            return Err(format!("invalid port {spec:?}; expected [[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]"));
        }
    };
    let (c_start, c_end) = parse_range(container)?;
    let count = (c_end - c_start) as u32 + 1;
    let published: Vec<Option<Published>> = match host {
        None => vec![None; count as usize],
        Some(h) => {
            let (h_start, h_end) = parse_range(h)?;
            let h_count = (h_end - h_start) as u32 + 1;
            if count == 1 {
                vec![Some(if h_count == 1 { Published::Port(h_start) } else { Published::Range(h_start, h_end) })]
            } else if h_count == count {
                (0..count).map(|i| Some(Published::Port(h_start + i as u16))).collect()
            } else {
                return Err(format!("port {spec:?} maps {count} container ports onto {h_count} host ports; the ranges must be the same size"));
            }
        }
    };
    Ok((0..count)
        .zip(published)
        .map(|(i, published)| Port { target: c_start + i as u16, published, host_ip: host_ip.clone(), protocol: protocol.clone(), name: None })
        .collect())
}

/// Compose's project name rule: lowercase letters, digits, dashes and underscores, starting with a letter or digit.
pub fn normalize_name(name: String) -> String {
    let lowered: String = name.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    lowered.trim_start_matches(['-', '_']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> Port {
        let mut v = parse_short_port(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.remove(0)
    }

    #[test]
    fn short_ports() {
        assert_eq!(one("3000").published, None);
        assert_eq!(one("8000:8000").published, Some(Published::Port(8000)));
        let p = one("127.0.0.1::5000");
        assert_eq!((p.host_ip.as_deref(), p.published, p.target), (Some("127.0.0.1"), None, 5000));
        let p = one("127.0.0.1:8001:8001");
        assert_eq!((p.host_ip.as_deref(), p.published), (Some("127.0.0.1"), Some(Published::Port(8001))));
        assert_eq!(one("6060:6060/udp").protocol, "udp");
        assert_eq!(one("9000-9010:80").published, Some(Published::Range(9000, 9010)));
        let p = one("[::1]:6000:6000");
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        let many = parse_short_port("9090-9091:8080-8081").unwrap();
        assert_eq!(
            many.iter().map(|p| (p.target, p.published.clone())).collect::<Vec<_>>(),
            vec![(8080, Some(Published::Port(9090))), (8081, Some(Published::Port(9091)))]
        );
        assert_eq!(parse_short_port("3000-3002").unwrap().len(), 3);
        assert!(parse_short_port("1:2:3:4").is_err());
        assert!(parse_short_port("70000").is_err());
        assert!(parse_short_port("80/xtp").is_err());
        assert!(parse_short_port("9000-9001:80-82").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("10"), Some(10_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("10x"), None);
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("256mb"), Some(256 << 20));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name("My Project!".into()), "myproject");
        assert_eq!(normalize_name("_netra-Test_1".into()), "netra-test_1");
    }
}
