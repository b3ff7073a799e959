//! `extends:`: a service built on another one, in the same file or another, in chains. Relative paths of a service
//! taken from another file stay relative to that file, as in compose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::merge::merge_service;
use crate::{ComposeError, invalid, join};

type R<T> = Result<T, ComposeError>;

/// Reads a compose file as a YAML tree with merge keys resolved and variables interpolated.
pub(crate) type Reader<'a> = dyn Fn(&Path) -> R<Value> + 'a;

/// Resolves every `extends` in `doc` (the file `file`).
pub(crate) fn resolve(file: &Path, doc: &mut Value, read: &Reader, root: &Path) -> R<()> {
    let mut cache: BTreeMap<(PathBuf, String), Value> = BTreeMap::new();
    let names: Vec<String> = services(doc).map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect()).unwrap_or_default();
    let snapshot = doc.clone();
    for name in names {
        let resolved = resolve_service(file, &snapshot, &name, read, root, &mut vec![], &mut cache)?;
        if let Some(Value::Mapping(m)) = doc.get_mut("services") {
            m.insert(Value::String(name), resolved);
        }
    }
    Ok(())
}

fn services(doc: &Value) -> Option<&Mapping> {
    doc.get("services").and_then(Value::as_mapping)
}

fn resolve_service(
    file: &Path,
    doc: &Value,
    name: &str,
    read: &Reader,
    root: &Path,
    stack: &mut Vec<(PathBuf, String)>,
    cache: &mut BTreeMap<(PathBuf, String), Value>,
) -> R<Value> {
    let id = (file.to_path_buf(), name.to_string());
    if let Some(done) = cache.get(&id) {
        return Ok(done.clone());
    }
    let path = format!("services.{name}");
    if stack.contains(&id) {
        let one_file = stack.iter().all(|(f, _)| f == file);
        let chain: Vec<String> =
            stack.iter().chain(std::iter::once(&id)).map(|(f, s)| if one_file { s.clone() } else { format!("{s} ({})", f.display()) }).collect();
        return Err(invalid(file, &join(&path, "extends"), format!("extends forms a cycle: {}", chain.join(" → "))));
    }
    let Some(service) = services(doc).and_then(|m| m.get(name)) else {
        return Err(invalid(file, "services", format!("service {name:?} is not defined in this file")));
    };
    let mut service = match service {
        Value::Null => Value::Mapping(Mapping::new()),
        other => other.clone(),
    };
    let Some(ext) = service.as_mapping_mut().and_then(|m| m.remove("extends")) else {
        cache.insert(id, service.clone());
        return Ok(service);
    };
    let ep = join(&path, "extends");
    let (base_name, base_file) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Mapping(m) => {
            for k in m.keys() {
                let k = k.as_str().unwrap_or_default();
                if !crate::fields::EXTENDS.contains(&k) {
                    return Err(invalid(file, &join(&ep, k), crate::fields::unknown_message(k, crate::fields::EXTENDS)));
                }
            }
            let svc = m.get("service").and_then(Value::as_str).ok_or_else(|| invalid(file, &ep, "extends needs `service:` (the service to build on)"))?;
            let f = match m.get("file") {
                None | Some(Value::Null) => None,
                Some(Value::String(f)) => Some(f.clone()),
                Some(_) => return Err(invalid(file, &join(&ep, "file"), "expected a file path")),
            };
            (svc.to_string(), f)
        }
        _ => {
            return Err(invalid(file, &ep, "extends takes a service name or a mapping with `service:` and `file:`"));
        }
    };
    stack.push(id.clone());
    let base = match base_file {
        None => {
            if services(doc).and_then(|m| m.get(base_name.as_str())).is_none() {
                return Err(invalid(file, &ep, format!("service {name} extends {base_name:?}, which is not defined in this file")));
            }
            resolve_service(file, doc, &base_name, read, root, stack, cache)?
        }
        Some(f) => {
            let dir = file.parent().unwrap_or(Path::new("."));
            let other = crate::parse::normalize_path(&dir.join(&f));
            if !crate::input::within(root, &other) {
                return Err(crate::input::outside(file, &join(&ep, "file"), "extended file", &other, root));
            }
            let other_doc = read(&other).map_err(|e| match e {
                ComposeError::Input { source, .. } => invalid(file, &join(&ep, "file"), format!("cannot read {}: {source}", other.display())),
                e => e,
            })?;
            if services(&other_doc).and_then(|m| m.get(base_name.as_str())).is_none() {
                return Err(invalid(file, &ep, format!("service {name} extends {base_name:?}, which is not defined in {}", other.display())));
            }
            let mut base = resolve_service(&other, &other_doc, &base_name, read, root, stack, cache)?;
            rebase(&mut base, other.parent().unwrap_or(Path::new(".")), dir);
            base
        }
    };
    stack.pop();
    let mut merged = base;
    merge_service(&mut merged, service);
    cache.insert(id, merged.clone());
    Ok(merged)
}

/// Makes the relative host paths of a service from `from` (another file's directory) absolute, so that they keep
/// pointing where that file meant once the service is used from `to`.
pub(crate) fn rebase(service: &mut Value, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    let abs = |s: &str| -> String {
        if s.starts_with('/') || s.starts_with('~') || s.contains("://") {
            s.to_string()
        } else {
            crate::parse::normalize_path(&from.join(s)).to_string_lossy().into_owned()
        }
    };
    let Some(m) = service.as_mapping_mut() else {
        return;
    };
    match m.get_mut("build") {
        Some(Value::String(ctx)) => *ctx = abs(ctx),
        Some(Value::Mapping(b)) => match b.get_mut("context") {
            Some(Value::String(ctx)) => *ctx = abs(ctx),
            _ => {
                b.insert("context".into(), Value::String(from.to_string_lossy().into_owned()));
            }
        },
        _ => {}
    }
    for key in ["env_file", "label_file"] {
        match m.get_mut(key) {
            Some(Value::String(p)) => *p = abs(p),
            Some(Value::Sequence(items)) => {
                for item in items {
                    match item {
                        Value::String(p) => *p = abs(p),
                        Value::Mapping(e) => {
                            if let Some(Value::String(p)) = e.get_mut("path") {
                                *p = abs(p);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Sequence(vols)) = m.get_mut("volumes") {
        for v in vols {
            match v {
                Value::String(s) if s.starts_with('.') => {
                    if let Some((src, rest)) = s.split_once(':') {
                        *s = format!("{}:{rest}", abs(src));
                    }
                }
                Value::Mapping(vm) if vm.get("type").and_then(Value::as_str) == Some("bind") => {
                    if let Some(Value::String(src)) = vm.get_mut("source") {
                        *src = abs(src);
                    }
                }
                _ => {}
            }
        }
    }
}
