//! Every vector in `tests/data/vectors/` (see its SOURCES); a missing file fails the test.

use spip::fingerprint::{self, util::Sink};
use spip::proto::tls;
use spip::proto::tls::wrap_records;

fn vector_text(file: &str) -> String {
    let path = format!("{}/tests/data/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("vector file {path}: {e}"))
}

fn vectors(file: &str) -> serde_json::Value {
    serde_json::from_str(&vector_text(file)).unwrap_or_else(|e| panic!("vector file {file}: {e}"))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn string_of(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut v = Vec::new();
    f(&mut v);
    String::from_utf8(v).unwrap()
}

#[test]
fn client_hellos_whole_and_split() {
    let v = vectors("ja4_ja3_clienthello_vectors.json");
    let rows = v["vectors"].as_array().unwrap();
    let mut checked = 0;
    for row in rows {
        let msg = unhex(row["client_hello_handshake_hex"].as_str().unwrap());
        let want_ja4 = row["expected_ja4_spec"].as_str().unwrap();
        let want_r = row["ja4_r"].as_str().unwrap();
        let want_s = row["ja3_string"].as_str().unwrap();
        let want_ja3 = row["ja3"].as_str().unwrap();
        let n = msg.len();
        let splits: [Vec<usize>; 5] = [
            vec![],
            vec![n / 2],
            vec![n / 3, n / 3],
            vec![1, 3],
            vec![5, n - 10],
        ];
        for cuts in &splits {
            let stream = wrap_records(&msg, cuts);
            let c = fingerprint::tls_client(&stream)
                .unwrap_or_else(|| panic!("no hello: {} {cuts:?}", row["source"]));
            assert_eq!(c.ja4.as_str(), want_ja4, "{} {cuts:?}", row["source"]);
            assert_eq!(c.ja3.as_str(), want_ja3, "{}", row["source"]);
            assert_eq!(string_of(|o| c.write_ja4_r(o)), want_r, "{}", row["source"]);
            assert_eq!(
                string_of(|o| c.write_ja3_string(o)),
                want_s,
                "{}",
                row["source"]
            );
            assert_eq!(c.records_len, stream.len());
            // Trailing application bytes do not change anything.
            let mut more = stream.clone();
            more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
            assert_eq!(fingerprint::tls_client(&more).unwrap().ja4, c.ja4);
        }
        checked += 1;
    }
    eprintln!("checked {checked} ClientHellos x 5 record layouts");
    assert_eq!(checked, rows.len());
}

#[test]
fn client_hello_truncation_never_lies() {
    let v = vectors("ja4_ja3_clienthello_vectors.json");
    for row in v["vectors"].as_array().unwrap().iter().take(12) {
        let msg = unhex(row["client_hello_handshake_hex"].as_str().unwrap());
        let stream = wrap_records(&msg, &[msg.len() / 3, 7]);
        for cut in 0..stream.len() {
            assert!(fingerprint::tls_client(&stream[..cut]).is_none());
            assert_eq!(
                tls::client_hello_status(&stream[..cut]),
                tls::HelloStatus::Incomplete
            );
        }
    }
}

fn kexinit_stream(banner: &str, lists: &[&str; 10]) -> Vec<u8> {
    let mut p = vec![20u8];
    p.extend_from_slice(&[0x11; 16]);
    for l in lists {
        p.extend_from_slice(&(l.len() as u32).to_be_bytes());
        p.extend_from_slice(l.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&[0; 4]);
    let mut pad = 8 - (p.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut out = format!("{banner}\r\n").into_bytes();
    out.extend_from_slice(&((1 + p.len() + pad) as u32).to_be_bytes());
    out.push(pad as u8);
    out.extend_from_slice(&p);
    out.extend(std::iter::repeat_n(0u8, pad));
    out
}

fn check_hassh(banner: &str, lists: &[&str; 10], algos: &str, hassh: &str) {
    let stream = kexinit_stream(banner, lists);
    let c = fingerprint::ssh_client(&stream).expect("ssh client");
    assert_eq!(c.hassh.unwrap().as_str(), hassh, "{banner}");
    assert_eq!(string_of(|o| c.write_hassh_algorithms(o)), algos);
    assert_eq!(c.banner.unwrap().line, banner.as_bytes());
    for cut in 0..stream.len() {
        let part = fingerprint::ssh_client(&stream[..cut]);
        assert!(part.is_none_or(|p| p.hassh.is_none()));
    }
}

#[test]
fn hassh_csv_rows() {
    let text = vector_text("hassh_fingerprints.csv");
    let mut n = 0;
    for line in text.lines().skip(1) {
        // The last column is quoted and holds commas; the others do not.
        let (head, algos) = line.split_once(",\"").unwrap();
        let algos = algos.trim_end_matches('"');
        let cols: Vec<&str> = head.split(',').collect();
        let (banner, hassh) = (cols[4], cols[5]);
        let parts: Vec<&str> = algos.split(';').collect();
        let lists = [
            parts[0],
            "ssh-ed25519",
            parts[1],
            parts[1],
            parts[2],
            parts[2],
            parts[3],
            parts[3],
            "",
            "",
        ];
        check_hassh(banner, &lists, algos, hassh);
        n += 1;
    }
    eprintln!("checked {n} hassh rows");
    assert!(n >= 33, "only {n} rows");
}

#[test]
fn hassh_json_vectors() {
    let v = vectors("hassh_vectors.json");
    let mut n = 0;
    for row in v["vectors"].as_array().unwrap() {
        let banner = row["client_banner"].as_str().unwrap();
        let Some(lists) = row["client_kexinit_namelists"].as_array() else {
            // SSH-1 client: banner only, no HASSH.
            let stream = format!("{banner}\n");
            let c = fingerprint::ssh_client(stream.as_bytes()).unwrap();
            assert!(c.hassh.is_none());
            assert_eq!(c.banner.unwrap().line, banner.as_bytes());
            continue;
        };
        let lists: Vec<&str> = lists.iter().map(|l| l.as_str().unwrap()).collect();
        let lists: [&str; 10] = lists.try_into().unwrap();
        let algos = row["hasshAlgorithms"].as_str().unwrap();
        check_hassh(banner, &lists, algos, row["hassh"].as_str().unwrap());
        // Server side, from the server KEXINIT.
        let slists: Vec<&str> = row["server_kexinit_namelists"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let slists: [&str; 10] = slists.try_into().unwrap();
        let stream = kexinit_stream(row["server_banner"].as_str().unwrap(), &slists);
        let k = spip::proto::ssh::parse_client(&stream)
            .unwrap()
            .kexinit
            .unwrap();
        assert_eq!(
            fingerprint::hassh::hassh_server(&k).as_str(),
            row["hasshServer"].as_str().unwrap()
        );
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn sink_impls_compile() {
    let mut v: Vec<u8> = Vec::new();
    v.put(b"x");
    assert_eq!(v, b"x");
}

#[cfg(feature = "ja4plus")]
#[test]
fn ja4h_vectors() {
    use spip::proto::http::{Head, parse_request_head};
    let v = vectors("ja4h_vectors.json");
    let mut n = 0;
    for row in v["vectors"].as_array().unwrap() {
        for eol in ["\r\n", "\n"] {
            let mut req = format!(
                "{} / {}{eol}",
                row["method"].as_str().unwrap(),
                row["version"].as_str().unwrap()
            );
            for h in row["headers_in_order"].as_array().unwrap() {
                req.push_str(&format!(
                    "{}: {}{eol}",
                    h[0].as_str().unwrap(),
                    h[1].as_str().unwrap()
                ));
            }
            req.push_str(eol);
            let Head::Complete(head) = parse_request_head(req.as_bytes()) else {
                panic!("not a head: {req}");
            };
            let got = fingerprint::ja4h::ja4h(&head);
            assert_eq!(
                got.as_str(),
                row["expected_ja4h"].as_str().unwrap(),
                "{req}"
            );
            assert_eq!(
                string_of(|o| fingerprint::ja4h::write_ja4h_r(&head, o)),
                row["ja4h_r"].as_str().unwrap()
            );
        }
        n += 1;
    }
    assert!(n >= 10);
}

#[cfg(feature = "ja4plus")]
#[test]
fn ja4h_literals() {
    use spip::proto::http::{Head, parse_request_head};
    let Head::Complete(head) = parse_request_head(b"GET / HTTP/1.0\nUser-Agent:\n\n") else {
        panic!()
    };
    assert_eq!(
        fingerprint::ja4h::ja4h(&head).as_str(),
        "ge10nn010000_b8bcd45ac095_000000000000_000000000000"
    );
    let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nAccept: */*\r\nX-Requested-With: x\r\n\r\n";
    let Head::Complete(head) = parse_request_head(req) else {
        panic!()
    };
    assert!(
        fingerprint::ja4h::ja4h(&head)
            .as_str()
            .starts_with("po11nn040000_")
    );
}

/// Deterministic xorshift for the mutation property tests (no extra dependency).
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[test]
fn every_truncation_and_random_mutations_are_safe() {
    let v = vectors("ja4_ja3_clienthello_vectors.json");
    let mut seed = 0x9e3779b97f4a7c15u64;
    for row in v["vectors"].as_array().unwrap() {
        let msg = unhex(row["client_hello_handshake_hex"].as_str().unwrap());
        let want = row["expected_ja4_spec"].as_str().unwrap();
        let stream = wrap_records(&msg, &[msg.len() / 2]);
        // Every prefix: no fingerprint, or (only for the whole stream) the right one.
        for cut in 0..=stream.len() {
            match fingerprint::tls_client(&stream[..cut]) {
                None => assert!(cut < stream.len()),
                Some(c) => assert_eq!(c.ja4.as_str(), want),
            }
        }
        // Random byte flips never panic; the raw strings stay writable.
        for _ in 0..200 {
            let mut m = stream.clone();
            for _ in 0..1 + xorshift(&mut seed) % 4 {
                let i = (xorshift(&mut seed) as usize) % m.len();
                m[i] = xorshift(&mut seed) as u8;
            }
            let cut = (xorshift(&mut seed) as usize) % (m.len() + 1);
            if let Some(c) = fingerprint::tls_client(&m[..cut]) {
                let mut out = Vec::new();
                c.write_ja4_r(&mut out);
                c.write_ja3_string(&mut out);
            }
            let mut out = Vec::new();
            spip::inspect::inspect(&m[..cut], &mut out);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }
}

#[cfg(feature = "ja4plus")]
#[test]
fn http_truncation_is_safe() {
    use spip::proto::http::{Head, parse_request_head};
    let v = vectors("ja4h_vectors.json");
    for row in v["vectors"].as_array().unwrap() {
        let mut req = format!(
            "{} / {}\r\n",
            row["method"].as_str().unwrap(),
            row["version"].as_str().unwrap()
        );
        for h in row["headers_in_order"].as_array().unwrap() {
            req.push_str(&format!(
                "{}: {}\r\n",
                h[0].as_str().unwrap(),
                h[1].as_str().unwrap()
            ));
        }
        req.push_str("\r\n");
        let want = row["expected_ja4h"].as_str().unwrap();
        for cut in 0..=req.len() {
            if let Head::Complete(head) = parse_request_head(&req.as_bytes()[..cut]) {
                // Only a cut at a blank line completes a head; the whole request is the only one.
                assert_eq!(cut, req.len());
                assert_eq!(fingerprint::ja4h::ja4h(&head).as_str(), want);
            }
        }
    }
}

/// JA4T from each SYN's window and raw option bytes; the expected value follows the `00` rules
/// (FINGERPRINTS.md §5). ECN-setup SYNs (flags 0x0c2) are fingerprinted like any SYN.
#[cfg(feature = "ja4plus")]
#[test]
fn ja4t_vectors() {
    use spip::fingerprint::ja4t::ja4t;
    use spip::proto::syn::TcpOptions;
    let v = vectors("ja4t_vectors.json");
    let rows = v["vectors"].as_array().unwrap();
    let mut ecn = 0;
    for row in rows {
        let window = u16::try_from(row["syn_window"].as_u64().unwrap()).unwrap();
        let options = TcpOptions::parse(&unhex(row["syn_tcp_options_hex"].as_str().unwrap()));
        let flags = row["syn_tcp_flags_hex"].as_str().unwrap();
        let flags = u16::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 0x12, 0x02, "{}: not a client SYN", row["flow"]);
        ecn += usize::from(flags & 0xc0 == 0xc0);
        let want = row["expected_ja4t_recommended"].as_str().unwrap();
        assert_eq!(ja4t(window, &options).as_str(), want, "{}", row["flow"]);
    }
    assert!(rows.len() >= 20, "{} vectors", rows.len());
    assert!(ecn >= 1, "the ECN-setup SYN vector is missing");
}
