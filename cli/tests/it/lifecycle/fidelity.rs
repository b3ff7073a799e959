//! Compose fields reach the real container: each is read back with the engine's inspect or from inside the container.

use super::*;

fn inspect(s: &Setup, container: &str) -> bollard::models::ContainerInspectResponse {
    s.rt.block_on(s.engine.client().inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>)).unwrap()
}

fn out(s: &Setup, container: &str, script: &str) -> String {
    let (code, text) = s.exec(container, &["sh", "-c", script]);
    assert_eq!(code, 0, "`{script}` in {container} failed: {text}");
    text.trim().to_string()
}

#[test]
fn runtime_options_reach_the_container() {
    let s = setup();
    let compose = format!(
        r#"
name: fid
services:
  app:
    image: {IMAGE}
    command: ["sleep", "300"]
    cap_add: [NET_ADMIN]
    cap_drop: [CHOWN]
    init: true
    ulimits:
      nofile: {{ soft: 1024, hard: 2048 }}
      nproc: 500
    shm_size: 64m
    sysctls:
      net.core.somaxconn: 1024
    extra_hosts: ["somehost:10.1.2.3", "other=10.1.2.4"]
    dns: [10.9.9.9]
    dns_search: [example.test]
    dns_opt: ["ndots:2"]
    read_only: true
    tmpfs: [/scratch]
    volumes:
      - type: tmpfs
        target: /sized
        tmpfs: {{ size: 8m, mode: 1770 }}
    stop_signal: SIGUSR1
    stop_grace_period: 7s
    pids_limit: 64
    security_opt: ["no-new-privileges:true"]
    devices: ["/dev/null:/dev/xnull:rwm"]
    tty: true
    stdin_open: true
    hostname: apphost
    domainname: example.test
    working_dir: /scratch
    group_add: ["2000"]
    oom_score_adj: 200
    cpu_shares: 512
    expose: ["4000"]
"#
    );
    let (plan, _env) = s.plan("runtime", 211, &compose);
    s.up(&plan).unwrap();
    let c = &plan.services["app"].container_name;
    let info = inspect(&s, c);
    let hc = info.host_config.clone().unwrap();
    let cfg = info.config.clone().unwrap();
    assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
    assert_eq!(hc.cap_drop, Some(vec!["CHOWN".to_string()]));
    assert_eq!(hc.init, Some(true));
    assert_eq!(out(&s, c, "cat /proc/1/comm"), "docker-init", "init runs as PID 1");
    assert_eq!(out(&s, c, "grep 'open files' /proc/1/limits | awk '{print $4, $5}'"), "1024 2048");
    assert_eq!(out(&s, c, "grep 'processes' /proc/1/limits | awk '{print $3, $4}'"), "500 500");
    assert_eq!(out(&s, c, "df -k /dev/shm | tail -1 | awk '{print $2}'"), "65536", "shm_size 64m");
    assert_eq!(out(&s, c, "cat /proc/sys/net/core/somaxconn"), "1024");
    let hosts = out(&s, c, "cat /etc/hosts");
    assert!(hosts.contains("10.1.2.3\tsomehost") && hosts.contains("10.1.2.4\tother"), "{hosts}");
    assert_eq!(hc.dns, Some(vec!["10.9.9.9".to_string()]));
    let resolv = out(&s, c, "cat /etc/resolv.conf");
    assert!(resolv.contains("search example.test") && resolv.contains("ndots:2"), "{resolv}");
    assert_eq!(hc.readonly_rootfs, Some(true));
    let (code, _) = s.exec(c, &["touch", "/not-here"]);
    assert_ne!(code, 0, "the root filesystem is read-only");
    assert_eq!(s.exec(c, &["touch", "/scratch/ok"]).0, 0, "tmpfs stays writable");
    assert_eq!(out(&s, c, "stat -c %a /sized"), "1770");
    assert_eq!(out(&s, c, "df -k /sized | tail -1 | awk '{print $2}'"), "8192");
    assert_eq!(cfg.stop_signal.as_deref(), Some("SIGUSR1"));
    assert_eq!(cfg.stop_timeout, Some(7));
    assert_eq!(hc.pids_limit, Some(64));
    assert_eq!(hc.security_opt, Some(vec!["no-new-privileges:true".to_string()]));
    assert_eq!(out(&s, c, "ls /dev/xnull"), "/dev/xnull");
    assert_eq!((cfg.tty, cfg.open_stdin), (Some(true), Some(true)));
    assert_eq!(out(&s, c, "hostname"), "apphost");
    assert_eq!(cfg.domainname.as_deref(), Some("example.test"));
    assert_eq!(out(&s, c, "pwd"), "/scratch");
    assert!(out(&s, c, "id -G").split_whitespace().any(|g| g == "2000"));
    assert_eq!(out(&s, c, "cat /proc/1/oom_score_adj"), "200");
    assert_eq!(hc.cpu_shares, Some(512));
    assert!(cfg.exposed_ports.unwrap_or_default().contains(&"4000/tcp".to_string()));
}

