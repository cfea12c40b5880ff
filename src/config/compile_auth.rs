//! Compiling the `auth` section: token rules, keys (static files now, the
//! JWKS endpoint at start), revocation lists and Meta's webhook secret.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::compile::Compiler;
use super::duration::{parse_duration, parse_size};
use super::raw::{RawAuth, RawBadSignatures, Str};
use super::snapshot::{AuthRuntime, JwksConfig};
use crate::auth::origin::{parse_origin, TrustedOrigins};
use crate::auth::{
    AuthSettings, BadSignatureLimit, ClaimPath, JwksOptions, KeySet, KeyStore, Verifier,
};
use crate::revocation::shared::DEFAULT_SYNC_EVERY;
use crate::revocation::{RevocationList, DEFAULT_RUNTIME_TTL, MAX_RUNTIME_TTL};
use crate::webhook::{MetaWebhook, MAX_WEBHOOK_BODY};

impl Compiler<'_> {
    pub(super) fn auth(&mut self, a: &RawAuth) -> Option<AuthRuntime> {
        let issuer = self.string(&a.issuer)?;
        let audiences: Vec<String> = a.audiences.iter().filter_map(|s| self.string(s)).collect();
        if audiences.is_empty() {
            self.err(
                &a.issuer.referenced,
                "auth.audiences must name at least one audience".to_string(),
            );
        }
        let mut algorithms = Vec::new();
        for alg in &a.algorithms {
            match parse_algorithm(&alg.value) {
                Ok(x) => algorithms.push(x),
                Err(msg) => self.err(&alg.referenced, msg),
            }
        }
        if algorithms.is_empty() {
            self.err(
                &a.issuer.referenced,
                "auth.algorithms must list at least one algorithm".to_string(),
            );
        }
        let mut settings = AuthSettings::new(issuer, audiences, algorithms);
        if let Some(l) = &a.leeway {
            match parse_duration(&l.value) {
                Ok(d) => settings.leeway = d,
                Err(msg) => self.err(&l.referenced, msg),
            }
        }
        if let Some(n) = &a.cache_entries {
            settings.cache_entries = n.value as usize;
        }
        if let Some(b) = &a.bad_signatures {
            settings.bad_signatures = self.bad_signatures(b);
        }
        if let Some(p) = &a.claims.subject {
            settings.claims.subject = self.claim_path(p)?;
        }
        if let Some(p) = &a.claims.roles {
            settings.claims.roles = self.claim_path(p)?;
        }
        for (name, path) in &a.claims.attributes {
            let p = self.claim_path(path)?;
            settings.claims.attributes.push((name.clone(), p));
        }
        settings.mfa.amr_any = a.mfa.amr_any.iter().map(|s| s.value.clone()).collect();
        settings.mfa.acr_any = a.mfa.acr_any.iter().map(|s| s.value.clone()).collect();

        let mut keys = KeySet::new();
        for k in &a.keys {
            let text = self.string(&k.file)?;
            let path = self.resolve_path(&text);
            match self.read_source(&path) {
                Ok(pem) => {
                    if let Err(e) = keys.add_pem(&k.kid.value, &pem) {
                        self.err(&k.file.referenced, format!("{}: {e}", path.display()));
                    }
                }
                Err(e) => self.err(
                    &k.file.referenced,
                    format!("cannot read key {}: {e}", path.display()),
                ),
            }
        }
        if let Some(secret) = &a.hmac_secret {
            let value = self.string(secret)?;
            if let Err(e) = keys.add_hmac_secret(None, value.as_bytes()) {
                self.err(&secret.referenced, e.to_string());
            }
        }
        let jwks = match &a.jwks_url {
            Some(url) => Some(JwksConfig {
                url: self.string(url)?,
                options: self.jwks_options(a)?,
            }),
            None => None,
        };
        if jwks.is_none() && keys.is_empty() {
            self.err(
                &a.issuer.referenced,
                "auth needs keys: a jwks_url, key files under `keys`, or an hmac_secret"
                    .to_string(),
            );
            return None;
        }
        let store = Arc::new(KeyStore::new(keys));
        let verifier = match Verifier::new(settings.clone(), store.clone()) {
            Ok(v) => v,
            Err(e) => {
                let at = a
                    .algorithms
                    .first()
                    .map_or(a.issuer.referenced, |s| s.referenced);
                self.err(&at, e.to_string());
                return None;
            }
        };

        let cookie_origins = self.cookie_origins(a);

        let subjects = self.list_file(a.revoked.subjects_file.as_ref())?;
        let jtis = self.list_file(a.revoked.jti_file.as_ref())?;
        let meta = match &a.meta_webhook {
            Some(m) => {
                let secret = self.string(&m.app_secret)?;
                let verify_token = match &m.verify_token {
                    Some(t) => Some(self.string(t)?),
                    None => None,
                };
                let max_body = match &m.max_body {
                    Some(s) => match parse_size(&s.value) {
                        Ok(n) if n as usize <= MAX_WEBHOOK_BODY => n as usize,
                        Ok(_) => {
                            self.err(
                                &s.referenced,
                                format!(
                                    "meta_webhook.max_body can be at most {}KB",
                                    MAX_WEBHOOK_BODY / 1024
                                ),
                            );
                            return None;
                        }
                        Err(msg) => {
                            self.err(&s.referenced, msg);
                            return None;
                        }
                    },
                    None => MAX_WEBHOOK_BODY,
                };
                Some(MetaWebhook::new(secret, verify_token, max_body))
            }
            None => None,
        };

        Some(AuthRuntime {
            verifier,
            keys: store,
            cookie: a.cookie.as_ref().map(|c| c.value.clone()),
            cookie_origins,
            settings,
            jwks,
            revoked: RevocationList::new(subjects, jtis),
            revoked_ttl: self
                .bounded(
                    a.revoked.runtime_ttl.as_ref(),
                    "auth.revoked.runtime_ttl",
                    (Duration::from_secs(1), MAX_RUNTIME_TTL, "1s", "30d"),
                )?
                .unwrap_or(DEFAULT_RUNTIME_TTL),
            revoked_sync_every: self
                .bounded(
                    a.revoked.sync_every.as_ref(),
                    "auth.revoked.sync_every",
                    (
                        Duration::from_millis(50),
                        Duration::from_secs(60),
                        "50ms",
                        "1m",
                    ),
                )?
                .unwrap_or(DEFAULT_SYNC_EVERY),
            meta,
        })
    }

    /// An optional duration within `(min, max, min text, max text)`;
    /// `Some(None)` when absent, `None` (with the error recorded) when it
    /// is not a duration or out of bounds.
    fn bounded(
        &mut self,
        value: Option<&Str>,
        name: &str,
        (min, max, min_text, max_text): (Duration, Duration, &str, &str),
    ) -> Option<Option<Duration>> {
        let Some(v) = value else { return Some(None) };
        match parse_duration(&v.value) {
            Ok(d) if (min..=max).contains(&d) => Some(Some(d)),
            Ok(_) => {
                self.err(
                    &v.referenced,
                    format!("{name} must be between {min_text} and {max_text}"),
                );
                None
            }
            Err(msg) => {
                self.err(&v.referenced, format!("{name}: {msg}"));
                None
            }
        }
    }

    /// `auth.cookie_origins`: bare origins, and only beside a token cookie.
    fn cookie_origins(&mut self, a: &RawAuth) -> TrustedOrigins {
        let Some(first) = a.cookie_origins.first() else {
            return TrustedOrigins::default();
        };
        if a.cookie.is_none() {
            self.err(
                &first.referenced,
                "auth.cookie_origins needs auth.cookie: without a token cookie there is nothing to protect"
                    .to_string(),
            );
            return TrustedOrigins::default();
        }
        let mut origins = Vec::new();
        for o in &a.cookie_origins {
            let Some(value) = self.string(o) else {
                continue;
            };
            match parse_origin(&value) {
                Ok(origin) => origins.push(origin),
                Err(msg) => self.err(&o.referenced, format!("auth.cookie_origins: {msg}")),
            }
        }
        TrustedOrigins::new(origins)
    }

    fn claim_path(&mut self, s: &Str) -> Option<ClaimPath> {
        match ClaimPath::new(&s.value) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(&s.referenced, e.to_string());
                None
            }
        }
    }

    /// `auth.bad_signatures`: `max: 0` turns the limit off; `per` is a
    /// whole number of seconds, at least one.
    fn bad_signatures(&mut self, b: &RawBadSignatures) -> Option<BadSignatureLimit> {
        let mut limit = BadSignatureLimit {
            max: b.max.value,
            ..BadSignatureLimit::default()
        };
        if let Some(per) = &b.per {
            match parse_duration(&per.value) {
                Ok(d) if d.as_secs() >= 1 && d.subsec_nanos() == 0 => limit.per = d,
                Ok(_) => self.err(
                    &per.referenced,
                    "auth.bad_signatures.per must be a whole number of seconds, at least 1s"
                        .to_string(),
                ),
                Err(msg) => self.err(&per.referenced, msg),
            }
        }
        (limit.max > 0).then_some(limit)
    }

    fn jwks_options(&mut self, a: &RawAuth) -> Option<JwksOptions> {
        let mut o = JwksOptions::default();
        for (field, slot) in [
            (&a.jwks.refresh, &mut o.default_refresh),
            (&a.jwks.min_refresh, &mut o.min_refresh),
            (&a.jwks.max_refresh, &mut o.max_refresh),
            (
                &a.jwks.unknown_kid_interval,
                &mut o.unknown_kid_min_interval,
            ),
        ] {
            if let Some(s) = field {
                match parse_duration(&s.value) {
                    Ok(d) => *slot = d,
                    Err(msg) => {
                        self.err(&s.referenced, msg);
                        return None;
                    }
                }
            }
        }
        Some(o)
    }

    fn list_file(&mut self, f: Option<&Str>) -> Option<Vec<String>> {
        let Some(f) = f else { return Some(Vec::new()) };
        let text = self.string(f)?;
        let path = self.resolve_path(&text);
        // Read as a source: its bytes are part of the config's version, so
        // a reload after an edit of the list applies it.
        match self.read_source(&path) {
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => Some(RevocationList::parse_lines(text)),
                Err(e) => {
                    self.err(
                        &f.referenced,
                        format!("revocation list {}: not UTF-8: {e}", path.display()),
                    );
                    None
                }
            },
            Err(e) => {
                self.err(
                    &f.referenced,
                    format!("cannot read revocation list {}: {e}", path.display()),
                );
                None
            }
        }
    }
}

/// Algorithms an operator may allow. `none` is not among them.
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        other => {
            return Err(format!(
                "algorithm `{other}` is not supported (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"
            ))
        }
    })
}
