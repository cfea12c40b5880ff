//! Compiling `rate_limits` (where route rate limits count) into the limit
//! core's store, with every problem located in the file.

use std::time::Duration;

use super::compile::Compiler;
use super::duration::parse_duration;
use super::raw::{RawConfig, RawRedis, Str};
use crate::limit::redis::{RedisAddr, RedisSettings, RedisTarget};
use crate::limit::tls::{self, ClientIdentity, RedisTls, TlsSetupError, Trust};
use crate::limit::LimitStore;

/// Prepended to every Redis key unless the file says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "chatwarden:rl:";
/// How long a check waits for Redis unless the file says otherwise.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest `rate_limits.redis.timeout` accepted: every limited request
/// may wait this long when Redis is slow.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

impl Compiler<'_> {
    /// `rate_limits`: `memory` (default) or `redis`. A `redis` block is
    /// checked even when `store: memory` leaves it unused, so switching
    /// back to Redis cannot surprise.
    pub(super) fn limit_store(&mut self, raw: &RawConfig) -> LimitStore {
        let Some(section) = &raw.rate_limits else {
            return LimitStore::Memory;
        };
        let redis = section.redis.as_ref().map(|r| self.redis(r));
        match section.store.as_ref().map(|s| (s.value.as_str(), s)) {
            None | Some(("memory", _)) => LimitStore::Memory,
            Some(("redis", at)) => match redis {
                Some(Some(settings)) => LimitStore::redis(settings),
                // Already reported.
                Some(None) => LimitStore::Memory,
                None => {
                    self.err(
                        &at.referenced,
                        "rate_limits.store redis needs a rate_limits.redis section with a url"
                            .to_string(),
                    );
                    LimitStore::Memory
                }
            },
            Some((other, at)) => {
                self.err(
                    &at.referenced,
                    format!("rate_limits.store `{other}` must be memory or redis"),
                );
                LimitStore::Memory
            }
        }
    }

    fn redis(&mut self, r: &RawRedis) -> Option<RedisSettings> {
        let url = self.string(&r.url)?;
        let target = match RedisTarget::parse(&url) {
            Ok(t) => t,
            Err(e) => {
                self.err(&r.url.referenced, format!("rate_limits.redis.url: {e}"));
                return None;
            }
        };
        if target.password.is_some() && !r.url.value.contains('$') {
            self.err(
                &r.url.referenced,
                "rate_limits.redis.url has a password written in the file: take the url (or the password) from an environment variable, e.g. url: ${REDIS_URL}".to_string(),
            );
            return None;
        }
        let key_prefix = match &r.key_prefix {
            Some(p) => self.string(p)?,
            None => DEFAULT_KEY_PREFIX.to_string(),
        };
        let timeout = match &r.timeout {
            None => DEFAULT_REDIS_TIMEOUT,
            Some(t) => match parse_duration(&t.value) {
                Ok(d) if d <= MAX_REDIS_TIMEOUT => d,
                Ok(_) => {
                    self.err(
                        &t.referenced,
                        format!(
                            "rate_limits.redis.timeout may be at most {}ms: a request waits this long when Redis is slow",
                            MAX_REDIS_TIMEOUT.as_millis()
                        ),
                    );
                    return None;
                }
                Err(msg) => {
                    self.err(&t.referenced, format!("rate_limits.redis.timeout: {msg}"));
                    return None;
                }
            },
        };
        let tls = self.redis_tls(r, &target)?;
        Some(RedisSettings {
            target,
            key_prefix,
            timeout,
            tls,
        })
    }

    /// The TLS settings of a `rediss://` url, its PEM files read now (and
    /// again on every reload). `None` when something was reported.
    fn redis_tls(&mut self, r: &RawRedis, target: &RedisTarget) -> Option<Option<RedisTls>> {
        let files = [
            ("ca_file", &r.ca_file),
            ("cert_file", &r.cert_file),
            ("key_file", &r.key_file),
        ];
        if !target.tls {
            let mut ok = true;
            for (name, file) in files {
                if let Some(f) = file {
                    self.err(
                        &f.referenced,
                        format!("rate_limits.redis.{name} is only for TLS: use a rediss:// url"),
                    );
                    ok = false;
                }
            }
            return ok.then_some(None);
        }
        let host = match &target.addr {
            RedisAddr::Tcp { host, .. } => host,
            // The url parser makes TLS targets from rediss:// only.
            RedisAddr::Unix(_) => return Some(None),
        };
        if let Err(e) = tls::server_name(host) {
            self.err(
                &r.url.referenced,
                format!("rate_limits.redis.url: {e}, so its certificate cannot be checked"),
            );
            return None;
        }
        let client = match (&r.cert_file, &r.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(cert), None) => {
                self.err(
                    &cert.referenced,
                    "rate_limits.redis.cert_file needs key_file too: a client certificate goes with its key".to_string(),
                );
                return None;
            }
            (None, Some(key)) => {
                self.err(
                    &key.referenced,
                    "rate_limits.redis.key_file needs cert_file too: a client certificate goes with its key".to_string(),
                );
                return None;
            }
        };
        // Read everything before giving up, so one run reports every bad file.
        let trust = match &r.ca_file {
            None => Some(Trust::System),
            Some(f) => self
                .pem_file(f, "ca_file", Compiler::read_pem_certs)
                .map(Trust::Only),
        };
        let identity = match client {
            None => Some(None),
            Some((cert, key)) => {
                let chain = self.pem_file(cert, "cert_file", Compiler::read_pem_certs);
                let key_der = self.pem_file(key, "key_file", Compiler::read_pem_key);
                match (chain, key_der) {
                    (Some(chain), Some(key)) => Some(Some(ClientIdentity { chain, key })),
                    _ => None,
                }
            }
        };
        let (trust, identity) = (trust?, identity?);
        match RedisTls::new(trust, identity) {
            Ok(t) => Some(Some(t)),
            Err(e) => {
                let at = match (&e, &r.ca_file, &r.key_file) {
                    (TlsSetupError::BadCa { .. } | TlsSetupError::EmptyBundle, Some(f), _) => f,
                    (TlsSetupError::ClientIdentity(_), _, Some(f)) => f,
                    _ => &r.url,
                };
                self.err(&at.referenced, format!("rate_limits.redis: {e}"));
                None
            }
        }
    }

    /// A PEM file named by `key`, read with `read`; a problem is reported
    /// at the key.
    fn pem_file<T>(
        &mut self,
        f: &Str,
        key: &str,
        read: fn(&mut Self, &std::path::Path) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.string(f)?;
        let path = self.resolve_path(&text);
        match read(self, &path) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.err(&f.referenced, format!("rate_limits.redis.{key}: {msg}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::config::load_str;
    use crate::limit::redis::RedisSettings;

    /// A CA, a server certificate and a client certificate it signed, and
    /// a key that fits none of them, as PEM files in `dir`.
    fn pki(dir: &Path) {
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let client_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let client = rcgen::CertificateParams::new(vec!["chatwarden".to_string()])
            .and_then(|p| p.signed_by(&client_key, &issuer))
            .unwrap_or_else(|e| panic!("{e}"));
        let other_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        for (name, pem) in [
            ("ca.pem", ca.pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
            ("other.key", other_key.serialize_pem()),
        ] {
            std::fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// `rate_limits` with `url` (line 5, column 10) and then `extra`
    /// lines under `redis`, one key each (from line 6, values at the
    /// column after `key: `).
    fn config(url: &str, extra: &[(&str, String)]) -> String {
        let mut yaml = format!(
            "listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\nrate_limits:\n  store: redis\n  redis:\n    url: \"{url}\"\n"
        );
        for (key, value) in extra {
            yaml.push_str(&format!("    {key}: \"{value}\"\n"));
        }
        yaml
    }

    fn settings(yaml: &str) -> RedisSettings {
        let snapshot = load_str(yaml, Path::new("ok.yaml"), &HashMap::new())
            .unwrap_or_else(|e| panic!("should compile:\n{yaml}\n{e}"));
        snapshot
            .rate_limits
            .redis_settings()
            .cloned()
            .unwrap_or_else(|| panic!("a Redis store:\n{yaml}"))
    }

    fn errors(yaml: &str) -> Vec<String> {
        match load_str(yaml, Path::new("bad.yaml"), &HashMap::new()) {
            Ok(_) => panic!("config should be refused:\n{yaml}"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn file(dir: &Path, name: &str) -> String {
        dir.join(name).display().to_string()
    }

    #[test]
    fn rediss_compiles_with_a_private_ca_and_a_client_certificate() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        pki(dir.path());
        let s = settings(&config(
            "rediss://cache.internal/2",
            &[("ca_file", file(dir.path(), "ca.pem"))],
        ));
        assert!(s.target.tls);
        assert_eq!(s.target.to_string(), "rediss://cache.internal:6379/2");
        assert_eq!(
            format!("{:?}", s.tls),
            "Some(RedisTls { trust: \"ca_file\", client_certificate: false })"
        );

        let s = settings(&config(
            "rediss://cache.internal:6380",
            &[
                ("ca_file", file(dir.path(), "ca.pem")),
                ("cert_file", file(dir.path(), "client.pem")),
                ("key_file", file(dir.path(), "client.key")),
            ],
        ));
        assert_eq!(
            format!("{:?}", s.tls),
            "Some(RedisTls { trust: \"ca_file\", client_certificate: true })"
        );
    }

    #[test]
    fn rediss_without_ca_file_trusts_the_system_store() {
        let s = settings(&config("rediss://cache.example.com", &[]));
        assert_eq!(
            format!("{:?}", s.tls),
            "Some(RedisTls { trust: \"system\", client_certificate: false })",
            "this machine's CA store (ca-certificates) is the default trust"
        );
        let plain = settings(&config("redis://cache.example.com", &[]));
        assert!(plain.tls.is_none(), "redis:// stays plain text");
    }

    #[test]
    fn tls_files_need_a_rediss_url() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        pki(dir.path());
        assert_eq!(
            errors(&config(
                "redis://cache",
                &[("ca_file", file(dir.path(), "ca.pem"))]
            )),
            ["bad.yaml:6:14: rate_limits.redis.ca_file is only for TLS: use a rediss:// url"]
        );
        assert_eq!(
            errors(&config(
                "unix:///run/redis.sock",
                &[
                    ("cert_file", file(dir.path(), "client.pem")),
                    ("key_file", file(dir.path(), "client.key")),
                ]
            )),
            [
                "bad.yaml:6:16: rate_limits.redis.cert_file is only for TLS: use a rediss:// url",
                "bad.yaml:7:15: rate_limits.redis.key_file is only for TLS: use a rediss:// url",
            ]
        );
    }

    #[test]
    fn a_client_certificate_and_its_key_come_together() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        pki(dir.path());
        let ca = ("ca_file", file(dir.path(), "ca.pem"));
        assert_eq!(
            errors(&config(
                "rediss://cache",
                &[ca.clone(), ("cert_file", file(dir.path(), "client.pem"))]
            )),
            ["bad.yaml:7:16: rate_limits.redis.cert_file needs key_file too: a client certificate goes with its key"]
        );
        assert_eq!(
            errors(&config(
                "rediss://cache",
                &[ca.clone(), ("key_file", file(dir.path(), "client.key"))]
            )),
            ["bad.yaml:7:15: rate_limits.redis.key_file needs cert_file too: a client certificate goes with its key"]
        );
        let mismatched = errors(&config(
            "rediss://cache",
            &[
                ca,
                ("cert_file", file(dir.path(), "client.pem")),
                ("key_file", file(dir.path(), "other.key")),
            ],
        ));
        assert!(
            mismatched.len() == 1
                && mismatched[0].starts_with(
                    "bad.yaml:8:15: rate_limits.redis: the client certificate and key do not go together"
                ),
            "a key that is not the certificate's is refused at key_file: {mismatched:?}"
        );
    }

    #[test]
    fn unreadable_or_wrong_pem_files_are_located_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        pki(dir.path());
        let missing = file(dir.path(), "nope.pem");
        let got = errors(&config(
            "rediss://cache",
            &[
                ("ca_file", missing.clone()),
                ("cert_file", missing.clone()),
                ("key_file", missing.clone()),
            ],
        ));
        let want = [
            format!(
                "bad.yaml:6:14: rate_limits.redis.ca_file: cannot read certificate {missing}: "
            ),
            format!(
                "bad.yaml:7:16: rate_limits.redis.cert_file: cannot read certificate {missing}: "
            ),
            format!(
                "bad.yaml:8:15: rate_limits.redis.key_file: cannot read private key {missing}: "
            ),
        ];
        assert_eq!(got.len(), 3, "every bad file in one run: {got:?}");
        for (got, want) in got.iter().zip(&want) {
            assert!(
                got.starts_with(want.as_str()),
                "{got}\nshould start with\n{want}"
            );
        }

        // A key where the CA bundle should be, and a certificate where the
        // key should be.
        let got = errors(&config(
            "rediss://cache",
            &[
                ("ca_file", file(dir.path(), "client.key")),
                ("cert_file", file(dir.path(), "client.pem")),
                ("key_file", file(dir.path(), "ca.pem")),
            ],
        ));
        assert_eq!(
            got,
            [
                format!(
                    "bad.yaml:6:14: rate_limits.redis.ca_file: {} holds no PEM certificate",
                    file(dir.path(), "client.key")
                ),
                format!(
                    "bad.yaml:8:15: rate_limits.redis.key_file: {} holds no PEM private key",
                    file(dir.path(), "ca.pem")
                ),
            ]
        );
    }

    #[test]
    fn a_host_that_no_certificate_can_name_is_refused() {
        assert_eq!(
            errors(&config("rediss://cache!1", &[])),
            ["bad.yaml:5:10: rate_limits.redis.url: `cache!1` is neither a DNS name nor an IP address a certificate can name, so its certificate cannot be checked"]
        );
    }

    #[test]
    fn a_reload_rereads_the_pem_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        pki(dir.path());
        let yaml = config(
            "rediss://cache",
            &[
                ("ca_file", file(dir.path(), "ca.pem")),
                ("cert_file", file(dir.path(), "client.pem")),
                ("key_file", file(dir.path(), "client.key")),
            ],
        );
        let version = || {
            load_str(&yaml, Path::new("ok.yaml"), &HashMap::new())
                .map(|s| s.version)
                .unwrap_or_else(|e| panic!("should compile: {e}"))
        };
        let first = settings(&yaml);
        let first_version = version();
        assert_eq!(
            settings(&yaml),
            first,
            "unchanged files: the same store, its connections kept"
        );
        assert_eq!(version(), first_version, "and the same config version");
        pki(dir.path());
        assert_ne!(
            settings(&yaml),
            first,
            "renewed certificates: a new store, with new connections"
        );
        assert_ne!(
            version(),
            first_version,
            "and a new config version, though the YAML is the same"
        );
    }
}
