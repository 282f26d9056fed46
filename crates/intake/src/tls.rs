//! TLS and mutual TLS for the HTTP API (rustls with the *ring* provider).
//!
//! - [`server_config`] turns a [`TlsOptions`] (PEM files) into a rustls
//!   [`ServerConfig`], refusing with a [`TlsError`] that names the file and
//!   the problem. With a `client_ca`, client certificates are verified
//!   against it (optional, or required with `require_client_cert`).
//! - [`serve_tls`] serves an axum [`Router`] over HTTP/1.1 on TLS: one task
//!   per connection, a [`HANDSHAKE_TIMEOUT`], graceful shutdown. Every
//!   request of a connection that presented a verified client certificate
//!   carries it as a [`ClientCertificate`] extension (and, as with
//!   [`crate::serve`], `ConnectInfo<SocketAddr>`).
//! - [`certificate_principal`] maps a client certificate to a
//!   [`Principal`] by the `[[access.certificates]]` rules ([`CertRule`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use registre_access::{AuthMethod, Principal, Role};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use x509_cert::der::asn1::{
    BmpString, Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use x509_cert::der::oid::AssociatedOid as _;
use x509_cert::der::oid::db::rfc4519::COMMON_NAME;
use x509_cert::der::{Decode as _, Tag, Tagged as _};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A client has this long, from TCP accept, to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Then this long to send each request's headers (hyper's `header_read_timeout`);
/// it also closes a keep-alive connection left idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server's certificate and key are, and how clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: PathBuf,
    /// PEM: the CA certificate(s) that sign client certificates. Without it
    /// no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// Refuse, at the TLS layer, connections without a valid client
    /// certificate (needs `client_ca`). Otherwise a client certificate is
    /// optional — but still verified when presented.
    pub require_client_cert: bool,
}

/// Why the TLS configuration, or a client certificate, cannot be used. Each
/// message names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error(
        "{}: no certificate in this PEM file (expected a `-----BEGIN CERTIFICATE-----` block)",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error(
        "{}: no private key in this PEM file (expected a `-----BEGIN PRIVATE KEY-----`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: invalid certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: bad client CA: {reason}", path.display())]
    BadClientCa { path: PathBuf, reason: String },
    #[error("require_client_cert needs client_ca, the CA that signs the client certificates")]
    RequireWithoutCa,
    #[error("cannot read the client certificate: {0}")]
    ClientCertificate(String),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The rustls configuration for `opts`: TLS 1.2 and 1.3 with the *ring*
/// provider's safe defaults, ALPN `http/1.1`.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let chain: Vec<CertificateDer<'static>> = pem_items(&opts.cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: opts.cert.clone(),
        });
    }
    let key = load_key(&opts.key)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: opts.key.clone(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; the handshake will.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: opts.cert.clone(),
                key: opts.key.clone(),
            });
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: opts.cert.clone(),
                reason: e.to_string(),
            });
        }
    }

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match &opts.client_ca {
        None if opts.require_client_cert => return Err(TlsError::RequireWithoutCa),
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(
            ca,
            opts.require_client_cert,
            provider,
        )?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    path: &Path,
    required: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad = |reason: String| TlsError::BadClientCa {
        path: path.to_owned(),
        reason,
    };
    let cas: Vec<CertificateDer<'static>> = pem_items(path)?;
    if cas.is_empty() {
        return Err(bad(
            "no certificate in this PEM file (expected a `-----BEGIN CERTIFICATE-----` block)"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| bad(format!("certificate #{}: {e}", i + 1)))?;
    }
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !required {
        verifier = verifier.allow_unauthenticated();
    }
    verifier.build().map_err(|e| bad(e.to_string()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Every PEM block of type `T` in the file at `path`.
fn pem_items<T: PemObject>(path: &Path) -> Result<Vec<T>, TlsError> {
    let bytes = read(path)?;
    T::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e))
}

/// The first private key in the file at `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = item.map_err(|e| pem_error(path, e))?;
        if let Some(key) = PrivateKeyDer::from_pem(kind, der) {
            return Ok(key);
        }
    }
    Err(TlsError::NoKey {
        path: path.to_owned(),
    })
}

