//! TLS for flowgate's listeners: rustls server configurations built from
//! PEM files, on the ring provider.
//!
//! * [`server_config`] with a CA is mutual TLS, as Open vSwitch speaks it to
//!   its controllers (`ovs-vsctl set-ssl` and `ssl:` targets): the server
//!   shows its certificate and requires one from the client, signed by that
//!   CA (with `ovs-pki`, `switchca/cacert.pem`); a client without one, or
//!   with one from another CA, never completes the handshake.
//! * Without a CA it is plain server TLS, for HTTPS clients (boto3, the AWS
//!   CLI) that authenticate by signing their requests instead.
//!
//! Every file is read once, when the configuration is built: a missing or
//! unreadable file is an error at startup, not at the first connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls::ServerConfig;
pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::server::TlsStream;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {source}")]
    Pem {
        /// Which file: "certificate", "private key", "CA certificate".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no item of the kind it should.
    #[error("{what} {path}: no {what} in the file (expected PEM)")]
    Empty {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate is not usable as a trust anchor.
    #[error("CA certificate {path}: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    #[error("CA certificates {path}: {source}")]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// Why.
        source: rustls::server::VerifierBuilderError,
    },
    /// The certificate and key do not make a server identity (a key that
    /// does not belong to the certificate, a key type rustls refuses).
    #[error("certificate {cert} with key {key}: {source}")]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

/// Why a connection's TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not finish the handshake in time.
    #[error("TLS handshake not completed within {0:?}")]
    Timeout(Duration),
    /// The handshake failed: no client certificate, one of another CA, a
    /// protocol the peer does not speak, a connection closed halfway. The
    /// text is rustls's own ("invalid peer certificate: UnknownIssuer").
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

/// The cryptography flowgate uses: ring's, chosen explicitly rather than
/// as a process-wide default that another dependency could change.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting the certificate chain in `cert` (PEM,
/// the server's certificate first) with the private key in `key` (PEM:
/// PKCS#8, PKCS#1 RSA or SEC1 EC). With `client_ca`, clients must present
/// a certificate that the CA certificates in that file (PEM, one or more)
/// signed; without, clients are not asked for one. `alpn` lists the
/// application protocols offered (`b"http/1.1"`), empty for none.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates("certificate", cert)?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            path: key.to_path_buf(),
        },
        source => TlsError::Pem {
            what: "private key",
            path: key.to_path_buf(),
            source,
        },
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        // Only fails when the provider lacks every safe version; ring has them.
        .map_err(|source| TlsError::Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for anchor in read_certificates("CA certificate", ca)? {
                roots.add(anchor).map_err(|source| TlsError::BadCa {
                    path: ca.to_path_buf(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|source| TlsError::Verifier {
                    path: ca.to_path_buf(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|source| TlsError::Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file; at least one.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// Completes the server side of a TLS handshake on `stream` with `config`
/// within `timeout`: a peer that connects and says nothing must not hold a
/// task (and its socket) forever.
pub async fn accept<S>(
    config: &Arc<ServerConfig>,
    stream: S,
    timeout: Duration,
) -> Result<TlsStream<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = TlsAcceptor::from(config.clone());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(HandshakeError::Failed(err)),
        Err(_) => Err(HandshakeError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("flowgate-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let missing = Path::new("/nonexistent/flowgate/cert.pem");
        let err = server_config(missing, missing, None, &[])
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("certificate /nonexistent/flowgate/cert.pem")),
            "{err:?}"
        );
        let empty = temp_file("empty.pem", "not PEM at all\n");
        let err = server_config(&empty, &empty, None, &[]).err();
        assert!(
            matches!(
                &err,
                Some(TlsError::Empty {
                    what: "certificate",
                    ..
                })
            ),
            "{err:?}"
        );
        let _ = std::fs::remove_file(empty);
    }
}
