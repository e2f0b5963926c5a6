//! TLS mode: a sans-IO rustls server driven over the connection's own buffers.
//!
//! The connection task reads ciphertext from the socket (io_uring provided buffers) and hands
//! it to [`TlsSession::feed`], which returns the decrypted application data; replies go in
//! with [`TlsSession::send`] and the bytes to write come out of [`TlsSession::outgoing`].
//! Nothing here touches a socket.
//!
//! Client certificates are requested but optional, and any certificate is accepted: the sensor
//! records it, it never authenticates anyone.

use crate::config::TlsFiles;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, ProtocolVersion, ServerConfig,
    ServerConnection, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The server configurations of a TLS-mode sensor: one per ALPN preference, so the protocol
/// the client lists first among h2/http/1.1 is the one negotiated.
#[derive(Clone)]
pub struct TlsConfigs {
    h2_first: Arc<ServerConfig>,
    http11_first: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfigs")
    }
}

impl TlsConfigs {
    /// Loads the certificate chain and key; the error names the file and the problem.
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        let mut pairs = vec![(load_certs(&files.cert_path)?, load_key(&files.key_path)?)];
        if let Some((cert, key)) = &files.rsa {
            pairs.push((load_certs(cert)?, load_key(key)?));
        }
        Self::from_pairs(pairs).map_err(|e| match &files.rsa {
            Some((c, k)) => format!(
                "{e} ({} + {}, or {} + {})",
                files.cert_path.display(),
                files.key_path.display(),
                c.display(),
                k.display()
            ),
            None => format!(
                "{e} ({} + {})",
                files.cert_path.display(),
                files.key_path.display()
            ),
        })
    }

    /// Builds the configurations from an in-memory chain and key.
    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, String> {
        Self::from_pairs(vec![(certs, key)])
    }

    /// Builds the configurations from chains and keys in preference order: each client gets
    /// the first one whose key can sign with a scheme it offers (so RSA-only clients get an RSA
    /// certificate, everyone else the cheaper ECDSA handshake).
    pub fn from_pairs(
        pairs: Vec<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut keys = Vec::with_capacity(pairs.len());
        for (certs, key) in pairs {
            let ck = rustls::sign::CertifiedKey::from_der(certs, key, &provider)
                .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
            keys.push(Arc::new(ck));
        }
        if keys.is_empty() {
            return Err("no certificate".into());
        }
        let verifier = Arc::new(AcceptAnyClientCert {
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
        });
        let mut base = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(PerClientCert { keys }));
        // A honeypot resumes nobody: no tickets to mint on every handshake.
        base.send_tls13_tickets = 0;
        base.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        base.ignore_client_order = false;
        let mut h2_first = base.clone();
        h2_first.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut http11_first = base;
        http11_first.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
        Ok(TlsConfigs {
            h2_first: Arc::new(h2_first),
            http11_first: Arc::new(http11_first),
        })
    }

    /// The configuration for a client that offered `alpn` (in its order).
    pub fn for_client<'a>(&self, mut alpn: impl Iterator<Item = &'a [u8]>) -> Arc<ServerConfig> {
        match alpn.find(|p| *p == b"h2" || *p == b"http/1.1") {
            Some(b"http/1.1") => self.http11_first.clone(),
            _ => self.h2_first.clone(),
        }
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |what: String| format!("bad certificate file {}: {what}", path.display());
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM CERTIFICATE section found".into()));
    }
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(c) {
            return Err(bad(format!("certificate {} does not parse: {e}", i + 1)));
        }
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bad = |what: String| format!("bad key file {}: {what}", path.display());
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            bad("no PEM PRIVATE KEY section found".into())
        }
        e => bad(e.to_string()),
    })?;
    rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| bad(format!("unusable private key: {e}")))?;
    Ok(key)
}

/// Picks, per ClientHello, the first certificate whose key can sign with an offered scheme.
#[derive(Debug)]
struct PerClientCert {
    keys: Vec<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for PerClientCert {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let offered = hello.signature_schemes();
        if let [only] = self.keys.as_slice() {
            return Some(only.clone());
        }
        self.keys
            .iter()
            .find(|k| k.key.choose_scheme(offered).is_some())
            .or(self.keys.first())
            .cloned()
    }
}

/// Requests a client certificate, never requires one, accepts any.
#[derive(Debug)]
struct AcceptAnyClientCert {
    schemes: Vec<SignatureScheme>,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// What the handshake settled (or why it failed), written under `tls.*` on every record of a
/// TLS connection.
#[derive(Debug, Default, Clone)]
pub struct TlsInfo {
    /// Negotiated ALPN protocol (`tls.alpn`).
    pub alpn: Option<Vec<u8>>,
    /// `tls.client.version`: "TLSv1.3" / "TLSv1.2".
    pub version: Option<&'static str>,
    /// `tls.client.cipher`: IANA name.
    pub cipher: Option<&'static str>,
    pub client_certificate: Option<ClientCertificate>,
    /// `spip.tls_error`: why the handshake (or the session) failed.
    pub error: Option<String>,
}

/// `tls.client.client_certificate.*` (parsed with x509-parser).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub subject: String,
    pub issuer: String,
    pub not_before: Option<SystemTime>,
    pub not_after: Option<SystemTime>,
}

