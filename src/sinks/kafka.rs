//! The Kafka sink: records produced to one topic by librdkafka's idempotent producer
//! (`acks=all`, compression), keyed by the record's `source.ip` so that one source's records
//! go to one partition, in order.
//!
//! Each [`Sink::deliver`] enqueues the batch and waits until librdkafka has reported on every
//! record: delivered, or failed after `message_timeout` of librdkafka's own retries (a broker
//! restart or a short outage is absorbed there, without duplicates). Failed records go back to
//! the runner, which offers them again within the sink's byte budget; records the broker can
//! never take (too large) are rejected and counted as dropped.

use super::{Batching, Delivery, Sink};
use crate::config::KafkaConfig;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Extra wait beyond `message_timeout` for reports of requests already in flight.
const REPORT_GRACE: Duration = Duration::from_secs(5);
/// How long to collect the reports of purged records after the wait ran out.
const PURGE_WAIT: Duration = Duration::from_secs(1);
/// Longest single poll while waiting for reports (polls start at 1 ms and double while idle).
const MAX_POLL_STEP: Duration = Duration::from_millis(50);
/// Broker reconnect backoff cap: after an outage the producer is back within a second.
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// Produces each delivered batch to `topic` and waits for its delivery reports.
pub struct KafkaSink {
    producer: BaseProducer<Reports>,
    settings: ClientConfig,
    topic: String,
    batching: Batching,
    /// The longest one delivery waits for its reports.
    wait: Duration,
    /// Delivery opaque of the next record: a batch's records carry `base..base+n`, so a late
    /// report of an earlier batch is told apart and ignored.
    next_opaque: usize,
    /// Records timed out or were purged: start the next delivery on a fresh producer.
    renew: bool,
}

/// One record's fate, from its delivery report or its failed enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Offer again (broker down, timed out, purged, not leader ...).
    Retry(RDKafkaErrorCode),
    /// The broker can never take it (too large, invalid): dropped and counted.
    Rejected(RDKafkaErrorCode),
}

impl Outcome {
    fn from_error(e: &KafkaError) -> Outcome {
        match e.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::BadMessage),
            ) => Outcome::Rejected(code),
            Some(code) => Outcome::Retry(code),
            None => Outcome::Retry(RDKafkaErrorCode::Fail),
        }
    }
}

/// The producer's callbacks: delivery reports and client errors, kept for `deliver` to read.
#[derive(Default)]
struct Reports {
    /// (delivery opaque, outcome) in arrival order, drained by `deliver`.
    done: Mutex<Vec<(usize, Outcome)>>,
    /// The latest client-level error (broker down, authentication ...), for error messages.
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let outcome = match result {
            Ok(_) => Outcome::Delivered,
            Err((e, _)) => Outcome::from_error(e),
        };
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((opaque, outcome));
    }
}

