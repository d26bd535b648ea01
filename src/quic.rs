//! QUIC and TLS set-up shared by `servers.http3` and the `http3` store.
//!
//! reflector.go's HTTP/3 server offers ALPN `http3-reflector-server` with a throw-away
//! self-signed certificate, and its client skips certificate verification. We interoperate with
//! that (both ALPNs offered, a self-signed certificate unless `cert_file`/`key_file` are set,
//! `insecure_skip_verify` on the store) but verify by default, because an unverified origin is
//! only protected by the SHA-384 check on each blob, not against someone reading the traffic.
//!
//! Flow-control windows are sized for 2 MiB blobs on long links: a stream window of 4 MiB lets a
//! whole blob be in flight without the receiver having to grant more credit mid-blob (one RTT
//! each time on a 100 ms link), and the connection window lets many such streams share one
//! connection. rustls uses the `ring` provider: it builds without cmake or nasm.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{Http3ServerConfig, Http3StoreConfig};

/// reflector.go's ALPN protocol id.
pub const ALPN_REFLECTOR: &[u8] = b"http3-reflector-server";
/// The standard HTTP/3 ALPN, for curl, browsers and other h3 clients.
pub const ALPN_H3: &[u8] = b"h3";

/// Per-stream receive window: two full blobs.
pub const STREAM_RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;
/// Per-connection receive window: many blobs in flight on one connection.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 32 * 1024 * 1024;
/// How much unacknowledged data one connection may have in flight towards the peer.
pub const SEND_WINDOW: u64 = 32 * 1024 * 1024;
/// The server's send window, smaller: it is also how many bytes QUIC buffers (copies, until
/// acknowledged) for one connection, and a client that stops acknowledging pins all of it, so
/// it is what one connection may cost outside the in-flight budget. Two blobs: ~330 Mbit/s per
/// connection at 100 ms RTT.
pub const SERVER_SEND_WINDOW: u64 = 4 * 1024 * 1024;

/// The crypto provider for every QUIC endpoint (explicit, so no process-wide default is needed).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings common to both ends: the large windows, and the idle timeout.
pub fn transport_config(idle_timeout: Duration) -> anyhow::Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(quinn::VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .max_idle_timeout(Some(idle_timeout.try_into().with_context(|| {
            format!("idle timeout {idle_timeout:?} is too large for QUIC")
        })?));
    Ok(t)
}

/// The certificate and key the server presents, and whether they were generated here.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub self_signed: bool,
}

/// Loads `cert_file`/`key_file`, or generates a self-signed certificate when neither is set.
pub fn server_identity(cfg: &Http3ServerConfig) -> anyhow::Result<ServerIdentity> {
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => Ok(ServerIdentity {
            chain: load_certs(cert)?,
            key: PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading private key from {}", key.display()))?,
            self_signed: false,
        }),
        (None, None) => {
            let (chain, key) = self_signed(&[])?;
            Ok(ServerIdentity {
                chain,
                key,
                self_signed: true,
            })
        }
        _ => bail!("servers.http3: set both cert_file and key_file, or neither (self-signed)"),
    }
}

/// A fresh self-signed certificate for `localhost`, the loopback addresses, this host's name
/// and `extra_names`.
pub fn self_signed(
    extra_names: &[&str],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certified = rcgen::generate_simple_self_signed(san_list(extra_names))
        .context("generating a self-signed cert")?;
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("encoding the generated key: {e}"))?;
    Ok((vec![certified.cert.der().clone()], key))
}

/// A fresh self-signed certificate and its key as PEM text (for operators and tests that want
/// a fixed `cert_file`/`key_file` pair to pin with `ca_file`).
pub fn self_signed_pem(extra_names: &[&str]) -> anyhow::Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(san_list(extra_names))
        .context("generating a self-signed cert")?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn san_list(extra_names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let host = crate::trace::host_name();
    if !host.is_empty() && !names.iter().any(|n| **n == *host) {
        names.push(host.to_string());
    }
    names.extend(extra_names.iter().map(|n| n.to_string()));
    names
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The QUIC server configuration: TLS 1.3 with both ALPNs, the server's transport limits.
pub fn server_config(
    cfg: &Http3ServerConfig,
    identity: ServerIdentity,
) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .context("servers.http3: certificate and key do not form a usable pair")?;
    tls.alpn_protocols = vec![ALPN_REFLECTOR.to_vec(), ALPN_H3.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("TLS config unusable for QUIC")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = transport_config(cfg.idle_timeout)?;
    transport
        .send_window(SERVER_SEND_WINDOW)
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(cfg.max_streams_per_connection))
        // HTTP/3 needs three unidirectional streams per side (control, QPACK encoder/decoder);
        // a few more allow for GREASE streams.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(8));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// How a client checks the server's certificate.
#[derive(Debug, Clone)]
pub enum Verify {
    /// The Mozilla (webpki) root set: for upstreams with publicly trusted certificates.
    WebPki,
    /// Certificates from this PEM file as the only trust anchors.
    CaFile(std::path::PathBuf),
    /// Any certificate (reflector.go's behaviour with its self-signed peers).
    Insecure,
}

impl Verify {
    pub fn for_store(cfg: &Http3StoreConfig) -> anyhow::Result<Verify> {
        match (&cfg.ca_file, cfg.insecure_skip_verify) {
            (Some(_), true) => bail!("http3 store: set ca_file or insecure_skip_verify, not both"),
            (Some(path), false) => Ok(Verify::CaFile(path.clone())),
            (None, true) => Ok(Verify::Insecure),
            (None, false) => Ok(Verify::WebPki),
        }
    }
}

/// A QUIC client configuration offering `alpn`, checking certificates per `verify`.
pub fn client_config(
    verify: &Verify,
    alpn: &[&[u8]],
    idle_timeout: Duration,
) -> anyhow::Result<quinn::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?;
    let mut tls = match verify {
        Verify::WebPki => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .with_context(|| format!("using a certificate in {} as CA", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth(),
    };
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .context("TLS config unusable for QUIC")?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = transport_config(idle_timeout)?;
    // Keep the one reused upstream connection warm instead of paying a handshake per miss.
    transport.keep_alive_interval(Some(idle_timeout / 3));
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// Skips the certificate check but still verifies the handshake signature, so the connection
/// is at least bound to whatever key the peer presented.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