#[test]
fn secrets_and_configs_are_files_with_their_owner_and_mode() {
    let s = setup();
    let dir = s.dir.path();
    std::fs::create_dir_all(dir.join("db")).unwrap();
    std::fs::write(dir.join("db/password.txt"), "s3cret-from-file").unwrap();
    std::fs::write(dir.join("app.conf"), "conf-from-file").unwrap();
    std::fs::write(dir.join(".env"), "API_KEY=key-from-env\n").unwrap();
    let compose = format!(
        r#"
name: fid
services:
  db:
    image: {IMAGE}
    command: ["sleep", "300"]
    environment:
      PASSWORD_FILE: /run/secrets/db-password
    secrets:
      - db-password
      - source: api-key
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: app-config
        target: /etc/app/app.conf
      - source: inline
        mode: "0640"
secrets:
  db-password:
    file: ./db/password.txt
  api-key:
    environment: API_KEY
configs:
  app-config:
    file: ./app.conf
  inline:
    content: "port ${{PORT:-5432}} $$HOME"
"#
    );
    let (plan, _env) = s.plan("files", 212, &compose);
    // The plan names the variable, never its value.
    assert!(!serde_json::to_string(&plan).unwrap().contains("key-from-env"));
    s.up(&plan).unwrap();
    let c = &plan.services["db"].container_name;
    assert_eq!(out(&s, c, "cat $PASSWORD_FILE"), "s3cret-from-file");
    assert_eq!(out(&s, c, "cat /run/secrets/api-key"), "key-from-env");
    assert_eq!(out(&s, c, "stat -c '%a %u %g' /run/secrets/api-key"), "400 1000 1001");
    assert_eq!(out(&s, c, "cat /etc/app/app.conf"), "conf-from-file");
    assert_eq!(out(&s, c, "cat /inline"), "port 5432 $HOME");
    assert_eq!(out(&s, c, "stat -c %a /inline"), "640");
    // A file secret is bind-mounted read-only, as compose does.
    assert_ne!(s.exec(c, &["sh", "-c", "echo x > /run/secrets/db-password"]).0, 0);
}

#[test]
fn network_modes_keep_the_environment_isolated() {
    let s = setup();
    let compose = format!(
        r#"
name: fid
services:
  app:
    image: {IMAGE}
    container_name: fixed-app
    command: ["sh", "-c", "mkdir -p /www && echo from-app > /www/index.html && httpd -f -p 8080 -h /www"]
    volumes: ["/shared"]
  sidecar:
    image: {IMAGE}
    command: ["sleep", "300"]
    network_mode: service:app
  by-name:
    image: {IMAGE}
    command: ["sleep", "300"]
    network_mode: container:fixed-app
  offline:
    image: {IMAGE}
    command: ["sleep", "300"]
    network_mode: none
  friend:
    image: {IMAGE}
    command: ["sleep", "300"]
    volumes_from: ["app:ro"]
    links: ["app:application"]
    ipc: service:app
"#
    );
    let (plan, _env) = s.plan("netmode", 213, &compose);
    s.up(&plan).unwrap();
    let sidecar = &plan.services["sidecar"].container_name;
    // The sidecar reaches its app on 127.0.0.1: they share one network namespace.
    let fetch = "wget -q -O- http://127.0.0.1:8080/index.html";
    assert_eq!(out(&s, sidecar, fetch), "from-app");
    assert_eq!(out(&s, &plan.services["by-name"].container_name, fetch), "from-app");
    // `none`: only the loopback interface.
    assert_eq!(out(&s, &plan.services["offline"].container_name, "ls /sys/class/net"), "lo");
    let friend = &plan.services["friend"].container_name;
    let app = &plan.services["app"].container_name;
    assert_eq!(out(&s, friend, "wget -q -O- http://application:8080/index.html"), "from-app", "links resolve as aliases");
    assert_ne!(s.exec(friend, &["touch", "/shared/x"]).0, 0, "volumes_from with :ro is read-only");
    assert_eq!(s.exec(friend, &["ls", "/shared"]).0, 0);
    let hc = inspect(&s, friend).host_config.unwrap();
    let app_id = inspect(&s, app).id.unwrap();
    assert_eq!(hc.ipc_mode, Some(format!("container:{app_id}")), "ipc: service:app joins the app's IPC namespace");
    // Nothing of it is the fixed name: a second environment of the same file does not collide.
    assert_ne!(app, "fixed-app");
}

