//! ClientHellos built in code, shared by tests/zero_alloc.rs and benches/fingerprint.rs.

/// A Chrome-like hello with GREASE, 16 extensions and a big key share.
pub fn chrome_like_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(32);
    body.extend_from_slice(&[0x33; 32]);
    let ciphers: [u16; 16] = [
        0x4a4a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];
    body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        body.extend_from_slice(&c.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    let mut ext = |t: u16, d: &[u8]| {
        exts.extend_from_slice(&t.to_be_bytes());
        exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
        exts.extend_from_slice(d);
    };
    ext(0x2a2a, &[]);
    ext(0x0000, b"\x00\x0e\x00\x00\x0bexample.com");
    ext(0x0017, &[]);
    ext(0xff01, &[0]);
    ext(0x000a, &[0, 8, 0x2a, 0x2a, 0x11, 0xec, 0, 0x1d, 0, 0x17]);
    ext(0x000b, &[1, 0]);
    ext(0x0023, &[]);
    ext(0x0010, b"\x00\x0c\x02h2\x08http/1.1");
    ext(0x0005, &[1, 0, 0, 0, 0]);
    ext(
        0x000d,
        &[0, 16, 4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1],
    );
    ext(0x0012, &[]);
    let mut ks = vec![0x04, 0xde, 0x2a, 0x2a, 0, 1, 0, 0x11, 0xec, 0x04, 0xc0];
    ks.extend(std::iter::repeat_n(0x77, 1216));
    ks.extend_from_slice(&[0, 0x1d, 0, 32]);
    ks.extend(std::iter::repeat_n(0x66, 32));
    ext(0x0033, &ks);
    ext(0x002d, &[1, 1]);
    ext(0x002b, &[6, 0x2a, 0x2a, 3, 4, 3, 3]);
    ext(0x001b, &[2, 0, 2]);
    ext(0x44cd, &[0, 3, 2, b'h', b'2']);
    ext(0xfe0d, &[0; 186]);
    ext(0x3a3a, &[0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1, 0];
    msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}
