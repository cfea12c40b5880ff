//! Upstream links lead back through the gateway: the demo Graph API's
//! answers link to itself (a list's `paging.next`, a media item's download
//! `url`), and through the gateway those links name the gateway, as the
//! client reached it, so following one stays under the gateway's policy and
//! never sends the staff token to Meta.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{self, TestGateway};
use crate::idp::Idp;
use chatwarden::demo::upstream::{data, serve_whatsapp, DEMO_META_ACCESS_TOKEN};

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
${NETWORK}
upstreams:
  graph:
    url: "${GRAPH}"
    headers: {authorization: "Bearer ${META_TOKEN}"}
    links: [graph]
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {phone_number_ids: wa_numbers}}
roles:
  agent: {permissions: [whatsapp.templates.read, whatsapp.media.read]}
  supervisor: {inherits: [agent], permissions: [whatsapp.any_number]}
  marketing: {permissions: [whatsapp.templates.read]}
routes:
  - {name: templates, upstream: graph, methods: [GET], path: "/v23.0/{waba_id}/message_templates", permission: whatsapp.templates.read}
  - name: media
    upstream: graph
    methods: [GET]
    path: "/v23.0/{media_id}"
    permission: whatsapp.media.read
    scope: [{query: phone_number_id, claim: phone_number_ids, unless_permission: whatsapp.any_number}]
  - {name: media.download, upstream: graph, methods: [GET], path: "/whatsapp_business/attachments/", permission: whatsapp.media.read}
audit: {path: "${AUDIT}"}
"#;

/// [`CONFIG`] with its `network` section.
fn config(network: &str) -> String {
    CONFIG.replace("${NETWORK}", network)
}

/// The demo Graph on a free port, and the variables the config needs.
async fn graph(idp: &Idp) -> Vec<(&'static str, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the demo Graph");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve_whatsapp(listener));
    vec![
        ("GRAPH", format!("http://{addr}")),
        ("META_TOKEN", DEMO_META_ACCESS_TOKEN.to_string()),
        ("JWKS", idp.jwks_url()),
    ]
}

fn templates_path() -> String {
    format!("/v23.0/{}/message_templates?limit=2", data::WABA_ID)
}

/// Every page of the template list, following `paging.next` from `first`;
/// each next link must start with `origin`.
async fn follow_pages(
    client: &reqwest::Client,
    first: String,
    origin: &str,
    token: &str,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        let resp = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .expect("page");
        assert_eq!(resp.status(), 200, "{url}");
        let page: Value = resp.json().await.expect("json page");
        for t in page["data"].as_array().expect("data") {
            names.push(format!("{}/{}", t["name"], t["language"]));
        }
        if let Some(link) = page["paging"]["next"].as_str() {
            assert!(
                link.starts_with(origin),
                "paging.next should lead to {origin}, got {link}"
            );
            next = Some(link.to_string());
        }
        assert!(names.len() <= data::templates().len(), "pages never end");
    }
    names
}

#[tokio::test]
async fn graph_links_lead_through_the_gateway() {
    let idp = Idp::start().await;
    let vars = graph(&idp).await;
    let gw: TestGateway = harness::start(&config(""), &vars).await;
    let client = gw.client();
    let agent = idp.token(
        "amelia",
        &["agent"],
        serde_json::json!({"wa_numbers": [data::UK_PHONE_NUMBER_ID]}),
    );
    let origin = format!("http://{}", gw.addr);

    // Every page, each reached by the previous page's link.
    let names = follow_pages(&client, gw.url(&templates_path()), &origin, &agent).await;
    assert_eq!(
        names.len(),
        data::templates().len(),
        "every template, over several pages: {names:?}"
    );
    let records = gw.audit_records(3).await;
    assert!(
        records
            .iter()
            .all(|r| r["route"] == "templates" && r["decision"] == "allow"),
        "each page went through the gateway's decision: {records:?}"
    );

    // A customer's photo: its download URL leads to the gateway, and the
    // file arrives as the upstream sent it.
    let media = &data::media()[0];
    let item: Value = client
        .get(gw.url(&format!(
            "/v23.0/{}?phone_number_id={}",
            media.id, media.phone_number_id
        )))
        .bearer_auth(&agent)
        .send()
        .await
        .expect("media")
        .json()
        .await
        .expect("media json");
    let url = item["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!(
            "{origin}/whatsapp_business/attachments/?mid={}",
            media.id
        )),
        "{url}"
    );
    let file = client
        .get(url)
        .bearer_auth(&agent)
        .send()
        .await
        .expect("download");
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.headers()["content-type"],
        "image/png",
        "a file is not JSON: passed as it is"
    );
    assert_eq!(
        file.headers()["content-length"],
        media.bytes.len().to_string().as_str()
    );
    let bytes = file.bytes().await.expect("bytes");
    assert_eq!(&bytes[..], media.bytes);
    assert_eq!(
        item["sha256"],
        hex::encode(Sha256::digest(&bytes)),
        "the digest Meta states fits what arrived"
    );

    // Without the media permission the link leads to a refusal, not to Meta.
    let marketing = idp.token("mo", &["marketing"], serde_json::json!({}));
    let refused = client
        .get(url)
        .bearer_auth(&marketing)
        .send()
        .await
        .expect("download refused");
    assert_eq!(refused.status(), 403);

    // The origin is the one the client asked for (`Host`); a forwarded
    // scheme counts only from a trusted proxy (none here).
    let page: Value = client
        .get(gw.url(&templates_path()))
        .bearer_auth(&agent)
        .header("host", "wa.acme.example:8443")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("json");
    let next = page["paging"]["next"].as_str().expect("next");
    assert!(
        next.starts_with("http://wa.acme.example:8443/v23.0/"),
        "{next}"
    );
}

