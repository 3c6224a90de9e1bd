//! The connection every connector opens (and `node::client::Session`,
//! which the CLI uses): plain TCP, or TLS when the connector's
//! `connector.ssl.*` keys (IoTDB 1.3's `sink.ssl.*`) say so; and the key and
//! trust stores TLS reads, for both ends.
//!
//! # Stores
//! IoTDB names its stores after Java's key stores (`key_store_path`,
//! `connector.ssl.trust-store-path`). edgepipe reads, by their content:
//! - **PEM**: a trust store is one or more `CERTIFICATE` blocks (the CA
//!   certificates to trust, e.g. `ca.pem`); a key store is the certificate
//!   chain (the node's certificate first, then any intermediates) followed
//!   or preceded by its unencrypted private key (PKCS#8, PKCS#1 or SEC1),
//!   e.g. `cat node.crt node.key > node.pem`. No password is needed.
//! - **PKCS#12** (`.p12`, `.pfx`, and what Java's `keytool` writes by
//!   default since Java 9), opened with the store's password: a trust store
//!   gives every certificate it holds; a key store its (first) private key
//!   and that key's certificate chain.
//! - A Java KeyStore of the older JKS format is refused with the `keytool`
//!   command that converts it to PKCS#12.
//!
//! # Failures
//! A certificate that does not verify is an error naming the server and the
//! reason (unknown certificate authority, a host name the certificate does
//! not name, expired, ...): never a fallback to plain TCP. A server that
//! does not answer the handshake because it does not serve TLS is named as
//! such. Every connect, handshake included, is bounded by the caller's
//! timeout.

use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The first bytes of a Java KeyStore in the JKS format.
const JKS_MAGIC: [u8; 4] = [0xFE, 0xED, 0xFE, 0xED];

/// The TLS settings of a connector (`connector.ssl.*`), validated.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// `connector.ssl.trust-store-path`: the CA certificates that sign the
    /// receivers' certificates (PEM, or a PKCS#12 trust store).
    pub trust_store_path: String,
    /// `connector.ssl.trust-store-pwd`: the PKCS#12 trust store's password
    /// (unused for PEM).
    pub trust_store_pwd: String,
}

impl std::fmt::Debug for TlsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("TlsSpec")
            .field("trust_store_path", &self.trust_store_path)
            .finish_non_exhaustive()
    }
}

impl TlsSpec {
    /// Reads the trust store: what a connector connects with.
    ///
    /// # Errors
    /// An unreadable or unusable trust store, naming the file and the key.
    pub fn load(&self) -> Result<ClientTls, String> {
        ClientTls::from_trust_store(Path::new(&self.trust_store_path), &self.trust_store_pwd)
            .map_err(|e| format!("connector.ssl.trust-store-path: {e}"))
    }
}

/// The crypto provider of every TLS configuration (ring: builds with the
/// C compiler alone).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client's TLS configuration: the certificate authorities it trusts.
/// Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the certificates of the trust store at `path` (PEM, or
    /// PKCS#12 opened with `password`; see the module doc).
    ///
    /// # Errors
    /// An unreadable store, a wrong password, a store without certificates,
    /// a certificate that cannot serve as a trust anchor; each naming the
    /// file.
    pub fn from_trust_store(path: &Path, password: &str) -> Result<ClientTls, String> {
        let certs = trust_store(path, password)?;
        let mut roots = rustls::RootCertStore::empty();
        for (i, c) in certs.into_iter().enumerate() {
            roots.add(c).map_err(|e| {
                format!(
                    "{}: certificate {} cannot be trusted as a certificate authority: {e}",
                    path.display(),
                    i + 1
                )
            })?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    fn server_name(host: &str) -> Result<ServerName<'static>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_string())
            .map_err(|_| format!("TLS: '{host}' is neither a host name nor an IP address"))
    }
}

