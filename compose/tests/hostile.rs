//! A repository under test is untrusted: its compose files, `.env`, env and label files may be crafted to hang the
//! import, exhaust memory or the stack, reach files outside the repository, or leak secrets into error messages.
//! Each case here was a finding of the hostile-repository review (issue #24); each must end in a clear error.

use std::path::{Path, PathBuf};

use orch_compose::{ComposeError, LoadOptions, load};

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn load_in(dir: &Path) -> Result<orch_compose::Loaded, ComposeError> {
    load(&LoadOptions { files: vec![dir.join("compose.yaml")], ..Default::default() })
}

fn error(dir: &Path) -> String {
    match load_in(dir) {
        Ok(_) => panic!("the import should have failed"),
        Err(e) => e.to_string(),
    }
}

fn mkfifo(p: &Path) {
    let status = std::process::Command::new("mkfifo").arg(p).status().unwrap();
    assert!(status.success());
}

#[test]
fn files_that_are_not_regular_are_refused_without_reading_them() {
    let dir = project(&[("compose.yaml", "services:\n  web:\n    extends: { file: /dev/zero, service: x }\n")]);
    let err = error(dir.path());
    assert!(err.contains("/dev/zero") && err.contains("outside the project"), "{err}");
    // Even where the runner allows the whole file system, a device is not read.
    let everything = LoadOptions { files: vec![dir.path().join("compose.yaml")], root: Some("/".into()), ..Default::default() };
    let err = load(&everything).err().unwrap().to_string();
    assert!(err.contains("/dev/zero") && err.contains("not a regular file"), "{err}");

    // A named pipe nobody writes to would block a plain read forever.
    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: pipe.env\n")]);
    mkfifo(&dir.path().join("pipe.env"));
    let err = error(dir.path());
    assert!(err.contains("pipe.env") && err.contains("named pipe"), "{err}");

    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n    label_file: labels\n")]);
    std::fs::create_dir(dir.path().join("labels")).unwrap();
    let err = error(dir.path());
    assert!(err.contains("labels") && err.contains("a directory"), "{err}");

    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n")]);
    mkfifo(&dir.path().join(".env"));
    let err = error(dir.path());
    assert!(err.contains(".env") && err.contains("named pipe"), "{err}");

    let dir = project(&[("compose.yaml", "include: [pipe.yaml]\nservices:\n  web:\n    image: busybox\n")]);
    mkfifo(&dir.path().join("pipe.yaml"));
    let err = error(dir.path());
    assert!(err.contains("pipe.yaml") && err.contains("named pipe"), "{err}");
}

#[test]
fn every_input_file_is_capped() {
    let big = format!("services:\n  web:\n    image: busybox\n#{}\n", "x".repeat(9 << 20));
    let dir = project(&[("compose.yaml", &big)]);
    let err = error(dir.path());
    assert!(err.contains("compose.yaml") && err.contains("8 MiB"), "{err}");

    let env = format!("A={}\n", "x".repeat(2 << 20));
    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: big.env\n"), ("big.env", &env)]);
    let err = error(dir.path());
    assert!(err.contains("big.env") && err.contains("1 MiB"), "{err}");

    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n"), (".env", &env)]);
    let err = error(dir.path());
    assert!(err.contains(".env") && err.contains("1 MiB"), "{err}");
}

