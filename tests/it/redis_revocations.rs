//! Runtime revocations shared through a real Redis: a subject revoked
//! through one replica's admin endpoint is refused by every replica, one
//! started later included; a Redis that loses its data is filled again by
//! the replicas; a revocation made while Redis is down reaches the others
//! once it is back; and a revocation ends when its `ttl` does.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{self, TestGateway};
use crate::idp::Idp;
use crate::redis_limits::RedisServer;
use crate::upstream::EchoUpstream;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${UP}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  revoked: {sync_every: 50ms}
roles:
  agent: {permissions: [conversations.read]}
routes:
  - {name: conversations, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/conversations", permission: conversations.read}
rate_limits:
  store: redis
  redis: {url: "${REDIS_URL}", key_prefix: "test:rv:", timeout: 200ms}
audit: {path: "${AUDIT}"}
"#;

const PATH: &str = "/api/v1/accounts/1/conversations";
/// Far above the sync interval: a guard against a hang, never a measure.
const GUARD: Duration = Duration::from_secs(10);

async fn gateway(up: &EchoUpstream, idp: &Idp, redis: &RedisServer) -> TestGateway {
    let gw = harness::start(
        CONFIG,
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("REDIS_URL", redis.url()),
        ],
    )
    .await;
    gw.wait_ready().await;
    gw
}