/// Reads a file of a store, naming it when it cannot be read.
fn read_store(path: &Path) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{}: {}", path.display(), super::io_text(&e)))?;
    if bytes.starts_with(&JKS_MAGIC) {
        return Err(format!(
            "{p}: a Java KeyStore in the old JKS format, which edgepipe does not read; convert it to PKCS#12 with `keytool -importkeystore -srckeystore {p} -destkeystore {p}.p12 -deststoretype PKCS12` (or give PEM files)",
            p = path.display()
        ));
    }
    Ok(bytes)
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn pkcs12_error(path: &Path, e: p12_keystore::error::Error) -> String {
    match e {
        p12_keystore::error::Error::MacError(_) => format!(
            "{}: the password does not open this PKCS#12 store (its integrity check failed)",
            path.display()
        ),
        other => format!(
            "{}: neither PEM nor a PKCS#12 store that can be read: {other}",
            path.display()
        ),
    }
}

/// The certificates of a trust store (see the module doc).
///
/// # Errors
/// An unreadable file, a wrong password, no certificate in it.
pub fn trust_store(path: &Path, password: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_store(path)?;
    let certs: Vec<CertificateDer<'static>> = if is_pem(&bytes) {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?
    } else {
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, password)
            .map_err(|e| pkcs12_error(path, e))?;
        archive
            .certs
            .iter()
            .map(|b| CertificateDer::from(b.cert.as_der().to_vec()))
            .collect()
    };
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (a trust store holds the CA certificates to trust)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The certificate chain (own certificate first) and private key of a key
/// store (see the module doc).
///
/// # Errors
/// An unreadable file, a wrong password, no key or no certificate in it, an
/// encrypted PEM key.
pub fn key_store(
    path: &Path,
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let bytes = read_store(path)?;
    if is_pem(&bytes) {
        if bytes
            .windows(29)
            .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY--")
        {
            return Err(format!(
                "{}: the private key is encrypted, which edgepipe does not read from PEM; give it unencrypted (readable by the node's user only), or use a PKCS#12 store with its password",
                path.display()
            ));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{}: no private key in it (a PEM key store holds the certificate chain and its private key)",
                path.display()
            ),
            e => format!("{}: bad PEM: {e}", path.display()),
        })?;
        if chain.is_empty() {
            return Err(format!(
                "{}: no certificate in it (a PEM key store holds the certificate chain and its private key)",
                path.display()
            ));
        }
        return Ok((chain, key));
    }
    let store = p12_keystore::KeyStore::from_pkcs12(
        &bytes,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| pkcs12_error(path, e))?;
    let Some((alias, chain)) = store.private_key_chain() else {
        return Err(format!(
            "{}: no private key in this PKCS#12 store (is it a trust store?)",
            path.display()
        ));
    };
    if chain.certs().is_empty() {
        return Err(format!(
            "{}: the private key '{alias}' has no certificate with it",
            path.display()
        ));
    }
    let certs = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    let key = PrivateKeyDer::try_from(chain.key().as_der().to_vec()).map_err(|e| {
        format!(
            "{}: the private key '{alias}' cannot be read: {e}",
            path.display()
        )
    })?;
    Ok((certs, key))
}

