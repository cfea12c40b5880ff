//! The demo's identity provider: a fresh Ed25519 signing key per run, its
//! public half served as a JWKS on loopback (the gateway fetches it like
//! any IdP's), and one token per demo persona.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::auth::{generate_dev_key, mint, MintError, MintKey};
use crate::demo::upstream::data::{
    DE_INBOX_ID, DE_PHONE_NUMBER_ID, UK_INBOX_ID, UK_PHONE_NUMBER_ID,
};

pub const ISSUER: &str = "https://idp.acme-retail.example/";
pub const AUDIENCE: &str = "chatwarden";

/// Serve `jwks` (a JWKS document) to every request on `listener`.
pub async fn serve_jwks(listener: TcpListener, jwks: String) {
    let body = Bytes::from(jwks);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/jwk-set+json")
                            .header("cache-control", "max-age=300")
                            .body(Full::new(body))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A demo persona and what their token says.
pub struct Persona {
    /// Shell variable the guide uses (`$AGENT`).
    pub var: &'static str,
    pub who: &'static str,
    pub token: String,
}

/// A new signing key and its JWKS.
pub fn new_key() -> Result<(MintKey, String), MintError> {
    generate_dev_key()
}

/// One token per demo persona, valid for 12 hours.
pub fn personas(key: &MintKey) -> Result<Vec<Persona>, MintError> {
    let now = jiff::Timestamp::now().as_second();
    let token = |sub: &str, roles: &[&str], extra: Value| -> Result<String, MintError> {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": roles,
            "iat": now, "exp": now + 12 * 3600, "auth_time": now, "amr": ["pwd", "otp"],
            "jti": format!("demo-{sub}-{now}"),
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        mint(&claims, key)
    };
    Ok(vec![
        Persona {
            var: "AGENT",
            who: "Amelia Clarke, support agent (UK number, agent id 3), MFA just now",
            token: token(
                "amelia.clarke@acme-retail.example",
                &["agent"],
                json!({"uid": 3, "wa_numbers": [UK_PHONE_NUMBER_ID], "inboxes": [UK_INBOX_ID], "teams": ["support"], "region": "uk"}),
            )?,
        },
        Persona {
            var: "SUPERVISOR",
            who: "Priya Shah, supervisor (agent id 1), MFA just now",
            token: token(
                "priya.shah@acme-retail.example",
                &["supervisor"],
                json!({"uid": 1, "wa_numbers": [UK_PHONE_NUMBER_ID, DE_PHONE_NUMBER_ID], "inboxes": [UK_INBOX_ID, DE_INBOX_ID], "teams": ["support", "sales"], "region": "uk"}),
            )?,
        },
        Persona {
            var: "SUPERVISOR_STALE",
            who: "Priya again, but her MFA was 2 hours ago",
            token: token(
                "priya.shah@acme-retail.example",
                &["supervisor"],
                json!({"uid": 1, "wa_numbers": [UK_PHONE_NUMBER_ID, DE_PHONE_NUMBER_ID], "inboxes": [UK_INBOX_ID, DE_INBOX_ID], "auth_time": now - 2 * 3600}),
            )?,
        },
        Persona {
            var: "CONTRACTOR",
            who: "Jonas Weber, contractor (DE number, agent id 4): today is a closed day for contractors",
            token: token(
                "jonas.weber@acme-retail.example",
                &["contractor"],
                json!({"uid": 4, "wa_numbers": [DE_PHONE_NUMBER_ID], "inboxes": [DE_INBOX_ID], "teams": ["sales"], "region": "de"}),
            )?,
        },
        Persona {
            var: "FINANCE",
            who: "Farah Ali, finance: exports only from the office network",
            token: token("farah.ali@acme-retail.example", &["finance"], json!({}))?,
        },
        Persona {
            var: "ADMIN",
            who: "Sam Okafor, admin, MFA just now",
            token: token("sam.okafor@acme-retail.example", &["admin"], json!({"uid": 6}))?,
        },
    ])
}