async fn status(gw: &TestGateway, token: &str) -> u16 {
    gw.client()
        .get(gw.url(PATH))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls (bounded) until `gw` answers `token` with `want`.
async fn until(gw: &TestGateway, token: &str, want: u16, what: &str) {
    let started = Instant::now();
    while status(gw, token).await != want {
        assert!(started.elapsed() < GUARD, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn revoke(gw: &TestGateway, body: Value) -> (u16, Value) {
    let resp = gw
        .client()
        .post(format!("http://{}/revoke", gw.admin))
        .json(&body)
        .send()
        .await
        .expect("revoke");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

/// The entry Redis holds for `subject` (`at:until:r|l`), if any.
async fn in_redis_hash(redis: &RedisServer, subject: &str) -> Option<String> {
    match redis
        .command(&[b"HGET", b"test:rv:revoked", subject.as_bytes()])
        .await
    {
        chatwarden::limit::resp::Reply::Bulk(Some(entry)) => {
            Some(String::from_utf8(entry).expect("text"))
        }
        _ => None,
    }
}

/// Whether Redis holds `subject` as revoked.
async fn in_redis(redis: &RedisServer, subject: &str) -> Option<String> {
    in_redis_hash(redis, subject)
        .await
        .filter(|e| e.ends_with(":r"))
}

#[tokio::test]
async fn a_revocation_through_one_replica_reaches_every_replica() {
    let mut redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let amelia = idp.token("amelia", &["agent"], json!({}));
    assert_eq!(status(&a, &amelia).await, 200);
    assert_eq!(status(&b, &amelia).await, 200);

    let (code, answer) = revoke(&a, json!({"sub": "amelia"})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["shared"], true, "{answer}");
    assert_eq!(answer["pending"], Value::Null);
    assert!(
        answer["until"]
            .as_str()
            .is_some_and(|u| u.starts_with("20")),
        "{answer}"
    );
    assert_eq!(
        status(&a, &amelia).await,
        401,
        "at once where it was revoked"
    );
    until(&b, &amelia, 401, "the other replica never refused amelia").await;
    assert!(in_redis(&redis, "amelia").await.is_some());

    // A replica started afterwards learns it from Redis.
    let c = gateway(&up, &idp, &redis).await;
    until(
        &c,
        &amelia,
        401,
        "a new replica never learnt the revocation",
    )
    .await;

    // Redis restarts empty (the marker is gone); the replicas put the
    // revocation back.
    redis.command(&[b"SET", b"marker", b"1"]).await;
    redis.restart().await;
    assert_eq!(
        redis.command(&[b"GET", b"marker"]).await,
        chatwarden::limit::resp::Reply::Bulk(None)
    );
    let started = Instant::now();
    while in_redis(&redis, "amelia").await.is_none() {
        assert!(
            started.elapsed() < GUARD,
            "no replica restored the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for gw in [&a, &b, &c] {
        assert_eq!(status(gw, &amelia).await, 401);
    }

    let records = a.audit_records(3).await;
    let revoked: Vec<_> = records.iter().filter(|r| r["event"] == "revoke").collect();
    assert_eq!(revoked.len(), 1, "{records:#?}");
    let detail = revoked[0]["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(
            "POST /revoke from 127.0.0.1: subject amelia refused from its next request on until 20"
        ) && detail.ends_with(", on every replica"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_revocation_while_redis_is_down_holds_here_and_reaches_the_others_later() {
    let mut redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let omar = idp.token("omar", &["agent"], json!({}));

    redis.stop();
    let (code, answer) = revoke(&a, json!({"sub": "omar", "ttl": "1h"})).await;
    assert_eq!(code, 202, "accepted, not yet shared: {answer}");
    assert_eq!(answer["shared"], false);
    assert!(answer["pending"].is_string(), "{answer}");
    assert_eq!(status(&a, &omar).await, 401, "refused here at once");
    assert_eq!(
        status(&b, &omar).await,
        200,
        "the other replica cannot know yet"
    );
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("chatwarden_runtime_revocations 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("chatwarden_revocation_sync_failures_total 0\n"),
        "the failed sync is counted: {metrics}"
    );

    redis.restart().await;
    until(
        &b,
        &omar,
        401,
        "the revocation never reached the other replica",
    )
    .await;
}

#[tokio::test]
async fn a_revocation_ends_with_its_ttl_and_bad_requests_are_refused() {
    let redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let lena = idp.token("lena", &["agent"], json!({}));

    let (code, answer) = revoke(&a, json!({"sub": "lena", "ttl": "1s"})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(status(&a, &lena).await, 401);
    until(&b, &lena, 401, "never shared").await;
    // One second later, on both, and in Redis.
    until(&a, &lena, 200, "the revocation never ended").await;
    until(
        &b,
        &lena,
        200,
        "the revocation never ended on the other replica",
    )
    .await;
    let started = Instant::now();
    while in_redis(&redis, "lena").await.is_some() {
        assert!(
            started.elapsed() < GUARD,
            "Redis kept an expired revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for (body, want) in [
        (json!({"sub": "lena", "ttl": "forever"}), "`ttl`"),
        (json!({"sub": "lena", "ttl": "31d"}), "between 1s and 30d"),
        (json!({"sub": ""}), "must not be empty"),
        (json!({"sub": "lena", "jti": "x"}), "not both"),
        (json!({"ttl": "1h"}), "`sub` or `jti` is required"),
        (json!({"sub": "lena", "why": "left"}), "unknown field"),
    ] {
        let resp = a
            .client()
            .post(format!("http://{}/revoke", a.admin))
            .json(&body)
            .send()
            .await
            .expect("revoke");
        assert_eq!(resp.status(), 400, "{body}");
        let text = resp.text().await.expect("text");
        assert!(text.contains(want), "{body}: {text}");
    }
    assert_eq!(status(&a, &lena).await, 200, "nothing was revoked");
}

#[tokio::test]
async fn a_full_shared_set_of_the_longest_subjects_still_syncs() {
    let redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    // Another replica's work: the most revocations a replica holds, the
    // longest subjects, put straight into Redis; the last one is ours.
    let now = jiff::Timestamp::now().as_millisecond();
    let entry = format!("{now}:{}:r", now + 3_600_000);
    let subjects: Vec<String> = (0..999)
        .map(|i| format!("{i:0>128}"))
        .chain(["zoe".to_string()])
        .collect();
    let mut args: Vec<&[u8]> = vec![b"HSET", b"test:rv:revoked"];
    for s in &subjects {
        args.push(s.as_bytes());
        args.push(entry.as_bytes());
    }
    assert_eq!(
        redis.command(&args).await,
        chatwarden::limit::resp::Reply::Integer(1000)
    );
    let a = gateway(&up, &idp, &redis).await;
    let zoe = idp.token("zoe", &["agent"], json!({}));
    until(&a, &zoe, 401, "the replica never took in the full set").await;
    let full = a
        .client()
        .post(format!("http://{}/revoke", a.admin))
        .json(&json!({"sub": "one-more"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(full.status(), 409, "the replica holds as many as it may");
}

#[tokio::test]
async fn a_lifted_revocation_is_lifted_everywhere_and_stays_lifted() {
    let mut redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let noah = idp.token("noah", &["agent"], json!({}));

    // The wrong person was revoked, through a.
    let (code, _) = revoke(&a, json!({"sub": "noah"})).await;
    assert_eq!(code, 200);
    until(&b, &noah, 401, "b never learnt the revocation").await;

    // Lifted through b: at once there, and on a at its next sync.
    let unrevoke = |gw: &TestGateway, sub: &'static str| {
        let req = gw
            .client()
            .post(format!("http://{}/unrevoke", gw.admin))
            .json(&json!({ "sub": sub }));
        async move {
            let resp = req.send().await.expect("unrevoke");
            let code = resp.status().as_u16();
            (code, resp.text().await.expect("a body"))
        }
    };
    let (code, body) = unrevoke(&b, "noah").await;
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["lifted"], "noah");
    assert_eq!(answer["shared"], true);
    assert_eq!(status(&b, &noah).await, 200, "lifted at once where asked");
    until(&a, &noah, 200, "a never learnt the lifting").await;

    // a still held the revocation when b lifted it; its syncs push it, but
    // the lifting is the later decision. Nor does a Redis restart bring it
    // back: the replicas push the lifting too.
    redis.restart().await;
    let started = Instant::now();
    while in_redis_hash(&redis, "noah").await.is_none() {
        assert!(started.elapsed() < GUARD, "no replica restored the entries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(in_redis_hash(&redis, "noah")
        .await
        .is_some_and(|e| e.ends_with(":l")));
    for gw in [&a, &b] {
        assert_eq!(status(gw, &noah).await, 200);
    }

    let (code, body) = unrevoke(&a, "noah").await;
    assert_eq!(code, 404, "nothing left to lift: {body}");
    let records = b.audit_records(2).await;
    let lifted: Vec<_> = records
        .iter()
        .filter_map(|r| r["detail"].as_str())
        .filter(|d| d.starts_with("POST /unrevoke"))
        .collect();
    assert_eq!(
        lifted,
        ["POST /unrevoke from 127.0.0.1: subject noah's runtime revocation lifted, on every replica"]
    );
}

#[tokio::test]
async fn one_leaked_token_is_revoked_everywhere_and_its_owners_others_still_work() {
    let redis = RedisServer::start().await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let a = gateway(&up, &idp, &redis).await;
    let b = gateway(&up, &idp, &redis).await;
    let leaked = idp.token("ines", &["agent"], json!({"jti": "tok-leaked-in-a-ticket"}));
    let other = idp.token("ines", &["agent"], json!({"jti": "tok-on-her-laptop"}));

    let (code, answer) = revoke(&a, json!({"jti": "tok-leaked-in-a-ticket"})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["kind"], "jti");
    assert_eq!(status(&a, &leaked).await, 401);
    until(
        &b,
        &leaked,
        401,
        "the other replica never refused the leaked token",
    )
    .await;
    for gw in [&a, &b] {
        assert_eq!(status(gw, &other).await, 200, "her other token still works");
    }
    let in_hash = redis
        .command(&[b"HGET", b"test:rv:revoked-jti", b"tok-leaked-in-a-ticket"])
        .await;
    assert!(
        matches!(&in_hash, chatwarden::limit::resp::Reply::Bulk(Some(e)) if e.ends_with(b":r")),
        "{in_hash:?}"
    );

    let lifted = b
        .client()
        .post(format!("http://{}/unrevoke", b.admin))
        .json(&json!({"jti": "tok-leaked-in-a-ticket"}))
        .send()
        .await
        .expect("unrevoke");
    assert_eq!(lifted.status(), 200);
    until(
        &a,
        &leaked,
        200,
        "the lifting never reached the other replica",
    )
    .await;

    let records = a.audit_records(3).await;
    assert!(
        records
            .iter()
            .filter_map(|r| r["detail"].as_str())
            .any(|d| d.starts_with(
                "POST /revoke from 127.0.0.1: token id tok-leaked-in-a-ticket refused"
            )),
        "{records:#?}"
    );
}
