//! The example config classifies every operation of both upstream specs:
//! each is routed (to the right upstream, behind a permission some role
//! holds) or listed in `config/denied-operations.yaml` and matched by no
//! route. A new operation in a spec, a stale denial or a route nobody can
//! use fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chatwarden::config::raw::RawConfig;
use chatwarden::config::snapshot::AuthMode;
use chatwarden::config::{load_file, Snapshot};
use chatwarden::policy::{Permission, RoleSet};
use chatwarden::request::normalize_path;
use http::Method;
use serde::Deserialize;

/// Acme's ids as config/chatwarden.yaml names them: the UK number (scoped
/// routes), the WABA and the business portfolio (literal segments).
const UK_NUMBER: &str = "106540352242922";
const WABA: &str = "102290129340398";
const BUSINESS: &str = "310948722405918";
/// Any other path parameter: an object id, a Chatwoot record id.
const SOME_ID: &str = "4711";

/// Routes no spec operation reaches, on purpose: an endpoint the shipped
/// Chatwoot spec omits, Chatwoot's live updates (a WebSocket, which an
/// OpenAPI spec does not describe), Chatwoot's webhook receiver (the spec
/// only has a placeholder for it, denied in denied-operations.yaml), and
/// the download of a media file from Meta's media host (the spec's
/// "Download Media" takes the whole URL a media item names, on another host),
/// and Chatwoot's stored files (Rails' ActiveStorage, which the API's
/// `data_url`s name).
const OFF_SPEC_ROUTES: &[&str] = &[
    "chatwoot.contacts.export",
    "chatwoot.cable",
    "chatwoot.attachments",
    "whatsapp.webhook",
    "whatsapp.media.download",
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Spec {
    Whatsapp,
    Chatwoot,
}

impl Spec {
    /// The upstream a routed operation of this spec must go to.
    fn upstream(self) -> &'static str {
        match self {
            Spec::Whatsapp => "graph",
            Spec::Chatwoot => "crm",
        }
    }
}

/// One operation: method (upper case) and path exactly as the spec writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Operation {
    spec: Spec,
    method: String,
    path: String,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {} {}", self.spec, self.method, self.path)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Denied {
    spec: Spec,
    method: String,
    path: String,
    why: String,
}

#[test]
fn every_spec_operation_is_routed_or_deliberately_denied() {
    let snapshot = example();
    let (version, mut operations) = whatsapp_operations();
    operations.extend(chatwoot_operations());
    for spec in [Spec::Whatsapp, Spec::Chatwoot] {
        assert!(
            operations.iter().any(|op| op.spec == spec),
            "the {spec:?} spec should yield operations; is it still at {}?",
            spec_path(spec).display()
        );
    }
    let denied = denied_operations();

    let mut problems = Vec::new();
    let mut reached = BTreeSet::new();
    for op in &operations {
        let sample = sample_path(&op.path, &version);
        let path = normalize_path(&sample)
            .unwrap_or_else(|e| panic!("sample path {sample} of {op} should normalize: {e:?}"));
        let method = Method::from_bytes(op.method.as_bytes()).expect("spec method");
        let found = snapshot.routes.find(&method, &path);
        match (found, denied.contains(op)) {
            (None, false) => problems.push(format!(
                "unclassified: {op} ({sample}) matches no route and is not in denied-operations.yaml"
            )),
            (None, true) => {}
            (Some(m), true) => problems.push(format!(
                "{op} is listed as denied but route `{}` matches {sample}",
                m.value.name.0
            )),
            (Some(m), false) => {
                let route = m.value;
                reached.insert(route.name.0.to_string());
                if route.auth == AuthMode::MetaSignature {
                    continue;
                }
                if *route.upstream.name.0 != *op.spec.upstream() {
                    problems.push(format!(
                        "{op} is routed by `{}` to upstream `{}`, expected `{}`",
                        route.name.0,
                        route.upstream.name.0,
                        op.spec.upstream()
                    ));
                }
                if route.auth != AuthMode::Jwt || route.requirement.permission.is_none() {
                    problems.push(format!(
                        "{op} is routed by `{}`, which should need a staff token and a permission",
                        route.name.0
                    ));
                }
            }
        }
    }
    let known: BTreeSet<&Operation> = operations.iter().collect();
    for op in &denied {
        if !known.contains(op) {
            problems.push(format!(
                "denied-operations.yaml lists {op}, which is not an operation of its spec (stale entry?)"
            ));
        }
    }

    let raw = raw_example();
    let off_spec: BTreeSet<String> = raw
        .routes
        .iter()
        .map(|r| r.name.value.clone())
        .filter(|name| !reached.contains(name))
        .collect();
    let expected: BTreeSet<String> = OFF_SPEC_ROUTES.iter().map(|s| s.to_string()).collect();
    if off_spec != expected {
        problems.push(format!(
            "routes that no spec operation reaches should be exactly {expected:?}, got {off_spec:?}"
        ));
    }

    assert!(
        problems.is_empty(),
        "{} problem(s) classifying {} operations (Graph version {version}):\n{}",
        problems.len(),
        operations.len(),
        problems.join("\n")
    );
}

