//! `spip-agent inspect`: the record fields a captured payload yields.

use crate::analysis::analyze_payload;
use crate::json::JsonWriter;

/// Writes one JSON object with the fields `payload` would produce in a record, at record paths.
pub fn inspect(payload: &[u8], out: &mut Vec<u8>) {
    let a = analyze_payload(payload);
    let mut w = JsonWriter::new(out);
    w.begin();
    w.begin_object("event");
    a.write_event_fields(&mut w);
    w.end_object();
    if let Some(p) = a.protocol() {
        w.begin_object("network");
        w.str("protocol", p.as_bytes());
        w.end_object();
    }
    a.write_protocol_objects(&mut w);
    w.begin_object("spip");
    a.write_spip_fields(&mut w);
    w.end_object();
    w.finish();
}
