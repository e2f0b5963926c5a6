//! JA4H HTTP client fingerprint. SPDX-License-Identifier: LicenseRef-FoxIO-1.1
//!
//! JA4H is part of JA4+ and licensed under the FoxIO License 1.1 (non-commercial use only);
//! this module is compiled only with the `ja4plus` cargo feature. See `LICENSES/FoxIO-1.1.txt`.
//!
//! `a_b_c_d` (see `shared/FINGERPRINTS.md` §4):
//! - `a` = method (2 chars, lowercase) + version (`10`, `11`, `20`, `30`) + `c|n` (Cookie) +
//!   `r|n` (Referer) + number of header fields without Cookie/Referer (2 digits, max 99) +
//!   Accept-Language code (first language, `-` removed, lowercase, 4 chars, `0`-padded);
//! - `b` = sha256_12 of the header names as sent, wire order, without Cookie and Referer;
//! - `c` = sha256_12 of the cookie names, sorted; `d` = of the `name=value` crumbs sorted by name.
//!
//! Allocation-free: cookies are sorted on the stack (at most [`MAX_COOKIES`]; more are ignored).
//!
//! HTTP/1 heads ([`ja4h`]) and HTTP/2 requests ([`ja4h_of`] over decoded header fields, without
//! the pseudo-headers) share one implementation, generic over the header iterator.

use super::util::{Sink, ascii_str, hex_into, sha256_12_or_zeros};
use crate::proto::http::{self, RequestHead};
use sha2::{Digest, Sha256};

/// Cookie crumbs considered (a cookie bomb beyond this is cut).
pub const MAX_COOKIES: usize = 1024;

/// A JA4H fingerprint (51 ASCII bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ja4h {
    buf: [u8; 51],
}

impl Ja4h {
    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.buf)
    }

    /// The fingerprint as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl std::fmt::Debug for Ja4h {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ja4h({})", self.as_str())
    }
}

/// Header fields as `(name, value)` in wire order.
pub trait Fields<'a>: Iterator<Item = (&'a [u8], &'a [u8])> + Clone {}
impl<'a, T: Iterator<Item = (&'a [u8], &'a [u8])> + Clone> Fields<'a> for T {}

/// What JA4H reads of a request: the method, the version's two digits (`11`, `20`) and the
/// header fields in wire order (names as sent; for HTTP/2 without the pseudo-headers).
#[derive(Clone)]
pub struct Request<'a, H> {
    pub method: &'a [u8],
    pub version: [u8; 2],
    pub headers: H,
}

impl<'a> Request<'a, http::Headers<'a>> {
    /// An HTTP/1 head ("HTTP/x.y" -> "xy").
    pub fn http1(head: &RequestHead<'a>) -> Self {
        let v = head.version;
        let digit = |i: usize| v.get(i).copied().filter(u8::is_ascii_digit).unwrap_or(b'0');
        Request {
            method: head.method,
            version: [digit(5), digit(7)],
            headers: head.headers(),
        }
    }
}

fn is_cookie(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"cookie")
}

fn is_referer(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"referer")
}

/// Header names counted and hashed (wire order).
fn hashed_names<'a, H: Fields<'a>>(req: &Request<'a, H>) -> impl Iterator<Item = &'a [u8]> + Clone {
    req.headers
        .clone()
        .map(|(n, _)| n)
        .filter(|n| !is_cookie(n) && !is_referer(n))
}

/// What one walk over the headers collects for the `a` part.
struct Scan<'a> {
    cookie: bool,
    referer: bool,
    /// Header fields other than Cookie and Referer.
    count: usize,
    lang: Option<&'a [u8]>,
}

/// Walks the headers once, passing each hashed name (not Cookie/Referer) to `on_name`.
fn scan<'a, H: Fields<'a>>(req: &Request<'a, H>, mut on_name: impl FnMut(&'a [u8])) -> Scan<'a> {
    let mut s = Scan {
        cookie: false,
        referer: false,
        count: 0,
        lang: None,
    };
    for (name, value) in req.headers.clone() {
        if is_cookie(name) {
            s.cookie = true;
        } else if is_referer(name) {
            s.referer = true;
        } else {
            if s.lang.is_none() && name.eq_ignore_ascii_case(b"accept-language") {
                s.lang = Some(value);
            }
            s.count += 1;
            on_name(name);
        }
    }
    s
}

