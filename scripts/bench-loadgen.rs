//! A closed-loop HTTP/1.1 load generator for `scripts/bench serve` (std only: the bench builds
//! it with `rustc -O`, so it needs nothing but the toolchain). Each of CONCURRENCY threads holds
//! one keep-alive connection and sends the same POST again as soon as the answer is read; the
//! first WARMUP seconds are not counted. A compiled client keeps the measuring cost small and
//! the same for every server on a machine it shares with them.
//!
//! usage: bench-loadgen HOST:PORT PATH BODY_FILE CONCURRENCY SECONDS [WARMUP]
//! prints one JSON line: {"requests","errors","seconds","rps","p50_ms","p99_ms"}

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn die(msg: String) -> ! {
    eprintln!("bench-loadgen: {msg}");
    std::process::exit(2)
}

/// Read one response: its status. The body is read by Content-Length (chunked is decoded).
fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|x| x.parse().ok()).unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(n) => {
            while buf.len() < head_end + n {
                let k = s.read(&mut chunk)?;
                if k == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..k]);
            }
        }
        None if head.contains("transfer-encoding: chunked") => {
            // Enough to find the terminating zero-size chunk.
            while !buf[head_end..].windows(5).any(|w| w == b"0\r\n\r\n") {
                let k = s.read(&mut chunk)?;
                if k == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..k]);
            }
        }
        None => return Err(std::io::Error::other("a response without Content-Length")),
    }
    Ok(status)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        die("usage: bench-loadgen HOST:PORT PATH BODY_FILE CONCURRENCY SECONDS [WARMUP]".into());
    }
    let addr = a[1].clone();
    let body = std::fs::read(&a[3]).unwrap_or_else(|e| die(format!("{}: {e}", a[3])));
    let conc: usize = a[4].parse().unwrap_or_else(|_| die("CONCURRENCY".into()));
    let secs: f64 = a[5].parse().unwrap_or_else(|_| die("SECONDS".into()));
    let warm: f64 = a.get(6).map(|w| w.parse().unwrap_or(1.0)).unwrap_or(1.0);
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        a[2],
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let req = Arc::new(req);
    let start = Instant::now();
    let from = start + Duration::from_secs_f64(warm);
    let until = from + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let (req, addr) = (req.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut buf = Vec::with_capacity(1 << 16);
                let connect = || {
                    let s = TcpStream::connect(&addr)
                        .unwrap_or_else(|e| die(format!("connecting to {addr}: {e}")));
                    s.set_nodelay(true).ok();
                    s
                };
                let mut s = connect();
                loop {
                    let t = Instant::now();
                    if t >= until {
                        break;
                    }
                    let r = s.write_all(&req).and_then(|_| response(&mut s, &mut buf));
                    let done = Instant::now();
                    let ok = matches!(r, Ok(200));
                    if r.is_err() {
                        s = connect();
                    }
                    if t >= from && done <= until {
                        if ok {
                            lat.push(done - t);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{{\"requests\": {}, \"errors\": {errors}, \"seconds\": {secs}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        all.len(),
        all.len() as f64 / secs,
        q(0.5),
        q(0.99)
    );
}