/// librdkafka's settings for `cfg`.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    let ms = |d: Duration| d.as_millis().to_string();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", "spip")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", cfg.compression.as_str())
        .set("linger.ms", ms(cfg.linger))
        .set("message.timeout.ms", ms(cfg.message_timeout))
        // One delivery is in librdkafka at a time: room for a batch plus one oversized record.
        .set(
            "queue.buffering.max.kbytes",
            (cfg.batch_bytes * 2 / 1024 + 1024).to_string(),
        )
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
        // A broker outage is reported through `deliver`'s error, not a line per reconnect.
        .set("log.connection.close", "false");
    let protocol = match (cfg.tls, cfg.sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(ca) = &cfg.ca_file {
        c.set("ssl.ca.location", ca.display().to_string());
    }
    if let Some((cert, key)) = &cfg.client_cert {
        c.set("ssl.certificate.location", cert.display().to_string())
            .set("ssl.key.location", key.display().to_string());
    }
    if cfg.tls && cfg.insecure_skip_verify {
        c.set("enable.ssl.certificate.verification", "false")
            .set("ssl.endpoint.identification.algorithm", "none");
    }
    if let Some(sasl) = &cfg.sasl {
        c.set("sasl.mechanism", sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", &sasl.password);
    }
    c
}

/// `source.ip` of a record written by our own writer, without a JSON parse: `"source":{"ip":"`
/// occurs once and, its quotes being unescaped, never inside a string value. None when absent
/// or not an IP's characters.
pub fn source_ip(record: &[u8]) -> Option<&[u8]> {
    const NEEDLE: &[u8] = br#""source":{"ip":""#;
    let start = memchr::memmem::find(record, NEEDLE)? + NEEDLE.len();
    let rest = &record[start..];
    // The longest IPv6 text is 45 bytes; look no further.
    let window = &rest[..rest.len().min(46)];
    let ip = &window[..memchr::memchr(b'"', window)?];
    let ip_chars = |b: &u8| b.is_ascii_hexdigit() || matches!(b, b'.' | b':');
    (!ip.is_empty() && ip.iter().all(ip_chars)).then_some(ip)
}

impl KafkaSink {
    /// Creates the producer (it connects in the background, on first use).
    pub fn new(cfg: &KafkaConfig) -> Result<KafkaSink, KafkaError> {
        if let Some(sasl) = cfg
            .sasl
            .as_ref()
            .filter(|s| !cfg.tls && s.mechanism == "PLAIN")
        {
            eprintln!(
                "spip: warning: kafka SASL {} without tls: the password travels in clear",
                sasl.mechanism
            );
        }
        let settings = client_config(cfg);
        Ok(KafkaSink {
            producer: settings.create_with_context(Reports::default())?,
            settings,
            topic: cfg.topic.clone(),
            batching: Batching {
                max_records: cfg.batch_size,
                max_bytes: cfg.batch_bytes,
                flush_interval: cfg.flush_interval,
            },
            wait: cfg.message_timeout + REPORT_GRACE,
            next_opaque: 0,
            renew: false,
        })
    }

    /// Moves the reports that arrived into `outcomes` (this batch's records start at `base`);
    /// returns how many of this batch's records got their first report.
    fn take_reports(&self, base: usize, outcomes: &mut [Option<Outcome>]) -> usize {
        let mut done = self
            .producer
            .context()
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut settled = 0;
        for (opaque, outcome) in done.drain(..) {
            // A report of an earlier batch falls outside this batch's range.
            if let Some(slot) = outcomes.get_mut(opaque.wrapping_sub(base)) {
                if slot.is_none() {
                    settled += 1;
                }
                *slot = Some(outcome);
            }
        }
        settled
    }

    /// Polls for reports until none of this batch's records is pending or `deadline`;
    /// returns how many are still pending.
    fn wait_reports(
        &self,
        base: usize,
        outcomes: &mut [Option<Outcome>],
        mut pending: usize,
        deadline: Instant,
    ) -> usize {
        let mut step = Duration::from_millis(1);
        loop {
            let settled = self.take_reports(base, outcomes);
            pending = pending.saturating_sub(settled);
            let now = Instant::now();
            if pending == 0 || now >= deadline {
                return pending;
            }
            // Short polls while reports flow, longer ones while the broker is away.
            step = if settled > 0 {
                Duration::from_millis(1)
            } else {
                (step * 2).min(MAX_POLL_STEP)
            };
            self.producer.poll(step.min(deadline - now));
        }
    }

    /// Replaces the producer after a fatal error (the instance is unusable) or after records
    /// timed out or were purged. Those leave the idempotent producer's sequence numbers in doubt,
    /// and librdkafka then waits for the broker to bump the producer epoch (KIP-360), which not
    /// every broker does (tansu stalls). The runner sends those records again as new ones anyway,
    /// so a fresh producer id loses no guarantee.
    fn renew_if_needed(&mut self) {
        let fatal = self.producer.client().fatal_error();
        if !self.renew && fatal.is_none() {
            return;
        }
        match self.settings.create_with_context(Reports::default()) {
            Ok(producer) => {
                if let Some((code, reason)) = fatal {
                    eprintln!("spip: kafka: new producer after a fatal error: {code}: {reason}");
                }
                self.producer = producer;
                self.renew = false;
            }
            Err(e) => eprintln!("spip: kafka: cannot create a new producer: {e}"),
        }
    }

    fn error_message(
        &self,
        failed: usize,
        total: usize,
        first: Option<RDKafkaErrorCode>,
    ) -> String {
        let last = self
            .producer
            .context()
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut msg = format!("kafka: {failed} of {total} records not delivered");
        if let Some(code) = first {
            msg.push_str(&format!(": {code}"));
        }
        if let Some(last) = last {
            msg.push_str(&format!(" (last client error: {last})"));
        }
        msg
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn deliver(&mut self, records: &[&[u8]]) -> Delivery {
        self.renew_if_needed();
        let base = self.next_opaque;
        self.next_opaque = base.wrapping_add(records.len());
        let deadline = Instant::now() + self.wait;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut pending: usize = 0;
        for (i, record) in records.iter().enumerate() {
            let mut message =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, base.wrapping_add(i))
                    .payload(record);
            // No source IP (not our record): no key, librdkafka picks a partition.
            if let Some(ip) = source_ip(record) {
                message = message.key(ip);
            }
            loop {
                match self.producer.send(message) {
                    Ok(()) => {
                        pending += 1;
                        break;
                    }
                    // Only when reports of a late earlier batch still fill the queue.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        message = back;
                        self.producer.poll(Duration::from_millis(10));
                        pending =
                            pending.saturating_sub(self.take_reports(base, &mut outcomes[..i]));
                    }
                    Err((e, _)) => {
                        outcomes[i] = Some(Outcome::from_error(&e));
                        break;
                    }
                }
            }
        }
        if self.wait_reports(base, &mut outcomes, pending, deadline) > 0 {
            // Past librdkafka's own promise: purge what is left so that its reports come now.
            // Purged-from-queue records were never sent; purged in-flight ones may arrive twice.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            self.wait_reports(base, &mut outcomes, pending, Instant::now() + PURGE_WAIT);
        }
        let mut retry = Vec::new();
        let mut rejected = 0;
        let mut first_error = None;
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Some(Outcome::Delivered) => {}
                Some(Outcome::Rejected(code)) => {
                    rejected += 1;
                    first_error.get_or_insert(*code);
                }
                Some(Outcome::Retry(code)) => {
                    retry.push(i);
                    first_error.get_or_insert(*code);
                    self.renew |= matches!(
                        code,
                        RDKafkaErrorCode::MessageTimedOut
                            | RDKafkaErrorCode::PurgeQueue
                            | RDKafkaErrorCode::PurgeInflight
                    );
                }
                None => {
                    retry.push(i);
                    self.renew = true;
                }
            }
        }
        if retry.is_empty() && rejected == 0 {
            return Delivery::Delivered;
        }
        let error = self.error_message(retry.len() + rejected, records.len(), first_error);
        if retry.len() == records.len() {
            Delivery::RetryAll { after: None, error }
        } else {
            Delivery::Partial {
                retry,
                rejected,
                error,
            }
        }
    }

    fn close(&mut self) {
        // Every delivery already waited for its reports; this only settles a purged remainder.
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaCompression, KafkaSasl};
    use std::path::PathBuf;

    #[test]
    fn source_ip_from_our_records() {
        let v4 = br#"{"@timestamp":"t","event":{"id":"e","summary":"x \"source\":{\"ip\":\"6.6.6.6\""},"source":{"ip":"192.0.2.1","port":4},"destination":{"ip":"10.0.0.1"}}"#;
        assert_eq!(source_ip(v4), Some(&b"192.0.2.1"[..]));
        let v6 = br#"{"source":{"ip":"2001:db8::ffff:1","port":4}}"#;
        assert_eq!(source_ip(v6), Some(&b"2001:db8::ffff:1"[..]));
        let longest = br#"{"source":{"ip":"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"}}"#;
        assert_eq!(source_ip(longest).map(<[u8]>::len), Some(45));
    }

    #[test]
    fn source_ip_absent_or_odd() {
        assert_eq!(source_ip(b""), None);
        assert_eq!(source_ip(br#"{"destination":{"ip":"10.0.0.1"}}"#), None);
        assert_eq!(source_ip(br#"{"source":{"ip":""}}"#), None);
        assert_eq!(
            source_ip(br#"{"source":{"ip":"1.2.3.4"#),
            None,
            "cut record"
        );
        assert_eq!(source_ip(br#"{"source":{"ip":"evil\"}}"#), None);
        let long = format!(r#"{{"source":{{"ip":"{}"}}}}"#, "1".repeat(100));
        assert_eq!(source_ip(long.as_bytes()), None);
    }

    #[test]
    fn source_ip_from_the_record_writer() {
        use crate::record::{ConnMeta, TurnMeta, write_record};
        use std::time::UNIX_EPOCH;
        for (addr, ip) in [
            ("[2001:db8::7]:5555", &b"2001:db8::7"[..]),
            ("[::ffff:192.0.2.1]:40000", &b"192.0.2.1"[..]),
        ] {
            let conn = ConnMeta {
                event_id: "e",
                sensor_name: "s",
                source: addr.parse().unwrap(),
                destination: "198.51.100.2:22".parse().unwrap(),
                original_destination: true,
                community_id: "1:abc=",
                started: UNIX_EPOCH,
                syn: None,
            };
            let turn = TurnMeta {
                turn: 0,
                at: UNIX_EPOCH,
                client_bytes: 0,
                truncated: false,
                close_reason: None,
                budget_exhausted: false,
            };
            let mut out = Vec::new();
            write_record(&mut out, &conn, &turn, None);
            assert_eq!(source_ip(&out), Some(ip));
        }
    }

    fn config() -> KafkaConfig {
        KafkaConfig {
            enabled: true,
            brokers: vec!["k1:9092".into(), "k2:9093".into()],
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn producer_settings_are_safe_by_default() {
        let c = client_config(&config());
        let get = |k| c.get(k).unwrap_or("<unset>");
        assert_eq!(get("bootstrap.servers"), "k1:9092,k2:9093");
        assert_eq!(get("enable.idempotence"), "true");
        assert_eq!(get("acks"), "all");
        assert_eq!(get("compression.type"), "lz4");
        assert_eq!(get("linger.ms"), "5");
        assert_eq!(get("message.timeout.ms"), "15000");
        assert_eq!(get("security.protocol"), "plaintext");
        assert_eq!(get("queue.buffering.max.kbytes"), "9216");
        assert_eq!(get("enable.ssl.certificate.verification"), "<unset>");
    }

    #[test]
    fn producer_settings_for_tls_and_sasl() {
        let cfg = KafkaConfig {
            tls: true,
            ca_file: Some(PathBuf::from("/etc/spip/ca.pem")),
            client_cert: Some(("/c.pem".into(), "/k.pem".into())),
            insecure_skip_verify: true,
            compression: KafkaCompression::Gzip,
            sasl: Some(KafkaSasl {
                mechanism: "SCRAM-SHA-512",
                username: "u".into(),
                password: "p".into(),
            }),
            ..config()
        };
        let c = client_config(&cfg);
        let get = |k| c.get(k).unwrap_or("<unset>");
        assert_eq!(get("security.protocol"), "sasl_ssl");
        assert_eq!(get("ssl.ca.location"), "/etc/spip/ca.pem");
        assert_eq!(get("ssl.certificate.location"), "/c.pem");
        assert_eq!(get("ssl.key.location"), "/k.pem");
        assert_eq!(get("enable.ssl.certificate.verification"), "false");
        assert_eq!(get("sasl.mechanism"), "SCRAM-SHA-512");
        assert_eq!(get("sasl.username"), "u");
        assert_eq!(get("compression.type"), "gzip");
        let plain_sasl = KafkaConfig { tls: false, ..cfg };
        assert_eq!(
            client_config(&plain_sasl).get("security.protocol"),
            Some("sasl_plaintext")
        );
    }

    /// With no broker reachable, a delivery comes back for retry within its bound, whole.
    #[test]
    fn unreachable_broker_means_retry_all_within_the_timeout() {
        let cfg = KafkaConfig {
            brokers: vec!["127.0.0.1:1".into()],
            message_timeout: Duration::from_millis(300),
            ..config()
        };
        let mut sink = KafkaSink::new(&cfg).unwrap();
        assert_eq!(sink.name(), "kafka");
        assert_eq!(sink.batching().max_records, 1000);
        let t0 = Instant::now();
        let got = sink.deliver(&[br#"{"source":{"ip":"192.0.2.1"}}"#, b"{}"]);
        assert!(t0.elapsed() < Duration::from_millis(300) + REPORT_GRACE + PURGE_WAIT);
        match got {
            Delivery::RetryAll { after: None, error } => {
                assert!(
                    error.starts_with("kafka: 2 of 2 records not delivered"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        sink.close();
    }

    #[test]
    fn oversized_record_is_rejected_the_rest_retried() {
        let cfg = KafkaConfig {
            brokers: vec!["127.0.0.1:1".into()],
            message_timeout: Duration::from_millis(200),
            ..config()
        };
        let mut sink = KafkaSink::new(&cfg).unwrap();
        // Over librdkafka's message.max.bytes (1 MB): refused at enqueue, for good.
        let huge = vec![b' '; 2 << 20];
        match sink.deliver(&[b"{}", &huge, b"{}"]) {
            Delivery::Partial {
                retry, rejected, ..
            } => {
                assert_eq!(retry, [0, 2]);
                assert_eq!(rejected, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
