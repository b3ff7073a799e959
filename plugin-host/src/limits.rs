//! What a plugin may hand back, checked before orch processes any of it: total size, the length of every list and
//! every string. A plugin that exceeds one fails with [`PluginError::OutputTooLarge`] naming the limit, so no answer
//! can make the host's later work (carving, allocating, rendering) grow without bound.

use serde::Serialize;

use super::PluginError;

/// The bounds on one call's answer. Generous for any real policy (a few hundred services and networks).
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// The whole answer, measured as JSON.
    pub total_bytes: usize,
    /// Entries of any one list (networks, attachments, ports, diagnostics…).
    pub list_len: usize,
    /// Characters of any one string (a name, a message, a settings schema).
    pub string_len: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits { total_bytes: 8 << 20, list_len: 4096, string_len: 64 << 10 }
    }
}

impl OutputLimits {
    /// The most the host copies out of the guest for one answer (wasmtime's per-call "hostcall fuel"): the answer's
    /// own limit, with room for the host's in-memory layout of it.
    pub fn copy_bytes(&self) -> usize {
        self.total_bytes.saturating_mul(2)
    }
}

/// Counts bytes without keeping them.
struct Counter {
    bytes: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks `value` against `limits`; the error names the plugin, the call and the limit that was passed.
pub fn check<T: Serialize>(value: &T, limits: &OutputLimits, plugin: &str, call: &str) -> Result<(), PluginError> {
    let too_large = |what: String| PluginError::OutputTooLarge { plugin: plugin.into(), call: call.into(), what };
    // Size first, without building anything: a huge answer stops here.
    let mut counter = Counter { bytes: 0, limit: limits.total_bytes };
    if serde_json::to_writer(&mut counter, value).is_err() {
        return Err(too_large(format!("its answer is over {} bytes", limits.total_bytes)));
    }
    let tree = serde_json::to_value(value).map_err(|e| too_large(format!("its answer cannot be read: {e}")))?;
    let mut stack = vec![("".to_string(), &tree)];
    while let Some((path, v)) = stack.pop() {
        match v {
            serde_json::Value::String(s) if s.chars().count() > limits.string_len => {
                return Err(too_large(format!("a string at `{}` has {} characters, over the limit of {}", shown(&path), s.chars().count(), limits.string_len)));
            }
            serde_json::Value::Array(items) => {
                if items.len() > limits.list_len {
                    return Err(too_large(format!("the list at `{}` has {} entries, over the limit of {}", shown(&path), items.len(), limits.list_len)));
                }
                stack.extend(items.iter().enumerate().map(|(i, item)| (format!("{path}[{i}]"), item)));
            }
            serde_json::Value::Object(m) => {
                stack.extend(m.iter().map(|(k, item)| (if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, item)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The path as the WIT names it: the `Ok`/`Err` wrapper of a policy's result is not part of it.
fn shown(path: &str) -> &str {
    let path = ["Ok.", "Err."].iter().find_map(|w| path.strip_prefix(w)).unwrap_or(path);
    if path.is_empty() || path == "Ok" || path == "Err" { "(the answer)" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_what_was_passed() {
        let l = OutputLimits { total_bytes: 1000, list_len: 3, string_len: 5 };
        assert!(check(&serde_json::json!({"a": [1, 2, 3], "b": "12345"}), &l, "p", "networks.plan").is_ok());
        let e = check(&serde_json::json!({"a": [1, 2, 3, 4]}), &l, "p", "networks.plan").unwrap_err().to_string();
        assert!(e.contains("plugin p: networks.plan") && e.contains("`a` has 4 entries, over the limit of 3"), "{e}");
        let e = check(&serde_json::json!({"a": [{"msg": "123456"}]}), &l, "p", "c").unwrap_err().to_string();
        assert!(e.contains("`a[0].msg` has 6 characters"), "{e}");
        let e = check(&"x".repeat(2000), &l, "p", "c").unwrap_err().to_string();
        assert!(e.contains("over 1000 bytes"), "{e}");
    }
}
