//! Cost of the authorization decision against the cost of a route lookup.
//!
//! A generated config of 200 routes and 50 roles (with inheritance chains)
//! and a handful of access rules; the request is a typical agent listing
//! conversations of their account. Criterion measures (a) a bare
//! `RouteTable::find`, (b) `decide`, (c) `decide` plus rendering the
//! explanation (what `chatwarden explain` pays), (d) an ownership check
//! answered from its cache (plan for the caller, cache hit, judge: what an
//! agent's read of one conversation costs on top of the decision within the
//! cache window); a final pass times (a), (b) and (d) in the same process
//! and prints their ratios to (a).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chatwarden::identity::{Identity, RoleName};
use chatwarden::policy::{
    decide, judge, parse_days, parse_network, parse_time, parse_time_zone, AccessMode, AccessRule,
    FilterMode, Found, OwnerCache, OwnerCheck, Ownership, Permission, Policy, RoleDef, RoleSet,
    RouteRequirement, RowFilter, ScopeBinding, ScopeSource, Subject, TimeWindow,
};
use chatwarden::request::{normalize_path, NormalizedPath};
use chatwarden::route::{MethodSet, PathTemplate, RouteTable};
use criterion::{criterion_group, Criterion};
use http::Method;

const ROUTES: usize = 200;
const ROLES: usize = 50;

struct Fixture {
    table: RouteTable<usize>,
    requirements: Vec<RouteRequirement>,
    policy: Policy,
    identity: Identity,
    path: NormalizedPath,
    method: Method,
}

