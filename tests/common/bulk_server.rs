//! A fake Elasticsearch `_bulk` endpoint on top of [`TestServer`]: it stores documents by
//! `_id`, answers each `create` like Elasticsearch does (201 created, 409 version conflict,
//! per-item errors) and injects faults on request.
//!
//! No Elasticsearch or OpenSearch server installs here; the response format follows the
//! `_bulk` API reference: `{"took":..,"errors":bool,"items":[{"create":{"_index","_id",
//! "status", "error":{"type","reason"}}}]}`.
#![allow(dead_code)]

use super::http_server::{Action, Handler, Request};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Faults to inject; each counter is used up as requests arrive.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next N requests get a whole-request 429 with `Retry-After: 1`.
    pub throttle_requests: usize,
    /// The next N requests that create a document are indexed, then the connection is closed
    /// without an answer (the client must retry, and the retry meets 409s).
    pub lose_answers: usize,
    /// Documents whose `event.summary` contains this are refused for good (400).
    pub reject_marker: Option<String>,
    /// Documents whose `event.summary` contains this get a per-item 429 on their first attempt.
    pub busy_marker: Option<String>,
}

/// What the fake cluster holds and saw.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Indexed documents by `_id`.
    pub docs: HashMap<String, Value>,
    /// `create` actions answered 409.
    pub conflicts: usize,
    /// Items answered 429 (per-item).
    pub busy_items: usize,
    /// Items refused for good.
    pub rejected_items: usize,
    /// Requests answered with a whole-request 429.
    pub throttled: usize,
    /// Requests whose answer was lost on purpose.
    pub lost_answers: usize,
    /// Problems with the requests themselves (wrong path, headers, body shape).
    pub protocol_errors: Vec<String>,
    /// `_id`s that got a per-item 429 already.
    busy_seen: Vec<String>,
    pub faults: Faults,
}

/// The shared state plus what every request must carry.
pub struct BulkServer {
    pub cluster: Mutex<Cluster>,
    /// Expected request path (`/<data_stream>/_bulk`).
    pub path: String,
    /// Expected `Authorization` header, if any.
    pub authorization: Option<String>,
}

impl BulkServer {
    pub fn new(data_stream: &str, authorization: Option<&str>) -> Arc<BulkServer> {
        Arc::new(BulkServer {
            cluster: Mutex::new(Cluster::default()),
            path: format!("/{data_stream}/_bulk"),
            authorization: authorization.map(str::to_string),
        })
    }

    /// The handler to install on a [`super::http_server::TestServer`] (also after a restart).
    pub fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |req| me.handle(req))
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        f(&mut self.cluster.lock().unwrap())
    }

    fn handle(&self, req: &Request) -> Action {
        let mut c = self.cluster.lock().unwrap();
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let mut problems = Vec::new();
        if req.method != "POST" || path != self.path {
            problems.push(format!("{} {}", req.method, req.path));
        }
        if !query.contains("filter_path=") {
            problems.push(format!("no filter_path in {query:?}"));
        }
        if req.header("content-type") != Some("application/x-ndjson") {
            problems.push(format!("content-type {:?}", req.header("content-type")));
        }
        if req.header("authorization") != self.authorization.as_deref() {
            c.protocol_errors
                .push(format!("authorization {:?}", req.header("authorization")));
            return json_answer(401, &json!({"error": {"type": "security_exception"}}));
        }
        if !problems.is_empty() {
            c.protocol_errors.extend(problems);
            return json_answer(
                400,
                &json!({"error": {"type": "illegal_argument_exception"}}),
            );
        }
        if c.faults.throttle_requests > 0 {
            c.faults.throttle_requests -= 1;
            c.throttled += 1;
            return Action::Body {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: br#"{"error":{"type":"es_rejected_execution_exception"},"status":429}"#
                    .to_vec(),
            };
        }
        let Ok(text) = std::str::from_utf8(&req.body) else {
            c.protocol_errors.push("body is not UTF-8".into());
            return json_answer(400, &json!({"error": "not utf-8"}));
        };
        if !text.ends_with('\n') {
            c.protocol_errors
                .push("body does not end with a newline".into());
        }
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() % 2 != 0 {
            c.protocol_errors
                .push(format!("odd number of lines: {}", lines.len()));
            return json_answer(400, &json!({"error": "odd lines"}));
        }
        let mut items = Vec::new();
        let mut errors = false;
        let mut created = false;
        for pair in lines.chunks(2) {
            let action: Value = serde_json::from_str(pair[0]).unwrap_or(Value::Null);
            let Some(id) = action["create"]["_id"].as_str().map(str::to_string) else {
                c.protocol_errors
                    .push(format!("bad action line {}", pair[0]));
                return json_answer(400, &json!({"error": "action"}));
            };
            let Ok(doc) = serde_json::from_str::<Value>(pair[1]) else {
                c.protocol_errors
                    .push(format!("bad source line {}", pair[1]));
                return json_answer(400, &json!({"error": "source"}));
            };
            let summary = doc["event"]["summary"].as_str().unwrap_or("").to_string();
            let has = |m: &Option<String>| m.as_ref().is_some_and(|m| summary.contains(m));
            let (status, error) = if c.docs.contains_key(&id) {
                c.conflicts += 1;
                (
                    409,
                    Some((
                        "version_conflict_engine_exception",
                        "document already exists",
                    )),
                )
            } else if has(&c.faults.reject_marker) {
                c.rejected_items += 1;
                (
                    400,
                    Some(("document_parsing_exception", "failed to parse field [x]")),
                )
            } else if has(&c.faults.busy_marker) && !c.busy_seen.contains(&id) {
                c.busy_seen.push(id.clone());
                c.busy_items += 1;
                (429, Some(("es_rejected_execution_exception", "queue full")))
            } else {
                c.docs.insert(id.clone(), doc);
                created = true;
                (201, None)
            };
            errors |= status >= 300;
            let mut item = json!({
                "_index": ".ds-logs-spip-default-2026.11.30-000001",
                "_id": id,
                "status": status,
            });
            if let Some((kind, reason)) = error {
                item["error"] = json!({"type": kind, "reason": reason});
            } else {
                item["result"] = json!("created");
            }
            items.push(json!({ "create": item }));
        }
        if created && c.faults.lose_answers > 0 {
            c.faults.lose_answers -= 1;
            c.lost_answers += 1;
            return Action::Close;
        }
        json_answer(200, &json!({"took": 3, "errors": errors, "items": items}))
    }
}

fn json_answer(status: u16, v: &Value) -> Action {
    Action::Body {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(v).unwrap(),
    }
}
