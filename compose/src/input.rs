//! Reading the files a repository brings (compose files, `.env`, `env_file`, `label_file`, and for orch `orch.toml`,
//! `orch.lock`, `.dockerignore`): regular files only, each capped in size, the whole load bounded in files and bytes,
//! and YAML nesting bounded before the parser sees it. On CI these files come from an untrusted pull request.

use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest compose file (each `-f`, included or extended file).
pub const MAX_COMPOSE_FILE: u64 = 8 << 20;
/// The largest `.env`, `env_file` or `label_file`.
pub const MAX_ENV_FILE: u64 = 1 << 20;
/// How many files one load may read (each read once: includes and extends are cached).
pub const MAX_FILES: usize = 256;
/// How many bytes one load may read in all.
pub const MAX_LOAD_BYTES: u64 = 64 << 20;
/// How deeply `include`s may nest (each level is a recursion of the loader).
pub const MAX_INCLUDE_DEPTH: usize = 32;
/// The deepest YAML nesting (flow `[`/`{` and block levels) a compose file may have.
pub const MAX_YAML_DEPTH: usize = 128;

/// Why an input file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("it is {kind}, not a regular file; point at a regular file")]
    NotRegular { kind: &'static str },
    #[error("it is larger than the {} limit for this kind of file; make it smaller", human(*limit))]
    TooLarge { limit: u64 },
    #[error("it is not UTF-8 text")]
    NotUtf8,
    #[error("this load read more than {MAX_FILES} files or {} in all; include or extend fewer files", human(MAX_LOAD_BYTES))]
    Budget,
}

impl InputError {
    /// The underlying I/O error kind, for callers that treat a missing file as "none".
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            InputError::Io { source } => Some(source.kind()),
            _ => None,
        }
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes >> 10) }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a named pipe"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads `path` as bytes: it must be a regular file (symlinks are followed) of at most `limit` bytes. Opening is
/// non-blocking so that a named pipe cannot hang the read, and the size is checked on the open file, then enforced
/// while reading (a file that grows is cut off, not read on).
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    read_opened(path, limit, 0)
}

/// [`read_bytes`] without following a symlink at `path` itself (orch's own state files: a link planted in the state
/// directory must not be read through).
pub fn read_bytes_nofollow(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    read_opened(path, limit, libc::O_NOFOLLOW)
}

fn read_opened(path: &Path, limit: u64, extra_flags: i32) -> Result<Vec<u8>, InputError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | extra_flags)
        .open(path)
        .map_err(|source| InputError::Io { source })?;
    let meta = file.metadata().map_err(|source| InputError::Io { source })?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular { kind: kind_of(meta.file_type()) });
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge { limit });
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut out).map_err(|source| InputError::Io { source })?;
    if out.len() as u64 > limit {
        return Err(InputError::TooLarge { limit });
    }
    Ok(out)
}

/// [`read_bytes`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, InputError> {
    String::from_utf8(read_bytes(path, limit)?).map_err(|_| InputError::NotUtf8)
}

/// What one load may still read: every file read goes through it.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    files: Cell<usize>,
    bytes: Cell<u64>,
}

impl Budget {
    pub(crate) fn read(&self, path: &Path, limit: u64) -> Result<String, crate::ComposeError> {
        let fail = |source| crate::ComposeError::Input { path: path.to_path_buf(), source };
        if self.files.get() >= MAX_FILES {
            return Err(fail(InputError::Budget));
        }
        self.files.set(self.files.get() + 1);
        let text = read_text(path, limit).map_err(fail)?;
        let total = self.bytes.get() + text.len() as u64;
        if total > MAX_LOAD_BYTES {
            return Err(fail(InputError::Budget));
        }
        self.bytes.set(total);
        Ok(text)
    }
}