/// The 12-character `a` part.
pub fn ja4h_a(head: &RequestHead<'_>) -> [u8; 12] {
    let req = Request::http1(head);
    a_part(&req, &scan(&req, |_| {}))
}

fn a_part<H>(req: &Request<'_, H>, s: &Scan<'_>) -> [u8; 12] {
    let mut a = [b'0'; 12];
    let mut m = req.method.iter().map(|b| sanitize(b.to_ascii_lowercase()));
    a[0] = m.next().unwrap_or(b'0');
    a[1] = m.next().unwrap_or(b'0');
    a[2..4].copy_from_slice(&req.version);
    a[4] = if s.cookie { b'c' } else { b'n' };
    a[5] = if s.referer { b'r' } else { b'n' };
    let n = s.count.min(99) as u8;
    a[6] = b'0' + n / 10;
    a[7] = b'0' + n % 10;
    if let Some(lang) = s.lang {
        // Primary language: up to the first ',' or ';', without '-', lowercase.
        let first = lang
            .split(|&b| b == b',' || b == b';')
            .next()
            .unwrap_or(&[]);
        let chars = first
            .iter()
            .filter(|&&b| b != b'-' && b != b' ')
            .map(|b| sanitize(b.to_ascii_lowercase()));
        for (slot, c) in a[8..12].iter_mut().zip(chars) {
            *slot = c;
        }
    }
    a
}

/// Keeps printable ASCII (except `_`, the part separator); anything else becomes `0`.
fn sanitize(b: u8) -> u8 {
    if b.is_ascii_graphic() && b != b'_' {
        b
    } else {
        b'0'
    }
}

fn put_names<'a>(sink: &mut impl Sink, names: impl Iterator<Item = &'a [u8]>) {
    for (i, n) in names.enumerate() {
        if i > 0 {
            sink.put(b",");
        }
        sink.put(n);
    }
}

/// One cookie crumb: its name and the whole trimmed crumb (`name=value`).
type Crumb<'a> = (&'a [u8], &'a [u8]);

