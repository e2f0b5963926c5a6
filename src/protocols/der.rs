//! The few DER (ASN.1) structures spip reads and writes around NTLM: CredSSP TSRequests and
//! SPNEGO tokens. Reading is BER-tolerant where clients are sloppy (a long-form length where a
//! short one would do) and refuses what no client of these protocols sends (indefinite
//! lengths, tag numbers above 30, lengths over four bytes). Every element is a borrowed view;
//! no declared length is trusted past the bytes at hand.

/// Why bytes are not the element expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the element does (more may come).
    Truncated,
    /// An encoding these protocols never use: indefinite length, high tag number, a length of
    /// more than four bytes.
    Unsupported,
}

/// Identifier octets: universal SEQUENCE (constructed), INTEGER, OCTET STRING.
pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;

/// The identifier octet of a constructed context-specific tag `[n]` (n ≤ 30).
pub const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// An element's header: its identifier octet and where its contents lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Identifier and length octets.
    pub header_len: usize,
    pub content_len: usize,
}

impl Header {
    /// Reads the header at the start of `b` (only the header's own bytes need be there).
    pub fn read(b: &[u8]) -> Result<Header, Error> {
        let (&tag, rest) = b.split_first().ok_or(Error::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(Error::Unsupported);
        }
        let (&first, rest) = rest.split_first().ok_or(Error::Truncated)?;
        if first < 0x80 {
            return Ok(Header {
                tag,
                header_len: 2,
                content_len: usize::from(first),
            });
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(Error::Unsupported);
        }
        let octets = rest.get(..n).ok_or(Error::Truncated)?;
        let len = octets
            .iter()
            .fold(0u32, |len, &b| (len << 8) | u32::from(b));
        Ok(Header {
            tag,
            header_len: 2 + n,
            content_len: usize::try_from(len).map_err(|_| Error::Unsupported)?,
        })
    }

    /// Header and contents: the whole element's length.
    pub fn total_len(&self) -> Option<usize> {
        self.header_len.checked_add(self.content_len)
    }
}

/// One element, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
}

impl<'a> Element<'a> {
    /// The element at the start of `b`, and the bytes after it.
    pub fn read(b: &'a [u8]) -> Result<(Element<'a>, &'a [u8]), Error> {
        let header = Header::read(b)?;
        let total = header.total_len().ok_or(Error::Truncated)?;
        let whole = b.get(..total).ok_or(Error::Truncated)?;
        let element = Element {
            tag: header.tag,
            contents: &whole[header.header_len..],
        };
        Ok((element, &b[total..]))
    }

    /// The element at the start of `b` when it has tag `tag`.
    pub fn read_tagged(b: &'a [u8], tag: u8) -> Option<Element<'a>> {
        Element::read(b)
            .ok()
            .filter(|(e, _)| e.tag == tag)
            .map(|(e, _)| e)
    }

    /// The elements inside a constructed element's contents.
    pub fn children(&self) -> Children<'a> {
        Children {
            rest: self.contents,
        }
    }

    /// The contents as an INTEGER that fits an `i64` (two's complement, at most 8 octets
    /// after redundant sign octets).
    pub fn integer(&self) -> Option<i64> {
        let (&first, _) = self.contents.split_first()?;
        let sign = if first & 0x80 != 0 { 0xff } else { 0 };
        let start = self
            .contents
            .iter()
            .position(|&b| b != sign)
            .unwrap_or(self.contents.len());
        // Keep one sign octet when the significant part would read with the other sign.
        let start = match self.contents.get(start) {
            Some(&b) if (b ^ sign) & 0x80 != 0 => start.saturating_sub(1),
            _ => start,
        };
        let significant = &self.contents[start..];
        if significant.len() > 8 {
            return None;
        }
        let init = i64::from(sign as i8);
        Some(
            significant
                .iter()
                .fold(init, |v, &b| (v << 8) | i64::from(b)),
        )
    }
}

