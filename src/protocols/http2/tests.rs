//! In-memory tests of the HTTP/2 responder.

use super::hpack::{Decoder, FieldList};
use super::*;
use crate::protocols::testing::{Transcript, assert_splits_agree, converse};

fn hex(s: &str) -> Vec<u8> {
    crate::inspect::decode_hex(s).expect("test hex")
}

/// `curl --http2-prior-knowledge http://127.0.0.1:8461/SECRET?q=1 -A agent/1.0` (curl
/// 7.88.1, nghttp2 1.52): preface, SETTINGS, WINDOW_UPDATE, HEADERS, in one write.
const CURL_GET: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000120400000000000003\
    0000006400040200000000020000000000000408000000000001ff000100002801050000000182048a63760b\
    db706fff3b401f86418a089d5c0b8170dc79a7037a871cc5a92c05707f53032a2f2a";
/// What curl sends after our first reply: SETTINGS ACK.
const SETTINGS_ACK: &str = "000000040100000000";
/// `curl --http2-prior-knowledge http://127.0.0.1:8462/login -d 'user=admin&pass=SECRET'
/// -A agent/1.0 -H 'Cookie: a=1; b=2' -H 'Accept-Language: en-US,en;q=0.9'`: HEADERS
/// without END_STREAM, then DATA with it.
const CURL_POST: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000012040000000000\
    00030000006400040200000000020000000000000408000000000001ff00010000580104000000018304856283\
    cc6abf86418a089d5c0b8170dc79a7057a871cc5a92c05707f53032a2f2a1f11861c01fb523805518b2d4b70dd\
    f45abefb4005df0f0d0232325f981d75d0620d263d4c795bc78f0b4a7b295adb282d443c859300001600010000\
    0001757365723d61646d696e26706173733d534543524554";
/// `nghttp -n http://127.0.0.1:8466/a http://127.0.0.1:8466/b?x=SECRET` (nghttp2 1.52):
/// SETTINGS, five PRIORITY frames, two requests (the second from the dynamic table).
const NGHTTP_TWO: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a00000c040000000000\
    00030000006400040000ffff00000502000000000300000000c800000502000000000500000000640000050200\
    000000070000000000000005020000000009000000070000000502000000000b00000003000000290125000000\
    0d0000000b0f8204022f6186418a089d5c0b8170dc79a71c53032a2f2a907a8aaa69d29ac4c0576c4b83000017\
    01250000000f0000000b0f82048a623ff3cc1bb05edb837f86c0bf90be";
/// What nghttp sends after our answers: GOAWAY (NO_ERROR).
const NGHTTP_GOAWAY: &str = "0000080700000000000000000000000000";

fn response(stream: u8) -> Vec<u8> {
    let mut r = vec![0, 0, 50, 1, 4, 0, 0, 0, stream, 0x88, 0x0f, 0x12, 29];
    // The test clock, as nginx writes the date.
    r.extend_from_slice(b"Tue, 14 Nov 2023 22:13:20 GMT");
    r.extend_from_slice(&[0x0f, 0x10, 10]);
    r.extend_from_slice(b"text/plain");
    r.extend_from_slice(&[0x0f, 0x0d, 1, b'9']);
    r.extend_from_slice(&[0, 0, 9, 0, 1, 0, 0, 0, stream]);
    r.extend_from_slice(b"192.0.2.7");
    r
}

fn talk(chunks: &[&[u8]]) -> Transcript {
    converse::<Http2>(false, chunks)
}

