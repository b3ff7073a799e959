//! A repository under test cannot harm the host or its other users (#24): crafted `orch.lock`, `orch.toml` and compose
//! files, through the `orch` binary as CI runs it; and on the real engine, labels under `orch.` from a compose file
//! never reach a resource (the reaper and `gc` decide from them).

use std::process::{Command, Output};

use crate::support::{IMAGE, ensure_image_blocking, orch_in, sharing_the_engine};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const WEB: &str = "services:\n  web:\n    image: busybox\n";

#[test]
fn a_crafted_lock_digest_deletes_nothing() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("important.wasm");
    std::fs::write(&victim, "precious").unwrap();
    let stem = victim.with_extension("");
    let lock =
        format!("version = 1\n[[plugin]]\nsource = \"oci://127.0.0.1:1/t/p:1\"\nname = \"p\"\nversion = \"1\"\ndigest = \"sha256:{}\"\n", stem.display());
    let dir = repo(&[("compose.yaml", WEB), ("orch.toml", "[[plugins]]\nuse = \"oci://127.0.0.1:1/t/p:1\"\n"), ("orch.lock", &lock)]);
    let cache = tempfile::tempdir().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_orch")).args(["plan", "--no-engine"]).current_dir(dir.path()).env("ORCH_CACHE_DIR", cache.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("orch.lock") && stderr(&out).contains("64 lowercase hex"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "the file the digest named is untouched");
}

#[test]
fn orch_toml_is_bounded_and_names_nothing_outside_the_repository() {
    let dir = repo(&[("compose.yaml", WEB), ("orch.toml", "files = [\"/etc/passwd\"]\n")]);
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("orch.toml") && stderr(&out).contains("/etc/passwd") && stderr(&out).contains("outside the project"), "{}", stderr(&out));

    let dir = repo(&[("compose.yaml", WEB), ("orch.toml", &"#".repeat(2 << 20))]);
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("orch.toml") && stderr(&out).contains("1 MiB"), "{}", stderr(&out));

    let dir = repo(&[("compose.yaml", WEB)]);
    assert!(Command::new("mkfifo").arg(dir.path().join("orch.toml")).status().unwrap().success());
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("named pipe"), "{}", stderr(&out));
}

