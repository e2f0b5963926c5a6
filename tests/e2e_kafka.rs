//! The Kafka sink against a real Kafka-protocol broker (tansu, with its sqlite storage) started
//! by the test, read back by a real Kafka consumer (librdkafka's, via rdkafka): through the
//! shared sink runner on 127.0.0.1, and through the real binary in a network namespace.
//!
//! Every test needs `tansu` (`cargo install tansu --locked --features libsql`; .ci/run installs
//! it once per machine) and is reported ignored, with that reason, when it is missing.

mod common;

use common::*;
use libtest_mimic::{Completion, Trial};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use spip::config::KafkaConfig;
use spip::sinks::kafka::KafkaSink;
use spip::sinks::{Lines, RetryPolicy, SinkCounters, SinkRunner};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 3;
const NO_TANSU: &str = "needs tansu (cargo install tansu --locked --features libsql)";

/// The `tansu` binary on PATH.
fn tansu_bin() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
}

/// A tansu broker on 127.0.0.1:`port` (in a network namespace when `netns` is set), its sqlite
/// storage in a temporary directory that survives its restarts.
struct Broker {
    bin: PathBuf,
    netns: Option<String>,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(netns: Option<&Netns>, port: u16) -> Broker {
        let mut broker = Broker {
            bin: tansu_bin().expect("tansu on PATH"),
            netns: netns.map(|n| n.name.clone()),
            dir: TempDir(temp_dir("tansu")),
            port,
            child: None,
        };
        broker.up();
        broker
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://{}", self.address())
    }

