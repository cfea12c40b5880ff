//! Every file in `config/` must compile, and `check` must locate problems.

use std::collections::HashMap;
use std::path::Path;

use chatwarden::config::snapshot::DEFAULT_WRITE_BUFFER;
use chatwarden::config::{load_file, load_str};

pub(crate) fn placeholder_env() -> HashMap<String, String> {
    // Values for every ${VAR} the shipped configs reference, as an operator
    // or the demo would set them; certificates are made here, now.
    let pki = std::env::temp_dir().join(format!("chatwarden-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&pki).expect("pki dir");
    if !pki.join("cert.pem").exists() {
        crate::harness::make_pki(&pki);
    }
    if !pki.join("audit-signing.pem").exists() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        std::fs::write(pki.join("audit-signing.pem"), key.serialize_pem()).expect("write");
    }
    let mut env: HashMap<String, String> = [
        ("TLS_CERT_FILE", pki.join("cert.pem").display().to_string()),
        ("TLS_KEY_FILE", pki.join("key.pem").display().to_string()),
        (
            "AUDIT_SIGNING_KEY_FILE",
            pki.join("audit-signing.pem").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(
        [
            ("DEMO_CRM_URL", "http://127.0.0.1:1"),
            ("DEMO_CRM_PUBSUB_TOKEN", "demo-pubsub-token-0000"),
            ("DEMO_WHATSAPP_URL", "http://127.0.0.1:2"),
            ("DEMO_CRM_TOKEN", "demo-crm-token"),
            ("DEMO_META_TOKEN", "demo-meta-token"),
            ("DEMO_AUDIT", "/tmp/chatwarden-test-audit.jsonl"),
            (
                "DEMO_AUDIT_SIGNING_KEY",
                pki.join("audit-signing.pem").to_str().expect("utf-8"),
            ),
            ("DEMO_JWKS_URL", "http://127.0.0.1:3/jwks.json"),
            ("DEMO_META_APP_SECRET", "demo-app-secret"),
            ("DEMO_ADMIN_TOKEN", "demo-admin-token-0123456789"),
            ("DEMO_TODAY", "2026-11-23"),
            ("CRM_API_TOKEN", "crm-token"),
            ("CHATWOOT_PUBSUB_TOKEN", "pubsub-token-of-the-crm-user"),
            ("CHATWOOT_USER_ID", "1"),
            ("META_ACCESS_TOKEN", "meta-token"),
            ("META_APP_SECRET", "meta-app-secret"),
            ("META_VERIFY_TOKEN", "meta-verify-token"),
            ("CHATWARDEN_ADMIN_TOKEN", "admin-token-0123456789"),
            ("SOC_WEBHOOK_TOKEN", "soc-webhook-token"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env
}

#[test]
fn every_shipped_config_compiles() {
    let env = placeholder_env();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        // Policy test cases and the reviewed list of denied API operations
        // are not gateway configs; spec_coverage.rs parses the latter.
        if path.extension().and_then(|e| e.to_str()) != Some("yaml")
            || path.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.contains("cases") || n == "denied-operations.yaml"
            })
        {
            continue;
        }
        if let Err(e) = load_file(&path, &env) {
            panic!("{} should compile:\n{e}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the demo and example configs in config/, found {checked}"
    );
}

/// The configuration shown in README.md and the one in the Kubernetes
/// example's ConfigMap compile too: examples people copy must not rot.
#[test]
fn documented_example_configs_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut env = placeholder_env();
    env.insert("REDIS_URL".into(), "redis://127.0.0.1:6379/0".into());

    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let example = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README has a yaml block under ## Configuration");
    if let Err(e) = load_str(example, Path::new("README.md"), &env) {
        panic!("README's example should compile:\n{e}");
    }

    let k8s = std::fs::read_to_string(root.join("deploy/k8s/chatwarden.yaml")).expect("k8s");
    let config_map: String = k8s
        .split("chatwarden.yaml: |\n")
        .nth(1)
        .and_then(|rest| rest.split("\n---").next())
        .expect("the ConfigMap holds chatwarden.yaml")
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    // The pod mounts its certificate there; here, the test's.
    let config_map = config_map
        .replace("/etc/chatwarden/tls/tls.crt", &env["TLS_CERT_FILE"])
        .replace("/etc/chatwarden/tls/tls.key", &env["TLS_KEY_FILE"])
        .replace("/etc/chatwarden/admin/tls.crt", &env["TLS_CERT_FILE"])
        .replace("/etc/chatwarden/admin/tls.key", &env["TLS_KEY_FILE"])
        .replace(
            "/etc/chatwarden/audit-signing/key.pem",
            &env["AUDIT_SIGNING_KEY_FILE"],
        )
        .replace(
            "/etc/chatwarden/admin-clients/ca.crt",
            &Path::new(&env["TLS_CERT_FILE"])
                .with_file_name("ca.pem")
                .display()
                .to_string(),
        );
    if let Err(e) = load_str(&config_map, Path::new("deploy/k8s/chatwarden.yaml"), &env) {
        panic!("the Kubernetes example's config should compile:\n{e}");
    }
}

/// How an expected error is found among the reported ones.
enum Match {
    Prefix,
    Anywhere,
}

/// `yaml` is refused with exactly the `expected` errors (each found once,
/// as a prefix or anywhere in a reported line).
fn expect_errors(yaml: &str, how: Match, expected: &[&str]) {
    let errors = errors_of(yaml);
    for e in expected {
        let found = errors.iter().any(|got| match how {
            Match::Prefix => got.starts_with(e),
            Match::Anywhere => got.contains(e),
        });
        assert!(
            found,
            "expected an error like `{e}`, got:\n{}",
            errors.join("\n")
        );
    }
    assert_eq!(
        errors.len(),
        expected.len(),
        "every problem reported once:\n{}",
        errors.join("\n")
    );
}

fn errors_of(yaml: &str) -> Vec<String> {
    let env = placeholder_env();
    match load_str(yaml, Path::new("bad.yaml"), &env) {
        Ok(_) => panic!("config should be refused:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn problems_are_reported_with_file_line_and_column() {
    let yaml = "\
listeners:
  - {name: a, addr: \"127.0.0.1:8080\"}
network:
  trusted_proxies: [10.0.0.0/33, 10.0.0.1/8]
upstreams:
  crm: {url: \"http://127.0.0.1:9\"}
routes:
  - {name: r1, upstream: nope, path: /a, auth: none}
  - {name: r1, upstream: crm, path: /b, auth: none}
";
    expect_errors(
        yaml,
        Match::Prefix,
        &[
            "bad.yaml:4:21: `10.0.0.0/33` is not a CIDR range",
            "bad.yaml:4:34: `10.0.0.1/8` has host bits set",
            "bad.yaml:8:26: route `r1` names unknown upstream `nope`",
            "bad.yaml:9:12: duplicate route name `r1`",
        ],
    );
}

#[test]
fn unknown_keys_and_unreadable_certs_are_errors() {
    let errors = errors_of("listeners:\n  - {name: a, addr: \"127.0.0.1:1\", colour: blue}\n");
    assert!(errors[0].starts_with("bad.yaml:2:"), "{errors:?}");
    assert!(errors[0].contains("unknown field `colour`"), "{errors:?}");

    let errors = errors_of(
        "listeners:\n  - name: a\n    addr: \"127.0.0.1:1\"\n    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}\n",
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("bad.yaml:4:17: cannot read certificate /nonexistent/cert.pem")),
        "{errors:?}"
    );

    let errors = errors_of("upstreams:\n  crm:\n    url: http://127.0.0.1:1\n    headers: {x-key: \"${UNSET_SECRET_VAR}\"}\n");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("environment variable UNSET_SECRET_VAR is not set")),
        "a missing secret names its variable: {errors:?}"
    );
}

#[test]
fn malformed_yaml_is_located() {
    let errors = errors_of("listeners: [\n");
    assert!(errors[0].starts_with("bad.yaml:"), "{errors:?}");
}

#[test]
fn owner_checks_are_validated_at_load() {
    let yaml = "\
listeners: [{name: a, addr: \"127.0.0.1:8080\"}]
upstreams: {crm: {url: \"http://127.0.0.1:9\"}}
auth: {issuer: i, audiences: [a], algorithms: [HS256], hmac_secret: 0123456789abcdef0123456789abcdef}
roles: {agent: {permissions: [c.read]}}
routes:
  - name: one
    upstream: crm
    path: \"/c/{id}/messages\"
    permission: c.read
    owner_check: {lookup: \"/c/{cid}\", field: owner, claim: uid}
  - name: two
    upstream: crm
    path: \"/d/{id}\"
    permission: c.read
    owner_check: {object: \"$.items[*]\", field: owner, claim: uid}
  - name: three
    upstream: crm
    path: \"/e/{id}\"
    permission: c.read
    owner_check: {field: owner, claim: uid, cache: 1h}
  - name: four
    upstream: crm
    path: \"/f/{id}\"
    auth: none
    owner_check: {field: owner, claim: uid}
  - name: five
    upstream: crm
    path: /g
    permission: c.read
    row_filter: {items: $.payload, field: owner, claim: uid}
";
    expect_errors(
        yaml,
        Match::Anywhere,
        &[
            "bad.yaml:10:27: route `one`: owner_check.lookup uses `{cid}` that the route's path `/c/{id}/messages` does not capture",
            "bad.yaml:15:27: route `two`: owner_check.object must name one object",
            "bad.yaml:20:52: route `three`: owner_check.cache may be at most 300s",
            "route `four`: permission, mfa_max_age, scope, row_filter, owner_check, message_filter and redaction need an authenticated caller",
            "bad.yaml:30:25: route `five`: row_filter.items must select list items",
        ],
    );
}

#[test]
fn redaction_rules_are_validated_at_load() {
    let yaml = "\
listeners: [{name: a, addr: \"127.0.0.1:8080\"}]
upstreams: {crm: {url: \"http://127.0.0.1:9\"}}
auth: {issuer: i, audiences: [a], algorithms: [HS256], hmac_secret: 0123456789abcdef0123456789abcdef}
roles: {agent: {permissions: [c.read]}}
redaction:
  - {name: one, fields: [payload.phone]}
  - {name: two, detect: [phone, passport]}
  - {name: three, fields: [$.a], style: hash}
  - {name: four, fields: [$.a], style: hash, hash_key: short}
  - {name: five}
  - {name: six, fields: [$.a], style: blur}
  - {name: seven, fields: [$.a], detect: [phone], style: withhold}
  - {name: counts, fields: [$.meta], style: withhold}
  - {name: ok, fields: [$.a]}
  - {name: ok, fields: [$.b]}
  - {name: eight, detect: [phone], countries: [ES, UK]}
  - {name: nine, detect: [email], countries: [es]}
  - {name: ten, detect: [national_id], countries: [CO]}
routes:
  - {name: r, upstream: crm, path: /r, permission: c.read, redaction: [ok, nope]}
";
    expect_errors(
        yaml,
        Match::Prefix,
        &[
            "bad.yaml:6:26: JSON selector `payload.phone` is invalid",
            "bad.yaml:7:33: redaction `two`: detect `passport` must be phone, email, wamid, card, iban or national_id",
            "bad.yaml:8:12: redaction `three`: style hash needs a hash_key",
            "bad.yaml:9:56: redaction `four`: hash_key must be at least 16 bytes",
            "bad.yaml:10:12: redaction `five` masks nothing",
            "bad.yaml:11:39: redaction `six`: style `blur` must be partial, full, hash or withhold",
            "bad.yaml:12:58: redaction `seven`: style withhold makes whole values null, so it takes `fields` only",
            "bad.yaml:15:12: duplicate redaction rule `ok`",
            "bad.yaml:16:52: redaction `eight`: country `UK` is not one of BR, CL, CO, DE, ES, GB, IN, IT, MX, PE, PT",
            "bad.yaml:17:47: redaction `nine`: countries needs `phone` or `national_id` in `detect`",
            "bad.yaml:18:52: redaction `ten`: national_id needs `countries` naming one whose identity numbers are known (BR, CL, DE, ES, GB, IN, IT, MX, PT)",
            "bad.yaml:20:76: route `r` names unknown redaction `nope` (known: counts, ok)",
        ],
    );
}

#[test]
fn rate_limits_are_validated_at_load() {
    let yaml = "\
listeners: [{name: a, addr: \"127.0.0.1:8080\"}]
upstreams: {crm: {url: \"http://127.0.0.1:9\"}}
routes:
  - {name: a, upstream: crm, path: /a, auth: none, rate_limit: {key: user, per: 1m, burst: 5}}
  - {name: b, upstream: crm, path: /b, auth: none, rate_limit: {per: 1m, burst: 0}}
  - {name: c, upstream: crm, path: /c, auth: none, rate_limit: {per: 2d, burst: 5}}
  - {name: d, upstream: crm, path: /d, auth: none, rate_limit: {per: soon, burst: 5}}
  - {name: e, upstream: crm, path: /e, auth: none, rate_limit: {key: ip, per: 1m, burst: 5}}
";
    expect_errors(
        yaml,
        Match::Prefix,
        &[
            "bad.yaml:4:70: route `a`: rate_limit.key `user` must be sub, ip or route",
            "bad.yaml:5:81: route `b`: rate_limit.burst must be between 1",
            "bad.yaml:6:70: route `c`: rate_limit.per must be at least 1s and at most 1 day",
            "bad.yaml:7:70: duration `soon`",
        ],
    );
}

#[test]
fn rate_limit_stores_are_validated_at_load() {
    let file = |store: &str, redis: &str| {
        format!(
            "listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\nrate_limits:\n  store: {store}\n{redis}"
        )
    };
    let redis = |url: &str, extra: &str| format!("  redis:\n    url: \"{url}\"\n{extra}");
    let cases = [
        (
            file("disk", ""),
            "bad.yaml:3:10: rate_limits.store `disk` must be memory or redis",
        ),
        (
            file("redis", ""),
            "bad.yaml:3:10: rate_limits.store redis needs a rate_limits.redis section with a url",
        ),
        (
            file("redis", &redis("redis://cache:6379", "    ca_file: ca.pem\n")),
            "bad.yaml:6:14: rate_limits.redis.ca_file is only for TLS: use a rediss:// url",
        ),
        (
            file("redis", &redis("http://cache:6379", "")),
            "bad.yaml:5:10: rate_limits.redis.url: Redis url must start with redis://, rediss:// (TLS) or unix://",
        ),
        (
            file("redis", &redis("redis://cache:6379/zero", "")),
            "bad.yaml:5:10: rate_limits.redis.url: Redis url database `zero` is not a number",
        ),
        (
            file("redis", &redis("redis://:hunter2@cache:6379", "")),
            "bad.yaml:5:10: rate_limits.redis.url has a password written in the file",
        ),
        (
            file("redis", &redis("${NO_SUCH_REDIS_URL}", "")),
            "bad.yaml:5:10: environment variable NO_SUCH_REDIS_URL is not set",
        ),
        (
            file("redis", &redis("redis://cache:6379", "    timeout: 0ms\n")),
            "bad.yaml:6:14: rate_limits.redis.timeout: duration `0ms` must be greater than zero",
        ),
        (
            file("redis", &redis("redis://cache:6379", "    timeout: 5s\n")),
            "bad.yaml:6:14: rate_limits.redis.timeout may be at most 1000ms",
        ),
        (
            // Checked even while unused, so switching to it cannot surprise.
            file(
                "memory",
                &redis("rediss://cache:6379", "    ca_file: /no/such/ca.pem\n"),
            ),
            "bad.yaml:6:14: rate_limits.redis.ca_file: cannot read certificate /no/such/ca.pem",
        ),
    ];
    for (yaml, want) in &cases {
        expect_errors(yaml, Match::Prefix, &[*want]);
    }
    let errors = errors_of(&file("redis", &redis("redis://cache", "    pasword: x\n")));
    assert!(
        errors.len() == 1
            && errors[0].starts_with("bad.yaml:6:")
            && errors[0].contains("unknown field `pasword`"),
        "unknown keys are located errors: {errors:?}"
    );

    // The good shapes compile: a password from the environment is fine.
    let env = placeholder_env();
    for good in [
        file(
            "redis",
            &redis(
                "redis://:${CRM_API_TOKEN}@cache:6379/1",
                "    key_prefix: \"acme:rl:\"\n    timeout: 20ms\n",
            ),
        ),
        file("redis", &redis("unix:///run/redis/redis.sock", "")),
        // TLS with a private trust anchor (here the listener's certificate).
        file(
            "redis",
            &redis(
                "rediss://:${CRM_API_TOKEN}@cache:6380",
                "    ca_file: ${TLS_CERT_FILE}\n",
            ),
        ),
        file("memory", ""),
    ] {
        if let Err(e) = load_str(&good, Path::new("good.yaml"), &env) {
            panic!("should compile:\n{good}\n{e}");
        }
    }
}

#[test]
fn listener_write_buffers_are_sizes_up_to_a_megabyte() {
    let ok = "\
listeners:
  - {name: a, addr: \"127.0.0.1:8080\"}
  - {name: b, addr: \"127.0.0.1:8081\", write_buffer: 4KB}
  - {name: c, addr: \"127.0.0.1:8082\", write_buffer: 1460}
";
    let snapshot = load_str(ok, Path::new("ok.yaml"), &placeholder_env())
        .unwrap_or_else(|e| panic!("should compile:\n{e}"));
    let sizes: Vec<usize> = snapshot.listeners.iter().map(|l| l.write_buffer).collect();
    assert_eq!(sizes, [DEFAULT_WRITE_BUFFER, 4096, 1460]);

    let bad = "\
listeners:
  - {name: a, addr: \"127.0.0.1:8080\", write_buffer: 2MB}
  - {name: b, addr: \"127.0.0.1:8081\", write_buffer: lots}
  - {name: c, addr: \"127.0.0.1:8082\", write_buffer: 0}
";
    expect_errors(
        bad,
        Match::Prefix,
        &[
            "bad.yaml:2:53: listener write_buffer `2MB` is over 1MB",
            "bad.yaml:3:53: listener write_buffer: size `lots` must start with a whole number",
            "bad.yaml:4:53: listener write_buffer: size `0` must be greater than zero",
        ],
    );
}

/// A listener and an HS256 `auth` section, then `extra` lines of `auth`
/// (indented two spaces) or further sections.
fn auth(extra: &str) -> String {
    format!(
        "\
listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]
auth:
  issuer: https://idp.example/
  audiences: [chatwarden]
  algorithms: [HS256]
  hmac_secret: \"0123456789abcdef0123456789abcdef\"
{extra}"
    )
}

#[test]
fn bad_signature_limits_default_on_and_are_validated() {
    let limit_of = |yaml: &str| {
        let snapshot = load_str(yaml, Path::new("ok.yaml"), &placeholder_env())
            .unwrap_or_else(|e| panic!("should compile:\n{e}"));
        snapshot
            .auth
            .as_ref()
            .expect("auth")
            .settings
            .bad_signatures
    };
    let default = limit_of(&auth("")).expect("on by default");
    assert_eq!((default.max, default.per.as_secs()), (20, 60));
    let set = limit_of(&auth("  bad_signatures: {max: 5, per: 10m}\n")).expect("set");
    assert_eq!((set.max, set.per.as_secs()), (5, 600));
    assert_eq!(
        limit_of(&auth("  bad_signatures: {max: 0}\n")),
        None,
        "0 turns it off"
    );

    expect_errors(
        &auth("  bad_signatures: {max: 5, per: 500ms}\n"),
        Match::Prefix,
        &["bad.yaml:7:33: auth.bad_signatures.per must be a whole number of seconds"],
    );
    let errors = errors_of(&auth("  bad_signatures: {max: -1, window: 1m}\n"));
    assert!(!errors.is_empty(), "{errors:?}");
}

#[test]
fn connection_settings_default_and_are_validated() {
    let with = |extra: &str| format!("listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\n{extra}");
    let settings_of = |yaml: &str| {
        load_str(yaml, Path::new("ok.yaml"), &placeholder_env())
            .unwrap_or_else(|e| panic!("should compile:\n{e}"))
            .connections
    };
    let default = settings_of(&with(""));
    assert_eq!(
        (
            default.head_timeout.as_secs(),
            default.max,
            default.max_per_client
        ),
        (10, None, None),
        "a 10s head deadline and no caps by default"
    );
    assert_eq!(
        (
            default.body_pace.min_rate,
            default.body_pace.grace.as_secs()
        ),
        (1024, 10),
        "bodies held to 1KB a second after 10s by default"
    );
    let set = settings_of(&with(
        "connections: {head_timeout: 2500ms, max: 20000, max_per_client: 200, body_min_rate: 4KB, body_grace: 30s}\n",
    ));
    assert_eq!(
        (set.head_timeout.as_millis(), set.max, set.max_per_client),
        (2500, Some(20000), Some(200))
    );
    assert_eq!(
        (set.body_pace.min_rate, set.body_pace.grace.as_secs()),
        (4096, 30)
    );
    expect_errors(
        &with("connections: {body_min_rate: 2GB, body_grace: 500ms}\n"),
        Match::Prefix,
        &[
            "bad.yaml:2:30: connections.body_min_rate can be at most 1GB",
            "bad.yaml:2:47: connections.body_grace must be between 1s and 10m",
        ],
    );
    expect_errors(
        &with("connections: {body_min_rate: 0}\n"),
        Match::Prefix,
        &["bad.yaml:2:30: connections.body_min_rate: size `0` must be greater than zero"],
    );

    expect_errors(
        &with("connections: {head_timeout: 50ms, max: 0, max_per_client: 0}\n"),
        Match::Prefix,
        &[
            "bad.yaml:2:29: connections.head_timeout must be between 100ms and 10m",
            "bad.yaml:2:40: connections.max must be at least 1",
            "bad.yaml:2:59: connections.max_per_client must be at least 1",
        ],
    );
    expect_errors(
        &with("connections: {max: 10, max_per_client: 11}\n"),
        Match::Prefix,
        &["bad.yaml:2:40: connections.max_per_client (11) is above connections.max (10)"],
    );
    expect_errors(
        &with("connections: {head_timeout: soon}\n"),
        Match::Prefix,
        &["bad.yaml:2:29: connections.head_timeout: "],
    );
    assert!(
        !errors_of(&with("connections: {idle: 5s}\n")).is_empty(),
        "unknown keys are errors"
    );
}

#[test]
fn body_limits_are_validated() {
    let with = |upstream: &str, route: &str| {
        format!(
            "listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\n\
             upstreams: {{crm: {{url: \"http://127.0.0.1:9\"{upstream}}}}}\n\
             routes: [{{name: r, upstream: crm, path: /x, auth: none{route}}}]\n"
        )
    };
    for (upstream, route) in [("", ""), (", max_body: 512KB", ", max_body: 4GB")] {
        let yaml = with(upstream, route);
        if let Err(e) = load_str(&yaml, Path::new("ok.yaml"), &placeholder_env()) {
            panic!("should compile:\n{yaml}\n{e}");
        }
    }
    for (upstream, route, error) in [
        (
            ", max_body: 0",
            "",
            "upstream `crm`: max_body: size `0` must be greater than zero",
        ),
        (
            ", max_body: lots",
            "",
            "upstream `crm`: max_body: size `lots` must start with a whole number",
        ),
        (
            "",
            ", max_body: 5GB",
            "route `r`: max_body can be at most 4GB",
        ),
        (
            "",
            ", max_body: 2TB",
            "route `r`: max_body: size `2TB` has unknown unit `TB`",
        ),
    ] {
        expect_errors(&with(upstream, route), Match::Anywhere, &[error]);
    }
}

#[test]
fn cookie_origins_are_bare_origins_beside_a_cookie() {
    let ok =
        auth("  cookie: cw\n  cookie_origins: [https://crm.example, \"http://localhost:3000\"]\n");
    if let Err(e) = load_str(&ok, Path::new("ok.yaml"), &placeholder_env()) {
        panic!("should compile:\n{e}");
    }
    expect_errors(
        &auth("  cookie_origins: [https://crm.example]\n"),
        Match::Prefix,
        &["bad.yaml:7:20: auth.cookie_origins needs auth.cookie"],
    );
    expect_errors(
        &auth("  cookie: cw\n  cookie_origins: [https://crm.example, https://crm.example/app]\n"),
        Match::Prefix,
        &["bad.yaml:8:41: auth.cookie_origins: `https://crm.example/app` is not an origin (it has a path or query"],
    );
}

#[test]
fn cors_lists_origins_and_headers_and_needs_a_cookie_for_credentials() {
    let ok = auth(
        "  cookie: cw\n\
         cors:\n  origins: [https://app.example, \"http://localhost:3000\"]\n  credentials: true\n  \
         allow_headers: [X-Requested-With]\n  expose_headers: [x-total-count]\n  max_age: 2h\n",
    );
    if let Err(e) = load_str(&ok, Path::new("ok.yaml"), &placeholder_env()) {
        panic!("should compile:\n{ok}\n{e}");
    }
    expect_errors(
        &auth("cors: {origins: [https://app.example], credentials: true}\n"),
        Match::Prefix,
        &["bad.yaml:7:53: cors.credentials needs auth.cookie"],
    );
    expect_errors(
        &auth("cors: {origins: []}\n"),
        Match::Prefix,
        &["bad.yaml:7:17: cors.origins lists no origin"],
    );
    expect_errors(
        &auth(
            "cors:\n  origins: [\"*\", \"null\", https://app.example/app, https://app.example]\n  \
             allow_headers: [\"*\", \"bad header\"]\n  expose_headers: [\"*\"]\n  max_age: 2d\n",
        ),
        Match::Prefix,
        &[
            "bad.yaml:8:13: cors.origins: `*` is not allowed",
            "bad.yaml:8:18: cors.origins: `null` is not allowed",
            "bad.yaml:8:26: cors.origins: `https://app.example/app` is not an origin",
            "bad.yaml:9:19: cors.allow_headers: `*` is not allowed",
            "bad.yaml:9:24: cors.allow_headers: `bad header` is not a valid header name",
            "bad.yaml:10:20: cors.expose_headers: `*` is not allowed",
            "bad.yaml:11:12: cors.max_age `2d` is over 24h",
        ],
    );
    assert!(
        !errors_of(&auth(
            "cors: {origins: [https://app.example], methods: [GET]}\n"
        ))
        .is_empty(),
        "unknown keys are errors"
    );
}

#[test]
fn websocket_routes_are_validated_at_load() {
    let yaml = "\
listeners: [{name: a, addr: \"127.0.0.1:8080\"}]
upstreams: {crm: {url: \"http://127.0.0.1:9\"}}
auth: {issuer: i, audiences: [a], algorithms: [HS256], hmac_secret: 0123456789abcdef0123456789abcdef, meta_webhook: {app_secret: s}}
roles: {agent: {permissions: [c.read]}}
redaction:
  - {name: phones, detect: [phone]}
routes:
  - {name: cable, upstream: crm, path: /cable, permission: c.read, websocket: true}
  - {name: any, upstream: crm, path: /any, methods: ['*'], permission: c.read, websocket: true}
  - {name: off, upstream: crm, path: /off, methods: [POST], permission: c.read, websocket: false}
  - {name: post, upstream: crm, path: /post, methods: [POST], permission: c.read, websocket: true}
  - {name: listed, upstream: crm, path: /listed, methods: [GET], permission: c.read, row_filter: {items: \"$.payload[*]\", field: a, claim: b}, websocket: true}
  - {name: hook, upstream: crm, path: /hook, methods: [GET], auth: meta_signature, websocket: true}
  - {name: masked, upstream: crm, path: /masked, methods: [GET], permission: c.read, redaction: [phones], websocket: true}
  - {name: stray, upstream: crm, path: /stray, methods: [GET], permission: c.read, control_messages: type}
  - {name: strayf, upstream: crm, path: /strayf, methods: [GET], permission: c.read, message_filter: {object: $.data, fields: [a], claim: b}}
  - {name: rows, upstream: crm, path: /rows, methods: [GET], permission: c.read, websocket: true, message_filter: {object: \"$.data[*]\", fields: [a], claim: b}}
  - {name: none, upstream: crm, path: /none, methods: [GET], permission: c.read, websocket: true, message_filter: {object: $.data, fields: [], claim: b}}
  - {name: badf, upstream: crm, path: /badf, methods: [GET], permission: c.read, websocket: true, message_filter: {object: $.data, fields: [a, \"b..c\"], claim: b}}
  - {name: badc, upstream: crm, path: /badc, methods: [GET], permission: c.read, websocket: true, control_messages: \"$.type\"}
  - {name: open, upstream: crm, path: /open, methods: [GET], auth: none, websocket: true, message_filter: {object: $.data, fields: [a], claim: b}}
  - {name: subs, upstream: crm, path: /subs, methods: [GET], permission: c.read, subscribe_as: {pubsub_token: abcdefgh12345678}}
  - {name: subv, upstream: crm, path: /subv, methods: [GET], permission: c.read, websocket: true, subscribe_as: {\"a.b\": x}}
  - {name: good, upstream: crm, path: /good, methods: [GET], permission: c.read, websocket: true, control_messages: type, redaction: [phones], subscribe_as: {pubsub_token: abcdefgh12345678, user_id: \"1\"}, message_filter: {object: $.message.data, fields: [meta.assignee.id, conversation.assignee_id], claim: user_id, unless_permission: c.read, labels: [{label: x, permission: c.read}]}}
";
    expect_errors(
        yaml,
        Match::Prefix,
        &[
            "bad.yaml:11:94: route `post`: websocket: a WebSocket handshake is a GET: add GET to `methods`",
            "bad.yaml:12:154: route `listed`: websocket: `row_filter` reads list answers; a WebSocket route's messages are filtered by `message_filter`",
            "bad.yaml:13:95: route `hook`: websocket: Meta's webhooks are signed POSTs, not WebSockets",
            "bad.yaml:15:102: route `stray`: control_messages applies to WebSocket messages: the route needs `websocket: true`",
            "bad.yaml:16:111: route `strayf`: message_filter applies to WebSocket messages: the route needs `websocket: true`",
            "bad.yaml:17:124: route `rows`: message_filter.object must name the one object each message carries, not list items",
            "bad.yaml:18:124: route `none`: message_filter.fields must name at least one field holding the object's owner",
            "bad.yaml:19:144: field path `b..c` is invalid",
            "bad.yaml:20:117: route `badc`: control_messages names the top-level member that marks the protocol's own messages (`type`), not `$.type`",
            "bad.yaml:21:68: route `open`: permission, mfa_max_age, scope, row_filter, owner_check, message_filter and redaction need an authenticated caller (auth: jwt)",
            "bad.yaml:22:111: route `subs`: subscribe_as applies to WebSocket messages: the route needs `websocket: true`",
            "bad.yaml:23:121: route `subv`: subscribe_as sets identifier members by name (`pubsub_token`) to non-empty text, not `a.b: x`",
        ],
    );
    let word = yaml.replace("websocket: false", "websocket: sometimes");
    expect_errors(&word, Match::Prefix, &["bad.yaml:10:"]);
}

#[test]
fn body_scope_bindings_are_validated_at_load() {
    let yaml = "\
listeners: [{name: a, addr: \"127.0.0.1:8080\"}]
upstreams: {crm: {url: \"http://127.0.0.1:9\"}}
auth: {issuer: i, audiences: [a], algorithms: [HS256], hmac_secret: 0123456789abcdef0123456789abcdef}
roles: {agent: {permissions: [c.write]}}
routes:
  - {name: ok, upstream: crm, path: /ok, methods: [POST, PATCH], permission: c.write, scope: [{body: inbox_id, claim: inbox_ids, unless_permission: c.all}]}
  - {name: get, upstream: crm, path: /get, methods: [GET, POST], permission: c.write, scope: [{body: inbox_id, claim: inbox_ids}]}
  - {name: any, upstream: crm, path: /any, permission: c.write, scope: [{body: inbox_id, claim: inbox_ids}]}
  - {name: both, upstream: crm, path: \"/both/{id}\", methods: [POST], permission: c.write, scope: [{param: id, body: id, claim: ids}]}
  - {name: neither, upstream: crm, path: /neither, methods: [POST], permission: c.write, scope: [{claim: ids}]}
  - {name: nested, upstream: crm, path: /nested, methods: [POST], permission: c.write, scope: [{body: message.inbox_id, claim: ids}]}
  - {name: twice, upstream: crm, path: /twice, methods: [POST], permission: c.write, scope: [{body: a, claim: x}, {body: a, claim: y}]}
  - {name: open, upstream: crm, path: /open, methods: [POST], auth: none, scope: [{body: a, claim: x}]}
  - {name: param, upstream: crm, path: \"/p/{id}\", methods: [POST], permission: c.write, scope: [{param: id, claim: ids, optional: true}]}
  - {name: req, upstream: crm, path: /req, methods: [POST], permission: c.write, scope: [{body: a, claim: x, requires: [b.c]}]}
  - {name: preq, upstream: crm, path: \"/q/{id}\", methods: [POST], permission: c.write, scope: [{param: id, claim: ids, requires: [x]}]}
  - {name: qname, upstream: crm, path: /qn, methods: [GET], permission: c.write, scope: [{query: \"ids[]\", claim: ids}]}
  - {name: qboth, upstream: crm, path: /qb, methods: [POST], permission: c.write, scope: [{query: a, body: a, claim: x}]}
  - {name: qopt, upstream: crm, path: /qo, methods: [GET], permission: c.write, scope: [{query: a, claim: x, optional: true}]}
";
    expect_errors(
        yaml,
        Match::Prefix,
        &[
            "bad.yaml:7:102: route `get`: scope body member `inbox_id` needs `methods` that all carry a body (POST, PUT, PATCH)",
            "bad.yaml:8:80: route `any`: scope body member `inbox_id` needs `methods`",
            "bad.yaml:9:117: route `both`: a scope entry binds one of a path `param`, a `query` parameter or a `body` member",
            "bad.yaml:10:106: route `neither`: scope entry for claim `ids` must name a path `param`, a `query` parameter or a `body` member",
            "bad.yaml:11:103: route `nested`: scope body member `message.inbox_id` must be a top-level member name",
            "bad.yaml:12:122: route `twice`: scope body member `a` is bound twice",
            "bad.yaml:13:69: route `open`: permission, mfa_max_age, scope, row_filter, owner_check, message_filter and redaction need an authenticated caller",
            "bad.yaml:14:131: route `param`: `optional` is for a `body` member; a path parameter is always there",
            "bad.yaml:15:121: route `req`: scope body member `b.c` must be a top-level member name",
            "bad.yaml:16:131: route `preq`: `requires` is for a `body` member",
            "bad.yaml:17:98: route `qname`: scope query parameter `ids[]` must be a parameter name",
            "bad.yaml:18:108: route `qboth`: a scope entry binds one of a path `param`, a `query` parameter or a `body` member",
            "bad.yaml:19:120: route `qopt`: `optional` is for a `body` member",
        ],
    );
    let only_ok: String = yaml.lines().take(6).map(|l| format!("{l}\n")).collect();
    let optional = format!(
        "{only_ok}  - {{name: opt, upstream: crm, path: /opt, methods: [POST], permission: c.write, scope: [{{body: team_id, claim: team_ids, optional: true}}, {{body: inbox_id, claim: inbox_ids, requires: [contact_id]}}]}}\n"
    );
    let query = format!(
        "{only_ok}  - {{name: media, upstream: crm, path: \"/media/{{id}}\", methods: [GET], permission: c.write, scope: [{{query: phone_number_id, claim: ids, unless_permission: c.all}}]}}\n"
    );
    for ok in [only_ok, optional, query] {
        if let Err(e) = load_str(&ok, Path::new("ok.yaml"), &placeholder_env()) {
            panic!("should compile:\n{ok}\n{e}");
        }
    }
}

#[test]
fn method_override_params_are_parameter_names() {
    let with = |params: &str| {
        format!(
            "listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\n\
             upstreams: {{crm: {{url: \"http://127.0.0.1:9\"{params}}}}}\n\
             routes: [{{name: r, upstream: crm, path: /x, auth: none}}]\n"
        )
    };
    for params in [
        "",
        ", method_override_params: []",
        ", method_override_params: [_method, method, x-verb]",
        ", format_suffix: refuse",
        ", format_suffix: allow",
    ] {
        let yaml = with(params);
        if let Err(e) = load_str(&yaml, Path::new("ok.yaml"), &placeholder_env()) {
            panic!("should compile:\n{yaml}\n{e}");
        }
    }
    expect_errors(
        &with(", method_override_params: [_method, \"a=b\", \"\"]"),
        Match::Anywhere,
        &[
            "upstream `crm`: method_override_params: `a=b` is not a parameter name",
            "upstream `crm`: method_override_params: `` is not a parameter name",
        ],
    );
    expect_errors(
        &with(", format_suffix: sometimes"),
        Match::Anywhere,
        &["upstream `crm`: format_suffix `sometimes` must be refuse or allow"],
    );
}

#[test]
fn upstream_links_name_upstreams_and_public_urls_are_origins() {
    let with = |links: &str, network: &str| {
        format!(
            "listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\n\
             {network}\
             upstreams: {{graph: {{url: \"https://graph.example\"{links}}}, media: {{url: \"https://[::1]:8443\"}}}}\n\
             routes: [{{name: r, upstream: graph, path: /x, auth: none}}]\n"
        )
    };
    for (links, network) in [
        ("", ""),
        (", links: [graph, media]", ""),
        (
            ", links: [graph, graph]",
            "network: {public_url: \"https://wa.acme.example/\"}\n",
        ),
        ("", "network: {public_url: \"http://127.0.0.1:8080\"}\n"),
    ] {
        let yaml = with(links, network);
        let snapshot = load_str(&yaml, Path::new("ok.yaml"), &placeholder_env())
            .unwrap_or_else(|e| panic!("should compile:\n{yaml}\n{e}"));
        let origins: Vec<&str> = snapshot.upstreams["graph"]
            .links
            .iter()
            .map(|o| o.as_str())
            .collect();
        let want: &[&str] = if links.contains("media") {
            &["https://graph.example", "https://[::1]:8443"]
        } else if links.is_empty() {
            &[]
        } else {
            &["https://graph.example"]
        };
        assert_eq!(origins, want, "{yaml}");
        if network.contains("wa.acme") {
            assert_eq!(
                snapshot.public_url.as_deref(),
                Some("https://wa.acme.example"),
                "the trailing slash is dropped"
            );
        }
    }
    expect_errors(
        &with(", links: [graph, lookaside]", ""),
        Match::Anywhere,
        &["upstream `graph`: links: no upstream named `lookaside`"],
    );
    for bad in [
        "wa.acme.example",
        "ftp://wa.acme.example",
        "https://wa.acme.example/api",
        "https://wa.acme.example?x=1",
        "https://user@wa.acme.example",
    ] {
        expect_errors(
            &with("", &format!("network: {{public_url: \"{bad}\"}}\n")),
            Match::Anywhere,
            &[&format!("network.public_url `{bad}` must be an origin")],
        );
    }
}

#[test]
fn echoing_and_tunnelling_methods_cannot_be_routed() {
    for method in ["TRACE", "TRACK", "CONNECT"] {
        let yaml = format!(
            "listeners: [{{name: a, addr: \"127.0.0.1:8080\"}}]\n\
             upstreams: {{crm: {{url: \"http://127.0.0.1:9\"}}}}\n\
             routes: [{{name: r, upstream: crm, methods: [GET, {method}], path: /x, auth: none}}]\n"
        );
        expect_errors(
            &yaml,
            Match::Anywhere,
            &[&format!("{method} is never routed")],
        );
    }
}

#[test]
fn audit_signing_needs_an_ed25519_key_and_the_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let ed = dir.path().join("ed.pem");
    let p256 = dir.path().join("p256.pem");
    std::fs::write(
        &ed,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .expect("key")
            .serialize_pem(),
    )
    .expect("write");
    std::fs::write(
        &p256,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("key")
            .serialize_pem(),
    )
    .expect("write");
    let audit = |body: &str| format!("audit:\n  path: /tmp/x.jsonl\n{body}");
    let good = audit(&format!(
        "  hash_chain: true\n  signing_key: {}\n  checkpoint_every: 30s\n",
        ed.display()
    ));
    let env = placeholder_env();
    let snapshot = load_str(&good, Path::new("good.yaml"), &env).expect("compiles");
    let signing = snapshot.audit.signing.expect("signing on");
    assert_eq!(signing.every, std::time::Duration::from_secs(30));

    for (body, error) in [
        (
            format!("  signing_key: {}\n", ed.display()),
            "bad.yaml:3:16: audit.signing_key signs the hash chain: set audit.hash_chain: true",
        ),
        (
            format!("  hash_chain: true\n  signing_key: {}\n", p256.display()),
            "bad.yaml:4:16: ",
        ),
        (
            "  hash_chain: true\n  signing_key: /nonexistent/key.pem\n".to_string(),
            "bad.yaml:4:16: cannot read audit signing key /nonexistent/key.pem",
        ),
        (
            format!(
                "  hash_chain: true\n  signing_key: {}\n  checkpoint_every: 2h\n",
                ed.display()
            ),
            "bad.yaml:5:21: audit.checkpoint_every must be between 1s and 1h",
        ),
        (
            "  hash_chain: true\n  checkpoint_every: 10s\n".to_string(),
            "bad.yaml:4:21: audit.checkpoint_every without audit.signing_key",
        ),
    ] {
        expect_errors(&audit(&body), Match::Prefix, &[error]);
    }
    let errors = errors_of(&audit(&format!(
        "  hash_chain: true\n  signing_key: {}\n",
        p256.display()
    )));
    assert!(
        errors[0].contains("not an Ed25519 private key"),
        "{errors:?}"
    );
}
