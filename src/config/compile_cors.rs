//! Compiling `cors` (which other sites' pages may call the gateway from a
//! browser) into the CORS core's policy, with every problem located in the
//! file.

use http::HeaderName;

use super::compile::Compiler;
use super::duration::parse_duration;
use super::raw::{RawConfig, Str};
use super::snapshot::AuthRuntime;
use crate::auth::origin::parse_origin;
use crate::cors::{CorsPolicy, DEFAULT_MAX_AGE, MAX_MAX_AGE};

impl Compiler<'_> {
    /// `cors`: listed origins only (no `*`), credentials only beside a
    /// token cookie. Origins whose pages may send the cookie are trusted
    /// for cookie-authenticated changes too: the page that reads with the
    /// cookie may also write with it.
    pub(super) fn cors(
        &mut self,
        raw: &RawConfig,
        auth: Option<&mut AuthRuntime>,
    ) -> Option<CorsPolicy> {
        let section = raw.cors.as_ref()?;
        let mut origins = Vec::new();
        if section.origins.value.is_empty() {
            self.err(
                &section.origins.referenced,
                "cors.origins lists no origin: name the sites whose pages may call the gateway, or leave `cors` out".to_string(),
            );
        }
        for o in &section.origins.value {
            let Some(value) = self.string(o) else {
                continue;
            };
            if matches!(value.trim(), "*" | "null") {
                self.err(
                    &o.referenced,
                    format!(
                        "cors.origins: `{}` is not allowed; list each origin (https://host) whose pages may call the gateway",
                        value.trim()
                    ),
                );
                continue;
            }
            match parse_origin(&value) {
                Ok(origin) if !origins.contains(&origin) => origins.push(origin),
                Ok(_) => {}
                Err(msg) => self.err(&o.referenced, format!("cors.origins: {msg}")),
            }
        }
        let credentials = section.credentials.as_ref().is_some_and(|c| c.value);
        if let Some(c) = section.credentials.as_ref().filter(|c| c.value) {
            match auth {
                Some(a) if a.cookie.is_some() => {
                    a.cookie_origins.extend(origins.iter().map(String::as_str));
                }
                _ => self.err(
                    &c.referenced,
                    "cors.credentials needs auth.cookie: the token cookie is the only credential a browser sends the gateway"
                        .to_string(),
                ),
            }
        }
        let allow_headers = self.cors_headers("cors.allow_headers", &section.allow_headers);
        let expose_headers = self.cors_headers("cors.expose_headers", &section.expose_headers);
        let max_age = match &section.max_age {
            None => DEFAULT_MAX_AGE,
            Some(s) => match parse_duration(&s.value) {
                Ok(d) if d <= MAX_MAX_AGE => d,
                Ok(_) => {
                    self.err(
                        &s.referenced,
                        format!(
                            "cors.max_age `{}` is over 24h, which browsers ignore",
                            s.value
                        ),
                    );
                    DEFAULT_MAX_AGE
                }
                Err(msg) => {
                    self.err(&s.referenced, format!("cors.max_age: {msg}"));
                    DEFAULT_MAX_AGE
                }
            },
        };
        match CorsPolicy::new(origins, credentials, allow_headers, expose_headers, max_age) {
            Ok(p) => Some(p),
            Err(msg) => {
                self.err(&section.origins.referenced, format!("cors: {msg}"));
                None
            }
        }
    }

    /// Header names, lower case; `*` is refused (it would mean every
    /// header, and with credentials browsers read it as a name).
    fn cors_headers(&mut self, key: &str, names: &[Str]) -> Vec<HeaderName> {
        let mut out = Vec::new();
        for n in names {
            if n.value.trim() == "*" {
                self.err(
                    &n.referenced,
                    format!("{key}: `*` is not allowed; list each header"),
                );
                continue;
            }
            match HeaderName::from_bytes(n.value.trim().as_bytes()) {
                Ok(h) => out.push(h),
                Err(_) => self.err(
                    &n.referenced,
                    format!("{key}: `{}` is not a valid header name", n.value),
                ),
            }
        }
        out
    }
}
