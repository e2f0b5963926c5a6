//! Prometheus metrics (opt-in `metrics_listen`): the official client crate's encoders, served by
//! a tiny HTTP listener on its own thread. A scraper that accepts OpenMetrics (Prometheus does)
//! gets OpenMetrics text; any other client gets the Prometheus text format 0.0.4, which is also
//! what `promtool check metrics` reads.
//!
//! Labels come only from small fixed sets (protocol, outcome, sink name): never a source IP or
//! port, so an attacker cannot grow the series count. Process counters and sink counters (every
//! entry of their tables, see `stats::counter_table!`) and the conntrack fill are read at
//! scrape time; connection outcomes are counted by the engine through
//! [`Metrics::connection_closed`].

use super::SinkStats;
use crate::stats::{CounterInfo, CounterSet, Counters, Kind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
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
    pub fn new(counters: Arc<Counters>, sinks: Vec<SinkStats>) -> Metrics {
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
    sinks: Vec<SinkStats>,
    conntrack: [&'static str; 2],
}

fn read_number(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One value to expose: its counter, the sink it belongs to (if any) and the value now.
struct Sample {
    info: &'static CounterInfo,
    sink: Option<&'static str>,
    value: u64,
}

/// Encodes samples as metric families: the samples of one family must be adjacent.
fn encode_samples(e: &mut DescriptorEncoder, samples: &[Sample]) -> std::fmt::Result {
    for family in samples.chunk_by(|a, b| a.info.metric == b.info.metric) {
        let Some(first) = family.first() else {
            continue;
        };
        let info = first.info;
        let kind = match info.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        let mut m = e.encode_descriptor(info.metric, info.help, None, kind)?;
        for sample in family {
            let labels: Vec<(&str, &str)> = sample
                .sink
                .map(|sink| ("sink", sink))
                .into_iter()
                .chain(sample.info.label)
                .collect();
            let m = m.encode_family(&labels)?;
            match info.kind {
                Kind::Counter => ConstCounter::new(sample.value).encode(m)?,
                // Gauges here are byte and connection counts, far below i64::MAX.
                Kind::Gauge => {
                    ConstGauge::new(i64::try_from(sample.value).unwrap_or(i64::MAX)).encode(m)?
                }
            }
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let process: Vec<Sample> = self
            .counters
            .values()
            .map(|(info, value)| Sample {
                info,
                sink: None,
                value,
            })
            .collect();
        encode_samples(&mut e, &process)?;
        // Every sink's counters (the runner's and its own), grouped by metric: a stable sort
        // keeps the sinks in order within a family.
        let mut per_sink = Vec::new();
        for sink in &self.sinks {
            let mut push = |info, value| {
                per_sink.push(Sample {
                    info,
                    sink: Some(sink.name),
                    value,
                })
            };
            sink.counters.for_each(&mut push);
            if let Some(own) = &sink.own {
                own.for_each(&mut push);
            }
        }
        per_sink.sort_by_key(|s| s.info.metric);
        encode_samples(&mut e, &per_sink)?;
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

    use crate::sinks::SinkCounters;
    use crate::sinks::elastic::ElasticCounters;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The exposition line of one counter: `spip_<metric>[_total]{sink=..,<label>=..} <value>`.
    fn line(info: &CounterInfo, sink: Option<&str>, value: u64) -> String {
        let suffix = if info.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        let labels: Vec<String> = sink
            .map(|s| ("sink", s))
            .into_iter()
            .chain(info.label)
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        format!("spip_{}{suffix}{labels} {value}", info.metric)
    }

    /// Gives every counter its own value (1, 2, ... from `first`) and returns the lines the
    /// exposition must have.
    fn number<'a>(
        fields: impl Iterator<Item = (&'static CounterInfo, &'a AtomicU64)>,
        sink: Option<&str>,
        first: u64,
    ) -> Vec<String> {
        fields
            .zip(first..)
            .map(|((info, atomic), value)| {
                atomic.store(value, Ordering::Relaxed);
                line(info, sink, value)
            })
            .collect()
    }

    #[test]
    fn exposition_has_every_counter_of_the_tables_and_ends_with_eof() {
        let counters = Arc::new(Counters::default());
        let file = Arc::new(SinkCounters::default());
        let elastic = Arc::new(SinkCounters::default());
        let elastic_own = Arc::new(ElasticCounters::default());
        let mut expected = number(counters.fields(), None, 1);
        expected.extend(number(file.fields(), Some("file"), 100));
        expected.extend(number(elastic.fields(), Some("elasticsearch"), 200));
        expected.extend(number(elastic_own.fields(), Some("elasticsearch"), 300));
        let sinks = vec![
            SinkStats {
                name: "file",
                counters: file,
                own: None,
            },
            SinkStats {
                name: "elasticsearch",
                counters: elastic,
                own: Some(elastic_own),
            },
        ];
        let m = Metrics::new(counters, sinks);
        m.connection_closed("http", "closed");
        m.connection_closed("http", "closed");
        m.connection_closed("ssh", "timeout");
        expected.push("spip_connections_total{protocol=\"http\",outcome=\"closed\"} 2".into());
        expected.push("spip_connections_total{protocol=\"ssh\",outcome=\"timeout\"} 1".into());
        // The names the README documented before the table existed (dashboards use them).
        for old in [
            "spip_accepted_total 1",
            "spip_sink_records_total{sink=\"file\"} 101",
            "spip_sink_queue_bytes{sink=\"file\"} 105",
        ] {
            assert!(expected.iter().any(|l| l == old), "{old} renamed");
        }
        let text = m.encode();
        for line in &expected {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        // Nothing but the expected samples, the descriptors and the host's conntrack fill.
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("spip_conntrack_"))
            .count();
        assert_eq!(samples, expected.len(), "{text}");
        assert!(
            text.contains("# TYPE spip_live_connections gauge"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE spip_connections_shed counter"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // One descriptor per family, in both formats.
        for text in [&text, &m.encode_prometheus()] {
            let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
            let all = types.len();
            types.sort_unstable();
            types.dedup();
            assert_eq!(types.len(), all, "{text}");
        }
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../../README.md");
        let tables = [Counters::TABLE, SinkCounters::TABLE, ElasticCounters::TABLE];
        for info in tables.into_iter().flatten() {
            let suffix = if info.kind == Kind::Counter {
                "_total"
            } else {
                ""
            };
            let name = format!("`spip_{}{suffix}`", info.metric);
            assert!(readme.contains(&name), "README lacks {name}");
            if let Some((label, value)) = info.label {
                let member = format!("{label}=\"{value}\"");
                assert!(readme.contains(&member), "README lacks {name} {member}");
            }
        }
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
