//! HPACK (RFC 7541) decoding, bounded: the dynamic table by the size we allow (4096, the
//! default SETTINGS_HEADER_TABLE_SIZE), the decoded fields by [`MAX_FIELDS`] and
//! [`MAX_DECODED`] (the rest is decoded to keep the table right, but not kept), and the work
//! by [`WORK_PER_BYTE`] copied bytes per block byte. No allocation per field: names and values
//! go into one buffer per list, table entries into one ring of bytes.

use std::collections::VecDeque;

/// Decoded header fields kept per request.
pub const MAX_FIELDS: usize = 256;
/// Decoded name and value bytes kept per request.
pub const MAX_DECODED: usize = 64 * 1024;
/// Bytes copied in or out of the dynamic table per block byte (a 2-byte literal with an
/// indexed 4 KB name that is inserted again copies 4 KB: an attacker's lever).
pub const WORK_PER_BYTE: usize = 16;
/// The dynamic table's size limit (SETTINGS_HEADER_TABLE_SIZE, left at its default).
pub const TABLE_SIZE: usize = 4096;

/// Why a header block did not decode (a COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    IntegerOverflow,
    BadIndex,
    BadHuffman,
    TableSizeTooLarge,
    TooMuchWork,
}

impl Error {
    pub fn describe(self) -> &'static str {
        match self {
            Error::Truncated => "hpack: truncated header block",
            Error::IntegerOverflow => "hpack: integer too large",
            Error::BadIndex => "hpack: index out of range",
            Error::BadHuffman => "hpack: bad Huffman code",
            Error::TableSizeTooLarge => "hpack: table size update above our limit",
            Error::TooMuchWork => "hpack: too many table copies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    start: usize,
    name_len: usize,
    value_len: usize,
}

/// Header fields in wire order, names and values in one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldList {
    bytes: Vec<u8>,
    fields: Vec<Field>,
    truncated: bool,
}

impl FieldList {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
        self.truncated = false;
    }

    /// Some fields were left out (over [`MAX_FIELDS`] or [`MAX_DECODED`]).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len();
        if self.fields.len() >= MAX_FIELDS || self.bytes.len() + size > MAX_DECODED {
            self.truncated = true;
            return;
        }
        self.fields.push(Field {
            start: self.bytes.len(),
            name_len: name.len(),
            value_len: value.len(),
        });
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.fields.iter().map(|f| {
            let name_end = f.start + f.name_len;
            (
                self.bytes.get(f.start..name_end).unwrap_or_default(),
                self.bytes
                    .get(name_end..name_end + f.value_len)
                    .unwrap_or_default(),
            )
        })
    }
}

/// A dynamic table entry: name then value at `start` in the table's bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    name_len: usize,
    value_len: usize,
}

/// The dynamic table: entries newest first, their bytes appended to one buffer that is
/// compacted when it reaches twice the size limit (so each byte moves at most once more).
#[derive(Debug, Default)]
struct Table {
    bytes: Vec<u8>,
    entries: VecDeque<Entry>,
    /// RFC 7541 §4.1 size: name + value + 32 per entry.
    size: usize,
    max_size: usize,
}

impl Table {
    fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(index)?;
        let name_end = e.start + e.name_len;
        Some((
            self.bytes.get(e.start..name_end)?,
            self.bytes.get(name_end..name_end + e.value_len)?,
        ))
    }

    fn evict_oldest(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.size -= e.name_len + e.value_len + 32;
        }
        if self.entries.is_empty() {
            self.bytes.clear();
        }
    }

    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        while self.size > self.max_size {
            self.evict_oldest();
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let len = name.len() + value.len();
        // An entry larger than the table empties it and is not added (§4.4).
        while self.size + len + 32 > self.max_size && !self.entries.is_empty() {
            self.evict_oldest();
        }
        if len + 32 > self.max_size {
            return;
        }
        if self.bytes.len() + len > 2 * self.max_size
            && let Some(oldest) = self.entries.back().map(|e| e.start)
        {
            self.bytes.copy_within(oldest.., 0);
            self.bytes.truncate(self.bytes.len() - oldest);
            for e in &mut self.entries {
                e.start -= oldest;
            }
        }
        self.entries.push_front(Entry {
            start: self.bytes.len(),
            name_len: name.len(),
            value_len: value.len(),
        });
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.size += len + 32;
    }
}

/// A connection's decoder: the dynamic table and scratch buffers, kept across blocks.
#[derive(Debug)]
pub struct Decoder {
    table: Table,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            table: Table {
                max_size: TABLE_SIZE,
                ..Table::default()
            },
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Decodes one whole header block into `out` (appending).
    pub fn decode(&mut self, mut block: &[u8], out: &mut FieldList) -> Result<(), Error> {
        let mut work = WORK_PER_BYTE * block.len() + 2 * TABLE_SIZE;
        while let Some(&first) = block.first() {
            block = if first & 0x80 != 0 {
                let (index, rest) = integer(block, 7)?;
                let (name, value) = lookup(&self.table, index)?;
                out.push(name, value);
                rest
            } else if first & 0x40 != 0 {
                self.literal(block, 6, true, out, &mut work)?
            } else if first & 0x20 != 0 {
                let (size, rest) = integer(block, 5)?;
                if size > TABLE_SIZE {
                    return Err(Error::TableSizeTooLarge);
                }
                self.table.set_max_size(size);
                rest
            } else {
                // Without indexing (0000) and never indexed (0001): the same for us.
                self.literal(block, 4, false, out, &mut work)?
            };
        }
        Ok(())
    }