fn crumbs<'a, H: Fields<'a>>(req: &Request<'a, H>) -> impl Iterator<Item = Crumb<'a>> + Clone {
    req.headers
        .clone()
        .filter(|(n, _)| is_cookie(n))
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .map(trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            let name = c.split(|&b| b == b'=').next().unwrap_or(c);
            (name, c)
        })
        .take(MAX_COOKIES)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Calls `f` with the cookie crumbs sorted by name (stable: ties keep wire order).
fn with_sorted_crumbs<'a, H: Fields<'a>, R>(
    req: &Request<'a, H>,
    f: impl FnOnce(&[Crumb<'_>]) -> R,
) -> R {
    let it = crumbs(req);
    let mut small: [(Crumb<'_>, u16); 32] = [((&[], &[]), 0); 32];
    let mut n = 0usize;
    for c in it.clone() {
        match small.get_mut(n) {
            Some(slot) => *slot = (c, n as u16),
            None => return with_sorted_crumbs_large(it, f),
        }
        n += 1;
    }
    sort_and_call(small.get_mut(..n).unwrap_or(&mut []), f)
}

#[inline(never)]
fn with_sorted_crumbs_large<'a, R>(
    it: impl Iterator<Item = Crumb<'a>>,
    f: impl FnOnce(&[Crumb<'_>]) -> R,
) -> R {
    let mut big: [(Crumb<'_>, u16); MAX_COOKIES] = [((&[], &[]), 0); MAX_COOKIES];
    let mut n = 0usize;
    for (slot, c) in big.iter_mut().zip(it) {
        *slot = (c, n as u16);
        n += 1;
    }
    sort_and_call(big.get_mut(..n).unwrap_or(&mut []), f)
}

fn sort_and_call<R>(v: &mut [(Crumb<'_>, u16)], f: impl FnOnce(&[Crumb<'_>]) -> R) -> R {
    v.sort_unstable_by(|(a, ia), (b, ib)| a.0.cmp(b.0).then(ia.cmp(ib)));
    // Drop the index in place: the first half of each tuple is what `f` needs.
    let mut out: [Crumb<'_>; 32] = [(&[], &[]); 32];
    if v.len() <= out.len() {
        for (o, (c, _)) in out.iter_mut().zip(v.iter()) {
            *o = *c;
        }
        f(out.get(..v.len()).unwrap_or(&[]))
    } else {
        sort_and_call_large(v, f)
    }
}

#[inline(never)]
fn sort_and_call_large<R>(v: &[(Crumb<'_>, u16)], f: impl FnOnce(&[Crumb<'_>]) -> R) -> R {
    let mut out: [Crumb<'_>; MAX_COOKIES] = [(&[], &[]); MAX_COOKIES];
    for (o, (c, _)) in out.iter_mut().zip(v.iter()) {
        *o = *c;
    }
    f(out.get(..v.len()).unwrap_or(&[]))
}

/// JA4H of an HTTP/1 request head.
pub fn ja4h(head: &RequestHead<'_>) -> Ja4h {
    ja4h_of(&Request::http1(head))
}

/// JA4H of any request (HTTP/2: version `20`, pseudo-headers left out by the caller).
pub fn ja4h_of<'a, H: Fields<'a>>(req: &Request<'a, H>) -> Ja4h {
    let mut buf = [b'_'; 51];
    // One walk gives the `a` facts and feeds the header-name hash.
    let mut hasher = Sha256::new();
    let mut first = true;
    let s = scan(req, |name| {
        if !first {
            hasher.update(b",");
        }
        first = false;
        hasher.update(name);
    });
    buf[..12].copy_from_slice(&a_part(req, &s));
    let mut b = [b'0'; 12];
    if s.count > 0 {
        hex_into(hasher.finalize().get(..6).unwrap_or(&[]), &mut b);
    }
    buf[13..25].copy_from_slice(&b);
    let (c, d) = if s.cookie {
        with_sorted_crumbs(req, |cs| {
            let c = sha256_12_or_zeros(cs.is_empty(), |h| {
                put_names(h, cs.iter().map(|c| c.0));
            });
            let d = sha256_12_or_zeros(cs.is_empty(), |h| {
                put_names(h, cs.iter().map(|c| c.1));
            });
            (c, d)
        })
    } else {
        ([b'0'; 12], [b'0'; 12])
    };
    buf[26..38].copy_from_slice(&c);
    buf[39..51].copy_from_slice(&d);
    Ja4h { buf }
}

/// Streams `JA4H_r` (a + the lists in clear) into `out`. The lists are network bytes: use an
/// escaping sink when writing into JSON.
pub fn write_ja4h_r(head: &RequestHead<'_>, out: &mut impl Sink) {
    let req = Request::http1(head);
    out.put(&a_part(&req, &scan(&req, |_| {})));
    out.put(b"_");
    put_names(out, hashed_names(&req));
    with_sorted_crumbs(&req, |cs| {
        out.put(b"_");
        put_names(out, cs.iter().map(|c| c.0));
        out.put(b"_");
        put_names(out, cs.iter().map(|c| c.1));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{Head, parse_request_head};

    #[test]
    fn any_header_iterator_gives_the_http1_fingerprint() {
        let raw = b"GET /x HTTP/1.1\r\nHost: a\r\nCookie: b=1; a=2\r\nReferer: r\r\n\
            Accept-Language: de-DE\r\n\r\n";
        let Head::Complete(head) = parse_request_head(raw) else {
            panic!("not a head");
        };
        let fields: [(&[u8], &[u8]); 4] = [
            (b"Host", b"a"),
            (b"Cookie", b"b=1; a=2"),
            (b"Referer", b"r"),
            (b"Accept-Language", b"de-DE"),
        ];
        let req = Request {
            method: &b"GET"[..],
            version: *b"11",
            headers: fields.into_iter(),
        };
        assert_eq!(ja4h_of(&req), ja4h(&head));
        assert!(ja4h(&head).as_str().starts_with("ge11cr02dede_"));
        let h2 = Request {
            version: *b"20",
            ..req
        };
        assert!(ja4h_of(&h2).as_str().starts_with("ge20cr02dede_"));
    }
}
