//! Authentication: from a bearer token to a verified [`Identity`].
//!
//! Read in the order a request meets them:
//! - [`bearer`]: the one token a request carries (`Authorization: Bearer`
//!   or a configured cookie).
//! - [`origin`]: a change authenticated by the cookie must come from a page
//!   of the gateway's own origin or a trusted one (CSRF protection).
//! - [`header`]: the JOSE header rules (algorithm allowlist, `crit`, `typ`;
//!   `jku`/`x5u`/`x5c`/`jwk` never trusted).
//! - [`keys`]: the verification keys, by `kid` and key family, so an
//!   algorithm can only ever meet a key of its own family; [`KeyStore`]
//!   swaps them atomically when the JWKS changes.
//! - [`verify`]: signature and registered claims ([`Verifier`]).
//! - [`claims`]: subject, roles and attributes read through configured paths.
//! - [`cache`]: verified tokens by digest, so a repeat costs a hash.
//! - [`failures`]: bad signatures per client; past a limit, a client's new
//!   tokens are refused unchecked for the rest of a window.
//! - [`mfa`]: MFA presence and freshness, and the RFC 9470 challenge.
//! - [`jwks`]: the identity provider's key set, fetched and refreshed as a
//!   pingora background service.
//! - [`mint`]: signing tokens for `chatwarden token` and the demo.
//!
//! Pure code apart from the JWKS background service: no config loader, no
//! proxy types. Time is always passed in (`now`, Unix seconds), so expiry is
//! tested without sleeping. Nothing here logs a token, a key or a claim value.
//!
//! [`Identity`]: crate::identity::Identity

pub mod bearer;
pub mod cache;
pub mod claims;
pub mod failures;
pub mod header;
pub mod jwks;
pub mod keys;
pub mod mfa;
pub mod mint;
pub mod origin;
pub mod prepared;
pub mod verify;

#[cfg(test)]
mod testkit;

use std::time::Duration;

use jsonwebtoken::Algorithm;

pub use bearer::bearer_token;
pub use cache::{TokenDigest, VerifiedCache};
pub use claims::{ClaimPath, ClaimPathError};
pub use failures::{BadSignatureLimit, SignatureFailures};
pub use jwks::{refresh_interval, JwksError, JwksOptions, JwksSource, JwksStats};
pub use keys::{KeyError, KeyFamily, KeySet, KeyStore, VerifyingKey};
pub use mfa::{challenge, check_mfa, MfaFailure};
pub use mint::{generate_dev_key, mint, MintError, MintKey};
pub use verify::{AuthError, Budget, SettingsError, Verified, Verifier};

/// The identity a token with these claims would carry, **without** any
/// signature or time check: for `chatwarden explain --claims` and policy
/// test cases, never for the request path.
pub fn identity_from_unchecked_claims(
    claims: &serde_json::Value,
    settings: &AuthSettings,
) -> Result<crate::identity::Identity, String> {
    let map = claims
        .as_object()
        .ok_or_else(|| "claims must be a JSON object".to_string())?;
    let exp = claims::optional_numeric_date(map, "exp")
        .map_err(|e| e.to_string())?
        .unwrap_or(i64::MAX);
    claims::identity_from_claims(map, &settings.claims, &settings.mfa, exp)
        .map_err(|e| e.to_string())
}

/// Tokens longer than this are refused before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Verified tokens remembered by default (see [`VerifiedCache`]).
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// How tokens are judged; compiled once per config load and immutable.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The token's `iss` must equal this.
    pub issuer: String,
    /// The token's `aud` (string or list) must contain one of these.
    pub audiences: Vec<String>,
    /// Explicit allowlist. HS* algorithms are refused by [`Verifier::new`]
    /// unless the key store holds an HMAC secret.
    pub algorithms: Vec<Algorithm>,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    pub claims: ClaimPaths,
    pub mfa: MfaSettings,
    /// Longer tokens are refused before parsing.
    pub max_token_bytes: usize,
    /// Capacity of the verified-token cache; 0 turns it off.
    pub cache_entries: usize,
    /// Bad signatures a client may send before its new tokens are refused
    /// unchecked; `None` turns the limit off.
    pub bad_signatures: Option<BadSignatureLimit>,
}

impl AuthSettings {
    /// Settings with the defaults for everything but the three values that
    /// have none.
    pub fn new(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        AuthSettings {
            issuer: issuer.into(),
            audiences,
            algorithms,
            leeway: DEFAULT_LEEWAY,
            claims: ClaimPaths::default(),
            mfa: MfaSettings::default(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            bad_signatures: Some(BadSignatureLimit::default()),
        }
    }
}

/// Where in the claims the identity is found.
#[derive(Debug, Clone)]
pub struct ClaimPaths {
    /// Subject (default `sub`); must be a non-empty string.
    pub subject: ClaimPath,
    /// Roles (default `roles`; e.g. `realm_access.roles` for Keycloak); a
    /// string or a list of strings. Absent means no roles.
    pub roles: ClaimPath,
    /// Named attributes (`user_id`, `teams`, …) and where to read them.
    pub attributes: Vec<(String, ClaimPath)>,
}

impl Default for ClaimPaths {
    fn default() -> Self {
        ClaimPaths {
            subject: ClaimPath::top_level("sub"),
            roles: ClaimPath::top_level("roles"),
            attributes: Vec::new(),
        }
    }
}

/// What counts as multi-factor authentication in a token.
#[derive(Debug, Clone, Default)]
pub struct MfaSettings {
    /// `amr` (RFC 8176) values any one of which means MFA happened:
    /// `mfa`, `otp`, `hwk`, `swk`, …
    pub amr_any: Vec<String>,
    /// `acr` values any one of which means MFA happened; also sent to the
    /// client as `acr_values` in the step-up challenge.
    pub acr_any: Vec<String>,
    /// Default freshness for routes that require MFA without their own.
    pub max_age: Option<Duration>,
}

impl MfaSettings {
    /// The freshness a route requires: its own `mfa_max_age`, else the
    /// default.
    pub fn effective_max_age(&self, route_max_age: Option<Duration>) -> Option<Duration> {
        route_max_age.or(self.max_age)
    }
}
