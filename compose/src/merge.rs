//! How compose combines YAML: merge keys (`<<`) inside one file, and the override rules that apply when a later file
//! (or a service's `extends`) is laid over an earlier one, including the `!reset` and `!override` tags.

use serde_yaml_ng::{Mapping, Value};

/// The tag on a value, without its `!`.
fn tag_of(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        _ => None,
    }
}

/// Resolves every `<<` merge key, innermost first, so that an anchor that itself merges another anchor is complete
/// before it is merged. Explicit keys win over merged ones; among merged mappings the first one wins.
pub fn resolve_merge_keys(v: &mut Value) -> Result<(), String> {
    match v {
        Value::Mapping(m) => {
            for (_, child) in m.iter_mut() {
                resolve_merge_keys(child)?;
            }
            let merge_key = Value::String("<<".into());
            if let Some(merged) = m.remove(&merge_key) {
                let sources: Vec<Value> = match merged {
                    Value::Mapping(_) => vec![merged],
                    Value::Sequence(items) => items,
                    Value::Null => vec![],
                    _ => return Err("the value of `<<` must be a mapping (e.g. *anchor) or a list of mappings".into()),
                };
                let mut combined = Mapping::new();
                for s in sources {
                    let Value::Mapping(sm) = s else {
                        return Err("every entry merged with `<<` must be a mapping".into());
                    };
                    for (k, val) in sm {
                        if !combined.contains_key(&k) {
                            combined.insert(k, val);
                        }
                    }
                }
                for (k, val) in combined {
                    if !m.contains_key(&k) {
                        m.insert(k, val);
                    }
                }
            }
            Ok(())
        }
        Value::Sequence(items) => items.iter_mut().try_for_each(resolve_merge_keys),
        Value::Tagged(t) => resolve_merge_keys(&mut t.value),
        _ => Ok(()),
    }
}

