//! Build contexts as Docker's CLI sends them: the directory minus what its `.dockerignore` excludes (the Dockerfile and
//! `.dockerignore` always go, as the daemon needs them), archived to a temporary file that the engine streams, so a
//! large context never sits in memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// `.dockerignore`'s rules in order; the last rule that matches a path (or one of its parent directories) decides.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl DockerIgnore {
    /// The rules of `dir/.dockerignore` (none when there is no such file).
    pub fn load(dir: &Path) -> std::io::Result<DockerIgnore> {
        let path = dir.join(".dockerignore");
        match orch_compose::input::read_text(&path, orch_compose::input::MAX_ENV_FILE) {
            Ok(text) => DockerIgnore::parse(&text),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(DockerIgnore::default()),
            Err(e) => Err(std::io::Error::other(format!("{}: {e}", path.display()))),
        }
    }

    pub fn parse(text: &str) -> std::io::Result<DockerIgnore> {
        let mut rules = vec![];
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, exception) = match line.strip_prefix('!') {
                Some(p) => (p.trim(), true),
                None => (line, false),
            };
            // Patterns are relative to the context root, written with or without a leading slash or `./`.
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!(".dockerignore: pattern {line:?}: {e}")))?;
            rules.push((glob.compile_matcher(), exception));
        }
        Ok(DockerIgnore { rules })
    }

    /// Whether `rel` (relative to the context root, `/`-separated) is left out of the context.
    pub fn excludes(&self, rel: &Path) -> bool {
        let mut excluded = false;
        for (glob, exception) in &self.rules {
            // A rule that matches a parent directory covers everything below it.
            if rel.ancestors().filter(|a| !a.as_os_str().is_empty()).any(|a| glob.is_match(a)) {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether an excluded directory may still hold something an exception brings back (then it is walked).
    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, exception)| *exception)
    }
}

/// `filepath.Clean` for patterns: no leading `/` or `./`, no `.` segments, no doubled slashes.
fn clean(pattern: &str) -> String {
    pattern.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

/// A tar archive of a build context on disk; removed when dropped.
pub struct Archive {
    file: tempfile::NamedTempFile,
}

impl Archive {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.as_file().metadata()?.len())
    }

    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The archive's bytes (for tests and small helper contexts).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path())
    }
}

/// `dir` as a tar archive under `prefix`, minus what `dir/.dockerignore` excludes, plus `extra` (path, text) files at
/// the archive's root. `keep` names files that go in even when excluded (the Dockerfile). `.git` and `target` are
/// never sent.
pub fn archive(dir: &Path, prefix: &str, extra: &[(&str, &str)], keep: &[&Path]) -> std::io::Result<Archive> {
    let ignore = DockerIgnore::load(dir)?;
    let file = tempfile::Builder::new().prefix("orch-context-").suffix(".tar").tempfile()?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file.reopen()?));
    for (path, text) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder.append_data(&mut header, path, text.as_bytes())?;
    }
    builder.follow_symlinks(false);
    if !prefix.is_empty() {
        builder.append_dir(prefix, dir)?;
    }
    let always: Vec<PathBuf> = keep.iter().map(|k| k.to_path_buf()).chain([PathBuf::from(".dockerignore")]).collect();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(dir).expect("inside the context").to_path_buf();
            if rel.starts_with(".git") || rel.starts_with("target") {
                continue;
            }
            let excluded = ignore.excludes(&rel) && !always.contains(&rel);
            let name = Path::new(prefix).join(&rel);
            if e.file_type()?.is_dir() {
                if !excluded {
                    builder.append_dir(&name, &path)?;
                }
                if !excluded || ignore.has_exceptions() {
                    stack.push(path);
                }
            } else if !excluded {
                builder.append_path_with_name(&path, &name)?;
            }
        }
    }
    builder.into_inner()?.flush()?;
    Ok(Archive { file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: &Archive) -> Vec<String> {
        let mut ar = tar::Archive::new(std::fs::File::open(a.path()).unwrap());
        let mut v: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn dockerignore_excludes_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "Dockerfile",
            "app.py",
            "README.md",
            "docs/guide.md",
            "docs/keep.md",
            "node_modules/x/index.js",
            "src/a.log",
            "src/deep/b.log",
            "src/main.py",
            "secret.env",
        ] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), f).unwrap();
        }
        std::fs::write(d.join(".dockerignore"), "# comment\nnode_modules\n/docs\n!docs/keep.md\n**/*.log\n*.md\n!README.md\n./secret.env\nDockerfile\n")
            .unwrap();
        let a = archive(d, "", &[], &[Path::new("Dockerfile")]).unwrap();
        assert_eq!(names(&a), [".dockerignore", "Dockerfile", "README.md", "app.py", "docs/keep.md", "src", "src/deep", "src/main.py"]);
    }

    #[test]
    fn without_dockerignore_everything_but_git_and_target_goes() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a", ".git/HEAD", "target/x", "b/c"] {
            std::fs::create_dir_all(dir.path().join(f).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let a = archive(dir.path(), "ctx/", &[("extra.txt", "hi")], &[]).unwrap();
        assert_eq!(names(&a), ["ctx", "ctx/a", "ctx/b", "ctx/b/c", "extra.txt"]);
    }

    #[test]
    fn a_bad_pattern_names_itself() {
        let err = DockerIgnore::parse("[unclosed\n").unwrap_err();
        assert!(err.to_string().contains("[unclosed"), "{err}");
    }
}