/// Each file includes the next one twice: 2^n loads of the last one without a cache.
#[test]
fn an_include_graph_is_loaded_once_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30;
    for i in 0..n {
        let text = if i + 1 < n {
            format!("include:\n  - f{}.yaml\n  - path: f{}.yaml\nservices:\n  s{i}:\n    image: busybox\n", i + 1, i + 1)
        } else {
            format!("services:\n  s{i}:\n    image: busybox\n")
        };
        std::fs::write(dir.path().join(format!("f{i}.yaml")), text).unwrap();
    }
    std::fs::copy(dir.path().join("f0.yaml"), dir.path().join("compose.yaml")).unwrap();
    let loaded = load_in(dir.path()).unwrap();
    assert_eq!(loaded.project.services.len(), n);

    // Nesting without end stops at the include depth; many distinct files at the file budget.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..100 {
        std::fs::write(dir.path().join(format!("g{i}.yaml")), format!("include: [g{}.yaml]\nservices:\n  s{i}:\n    image: busybox\n", i + 1)).unwrap();
    }
    std::fs::write(dir.path().join("g100.yaml"), "services: {}\n").unwrap();
    std::fs::copy(dir.path().join("g0.yaml"), dir.path().join("compose.yaml")).unwrap();
    let err = error(dir.path());
    assert!(err.contains("includes nest more than 32 deep"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let list: Vec<String> = (0..300).map(|i| format!("h{i}.yaml")).collect();
    for (i, f) in list.iter().enumerate() {
        std::fs::write(dir.path().join(f), format!("services:\n  s{i}:\n    image: busybox\n")).unwrap();
    }
    std::fs::write(dir.path().join("compose.yaml"), format!("include: [{}]\nservices: {{}}\n", list.join(", "))).unwrap();
    let err = error(dir.path());
    assert!(err.contains("more than 256 files"), "{err}");
}

#[test]
fn nesting_is_bounded_with_an_error_naming_the_file() {
    let dir = project(&[("compose.yaml", &format!("services:\n  web:\n    image: busybox\n    command: {}\n", "[".repeat(100_000)))]);
    let err = error(dir.path());
    assert!(err.contains("compose.yaml") && err.contains("nested more than 128"), "{err}");

    let deep = format!("{}x{}", "${A:-".repeat(100_000), "}".repeat(100_000));
    let dir = project(&[("compose.yaml", &format!("services:\n  web:\n    image: \"{deep}\"\n"))]);
    let err = error(dir.path());
    assert!(err.contains("services.web.image") && err.contains("nested more than 32"), "{err}");

    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n"), (".env", &format!("A={deep}\n"))]);
    let err = error(dir.path());
    assert!(err.contains(".env:1") && err.contains("nested more than 32"), "{err}");
}

#[test]
fn files_outside_the_repository_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret.yaml"), "services:\n  x:\n    image: busybox\n").unwrap();
    std::fs::write(outer.path().join("secret.env"), "A=1\n").unwrap();
    let repo = outer.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("deploy")).unwrap();
    let case = |compose: &str| -> Result<orch_compose::Loaded, ComposeError> {
        std::fs::write(repo.join("deploy/compose.yaml"), compose).unwrap();
        load(&LoadOptions { files: vec![repo.join("deploy/compose.yaml")], ..Default::default() })
    };
    let refused = [
        ("include: [../../secret.yaml]\nservices: {}\n", "included file"),
        ("services:\n  web:\n    extends: { file: ../../secret.yaml, service: x }\n", "extended file"),
        ("services:\n  web:\n    image: busybox\n    env_file: ../../secret.env\n", "env_file"),
        ("services:\n  web:\n    image: busybox\n    label_file: /etc/passwd\n", "label_file"),
        ("services:\n  web:\n    build: ../..\n", "build context"),
        ("services:\n  web:\n    build: { context: ., dockerfile: ../../secret.yaml }\n", "Dockerfile"),
        ("services:\n  web:\n    image: busybox\n    secrets: [s]\nsecrets:\n  s:\n    file: ~/.ssh/id_rsa\n", "file"),
        ("services:\n  web:\n    image: busybox\n    configs: [c]\nconfigs:\n  c:\n    file: /etc/shadow\n", "file"),
    ];
    for (compose, what) in refused {
        let err = case(compose).err().unwrap_or_else(|| panic!("{compose} was accepted")).to_string();
        assert!(err.contains(what) && err.contains("outside the project") && err.contains("ORCH_PROJECT_ROOT"), "{compose}: {err}");
    }
    // The repository root, not the compose file's folder, is the boundary: a context one level up is the repo.
    std::fs::write(repo.join("Dockerfile"), "FROM scratch\n").unwrap();
    case("services:\n  web:\n    build: { context: .., dockerfile: Dockerfile }\n").unwrap();
    // A symlink inside the repository does not make its target part of it.
    std::os::unix::fs::symlink(outer.path(), repo.join("escape")).unwrap();
    let err = case("services:\n  web:\n    image: busybox\n    env_file: ../escape/secret.env\n").err().unwrap().to_string();
    assert!(err.contains("outside the project"), "{err}");
    // Nor does a `.env` that is a link to a file outside.
    std::os::unix::fs::symlink(outer.path().join("secret.env"), repo.join("deploy/.env")).unwrap();
    let err = case("services:\n  web:\n    image: busybox\n").err().unwrap().to_string();
    assert!(err.contains(".env") && err.contains("outside the project"), "{err}");
    std::fs::remove_file(repo.join("deploy/.env")).unwrap();
    // The runner (not the repository) may widen it.
    let wide = LoadOptions { files: vec![repo.join("deploy/compose.yaml")], root: Some(PathBuf::from(outer.path())), ..Default::default() };
    std::fs::write(repo.join("deploy/compose.yaml"), "services:\n  web:\n    image: busybox\n    env_file: ../../secret.env\n").unwrap();
    load(&wide).unwrap();
}

#[test]
fn names_that_read_as_options_are_refused() {
    for name in ["-f", "--follow", ".hidden", "_x", "a b", "a/b"] {
        let dir = project(&[("compose.yaml", &format!("services:\n  '{name}':\n    image: busybox\n"))]);
        let err = error(dir.path());
        assert!(err.contains("invalid service name"), "{name}: {err}");
    }
    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\nvolumes:\n  '--rm': {}\n")]);
    assert!(error(dir.path()).contains("invalid volume name"));
    let dir = project(&[("compose.yaml", "services:\n  web.1_a-b:\n    image: busybox\n")]);
    load_in(dir.path()).unwrap();
}

#[test]
fn env_file_errors_name_the_key_not_the_value() {
    for env in ["PASSWORD=\"hunter2${oops\"\n", "PASSWORD=hunter2${oops\n", "hunter2\n", "PASSWORD='hunter2\n"] {
        let dir = project(&[("compose.yaml", "services:\n  web:\n    image: busybox\n"), (".env", env)]);
        let err = error(dir.path());
        assert!(!err.contains("hunter2") && err.contains(".env:1"), "{env:?}: {err}");
    }
    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: \"x${PASSWORD_hunter2 y}\"\n")]);
    let err = error(dir.path());
    assert!(!err.contains("hunter2 y") && err.contains("services.web.image"), "{err}");
}