/// Removes what `!reset` asked to reset and unwraps `!override` once no later file is left to merge; any other tag is
/// an error naming it.
pub fn strip_tags(v: &mut Value, path: &str) -> Result<(), (String, String)> {
    match v {
        Value::Mapping(m) => {
            let mut reset = vec![];
            for (k, child) in m.iter_mut() {
                let key = k.as_str().unwrap_or_default().to_string();
                let p = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match tag_of(child).as_deref() {
                    Some("reset") => reset.push(k.clone()),
                    Some("override") => {
                        if let Value::Tagged(t) = child {
                            *child = std::mem::take(&mut t.value);
                        }
                        strip_tags(child, &p)?;
                    }
                    Some(other) => {
                        return Err((p, format!("unknown YAML tag !{other}; compose knows !reset and !override")));
                    }
                    None => strip_tags(child, &p)?,
                }
            }
            for k in reset {
                m.remove(&k);
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                if let Some(t) = tag_of(item) {
                    return Err((format!("{path}[{i}]"), format!("YAML tag !{t} is not allowed on a list item")));
                }
                strip_tags(item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Tagged(t) => Err((path.to_string(), format!("unexpected YAML tag !{}", t.tag.to_string().trim_start_matches('!')))),
        _ => Ok(()),
    }
}

/// Lays the file `over` on `base` (whole compose documents).
pub fn merge_documents(base: &mut Value, over: Value) {
    let (Value::Mapping(b), Value::Mapping(o)) = (&mut *base, over) else {
        return;
    };
    for (k, v) in o {
        let key = k.as_str().unwrap_or_default().to_string();
        match (b.get_mut(&k), key.as_str()) {
            (Some(existing), "services") => merge_named(existing, v, merge_service),
            (Some(existing), _) if tag_of(&v).is_none() && matches!((&*existing, &v), (Value::Mapping(_), Value::Mapping(_))) => {
                merge_named(existing, v, merge_plain)
            }
            (Some(existing), _) => apply_tagged(existing, v, merge_plain),
            (None, _) => {
                b.insert(k, v);
            }
        }
    }
}

/// Merges a mapping of named entries (services, networks…) entry by entry.
fn merge_named(base: &mut Value, over: Value, each: fn(&mut Value, Value)) {
    match (&mut *base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => apply_tagged(existing, v, each),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => apply_tagged(b, o, each),
    }
}

/// `!reset` and `!override` on the overriding side replace instead of merging; the tag is kept until the last file
/// so that `strip_tags` can finish a `!reset` (the key disappears).
fn apply_tagged(base: &mut Value, over: Value, each: fn(&mut Value, Value)) {
    match tag_of(&over).as_deref() {
        Some("reset") | Some("override") => *base = over,
        _ => each(base, over),
    }
}

fn merge_plain(base: &mut Value, over: Value) {
    match (&mut *base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => apply_tagged(existing, v, merge_plain),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Fields whose list form is a mapping in disguise (`KEY=VALUE`): merged key by key.
const KEY_VALUE: [&str; 5] = ["environment", "labels", "sysctls", "annotations", "storage_opt"];
/// Lists appended without duplicates.
const APPENDED: [&str; 14] = [
    "ports",
    "expose",
    "dns",
    "dns_search",
    "dns_opt",
    "tmpfs",
    "env_file",
    "label_file",
    "cap_add",
    "cap_drop",
    "security_opt",
    "group_add",
    "profiles",
    "device_cgroup_rules",
];
/// Lists of entries unique by a key (the container path, the secret's target…): a later entry replaces an earlier one.
const UNIQUE_BY: [(&str, &str); 4] = [("volumes", "target"), ("secrets", "target"), ("configs", "target"), ("devices", "target")];

/// Lays one service over another, as `docker compose -f a -f b` and `extends` do.
pub fn merge_service(base: &mut Value, over: Value) {
    let (Value::Mapping(b), Value::Mapping(o)) = (&mut *base, over.clone()) else {
        apply_tagged(base, over, merge_plain);
        return;
    };
    for (k, v) in o {
        let key = k.as_str().unwrap_or_default().to_string();
        let Some(existing) = b.get_mut(&k) else {
            b.insert(k, v);
            continue;
        };
        if tag_of(&v).is_some() {
            apply_tagged(existing, v, merge_plain);
            continue;
        }
        match key.as_str() {
            k if KEY_VALUE.contains(&k) => {
                let mut m = as_kv_mapping(existing);
                for (kk, vv) in as_kv_mapping(&v) {
                    m.insert(kk, vv);
                }
                *existing = Value::Mapping(m);
            }
            "extra_hosts" => append_unique(existing, v),
            "depends_on" | "networks" => {
                let mut m = as_name_mapping(existing);
                let over_m = as_name_mapping(&v);
                let mut mv = Value::Mapping(std::mem::take(&mut m));
                merge_plain(&mut mv, Value::Mapping(over_m));
                *existing = mv;
            }
            "build" => {
                let mut bv = as_build_mapping(existing);
                let mut ov = as_build_mapping(&v);
                if let (Value::Mapping(bm), Value::Mapping(om)) = (&mut bv, &mut ov) {
                    for field in ["args", "labels"] {
                        if let (Some(a), Some(o)) = (bm.get(field), om.get(field)) {
                            let mut m = as_kv_mapping(a);
                            m.extend(as_kv_mapping(o));
                            om.insert(field.into(), Value::Mapping(m));
                        }
                    }
                }
                merge_plain(&mut bv, ov);
                *existing = bv;
            }
            "command" | "entrypoint" => *existing = v,
            "ulimits" | "logging" | "deploy" | "healthcheck" | "blkio_config" => merge_plain(existing, v),
            k if APPENDED.contains(&k) => append_unique(existing, v),
            k if UNIQUE_BY.iter().any(|(f, _)| *f == k) => {
                let id = UNIQUE_BY.iter().find(|(f, _)| *f == k).map(|(_, id)| *id).unwrap_or("target");
                merge_unique_by(existing, v, id);
            }
            _ => merge_plain(existing, v),
        }
    }
}

fn append_unique(existing: &mut Value, over: Value) {
    let to_list = |v: Value| match v {
        Value::Sequence(s) => s,
        Value::Null => vec![],
        other => vec![other],
    };
    let mut list = to_list(std::mem::take(existing));
    for item in to_list(over) {
        if !list.contains(&item) {
            list.push(item);
        }
    }
    *existing = Value::Sequence(list);
}

/// The identity of a volume/secret/device entry: its target (long form) or what the short form says it is.
fn entry_id(v: &Value, id: &str) -> Option<String> {
    match v {
        Value::Mapping(m) => m.get(id).or_else(|| m.get("source")).and_then(|t| t.as_str()).map(String::from),
        Value::String(s) if id == "target" => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(match parts.as_slice() {
                [t] => t.to_string(),
                [_, t, ..] => t.to_string(),
                _ => s.clone(),
            })
        }
        _ => None,
    }
}

fn merge_unique_by(existing: &mut Value, over: Value, id: &str) {
    let Value::Sequence(base) = existing else {
        *existing = over;
        return;
    };
    let Value::Sequence(items) = over else {
        *existing = over;
        return;
    };
    for item in items {
        let key = entry_id(&item, id);
        match base.iter().position(|b| key.is_some() && entry_id(b, id) == key) {
            Some(i) => base[i] = item,
            None => base.push(item),
        }
    }
}

/// `[K=V, ...]` or `{K: V}` as a mapping (a list entry without `=` maps to null).
fn as_kv_mapping(v: &Value) -> Mapping {
    match v {
        Value::Mapping(m) => m.clone(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (Value::String(k.into()), Value::String(v.into())),
                None => (Value::String(s.into()), Value::Null),
            })
            .collect(),
        _ => Mapping::new(),
    }
}

/// `[a, b]` or `{a: {...}}` as a mapping of names.
fn as_name_mapping(v: &Value) -> Mapping {
    match v {
        Value::Mapping(m) => m.clone(),
        Value::Sequence(items) => items.iter().filter_map(|i| i.as_str()).map(|s| (Value::String(s.into()), Value::Null)).collect(),
        _ => Mapping::new(),
    }
}

/// `build: ./dir` as `{context: ./dir}`.
fn as_build_mapping(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut m = Mapping::new();
            m.insert("context".into(), Value::String(s.clone()));
            Value::Mapping(m)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn nested_merge_keys_resolve_inner_first() {
        let mut v = y("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n");
        resolve_merge_keys(&mut v).unwrap();
        assert_eq!(v["c"], y("{x: 1, y: 2, z: 3}"));
    }

    #[test]
    fn services_merge_like_compose() {
        let mut base = y("image: a\nenvironment: [A=1, B=2]\nports: ['80']\nvolumes: ['d:/data', '/x']\ncommand: [a, b]\n");
        merge_service(&mut base, y("environment: {B: 3}\nports: ['81']\nvolumes: ['e:/data']\ncommand: [c]\n"));
        assert_eq!(base, y("image: a\nenvironment: {A: '1', B: 3}\nports: ['80', '81']\nvolumes: ['e:/data', '/x']\ncommand: [c]\n"));
    }

    #[test]
    fn reset_and_override() {
        let mut doc = y("services: {a: {image: x, ports: ['80'], environment: {A: '1'}}}");
        merge_documents(&mut doc, y("services: {a: {ports: !reset [], environment: !override {B: '2'}}}"));
        strip_tags(&mut doc, "").unwrap();
        assert_eq!(doc, y("services: {a: {image: x, environment: {B: '2'}}}"));
        let mut bad = y("services: {a: !custom {image: x}}");
        assert!(strip_tags(&mut bad, "").unwrap_err().1.contains("!custom"));
    }
}