impl ClientCertificate {
    fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let time = |t: x509_parser::time::ASN1Time| {
            u64::try_from(t.timestamp())
                .ok()
                .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        };
        Some(ClientCertificate {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
        })
    }
}

impl TlsInfo {
    /// A failed handshake's info.
    pub fn failed(error: impl Into<String>) -> Self {
        TlsInfo {
            error: Some(error.into()),
            ..TlsInfo::default()
        }
    }
}

/// The IANA name of a cipher suite (rustls calls the TLS 1.3 ones `TLS13_*`).
pub fn iana_cipher_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        other => other.as_str().unwrap_or("unknown"),
    }
}

fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1.0",
        _ => "unknown",
    }
}

/// What feeding ciphertext produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    Open,
    /// The client sent close_notify.
    Closed,
}

/// One server-side TLS connection, sans IO.
pub struct TlsSession {
    conn: ServerConnection,
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsSession {
            conn: ServerConnection::new(config)?,
        })
    }

    /// Feeds client ciphertext; decrypted application data is appended to `plaintext`.
    /// On error, the alert to send (if any) is waiting in [`TlsSession::outgoing`].
    pub fn feed(&mut self, mut data: &[u8], plaintext: &mut Vec<u8>) -> Result<Fed, rustls::Error> {
        let mut closed = false;
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            let state = self.conn.process_new_packets()?;
            if state.plaintext_bytes_to_read() > 0 {
                closed |= self.take_plaintext(plaintext);
            }
            if state.peer_has_closed() {
                closed = true;
            }
        }
        Ok(if closed { Fed::Closed } else { Fed::Open })
    }

    /// Moves readable plaintext out; true if the peer closed cleanly.
    fn take_plaintext(&mut self, out: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    }

    /// Queues application data to encrypt (buffered until the handshake is done).
    pub fn send(&mut self, plaintext: &[u8]) {
        let _ = self.conn.writer().write_all(plaintext);
    }

    /// Appends every TLS record waiting to be written to `out`.
    pub fn outgoing(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// What the handshake negotiated.
    pub fn info(&self) -> TlsInfo {
        TlsInfo {
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            version: self.conn.protocol_version().map(version_name),
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .map(|s| iana_cipher_name(s.suite())),
            client_certificate: self
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| ClientCertificate::parse(c)),
            error: None,
        }
    }
}

/// Writes `tls.alpn` and the handshake's `tls.client.*` members (inside an open `tls.client`
/// object for the latter; see [`crate::protocols::tls::write_tls`]).
impl TlsInfo {
    pub fn write_client_members(&self, w: &mut crate::json::JsonWriter<'_>) {
        if let Some(v) = self.version {
            w.str("version", v.as_bytes());
        }
        if let Some(c) = self.cipher {
            w.str("cipher", c.as_bytes());
        }
        if let Some(cert) = &self.client_certificate {
            w.begin_object("client_certificate");
            w.str("subject", cert.subject.as_bytes());
            w.str("issuer", cert.issuer.as_bytes());
            for (key, t) in [
                ("not_before", cert.not_before),
                ("not_after", cert.not_after),
            ] {
                if let Some(t) = t {
                    w.key_only(key);
                    crate::record::write_timestamp(w.buf(), t);
                }
            }
            w.end_object();
        }
    }
}

impl TlsConfigs {
    /// Configurations with a fresh self-signed ECDSA P-256 certificate for `cn` (tests,
    /// benchmarks, fuzzing).
    pub fn self_signed(cn: &str) -> Result<Self, String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("key generation failed: {e}"))?;
        let cert = rcgen::CertificateParams::new(vec![cn.to_string()])
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| format!("signing failed: {e}"))?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| format!("key encoding failed: {e}"))?;
        Self::from_der(vec![cert.der().clone()], key)
    }
}

