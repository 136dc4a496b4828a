//! An HTTP/1.1 proxy in front of the real test registry, one request per connection, that can
//! answer a request itself. For what a real registry cannot be made to do on cue: a 413 for a
//! large body, a 429 with `Retry-After`, a 500, a connection reset, a referrers API (distribution
//! 2.8 has none), a token service (`token_faults.rs`).
//! Everything the hook lets through goes to the registry unchanged.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The Content-Length announced, when not the body's: the connection is reset after the
    /// body (a download cut off midway).
    pub announced: Option<usize>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            announced: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// No answer: the connection is closed with a TCP reset (`Seen::injected` is 0).
    pub fn reset() -> Reply {
        Reply::status(0)
    }

    /// The request goes to the registry, which answers; the client gets a TCP reset instead
    /// of that answer (a connection lost after the registry did the work; `Seen::injected`
    /// is 1).
    pub fn swallow() -> Reply {
        Reply::status(1)
    }

    /// Announce `len` bytes, send the body (fewer), then reset the connection.
    pub fn cut_off(mut self, len: usize) -> Reply {
        self.announced = Some(len);
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Reply {
        self.headers
            .push(("Content-Type".into(), content_type.into()));
        self.body = body;
        self
    }
}

/// One request seen: method, target, the status the hook answered (None: forwarded), and
/// when it had been read (head and body), before the answer.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub injected: Option<u16>,
    pub at: std::time::Instant,
    /// The request body's length.
    pub body_len: usize,
}

pub struct HttpProxy {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Hook = dyn Fn(&Request) -> Option<Reply> + Send + Sync;

impl HttpProxy {
    pub fn start(
        upstream: &str,
        hook: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
    ) -> HttpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook: Arc<Hook> = Arc::new(hook);
        let (up, seen2) = (upstream.to_string(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let (up, seen, hook) = (up.clone(), seen2.clone(), hook.clone());
                std::thread::spawn(move || serve(conn, &up, &seen, &*hook));
            }
        });
        HttpProxy { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut c: std::net::TcpStream, upstream: &str, seen: &Mutex<Vec<Seen>>, hook: &Hook) {
    let Some(req) = read_request(&mut c) else {
        return;
    };
    let at = std::time::Instant::now();
    let reply = hook(&req);
    seen.lock().unwrap().push(Seen {
        method: req.method.clone(),
        target: req.target.clone(),
        injected: reply.as_ref().map(|r| r.status),
        at,
        body_len: req.body.len(),
    });
    let swallow = reply.as_ref().is_some_and(|r| r.status == 1);
    if let Some(r) = reply.filter(|_| !swallow) {
        if r.status == 0 {
            reset(&c);
            return;
        }
        let mut out = format!("HTTP/1.1 {} Injected\r\n", r.status);
        for (k, v) in &r.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            r.announced.unwrap_or(r.body.len())
        ));
        let _ = c.write_all(out.as_bytes());
        let _ = c.write_all(&r.body);
        if r.announced.is_some() {
            let _ = c.flush();
            std::thread::sleep(std::time::Duration::from_millis(50));
            reset(&c);
        }
        return;
    }
    // Forward, one request per connection.
    let mut out = String::new();
    for (i, l) in req.head.trim_end().lines().enumerate() {
        let lower = l.to_ascii_lowercase();
        if i > 0
            && (lower.starts_with("connection:")
                || lower.starts_with("content-length:")
                || lower.starts_with("transfer-encoding:"))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n",
        req.body.len()
    ));
    let Ok(mut u) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    if u.write_all(out.as_bytes()).is_err() || u.write_all(&req.body).is_err() {
        return;
    }
    if swallow {
        let _ = std::io::copy(&mut u, &mut std::io::sink());
        reset(&c);
        return;
    }
    let _ = std::io::copy(&mut u, &mut c);
}

/// Make the close of `c` a reset (RST, not FIN): SO_LINGER on, with a zero timeout.
fn reset(c: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Read one request: head and body (Content-Length or chunked).
pub fn read_request(s: &mut std::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let first = head.lines().next().unwrap_or("").to_string();
    let mut parts = first.split(' ');
    let mut req = Request {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
        head,
        body: Vec::new(),
    };
    if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        req.body.resize(n, 0);
        s.read_exact(&mut req.body).ok()?;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).ok()?;
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&line).trim().split(';').next()?, 16)
                    .ok()?;
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(req)
}
