//! Rate limits shared through a real Redis (`redis-server`, started here on
//! a free loopback port, without persistence): two gateways count one
//! limit together, callers count apart, a Redis that goes away leaves each
//! replica deciding on its own counters at once (never a hang), and hot
//! reloads keep counting in Redis.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, TestGateway};
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

pub(crate) const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${UP}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  supervisor: {permissions: [contacts.export]}
routes:
  - name: export
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts/export"
    permission: contacts.export
    rate_limit: {per: 1h, burst: 3}
rate_limits:
  store: redis
  redis: {url: "${REDIS_URL}", key_prefix: "test:rl:", timeout: 200ms}
audit: {path: "${AUDIT}"}
"#;

pub(crate) const EXPORT: &str = "/api/v1/accounts/1/contacts/export";

/// A `redis-server` of our own, killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// With `extra` arguments (a TLS port, say). Readiness is still a
    /// PING on the plain port: Redis opens all its listeners before it
    /// accepts on any.
    pub(crate) async fn start_with(extra: &[&std::ffi::OsStr]) -> RedisServer {
        RedisServer::start_at(harness::free_addr(), extra).await
    }

    /// A new, empty server where this one was (after [`stop`](Self::stop)):
    /// a Redis restarted without persistence.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        let addr = self.addr;
        *self = RedisServer::start_at(addr, &[]).await;
    }

    async fn start_at(addr: SocketAddr, extra: &[&std::ffi::OsStr]) -> RedisServer {
        let dir = tempfile::tempdir().expect("redis dir");
        let port = addr.port().to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server should be installed (./dev test installs it)");
        let server = RedisServer {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.pong().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub(crate) async fn pong(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
    }

    /// One command on a fresh connection, and its reply (read with the
    /// gateway's own RESP parser).
    pub(crate) async fn command(&self, args: &[&[u8]]) -> chatwarden::limit::resp::Reply {
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to redis-server");
        let mut out = Vec::new();
        chatwarden::limit::resp::encode(args, &mut out);
        s.write_all(&out).await.expect("send the command");
        let mut buf = Vec::new();
        loop {
            if let Some((reply, _)) = chatwarden::limit::resp::parse(&buf).expect("a RESP reply") {
                return reply;
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.expect("read the reply");
            assert!(n > 0, "redis-server closed the connection before replying");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Kill it now and wait until it is gone.
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn gateway(up: &EchoUpstream, idp: &Idp, redis: &RedisServer) -> TestGateway {
    harness::start(
        CONFIG,
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("REDIS_URL", redis.url()),
        ],
    )
    .await
}

pub(crate) async fn export(gw: &TestGateway, token: &str) -> reqwest::Response {
    gw.client()
        .get(gw.url(EXPORT))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

pub(crate) fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a 429 carries Retry-After in seconds")
}

/// `POST /reload`'s answer.
pub(crate) async fn reload(gw: &TestGateway) -> Value {
    gw.client()
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .expect("reload")
        .json()
        .await
        .expect("reload answer")
}

/// The sum of `chatwarden_limit_store_errors_total` over its kinds.
pub(crate) fn store_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("chatwarden_limit_store_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_redis() {
    let redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let priya = idp.token("priya", &["supervisor"], json!({}));
    let sam = idp.token("sam", &["supervisor"], json!({}));

    for (n, gw) in [&a, &b, &a].into_iter().enumerate() {
        assert_eq!(
            export(gw, &priya).await.status(),
            200,
            "export {} of 3 per hour, across both gateways",
            n + 1
        );
    }
    for (name, gw) in [("b", &b), ("a", &a)] {
        let resp = export(gw, &priya).await;
        assert_eq!(
            resp.status(),
            429,
            "the fourth export, on gateway {name}, is over the shared limit"
        );
        let retry = retry_after(&resp);
        assert!(
            (1100..=1200).contains(&retry),
            "one export comes back every 20 minutes: {retry}"
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["reason"], "rate_limited");
    }
    assert_eq!(up.count(), 3, "refused exports never reached the CRM");

    assert_eq!(
        export(&b, &sam).await.status(),
        200,
        "another caller has their own allowance"
    );
    assert_eq!(up.count(), 4);

    let records = b.audit_records(3).await;
    let limited: Vec<&Value> = records
        .iter()
        .filter(|r| r["reason"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 1, "{records:#?}");
    assert_eq!(limited[0]["rules"], json!(["export.rate_limit"]));
    for gw in [&a, &b] {
        assert_eq!(
            store_errors(&gw.metrics().await),
            0,
            "Redis answered every check"
        );
    }
}

#[tokio::test]
async fn redis_going_away_leaves_each_replica_its_own_counters() {
    let mut redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let priya = idp.token("priya", &["supervisor"], json!({}));

    assert_eq!(export(&a, &priya).await.status(), 200);
    assert_eq!(export(&a, &priya).await.status(), 200);
    redis.stop();

    // Gateway a has counted two of priya's exports itself: one more, then
    // its own limit holds. No request waits for the dead Redis.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let resp = export(&a, &priya).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request with Redis down is decided at once, not after a hang: {:?}",
            started.elapsed()
        );
        if resp.status() == 429 {
            assert!(retry_after(&resp) >= 1);
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 429, 429],
        "the in-process fallback keeps the limit on this replica"
    );
    // Gateway b never saw priya: per replica, she has a full allowance there.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(export(&b, &priya).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(up.count(), 6, "every refused export stayed at the gateway");

    let text = a.metrics().await;
    assert_eq!(
        store_errors(&text),
        3,
        "each check Redis did not decide is counted:\n{text}"
    );
    assert!(
        text.contains("chatwarden_limit_store_errors_total{kind=\"connect\"}"),
        "the first failure is a refused connection:\n{text}"
    );
}

#[tokio::test]
async fn reloads_keep_counting_in_redis() {
    let redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = gateway(&up, &idp, &redis).await;
    let priya = idp.token("priya", &["supervisor"], json!({}));
    let config = gw.dir.path().join("chatwarden.yaml");
    let reload = || async {
        let body = reload(&gw).await;
        assert_eq!(body["reloaded"], true, "{body}");
    };

    for _ in 0..3 {
        assert_eq!(export(&gw, &priya).await.status(), 200);
    }
    assert_eq!(export(&gw, &priya).await.status(), 429);

    // An unrelated change: the route's counter in Redis is the same one.
    std::fs::write(
        &config,
        CONFIG.replace("audit: {", "network: {trusted_proxies: []}\naudit: {"),
    )
    .expect("write config");
    reload().await;
    assert_eq!(
        export(&gw, &priya).await.status(),
        429,
        "a reload does not hand out a fresh allowance"
    );

    // A changed limit counts afresh, as in the in-process store.
    std::fs::write(&config, CONFIG.replace("burst: 3", "burst: 4")).expect("write config");
    reload().await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(export(&gw, &priya).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    assert_eq!(store_errors(&gw.metrics().await), 0);
}
