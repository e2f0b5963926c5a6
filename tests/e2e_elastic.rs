//! End-to-end: the real sensor shipping to a fake Elasticsearch `_bulk` endpoint (see
//! `common/bulk_server.rs`; no Elasticsearch installs here), both in a private network
//! namespace, through partial failures, throttling, a lost answer and an outage.

mod common;

use common::bulk_server::{BulkServer, Faults};
use common::http_server::TestServer;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const API_KEY: &str = "dGVzdDprZXk=";

fn elastic_config(url: &str, auth: &str, extra: &str) -> String {
    format!(
        "[elasticsearch]\nenabled = true\nurl = \"{url}\"\n{auth}\nbatch_size = 4\n\
         flush_interval = \"200ms\"\n{extra}"
    )
}

/// One probe per payload, each to its own port (one record each).
fn poke(ns: &Netns, payloads: Vec<String>) {
    ns.within(move || {
        for (i, p) in payloads.iter().enumerate() {
            let dst = SocketAddr::from(([127, 0, 0, 1], 2000 + i as u16));
            probe(dst, p.as_bytes());
        }
    });
}

fn doc_id(record: &Value) -> String {
    format!(
        "{}-{}",
        record["event"]["id"].as_str().unwrap(),
        record["spip"]["turn"]
    )
}

fn start_server(ns: &Netns, port: u16, bulk: &Arc<BulkServer>) -> TestServer {
    let server = ns.within(move || TestServer::start_on(port));
    server.set_handler(bulk.handler());
    server
}

fn every_record_arrives_once_through_faults_and_rejects_are_dead_lettered() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let bulk = BulkServer::new("logs-spip-default", Some(&format!("ApiKey {API_KEY}")));
    bulk.with(|c| {
        c.faults = Faults {
            throttle_requests: 2,
            lose_answers: 1,
            reject_marker: Some("REJECT".into()),
            busy_marker: Some("BUSY".into()),
        }
    });
    let mut server = start_server(&ns, 0, &bulk);
    let port = server.port();
    ns.keep_port(port);
    let cfg = elastic_config(
        &format!("http://127.0.0.1:{port}"),
        &format!("api_key = \"{API_KEY}\""),
        "dead_letter_file = \"dead-letter.jsonl\"\n",
    );
    let mut sensor = Sensor::start(&ns, &cfg);
    let payload = |i: usize| {
        let tag = match i % 5 {
            1 => " REJECT",
            2 | 3 => " BUSY",
            _ => "",
        };
        format!("probe {i}{tag}\n")
    };
    let rejected_total = (0..20).filter(|i| i % 5 == 1).count();

    // Phase 1: 2 throttled requests, one lost answer, per-item 429s and 400s.
    poke(&ns, (0..10).map(payload).collect());
    let phase1 = 10 - (0..10).filter(|i| i % 5 == 1).count();
    assert!(
        eventually(Duration::from_secs(60), || bulk.with(|c| c.docs.len())
            >= phase1),
        "phase 1: {:?}\n{}",
        bulk.with(|c| c.docs.len()),
        sensor.stderr()
    );

    // The 429 burst's `Retry-After: 1` was honoured.
    let at: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    for pair in at[..3].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    }

    // Phase 2: the cluster is down for 3 s while records keep coming.
    server.stop();
    poke(&ns, (10..20).map(payload).collect());
    std::thread::sleep(Duration::from_secs(3));
    let _server = start_server(&ns, port, &bulk);

    let expected = 20 - rejected_total;
    let dead_letter = sensor.dir.join("dead-letter.jsonl");
    let dead_lines = || {
        std::fs::read_to_string(&dead_letter)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("whole JSON lines"))
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(90), || {
            bulk.with(|c| c.docs.len()) >= expected && dead_lines().len() >= rejected_total
        }),
        "docs {} dead {}\n{}",
        bulk.with(|c| c.docs.len()),
        dead_lines().len(),
        sensor.stderr()
    );

    // The file sink writes in its own batches: wait for it too.
    let local = sensor.wait_records(20);
    assert_eq!(local.len(), 20);
    let (refused, kept): (Vec<&Value>, Vec<&Value>) = local.iter().partition(|r| {
        r["event"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("REJECT"))
    });
    bulk.with(|c| {
        assert!(c.protocol_errors.is_empty(), "{:?}", c.protocol_errors);
        assert_eq!(c.throttled, 2);
        assert_eq!(c.lost_answers, 1);
        assert!(
            c.conflicts >= 1,
            "the lost answer's batch came back as 409s"
        );
        assert!(c.busy_items >= 1);
        // Exactly the accepted records, each once, byte-identical to the local log.
        assert_eq!(c.docs.len(), kept.len());
        let by_id: HashMap<String, &Value> = kept.iter().map(|r| (doc_id(r), *r)).collect();
        for (id, doc) in &c.docs {
            assert_eq!(by_id.get(id), Some(&doc), "{id}");
        }
    });
    let dead = dead_lines();
    assert_eq!(dead.len(), refused.len());
    for line in &dead {
        assert_eq!(line["status"], 400);
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains("document_parsing_exception"), "{reason}");
        assert!(refused.contains(&&line["record"]), "{line}");
    }

    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("\"elasticsearch_dropped\":{rejected_total}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{rejected_total} refused records written")),
        "{stderr}"
    );
    assert!(stderr.contains("already indexed (409)"), "{stderr}");
    // The sink's own counters are on the stats line too.
    assert!(
        stderr.contains(&format!("\"elasticsearch_dead_lettered\":{rejected_total}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"elasticsearch_dead_letter_lost\":0"),
        "{stderr}"
    );
    // The refusal is said once, not per batch.
    assert_eq!(
        stderr
            .matches("the cluster refused a record (400 document_parsing_exception")
            .count(),
        1,
        "{stderr}"
    );
}

