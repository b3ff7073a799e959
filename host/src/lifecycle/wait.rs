//! Readiness: each wait strategy polled quickly (healthchecks run directly), and `restart`, which waits the same way.

use super::LifecycleError;
use crate::engine::ContainerState;
use crate::engine::{Engine, EngineError};
use crate::labels;
use crate::plan::LogStream;
use crate::plan::WaitStrategy;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(super) const POLL: Duration = Duration::from_millis(100);

pub fn describe_wait(w: &WaitStrategy) -> String {
    match w {
        WaitStrategy::Running => "running".into(),
        WaitStrategy::Healthcheck => "healthy".into(),
        WaitStrategy::Tcp { container_port } => format!("tcp port {container_port}"),
        WaitStrategy::Http { container_port, path, .. } => format!("http {container_port}{path}"),
        WaitStrategy::LogLine { pattern, .. } => format!("log line {pattern:?}"),
        WaitStrategy::ExitZero => "exit 0".into(),
    }
}

pub(super) async fn last_logs<E: Engine>(engine: &E, id: &str) -> Vec<String> {
    engine.logs(id, Some(15)).await.map(|l| l.into_iter().map(|(_, line)| line).collect()).unwrap_or_default()
}

/// Polls one wait strategy until it holds, the container dies, or the deadline passes.
pub(super) async fn wait_for<E: Engine>(engine: &E, name: &str, id: &str, strategy: &WaitStrategy, deadline: Instant) -> Result<(), LifecycleError> {
    if let WaitStrategy::LogLine { pattern, stream, times } = strategy {
        return wait_for_log_line(engine, name, id, strategy, (pattern, stream.clone(), *times), deadline).await;
    }
    let began = Instant::now();
    loop {
        let state = engine.inspect_container(id).await?;
        let exited = state.status == "exited" || state.status == "dead";
        let done = match strategy {
            WaitStrategy::ExitZero => match (exited, state.exit_code) {
                (true, Some(0)) => true,
                (true, code) => {
                    return Err(LifecycleError::ServiceFailed {
                        service: name.into(),
                        reason: format!("it exited with status {}", code.unwrap_or(-1)),
                        logs: last_logs(engine, id).await,
                    });
                }
                _ => false,
            },
            _ if exited => {
                return Err(exited_while_waiting(engine, name, id, &state, strategy).await);
            }
            WaitStrategy::Running => state.status == "running",
            WaitStrategy::Healthcheck => healthy(engine, name, id, &state).await?,
            WaitStrategy::Tcp { container_port } => match address(&state, *container_port) {
                Some(addr) => tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await.is_ok_and(|r| r.is_ok()),
                None => return Err(no_address(name, *container_port)),
            },
            WaitStrategy::Http { container_port, path, status } => match address(&state, *container_port) {
                Some(addr) => http_status(addr, path).await.is_some_and(|got| if *status == 0 { (200..300).contains(&got) } else { got == *status }),
                None => return Err(no_address(name, *container_port)),
            },
            WaitStrategy::LogLine { .. } => unreachable!("followed as a stream above"),
        };
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LifecycleError::Timeout { service: name.into(), waited: began.elapsed(), waiting_for: describe_wait(strategy) });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Follows the container's output as a stream (each line read once, however long it runs) and counts the lines that
/// match, while watching for an early exit and the deadline.
async fn wait_for_log_line<E: Engine>(
    engine: &E,
    name: &str,
    id: &str,
    strategy: &WaitStrategy,
    (pattern, stream, times): (&str, LogStream, u32),
    deadline: Instant,
) -> Result<(), LifecycleError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let began = Instant::now();
    let seen = AtomicUsize::new(0);
    let sink = |is_err: bool, line: &str| {
        let wanted = match stream {
            LogStream::Stdout => !is_err,
            LogStream::Stderr => is_err,
            LogStream::Either => true,
        };
        if wanted && line.contains(pattern) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    };
    let enough = || seen.load(Ordering::Relaxed) >= times as usize;
    let follow = engine.stream_logs(id, true, None, &sink);
    let watch = async {
        loop {
            if enough() {
                return Ok(());
            }
            let state = engine.inspect_container(id).await?;
            if state.status == "exited" || state.status == "dead" {
                // Output written just before the exit may still be in flight: one last look.
                tokio::time::sleep(POLL).await;
                if enough() {
                    return Ok(());
                }
                return Err(exited_while_waiting(engine, name, id, &state, strategy).await);
            }
            if Instant::now() >= deadline {
                return Err(LifecycleError::Timeout { service: name.into(), waited: began.elapsed(), waiting_for: describe_wait(strategy) });
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::pin!(follow, watch);
    tokio::select! {
        r = &mut watch => r,
        // The stream ends when the container stops (or the engine drops it): the watch decides what that means.
        _ = &mut follow => watch.await,
    }
}

/// The container stopped before `strategy` held: its status and last output.
async fn exited_while_waiting<E: Engine>(engine: &E, name: &str, id: &str, state: &ContainerState, strategy: &WaitStrategy) -> LifecycleError {
    LifecycleError::ServiceFailed {
        service: name.into(),
        reason: format!("it exited with status {} while orch waited for it to be {}", state.exit_code.unwrap_or(-1), describe_wait(strategy)),
        logs: last_logs(engine, id).await,
    }
}

pub(super) fn no_address(service: &str, port: u16) -> LifecycleError {
    LifecycleError::ServiceFailed {
        service: service.into(),
        reason: format!("its wait strategy probes port {port}, but that port is neither published nor reachable on a non-internal network"),
        logs: vec![],
    }
}

/// Where the host reaches a container port: its published host port, else the container's address on a network.
pub(super) fn address(state: &ContainerState, port: u16) -> Option<SocketAddr> {
    if let Some((_, _, ip, hp)) = state.ports.iter().find(|p| p.0 == port && p.1 == "tcp") {
        let ip = if ip.is_empty() || ip == "0.0.0.0" || ip == "::" { "127.0.0.1" } else { ip };
        return format!("{ip}:{hp}").parse().ok();
    }
    state.addresses.values().next().and_then(|ip| format!("{ip}:{port}").parse().ok())
}

/// A minimal HTTP/1.0 GET; returns the status code.
pub(super) async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut).await.ok().flatten()
}

/// Healthy when Docker says so, or when the healthcheck command succeeds now (orch runs it itself so readiness is
/// seen within ~100 ms instead of after Docker's interval).
pub(super) async fn healthy<E: Engine>(engine: &E, name: &str, id: &str, state: &ContainerState) -> Result<bool, LifecycleError> {
    match state.health.as_deref() {
        Some("healthy") => return Ok(true),
        Some("unhealthy") => {
            return Err(LifecycleError::ServiceFailed {
                service: name.into(),
                reason: "Docker reports it unhealthy".into(),
                logs: last_logs(engine, id).await,
            });
        }
        _ => {}
    }
    if state.status != "running" {
        return Ok(false);
    }
    let Some(h) = &state.healthcheck else {
        return Err(LifecycleError::ServiceFailed { service: name.into(), reason: "it is awaited as healthy but has no healthcheck".into(), logs: vec![] });
    };
    let cmd: Vec<String> = match h.test.first().map(String::as_str) {
        Some("CMD") => h.test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
        _ => return Ok(false),
    };
    let timeout = Duration::from_millis(h.timeout_ms.unwrap_or(30_000));
    match tokio::time::timeout(timeout, engine.exec(id, &cmd)).await {
        Ok(Ok((0, _))) => Ok(true),
        // A failing check, an exec racing the start, or a hung check: not healthy yet.
        _ => Ok(false),
    }
}

/// Restarts one service of a running environment and waits for it as `up` did (strategies from its labels).
pub async fn restart<E: Engine>(engine: &E, filter: &[String], service: &str, timeout: Duration) -> Result<Duration, LifecycleError> {
    let began = Instant::now();
    let mut f = filter.to_vec();
    f.push(labels::service_filter(service));
    let found = engine.containers_labelled(&f).await?;
    let c = found.first().ok_or_else(|| EngineError::NotFound(format!("service {service} in {}", filter.join(","))))?;
    let waits: Vec<WaitStrategy> = c.labels.get(labels::WAIT).and_then(|w| serde_json::from_str(w).ok()).unwrap_or_else(|| vec![WaitStrategy::Running]);
    engine.stop_container(&c.id, None).await?;
    engine.start_container(&c.id).await?;
    let deadline = began + timeout;
    for w in &waits {
        wait_for(engine, service, &c.id, w, deadline).await?;
    }
    Ok(began.elapsed())
}