#[tokio::test]
async fn links_name_the_public_url_or_the_scheme_a_trusted_proxy_reports() {
    let idp = Idp::start().await;
    let agent = idp.token("amelia", &["agent"], serde_json::json!({}));

    let first_next = |gw: TestGateway, host: Option<&'static str>| {
        let agent = agent.clone();
        async move {
            let mut req = gw
                .client()
                .get(gw.url(&templates_path()))
                .bearer_auth(&agent);
            if let Some(host) = host {
                req = req
                    .header("host", host)
                    .header("x-forwarded-proto", "https");
            }
            let page: Value = req.send().await.expect("page").json().await.expect("json");
            page["paging"]["next"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };

    let vars = graph(&idp).await;
    let gw = harness::start(
        &config("network: {public_url: \"https://wa.acme.example/\"}"),
        &vars,
    )
    .await;
    let next = first_next(gw, Some("elsewhere.example")).await;
    assert!(
        next.starts_with("https://wa.acme.example/v23.0/"),
        "the configured public URL, whatever the Host: {next}"
    );

    let vars = graph(&idp).await;
    let gw = harness::start(&config("network: {trusted_proxies: [127.0.0.1/32]}"), &vars).await;
    let next = first_next(gw, Some("wa.acme.example")).await;
    assert!(
        next.starts_with("https://wa.acme.example/v23.0/"),
        "a trusted proxy's X-Forwarded-Proto: {next}"
    );
}

#[tokio::test]
async fn over_tls_links_say_https() {
    let idp = Idp::start().await;
    let vars = graph(&idp).await;
    let (gw, ca) = harness::start_tls(&config(""), &vars).await;
    let client = crate::tls::client_trusting(Some(&ca), &gw)
        .build()
        .expect("client");
    let agent = idp.token("amelia", &["agent"], serde_json::json!({}));
    let origin = format!("https://localhost:{}", gw.addr.port());
    let first = format!("{origin}{}", templates_path());
    let resp = client
        .get(&first)
        .bearer_auth(&agent)
        .send()
        .await
        .expect("h2");
    assert_eq!(
        resp.version(),
        http::Version::HTTP_2,
        "HTTP/2: no Host header, an authority"
    );
    let names = follow_pages(&client, first, &origin, &agent).await;
    assert_eq!(names.len(), data::templates().len());
}

#[tokio::test]
async fn media_is_fetched_only_for_the_callers_own_numbers() {
    let idp = Idp::start().await;
    let vars = graph(&idp).await;
    let gw = harness::start(&config(""), &vars).await;
    let client = gw.client();
    let uk = data::UK_PHONE_NUMBER_ID;
    let de = data::DE_PHONE_NUMBER_ID;
    let agent = idp.token(
        "amelia",
        &["agent"],
        serde_json::json!({"wa_numbers": [uk]}),
    );
    let supervisor = idp.token("priya", &["supervisor"], serde_json::json!({}));
    let media_of = |number: &str| {
        data::media()
            .iter()
            .find(|m| m.phone_number_id == number)
            .map(|m| m.id)
            .unwrap_or_default()
    };
    let (uk_photo, de_photo) = (media_of(uk), media_of(de));
    let get = |query: String, token: &String| client.get(gw.url(&query)).bearer_auth(token).send();

    for (target, token, want, reason) in [
        (
            format!("/v23.0/{uk_photo}?phone_number_id={uk}"),
            &agent,
            200,
            None,
        ),
        (
            format!("/v23.0/{uk_photo}?phone_number_id=%31{}", &uk[1..]),
            &agent,
            200,
            None,
        ),
        (
            format!("/v23.0/{de_photo}?phone_number_id={de}"),
            &agent,
            403,
            Some("scope_denied"),
        ),
        (
            format!("/v23.0/{de_photo}"),
            &agent,
            403,
            Some("scope_denied"),
        ),
        (
            format!("/v23.0/{de_photo}?phone_number_id={uk}&phone_number_id={de}"),
            &agent,
            403,
            Some("scope_denied"),
        ),
        (
            format!("/v23.0/{de_photo}?phone_number_id[]={uk}"),
            &agent,
            403,
            Some("scope_denied"),
        ),
        (
            format!("/v23.0/{de_photo}?phone_number_id={uk}&phone.number.id={de}"),
            &agent,
            403,
            Some("scope_denied"),
        ),
        // Her number named for another number's photo: the gateway lets it
        // pass and Meta refuses it, as it checks the media's number.
        (
            format!("/v23.0/{de_photo}?phone_number_id={uk}"),
            &agent,
            400,
            None,
        ),
        (format!("/v23.0/{de_photo}"), &supervisor, 200, None),
    ] {
        let resp = get(target.clone(), token).await.expect("request");
        assert_eq!(resp.status(), want, "{target}");
        let body: Value = resp.json().await.expect("json");
        if let Some(reason) = reason {
            assert_eq!(body["reason"], reason, "{target}: {body}");
        }
    }
    let records = gw.audit_records(9).await;
    let denied = records
        .iter()
        .filter(|r| r["reason"] == "scope_denied")
        .count();
    assert_eq!(denied, 5, "each refusal audited: {records:?}");
}

const CRM_CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}, links: [crm]}
  crm_files: {url: "${CRM}", format_suffix: allow, links: [crm_files]}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {user_id: uid}}
