//! A small HTTP proxy on loopback, put between hvrlake and the S3 server: it can strip
//! `If-None-Match` (a store without conditional writes) and inject faults at a set rate
//! (503 answers, connections dropped before or after the server saw the request, slow answers).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fault the proxy can inject into one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `503 Slow Down` without forwarding.
    Unavailable,
    /// Close the connection without forwarding or answering.
    DropRequest,
    /// Forward the request, then close the connection without passing the answer on: the
    /// server did the work but the client never hears of it.
    DropResponse,
    /// Wait before forwarding.
    Delay,
}

/// What the proxy does.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Remove `If-None-Match` from every request.
    pub strip_conditional: bool,
    /// Percent of requests that get a fault (0..=100).
    pub fault_percent: u64,
    /// The faults, chosen at random per faulty request.
    pub faults: Vec<Fault>,
    /// Seed of the fault choices, so a failing run can be replayed.
    pub seed: u64,
}

/// A running proxy.
pub struct Proxy {
    /// Its URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests seen.
    pub requests: Arc<AtomicU64>,
    /// Faults injected.
    pub injected: Arc<AtomicU64>,
}

/// Starts a proxy in front of `upstream` (`http://host:port`).
pub fn start(upstream: &str, behaviour: Behaviour) -> Proxy {
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let injected = Arc::new(AtomicU64::new(0));
    let (r, i) = (requests.clone(), injected.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let n = r.fetch_add(1, Ordering::Relaxed);
            // One deterministic draw per connection (each carries one request).
            let mut x = behaviour.seed ^ (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 31;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 29;
            let fault = (x % 100 < behaviour.fault_percent && !behaviour.faults.is_empty())
                .then(|| behaviour.faults[((x >> 8) % behaviour.faults.len() as u64) as usize]);
            if fault.is_some() {
                i.fetch_add(1, Ordering::Relaxed);
            }
            let upstream = upstream.clone();
            let strip = behaviour.strip_conditional;
            std::thread::spawn(move || relay(conn, &upstream, strip, fault));
        }
    });
    Proxy {
        url,
        requests,
        injected,
    }
}

fn relay(mut client: TcpStream, upstream: &str, strip_conditional: bool, fault: Option<Fault>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut length = 0usize;
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if (strip_conditional && lower.starts_with("if-none-match:"))
            || lower.starts_with("connection:")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    match fault {
        Some(Fault::Unavailable) => {
            let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let _ = client.write_all(
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            return;
        }
        Some(Fault::DropRequest) => return,
        Some(Fault::Delay) => std::thread::sleep(Duration::from_millis(400)),
        Some(Fault::DropResponse) | None => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(out.as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    if fault == Some(Fault::DropResponse) {
        // Let the server finish the request, then hang up on the client.
        let mut sink = Vec::new();
        let _ = server.read_to_end(&mut sink);
        return;
    }
    let _ = std::io::copy(&mut server, &mut client);
}