#[test]
fn extends_include_inline_dockerfile_and_bare_build_args() {
    let s = setup();
    let dir = s.dir.path();
    std::fs::create_dir_all(dir.join("inc")).unwrap();
    std::fs::create_dir_all(dir.join("common")).unwrap();
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join(".env"), "GREETING=hello-from-dotenv\n").unwrap();
    std::fs::write(dir.join("inc/.env"), "WHO=included\n").unwrap();
    std::fs::write(
        dir.join("inc/compose.yaml"),
        format!("services:\n  inc:\n    image: {IMAGE}\n    command: [sh, -c, \"echo $${{WHO:-none}} > /tmp/who; sleep 300\"]\n    environment:\n      WHO: ${{WHO}}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("common/base.yaml"), format!("services:\n  base:\n    image: {IMAGE}\n    environment:\n      LEVEL: base\n      KEEP: kept\n"))
        .unwrap();
    std::fs::write(dir.join("app/Dockerfile"), format!("FROM {IMAGE}\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\n")).unwrap();
    let compose = format!(
        r#"
name: fid
include:
  - inc/compose.yaml
services:
  ext:
    extends:
      file: common/base.yaml
      service: base
    command: ["sleep", "300"]
    environment:
      LEVEL: ext
  built:
    build:
      context: ./app
      args: [GREETING]
    image: orch-test/fid-built-{pid}:latest
    command: ["sleep", "300"]
  inline:
    build:
      context: ./app
      dockerfile_inline: |
        FROM {IMAGE}
        RUN echo inline > /inline
    image: orch-test/fid-inline-{pid}:latest
    command: ["sleep", "300"]
"#,
        pid = std::process::id()
    );
    let (plan, _env) = s.plan("extinc", 214, &compose);
    s.up(&plan).unwrap();
    let names: Vec<&String> = plan.services.keys().collect();
    assert_eq!(names, ["built", "ext", "inc", "inline"]);
    assert_eq!(out(&s, &plan.services["inc"].container_name, "echo $WHO"), "included", "the included file's own .env");
    assert_eq!(out(&s, &plan.services["ext"].container_name, "echo $LEVEL $KEEP"), "ext kept");
    assert_eq!(out(&s, &plan.services["built"].container_name, "cat /greeting"), "hello-from-dotenv", "a bare build arg comes from .env");
    assert_eq!(out(&s, &plan.services["inline"].container_name, "cat /inline"), "inline");
    for tag in [format!("orch-test/fid-built-{}:latest", std::process::id()), format!("orch-test/fid-inline-{}:latest", std::process::id())] {
        let _ = s.rt.block_on(s.engine.client().remove_image(&tag, None::<bollard::query_parameters::RemoveImageOptions>, None));
    }
}

#[test]
fn named_build_contexts_and_extra_tags() {
    let s = setup();
    let dir = s.dir.path();
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::create_dir_all(dir.join("assets/sub")).unwrap();
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::write(dir.join("assets/hello.txt"), "hello from a named context").unwrap();
    std::fs::write(dir.join("assets/sub/deep.txt"), "deep").unwrap();
    std::fs::write(dir.join("base/Dockerfile"), format!("FROM {IMAGE}\nRUN echo built-base > /base.txt\n")).unwrap();
    // `base` is an image, `assets` a directory, `tools` another service's image.
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM base\nCOPY --from=assets hello.txt /hello.txt\nCOPY --from=assets sub/ /sub/\nCOPY --from=tools /base.txt /from-tools.txt\n",
    )
    .unwrap();
    let pid = std::process::id();
    let compose = format!(
        r#"
name: fid
services:
  tools:
    build: ./base
    image: orch-test/fid-tools-{pid}:latest
    command: ["sleep", "300"]
  app:
    build:
      context: ./app
      additional_contexts:
        base: docker-image://{IMAGE}
        assets: ./assets
        tools: service:tools
      tags: ["orch-test/fid-app-extra-{pid}:v1"]
    image: orch-test/fid-app-{pid}:latest
    command: ["sleep", "300"]
"#
    );
    let (plan, _env) = s.plan("ctx", 215, &compose);
    assert!(plan.diagnostics.iter().all(|d| d.code != "compose.not-applied"), "{:?}", plan.diagnostics);
    s.up(&plan).unwrap();
    let app = &plan.services["app"].container_name;
    assert_eq!(out(&s, app, "cat /hello.txt"), "hello from a named context");
    assert_eq!(out(&s, app, "cat /sub/deep.txt"), "deep");
    assert_eq!(out(&s, app, "cat /from-tools.txt"), "built-base");
    let images = s.rt.block_on(s.engine.list_images()).unwrap();
    assert!(images.contains(&format!("orch-test/fid-app-extra-{pid}:v1")), "extra tag");
    assert!(!images.iter().any(|i| i.starts_with("orch-ctx/fid-")), "helper images of named contexts are removed: {images:?}");
    for tag in [format!("orch-test/fid-tools-{pid}:latest"), format!("orch-test/fid-app-{pid}:latest"), format!("orch-test/fid-app-extra-{pid}:v1")] {
        let _ = s.rt.block_on(s.engine.remove_image(&tag));
    }
}