/// The elements of a constructed element, in order; ends at the first malformed one.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Children<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        match Element::read(self.rest) {
            Ok((element, rest)) => {
                self.rest = rest;
                Some(element)
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

/// How many octets the DER length of `content_len` takes.
const fn len_octets(content_len: usize) -> usize {
    if content_len < 0x80 {
        1
    } else {
        1 + (usize::BITS - content_len.leading_zeros()).div_ceil(8) as usize
    }
}

/// The size of a whole element (one identifier octet) whose contents are `content_len` bytes.
pub const fn size(content_len: usize) -> usize {
    1 + len_octets(content_len) + content_len
}

/// Writes an identifier octet and the DER (minimal) length of `content_len`; the caller
/// writes the contents next.
pub fn write_header(out: &mut Vec<u8>, tag: u8, content_len: usize) {
    out.push(tag);
    let octets = len_octets(content_len);
    if octets == 1 {
        out.push(content_len as u8); // below 0x80: fits
        return;
    }
    out.push(0x80 | (octets - 1) as u8); // at most 8 length octets
    let be = content_len.to_be_bytes();
    out.extend_from_slice(&be[be.len() - (octets - 1)..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_short_long_and_partial() {
        assert_eq!(
            Header::read(&[0x30, 0x05]),
            Ok(Header {
                tag: 0x30,
                header_len: 2,
                content_len: 5
            })
        );
        // A long form where the short one would do (BER) is read as it says.
        assert_eq!(
            Header::read(&[0x30, 0x82, 0x00, 0x05]).map(|h| (h.header_len, h.content_len)),
            Ok((4, 5))
        );
        assert_eq!(
            Header::read(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]).map(|h| h.content_len),
            Ok(0xffff_ffff)
        );
        assert_eq!(Header::read(&[]), Err(Error::Truncated));
        assert_eq!(Header::read(&[0x30]), Err(Error::Truncated));
        assert_eq!(Header::read(&[0x30, 0x82, 0x01]), Err(Error::Truncated));
        assert_eq!(Header::read(&[0x30, 0x80]), Err(Error::Unsupported));
        assert_eq!(
            Header::read(&[0x30, 0x85, 0, 0, 0, 0, 1]),
            Err(Error::Unsupported)
        );
        assert_eq!(Header::read(&[0x3f, 0x01]), Err(Error::Unsupported));
    }

    #[test]
    fn a_length_past_the_bytes_is_truncated_not_trusted() {
        assert_eq!(
            Element::read(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 1, 2]),
            Err(Error::Truncated)
        );
        let (e, rest) = Element::read(&[0x04, 0x02, 1, 2, 9]).unwrap();
        assert_eq!((e.tag, e.contents, rest), (0x04, &[1u8, 2][..], &[9u8][..]));
    }

    #[test]
    fn children_stop_at_the_first_bad_element() {
        // [0] INTEGER 6, then a [1] that claims 5 bytes of which only one is there.
        let seq = Element {
            tag: SEQUENCE,
            contents: &[0xa0, 0x03, 0x02, 0x01, 0x06, 0xa1, 0x05, 0x30],
        };
        let tags: Vec<u8> = seq.children().map(|c| c.tag).collect();
        assert_eq!(tags, [0xa0]);
    }

    #[test]
    fn integers() {
        let int = |c: &[u8]| {
            Element {
                tag: INTEGER,
                contents: c,
            }
            .integer()
        };
        assert_eq!(int(&[0x06]), Some(6));
        assert_eq!(int(&[0x60]), Some(96));
        assert_eq!(int(&[0x00, 0xc0, 0x00, 0x00, 0x6d]), Some(0xc000_006d));
        assert_eq!(int(&[0xc0, 0x00, 0x00, 0x6d]), Some(-1_073_741_715));
        assert_eq!(int(&[0xff, 0xff, 0x80]), Some(-128));
        assert_eq!(
            int(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]),
            Some(1)
        );
        assert_eq!(int(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(int(&[]), None);
    }

    #[test]
    fn written_lengths_read_back() {
        for len in [
            0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0x12_3456,
        ] {
            let mut out = Vec::new();
            write_header(&mut out, OCTET_STRING, len);
            let h = Header::read(&out).unwrap();
            assert_eq!((h.tag, h.content_len, h.header_len), (0x04, len, out.len()));
            assert_eq!(size(len), out.len() + len);
        }
    }
}
