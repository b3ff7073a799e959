//! `app serve --name NAME --port PORT [--require HOST:PORT]...`: answers `GET /health` with 200 while every
//! required address accepts TCP connections (503 otherwise), so a service's health shows its real connectivity.
//! `app probe URL`: exits 0 when the URL answers 2xx (for healthchecks in images without curl).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

fn reachable(addr: &str) -> bool {
    addr.to_socket_addrs().ok().and_then(|mut a| a.next()).is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn serve(name: &str, port: u16, require: &[String]) -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("{name} listening on :{port}");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let (name, require) = (name.to_string(), require.to_vec());
        // One thread per connection: a client that connects and sends nothing must not stall the others.
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let missing: Vec<&String> = require.iter().filter(|a| !reachable(a)).collect();
            let (status, body) = match path.as_str() {
                "/health" if missing.is_empty() => ("200 OK", format!("ok {name}\n")),
                "/health" => ("503 Service Unavailable", format!("{name} cannot reach {missing:?}\n")),
                _ => ("200 OK", format!("{{\"service\":\"{name}\"}}\n")),
            };
            let _ = write!(stream, "HTTP/1.0 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}", body.len());
        });
    }
    Ok(())
}

fn probe(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let Ok(mut s) = host.to_socket_addrs().map(|mut a| a.next()).map(|a| a.and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())) else {
        return false;
    };
    let Some(s) = s.as_mut() else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let n = s.read(&mut head).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).split_whitespace().nth(1).is_some_and(|c| c.starts_with('2'))
}

/// As a container's PID 1 the server gets no default SIGTERM action: without a handler `docker stop` (and a
/// graceful `orch down`) would wait out the whole grace period. Stateless, so it simply exits.
fn stop_on_sigterm() {
    extern "C" fn exit_now(_: libc::c_int) {
        unsafe { libc::_exit(0) }
    }
    let handler = exit_now as extern "C" fn(libc::c_int) as libc::sighandler_t;
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("probe") => std::process::exit(if args.get(1).is_some_and(|u| probe(u)) { 0 } else { 1 }),
        Some("serve") => {
            stop_on_sigterm();
            let mut name = "app".to_string();
            let mut port = 8080;
            let mut require = vec![];
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match (a.as_str(), it.next()) {
                    ("--name", Some(v)) => name = v.clone(),
                    ("--port", Some(v)) => port = v.parse().expect("--port takes a number"),
                    ("--require", Some(v)) => require.push(v.clone()),
                    _ => {
                        eprintln!("usage: app serve [--name N] [--port P] [--require HOST:PORT]...");
                        std::process::exit(2);
                    }
                }
            }
            if let Err(e) = serve(&name, port, &require) {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: app serve ... | app probe URL");
            std::process::exit(2);
        }
    }
}
