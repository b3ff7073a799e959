//! Named build contexts (`additional_contexts`) for the classic builder, which knows only one context: a Dockerfile's
//! references to a named context (`FROM NAME`, `COPY --from=NAME`) are rewritten to an image that holds it.

use std::collections::BTreeMap;

/// Rewrites `FROM NAME` and `COPY|ADD --from=NAME` to the image each named context became. Stage names the
/// Dockerfile defines itself win over contexts of the same name, as in BuildKit.
pub fn rewrite_named_contexts(dockerfile: &str, images: &BTreeMap<String, String>) -> String {
    let stages: Vec<String> = dockerfile
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let is_from = words.first().is_some_and(|w| w.eq_ignore_ascii_case("FROM"));
            let as_at = words.iter().position(|w| w.eq_ignore_ascii_case("AS"))?;
            is_from.then(|| words.get(as_at + 1).map(|s| s.to_string())).flatten()
        })
        .collect();
    let image_for = |name: &str| if stages.iter().any(|s| s == name) { None } else { images.get(name) };
    let mut out = String::with_capacity(dockerfile.len());
    for line in dockerfile.split_inclusive('\n') {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let instruction = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        let rewritten: Option<Vec<String>> = match instruction.as_str() {
            "FROM" => {
                // FROM [--platform=…] IMAGE [AS NAME]
                let at = words.iter().skip(1).position(|w| !w.starts_with("--")).map(|i| i + 1);
                at.and_then(|i| image_for(words[i]).map(|img| (i, img))).map(|(i, img)| {
                    let mut w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
                    w[i] = img.clone();
                    w
                })
            }
            "COPY" | "ADD" => {
                let mut changed = false;
                let w: Vec<String> = words
                    .iter()
                    .map(|word| match word.strip_prefix("--from=").and_then(image_for) {
                        Some(img) => {
                            changed = true;
                            format!("--from={img}")
                        }
                        None => word.to_string(),
                    })
                    .collect();
                changed.then_some(w)
            }
            _ => None,
        };
        match rewritten {
            Some(w) => {
                out.push_str(indent);
                out.push_str(&w.join(" "));
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The Dockerfile of a helper image that holds a directory context (sent under `context/`) at its root.
pub const CONTEXT_IMAGE_DOCKERFILE: &str = "FROM scratch\nCOPY context/ /\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_contexts_become_images() {
        let images = BTreeMap::from([("base".to_string(), "busybox:1".to_string()), ("assets".to_string(), "orch-ctx/p-assets:1".to_string())]);
        let df = "FROM --platform=linux/amd64 base AS build\nCOPY --from=assets --chown=1 a.txt /a\nfrom base\nCOPY --from=build /x /y\nRUN echo base\n";
        assert_eq!(
            rewrite_named_contexts(df, &images),
            "FROM --platform=linux/amd64 busybox:1 AS build\nCOPY --from=orch-ctx/p-assets:1 --chown=1 a.txt /a\nfrom busybox:1\nCOPY --from=build /x /y\nRUN echo base\n"
        );
        // A stage of the Dockerfile named like a context is the stage.
        let shadowed = "FROM busybox AS assets\nFROM base\nCOPY --from=assets /a /a";
        assert_eq!(rewrite_named_contexts(shadowed, &images), "FROM busybox AS assets\nFROM busybox:1\nCOPY --from=assets /a /a");
    }
}