/// Generates an ECDSA P-256 self-signed certificate for `cn`: (cert PEM, key PEM).
pub fn generate_self_signed(cn: &str) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("key generation failed: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()])
        .map_err(|e| format!("bad name {cn:?}: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(86_400)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection};

    fn server() -> TlsConfigs {
        let (cert, key) = generate_self_signed("spip.test").unwrap();
        let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        TlsConfigs::from_der(certs, key).unwrap()
    }

    #[derive(Debug)]
    struct NoVerify;
    impl rustls::client::danger::ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    fn client(
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> ClientConnection {
        let mut cfg =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify))
                .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        ClientConnection::new(Arc::new(cfg), ServerName::try_from("spip.test").unwrap()).unwrap()
    }

    /// Runs client and server in memory until the client has sent `request`; returns what the
    /// server decrypted and its info.
    fn exchange(
        mut c: ClientConnection,
        request: &[u8],
        configs: &TlsConfigs,
    ) -> (Vec<u8>, TlsInfo, Vec<u8>) {
        let mut wire = Vec::new();
        c.write_tls(&mut wire).unwrap();
        assert!(
            crate::fingerprint::tls_client(&wire).is_some(),
            "a ClientHello"
        );
        let mut s = TlsSession::new(configs.for_client(std::iter::empty())).unwrap();
        let mut plain = Vec::new();
        let mut sent = false;
        let mut reply = Vec::new();
        for _ in 0..10 {
            s.feed(&wire, &mut plain).unwrap();
            wire.clear();
            if !s.is_handshaking() && !plain.is_empty() && reply.is_empty() {
                s.send(b"pong");
            }
            let mut out = Vec::new();
            s.outgoing(&mut out);
            let mut cur = &out[..];
            while !cur.is_empty() {
                c.read_tls(&mut cur).unwrap();
                c.process_new_packets().unwrap();
            }
            let mut buf = [0u8; 64];
            if let Ok(n) = c.reader().read(&mut buf) {
                reply.extend_from_slice(&buf[..n]);
            }
            if !c.is_handshaking() && !sent {
                c.writer().write_all(request).unwrap();
                sent = true;
            }
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            if !reply.is_empty() {
                break;
            }
        }
        (plain, s.info(), reply)
    }

    #[test]
    fn tls13_roundtrip_in_memory() {
        let configs = server();
        let c = client(&[&rustls::version::TLS13], &[b"http/1.1"]);
        let (plain, info, reply) = exchange(c, b"GET / HTTP/1.1\r\n\r\n", &configs);
        assert_eq!(plain, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(reply, b"pong");
        assert_eq!(info.version, Some("TLSv1.3"));
        assert!(
            info.cipher.unwrap().starts_with("TLS_"),
            "{:?}",
            info.cipher
        );
        assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(info.client_certificate.is_none());
    }

    #[test]
    fn tls12_roundtrip_in_memory() {
        let configs = server();
        let c = client(&[&rustls::version::TLS12], &[b"h2", b"http/1.1"]);
        let (plain, info, _) = exchange(c, b"hello", &configs);
        assert_eq!(plain, b"hello");
        assert_eq!(info.version, Some("TLSv1.2"));
        assert_eq!(info.cipher, Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[test]
    fn alpn_follows_client_order() {
        let configs = server();
        let h1: &[u8] = b"http/1.1";
        let h2: &[u8] = b"h2";
        assert!(Arc::ptr_eq(
            &configs.for_client([h1, h2].into_iter()),
            &configs.http11_first
        ));
        assert!(Arc::ptr_eq(
            &configs.for_client([h2, h1].into_iter()),
            &configs.h2_first
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let configs = server();
        let mut s = TlsSession::new(configs.for_client(std::iter::empty())).unwrap();
        let mut plain = Vec::new();
        let err = s
            .feed(b"\x16\x03\x01\x00\x05hello", &mut plain)
            .unwrap_err();
        assert!(!err.to_string().is_empty());
        // Whatever rustls queued (an alert, or nothing) can be taken without panicking.
        let mut out = Vec::new();
        s.outgoing(&mut out);
        assert!(out.is_empty() || out[0] == 0x15, "{out:?}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let configs = server();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let mut s = TlsSession::new(configs.for_client(std::iter::empty())).unwrap();
            let len = (next() % 600) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly plausible record headers, so rustls gets past the first check.
            if next() % 4 != 0 && data.len() >= 5 {
                data[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
                data[3..5].copy_from_slice(&((len - 5) as u16).to_be_bytes());
            }
            let mut plain = Vec::new();
            for chunk in data.chunks(1 + (next() % 64) as usize) {
                if s.feed(chunk, &mut plain).is_err() {
                    break;
                }
            }
            let mut out = Vec::new();
            s.outgoing(&mut out);
            let _ = s.info();
        }
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("spip-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, "garbage").unwrap();
        std::fs::write(&key, "garbage").unwrap();
        let files = TlsFiles {
            cert_path: cert.clone(),
            key_path: key.clone(),
            rsa: None,
        };
        let e = TlsConfigs::load(&files).unwrap_err();
        assert!(e.contains(&cert.display().to_string()), "{e}");
        let (c, k) = generate_self_signed("x").unwrap();
        std::fs::write(&cert, c).unwrap();
        let e = TlsConfigs::load(&files).unwrap_err();
        assert!(e.contains(&key.display().to_string()), "{e}");
        std::fs::write(&key, k).unwrap();
        TlsConfigs::load(&files).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