/// Refuses YAML nested deeper than [`MAX_YAML_DEPTH`] before it is parsed: the parser's time grows with depth and
/// its recursion with it. Counts flow brackets outside quotes and comments, and block levels by indentation; it
/// may over-count brackets inside plain scalars, which only matters past the limit.
pub(crate) fn check_yaml_depth(file: &Path, text: &str) -> Result<(), crate::ComposeError> {
    let too_deep = |line: usize| crate::ComposeError::Syntax {
        file: file.to_path_buf(),
        line,
        column: 0,
        message: format!("nested more than {MAX_YAML_DEPTH} levels deep; a compose file needs a few"),
    };
    let mut flow: usize = 0;
    let mut indents: Vec<usize> = vec![];
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches([' ', '-']);
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
            if indents.len() > MAX_YAML_DEPTH {
                return Err(too_deep(n + 1));
            }
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '"' | '\'' if flow > 0 || prev == ' ' || prev == ':' => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if flow + indents.len() > MAX_YAML_DEPTH {
                            return Err(too_deep(n + 1));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
    }
    Ok(())
}

/// The closest ancestor of `dir` that holds a `.git` (the repository under test), else `dir` itself: the
/// directory build contexts must stay inside.
pub fn repository_root(dir: &Path) -> PathBuf {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.join(".git").exists() {
            return d.to_path_buf();
        }
        cur = d.parent();
    }
    dir.to_path_buf()
}

/// Whether `path` (absolute, normalized) stays inside `root`, lexically and, where it exists, once symlinks are
/// followed: a link in the repository pointing at `/etc` does not make `/etc` part of it.
pub fn within(root: &Path, path: &Path) -> bool {
    if !path.starts_with(root) {
        return false;
    }
    match (std::fs::canonicalize(root), std::fs::canonicalize(path)) {
        (Ok(r), Ok(p)) => p.starts_with(r),
        _ => true,
    }
}

/// The error for a path the repository names outside its root.
pub(crate) fn outside(file: &Path, yaml_path: &str, what: &str, path: &Path, root: &Path) -> crate::ComposeError {
    crate::invalid(
        file,
        yaml_path,
        format!(
            "{what} {} is outside the project {}; orch reads only files inside the repository under test (the runner \
             can widen that with ORCH_PROJECT_ROOT=DIR)",
            path.display(),
            root.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "x".repeat(100)).unwrap();
        assert_eq!(read_text(&f, 100).unwrap().len(), 100);
        assert!(matches!(read_text(&f, 99), Err(InputError::TooLarge { limit: 99 })));
        assert!(matches!(read_text(dir.path(), 99), Err(InputError::NotRegular { kind: "a directory" })));
        assert!(matches!(read_text(Path::new("/dev/zero"), 99), Err(InputError::NotRegular { kind: "a character device" })));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        assert!(matches!(read_text(&fifo, 99), Err(InputError::NotRegular { kind: "a named pipe" })));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "a named pipe with no writer must not block");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(read_text(&link, 99), Err(InputError::NotRegular { .. })), "a symlink to a device is refused");
    }

    #[test]
    fn the_budget_counts_files_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, "x").unwrap();
        let b = Budget::default();
        for _ in 0..MAX_FILES {
            b.read(&f, 10).unwrap();
        }
        let err = b.read(&f, 10).unwrap_err().to_string();
        assert!(err.contains("more than 256 files"), "{err}");
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let p = Path::new("c.yaml");
        let ok = "services:\n  web:\n    image: x\n    command: [\"sh\", \"-c\", \"[ -f a ] && echo '[[[['\"]\n";
        check_yaml_depth(p, ok).unwrap();
        check_yaml_depth(p, &format!("a: {}{}", "[".repeat(120), "]".repeat(120))).unwrap();
        let deep = format!("a: {}", "[".repeat(40_000));
        let err = check_yaml_depth(p, &deep).unwrap_err().to_string();
        assert!(err.contains("nested more than 128"), "{err}");
        let block: String = (0..200).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert!(check_yaml_depth(p, &block).is_err());
        let comment = format!("a: 1 # {}\n", "[".repeat(500));
        check_yaml_depth(p, &comment).unwrap();
    }
}
