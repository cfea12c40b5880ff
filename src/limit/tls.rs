//! TLS to Redis (`rediss://`): which servers are trusted, the certificate
//! this side shows when Redis checks clients (`tls-auth-clients yes`), and
//! the handshake.
//!
//! Built once per config snapshot from certificates the config loader
//! read, so a bad bundle or a key that does not fit its certificate fails
//! at load, never on the request path. The crypto is the one pingora uses
//! (rustls with ring), and the default trust is the system's store, as for
//! upstream connections. There is deliberately no way to skip verification:
//! the keys sent to Redis name staff and client addresses.

use std::fmt;
use std::io;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Which certificate authorities may vouch for Redis.
#[derive(Debug)]
pub enum Trust {
    /// The system's store (`/etc/ssl/certs`, or `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`): managed Redis with a public certificate.
    System,
    /// These and no others (a private CA, from `ca_file`): a server
    /// certificate from any public CA is refused.
    Only(Vec<CertificateDer<'static>>),
}

/// The certificate chain (leaf first) and key shown to a Redis that
/// checks its clients.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the system's CA certificates: {0}")]
    SystemRoots(io::Error),
    #[error("the system has no usable CA certificates: install ca-certificates, or trust your Redis's CA with ca_file")]
    NoSystemRoots,
    #[error("the CA bundle holds no certificate")]
    EmptyBundle,
    #[error("certificate {index} of the CA bundle is not a usable CA certificate: {error}")]
    BadCa { index: usize, error: rustls::Error },
    #[error("the client certificate and key do not go together: {0}")]
    ClientIdentity(rustls::Error),
    #[error("TLS set-up failed: {0}")]
    Config(rustls::Error),
}

/// `host` is not something a certificate can be checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is neither a DNS name nor an IP address a certificate can name")]
pub struct BadServerName(pub String);

/// The client side of TLS to one Redis, ready to connect.
#[derive(Clone)]
pub struct RedisTls {
    connector: TlsConnector,
    /// SHA-256 over the trusted roots and the client identity: two
    /// settings are the same exactly when these are, so a reload keeps the
    /// store (and its pooled connections) only if no certificate changed.
    fingerprint: [u8; 32],
    system_roots: bool,
    client_auth: bool,
}

impl RedisTls {
    pub fn new(trust: Trust, client: Option<ClientIdentity>) -> Result<RedisTls, TlsSetupError> {
        let mut digest = Sha256::new();
        let system_roots = matches!(trust, Trust::System);
        let mut roots = RootCertStore::empty();
        match trust {
            Trust::System => {
                let found =
                    rustls_native_certs::load_native_certs().map_err(TlsSetupError::SystemRoots)?;
                digest.update(b"system");
                for der in &found {
                    hash_der(&mut digest, der);
                }
                // Some stores carry certificates rustls cannot use (old
                // formats); the others still count.
                let (added, _ignored) = roots.add_parsable_certificates(found);
                if added == 0 {
                    return Err(TlsSetupError::NoSystemRoots);
                }
            }
            Trust::Only(bundle) => {
                if bundle.is_empty() {
                    return Err(TlsSetupError::EmptyBundle);
                }
                digest.update(b"only");
                for (index, der) in bundle.into_iter().enumerate() {
                    hash_der(&mut digest, &der);
                    roots
                        .add(der)
                        .map_err(|error| TlsSetupError::BadCa { index, error })?;
                }
            }
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Config)?
            .with_root_certificates(roots);
        let client_auth = client.is_some();
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(ClientIdentity { chain, key }) => {
                digest.update(b"client");
                for der in &chain {
                    hash_der(&mut digest, der);
                }
                hash_der(&mut digest, key.secret_der());
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsSetupError::ClientIdentity)?
            }
        };
        Ok(RedisTls {
            connector: TlsConnector::from(Arc::new(config)),
            fingerprint: digest.finalize().into(),
            system_roots,
            client_auth,
        })
    }

    /// TLS over `stream`, checking Redis's certificate against `host` (the
    /// URL's host, also sent as SNI when it is a name).
    pub async fn handshake<S>(&self, host: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
    }
}

/// The name a server certificate must carry for `host`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, BadServerName> {
    ServerName::try_from(host.to_string()).map_err(|_| BadServerName(host.to_string()))
}

/// Whether an I/O error is TLS refusing or failing (a bad certificate,
/// an alert from Redis, bytes that are not TLS) rather than the network.
pub fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

impl PartialEq for RedisTls {
    fn eq(&self, other: &RedisTls) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for RedisTls {}

/// Shown in logs: where trust comes from, never key material.
impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field(
                "trust",
                &if self.system_roots {
                    "system"
                } else {
                    "ca_file"
                },
            )
            .field("client_certificate", &self.client_auth)
            .finish()
    }
}

/// Length-prefixed, so that two lists of certificates cannot hash alike
/// by splitting the same bytes differently.
fn hash_der(digest: &mut Sha256, der: &[u8]) {
    digest.update((der.len() as u64).to_be_bytes());
    digest.update(der);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (
        rcgen::CertificateParams,
        rcgen::KeyPair,
        CertificateDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let der = cert.der().clone();
        (params, key, der)
    }

    fn leaf(
        ca: &(
            rcgen::CertificateParams,
            rcgen::KeyPair,
            CertificateDer<'static>,
        ),
    ) -> ClientIdentity {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params = rcgen::CertificateParams::new(vec!["chatwarden".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::from_params(&ca.0, &ca.1);
        let cert = params
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("{e}"));
        ClientIdentity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn settings_are_equal_exactly_when_their_certificates_are() {
        let a = ca();
        let b = ca();
        let only = |c: &CertificateDer<'static>| Trust::Only(vec![c.clone()]);
        let tls = |t, id| RedisTls::new(t, id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tls(only(&a.2), None), tls(only(&a.2), None));
        assert_ne!(
            tls(only(&a.2), None),
            tls(only(&b.2), None),
            "another CA is another store"
        );
        assert_ne!(
            tls(only(&a.2), None),
            tls(only(&a.2), Some(leaf(&a))),
            "a client certificate is part of the settings"
        );
        assert_ne!(
            tls(only(&a.2), Some(leaf(&a))),
            tls(only(&a.2), Some(leaf(&a))),
            "a renewed client certificate is a change"
        );
    }

    #[test]
    fn bad_material_is_refused_when_built() {
        let a = ca();
        assert!(matches!(
            RedisTls::new(Trust::Only(Vec::new()), None),
            Err(TlsSetupError::EmptyBundle)
        ));
        assert!(matches!(
            RedisTls::new(
                Trust::Only(vec![CertificateDer::from(b"not DER".to_vec())]),
                None
            ),
            Err(TlsSetupError::BadCa { index: 0, .. })
        ));
        // A certificate with another certificate's key.
        let mut mismatched = leaf(&a);
        mismatched.key = leaf(&a).key;
        let e = RedisTls::new(Trust::Only(vec![a.2.clone()]), Some(mismatched))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.starts_with("the client certificate and key do not go together")),
            "{e:?}"
        );
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let a = ca();
        let t = RedisTls::new(Trust::Only(vec![a.2.clone()]), Some(leaf(&a)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{t:?}"),
            "RedisTls { trust: \"ca_file\", client_certificate: true }"
        );
    }

    #[test]
    fn hosts_become_server_names() {
        assert!(matches!(
            server_name("redis.internal.example"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.5"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert_eq!(
            server_name("bad host"),
            Err(BadServerName("bad host".into()))
        );
    }
}