fn fixture() -> Fixture {
    let mut entries = Vec::new();
    let mut requirements = Vec::new();
    let mut push = |method: Method, template: &str, name: String, permission: &str, scope: bool| {
        let template = PathTemplate::parse(template).expect("bench template");
        entries.push((MethodSet::Only(vec![method]), template, requirements.len()));
        requirements.push(RouteRequirement {
            route: name,
            permission: Some(Permission::parse(permission).expect("bench permission")),
            require_mfa: false,
            mfa_max_age: None,
            scope: if scope {
                vec![ScopeBinding {
                    param: "account_id".to_owned(),
                    source: ScopeSource::Path,
                    claim: "account_ids".to_owned(),
                    unless_permission: Some(
                        Permission::parse("conversations.read_all").expect("bench permission"),
                    ),
                }]
            } else {
                Vec::new()
            },
        });
    };
    push(
        Method::GET,
        "/api/v1/accounts/{account_id}/conversations",
        "list_conversations".to_owned(),
        "conversations.read",
        true,
    );
    push(
        Method::POST,
        "/{version}/{phone_number_id}/messages",
        "send_message".to_owned(),
        "whatsapp.send",
        false,
    );
    for i in 0..ROUTES - 2 {
        let (method, template, perm) = match i % 4 {
            0 => (
                Method::GET,
                format!("/api/v1/accounts/{{account_id}}/res{i}"),
                format!("res{}.read", i % ROLES),
            ),
            1 => (
                Method::GET,
                format!("/api/v1/accounts/{{account_id}}/res{i}/{{id}}"),
                format!("res{}.read", i % ROLES),
            ),
            2 => (
                Method::POST,
                format!("/api/v1/accounts/{{account_id}}/res{i}"),
                format!("res{}.write", i % ROLES),
            ),
            _ => (
                Method::GET,
                format!("/{{version}}/{{phone_number_id}}/edge{i}"),
                format!("graph{}.read", i % ROLES),
            ),
        };
        push(method, &template, format!("route{i}"), &perm, i % 4 != 3);
    }
    let table = RouteTable::new(entries).expect("bench routes should not be ambiguous");

    let mut defs: Vec<RoleDef> = (0..ROLES - 1)
        .map(|r| RoleDef {
            name: RoleName(format!("role{r}")),
            // Chains of five: role1 inherits role0, role2 inherits role1, …
            inherits: if r % 5 == 0 {
                Vec::new()
            } else {
                vec![RoleName(format!("role{}", r - 1))]
            },
            permissions: vec![
                format!("res{r}.read"),
                format!("res{r}.write"),
                format!("graph{r}.read"),
                format!("team{r}.*"),
            ],
        })
        .collect();
    defs.push(RoleDef {
        name: RoleName("agent".to_owned()),
        inherits: vec![RoleName("role3".to_owned()), RoleName("role12".to_owned())],
        permissions: [
            "contacts.read",
            "whatsapp.send",
            "conversations.read",
            "labels.read",
        ]
        .map(str::to_owned)
        .to_vec(),
    });
    let roles = RoleSet::compile(defs).expect("bench roles");
    let window = TimeWindow::new(
        parse_days(&["mon-fri"]).expect("days"),
        parse_time("08:00").expect("time"),
        parse_time("18:00").expect("time"),
        parse_time_zone("Europe/London").expect("zone"),
        vec![
            "2026-12-25".parse().expect("date"),
            "2026-12-26".parse().expect("date"),
        ],
    );
    let rule = |name: &str, roles: &[&str], mode| AccessRule {
        name: name.to_owned(),
        roles: roles.iter().map(|r| RoleName((*r).to_owned())).collect(),
        routes: Vec::new(),
        time: None,
        ip_allow: Vec::new(),
        ip_deny: Vec::new(),
        mfa_max_age: None,
        mode,
    };
    let rules = vec![
        AccessRule {
            ip_allow: vec![
                parse_network("10.0.0.0/8").expect("net"),
                parse_network("2001:db8::/32").expect("net"),
            ],
            ..rule("office-network", &["role10"], AccessMode::Enforce)
        },
        AccessRule {
            time: Some(window),
            routes: vec!["list_conversations".to_owned(), "send_message".to_owned()],
            ..rule("support-hours", &["agent"], AccessMode::Enforce)
        },
        AccessRule {
            mfa_max_age: Some(Duration::from_secs(900)),
            ..rule("admin-mfa", &["role48"], AccessMode::Enforce)
        },
        AccessRule {
            ip_deny: vec![parse_network("203.0.113.0/24").expect("net")],
            ..rule("geo-trial", &[], AccessMode::Audit)
        },
        AccessRule {
            ip_deny: vec![parse_network("198.51.100.0/24").expect("net")],
            ..rule("blocklist", &[], AccessMode::Enforce)
        },
    ];
    let names: Vec<&str> = requirements.iter().map(|r| r.route.as_str()).collect();
    let policy = Policy::new(roles, rules, &names).expect("bench policy");

    let mut attributes = BTreeMap::new();
    attributes.insert("account_ids".to_owned(), vec!["3".to_owned()]);
    attributes.insert("user_id".to_owned(), vec!["7".to_owned()]);
    attributes.insert("phone_number_ids".to_owned(), vec!["1065".to_owned()]);
    let identity = Identity {
        subject: "agent-7".to_owned(),
        roles: vec![RoleName("agent".to_owned())],
        attributes,
        mfa: true,
        auth_time: Some(1_772_443_000),
        token_id: None,
        expires_at: 1_772_450_000,
    };
    Fixture {
        table,
        requirements,
        policy,
        identity,
        path: normalize_path("/api/v1/accounts/3/conversations").expect("bench path"),
        method: Method::GET,
    }
}

fn bench_policy(c: &mut Criterion) {
    let fx = fixture();
    let found = fx
        .table
        .find(&fx.method, &fx.path)
        .expect("bench request should match");
    let requirement = &fx.requirements[*found.value];
    let now: jiff::Timestamp = "2026-03-02T10:00:00Z".parse().expect("bench time");
    let subject = Subject {
        identity: &fx.identity,
        client_ip: "::ffff:10.1.2.3".parse().expect("bench ip"),
        now,
        params: &found.params,
        query: &chatwarden::request::query::NO_QUERY_PARAMS,
    };
    assert_eq!(
        decide(&fx.policy, requirement, &subject).decision,
        chatwarden::decision::Decision::Allow,
        "the typical agent request should be allowed"
    );

    let mut group = c.benchmark_group("policy");
    group.bench_function("a_route_find_200", |b| {
        b.iter(|| black_box(fx.table.find(black_box(&fx.method), black_box(&fx.path))).is_some())
    });
    group.bench_function("b_decide_agent", |b| {
        b.iter(|| {
            decide(
                black_box(&fx.policy),
                black_box(requirement),
                black_box(&subject),
            )
            .decision
        })
    });
    let owners = OwnerFixture::new();
    group.bench_function("d_owner_check_cached", |b| {
        b.iter(|| black_box(owners.check(&fx)))
    });
    group.bench_function("c_decide_and_render_explanation", |b| {
        b.iter(|| {
            decide(
                black_box(&fx.policy),
                black_box(requirement),
                black_box(&subject),
            )
            .explanation
            .to_string()
            .len()
        })
    });
    group.finish();
}

