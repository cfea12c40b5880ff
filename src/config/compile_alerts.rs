//! Compiling `alerts:` into the alert core's rules and sinks, every
//! problem located in the file: unknown or duplicate names, a zero
//! threshold, a bad webhook URL, an unknown reason code or route.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::compile::Compiler;
use super::raw::{RawConfig, Str};
use super::raw_alerts::{RawAlertRule, RawSink, RawWhen};
use crate::alert::{
    AlertError, AlertRule, KeyKind, Matcher, RuleName, Sink, SinkKind, SinkName, Trigger, Webhook,
};
use crate::decision::{Decision, Reason, Verdict};

/// Keys a rule tracks unless it says otherwise.
const DEFAULT_MAX_KEYS: u32 = 10_000;
/// A webhook attempt's time unless the sink says otherwise.
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);

impl Compiler<'_> {
    /// The alert rules, each holding its sinks. `route_names` are every
    /// route of the file, so a rule naming a misspelt route is an error.
    pub(super) fn alerts(&mut self, raw: &RawConfig, route_names: &[&str]) -> Vec<Arc<AlertRule>> {
        let sinks = self.alert_sinks(&raw.alerts.sinks);
        // A sink that failed to compile was reported; rules naming it are
        // dropped without a second error.
        let declared: HashSet<&str> = raw
            .alerts
            .sinks
            .iter()
            .map(|s| s.name.value.as_str())
            .collect();
        let roles: Vec<&str> = raw.roles.keys().map(String::as_str).collect();
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for r in &raw.alerts.rules {
            if !names.insert(r.name.value.as_str()) {
                self.err(
                    &r.name.referenced,
                    format!("duplicate alert rule name `{}`", r.name.value),
                );
                continue;
            }
            if let Some(rule) = self.alert_rule(r, &sinks, &declared, route_names, &roles) {
                out.push(Arc::new(rule));
            }
        }
        out
    }

    fn alert_sinks(&mut self, raw: &[RawSink]) -> BTreeMap<String, Arc<Sink>> {
        let mut out = BTreeMap::new();
        let mut names = HashSet::new();
        for s in raw {
            if !names.insert(s.name.value.as_str()) {
                self.err(
                    &s.name.referenced,
                    format!("duplicate alert sink name `{}`", s.name.value),
                );
                continue;
            }
            let kind = match s.kind.value.as_str() {
                "log" => {
                    if let Some(extra) = s
                        .url
                        .as_ref()
                        .map(|u| u.referenced)
                        .or(s.timeout.as_ref().map(|t| t.referenced))
                        .or(s.headers.values().next().map(|h| h.referenced))
                    {
                        self.err(
                            &extra,
                            format!(
                                "alert sink `{}`: url, headers and timeout are for webhooks",
                                s.name.value
                            ),
                        );
                        continue;
                    }
                    SinkKind::Log
                }
                "webhook" => match self.webhook(s) {
                    Some(hook) => SinkKind::Webhook(hook),
                    None => continue,
                },
                other => {
                    self.err(
                        &s.kind.referenced,
                        format!(
                            "alert sink `{}`: type `{other}` must be log or webhook",
                            s.name.value
                        ),
                    );
                    continue;
                }
            };
            out.insert(
                s.name.value.clone(),
                Arc::new(Sink {
                    name: SinkName(s.name.value.clone()),
                    kind,
                }),
            );
        }
        out
    }

    fn webhook(&mut self, s: &RawSink) -> Option<Webhook> {
        let name = &s.name.value;
        let Some(url_text) = &s.url else {
            self.err(
                &s.name.referenced,
                format!("alert sink `{name}`: a webhook needs a url"),
            );
            return None;
        };
        let text = self.string(url_text)?;
        let url = match reqwest::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            // The URL itself may hold a secret (a Slack-style hook path):
            // never echo it.
            Ok(_) => {
                self.err(
                    &url_text.referenced,
                    format!("alert sink `{name}`: url must be http:// or https:// with a host"),
                );
                return None;
            }
            Err(e) => {
                self.err(
                    &url_text.referenced,
                    format!("alert sink `{name}`: invalid url: {e}"),
                );
                return None;
            }
        };
        let headers = self.sensitive_headers(&format!("alert sink `{name}`"), &s.headers);
        let timeout = match self.duration_opt(s.timeout.as_ref())? {
            None => DEFAULT_WEBHOOK_TIMEOUT,
            Some(t) if !t.is_zero() && t <= MAX_WEBHOOK_TIMEOUT => t,
            Some(_) => {
                let at = s
                    .timeout
                    .as_ref()
                    .map_or(s.name.referenced, |t| t.referenced);
                self.err(
                    &at,
                    format!("alert sink `{name}`: timeout must be more than 0 and at most 60s"),
                );
                return None;
            }
        };
        Some(Webhook {
            url,
            headers,
            timeout,
        })
    }

    fn alert_rule(
        &mut self,
        r: &RawAlertRule,
        sinks: &BTreeMap<String, Arc<Sink>>,
        declared: &HashSet<&str>,
        route_names: &[&str],
        roles: &[&str],
    ) -> Option<AlertRule> {
        let name = &r.name.value;
        let when = self.alert_matcher(name, &r.when, route_names, roles);
        let key = match &r.key {
            None => Some(KeyKind::Subject),
            Some(k) => match KeyKind::parse(&k.value) {
                Ok(key) => Some(key),
                Err(e) => {
                    self.err(&k.referenced, format!("alert rule `{name}`: {e}"));
                    None
                }
            },
        };
        let window = self.duration_opt(Some(&r.window)).flatten();
        let mut rule_sinks = Vec::new();
        for s in &r.sinks {
            match sinks.get(&s.value) {
                Some(sink) => rule_sinks.push(sink.clone()),
                None if declared.contains(s.value.as_str()) => {}
                None => {
                    let known: Vec<&str> = sinks.keys().map(String::as_str).collect();
                    self.err(
                        &s.referenced,
                        format!(
                            "alert rule `{name}` names unknown sink `{}` (known: {})",
                            s.value,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
        }
        if r.sinks.is_empty() {
            self.err(
                &r.name.referenced,
                format!("alert rule `{name}` must name at least one sink"),
            );
            return None;
        }
        let max_keys = r.max_keys.as_ref().map_or(DEFAULT_MAX_KEYS, |m| m.value);
        let (when, key, window) = (when?, key?, window?);
        let trigger = match Trigger::new(when, key, r.threshold.value, window, max_keys as usize) {
            Ok(t) => t,
            Err(e) => {
                let at = match e {
                    AlertError::Threshold => r.threshold.referenced,
                    AlertError::Window => r.window.referenced,
                    AlertError::MaxKeys => r
                        .max_keys
                        .as_ref()
                        .map_or(r.name.referenced, |m| m.referenced),
                    AlertError::UnknownKey(_) => r.name.referenced,
                };
                self.err(&at, format!("alert rule `{name}`: {e}"));
                return None;
            }
        };
        if rule_sinks.len() != r.sinks.len() {
            return None;
        }
        Some(AlertRule {
            name: RuleName(name.clone()),
            trigger,
            sinks: rule_sinks,
        })
    }

    fn alert_matcher(
        &mut self,
        rule: &str,
        raw: &RawWhen,
        route_names: &[&str],
        roles: &[&str],
    ) -> Option<Matcher> {
        let mut ok = true;
        let decision = match raw.decision.as_ref() {
            None => None,
            Some(d) => {
                match d.value.as_str() {
                    "allow" => Some(Verdict::Allow),
                    "deny" => Some(Verdict::Deny),
                    "error" => Some(Verdict::Error),
                    other => {
                        self.err(
                        &d.referenced,
                        format!("alert rule `{rule}`: decision `{other}` must be allow, deny or error"),
                    );
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut reasons = Vec::new();
        for code in &raw.reasons {
            match Reason::ALL.iter().find(|r| r.code() == code.value) {
                Some(&reason) => {
                    let verdict = Decision::Deny(reason).verdict();
                    if decision.is_some_and(|d| d != verdict) {
                        self.err(
                            &code.referenced,
                            format!(
                                "alert rule `{rule}`: reason `{}` comes with decision {}, never {}",
                                code.value,
                                verdict.as_str(),
                                decision.map_or("", Verdict::as_str)
                            ),
                        );
                        ok = false;
                    }
                    reasons.push(reason);
                }
                None => {
                    let known: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
                    self.err(
                        &code.referenced,
                        format!(
                            "alert rule `{rule}`: unknown reason code `{}` (known: {})",
                            code.value,
                            known.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        let routes = self.known_names(rule, "route", &raw.routes, route_names, &mut ok);
        let roles = self.known_names(rule, "role", &raw.roles, roles, &mut ok);
        ok.then_some(Matcher {
            decision,
            reasons,
            routes,
            roles,
        })
    }

    fn known_names(
        &mut self,
        rule: &str,
        what: &str,
        names: &[Str],
        known: &[&str],
        ok: &mut bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            if known.contains(&n.value.as_str()) {
                out.push(n.value.clone());
            } else {
                self.err(
                    &n.referenced,
                    format!("alert rule `{rule}` names unknown {what} `{}`", n.value),
                );
                *ok = false;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::alert::{KeyKind, SinkKind};
    use crate::config::load_str;
    use crate::decision::{Reason, Verdict};

    const BASE: &str = "\
listeners: [{name: main, addr: \"127.0.0.1:1\"}]
upstreams:
  crm: {url: \"http://127.0.0.1:2\"}
roles:
  agent: {permissions: [contacts.read]}
routes:
  - {name: contacts.export, upstream: crm, path: /export, auth: none}
";

    fn env() -> HashMap<String, String> {
        HashMap::from([("SOC_TOKEN".to_string(), "soc-secret-1".to_string())])
    }

    fn errors(alerts: &str) -> Vec<String> {
        match load_str(&format!("{BASE}{alerts}"), Path::new("bad.yaml"), &env()) {
            Ok(_) => panic!("config should be refused:\n{alerts}"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn rules_compile_with_their_sinks() {
        let yaml = format!(
            "{BASE}\
alerts:
  sinks:
    - {{name: security-log, type: log}}
    - name: soc
      type: webhook
      url: https://hooks.example/chatwarden
      headers: {{Authorization: \"Bearer ${{SOC_TOKEN}}\"}}
  rules:
    - {{name: repeated-denials, when: {{decision: deny}}, threshold: 5, window: 10m, sinks: [security-log, soc]}}
    - name: bulk-export
      when: {{routes: [contacts.export], decision: allow, roles: [agent]}}
      key: ip
      threshold: 3
      window: 1h
      max_keys: 50
      sinks: [soc]
"
        );
        let s = load_str(&yaml, Path::new("ok.yaml"), &env())
            .unwrap_or_else(|e| panic!("should compile:\n{e}"));
        assert_eq!(s.alerts.len(), 2);
        let denials = &s.alerts[0].trigger;
        assert_eq!(denials.key, KeyKind::Subject, "sub is the default key");
        assert_eq!(denials.when.decision, Some(Verdict::Deny));
        assert_eq!(denials.threshold.get(), 5);
        assert_eq!(denials.window.as_secs(), 600);
        assert_eq!(denials.max_keys.get(), 10_000);
        let export = &s.alerts[1];
        assert_eq!(export.trigger.key, KeyKind::ClientIp);
        assert_eq!(export.trigger.when.routes, ["contacts.export"]);
        assert_eq!(export.trigger.max_keys.get(), 50);
        let SinkKind::Webhook(hook) = &export.sinks[0].kind else {
            panic!("soc is a webhook");
        };
        assert_eq!(hook.timeout.as_secs(), 5, "default timeout");
        assert_eq!(hook.headers[0].1.as_bytes(), b"Bearer soc-secret-1");
        assert!(
            !format!("{hook:?}").contains("soc-secret-1"),
            "Debug never prints the header's secret"
        );
        let reasons = load_str(
            &format!("{BASE}alerts:\n  sinks: [{{name: l, type: log}}]\n  rules:\n    - {{name: r, when: {{reasons: [token_invalid, token_expired]}}, key: ip, threshold: 1, window: 1m, sinks: [l]}}\n"),
            Path::new("ok.yaml"),
            &env(),
        )
        .unwrap_or_else(|e| panic!("should compile:\n{e}"));
        assert_eq!(
            reasons.alerts[0].trigger.when.reasons,
            [Reason::TokenInvalid, Reason::TokenExpired]
        );
    }

    #[test]
    fn every_problem_is_located() {
        let got = errors(
            "\
alerts:
  sinks:
    - {name: soc, type: webhook, url: \"not a url\"}
    - {name: soc, type: log}
    - {name: pager, type: sms}
    - {name: l, type: log, url: https://x.example/}
    - {name: h, type: webhook, url: ftp://x.example/}
    - {name: slow, type: webhook, url: https://x.example/, timeout: 5m}
  rules:
    - {name: a, when: {decision: deny}, threshold: 0, window: 10m, sinks: [nope]}
    - {name: a, threshold: 1, window: 10m, sinks: [soc]}
    - {name: b, when: {reasons: [token_bogus], routes: [contacts.exprot], roles: [boss]}, threshold: 1, window: 1m, sinks: []}
    - {name: c, when: {decision: allow, reasons: [ip_denied]}, key: user, threshold: 1, window: 1m, sinks: [soc]}
",
        );
        let expected = [
            "bad.yaml:10:39: alert sink `soc`: invalid url",
            "bad.yaml:11:14: duplicate alert sink name `soc`",
            "bad.yaml:12:27: alert sink `pager`: type `sms` must be log or webhook",
            "bad.yaml:13:33: alert sink `l`: url, headers and timeout are for webhooks",
            "bad.yaml:14:37: alert sink `h`: url must be http:// or https:// with a host",
            "bad.yaml:15:69: alert sink `slow`: timeout must be more than 0 and at most 60s",
            "bad.yaml:17:52: alert rule `a`: threshold must be between 1",
            "bad.yaml:17:76: alert rule `a` names unknown sink `nope` (known: none)",
            "bad.yaml:18:14: duplicate alert rule name `a`",
            "bad.yaml:19:14: alert rule `b` must name at least one sink",
            "bad.yaml:19:34: alert rule `b`: unknown reason code `token_bogus`",
            "bad.yaml:19:57: alert rule `b` names unknown route `contacts.exprot`",
            "bad.yaml:19:83: alert rule `b` names unknown role `boss`",
            "bad.yaml:20:51: alert rule `c`: reason `ip_denied` comes with decision deny, never allow",
            "bad.yaml:20:69: alert rule `c`: key `user` must be sub, ip or route",
        ];
        for e in expected {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "expected an error like `{e}`, got:\n{}",
                got.join("\n")
            );
        }
        assert_eq!(
            got.len(),
            expected.len(),
            "every problem once:\n{}",
            got.join("\n")
        );
        let zero = errors(
            "alerts:\n  sinks: [{name: l, type: log}]\n  rules:\n    - {name: z, threshold: 0, window: 10m, sinks: [l]}\n",
        );
        assert!(
            zero.iter()
                .any(|e| e
                    .starts_with("bad.yaml:11:28: alert rule `z`: threshold must be between 1")),
            "{zero:?}"
        );
        let unknown = errors("alerts:\n  rules:\n    - {name: z, threshold: 1, window: 1m, sinks: [l], colour: red}\n");
        assert!(
            unknown.iter().any(|e| e.contains("unknown field `colour`")),
            "{unknown:?}"
        );
    }
}