roles:
  agent: {permissions: [messages.read]}
redaction:
  - {name: messages-pii, fields: ["$.payload[*].sender.phone_number"], detect: [phone, email, wamid]}
routes:
  - name: messages
    upstream: crm
    methods: [GET]
    path: /api/v1/accounts/{account_id}/conversations/{conversation_id}/messages
    permission: messages.read
    owner_check: {lookup: "/api/v1/accounts/{account_id}/conversations/{conversation_id}", field: meta.assignee.id, claim: user_id}
    redaction: [messages-pii]
  - {name: attachments, upstream: crm_files, methods: [GET], path: "/rails/active_storage/{rest*}", permission: messages.read}
audit: {path: "${AUDIT}"}
"#;

/// Chatwoot's attachment links, and the redirect behind them, lead through
/// the gateway; a file is passed as it is.
#[tokio::test]
async fn crm_attachment_links_and_their_redirect_lead_through_the_gateway() {
    let (gw, idp) = harness::start_with_demo_crm(CRM_CONFIG, &[]).await;
    let agent = idp.token("amelia", &["agent"], serde_json::json!({"uid": 3}));
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let origin = format!("http://{}", gw.addr);
    let shade = &data::attachments()[0];
    let conversation = shade.message_id / 100;
    let messages: Value = client
        .get(gw.url(&format!(
            "/api/v1/accounts/1/conversations/{conversation}/messages"
        )))
        .bearer_auth(&agent)
        .send()
        .await
        .expect("messages")
        .json()
        .await
        .expect("json");
    let attachment = messages["payload"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == shade.message_id))
        .map(|m| m["attachments"][0].clone())
        .unwrap_or_default();
    let data_url = attachment["data_url"].as_str().unwrap_or_default();
    assert!(
        data_url.starts_with(&format!("{origin}/rails/active_storage/blobs/redirect/"))
            && data_url.ends_with(shade.filename),
        "the attachment leads through the gateway, its signed id unmasked: {attachment}"
    );
    assert_eq!(attachment["thumb_url"], data_url);

    let redirect = client
        .get(data_url)
        .bearer_auth(&agent)
        .send()
        .await
        .expect("redirect");
    assert_eq!(redirect.status(), 302);
    let location = redirect.headers()["location"].to_str().expect("location");
    assert!(
        location.starts_with(&format!("{origin}/rails/active_storage/disk/")),
        "the redirect leads through the gateway: {location}"
    );
    let file = client
        .get(location)
        .bearer_auth(&agent)
        .send()
        .await
        .expect("file");
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], shade.content_type);
    assert_eq!(&file.bytes().await.expect("bytes")[..], shade.bytes);

    // Without a token, the link leads to a refusal.
    let anonymous = client.get(data_url).send().await.expect("anonymous");
    assert_eq!(anonymous.status(), 401);
}

