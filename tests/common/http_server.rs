//! A small scriptable HTTP/1.1 test server (plain and HTTPS), loopback only.
//!
//! Every request is recorded (method, path, headers, body). Responses follow a script: a queue
//! of [`Action`]s consumed one per request, then the default action. Connections are
//! keep-alive and each runs on its own thread.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was fully read.
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status and extra headers (empty body).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
    },
    /// Wait, then answer with this status.
    Delay(Duration, u16),
    /// Read the request, never answer; hold the connection until the server stops.
    Stall,
    /// Read the request and close the connection without answering.
    Close,
    /// Answer with this status, extra headers and body.
    Body {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// Computes the answer to each request once the script is used up (a protocol fake, such as
/// the Elasticsearch `_bulk` server in `bulk_server.rs`); it replaces the default action.
pub type Handler = Arc<dyn Fn(&Request) -> Action + Send + Sync>;

impl Action {
    pub fn status(status: u16) -> Action {
        Action::Respond {
            status,
            headers: Vec::new(),
        }
    }
    pub fn retry_after(status: u16, secs: u64) -> Action {
        Action::Respond {
            status,
            headers: vec![("Retry-After".into(), secs.to_string())],
        }
    }
}

struct Inner {
    requests: Mutex<Vec<Request>>,
    script: Mutex<VecDeque<Action>>,
    default: Mutex<Action>,
    handler: Mutex<Option<Handler>>,
    stop: AtomicBool,
    /// Connections accepted.
    connections: AtomicUsize,
    /// False: requests are counted but not kept (benchmarks).
    keep: AtomicBool,
    /// Requests seen (kept or not).
    seen: AtomicUsize,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// Plain HTTP on an ephemeral loopback port.
    pub fn start() -> TestServer {
        Self::start_on(0)
    }

    /// Plain HTTP on a given loopback port (0 = ephemeral).
    pub fn start_on(port: u16) -> TestServer {
        Self::spawn(port, None)
    }

    /// HTTPS with a fresh self-signed certificate for 127.0.0.1 / localhost.
    pub fn start_tls() -> TestServer {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("rcgen");
        let der_cert = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
        let der_key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
            .expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![der_cert], der_key)
            .expect("server cert");
        Self::spawn(0, Some(Arc::new(cfg)))
    }

    fn spawn(port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Action::status(200)),
            handler: Mutex::new(None),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            keep: AtomicBool::new(true),
            seen: AtomicUsize::new(0),
            tls,
        });
        let inner2 = inner.clone();
        // Non-blocking accept polled every 10 ms: stop() needs no wake-up connection (which
        // could not reach a listener that lives in another network namespace).
        listener.set_nonblocking(true).unwrap();
        let accept = thread::spawn(move || {
            loop {
                if inner2.stop.load(Ordering::SeqCst) {
                    break;
                }
                let conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = conn.set_nonblocking(false);
                inner2.connections.fetch_add(1, Ordering::SeqCst);
                let inner3 = inner2.clone();
                thread::spawn(move || {
                    let _ = conn.set_nodelay(true);
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                    match inner3.tls.clone() {
                        None => serve(&inner3, conn),
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve(&inner3, rustls::StreamOwned::new(sc, conn));
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            inner,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/ingest", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queue actions for the next requests.
    pub fn script(&self, actions: impl IntoIterator<Item = Action>) {
        self.inner.script.lock().unwrap().extend(actions);
    }

    /// Action for requests once the script is used up.
    pub fn set_default(&self, a: Action) {
        *self.inner.default.lock().unwrap() = a;
    }

    /// Answer requests with `handler` once the script is used up.
    pub fn set_handler(&self, handler: Handler) {
        *self.inner.handler.lock().unwrap() = Some(handler);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }

    /// Keep (default) or forget request bodies; forgotten ones still count in `seen`.
    pub fn keep_requests(&self, keep: bool) {
        self.inner.keep.store(keep, Ordering::SeqCst);
    }

    /// Requests received, kept or not.
    pub fn seen(&self) -> usize {
        self.inner.seen.load(Ordering::SeqCst)
    }

    pub fn connection_count(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting and releases the port; connection threads end shortly after.
    pub fn stop(&mut self) {
        if self.inner.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads with the 100 ms socket timeout, retrying until data, EOF or stop.
struct StopRead<'a, S> {
    s: S,
    stop: &'a AtomicBool,
}

impl<S: Read> Read for StopRead<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.s.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(0);
                    }
                }
                other => return other,
            }
        }
    }
}

impl<S: Write> Write for StopRead<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

fn serve<S: Read + Write>(inner: &Inner, s: S) {
    let mut r = BufReader::new(StopRead {
        s,
        stop: &inner.stop,
    });
    loop {
        let Some(req) = read_request(&mut r) else {
            return;
        };
        let scripted = inner.script.lock().unwrap().pop_front();
        let handler = inner.handler.lock().unwrap().clone();
        let action = match (scripted, handler) {
            (Some(a), _) => a,
            (None, Some(h)) => h(&req),
            (None, None) => inner.default.lock().unwrap().clone(),
        };
        inner.seen.fetch_add(1, Ordering::SeqCst);
        if inner.keep.load(Ordering::SeqCst) {
            inner.requests.lock().unwrap().push(req);
        }
        let (status, headers, body) = match action {
            Action::Respond { status, headers } => (status, headers, Vec::new()),
            Action::Body {
                status,
                headers,
                body,
            } => (status, headers, body),
            Action::Delay(d, status) => {
                thread::sleep(d);
                (status, Vec::new(), Vec::new())
            }
            Action::Stall => {
                while !inner.stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Action::Close => return,
        };
        let mut resp = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        for (k, v) in headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        let mut resp = resp.into_bytes();
        resp.extend_from_slice(&body);
        let w = r.get_mut();
        if w.write_all(&resp).and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}

fn read_request<R: BufRead>(r: &mut R) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