#[test]
fn every_route_permission_is_granted_by_name_to_some_role() {
    let snapshot = example();
    let roles = snapshot.policy.roles();
    let attributes: BTreeSet<&str> = snapshot
        .auth
        .as_ref()
        .expect("the example has an auth section")
        .settings
        .claims
        .attributes
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let mut problems = Vec::new();
    for route in raw_example().routes {
        let name = &route.name.value;
        if let Some(p) = &route.permission {
            if !granted_by_name(roles, &p.value) {
                problems.push(format!(
                    "route `{name}`: no role grants `{}` except through `*` (a typo, or a role is missing)",
                    p.value
                ));
            }
        }
        for scope in &route.scope {
            if !attributes.contains(scope.claim.value.as_str()) {
                problems.push(format!(
                    "route `{name}`: scope claim `{}` is not an auth.claims.attributes name",
                    scope.claim.value
                ));
            }
            if let Some(p) = &scope.unless_permission {
                if !granted_by_name(roles, &p.value) {
                    problems.push(format!(
                        "route `{name}`: no role grants the scope override `{}` by name",
                        p.value
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn graph_paths_outside_the_reviewed_version_match_no_route() {
    let snapshot = example();
    let cases = [
        (Method::GET, "/me/businesses".to_string()),
        (Method::GET, format!("/{WABA}/message_templates")),
        (Method::POST, format!("/{UK_NUMBER}/messages")),
        (Method::POST, format!("/v22.0/{UK_NUMBER}/messages")),
        (Method::GET, format!("/v23.0/{SOME_ID}/{SOME_ID}/edges")),
    ];
    for (method, raw) in cases {
        let path = normalize_path(&raw).expect("normalizes");
        let found = snapshot.routes.find(&method, &path);
        assert!(
            found.is_none(),
            "{method} {raw} should match no route (the Graph version is pinned), got `{}`",
            found.map(|m| m.value.name.0.clone()).unwrap_or_default()
        );
    }
}

#[test]
fn example_roles_can_do_what_the_config_comments_say() {
    let snapshot = example();
    let roles = snapshot.policy.roles();
    let permissions: BTreeMap<String, Permission> = raw_example()
        .routes
        .into_iter()
        .filter_map(|r| {
            let p = Permission::parse(&r.permission?.value).ok()?;
            Some((r.name.value, p))
        })
        .collect();
    let cases = [
        ("sales_agent", "chatwoot.conversations.list", true),
        ("sales_agent", "chatwoot.conversations.create", true),
        ("sales_agent", "whatsapp.messages.send", true),
        ("support_agent", "whatsapp.messages.send", false),
        ("support_agent", "chatwoot.portals.list", true),
        // Inbox records carry the WhatsApp channel's API key.
        ("supervisor", "chatwoot.inboxes.list", false),
        ("crm_admin", "chatwoot.inboxes.list", true),
        ("supervisor", "chatwoot.conversations.assign", true),
        ("supervisor", "chatwoot.contacts.delete", true),
        ("supervisor", "whatsapp.blocked_users.change", true),
        ("marketing", "whatsapp.templates.create", true),
        ("marketing", "whatsapp.marketing_messages.send", true),
        ("marketing", "chatwoot.messages.list", false),
        // Graph's POST /{id} also rewires a number's webhooks.
        ("marketing", "whatsapp.objects.update", false),
        ("whatsapp_admin", "whatsapp.objects.update", true),
        ("finance", "chatwoot.contacts.export", true),
        ("finance", "chatwoot.contacts.update", false),
        ("finance", "whatsapp.business.credit_lines", true),
        ("analyst", "chatwoot.reports.summary", true),
        ("analyst", "chatwoot.contacts.list", false),
        ("integration", "whatsapp.objects.show", true),
        ("integration", "whatsapp.templates.create", false),
        ("crm_admin", "chatwoot.messages.list", false),
        ("admin", "whatsapp.phone_numbers.deregister", true),
    ];
    for (role, route, want) in cases {
        let permission = permissions
            .get(route)
            .unwrap_or_else(|| panic!("route `{route}` should exist and need a permission"));
        let role_name = chatwarden::identity::RoleName(role.to_string());
        assert_eq!(
            roles.holds(&[role_name], permission),
            want,
            "{role} should {}be allowed `{route}` ({permission})",
            if want { "" } else { "not " }
        );
    }
}

#[test]
fn example_policy_cases_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatwarden"))
        .arg("test")
        .arg("-c")
        .arg(example_path())
        .arg(root.join("config/chatwarden-cases.yaml"))
        .envs(crate::config_files::placeholder_env())
        .output()
        .expect("run chatwarden test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "every case in config/chatwarden-cases.yaml should pass:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(" passed, 0 failed") && !stdout.contains("\n0 passed"),
        "the cases should have run:\n{stdout}"
    );
}

fn granted_by_name(roles: &RoleSet, permission: &str) -> bool {
    let Ok(permission) = Permission::parse(permission) else {
        return false;
    };
    roles.names().any(|role| {
        roles
            .granted_by(std::slice::from_ref(role), &permission)
            .is_some_and(|g| g.grant.as_str() != "*")
    })
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/chatwarden.yaml")
}

fn example() -> Snapshot {
    let env = crate::config_files::placeholder_env();
    load_file(&example_path(), &env).unwrap_or_else(|e| panic!("example config should load:\n{e}"))
}

fn raw_example() -> RawConfig {
    let text = std::fs::read_to_string(example_path()).expect("read example config");
    serde_saphyr::from_str(&text).expect("example config parses")
}

fn spec_path(spec: Spec) -> PathBuf {
    let name = match spec {
        Spec::Whatsapp => "whatsapp-business-api-v23.0.yaml",
        Spec::Chatwoot => "chatwoot-application-api.json",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/specs")
        .join(name)
}

/// The spec's `info.version` (the Graph version its paths are for) and its
/// operations.
fn whatsapp_operations() -> (String, Vec<Operation>) {
    let path = spec_path(Spec::Whatsapp);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let spec: serde_json::Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} should parse: {e}", path.display()));
    let version = spec["info"]["version"]
        .as_str()
        .expect("WhatsApp spec info.version")
        .to_string();
    (version, operations(Spec::Whatsapp, &spec))
}

fn chatwoot_operations() -> Vec<Operation> {
    let path = spec_path(Spec::Chatwoot);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let spec: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} should parse: {e}", path.display()));
    operations(Spec::Chatwoot, &spec)
}

/// Every (method, path) under `paths`; other keys of a path item
/// (`parameters`, `summary`, …) are not operations.
fn operations(spec: Spec, doc: &serde_json::Value) -> Vec<Operation> {
    let paths = doc["paths"].as_object().expect("spec has paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("path item is a map");
        for method in item.keys().filter(|k| METHODS.contains(&k.as_str())) {
            out.push(Operation {
                spec,
                method: method.to_ascii_uppercase(),
                path: path.clone(),
            });
        }
    }
    out
}

fn denied_operations() -> BTreeSet<Operation> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/denied-operations.yaml");
    let text = std::fs::read_to_string(&path).expect("read denied-operations.yaml");
    let list: Vec<Denied> = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("denied-operations.yaml should parse: {e}"));
    let mut set = BTreeSet::new();
    let mut seen = BTreeMap::new();
    for d in list {
        let op = Operation {
            spec: d.spec,
            method: d.method.clone(),
            path: d.path.clone(),
        };
        assert!(
            d.why.trim().len() >= 10,
            "denied {op} should say why it is denied"
        );
        assert_eq!(
            d.method,
            d.method.to_ascii_uppercase(),
            "denied {op}: methods are upper case"
        );
        *seen.entry(op.clone()).or_insert(0) += 1;
        set.insert(op);
    }
    let duplicates: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(op, _)| op.to_string())
        .collect();
    assert!(
        duplicates.is_empty(),
        "denied-operations.yaml lists these more than once: {duplicates:?}"
    );
    set
}

/// The spec path with each `{param}` replaced by a value a real client
/// would send there.
fn sample_path(template: &str, version: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("balanced braces") + open;
        out.push_str(match &rest[open + 1..close] {
            "Version" => version,
            "Phone-Number-ID" => UK_NUMBER,
            "WABA-ID" | "WhatsApp-Business-Account-ID" => WABA,
            "Business-ID" => BUSINESS,
            _ => SOME_ID,
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}