/// An export too large to hold for rewriting (over the 16 MiB cap, no
/// `Content-Length`): on a route that rewrites only links it passes as the
/// upstream sent it, fetched (GET) or proxied (POST); where the caller's
/// answers are also masked it is never sent.
#[tokio::test]
async fn an_answer_over_the_rewrite_cap_passes_when_only_links_would_change() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = upstream.local_addr().expect("address");
    // The link would be rewritten in a body under the cap.
    let head = format!(r#"{{"next":"http://{addr}/exports/2","rows":""#);
    let pad = 17 * 1024 * 1024;
    let body_len = head.len() + pad + 2;
    tokio::spawn(serve_chunked_export(upstream, head.clone(), pad));
    let config = format!(
        r#"
listeners: [{{name: main, addr: "${{LISTEN}}"}}]
admin: {{addr: "${{ADMIN}}"}}
upstreams:
  crm: {{url: "http://{addr}", links: [crm]}}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${{JWKS}}"
roles:
  supervisor: {{permissions: [exports.read, contacts.read_pii]}}
  agent: {{permissions: [exports.read]}}
routes:
  - {{name: export, upstream: crm, methods: [GET, POST], path: "/exports/{{n}}", permission: exports.read, redaction: [pii]}}
redaction:
  - {{name: pii, unless_permission: contacts.read_pii, detect: [email]}}
audit: {{path: "${{AUDIT}}"}}
"#
    );
    let idp = Idp::start().await;
    let gw: TestGateway = harness::start(&config, &[("JWKS", idp.jwks_url())]).await;
    let client = gw.client();
    let supervisor = idp.token("priya", &["supervisor"], serde_json::json!({}));
    let agent = idp.token("amelia", &["agent"], serde_json::json!({}));

    let export = |method: &reqwest::Method, token: &str| {
        client
            .request(method.clone(), gw.url("/exports/1"))
            .bearer_auth(token)
            .send()
    };
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let resp = export(&method, &supervisor).await.expect("export");
        assert_eq!(resp.status(), 200, "{method}");
        let body = resp.bytes().await.expect("the whole export");
        assert_eq!(body.len(), body_len, "{method}: every byte");
        assert!(
            body.starts_with(head.as_bytes()) && body.ends_with(b"x\"}"),
            "{method}: as the upstream sent it, its link as written"
        );

        // The agent's answers are masked: never sent unread.
        let masked = export(&method, &agent).await.expect("export");
        let refused = match method {
            // Fetched whole first: a clean 502.
            reqwest::Method::GET => masked.status() == 502,
            // Proxied: the head is out, the body is cut.
            _ => masked.bytes().await.map_or(true, |b| b.len() < body_len),
        };
        assert!(
            refused,
            "{method}: a masked answer over the cap is not sent"
        );
    }
    let records = gw.audit_records(4).await;
    let reasons: Vec<_> = records.iter().map(|r| r["reason"].clone()).collect();
    assert_eq!(
        records
            .iter()
            .filter(|r| r["reason"] == "redaction_failed")
            .count(),
        2,
        "the agent's two: {reasons:?}"
    );
}

/// Answers every request on every connection with a JSON export of
/// `head`, `pad` bytes of `x` and `"}`, in 64 KiB chunks.
async fn serve_chunked_export(listener: tokio::net::TcpListener, head: String, pad: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let head = head.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                // One request: its head, then its body if it declared one.
                let end = loop {
                    if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                };
                let text = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                let declared = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while seen.len() < end + declared {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                seen.drain(..end + declared);
                let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                let chunk = |bytes: &[u8], out: &mut Vec<u8>| {
                    out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
                    out.extend_from_slice(bytes);
                    out.extend_from_slice(b"\r\n");
                };
                chunk(head.as_bytes(), &mut out);
                let piece = vec![b'x'; 64 * 1024];
                let mut left = pad;
                while left > 0 {
                    let n = left.min(piece.len());
                    chunk(&piece[..n], &mut out);
                    left -= n;
                    if out.len() > 1024 * 1024 {
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
                chunk(b"\"}", &mut out);
                out.extend_from_slice(b"0\r\n\r\n");
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}