    fn command(&self, program: &std::path::Path) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.current_dir(&*self.dir);
        c
    }

    /// Starts the broker and waits until it listens.
    fn up(&mut self) {
        assert!(self.child.is_none(), "broker already up");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("broker log");
        let url = self.url();
        let child = self
            .command(&self.bin)
            .args(["broker", "--storage-engine", "sqlite://tansu.db"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = format!("127.0.0.1:{} ", self.port);
        loop {
            let out = self
                .command("ss".as_ref())
                .arg("-ltnH")
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&listening) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL: no goodbye to its clients).
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn create_topic(&self, topic: &str) {
        let out = self
            .command(&self.bin)
            .args(["topic", "create", topic, "--partitions"])
            .arg(PARTITIONS.to_string())
            .args(["--broker", &self.url()])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

/// One consumed message: its key, its partition and the record.
struct Consumed {
    key: String,
    partition: i32,
    record: Value,
}

/// Reads `topic` from the beginning until `enough` holds for what came, or 60 s.
fn consume(
    address: String,
    topic: &'static str,
    enough: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "spip-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions
            .add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&partitions).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !enough(&got) && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.expect("consume");
        got.push(Consumed {
            key: String::from_utf8(msg.key().expect("a key").to_vec()).expect("utf-8 key"),
            partition: msg.partition(),
            record: serde_json::from_slice(msg.payload().expect("a payload")).expect("JSON"),
        });
    }
    got
}

/// Per source: checks key = `source.ip` and one partition, returns `spip.seq` in order.
fn seqs_by_source(got: &[Consumed]) -> BTreeMap<String, Vec<u64>> {
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    let mut by_source: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in got {
        assert_eq!(c.record["source"]["ip"], c.key.as_str(), "key = source.ip");
        let p = *partition_of.entry(&c.key).or_insert(c.partition);
        assert_eq!(p, c.partition, "{}: one source, one partition", c.key);
        let seq = c.record["spip"]["seq"].as_u64().expect("spip.seq");
        by_source.entry(c.key.clone()).or_default().push(seq);
    }
    by_source
}

/// Records shaped like ours (`source.ip`, then a per-source `spip.seq`), interleaved across
/// `sources`, as newline-terminated lines.
fn lines(sources: u32, seqs: std::ops::Range<u32>) -> Arc<Lines> {
    let mut bytes = Vec::new();
    let mut n = 0;
    for seq in seqs {
        for s in 1..=sources {
            bytes.extend_from_slice(
                format!(
                    r#"{{"@timestamp":"2026-01-01T00:00:00Z","event":{{"id":"{s}-{seq}","summary":"x"}},"source":{{"ip":"192.0.2.{s}","port":40000}},"spip":{{"seq":{seq}}}}}"#
                )
                .as_bytes(),
            );
            bytes.push(b'\n');
            n += 1;
        }
    }
    Lines::new(bytes, n)
}

fn runner(
    broker: &Broker,
    topic: &str,
    message_timeout: Duration,
) -> (SinkRunner, Arc<SinkCounters>) {
    let cfg = KafkaConfig {
        enabled: true,
        brokers: vec![broker.address()],
        topic: topic.to_string(),
        batch_size: 100,
        flush_interval: Duration::from_millis(100),
        message_timeout,
        ..KafkaConfig::default()
    };
    let counters = Arc::new(SinkCounters::default());
    let sink = KafkaSink::new(&cfg).expect("kafka sink");
    let retry = RetryPolicy {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        retry_after_max: Duration::from_secs(1),
    };
    let r = SinkRunner::start(Box::new(sink), 64 << 20, retry, counters.clone()).expect("runner");
    (r, counters)
}

fn every_record_once_in_order(got: &[Consumed], sources: u32, per_source: u64) {
    let by_source = seqs_by_source(got);
    assert_eq!(by_source.len(), sources as usize, "{:?}", by_source.keys());
    let expected: Vec<u64> = (0..per_source).collect();
    for (ip, seqs) in by_source {
        assert_eq!(seqs, expected, "{ip}: every record once, in order");
    }
}

fn records_reach_kafka_keyed_and_in_order_per_source() {
    let broker = Broker::start(None, free_port());
    broker.create_topic("spip-order");
    let (r, counters) = runner(
        &broker,
        "spip-order",
        KafkaConfig::default().message_timeout,
    );
    for chunk in 0..10 {
        r.offer(lines(5, chunk * 20..chunk * 20 + 20));
    }
    r.shutdown(Duration::from_secs(30));
    assert_eq!(counters.sent.load(Ordering::Relaxed), 1000);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    let got = consume(broker.address(), "spip-order", |got| got.len() >= 1000);
    every_record_once_in_order(&got, 5, 200);
}

/// The default `message_timeout` (15 s) outlasts the outage: librdkafka bridges it, and every
/// record arrives exactly once, in order.
fn broker_restart_and_ten_second_outage_lose_nothing() {
    let got = through_restart_and_outage(
        "spip-outage",
        KafkaConfig::default().message_timeout,
        |got| got.len() >= 4 * 1700,
    );
    every_record_once_in_order(&got, 4, 1700);
}

/// A 2 s `message_timeout`: records come back to the runner during the outage and are offered
/// again; every record still arrives, and each source's first copies are in order.
fn outage_longer_than_message_timeout_loses_nothing() {
    // Copies may come: read until every source's records have all come at least once.
    let got = through_restart_and_outage("spip-retry", Duration::from_secs(2), |got| {
        // (Never fewer messages than records: look closer only from there.)
        got.len() >= 4 * 1700 && {
            let by_source = seqs_by_source(got);
            by_source.len() == 4
                && by_source.values().all(|seqs| {
                    seqs.iter().collect::<std::collections::BTreeSet<_>>().len() == 1700
                })
        }
    });
    for (ip, seqs) in seqs_by_source(&got) {
        let mut first = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for s in seqs {
            if seen.insert(s) {
                first.push(s);
            }
        }
        assert_eq!(first, (0..1700).collect::<Vec<u64>>(), "{ip}");
    }
}

/// Offers 4 sources x 5 records every 50 ms for about 17 s while the broker is restarted, then
/// down for 10 s; returns what the topic holds once `enough` holds for it. Nothing may be
/// dropped.
fn through_restart_and_outage(
    topic: &'static str,
    message_timeout: Duration,
    enough: fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let mut broker = Broker::start(None, free_port());
    broker.create_topic(topic);
    let (r, counters) = runner(&broker, topic, message_timeout);
    // 4 sources x 5 records every 50 ms, for about 17 s, whatever the broker does.
    let offering = std::thread::spawn(move || {
        for step in 0..340 {
            r.offer(lines(4, step * 5..step * 5 + 5));
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    });
    std::thread::sleep(Duration::from_secs(2));
    broker.down();
    broker.up();
    std::thread::sleep(Duration::from_secs(2));
    broker.down();
    std::thread::sleep(Duration::from_secs(10));
    broker.up();
    let r = offering.join().expect("offering thread");
    r.shutdown(Duration::from_secs(60));
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(counters.sent.load(Ordering::Relaxed), 4 * 1700);
    let got = consume(broker.address(), topic, enough);
    eprintln!(
        "{topic}: {} messages for {} records, {} delivery retries",
        got.len(),
        4 * 1700,
        counters.retries.load(Ordering::Relaxed)
    );
    got
}

/// The real binary in a namespace, with the broker there too (its port exempt from the
/// REDIRECT): records sent before, during and after a 10 s outage all reach Kafka, in the
/// order of the local log.
fn sensor_records_reach_kafka_across_an_outage() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let port = ns.within(free_port);
    ns.keep_port(port);
    let mut broker = Broker::start(Some(&ns), port);
    broker.create_topic("spip-e2e");
    // One worker thread: records reach every sink in one order, so Kafka's order (one key, one
    // partition) must be the local log's exactly. With more workers, chunks of different
    // connections may reach the sinks in different orders.
    let cfg = format!(
        "threads = 1\n[kafka]\nenabled = true\nbrokers = [\"127.0.0.1:{port}\"]\ntopic = \"spip-e2e\"\n\
         batch_size = 5\nflush_interval = \"200ms\"\n"
    );
    let mut sensor = Sensor::start(&ns, &cfg);
    let mut sent = 0u16;
    let mut poke_next = |n: u16| {
        poke(&ns, sent, n);
        sent += n;
    };
    poke_next(10);
    std::thread::sleep(Duration::from_secs(1));
    broker.down();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        poke_next(5);
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.up();
    poke_next(10);
    let expect = usize::from(sent);
    let address = broker.address();
    let got = ns.within(move || consume(address, "spip-e2e", move |got| got.len() >= expect));
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("producing records to Kafka topic spip-e2e"),
        "{stderr}"
    );
    assert_eq!(stat(&stderr, "kafka_records"), u64::from(sent), "{stderr}");
    assert_eq!(stat(&stderr, "kafka_dropped"), 0, "{stderr}");
    let local: Vec<Value> = sensor.records();
    assert_eq!(local.len(), expect);
    let ids = |records: &mut dyn Iterator<Item = &Value>| -> Vec<String> {
        records.map(|r| r["event"]["id"].to_string()).collect()
    };
    assert!(got.iter().all(|c| c.key == "127.0.0.1"));
    assert_eq!(
        ids(&mut got.iter().map(|c| &c.record)),
        ids(&mut local.iter()),
        "Kafka has the local log's records, in its order"
    );
}

