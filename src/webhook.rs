//! Meta's signed webhooks (routes with `auth: meta_signature`).
//!
//! Meta signs each delivery with `X-Hub-Signature-256: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body under the app secret, and subscribes an
//! endpoint with a `GET` handshake (`hub.mode=subscribe`,
//! `hub.verify_token`, `hub.challenge`). Both checks are pure functions;
//! the proxy reads the body and calls them before anything goes upstream.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Largest body the gateway buffers to check a signature: pingora keeps at
/// most 64 KiB of a request body for re-sending, which is what forwarding a
/// pre-read body relies on.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

/// Why a webhook was refused (all map to 403 `signature_invalid`, except
/// an oversized body which is 413 `body_too_large`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("X-Hub-Signature-256 header missing")]
    MissingSignature,
    #[error("X-Hub-Signature-256 is not `sha256=` and 64 hex digits")]
    MalformedSignature,
    #[error("signature does not match the body")]
    Mismatch,
    #[error("webhook body larger than the configured cap")]
    TooLarge,
    #[error("subscription handshake with a wrong mode or verify token")]
    BadHandshake,
}

/// The app secret and handshake token, compiled from config.
#[derive(Clone)]
pub struct MetaWebhook {
    app_secret: Vec<u8>,
    verify_token: Option<String>,
    pub max_body: usize,
}

impl std::fmt::Debug for MetaWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaWebhook")
            .field("app_secret", &"<redacted>")
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl MetaWebhook {
    pub fn new(
        app_secret: impl Into<Vec<u8>>,
        verify_token: Option<String>,
        max_body: usize,
    ) -> Self {
        MetaWebhook {
            app_secret: app_secret.into(),
            verify_token,
            max_body: max_body.min(MAX_WEBHOOK_BODY),
        }
    }

    /// Check `X-Hub-Signature-256` against the raw body, in constant time.
    pub fn verify(&self, signature_header: Option<&[u8]>, body: &[u8]) -> Result<(), WebhookError> {
        if body.len() > self.max_body {
            return Err(WebhookError::TooLarge);
        }
        let header = signature_header.ok_or(WebhookError::MissingSignature)?;
        let hex_sig = header
            .strip_prefix(b"sha256=")
            .ok_or(WebhookError::MalformedSignature)?;
        let mut presented = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut presented)
            .map_err(|_| WebhookError::MalformedSignature)?;
        let expected = self.sign(body);
        if bool::from(expected.ct_eq(&presented)) {
            Ok(())
        } else {
            Err(WebhookError::Mismatch)
        }
    }

    /// Answer Meta's subscription handshake from the query string: the
    /// challenge to echo back, if mode and verify token are right. `None`
    /// when no verify token is configured (the handshake is then passed
    /// through to the upstream).
    pub fn handshake(&self, query: &str) -> Option<Result<String, WebhookError>> {
        let expected = self.verify_token.as_deref()?;
        let mut mode = None;
        let mut token = None;
        let mut challenge = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "hub.mode" => mode = Some(v),
                "hub.verify_token" => token = Some(v),
                "hub.challenge" => challenge = Some(v),
                _ => {}
            }
        }
        let token_ok = token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
        Some(match (mode.as_deref(), token_ok, challenge) {
            // The challenge is echoed as text/plain; only digits are
            // echoed so the endpoint cannot be used to reflect content.
            (Some("subscribe"), true, Some(c))
                if !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(c)
            }
            _ => Err(WebhookError::BadHandshake),
        })
    }

    /// `sha256=<hex>` for `body`: what Meta would send (tests, tooling).
    pub fn signature_header(&self, body: &[u8]) -> String {
        format!("sha256={}", hex::encode(self.sign(body)))
    }

    fn sign(&self, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.app_secret) {
            Ok(m) => m,
            Err(_) => return [0u8; 32],
        };
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> MetaWebhook {
        MetaWebhook::new("app-secret-123", Some("verify-me".into()), 1024)
    }

    #[test]
    fn a_correct_signature_verifies() {
        let h = hook();
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let sig = h.signature_header(body);
        assert_eq!(h.verify(Some(sig.as_bytes()), body), Ok(()));
    }

    #[test]
    fn known_vector_matches_meta_s_scheme() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let h = MetaWebhook::new("key", None, 1024);
        assert_eq!(
            h.signature_header(b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn bad_signatures_are_refused_with_the_reason() {
        let h = hook();
        let body = b"{}";
        let good = h.signature_header(body);
        let tampered_body = b"{ }";
        assert_eq!(h.verify(None, body), Err(WebhookError::MissingSignature));
        assert_eq!(
            h.verify(Some(b"sha1=abcd"), body),
            Err(WebhookError::MalformedSignature)
        );
        assert_eq!(
            h.verify(Some(b"sha256=zz"), body),
            Err(WebhookError::MalformedSignature)
        );
        assert_eq!(
            h.verify(Some(good.as_bytes()), tampered_body),
            Err(WebhookError::Mismatch)
        );
        let other = MetaWebhook::new("another-secret", None, 1024).signature_header(body);
        assert_eq!(
            h.verify(Some(other.as_bytes()), body),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            h.verify(Some(good.as_bytes()), &[b'x'; 2048]),
            Err(WebhookError::TooLarge)
        );
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_the_right_token() {
        let h = hook();
        assert_eq!(
            h.handshake("hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"),
            Some(Ok("1158201444".to_string()))
        );
        assert_eq!(
            h.handshake("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"),
            Some(Err(WebhookError::BadHandshake))
        );
        assert_eq!(
            h.handshake("hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=<script>"),
            Some(Err(WebhookError::BadHandshake)),
            "a non-numeric challenge is never reflected"
        );
        let passthrough = MetaWebhook::new("s", None, 10);
        assert_eq!(passthrough.handshake("hub.mode=subscribe"), None);
    }
}