fn https_with_basic_auth_and_verification_on_by_default() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let basic = "Basic c3BpcDpzM2NyZXQ="; // spip:s3cret
    let bulk = BulkServer::new("logs-spip-dmz", Some(basic));
    let server = ns.within(TestServer::start_tls);
    server.set_handler(bulk.handler());
    ns.keep_port(server.port());
    let url = format!("https://127.0.0.1:{}", server.port());
    let auth = "username = \"spip\"\npassword = \"s3cret\"";

    // Verification on (the default): a self-signed cluster gets nothing, and stderr says why.
    let mut sensor = Sensor::start(
        &ns,
        &elastic_config(&url, auth, "data_stream = \"logs-spip-dmz\"\n"),
    );
    poke(&ns, vec!["one\n".into()]);
    assert!(
        eventually(RECORD_WAIT, || sensor.stderr().contains("ca_file")),
        "{}",
        sensor.stderr()
    );
    assert_eq!(bulk.with(|c| c.docs.len()), 0);
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);

    // insecure_skip_verify: delivered, with Basic auth, into the configured data stream.
    let sensor = Sensor::start(
        &ns,
        &elastic_config(
            &url,
            auth,
            "data_stream = \"logs-spip-dmz\"\ninsecure_skip_verify = true\n",
        ),
    );
    poke(&ns, vec!["two\n".into(), "three\n".into()]);
    assert!(
        eventually(RECORD_WAIT, || bulk.with(|c| c.docs.len()) == 2),
        "{}",
        sensor.stderr()
    );
    bulk.with(|c| assert!(c.protocol_errors.is_empty(), "{:?}", c.protocol_errors));
}

fn template_command_prints_the_shipped_templates() {
    for (args, file) in [
        (
            &["elasticsearch-template"][..],
            "packaging/elasticsearch/index-template.json",
        ),
        (
            &["elasticsearch-template", "--opensearch"][..],
            "packaging/opensearch/index-template.json",
        ),
    ] {
        let out = Command::new(bin()).args(args).output().unwrap();
        assert!(out.status.success());
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let shipped: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(printed, shipped);
    }
}

common::test_main! {
    needs_root: [
        every_record_arrives_once_through_faults_and_rejects_are_dead_lettered,
        https_with_basic_auth_and_verification_on_by_default,
    ],
    no_root: [template_command_prints_the_shipped_templates],
}
