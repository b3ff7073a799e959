//! Sharing plugins through a real OCI registry: Debian's `docker-registry` (CNCF distribution) on loopback, with
//! htpasswd basic auth and credentials from a Docker config. One project pushes; a second project pins the plugin in
//! orch.lock, plans with it, keeps working offline from the cache, and refuses tampered digests and blobs.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";
const USER: &str = "orch";
const PASSWORD: &str = "s3cret-plugin-push";

struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    config: PathBuf,
}

impl Registry {
    /// Starts the registry on a free loopback port with its storage in `dir`; over TLS with `tls` (cert, key).
    fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None)
    }

    fn start_with(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> Registry {
        assert!(Path::new(REGISTRY).is_file(), "Debian's docker-registry is needed (.ci/run installs it)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 5).unwrap())).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{}auth:\n  htpasswd:\n    realm: orch-test\n    path: {}\n",
                storage.display(),
                tls.map(|(c, k)| format!("  tls:\n    certificate: {}\n    key: {}\n", c.display(), k.display())).unwrap_or_default(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let mut r = Registry { child: spawn(&config), port, storage, config };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(self.child.try_wait().unwrap().is_none(), "docker-registry exited at start");
            assert!(Instant::now() < deadline, "docker-registry did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.config);
        self.wait_ready();
    }

    fn reference(&self, repo: &str) -> String {
        format!("oci://127.0.0.1:{}/{repo}", self.port)
    }

    /// The stored blob file of a digest (distribution's filesystem layout).
    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

fn spawn(config: &Path) -> Child {
    Command::new(REGISTRY).arg("serve").arg(config).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in [
        vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &p("ca.key"), "-out", &p("ca.pem"), "-days", "2", "-subj", "/CN=orch-test-ca"],
        vec!["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &p("key.pem"), "-out", &p("req.csr"), "-subj", "/CN=127.0.0.1"],
        vec![
            "x509",
            "-req",
            "-in",
            &p("req.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("cert.pem"),
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
        ],
    ] {
        let out = Command::new("openssl").args(&args).output().expect("the openssl CLI");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    }
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// `orch` in `dir` with its own plugin cache and Docker config.
fn orch(dir: &Path, cache: &Path, docker_config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(dir)
        .env("ORCH_CACHE_DIR", cache)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("ORCH_LOCKED")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lock_digest(project: &Path) -> String {
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(project.join("orch.lock")).unwrap()).unwrap();
    lock["plugin"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn push_pin_pull_offline_and_refuse_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(&tmp.path().join("registry"));
    let reference = registry.reference("team/ports:1.0.0");

    // Docker configs: one with no credentials, one with the registry's (as `docker login` writes them).
    let anonymous = tmp.path().join("docker-anon");
    std::fs::create_dir_all(&anonymous).unwrap();
    std::fs::write(anonymous.join("config.json"), "{}").unwrap();
    let logged_in = tmp.path().join("docker");
    std::fs::create_dir_all(&logged_in).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(logged_in.join("config.json"), format!(r#"{{"auths": {{"127.0.0.1:{}": {{"auth": "{auth}"}}}}}}"#, registry.port)).unwrap();

    // Project A publishes a plugin (here: the bytes of the built-in port-ranges).
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    let a_cache = tmp.path().join("cache-a");
    let denied = orch(&a, &a_cache, &anonymous, &["plugin", "push", "port-ranges", &reference]);
    assert_eq!(denied.status.code(), Some(4), "{}", text(&denied.stderr));
    assert!(text(&denied.stderr).contains("docker login"), "{}", text(&denied.stderr));
    let pushed = orch(&a, &a_cache, &logged_in, &["plugin", "push", "port-ranges", &reference]);
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    let digest = text(&pushed.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    // An incompatible plugin is refused before it is pushed, naming both API versions.
    let future = orch(&a, &a_cache, &logged_in, &["plugin", "push", orch_test_plugins::FUTURE_API, &registry.reference("team/future:2.0.0")]);
    assert_eq!(future.status.code(), Some(4));
    assert!(text(&future.stderr).contains("orch:policy@0.4.0") && text(&future.stderr).contains("orch:policy@0.3"), "{}", text(&future.stderr));

    // Project B uses it by reference; its first plan pins the digest in orch.lock.
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    let b_cache = tmp.path().join("cache-b");
    std::fs::write(b.join("compose.yaml"), "name: b\nservices:\n  api:\n    image: team/api:1\n    ports: [\"8080:8080\"]\n").unwrap();
    std::fs::write(b.join("orch.toml"), format!("env-kind = \"ci\"\n[[plugins]]\nuse = \"{reference}\"\n")).unwrap();
    let plan = |cache: &Path| orch(&b, cache, &logged_in, &["plan", "--no-engine", "--format", "json"]);
    let first = plan(&b_cache);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let json: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(json["plugins"], serde_json::json!(["port-ranges"]));
    let port = json["services"]["api"]["ports"][0]["host_port"].as_u64().unwrap();
    assert!((9500..=9999).contains(&port), "port-ranges' ci pool: {port}");
    assert_eq!(lock_digest(&b), digest, "orch.lock pins what was pushed");
    let lock_text = std::fs::read_to_string(b.join("orch.lock")).unwrap();
    assert!(lock_text.contains(&reference) && lock_text.contains("manifest = \"sha256:"), "{lock_text}");

    // By digest: `repo@sha256:<manifest>` names exactly what the tag resolved to.
    let manifest = {
        let lock: toml::Table = toml::from_str(&lock_text).unwrap();
        lock["plugin"][0]["manifest"].as_str().unwrap().to_string()
    };
    let by_digest = orch(&b, &tmp.path().join("cache-digest"), &logged_in, &["plugin", "pull", &format!("{}@{manifest}", registry.reference("team/ports"))]);
    assert!(by_digest.status.success(), "{}", text(&by_digest.stderr));
    assert_eq!(text(&by_digest.stdout).trim(), digest);

    // Offline: with the registry down, the pinned plugin comes from the cache.
    registry.stop();
    let offline = plan(&b_cache);
    assert!(offline.status.success(), "offline plan failed: {}", text(&offline.stderr));
    // …but an empty cache cannot be served offline, and says why.
    let cold = plan(&tmp.path().join("cache-cold"));
    assert_eq!(cold.status.code(), Some(4));
    assert!(text(&cold.stderr).contains(&reference), "{}", text(&cold.stderr));
    registry.restart();

    // A new push under the same tag does not change what B runs: the lock pins the manifest digest.
    let moved = orch(&a, &a_cache, &logged_in, &["plugin", "push", "health-defaults", &reference]);
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    let pinned = plan(&tmp.path().join("cache-b2"));
    assert!(pinned.status.success(), "{}", text(&pinned.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&pinned.stdout).unwrap()["plugins"], serde_json::json!(["port-ranges"]));
    // `orch plugin update` re-resolves the tag and rewrites the pin.
    let updated = orch(&b, &b_cache, &logged_in, &["plugin", "update"]);
    assert!(updated.status.success(), "{}", text(&updated.stderr));
    let new_digest = lock_digest(&b);
    assert_eq!(new_digest, text(&moved.stdout).trim());
    assert!(text(&updated.stderr).contains("updated"), "{}", text(&updated.stderr));
    let now = plan(&b_cache);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&now.stdout).unwrap()["plugins"], serde_json::json!(["health-defaults"]));

    // Tampering with the digest in orch.lock: refused, nothing planned.
    let good_lock = std::fs::read_to_string(b.join("orch.lock")).unwrap();
    let bogus = format!("sha256:{}", "0".repeat(64));
    std::fs::write(b.join("orch.lock"), good_lock.replace(&new_digest, &bogus)).unwrap();
    let refused = plan(&b_cache);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(err.contains("does not match") && err.contains("orch.lock") && err.contains("orch plugin update"), "{err}");
    assert!(refused.stdout.is_empty());
    std::fs::write(b.join("orch.lock"), &good_lock).unwrap();

    // Tampering with the blob in the registry: a fresh cache pulls it, the digest check refuses it.
    let blob = registry.blob(&new_digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let tampered = plan(&tmp.path().join("cache-b3"));
    assert_eq!(tampered.status.code(), Some(4), "{}", text(&tampered.stderr));
    assert!(text(&tampered.stderr).contains("tampered") || text(&tampered.stderr).contains("does not match"), "{}", text(&tampered.stderr));
    let pull = orch(&b, &tmp.path().join("cache-b4"), &logged_in, &["plugin", "pull", &reference]);
    assert_eq!(pull.status.code(), Some(4), "{}", text(&pull.stderr));
    // A registry that sends far more than the manifest claims (64 MiB here) is cut off at the claimed size: the
    // bytes are counted as they arrive, never buffered whole.
    std::fs::write(&blob, vec![0u8; 64 << 20]).unwrap();
    let flood = plan(&tmp.path().join("cache-b5"));
    assert_eq!(flood.status.code(), Some(4), "{}", text(&flood.stderr));
    assert!(text(&flood.stderr).contains("more than the") && text(&flood.stderr).contains("bytes the manifest claims"), "{}", text(&flood.stderr));
    std::fs::write(&blob, &bytes).unwrap();
    // A tampered copy in orch's own cache is dropped, not run: with the registry's copy also bad, nothing runs.
    let cached = std::fs::read_dir(b_cache.join("plugins/oci/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(new_digest.trim_start_matches("sha256:")))
        .unwrap();
    std::fs::write(&cached, b"not the plugin").unwrap();
    let bad_cache = plan(&b_cache);
    assert_eq!(bad_cache.status.code(), Some(4), "{}", text(&bad_cache.stderr));
    assert!(!cached.exists() || std::fs::read(&cached).unwrap() != b"not the plugin");
}

#[test]
fn a_tls_registry_is_trusted_through_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(&tmp.path().join("pki"));
    let registry = Registry::start_with(&tmp.path().join("registry"), Some((cert, key)));
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(docker.join("config.json"), format!(r#"{{"auths": {{"127.0.0.1:{}": {{"auth": "{auth}"}}}}}}"#, registry.port)).unwrap();
    let reference = registry.reference("team/ports:1.0.0");
    let run = |args: &[&str], ca: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
        cmd.args(args)
            .current_dir(tmp.path())
            .env("ORCH_CACHE_DIR", tmp.path().join("cache"))
            .env("DOCKER_CONFIG", &docker)
            .env_remove("ORCH_REGISTRY_CA_FILE");
        if let Some(ca) = ca {
            cmd.env("ORCH_REGISTRY_CA_FILE", ca);
        }
        cmd.output().unwrap()
    };
    // An unknown CA is refused (and plain HTTP is no way around it), with the way out in the message.
    let untrusted = run(&["plugin", "push", "port-ranges", &reference], None);
    assert_eq!(untrusted.status.code(), Some(4), "{}", text(&untrusted.stderr));
    assert!(text(&untrusted.stderr).contains("ORCH_REGISTRY_CA_FILE"), "{}", text(&untrusted.stderr));
    // Trusted: push and pull over TLS.
    let pushed = run(&["plugin", "push", "port-ranges", &reference], Some(&ca));
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    let pulled = run(&["plugin", "pull", &reference], Some(&ca));
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    assert_eq!(text(&pulled.stdout).trim(), text(&pushed.stdout).trim());
}

/// The outsider's path, from a directory outside orch's repository: `orch plugin new` (the SDK comes from the binary),
/// edit the policy, `orch plugin test` (fails, `--update`, passes), `cargo test`, `orch plugin push` to a loopback
/// registry, then another project pins and uses it by reference. No generated file names an absolute path.
#[test]
fn an_outsider_writes_tests_publishes_and_uses_a_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(&tmp.path().join("registry"));
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(docker.join("config.json"), format!(r#"{{"auths": {{"127.0.0.1:{}": {{"auth": "{auth}"}}}}}}"#, registry.port)).unwrap();
    // Plugin builds share one target folder across runs of this test (the first run is a first build).
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-new-test");
    let cache = tmp.path().join("cache");
    let timed = |what: &str, dir: &Path, program: &str, args: &[&str]| {
        let started = Instant::now();
        let out = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", &target)
            .env("ORCH_CACHE_DIR", &cache)
            .env("DOCKER_CONFIG", &docker)
            .env_remove("ORCH_PLUGIN_SDK")
            .output()
            .unwrap();
        eprintln!("outsider: {what}: {:.1} s", started.elapsed().as_secs_f64());
        out
    };
    let orch_bin = env!("CARGO_BIN_EXE_orch");

    let made = timed("orch plugin new", tmp.path(), orch_bin, &["plugin", "new", "team-labels"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let crate_dir = tmp.path().join("team-labels");
    let repo = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap();
    for entry in walk(&crate_dir) {
        let content = std::fs::read_to_string(&entry).unwrap_or_default();
        for absolute in [tmp.path().display().to_string(), repo.display().to_string(), "/home/".into(), "/root/".into()] {
            assert!(!content.contains(&absolute), "{} names {absolute}", entry.display());
        }
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"orch-plugin-api = { version = "0.3.0", path = "vendor/orch-plugin-api" }"#), "{manifest}");

    let test = |what: &str, extra: &[&str]| {
        let mut args = vec!["plugin", "test", ".", "--compose", "tests/compose.yaml", "--settings", "tests/settings.json", "--expect", "tests/expected.json"];
        args.extend_from_slice(extra);
        timed(what, &crate_dir, orch_bin, &args)
    };
    // A crate copied without vendor/ gets the SDK back (the builds below use this copy).
    std::fs::remove_dir_all(crate_dir.join("vendor")).unwrap();
    let vendored = timed("orch plugin vendor", &crate_dir, orch_bin, &["plugin", "vendor"]);
    assert!(vendored.status.success(), "{}", text(&vendored.stderr));
    assert!(crate_dir.join("vendor/orch-plugin-api/Cargo.toml").is_file() && crate_dir.join("vendor/orch-plugin-api-macros/src/lib.rs").is_file());
    let elsewhere = timed("orch plugin vendor (not a plugin crate)", tmp.path(), orch_bin, &["plugin", "vendor"]);
    assert_eq!(elsewhere.status.code(), Some(3), "{}", text(&elsewhere.stderr));
    // As made, the crate passes its own formatting check.
    let fmt = timed("cargo fmt --check", &crate_dir, "cargo", &["fmt", "--check"]);
    assert!(fmt.status.success(), "{}{}", text(&fmt.stdout), text(&fmt.stderr));

    // The settings inline work as well as a file.
    let first = test("orch plugin test (first build)", &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stderr).contains("ok: team-labels decides"), "{}", text(&first.stderr));
    // Not a terminal (as in a CI log): the first build says what it compiles instead of a silent spinner.
    assert!(text(&first.stderr).contains("building plugin team-labels") && text(&first.stderr).contains("Compiling"), "{}", text(&first.stderr));
    let settings = std::fs::read_to_string(crate_dir.join("tests/settings.json")).unwrap();
    let inline = timed(
        "orch plugin test --settings JSON",
        &crate_dir,
        orch_bin,
        &["plugin", "test", ".", "--compose", "tests/compose.yaml", "--settings", settings.trim(), "--expect", "tests/expected.json"],
    );
    assert!(inline.status.success(), "{}", text(&inline.stderr));

    // Edit: the label is `owner`, not `team`. The test fails and shows the difference, by field.
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap().replace(r#"key_values([("team", s.team.as_str())])"#, r#"key_values([("owner", s.team.as_str())])"#);
    std::fs::write(&lib, source.replace(r#"key_values([("team", "data")])"#, r#"key_values([("owner", "data")])"#)).unwrap();
    let differs = test("orch plugin test (after the edit)", &[]);
    assert_eq!(differs.status.code(), Some(8), "{}", text(&differs.stderr));
    assert!(
        text(&differs.stderr).contains(r#"-      "team": "data""#) && text(&differs.stderr).contains(r#"+      "owner": "data""#),
        "{}",
        text(&differs.stderr)
    );
    assert!(test("orch plugin test --update", &["--update"]).status.success());
    let passes = test("orch plugin test", &[]);
    assert!(passes.status.success(), "{}", text(&passes.stderr));
    // The expectation holds only what the plugin decided: nothing orch chose (subnets, container names).
    let expected = std::fs::read_to_string(crate_dir.join("tests/expected.json")).unwrap();
    assert!(!expected.contains("10.192.") && !expected.contains("container_name") && expected.contains("services.api.labels"), "{expected}");

    // The same source built from another folder (another machine's paths) is the same component, byte for byte.
    let copy = tmp.path().join("elsewhere/team-labels");
    std::fs::create_dir_all(&copy).unwrap();
    let cp = Command::new("cp").arg("-a").arg(format!("{}/.", crate_dir.display())).arg(&copy).status().unwrap();
    assert!(cp.success());
    let digest_of = |dir: &Path| {
        let built = timed("orch plugin build", dir, orch_bin, &["plugin", "build", "."]);
        assert!(built.status.success(), "{}", text(&built.stderr));
        let wasm = std::fs::read(text(&built.stdout).trim()).unwrap();
        orch::plugins::oci::sha256(&wasm)
    };
    let here = digest_of(&crate_dir);
    let there = digest_of(&copy);
    assert_eq!(here, there, "the component depends on the folder it was built in");

    let native = timed("cargo test", &crate_dir, "cargo", &["test", "--quiet"]);
    assert!(native.status.success(), "{}{}", text(&native.stdout), text(&native.stderr));

    let reference = registry.reference("team/team-labels:0.1.0");
    let pushed = timed("orch plugin push", &crate_dir, orch_bin, &["plugin", "push", ".", &reference]);
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    let digest = text(&pushed.stdout).trim().to_string();

    // Another project uses it by reference: the first plan pins it, and the label is there.
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("compose.yaml"), "name: p\nservices:\n  api:\n    image: team/api:1\n").unwrap();
    std::fs::write(project.join("orch.toml"), format!("[[plugins]]\nuse = \"{reference}\"\nsettings = {{ team = \"payments\" }}\n")).unwrap();
    let planned = timed("orch plan (pulls and pins)", &project, orch_bin, &["plan", "--no-engine", "--format", "json"]);
    assert!(planned.status.success(), "{}", text(&planned.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    assert_eq!(plan["services"]["api"]["labels"]["owner"], "payments");
    assert_eq!(lock_digest(&project), digest);
    let wasm = std::fs::metadata(target.join("wasm32-wasip2/release/team_labels.wasm")).unwrap();
    eprintln!("outsider: team_labels.wasm is {} KiB", wasm.len() / 1024);
    registry.stop();
}

/// Every file under `dir`, `target/` excluded.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                out.extend(walk(&p));
            }
        } else {
            out.push(p);
        }
    }
    out
}