/// A verified client certificate: a request extension on every request of a
/// connection that presented one (`Extension<ClientCertificate>`, or
/// `Option<Extension<ClientCertificate>>` where it is optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject DN, RFC 4514 style: most specific first (`CN=…,O=…,C=…`),
    /// special characters escaped; attributes that are not strings as
    /// `OID=#hex`.
    pub subject: String,
    /// The subject's (most specific) common name.
    pub common_name: Option<String>,
    /// The subjectAltName entries, in certificate order: DNS names, email
    /// addresses, URIs, and IP addresses (as text); other kinds are left out.
    pub sans: Vec<String>,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl ClientCertificate {
    /// Reads subject, common name and subjectAltNames from a DER certificate
    /// (this does not verify it: the TLS handshake did).
    pub fn from_der(der: &[u8]) -> Result<ClientCertificate, TlsError> {
        let bad = |e: x509_cert::der::Error| TlsError::ClientCertificate(e.to_string());
        let cert = x509_cert::Certificate::from_der(der).map_err(bad)?;
        let tbs = &cert.tbs_certificate;
        let common_name = tbs
            .subject
            .0
            .iter()
            .rev()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == COMMON_NAME)
            .and_then(|atv| directory_string(&atv.value));
        let mut sans = Vec::new();
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id != SubjectAltName::OID {
                continue;
            }
            let names = SubjectAltName::from_der(ext.extn_value.as_bytes()).map_err(bad)?;
            for name in names.0 {
                match name {
                    GeneralName::DnsName(s)
                    | GeneralName::Rfc822Name(s)
                    | GeneralName::UniformResourceIdentifier(s) => sans.push(s.to_string()),
                    GeneralName::IpAddress(ip) => {
                        let ip: Option<IpAddr> = match ip.as_bytes() {
                            b @ &[_, _, _, _] => <[u8; 4]>::try_from(b)
                                .ok()
                                .map(|o| Ipv4Addr::from(o).into()),
                            b if b.len() == 16 => <[u8; 16]>::try_from(b)
                                .ok()
                                .map(|o| Ipv6Addr::from(o).into()),
                            _ => None,
                        };
                        sans.extend(ip.map(|ip| ip.to_string()));
                    }
                    _ => {}
                }
            }
        }
        Ok(ClientCertificate {
            subject: tbs.subject.to_string(),
            common_name,
            sans,
            der: der.to_vec(),
        })
    }
}

/// A DirectoryString (or IA5String) attribute value as text.
fn directory_string(value: &x509_cert::der::Any) -> Option<String> {
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.to_string()),
        Tag::PrintableString => PrintableStringRef::try_from(value)
            .ok()
            .map(|s| s.to_string()),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.to_string()),
        Tag::TeletexString => TeletexStringRef::try_from(value)
            .ok()
            .map(|s| s.to_string()),
        Tag::BmpString => value
            .decode_as::<BmpString>()
            .ok()
            .map(|s| s.chars().collect()),
        _ => None,
    }
}

/// One `[[access.certificates]]` rule: which client certificates it matches,
/// and the principal they become.
///
/// A rule sets `subject_cn`, `san` or both; when both, the certificate must
/// match both. Matching is exact (case-sensitive, byte for byte): `subject_cn`
/// against the certificate's common name, `san` against any of its
/// subjectAltNames (DNS name, email, URI, IP address).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawCertRule")]
pub struct CertRule {
    pub subject_cn: Option<String>,
    pub san: Option<String>,
    pub role: Role,
    /// The principal's id (`actor` of the traces it writes).
    pub name: String,
    /// May write traces on behalf of any actor.
    pub trusted_proxy: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertRule {
    subject_cn: Option<String>,
    san: Option<String>,
    role: Role,
    name: String,
    #[serde(default)]
    trusted_proxy: bool,
}

impl TryFrom<RawCertRule> for CertRule {
    type Error = String;