/// A connector's connection: plain TCP or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Makes closing it a reset (`SO_LINGER` 0): what the kernel still
    /// holds unsent is discarded rather than sent after the sender gave up.
    ///
    /// # Errors
    /// The socket option cannot be set.
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.tcp().set_zero_linger()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to `host:port`, with TLS when `tls` is given (verifying the
/// server's certificate for `host`), within `timeout` (a connector's
/// `pipe_connector_timeout_ms`) for the TCP connect and the handshake
/// together. Sets `TCP_NODELAY`.
///
/// # Errors
/// What failed, in a sentence without the address (callers prefix it):
/// the TCP connect in the operating system's words, the timeout, or the
/// TLS handshake (see [`explain_tls`]).
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Stream, String> {
    let name = tls.map(|_| ClientTls::server_name(host)).transpose()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect((bare, port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(super::io_text(&e)),
        Err(_) => {
            return Err(format!(
                "connect timed out after {}",
                super::timeout_text(timeout)
            ))
        }
    };
    let _ = tcp.set_nodelay(true);
    let (Some(t), Some(name)) = (tls, name) else {
        return Ok(Stream::Plain(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(t.config.clone());
    match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
        Ok(Err(e)) => Err(explain_tls(&e)),
        Err(_) => Err(format!(
            "TLS handshake not finished within {}: does the server serve TLS (enable_thrift_ssl=true)?",
            super::timeout_text(timeout)
        )),
    }
}

/// A connector's TLS, its trust store read at the first connect and kept
/// (a store that cannot be read is an error of that connect, and is read
/// again at the next).
#[derive(Debug, Default)]
pub struct LazyTls {
    spec: Option<TlsSpec>,
    loaded: std::sync::Mutex<Option<ClientTls>>,
}

impl LazyTls {
    /// TLS as `spec` says (`None`: plain TCP).
    pub fn new(spec: Option<TlsSpec>) -> LazyTls {
        LazyTls {
            spec,
            loaded: std::sync::Mutex::new(None),
        }
    }

    /// What to connect with: `None` for plain TCP.
    ///
    /// # Errors
    /// The trust store cannot be read (see [`TlsSpec::load`]).
    pub fn get(&self) -> Result<Option<ClientTls>, String> {
        let Some(spec) = &self.spec else {
            return Ok(None);
        };
        let mut loaded = self.loaded.lock().expect("tls lock");
        if let Some(t) = loaded.as_ref() {
            return Ok(Some(t.clone()));
        }
        let t = spec.load()?;
        *loaded = Some(t.clone());
        Ok(Some(t))
    }
}

/// A blocking connection (for synchronous clients): plain TCP or TLS.
#[derive(Debug)]
pub enum BlockingStream {
    /// Plain TCP.
    Plain(std::net::TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl BlockingStream {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &std::net::TcpStream {
        match self {
            BlockingStream::Plain(s) => s,
            BlockingStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.read(buf),
            BlockingStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.write(buf),
            BlockingStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.flush(),
            BlockingStream::Tls(s) => s.flush(),
        }
    }
}

/// [`connect`] for blocking clients: `addr` is `host:port` (`[v6]:port`);
/// the TCP connect and the handshake each within `timeout`.
///
/// # Errors
/// As [`connect`].
pub fn connect_blocking(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<BlockingStream, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| super::io_text(&e))?
        .collect();
    let mut last = format!("{addr} resolves to no address");
    let mut tcp = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = super::io_text(&e),
        }
    }
    let mut tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    let Some(t) = tls else {
        return Ok(BlockingStream::Plain(tcp));
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let name = ClientTls::server_name(host)?;
    let mut conn =
        rustls::ClientConnection::new(t.config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let before = tcp.read_timeout().map_err(|e| super::io_text(&e))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Err(
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    format!(
                        "TLS handshake not finished within {} ms: does the server serve TLS?",
                        timeout.as_millis()
                    )
                } else {
                    explain_tls(&e)
                },
            );
        }
    }
    tcp.set_read_timeout(before)
        .map_err(|e| super::io_text(&e))?;
    tcp.set_write_timeout(None)
        .map_err(|e| super::io_text(&e))?;
    Ok(BlockingStream::Tls(Box::new(rustls::StreamOwned::new(
        conn, tcp,
    ))))
}

/// A name a certificate presents, as rustls words it
/// (`DnsName("cloud.example")`, `IpAddress(10.0.0.1)`), without the
/// wrapping.
fn name_text(p: &str) -> &str {
    p.strip_prefix("DnsName(\"")
        .and_then(|x| x.strip_suffix("\")"))
        .or_else(|| {
            p.strip_prefix("IpAddress(")
                .and_then(|x| x.strip_suffix(')'))
        })
        .unwrap_or(p)
}

fn date(t: rustls::pki_types::UnixTime) -> String {
    chrono::DateTime::from_timestamp(t.as_secs() as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{} s since 1970", t.as_secs()))
}

/// A TLS handshake's failure in words: the certificate's fault (unknown
/// certificate authority, wrong host name, expired, ...), the server's
/// refusal, or a server that does not speak TLS.
pub fn explain_tls(e: &io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => format!(
                "TLS handshake failed: the server closed the connection ({}); does it serve TLS (enable_thrift_ssl=true on an edgepipe or IoTDB node)?",
                super::io_text(e)
            ),
            _ => format!("TLS handshake failed: {}", super::io_text(e)),
        };
    };
    let cert = |why: String| format!("TLS: the server's certificate does not verify: {why}");
    match err {
        rustls::Error::InvalidCertificate(c) => cert(match c {
            C::UnknownIssuer => "it is not signed by a certificate authority of the trust store (unknown CA)".to_string(),
            C::NotValidForName => "it is not valid for this host name (wrong host name)".to_string(),
            C::NotValidForNameContext { expected, presented } => format!(
                "it is not valid for the host name {} (wrong host name; the certificate names {})",
                expected.to_str(),
                if presented.is_empty() {
                    "no host".to_string()
                } else {
                    presented.iter().map(|p| name_text(p)).collect::<Vec<_>>().join(", ")
                }
            ),
            C::Expired => "it has expired".to_string(),
            C::ExpiredContext { not_after, .. } => format!("it expired on {}", date(*not_after)),
            C::NotValidYet => "it is not valid yet".to_string(),
            C::NotValidYetContext { not_before, .. } => {
                format!("it is not valid before {}", date(*not_before))
            }
            C::Revoked => "it has been revoked".to_string(),
            C::BadSignature => "its signature does not verify".to_string(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "it is not for TLS servers (extended key usage)".to_string()
            }
            other => format!("{}", rustls::Error::InvalidCertificate(other.clone())),
        }),
        rustls::Error::AlertReceived(_) => {
            format!("TLS handshake failed: the server refused it ({err})")
        }
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => format!(
            "TLS handshake failed: the server does not answer in TLS ({err}); does it serve TLS (enable_thrift_ssl=true)?"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_in_pem_and_pkcs12_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["node.test".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();

        // PEM: chain + key in one file, or certificates only.
        let pem = dir.path().join("node.pem");
        std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        let (chain, _) = key_store(&pem, "").unwrap();
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].as_ref(), cert.der().as_ref());
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        assert_eq!(trust_store(&ca, "").unwrap().len(), 1);
        ClientTls::from_trust_store(&ca, "").unwrap();
        let e = key_store(&ca, "").unwrap_err();
        assert!(e.contains("no private key in it"), "{e}");

        // PKCS#12 with a password.
        let mut ks = p12_keystore::KeyStore::new();
        let c = p12_keystore::Certificate::from_der(cert.der()).unwrap();
        let k = p12_keystore::PrivateKey::from_der(&key.serialize_der()).unwrap();
        ks.add_entry(
            "node",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                vec![1u8; 20],
                k,
                vec![c],
            )),
        );
        let p12 = dir.path().join("node.p12");
        std::fs::write(&p12, ks.writer("secret").write().unwrap()).unwrap();
        let (chain, _) = key_store(&p12, "secret").unwrap();
        assert_eq!(chain[0].as_ref(), cert.der().as_ref());
        assert_eq!(trust_store(&p12, "secret").unwrap().len(), 1);
        let e = key_store(&p12, "wrong").unwrap_err();
        assert!(e.contains("the password does not open"), "{e}");

        // JKS, missing files, empty stores: named.
        let jks = dir.path().join("old.jks");
        std::fs::write(&jks, [0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2]).unwrap();
        let e = trust_store(&jks, "x").unwrap_err();
        assert!(
            e.contains("JKS") && e.contains("keytool -importkeystore"),
            "{e}"
        );
        let e = trust_store(&dir.path().join("none.pem"), "").unwrap_err();
        assert!(e.contains("none.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "-----BEGIN NOTHING-----\n-----END NOTHING-----\n").unwrap();
        let e = trust_store(&empty, "").unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let enc = dir.path().join("enc.pem");
        std::fs::write(
            &enc,
            format!(
                "{}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                cert.pem()
            ),
        )
        .unwrap();
        let e = key_store(&enc, "").unwrap_err();
        assert!(e.contains("encrypted"), "{e}");
    }
}