/// Ignored, with the reason, when tansu (or, for `needs_root`, root) is missing.
fn broker_trial(name: &'static str, needs_root: bool, test: fn()) -> Trial {
    Trial::ignorable_test(name, move || {
        if tansu_bin().is_none() {
            Ok(Completion::ignored_with(NO_TANSU))
        } else if needs_root && !is_root() {
            let reason = "needs root for network namespaces and iptables";
            if std::env::var_os(REQUIRE_ROOT_ENV).is_some_and(|v| v == "1") {
                Err(format!("{name} {reason}; {REQUIRE_ROOT_ENV}=1 forbids skipping it").into())
            } else {
                Ok(Completion::ignored_with(reason))
            }
        } else {
            test();
            Ok(Completion::Completed)
        }
    })
}

fn main() -> std::process::ExitCode {
    run(vec![
        broker_trial(
            "records_reach_kafka_keyed_and_in_order_per_source",
            false,
            records_reach_kafka_keyed_and_in_order_per_source,
        ),
        broker_trial(
            "broker_restart_and_ten_second_outage_lose_nothing",
            false,
            broker_restart_and_ten_second_outage_lose_nothing,
        ),
        broker_trial(
            "outage_longer_than_message_timeout_loses_nothing",
            false,
            outage_longer_than_message_timeout_loses_nothing,
        ),
        broker_trial(
            "sensor_records_reach_kafka_across_an_outage",
            true,
            sensor_records_reach_kafka_across_an_outage,
        ),
    ])
}
