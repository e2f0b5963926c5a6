#![no_main]
//! UDP datagrams on every responder's port: parse, fields, answer. Never a panic, valid JSON,
//! and never an answer larger than the datagram.
use libfuzzer_sys::fuzz_target;
use spip::json::JsonWriter;
use spip::protocols::TurnFields;
use spip::protocols::udp::{Datagram, DatagramContext, answer};
use std::time::SystemTime;

fuzz_target!(|data: &[u8]| {
    let mut reply = Vec::new();
    for port in [53, 123, 161, 443, 5060, 11211, 4444] {
        let d = Datagram::parse(port, data);
        let ctx = DatagramContext {
            client: "192.0.2.7:40000".parse().unwrap(),
            server: std::net::SocketAddr::new([198, 51, 100, 2].into(), port),
            now: SystemTime::UNIX_EPOCH,
            random: 7,
        };
        answer(&d, data.len(), &ctx, &mut reply);
        assert!(reply.len() <= data.len());
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin();
        d.write_ecs(&mut w);
        w.begin_object("spip");
        d.write_spip(&mut w);
        w.end_object();
        w.finish();
        serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON");
    }
});