    fn try_from(r: RawCertRule) -> Result<CertRule, String> {
        if r.subject_cn.as_deref().is_some_and(str::is_empty) || r.san.as_deref() == Some("") {
            return Err(format!(
                "certificate rule `{}`: subject_cn and san must not be empty",
                r.name
            ));
        }
        if r.subject_cn.is_none() && r.san.is_none() {
            return Err(format!(
                "certificate rule `{}` needs subject_cn or san: a rule without either would match every certificate",
                r.name
            ));
        }
        if r.name.trim().is_empty() {
            return Err("a certificate rule needs a name".into());
        }
        Ok(CertRule {
            subject_cn: r.subject_cn,
            san: r.san,
            role: r.role,
            name: r.name,
            trusted_proxy: r.trusted_proxy,
        })
    }
}

impl CertRule {
    /// Whether `cert` matches every criterion this rule sets (a rule that
    /// sets none matches nothing).
    pub fn matches(&self, cert: &ClientCertificate) -> bool {
        if self.subject_cn.is_none() && self.san.is_none() {
            return false;
        }
        let cn_ok = self
            .subject_cn
            .as_ref()
            .is_none_or(|cn| cert.common_name.as_ref() == Some(cn));
        let san_ok = self
            .san
            .as_ref()
            .is_none_or(|san| cert.sans.iter().any(|s| s == san));
        cn_ok && san_ok
    }
}

/// The principal of the first rule that `cert` matches; `None` if none does.
pub fn certificate_principal(cert: &ClientCertificate, rules: &[CertRule]) -> Option<Principal> {
    let rule = rules.iter().find(|r| r.matches(cert))?;
    Some(Principal {
        id: rule.name.clone(),
        auth: "mtls".into(),
        roles: vec![rule.role],
        trusted_proxy: rule.trusted_proxy,
        method: AuthMethod::Certificate {
            subject: cert.subject.clone(),
        },
    })
}

/// Serves `app` over HTTP/1.1 on TLS until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish, closes idle connections, and
/// returns once every connection is gone.
///
/// Each connection runs in its own task: its TLS handshake must finish within
/// [`HANDSHAKE_TIMEOUT`] (failures and timeouts are logged at debug with the
/// peer address), each request's headers within [`HEADER_READ_TIMEOUT`].
/// Requests carry `ConnectInfo<SocketAddr>` and, when the client presented a
/// verified certificate, a [`ClientCertificate`].
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    accept_loop(listener, shutdown, "TLS", move |tcp, peer, stop| {
        tokio::spawn(connection(
            tcp,
            peer,
            acceptor.clone(),
            http.clone(),
            app.clone(),
            stop,
        ));
    })
    .await
}

/// Accepts connections until `shutdown`, handing each (with TCP_NODELAY set)
/// to `on_connection` with a receiver that turns `true` when the server
/// stops; then waits until every connection has let go of it.
async fn accept_loop(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    what: &str,
    mut on_connection: impl FnMut(TcpStream, SocketAddr, watch::Receiver<bool>),
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::error!(error = %e, "{what} listener: accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // Small answers (201s) must leave at once, not wait for delayed ACKs.
        let _ = tcp.set_nodelay(true);
        on_connection(tcp, peer, stop_rx.clone());
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: handshake (bounded), then HTTP/1.1 until the client
/// leaves or the server stops.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    http: http1::Builder,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    // Only a verifier-accepted certificate gets here: without `client_ca` no
    // client certificate is asked for.
    let client_cert = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(der) => match ClientCertificate::from_der(der) {
            Ok(cert) => Some(cert),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "client certificate verified but unreadable: connection closed");
                return;
            }
        },
    };
    serve_http(tls, peer, client_cert, http, app, stop).await;
}

/// HTTP/1.1 on one accepted connection (TLS or plain) until the client
/// leaves or the server stops; every request gets `ConnectInfo` and, when
/// present, the verified client certificate.
async fn serve_http<IO>(
    io: IO,
    peer: SocketAddr,
    client_cert: Option<ClientCertificate>,
    http: http1::Builder,
    app: Router,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &client_cert {
            req.extensions_mut().insert(cert.clone());
        }
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut conn = pin!(http.serve_connection(TokioIo::new(io), service));
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Plain HTTP with the same connection handling as [`serve_tls`]: a task
/// per connection, request headers within [`HEADER_READ_TIMEOUT`] (so a
/// silent client cannot hold a connection open), graceful shutdown.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    accept_loop(listener, shutdown, "HTTP", move |tcp, peer, stop| {
        tokio::spawn(serve_http(tcp, peer, None, http.clone(), app.clone(), stop));
    })
    .await
}