#[test]
fn hostile_compose_files_are_exit_3() {
    let cases: &[(&str, &str)] = &[
        ("services:\n  web:\n    extends: { file: /dev/zero, service: x }\n", "outside the project"),
        ("services:\n  web:\n    extends: { file: zero.yaml, service: x }\n", "not a regular file"),
        ("services:\n  '-f':\n    image: busybox\n", "invalid service name"),
        ("services:\n  web:\n    build: /\n", "outside the project"),
    ];
    for (compose, expect) in cases {
        let dir = repo(&[("compose.yaml", compose)]);
        // A named pipe inside the repository is not read (a plain read would wait for a writer forever).
        assert!(Command::new("mkfifo").arg(dir.path().join("zero.yaml")).status().unwrap().success());
        let out = orch_in(dir.path(), &["plan", "--no-engine"]);
        assert_eq!(out.status.code(), Some(3), "{compose}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{compose}: {}", stderr(&out));
    }
    let dir = repo(&[("compose.yaml", WEB), (".env", "DB_PASSWORD=\"hunter2${oops\"\n")]);
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("DB_PASSWORD") && !stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

/// A compose volume, network and service labelled like orch's marker (`orch.marker`, `orch.lifetime: kept`,
/// `orch.expires`) would make the reaper keep (or drop) the environment: the labels are dropped with a warning,
/// and the engine's resources carry only orch's own.
#[test]
fn compose_labels_under_orch_never_reach_the_engine() {
    let _engine = sharing_the_engine();
    ensure_image_blocking();
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"300\"]\n    labels: {{ orch.lifetime: kept, team: a }}\n    volumes: [data:/data]\n    networks: [back]\nvolumes:\n  data:\n    labels: {{ orch.marker: \"1\", orch.lifetime: kept, orch.expires: \"0\" }}\nnetworks:\n  back:\n    labels: {{ orch.tier: back }}\n"
    );
    let dir = repo(&[("compose.yaml", &compose)]);
    let plan = orch_in(dir.path(), &["plan", "--no-engine", "--format", "json", "--env", "hl1"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let warned = plan["diagnostics"].as_array().unwrap().iter().filter(|d| d["code"] == "compose.reserved-label").count();
    assert_eq!(warned, 5, "{:#}", plan["diagnostics"]);

    let up = orch_in(dir.path(), &["up", "--env", "hl1", "-p", "hostile"]);
    let cleanup = || {
        let _ = orch_in(dir.path(), &["down", "--env", "hl1", "-p", "hostile", "--volumes"]);
    };
    if !up.status.success() {
        cleanup();
        panic!("up failed: {}", stderr(&up));
    }
    let labels = |kind: &str, name: &str| -> serde_json::Value {
        let field = if kind == "container" { "{{json .Config.Labels}}" } else { "{{json .Labels}}" };
        let out = Command::new("docker").args([kind, "inspect", name, "--format", field]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let volume = labels("volume", "hostile__hl1__data");
    let network = labels("network", "hostile__hl1__back");
    let container = labels("container", "hostile__hl1__web");
    cleanup();
    for (what, l) in [("volume", &volume), ("network", &network), ("container", &container)] {
        for k in ["orch.marker", "orch.lifetime", "orch.expires", "orch.tier"] {
            assert!(l.get(k).is_none(), "the {what} carries {k} from the compose file: {l}");
        }
        assert_eq!(l["orch.env"], "hl1", "the {what} carries orch's own labels: {l}");
    }
    assert_eq!(container["team"], "a", "other labels are kept");
}

/// A registry the repository names (`oci://…` in orch.toml) that streams a manifest or a token forever, or never
/// answers: orch stops at the size cap or the deadline, exit 4, with bounded memory.
#[test]
fn a_hostile_registry_is_cut_off_by_size_and_time() {
    use std::io::{Read, Write};
    #[derive(Clone, Copy)]
    enum Mode {
        EndlessManifest,
        EndlessToken,
        Silent,
    }
    fn serve(mode: Mode) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    if !req.starts_with("GET ") {
                        // A TLS hello: answer as a plain-HTTP server does, so the client falls back to HTTP.
                        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                        return;
                    }
                    let endless = |conn: &mut std::net::TcpStream, head: &str| {
                        let _ = conn.write_all(head.as_bytes());
                        let chunk = vec![b'a'; 64 << 10];
                        while conn.write_all(&chunk).is_ok() {}
                    };
                    match mode {
                        Mode::Silent => std::thread::sleep(std::time::Duration::from_secs(60)),
                        Mode::EndlessManifest => {
                            endless(&mut conn, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n")
                        }
                        Mode::EndlessToken if req.starts_with("GET /token") => {
                            endless(&mut conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
                        }
                        Mode::EndlessToken => {
                            let port = conn.local_addr().unwrap().port();
                            let _ = conn.write_all(
                                format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"r\"\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                            );
                        }
                    }
                });
            }
        });
        (port, stop)
    }
    for (mode, expect) in [(Mode::EndlessManifest, "manifest is over"), (Mode::EndlessToken, "token is over"), (Mode::Silent, "")] {
        let (port, stop) = serve(mode);
        let reference = format!("oci://127.0.0.1:{port}/t/p:1");
        let dir = repo(&[("compose.yaml", WEB), ("orch.toml", &format!("[[plugins]]\nuse = \"{reference}\"\n"))]);
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%e %M", "-o"])
            .arg(dir.path().join("time"))
            .arg(env!("CARGO_BIN_EXE_orch"))
            .args(["plan", "--no-engine"])
            .current_dir(dir.path())
            .env("ORCH_CACHE_DIR", cache.path())
            .env("ORCH_REGISTRY_TIMEOUT", "3s")
            .output()
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(err.contains(&reference) && err.contains(expect), "{err}");
        let time = std::fs::read_to_string(dir.path().join("time")).unwrap();
        let rss_kib: u64 = time.lines().last().and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
        assert!(rss_kib < 256 << 10, "orch grew to {rss_kib} KiB: {err}");
    }
}
