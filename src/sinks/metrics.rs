//! Prometheus metrics (opt-in `metrics_listen`): the official client crate's encoders, served by
//! a tiny HTTP listener on its own thread. A scraper that accepts OpenMetrics (Prometheus does)
//! gets OpenMetrics text; any other client gets the Prometheus text format 0.0.4, which is also
//! what `promtool check metrics` reads.
//!
//! Labels come only from small fixed sets (protocol, outcome, sink name): never a source IP or
//! port, so an attacker cannot grow the series count. Process counters, sink counters and the
//! conntrack fill are read at scrape time; connection outcomes are counted by the engine through
//! [`Metrics::connection_closed`].

use super::SinkCounters;
use crate::stats::Counters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The conntrack table fill (REDIRECT mode needs a free entry per connection).
pub const CONNTRACK_COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
pub const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type ConnectionLabels = [(&'static str, &'static str); 2];

/// The metrics registry and the counters the engine feeds.
pub struct Metrics {
    registry: Registry,
    connections: Family<ConnectionLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Metrics over the process counters and each sink's counters.
    pub fn new(counters: Arc<Counters>, sinks: Vec<(&'static str, Arc<SinkCounters>)>) -> Metrics {
        let mut registry = Registry::with_prefix("spip");
        let connections = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "connections",
            "Connections closed, by protocol and outcome",
            connections.clone(),
        );
        registry.register_collector(Box::new(Snapshot {
            counters,
            sinks,
            conntrack: [CONNTRACK_COUNT, CONNTRACK_MAX],
        }));
        Metrics {
            registry,
            connections,
        }
    }

    /// Counts one closed connection. `protocol` and `outcome` must come from small fixed sets
    /// (such as "http", "tls", "ssh", "raw" and "closed", "timeout", "capped", "shed").
    pub fn connection_closed(&self, protocol: &'static str, outcome: &'static str) {
        self.connections
            .get_or_create(&[("protocol", protocol), ("outcome", outcome)])
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; a collector error would leave a partial text, which
        // the `# EOF` check of a scraper rejects.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format (0.0.4) exposition.
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        // As above: a String cannot fail to take text.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Serves `GET /metrics` on `addr` from a thread of its own, one connection at a time.
    pub fn serve(self: Arc<Self>, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        std::thread::Builder::new()
            .name("spip-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        // A scraper that went away is not worth a message each time.
                        Ok(c) => drop(self.answer(c)),
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })?;
        Ok(bound)
    }

    /// Reads one request head (bounded in size and time) and answers it.
    fn answer(&self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        conn.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut head = [0u8; 2048];
        let mut len = 0;
        while len < head.len() {
            let n = conn.read(&mut head[len..])?;
            if n == 0 {
                break;
            }
            len += n;
            if memchr::memmem::find(&head[..len], b"\r\n\r\n").is_some() {
                break;
            }
        }
        let line = head[..len].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let mut parts = line.split(|&b| b == b' ');
        let (method, target) = (parts.next(), parts.next());
        let openmetrics = head[..len]
            .to_ascii_lowercase()
            .windows(b"application/openmetrics-text".len())
            .any(|w| w == b"application/openmetrics-text");
        let (status, ctype, body) = match (method, target) {
            (Some(b"GET"), Some(b"/metrics")) if openmetrics => {
                ("200 OK", CONTENT_TYPE, self.encode())
            }
            (Some(b"GET"), Some(b"/metrics")) => {
                ("200 OK", PROMETHEUS_CONTENT_TYPE, self.encode_prometheus())
            }
            (Some(b"GET"), Some(_)) => ("404 Not Found", "text/plain", "not found\n".into()),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "GET /metrics\n".into(),
            ),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes())
    }
}

/// What is read at scrape time.
#[derive(Debug)]
struct Snapshot {
    counters: Arc<Counters>,
    sinks: Vec<(&'static str, Arc<SinkCounters>)>,
    conntrack: [&'static str; 2],
}

fn read_number(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: &AtomicU64) -> std::fmt::Result {
    let c = ConstCounter::new(v.load(Ordering::Relaxed));
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.counters;
        counter(&mut e, "accepted", "Connections accepted", &c.accepted)?;
        counter(
            &mut e,
            "accept_errors",
            "accept() errors (such as EMFILE) that made the sensor back off",
            &c.accept_errors,
        )?;
        let live = c.live.load(Ordering::Relaxed) as i64;
        gauge(&mut e, "live_connections", "Connections open now", live)?;
        type Field = fn(&SinkCounters) -> &AtomicU64;
        let per_sink: [(&str, &str, Field); 4] = [
            ("sink_records", "Records a sink delivered", |s| &s.sent),
            (
                "sink_dropped",
                "Records a sink gave up on (budget full, refused, left at shutdown)",
                |s| &s.dropped,
            ),
            (
                "sink_errors",
                "Deliveries that did not deliver everything",
                |s| &s.errors,
            ),
            ("sink_retries", "Deliveries retried", |s| &s.retries),
        ];
        for (name, help, field) in per_sink {
            let mut m = e.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (sink, counters) in &self.sinks {
                let v = ConstCounter::new(field(counters).load(Ordering::Relaxed));
                v.encode(m.encode_family(&[("sink", *sink)])?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "sink_queue_bytes",
            "Bytes a sink holds (queued, in flight, awaiting a retry)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (sink, counters) in &self.sinks {
            let v = ConstGauge::new(counters.queue_bytes.load(Ordering::Relaxed) as i64);
            v.encode(m.encode_family(&[("sink", *sink)])?)?;
        }
        // Absent without netfilter (or in a container that hides it): then not reported.
        if let (Some(count), Some(max)) = (
            read_number(self.conntrack[0]),
            read_number(self.conntrack[1]),
        ) {
            gauge(&mut e, "conntrack_entries", "nf_conntrack_count", count)?;
            gauge(&mut e, "conntrack_max", "nf_conntrack_max", max)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_ends_with_eof() {
        let counters = Arc::new(Counters::default());
        counters.accepted.store(7, Ordering::Relaxed);
        counters.live.store(2, Ordering::Relaxed);
        let file = Arc::new(SinkCounters::default());
        file.sent.store(5, Ordering::Relaxed);
        file.queue_bytes.store(100, Ordering::Relaxed);
        let m = Metrics::new(counters, vec![("file", file)]);
        m.connection_closed("http", "closed");
        m.connection_closed("http", "closed");
        m.connection_closed("ssh", "timeout");
        let text = m.encode();
        for line in [
            "spip_connections_total{protocol=\"http\",outcome=\"closed\"} 2",
            "spip_connections_total{protocol=\"ssh\",outcome=\"timeout\"} 1",
            "spip_accepted_total 7",
            "spip_live_connections 2",
            "spip_sink_records_total{sink=\"file\"} 5",
            "spip_sink_queue_bytes{sink=\"file\"} 100",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn serves_get_metrics_and_nothing_else() {
        let m = Arc::new(Metrics::new(Arc::new(Counters::default()), Vec::new()));
        let addr = m.serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let get = |req: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let om = get(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        );
        assert!(om.starts_with("HTTP/1.1 200 OK\r\n"), "{om}");
        assert!(om.contains(CONTENT_TYPE) && om.ends_with("# EOF\n"), "{om}");
        let text = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(PROMETHEUS_CONTENT_TYPE), "{text}");
        assert!(
            text.contains("# TYPE spip_accepted_total counter"),
            "{text}"
        );
        assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    }
}