/// Times (a) and (b) back to back in this process and prints (b)/(a).
fn print_ratio() {
    let fx = fixture();
    let found = fx
        .table
        .find(&fx.method, &fx.path)
        .expect("bench request should match");
    let requirement = &fx.requirements[*found.value];
    let subject = Subject {
        identity: &fx.identity,
        client_ip: "::ffff:10.1.2.3".parse().expect("bench ip"),
        now: "2026-03-02T10:00:00Z".parse().expect("bench time"),
        params: &found.params,
        query: &chatwarden::request::query::NO_QUERY_PARAMS,
    };
    const N: u32 = 300_000;
    let time = |f: &dyn Fn()| {
        for _ in 0..N / 10 {
            f();
        }
        let start = Instant::now();
        for _ in 0..N {
            f();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(N)
    };
    let find = time(&|| {
        black_box(fx.table.find(black_box(&fx.method), black_box(&fx.path)));
    });
    let decision = time(&|| {
        black_box(
            decide(
                black_box(&fx.policy),
                black_box(requirement),
                black_box(&subject),
            )
            .decision,
        );
    });
    let owners = OwnerFixture::new();
    let owner = time(&|| {
        black_box(owners.check(&fx));
    });
    println!(
        "ratio (same run, {N} iterations each): find {find:.1} ns, decide {decision:.1} ns, decide/find = {:.2}, cached owner check {owner:.1} ns, owner/find = {:.2}",
        decision / find,
        owner / find
    );
}

/// An ownership check on one conversation whose answer is cached.
struct OwnerFixture {
    check: OwnerCheck,
    cache: OwnerCache,
    path: String,
    params: chatwarden::route::Params,
}

impl OwnerFixture {
    fn new() -> Self {
        let template =
            PathTemplate::parse("/api/v1/accounts/{account_id}/conversations/{conversation_id}")
                .expect("bench template");
        let mut filter = RowFilter::new("$", "meta.assignee.id", "user_id", FilterMode::Object)
            .expect("bench filter");
        filter.unless_permission = Some(Permission::parse("conversations.read_all").expect("perm"));
        let check = OwnerCheck {
            id: 0,
            lookup: template.clone(),
            filter,
            cache_for: Duration::from_secs(3600),
        };
        let params = template
            .match_path(&normalize_path("/api/v1/accounts/3/conversations/42").expect("path"))
            .expect("bench path should match");
        let path = check.lookup_path(&params).expect("lookup path");
        let found = check
            .read_response(
                200,
                br#"{"id": 42, "meta": {"assignee": {"id": 7}}, "labels": []}"#,
            )
            .expect("bench lookup body");
        let cache = OwnerCache::default();
        cache.put(&check, &path, &found, Instant::now());
        OwnerFixture {
            check,
            cache,
            path,
            params,
        }
    }

    /// What the proxy does per request: plan, render the path, hit, judge.
    fn check(&self, fx: &Fixture) -> Ownership {
        let plan = self.check.plan(&fx.identity, fx.policy.roles());
        let path = self.check.lookup_path(&self.params).unwrap_or_default();
        debug_assert_eq!(path, self.path);
        match self.cache.get(&self.check, &path, Instant::now()) {
            Some(found) => judge(&found, &plan),
            None => judge(&Found::Absent, &plan),
        }
    }
}

criterion_group!(benches, bench_policy);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratio();
}
