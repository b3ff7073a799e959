//! What orch reads from Linux's `/proc`, in one place: the routing table and the listening TCP ports (host facts),
//! the host's memory (admission), and a process's start time, the host name and the boot id (an owner's identity).
//! Each reader answers `None` or nothing where `/proc` does not say (another OS, a locked-down container), and each
//! parser is a pure function over the file's text, tested on samples.

use ipnet::Ipv4Net;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The host's IPv4 routes but the default route (`/proc/net/route`).
pub fn routes() -> Vec<Ipv4Net> {
    read("/proc/net/route").map(|t| parse_routes(&t)).unwrap_or_default()
}

/// TCP ports something on the host listens on, IPv4 and IPv6 (`/proc/net/tcp`, `/proc/net/tcp6`).
pub fn listening_ports() -> Vec<u16> {
    ["/proc/net/tcp", "/proc/net/tcp6"].into_iter().filter_map(read).flat_map(|t| parse_listeners(&t)).collect()
}

/// (MemAvailable, MemTotal) in bytes (`/proc/meminfo`).
pub fn memory() -> Option<(u64, u64)> {
    parse_meminfo(&read("/proc/meminfo")?)
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`); `None` when there is no such
/// process.
pub fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&read(&format!("/proc/{pid}/stat"))?)
}

/// The host name (`/proc/sys/kernel/hostname`), empty when unknown.
pub fn hostname() -> String {
    read("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), empty when unknown.
pub fn boot_id() -> String {
    read("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
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

/// Parses `/proc/net/route` (little-endian hex destination and mask columns); the default route is left out.
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

/// (MemAvailable, MemTotal) in bytes from `/proc/meminfo`'s text.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb.saturating_mul(1024))
    };
    Some((field("MemAvailable:")?, field("MemTotal:")?))
}

/// Field 22 of a `/proc/PID/stat` line: the start time.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses; the fields after it follow the last ')'.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners() {
        let text = "  sl  local_address rem_address   st\n   0: 00000000:1F90 00000000:0000 0A 0\n   1: 0100007F:0277 0100007F:A0B2 01 0\n";
        assert_eq!(parse_listeners(text), vec![8080]);
    }

    #[test]
    fn routes() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(text), vec!["172.17.0.0/16".parse().unwrap()]);
    }

    #[test]
    fn meminfo_and_stat() {
        assert_eq!(parse_meminfo("MemTotal:       2048 kB\nMemFree: 1 kB\nMemAvailable:   1024 kB\n"), Some((1 << 20, 2 << 20)));
        assert_eq!(parse_meminfo("MemTotal: 2048 kB\n"), None);
        let stat = "4242 (a (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("4242 (cut)"), None);
        assert_eq!(parse_start_time(")"), None);
        // This process is one /proc knows.
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
    }
}
