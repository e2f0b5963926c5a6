//! CredSSP ([MS-CSSP]): the TSRequests of RDP's Network Level Authentication, exchanged inside
//! TLS once the X.224 negotiation selected PROTOCOL_HYBRID. The client's first TSRequest
//! carries its NTLM NEGOTIATE (bare, or wrapped in SPNEGO) as `negoTokens[0].negoToken`, and
//! the server answers with its CHALLENGE the same way; the client's second carries the
//! AUTHENTICATE (with `pubKeyAuth`, and from version 5 a `clientNonce`), which a Windows server
//! that rejects the credentials answers with `errorCode` (version 3 and later) and a hang-up.
//!
//! ```text
//! TSRequest ::= SEQUENCE {
//!     version     [0] INTEGER,
//!     negoTokens  [1] SEQUENCE OF SEQUENCE { negoToken [0] OCTET STRING } OPTIONAL,
//!     authInfo    [2] OCTET STRING OPTIONAL,
//!     pubKeyAuth  [3] OCTET STRING OPTIONAL,
//!     errorCode   [4] INTEGER OPTIONAL,
//!     clientNonce [5] OCTET STRING OPTIONAL }
//! ```

use super::der::{self, Element};

/// The newest CredSSP version (Windows 10 1803 and later, Server 2019): what we answer with,
/// unless the client is older.
const SERVER_VERSION: i64 = 6;
/// The first version with `errorCode`.
const ERROR_CODE_VERSION: u8 = 3;

/// A TSRequest, as far as spip reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsRequest<'a> {
    /// `version` (`None` when missing or not an INTEGER that fits 64 bits).
    pub version: Option<i64>,
    /// The first `negoToken`: an NTLM message, bare or in SPNEGO.
    pub nego_token: Option<&'a [u8]>,
}

/// Why bytes are not a TSRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not one whole DER element.
    Der(der::Error),
    /// A DER element other than a SEQUENCE.
    NotSequence,
}

/// Parses the TSRequest at the start of `b`; unknown or malformed members are skipped.
pub fn parse(b: &[u8]) -> Result<TsRequest<'_>, Error> {
    let (request, _) = Element::read(b).map_err(Error::Der)?;
    if request.tag != der::SEQUENCE {
        return Err(Error::NotSequence);
    }
    let mut parsed = TsRequest {
        version: None,
        nego_token: None,
    };
    for member in request.children() {
        match member.tag {
            t if t == der::context(0) => {
                parsed.version =
                    Element::read_tagged(member.contents, der::INTEGER).and_then(|i| i.integer());
            }
            t if t == der::context(1) => parsed.nego_token = first_nego_token(member.contents),
            _ => {}
        }
    }
    Ok(parsed)
}

/// `negoToken` of the first NegoData in a `negoTokens` member's contents.
fn first_nego_token(nego_tokens: &[u8]) -> Option<&[u8]> {
    let list = Element::read_tagged(nego_tokens, der::SEQUENCE)?;
    let first = list.children().next().filter(|e| e.tag == der::SEQUENCE)?;
    let token = first.children().find(|e| e.tag == der::context(0))?;
    Some(Element::read_tagged(token.contents, der::OCTET_STRING)?.contents)
}

/// The version we answer a client with: ours, or the client's when it is older (2 when it
/// says nothing sensible).
pub fn answer_version(client: Option<i64>) -> u8 {
    // Clamped to 2..=6, so the cast keeps the value.
    client.unwrap_or(2).clamp(2, SERVER_VERSION) as u8
}

/// Whether a TSRequest of version `version` can carry `errorCode`.
pub fn has_error_code(version: u8) -> bool {
    version >= ERROR_CODE_VERSION
}

/// `[0] INTEGER version`, for a version below 0x80.
fn version_member(version: u8) -> [u8; 5] {
    [der::context(0), 3, der::INTEGER, 1, version & 0x7f]
}

/// The contents of `negoTokens` around a token of `token_len` bytes, and their layers' sizes:
/// `[1] { SEQUENCE OF { SEQUENCE { [0] { OCTET STRING } } } }`.
fn nego_tokens_sizes(token_len: usize) -> [usize; 4] {
    let octets = der::size(token_len);
    let tagged = der::size(octets);
    let nego_data = der::size(tagged);
    let list = der::size(nego_data);
    [list, nego_data, tagged, octets]
}

