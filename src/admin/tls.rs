//! HTTPS on the admin listener (`admin.tls`), and client certificates
//! (`admin.tls.client_ca`).
//!
//! Everything is read from the live config snapshot, so a reload that
//! read a renewed certificate or a new CA bundle applies to the next
//! handshake. A client certificate is checked twice: in the handshake
//! (one that does not chain to the CA ends it) and again on every admin
//! request against the CA bundle in force then, so a connection opened
//! before the bundle changed, or kept open past its certificate's expiry,
//! is not let through on its first check.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{
    CertificateDer, ClientCertVerified, ClientCertVerifier, ClientHello, DigitallySignedStruct,
    HandshakeSignatureValid, ResolvesServerCert, RusTlsError, SignatureScheme, UnixTime,
};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::DistinguishedName;

use crate::config::snapshot::AdminTls;
use crate::config::{ConfigStore, Snapshot};

/// The admin listener's TLS settings: HTTP/1.1 only, its certificate and
/// client-certificate check from the live snapshot. `initial` is served
/// should a snapshot ever lack one (a reload cannot remove `admin.tls`).
pub fn settings(store: &ConfigStore, initial: Arc<CertifiedKey>) -> Result<TlsSettings, String> {
    let mut settings =
        TlsSettings::with_callbacks(Box::new(KeepChain)).map_err(|e| e.to_string())?;
    settings.set_cert_resolver(Arc::new(AdminCert {
        store: store.clone(),
        initial,
    }));
    settings.set_client_cert_verifier(Arc::new(AdminClients {
        store: store.clone(),
    }));
    Ok(settings)
}

fn admin_tls(snapshot: &Snapshot) -> Option<&AdminTls> {
    snapshot.admin.as_ref().and_then(|a| a.tls.as_ref())
}

struct AdminCert {
    store: ConfigStore,
    initial: Arc<CertifiedKey>,
}

impl std::fmt::Debug for AdminCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCert").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for AdminCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.store.load();
        let live = admin_tls(&current).map(|t| t.key.clone());
        Some(live.unwrap_or_else(|| self.initial.clone()))
    }
}

/// Asks for a client certificate while the live snapshot has a
/// `client_ca`, and checks it against that. Never mandatory in the
/// handshake: the probes must answer a load balancer that has none.
struct AdminClients {
    store: ConfigStore,
}

impl std::fmt::Debug for AdminClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClients").finish_non_exhaustive()
    }
}

impl AdminClients {
    fn live(&self) -> Result<Arc<dyn ClientCertVerifier>, RusTlsError> {
        admin_tls(&self.store.load())
            .and_then(|t| t.clients.clone())
            .ok_or_else(|| {
                RusTlsError::General("admin.tls.client_ca was removed by a reload".into())
            })
    }
}

impl ClientCertVerifier for AdminClients {
    fn offer_client_auth(&self) -> bool {
        admin_tls(&self.store.load()).is_some_and(|t| t.clients.is_some())
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: the bundle lives in a snapshot this cannot lend from. An
    /// empty list tells a client to send any certificate it has.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, RusTlsError> {
        self.live()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        self.live()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        self.live()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.live()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_default()
    }
}

/// The certificate chain a client presented, kept on its connection so
/// each admin request can check it again.
struct PresentedChain(Vec<CertificateDer<'static>>);

struct KeepChain;

#[async_trait]
impl TlsAccept for KeepChain {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?;
        if chain.is_empty() {
            return None;
        }
        Some(Arc::new(PresentedChain(chain.to_vec())))
    }
}

/// Who called, by client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject, e.g. `CN=ops-alice, O=Acme Retail`.
    pub subject: String,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
}

impl std::fmt::Display for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client certificate {} (sha256 {})",
            self.subject, self.fingerprint
        )
    }
}

/// What the client's certificate says about an admin request.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// No `client_ca` is configured: none is needed.
    NotRequired,
    /// Valid under the CA bundle in force now.
    Valid(ClientCert),
    /// `client_ca` is configured and the connection carries none.
    Missing,
    /// The connection's certificate no longer passes (the bundle changed
    /// by reload, or the certificate expired since the handshake).
    Invalid(String),
}

/// Checks the certificate the request's connection presented against the
/// live `client_ca`.
pub fn presented(session: &ServerSession, snapshot: &Snapshot) -> Presented {
    let Some(verifier) = admin_tls(snapshot).and_then(|t| t.clients.as_ref()) else {
        return Presented::NotRequired;
    };
    let chain = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|d| d.extension.get::<PresentedChain>());
    let Some(PresentedChain(chain)) = chain else {
        return Presented::Missing;
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Presented::Missing;
    };
    match verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
        Ok(_) => Presented::Valid(describe(leaf)),
        Err(e) => Presented::Invalid(e.to_string()),
    }
}

fn describe(cert: &CertificateDer<'_>) -> ClientCert {
    let subject = x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "(unparsable subject)".to_string());
    let fingerprint = Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ClientCert {
        subject,
        fingerprint,
    }
}
