//! The Kafka sink against a real Kafka-protocol broker (tansu, with its sqlite storage) started
//! by the test on 127.0.0.1, read back by a real Kafka consumer (librdkafka's, via rdkafka).
//!
//! Skips with a printed reason when `tansu` is not installed
//! (`cargo install tansu --locked --features libsql`; .ci/run does it once per machine).
#![cfg(feature = "kafka")]

mod common;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use spip::config::KafkaConfig;
use spip::sinks::kafka::KafkaSink;
use spip::sinks::{Delivery, Sink};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 3;

/// The `tansu` binary, or None (and the skip reason printed) when it is not installed.
fn tansu(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        // Straight to the stderr handle: libtest captures eprintln!, and the reason must show.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: tansu is not installed (cargo install tansu --locked --features libsql)"
        );
    }
    found
}

/// A tansu broker on 127.0.0.1 with its sqlite storage in a temporary directory that survives
/// its restarts.
struct Broker {
    bin: PathBuf,
    dir: common::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(bin: PathBuf) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut broker = Broker {
            bin,
            dir: common::TempDir(common::temp_dir("tansu")),
            port,
            child: None,
        };
        broker.up();
        broker
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process and waits until it accepts connections.
    fn up(&mut self) {
        assert!(self.child.is_none(), "broker already up");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("broker log");
        let url = self.url();
        let child = Command::new(&self.bin)
            .args(["broker", "--storage-engine", "sqlite://tansu.db"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .current_dir(&*self.dir)
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.address()).is_err() {
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
        let out = Command::new(&self.bin)
            .args(["topic", "create", topic, "--partitions"])
            .arg(PARTITIONS.to_string())
            .args(["--broker", &self.url()])
            .current_dir(&*self.dir)
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
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

fn sink_config(broker: &Broker, topic: &str) -> KafkaConfig {
    KafkaConfig {
        enabled: true,
        brokers: vec![broker.address()],
        topic: topic.to_string(),
        ..KafkaConfig::default()
    }
}

/// A record as our writer shapes it: `source.ip` plus a per-source sequence number.
fn record(source: u32, seq: u32) -> Vec<u8> {
    format!(
        r#"{{"@timestamp":"2026-01-01T00:00:00Z","event":{{"id":"{source}-{seq}","summary":"x"}},"source":{{"ip":"192.0.2.{source}","port":40000}},"spip":{{"seq":{seq}}}}}"#
    )
    .into_bytes()
}

/// Delivers `records` in batches like the sink runner does: a failed record is offered again,
/// ahead of newer ones, until delivered (bounded by `give_up`). Returns the delivery calls made.
fn ship(sink: &mut KafkaSink, records: Vec<Vec<u8>>, batch: usize, give_up: Instant) -> usize {
    let mut queue: VecDeque<Vec<u8>> = records.into();
    let mut calls = 0;
    while !queue.is_empty() {
        assert!(Instant::now() < give_up, "records still undelivered");
        let take = queue.len().min(batch);
        let views: Vec<&[u8]> = queue.iter().take(take).map(Vec::as_slice).collect();
        calls += 1;
        let retry: Vec<usize> = match sink.deliver(&views) {
            Delivery::Delivered => Vec::new(),
            Delivery::RetryAll { .. } => (0..take).collect(),
            Delivery::Partial {
                retry, rejected, ..
            } => {
                assert_eq!(rejected, 0, "nothing here is too large");
                retry
            }
        };
        let sent: Vec<Vec<u8>> = queue.drain(..take).collect();
        if !retry.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in retry.into_iter().rev() {
            queue.push_front(sent[i].clone());
        }
    }
    calls
}

/// Reads the whole topic: per source IP (the key), the `seq` values in partition order.
fn consume(broker: &Broker, topic: &str, expect: usize) -> BTreeMap<String, Vec<u32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
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
    let mut by_source: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < expect && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.expect("consume");
        let key = String::from_utf8(msg.key().expect("a key").to_vec()).expect("utf-8 key");
        let value: serde_json::Value =
            serde_json::from_slice(msg.payload().expect("a payload")).expect("a JSON record");
        assert_eq!(value["source"]["ip"], key.as_str(), "key = source.ip");
        let partition = *partition_of.entry(key.clone()).or_insert(msg.partition());
        assert_eq!(partition, msg.partition(), "one source, one partition");
        let seq = value["spip"]["seq"].as_u64().expect("seq") as u32;
        by_source.entry(key).or_default().push(seq);
        seen += 1;
    }
    by_source
}

fn assert_complete_in_order(got: &BTreeMap<String, Vec<u32>>, sources: u32, per_source: u32) {
    assert_eq!(got.len(), sources as usize, "sources: {:?}", got.keys());
    for (ip, seqs) in got {
        let expected: Vec<u32> = (0..per_source).collect();
        assert_eq!(seqs, &expected, "{ip}: every record once, in order");
    }
}

/// Records of `sources` sources interleaved, each source numbered 0, 1, 2, ...
fn interleaved(sources: u32, per_source: u32, from: u32) -> Vec<Vec<u8>> {
    (from..from + per_source)
        .flat_map(|seq| (1..=sources).map(move |s| record(s, seq)))
        .collect()
}

#[test]
fn records_reach_kafka_keyed_and_in_order_per_source() {
    let Some(bin) = tansu("records_reach_kafka_keyed_and_in_order_per_source") else {
        return;
    };
    let broker = Broker::start(bin);
    broker.create_topic("spip-order");
    let mut sink = KafkaSink::new(&sink_config(&broker, "spip-order")).expect("sink");
    let give_up = Instant::now() + Duration::from_secs(60);
    ship(&mut sink, interleaved(5, 200, 0), 64, give_up);
    sink.close();
    let got = consume(&broker, "spip-order", 1000);
    assert_complete_in_order(&got, 5, 200);
}

#[test]
fn broker_restart_and_ten_second_outage_lose_nothing() {
    let Some(bin) = tansu("broker_restart_and_ten_second_outage_lose_nothing") else {
        return;
    };
    let mut broker = Broker::start(bin);
    broker.create_topic("spip-outage");
    let cfg = sink_config(&broker, "spip-outage");
    let done = Arc::new(AtomicBool::new(false));
    // The shipper sends 4 sources x 10 records every 50 ms for about 16 s, whatever the broker does.
    let shipper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut sink = KafkaSink::new(&cfg).expect("sink");
            let give_up = Instant::now() + Duration::from_secs(120);
            let mut seq = 0;
            while seq < 3200 {
                ship(&mut sink, interleaved(4, 10, seq), 100, give_up);
                seq += 10;
                std::thread::sleep(Duration::from_millis(50));
            }
            sink.close();
            done.store(true, Ordering::Relaxed);
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    broker.down();
    broker.up();
    std::thread::sleep(Duration::from_secs(2));
    broker.down();
    std::thread::sleep(Duration::from_secs(10));
    broker.up();
    shipper.join().expect("shipper");
    assert!(done.load(Ordering::Relaxed));
    let got = consume(&broker, "spip-outage", 4 * 3200);
    assert_complete_in_order(&got, 4, 3200);
}