/// The size of a TSRequest carrying one `negoToken` of `token_len` bytes.
pub fn nego_token_request_len(token_len: usize) -> usize {
    let [list, ..] = nego_tokens_sizes(token_len);
    der::size(5 + der::size(list))
}

/// Writes a TSRequest `{version, negoTokens}` up to its one `negoToken`; the caller writes
/// the token (`token_len` bytes) next.
pub fn write_nego_token_head(out: &mut Vec<u8>, version: u8, token_len: usize) {
    let [list, nego_data, tagged, octets] = nego_tokens_sizes(token_len);
    der::write_header(out, der::SEQUENCE, 5 + der::size(list));
    out.extend_from_slice(&version_member(version));
    der::write_header(out, der::context(1), list);
    der::write_header(out, der::SEQUENCE, nego_data);
    der::write_header(out, der::SEQUENCE, tagged);
    der::write_header(out, der::context(0), octets);
    der::write_header(out, der::OCTET_STRING, token_len);
}

/// Writes a TSRequest `{version, errorCode}` with an NTSTATUS (a 32-bit two's complement
/// INTEGER, as Windows encodes it).
pub fn write_error(out: &mut Vec<u8>, version: u8, status: u32) {
    der::write_header(out, der::SEQUENCE, 5 + 8);
    out.extend_from_slice(&version_member(version));
    out.extend_from_slice(&[der::context(4), 6, der::INTEGER, 4]);
    out.extend_from_slice(&status.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nmap's rdp-ntlm-info: TSRequest version 0x60 with a bare NTLM NEGOTIATE.
    const NMAP_NEGOTIATE: &[u8] =
        b"\x30\x37\xa0\x03\x02\x01\x60\xa1\x30\x30\x2e\x30\x2c\xa0\x2a\x04\x28\
NTLMSSP\0\x01\0\0\0\xb7\x82\x08\xe2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x0a\0\x63\x45\0\0\0\x0f";

    #[test]
    fn nmap_request_parses() {
        let r = parse(NMAP_NEGOTIATE).unwrap();
        assert_eq!(r.version, Some(0x60));
        assert_eq!(r.nego_token, Some(&NMAP_NEGOTIATE[17..]));
        assert_eq!(answer_version(r.version), 6);
    }

    #[test]
    fn what_we_write_parses_back() {
        for token_len in [0, 1, 40, 200, 300, 70_000] {
            let mut out = Vec::new();
            write_nego_token_head(&mut out, 6, token_len);
            out.resize(out.len() + token_len, 0xab);
            assert_eq!(out.len(), nego_token_request_len(token_len));
            let r = parse(&out).unwrap();
            assert_eq!(r.version, Some(6));
            assert_eq!(r.nego_token.map(<[u8]>::len), Some(token_len));
        }
        let mut out = Vec::new();
        write_error(&mut out, 6, 0xc000_006d);
        assert_eq!(
            out,
            b"\x30\x0d\xa0\x03\x02\x01\x06\xa4\x06\x02\x04\xc0\x00\x00\x6d"
        );
        let (request, rest) = Element::read(&out).unwrap();
        assert!(rest.is_empty());
        let code = request.children().nth(1).unwrap();
        let int = Element::read_tagged(code.contents, der::INTEGER).unwrap();
        assert_eq!(int.integer(), Some(i64::from(0xc000_006du32 as i32)));
    }

    #[test]
    fn versions() {
        assert_eq!(answer_version(Some(2)), 2);
        assert_eq!(answer_version(Some(3)), 3);
        assert_eq!(answer_version(Some(-5)), 2);
        assert_eq!(answer_version(None), 2);
        assert!(!has_error_code(2) && has_error_code(3));
    }

    #[test]
    fn odd_requests_read_what_is_there() {
        assert_eq!(parse(b""), Err(Error::Der(der::Error::Truncated)));
        assert_eq!(parse(b"\x31\x00"), Err(Error::NotSequence));
        // No members; a version that is not an INTEGER; an empty negoTokens list.
        let empty = TsRequest {
            version: None,
            nego_token: None,
        };
        assert_eq!(parse(b"\x30\x00"), Ok(empty));
        assert_eq!(parse(b"\x30\x05\xa0\x03\x04\x01\x06"), Ok(empty));
        assert_eq!(parse(b"\x30\x04\xa1\x02\x30\x00"), Ok(empty));
        // Every prefix of a real request is refused or read without panicking.
        for n in 0..NMAP_NEGOTIATE.len() {
            assert!(parse(&NMAP_NEGOTIATE[..n]).is_err());
        }
    }
}
