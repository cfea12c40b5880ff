//! `${VAR}` expansion for secrets and deployment-specific values.
//!
//! Secrets never live in the file: an upstream header is written as
//! `api_access_token: ${CRM_API_TOKEN}`. Expansion happens on parsed
//! string values (never on raw YAML text) so a value can contain any
//! character without breaking the document.

/// Where variable values come from. The process environment in production;
/// a map in tests and in the demo, so nothing mutates global state.
pub trait EnvLookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Layers an override map over another lookup (the demo's upstream
/// addresses over the process environment).
pub struct Overlay<'a> {
    pub top: &'a std::collections::HashMap<String, String>,
    pub base: &'a dyn EnvLookup,
}

impl EnvLookup for Overlay<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.top.get(name).cloned().or_else(|| self.base.get(name))
    }
}

/// Expand every `${NAME}` and `${NAME:-default}` in `text`. `$$` is a
/// literal `$`. A variable that is unset (and has no default) is an error
/// naming it; so is an unterminated `${`.
pub fn expand(text: &str, env: &dyn EnvLookup) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_string())?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{inner}}}` is not a valid variable reference"));
            }
            match (env.get(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("TOKEN".to_string(), "s3cret".to_string())])
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        let e = env();
        assert_eq!(
            expand("Bearer ${TOKEN}", &e).as_deref(),
            Ok("Bearer s3cret")
        );
        assert_eq!(expand("${PORT:-8080}", &e).as_deref(), Ok("8080"));
        assert_eq!(expand("${TOKEN:-x}", &e).as_deref(), Ok("s3cret"));
        assert_eq!(expand("cost $$5", &e).as_deref(), Ok("cost $5"));
        assert_eq!(expand("plain", &e).as_deref(), Ok("plain"));
        assert_eq!(expand("a$b", &e).as_deref(), Ok("a$b"));
    }

    #[test]
    fn missing_variable_is_an_error_naming_it() {
        let err = expand("${META_TOKEN}", &env()).unwrap_err();
        assert!(
            err.contains("META_TOKEN"),
            "error should name the variable: {err}"
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("${TOKEN", &env()).is_err(), "unterminated reference");
        assert!(expand("${}", &env()).is_err(), "empty name");
        assert!(expand("${A B}", &env()).is_err(), "space in name");
    }
}
