//! REFERENCE.md is generated: every record a plugin sees or answers with, field by field with its doc comment, from
//! `wit/policy.wit`, and the SDK's helpers (`Service::image_base`, builders…) with theirs, from `src/`. This test
//! fails when the file is out of date; `UPDATE_REFERENCE=1 cargo test -p orch-plugin-api --test reference` rewrites it.

use std::fmt::Write;
use std::path::Path;

use wit_parser::{Docs, Resolve, Type, TypeDefKind};

fn doc(d: &Docs) -> String {
    d.contents.as_deref().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ty(resolve: &Resolve, t: &Type) -> String {
    match t {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            if let Some(name) = &def.name {
                return name.clone();
            }
            match &def.kind {
                TypeDefKind::List(t) => format!("list<{}>", ty(resolve, t)),
                TypeDefKind::Option(t) => format!("option<{}>", ty(resolve, t)),
                TypeDefKind::Tuple(t) => format!("tuple<{}>", t.types.iter().map(|t| ty(resolve, t)).collect::<Vec<_>>().join(", ")),
                TypeDefKind::Type(t) => ty(resolve, t),
                TypeDefKind::Result(r) => {
                    let part = |t: &Option<Type>| t.as_ref().map(|t| ty(resolve, t)).unwrap_or_else(|| "_".into());
                    format!("result<{}, {}>", part(&r.ok), part(&r.err))
                }
                other => other.as_str().to_string(),
            }
        }
    }
}

/// The SDK's public helpers: `pub fn` items of `src/builders.rs` and `src/lib.rs` with the `impl` they belong to and
/// their doc comment.
fn helpers(src: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let (mut owner, mut docs): (Option<String>, Vec<String>) = (None, vec![]);
    for line in src.lines() {
        let t = line.trim();
        if let Some(rest) = line.strip_prefix("impl ") {
            owner = (!rest.contains(" for ")).then(|| rest.trim_end_matches(" {").trim().to_string());
        } else if line == "}" {
            owner = None;
        }
        if let Some(d) = t.strip_prefix("///") {
            docs.push(d.trim().to_string());
            continue;
        }
        if let Some(sig) = t.strip_prefix("pub fn ") {
            let sig = sig.trim_end_matches(" {").trim_end_matches('{').trim();
            let name = match &owner {
                Some(o) => format!("{o}::{sig}"),
                None => sig.to_string(),
            };
            out.push((name, docs.join(" ")));
        }
        if !t.starts_with("#[") {
            docs.clear();
        }
    }
    out
}

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut resolve = Resolve::new();
    let (pkg, _) = resolve.push_dir(root.join("wit")).expect("wit/ parses");
    let package = &resolve.packages[pkg];
    let mut md = String::new();
    writeln!(md, "# orch-plugin-api reference\n").unwrap();
    writeln!(
        md,
        "Generated from `wit/policy.wit` ({}) and the SDK's source by `tests/reference.rs`; do not edit. What a plugin \
         sees is the `types` interface's `snapshot`; what it can decide is each policy interface's `*-plan` and \
         `*-intent` records. In Rust, WIT names are CamelCase types and snake_case fields (`service-intent.add-tmpfs` is \
         `ServiceIntent::add_tmpfs`).\n",
        package.name
    )
    .unwrap();
    for (iname, iid) in &package.interfaces {
        let iface = &resolve.interfaces[*iid];
        writeln!(md, "## interface `{iname}`\n").unwrap();
        let d = doc(&iface.docs);
        if !d.is_empty() {
            writeln!(md, "{d}\n").unwrap();
        }
        for (fname, f) in &iface.functions {
            let params: Vec<String> = f.params.iter().map(|p| format!("{}: {}", p.name, ty(&resolve, &p.ty))).collect();
            let ret = f.result.as_ref().map(|t| format!(" -> {}", ty(&resolve, t))).unwrap_or_default();
            writeln!(md, "- func `{fname}({}){ret}` {}", params.join(", "), doc(&f.docs)).unwrap();
        }
        if !iface.functions.is_empty() {
            writeln!(md).unwrap();
        }
        for (tname, tid) in &iface.types {
            let def = &resolve.types[*tid];
            match &def.kind {
                TypeDefKind::Record(r) => {
                    writeln!(md, "### record `{tname}`\n").unwrap();
                    let d = doc(&def.docs);
                    if !d.is_empty() {
                        writeln!(md, "{d}\n").unwrap();
                    }
                    writeln!(md, "| field | type | meaning |\n|---|---|---|").unwrap();
                    for f in &r.fields {
                        writeln!(md, "| `{}` | `{}` | {} |", f.name, ty(&resolve, &f.ty).replace('|', "\\|"), doc(&f.docs).replace('|', "\\|")).unwrap();
                    }
                    writeln!(md).unwrap();
                }
                TypeDefKind::Enum(e) => {
                    let cases: Vec<String> = e.cases.iter().map(|c| format!("`{}`", c.name)).collect();
                    writeln!(md, "- enum `{tname}`: {} {}\n", cases.join(", "), doc(&def.docs)).unwrap();
                }
                TypeDefKind::Variant(v) => {
                    let cases: Vec<String> = v
                        .cases
                        .iter()
                        .map(|c| format!("`{}`{}", c.name, c.ty.as_ref().map(|t| format!("({})", ty(&resolve, t))).unwrap_or_default()))
                        .collect();
                    writeln!(md, "- variant `{tname}`: {} {}\n", cases.join(", "), doc(&def.docs)).unwrap();
                }
                _ => {}
            }
        }
    }
    writeln!(md, "## SDK helpers (Rust)\n").unwrap();
    for file in ["src/lib.rs", "src/builders.rs", "src/settings.rs"] {
        let src = std::fs::read_to_string(root.join(file)).unwrap();
        for (sig, d) in helpers(&src) {
            writeln!(md, "- `{sig}` {d}").unwrap();
        }
    }
    md
}

#[test]
fn reference_md_is_generated_from_the_wit_and_the_sdk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("REFERENCE.md");
    let fresh = generate();
    if std::env::var_os("UPDATE_REFERENCE").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(on_disk == fresh, "plugin-api/REFERENCE.md is out of date: run UPDATE_REFERENCE=1 cargo test -p orch-plugin-api --test reference");
    for must in ["add-tmpfs", "resources", "Service::image_base", "placement"] {
        assert!(fresh.contains(must), "the reference lists {must}");
    }
}