    fn literal<'b>(
        &mut self,
        block: &'b [u8],
        prefix: u8,
        index: bool,
        out: &mut FieldList,
        work: &mut usize,
    ) -> Result<&'b [u8], Error> {
        let (name_index, mut rest) = integer(block, prefix)?;
        if name_index == 0 {
            self.name.clear();
            rest = string(rest, &mut self.name)?;
        } else {
            lookup(&self.table, name_index)?;
        }
        self.value.clear();
        rest = string(rest, &mut self.value)?;
        if name_index == 0 {
            out.push(&self.name, &self.value);
        } else {
            let (name, _) = lookup(&self.table, name_index)?;
            out.push(name, &self.value);
            if index {
                // The entry named may be evicted by the insertion: copy its name first.
                self.name.clear();
                self.name.extend_from_slice(name);
            }
        }
        if index {
            let cost = self.name.len() + self.value.len();
            *work = work.checked_sub(cost).ok_or(Error::TooMuchWork)?;
            self.table.insert(&self.name, &self.value);
        }
        Ok(rest)
    }
}

/// Index space: 1..=61 static, then the dynamic table newest first.
fn lookup(table: &Table, index: usize) -> Result<(&[u8], &[u8]), Error> {
    match index {
        0 => Err(Error::BadIndex),
        1..=61 => STATIC
            .get(index - 1)
            .map(|&(n, v)| (n.as_bytes(), v.as_bytes()))
            .ok_or(Error::BadIndex),
        _ => table.get(index - 62).ok_or(Error::BadIndex),
    }
}

/// An integer with an N-bit prefix (§5.1); values above 2^28 are refused.
fn integer(buf: &[u8], prefix: u8) -> Result<(usize, &[u8]), Error> {
    let (&first, mut rest) = buf.split_first().ok_or(Error::Truncated)?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, rest));
    }
    let mut shift = 0;
    loop {
        let (&b, r) = rest.split_first().ok_or(Error::Truncated)?;
        rest = r;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value, rest));
        }
        shift += 7;
        if shift > 21 {
            return Err(Error::IntegerOverflow);
        }
    }
}

/// A string literal (§5.2), raw or Huffman-coded, appended to `out`.
fn string<'b>(buf: &'b [u8], out: &mut Vec<u8>) -> Result<&'b [u8], Error> {
    let huffman = buf.first().is_some_and(|&b| b & 0x80 != 0);
    let (len, rest) = integer(buf, 7)?;
    let (raw, rest) = rest.split_at_checked(len).ok_or(Error::Truncated)?;
    if huffman {
        huffman_decode(raw, out)?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(rest)
}

/// Code length of each symbol (0..=255, 256 = EOS) of the HPACK Huffman code (RFC 7541
/// Appendix B). The code is canonical (codes of one length are consecutive, in symbol
/// order), so the lengths define it.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28,
    30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6,
    6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5,
    6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20,
    22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23,
    23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21,
    22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20,
    19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21,
    21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26,
    23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const MAX_CODE_LEN: usize = 30;
const EOS: u16 = 256;

/// The canonical code's decoding tables: per length, the first code, how many codes have
/// it, and where its symbols start in `symbols` (sorted by length, then symbol).
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u32; MAX_CODE_LEN + 1],
    offset: [usize; MAX_CODE_LEN + 1],
    symbols: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_CODE_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[CODE_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_CODE_LEN + 1];
    let mut offset = [0usize; MAX_CODE_LEN + 1];
    let (mut code, mut total, mut len) = (0u32, 0usize, 1);
    while len <= MAX_CODE_LEN {
        code = (code + count[len - 1]) << 1;
        first[len] = code;
        offset[len] = total;
        total += count[len] as usize;
        len += 1;
    }
    let mut fill = offset;
    let mut symbols = [0u16; 257];
    s = 0;
    while s < 257 {
        let l = CODE_LENGTHS[s] as usize;
        symbols[fill[l]] = s as u16;
        fill[l] += 1;
        s += 1;
    }
    Canonical {
        first,
        count,
        offset,
        symbols,
    }
}

/// Decodes a Huffman-coded string (§5.2): bit by bit, linear in its length; EOS inside,
/// or padding that is longer than 7 bits or not all ones, is an error.
fn huffman_decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let c = &CANONICAL;
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in raw {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let i = code.wrapping_sub(c.first[len]);
            if i < c.count[len] {
                let symbol = c.symbols[c.offset[len] + i as usize];
                if symbol == EOS {
                    return Err(Error::BadHuffman);
                }
                out.push(symbol as u8);
                (code, len) = (0, 0);
            } else if len == MAX_CODE_LEN {
                return Err(Error::BadHuffman);
            }
        }
    }
    if len > 7 || code != (1 << len) - 1 {
        return Err(Error::BadHuffman);
    }
    Ok(())
}

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];