#[test]
fn detects_the_preface_only() {
    assert_eq!(Http2::detect(PREFACE), Detection::Match);
    assert_eq!(Http2::detect(&hex(CURL_GET)), Detection::Match);
    assert_eq!(Http2::detect(b"PRI * HTTP/2"), Detection::NeedMore);
    assert_eq!(Http2::detect(b"P"), Detection::NeedMore);
    assert_eq!(Http2::detect(b"POST / HTTP/1.1\r\n"), Detection::NoMatch);
    assert_eq!(Http2::detect(b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n"), Detection::NoMatch);
}

#[test]
fn curl_get_is_answered_and_recorded() {
    let (get, ack) = (hex(CURL_GET), hex(SETTINGS_ACK));
    let t = talk(&[&get, &ack]);
    assert_eq!(t.turns.len(), 2);
    let first = &t.turns[0];
    assert_eq!(first.bytes, get);
    let mut want = SERVER_START.to_vec();
    want.extend_from_slice(&hex(SETTINGS_ACK));
    want.extend_from_slice(&response(1));
    assert_eq!(first.reply, want);
    assert!(!first.close && !first.summary);
    assert_eq!(first.protocol, Some("http"));
    let e = &first.ecs;
    assert_eq!(e["http"]["request"]["method"], "GET");
    assert_eq!(e["http"]["version"], "2");
    assert_eq!(e["http"]["request"]["headers"]["user-agent"], "agent/1.0");
    assert_eq!(e["http"]["request"]["headers"]["accept"], "*/*");
    assert!(e["http"]["request"]["headers"].get(":path").is_none());
    assert!(e["http"]["request"].get("body").is_none());
    assert_eq!(e["url"]["original"], "/SECRET?q=1");
    assert_eq!(e["url"]["path"], "/SECRET");
    assert_eq!(e["url"]["query"], "q=1");
    assert_eq!(e["url"]["scheme"], "http");
    assert_eq!(e["url"]["domain"], "127.0.0.1");
    assert_eq!(e["url"]["port"], 8461);
    assert_eq!(e["user_agent"]["original"], "agent/1.0");
    let s = &first.spip["http2"];
    assert_eq!(s["stream_id"], 1);
    assert_eq!(s["frames"], 3);
    assert_eq!(s["akamai_fingerprint"], "3:100;4:33554432;2:0|33488897|0|m,p,s,a");
    // The client's SETTINGS ACK: a turn of its own (at the pause), nothing to answer.
    assert_eq!(t.turns[1].bytes, ack);
    assert!(t.turns[1].reply.is_empty());
    assert_eq!(t.turns[1].ecs, serde_json::json!({}));
    assert!(!t.turns[1].close);
}

#[test]
fn curl_post_body_and_cookies() {
    let post = hex(CURL_POST);
    let t = talk(&[&post]);
    assert_eq!(t.turns.len(), 1);
    let e = &t.turns[0].ecs;
    assert_eq!(e["http"]["request"]["method"], "POST");
    assert_eq!(e["url"]["path"], "/login");
    assert_eq!(
        e["http"]["request"]["body"]["content"],
        "user=admin&pass=SECRET"
    );
    assert_eq!(e["http"]["request"]["body"]["bytes"], 22);
    let h = &e["http"]["request"]["headers"];
    assert_eq!(h["cookie"], "a=1; b=2");
    assert_eq!(h["accept-language"], "en-US,en;q=0.9");
    assert_eq!(h["content-type"], "application/x-www-form-urlencoded");
    assert!(t.turns[0].reply.ends_with(&response(1)));
    #[cfg(feature = "ja4plus")]
    {
        // po 20 c n 06 (user-agent, accept, accept-language, content-length, content-type
        // and cookie left out) enus; the hashes by hand over the lists below.
        use sha2::{Digest, Sha256};
        let h12 = |s: &str| {
            let d = Sha256::digest(s.as_bytes());
            d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>()
        };
        let want = format!(
            "po20cn05enus_{}_{}_{}",
            h12("user-agent,accept,accept-language,content-length,content-type"),
            h12("a,b"),
            h12("a=1,b=2")
        );
        assert_eq!(e["http"]["request"]["hash"]["ja4h"], want.as_str());
    }
}

#[test]
fn nghttp_two_streams_are_two_turns_then_goaway() {
    let (two, bye) = (hex(NGHTTP_TWO), hex(NGHTTP_GOAWAY));
    let t = talk(&[&two, &bye]);
    assert_eq!(t.turns.len(), 3);
    let (a, b) = (&t.turns[0], &t.turns[1]);
    assert_eq!(a.bytes.len() + b.bytes.len(), two.len());
    assert_eq!(a.ecs["url"]["path"], "/a");
    assert_eq!(a.spip["http2"]["stream_id"], 13);
    assert_eq!(
        a.spip["http2"]["akamai_fingerprint"],
        "3:100;4:65535|00|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1|m,p,s,a"
    );
    // The second request's fields come from the dynamic table the first one filled.
    assert_eq!(b.ecs["url"]["original"], "/b?x=SECRET");
    assert_eq!(b.ecs["url"]["query"], "x=SECRET");
    assert_eq!(b.ecs["user_agent"]["original"], "nghttp2/1.52.0");
    assert_eq!(
        b.ecs["http"]["request"]["headers"]["accept-encoding"],
        "gzip, deflate"
    );
    assert_eq!(b.spip["http2"]["stream_id"], 15);
    assert!(b.spip["http2"].get("akamai_fingerprint").is_none());
    assert!(a.reply.starts_with(SERVER_START));
    assert!(a.reply.ends_with(&response(13)));
    assert_eq!(b.reply, response(15));
    // GOAWAY from the client: ours (last stream 15, NO_ERROR), and the connection ends.
    let c = &t.turns[2];
    assert_eq!(c.spip["http2"]["client_goaway"], 0);
    assert_eq!(c.reply, hex("000008070000000000 0000000f 00000000"));
    assert!(c.close);
}

#[test]
fn every_split_agrees() {
    let mut get = hex(CURL_GET);
    get.extend_from_slice(&hex(SETTINGS_ACK));
    assert_splits_agree::<Http2>(false, &get);
    assert_splits_agree::<Http2>(false, &hex(CURL_POST));
    let mut two = hex(NGHTTP_TWO);
    two.extend_from_slice(&hex(NGHTTP_GOAWAY));
    assert_splits_agree::<Http2>(false, &two);
}

#[test]
fn a_turn_cut_mid_frame_goes_on_in_the_next() {
    // The engine ends a turn at a client pause; the frame reader keeps its place.
    let get = hex(CURL_GET);
    for cut in 1..get.len() {
        let (a, b) = get.split_at(cut);
        let mut r = Http2::new(&test_ctx());
        let settings = crate::protocols::Settings::default();
        let ctx = Context {
            settings: &settings,
            ..test_ctx()
        };
        assert!(matches!(r.frame(a, 0), Framing::NeedMore | Framing::AtPause));
        let turn = r.parse(a);
        let mut out = Vec::new();
        r.reply(&turn, &ctx, &mut out);
        assert!(turn.request.is_none());
        assert_eq!(r.frame(b, 0), Framing::Complete(b.len()), "cut at {cut}");
        let turn = r.parse(b);
        let req = turn.request.as_ref().unwrap();
        assert_eq!(req.pseudo(b":path"), Some(&b"/SECRET?q=1"[..]));
    }
}

#[test]
fn a_client_waiting_between_frames_gets_an_answer_at_its_pause() {
    let mut r = Http2::new(&test_ctx());
    let mut start = PREFACE.to_vec();
    assert_eq!(r.frame(&start[..10], 0), Framing::NeedMore);
    start.extend_from_slice(&hex("000000040000000000"));
    assert_eq!(r.frame(&start, 10), Framing::AtPause);
    // Inside a frame, a header block or a body: wait for the rest.
    start.extend_from_slice(&hex("000003010400000001 83"));
    assert_eq!(r.frame(&start, start.len() - 13), Framing::NeedMore);
    start.extend_from_slice(&hex("8486"));
    assert_eq!(r.frame(&start, start.len() - 2), Framing::NeedMore);
    let turn = r.parse(&start);
    let mut out = Vec::new();
    r.reply(&turn, &test_ctx(), &mut out);
    // At the pause: our SETTINGS, the ACK of theirs, and the request as it stands.
    assert!(out.starts_with(SERVER_START));
    assert!(out.ends_with(&response(1)));
    assert!(!turn.request.unwrap().complete);
}

#[test]
fn a_request_on_another_stream_ends_an_unfinished_body() {
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(&hex("000003010400000001 838486")); // POST / on 1, a body follows
    input.extend_from_slice(&hex("000002000000000001 6869")); // "hi", no END_STREAM
    let first = input.len();
    input.extend_from_slice(&hex("000003010500000003 828486")); // GET / on 3, complete
    let t = talk(&[&input]);
    assert_eq!(t.turns.len(), 2);
    assert_eq!(t.turns[0].bytes.len(), first);
    assert_eq!(t.turns[0].ecs["http"]["request"]["body"]["content"], "hi");
    assert_eq!(t.turns[0].spip["http2"]["request_incomplete"], true);
    assert!(t.turns[0].reply.ends_with(&response(1)));
    assert_eq!(t.turns[1].ecs["http"]["request"]["method"], "GET");
    assert_eq!(t.turns[1].spip["http2"]["stream_id"], 3);
    assert!(t.turns[1].spip["http2"].get("request_incomplete").is_none());
    assert_eq!(t.turns[1].reply, response(3));
}

#[test]
fn a_turn_shown_again_is_not_read_twice() {
    // The engine frames a closing connection's unfinished turn again from its start.
    let post = hex(CURL_POST);
    let cut = post.len() - 10;
    let mut r = Http2::new(&test_ctx());
    assert_eq!(r.frame(&post[..cut], 0), Framing::NeedMore);
    assert_eq!(r.frame(&post[..cut], 0), Framing::NeedMore);
    assert_eq!(r.frame(&post, cut), Framing::Complete(post.len()));
    let turn = r.parse(&post);
    assert_eq!(turn.facts.frames, 4);
    let req = turn.request.unwrap();
    assert_eq!(req.body, b"user=admin&pass=SECRET");
}

fn test_ctx() -> Context<'static> {
    static SETTINGS: std::sync::OnceLock<crate::protocols::Settings> =
        std::sync::OnceLock::new();
    Context {
        client: "192.0.2.7:40000".parse().unwrap(),
        server: "198.51.100.2:80".parse().unwrap(),
        settings: SETTINGS.get_or_init(Default::default),
        random: 1,
        now: crate::protocols::testing::now(),
    }
}

#[test]
fn prefixes_and_garbage_never_panic() {
    for input in [hex(CURL_GET), hex(CURL_POST), hex(NGHTTP_TWO)] {
        for end in 0..=input.len() {
            let t = talk(&[&input[..end]]);
            assert!(t.turns.len() <= 2);
        }
        // Every byte flipped, one at a time.
        for i in 0..input.len() {
            let mut bad = input.clone();
            bad[i] ^= 0xa5;
            talk(&[&bad]);
        }
    }
    let mut x = 0x1234_5678_9abc_def0u64;
    for len in [1usize, 9, 30, 200, 5000] {
        let mut noise = PREFACE.to_vec();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        talk(&[&noise]);
        talk(&[&noise[PREFACE.len()..]]);
    }
}

#[test]
fn not_a_preface_is_goaway_and_close() {
    let t = talk(&[b"GET / HTTP/1.1\r\n\r\n"]);
    assert_eq!(t.turns.len(), 1);
    let turn = &t.turns[0];
    assert!(turn.close);
    assert_eq!(turn.spip["http2"]["error"], "bad connection preface");
    assert!(turn.reply.ends_with(&hex("000008070000000000 00000000 00000001")));
}

#[test]
fn frame_errors_are_goaway() {
    let mut input = PREFACE.to_vec();
    // HEADERS on stream 0.
    input.extend_from_slice(&hex("000001010500000000 82"));
    let t = talk(&[&input]);
    assert!(t.turns[0].close);
    assert!(t.turns[0].reply.ends_with(&hex("00000001")));
    // A bad HPACK index: COMPRESSION_ERROR.
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(&hex("000001010500000001 ff"));
    let t = talk(&[&input]);
    assert!(t.turns[0].close);
    assert!(t.turns[0].reply.ends_with(&hex("00000009")));
}

fn hostile(frames: impl Fn(&mut Vec<u8>)) -> Transcript {
    let mut input = PREFACE.to_vec();
    while input.len() < 64 * 1024 {
        frames(&mut input);
    }
    talk(&[&input])
}

#[test]
fn hostile_64k_gets_a_small_reply() {
    let pings = hostile(|v| v.extend_from_slice(&hex("000008060000000000 0102030405060708")));
    let sent = pings.sent();
    assert_eq!(sent.len(), SERVER_START.len() + MAX_ACKS * 17);
    let settings = hostile(|v| v.extend_from_slice(&hex("000006040000000000 000300000064")));
    assert_eq!(settings.sent().len(), SERVER_START.len() + MAX_ACKS * 9);
    // An endless header block: cut at MAX_BLOCK with ENHANCE_YOUR_CALM.
    let mut block = PREFACE.to_vec();
    block.extend_from_slice(&hex("004000010100000001"));
    block.extend_from_slice(&[0x82; 0x4000]);
    while block.len() < 100 * 1024 {
        block.extend_from_slice(&hex("004000090000000001"));
        block.extend_from_slice(&[0x82; 0x4000]);
    }
    let t = talk(&[&block]);
    assert!(t.sent().len() < 100);
    assert!(t.turns[0].close);
    assert_eq!(t.turns[0].spip["http2"]["error"], "header block too large");
    // Many small requests in one read: one turn each, one answer each (like nginx).
    let reqs = hostile(|v| {
        let stream = (v.len() as u32 / 16) * 2 + 1;
        v.extend_from_slice(&[0, 0, 3, 1, 5]);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(&[0x82, 0x84, 0x86]);
    });
    // 77 bytes for 12: an answer per request, its `date` (29 bytes) included, as nginx
    // sends one with each (and a `server` field besides).
    let per_request = reqs.sent().len() as f64 / reqs.turns.len() as f64;
    assert!(per_request < 80.0, "{per_request}");
}

#[test]
fn hpack_bomb_is_bounded() {
    // One 4 KB entry (a 4000-byte name, value "v"), then 16 K one-byte references to it:
    // 64 MB if decoded in full.
    let mut block = vec![0x40, 0x7f];
    let mut n = 4000 - 127;
    while n >= 0x80 {
        block.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    block.push(n as u8);
    block.extend(std::iter::repeat_n(b'n', 4000));
    block.extend_from_slice(&[0x01, b'v']);
    block.extend(std::iter::repeat_n(0xbe, 16 * 1024)); // index 62: the entry
    let mut out = FieldList::default();
    let start = std::time::Instant::now();
    Decoder::new().decode(&block, &mut out).unwrap();
    assert!(out.truncated());
    assert_eq!(out.iter().count(), 16);
    assert!(start.elapsed() < std::time::Duration::from_millis(200));
    // Re-inserting the big entry by its indexed name, 2 bytes a time: too much work.
    let mut again = block[..block.len() - 16 * 1024].to_vec();
    for _ in 0..8 * 1024 {
        again.extend_from_slice(&[0x7e, 0x00]); // name index 62, empty value, indexed
    }
    let err = Decoder::new().decode(&again, &mut FieldList::default());
    assert_eq!(err, Err(hpack::Error::TooMuchWork));
}

fn decode_all(blocks: &[&str]) -> Vec<Vec<(String, String)>> {
    let mut d = Decoder::new();
    blocks
        .iter()
        .map(|b| {
            let mut out = FieldList::default();
            d.decode(&hex(b), &mut out).unwrap();
            out.iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

fn list(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rfc7541_c4_requests_with_huffman() {
    let got = decode_all(&[
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ]);
    let req = |extra: &[(&str, &str)], scheme: &str, path: &str| {
        let mut l = list(&[
            (":method", "GET"),
            (":scheme", scheme),
            (":path", path),
            (":authority", "www.example.com"),
        ]);
        l.extend(list(extra));
        l
    };
    assert_eq!(got[0], req(&[], "http", "/"));
    assert_eq!(got[1], req(&[("cache-control", "no-cache")], "http", "/"));
    assert_eq!(
        got[2],
        req(&[("custom-key", "custom-value")], "https", "/index.html")
    );
}

#[test]
fn rfc7541_c6_responses_evict_from_a_256_byte_table() {
    // python3-hpack's encoding of RFC 7541 C.6 (table size 256: a size update first).
    let got = decode_all(&[
        "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29\
         ad171863c78f0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7\
         b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ]);
    let resp = |status: &str, date: &str| {
        list(&[
            (":status", status),
            ("cache-control", "private"),
            ("date", date),
            ("location", "https://www.example.com"),
        ])
    };
    assert_eq!(got[0], resp("302", "Mon, 21 Oct 2013 20:13:21 GMT"));
    assert_eq!(got[1], resp("307", "Mon, 21 Oct 2013 20:13:21 GMT"));
    let mut third = resp("200", "Mon, 21 Oct 2013 20:13:22 GMT");
    third.extend(list(&[
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ]));
    assert_eq!(got[2], third);
}

#[test]
fn hpack_rejects_bad_input() {
    let mut out = FieldList::default();
    let mut d = Decoder::new();
    // Size update above our limit.
    assert_eq!(
        d.decode(&hex("3fe21f"), &mut out),
        Err(hpack::Error::TableSizeTooLarge)
    );
    // Huffman padding of 8+ bits, and EOS inside a string.
    assert_eq!(
        Decoder::new().decode(&hex("0081ff"), &mut out),
        Err(hpack::Error::BadHuffman)
    );
    assert_eq!(
        Decoder::new().decode(&hex("0084ffffffff"), &mut out),
        Err(hpack::Error::BadHuffman)
    );
    assert_eq!(
        Decoder::new().decode(&hex("ff8080808001"), &mut out),
        Err(hpack::Error::IntegerOverflow)
    );
    assert_eq!(
        Decoder::new().decode(&hex("0003ab"), &mut out),
        Err(hpack::Error::Truncated)
    );
}

#[test]
fn header_names_that_decode_alike_merge() {
    // Literal names "\xff", "\xfe" (both U+FFFD in JSON) and "X-A", "x-a".
    let block = hex("0001ff0161 0001fe0162 0003582d41 0163 0003782d61 0164");
    let mut fields = FieldList::default();
    Decoder::new().decode(&block, &mut fields).unwrap();
    let req = RequestView {
        stream: 1,
        fields,
        body: Vec::new(),
        body_bytes: 0,
        complete: true,
    };
    let turn = Http2Turn {
        request: Some(req),
        facts: TurnFacts::default(),
    };
    let ecs = crate::protocols::testing::fields(|w| turn.write_ecs(w));
    let h = &ecs["http"]["request"]["headers"];
    assert_eq!(h["\u{fffd}"], "a, b");
    assert_eq!(h["x-a"], "c, d");
}
