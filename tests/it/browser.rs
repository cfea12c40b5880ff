//! CORS as a real browser sees it: headless Chromium loads a page from
//! one origin and calls the gateway with `fetch`. Whether a page may read
//! an answer is the browser's decision, made from the gateway's headers,
//! so this is the test that says those headers do what `cors` promises.
//!
//! Two pages: one on the origin `cors` lists (its calls, preflighted ones
//! included, succeed and it reads the answers, refusals too, and its
//! `fetch` may send the token cookie) and one on another origin (its
//! preflights are refused, its cookie-authenticated read too, and it reads
//! nothing, not even from a public route whose upstream lets any origin
//! read with credentials). Both also hide an `<img>` pointing at the
//! gateway, which the browser sends with the cookie; the gateway refuses
//! it, since it is neither a navigation nor from a trusted origin.
//!
//! `./dev test` installs Chromium where the package manager has it. Where
//! it cannot (`CHATWARDEN_SKIP_BROWSER` says why), the test says it was
//! skipped; anywhere else a missing browser fails it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness;
use crate::idp::Idp;
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
  cookie: cw_session
roles:
  agent: {permissions: [messages.send, conversations.read]}
routes:
  - name: messages.create
    upstream: crm
    methods: [POST]
    path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"
    permission: messages.send
  - name: conversations.list
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations"
    permission: conversations.read
  - {name: status, upstream: crm, methods: [GET], path: /public/status, auth: none}
cors:
  origins: ["${APP_ORIGIN}"]
  credentials: true
audit: {path: "${AUDIT}"}
"#;

/// The page's script: each call's outcome as `name=status` (or
/// `name=blocked` when the browser refused to let the page see it), and
/// whether the request id header was readable. The token cookie is set
/// for the page's host, which the gateway shares (cookies ignore ports).
const SCRIPT: &str = r#"
document.cookie = 'cw_session=' + TOKEN + '; path=/';
const calls = [
  ['cookie', '/api/v1/accounts/1/conversations', {credentials: 'include'}],
  ['read', '/api/v1/accounts/1/conversations', {headers: {authorization: 'Bearer ' + TOKEN}}],
  ['send', '/api/v1/accounts/1/conversations/7/messages', {method: 'POST',
    headers: {authorization: 'Bearer ' + TOKEN, 'content-type': 'application/json'},
    body: JSON.stringify({content: 'Refund approved'})}],
  ['anonymous', '/api/v1/accounts/1/conversations', {}],
  ['public', '/public/status', {}],
];
(async () => {
  const out = [];
  for (const [name, path, init] of calls) {
    try {
      const r = await fetch(GATEWAY + path, init);
      await r.text();
      out.push(name + '=' + r.status + (r.headers.get('x-request-id') ? '+id' : ''));
    } catch (e) {
      out.push(name + '=blocked');
    }
  }
  // An <img> sends the cookie and no Origin; the page learns nothing.
  await new Promise((done) => {
    const img = new Image();
    img.onload = img.onerror = done;
    img.src = GATEWAY + '/api/v1/accounts/1/conversations?hidden=image';
  });
  out.push('image=sent');
  document.body.textContent = 'RESULT ' + out.join(' ') + ' END';
})();
"#;

/// Serves one page, whatever is asked, on `listener` until the test ends.
fn serve_page(listener: TcpListener, html: String) {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
}

/// A Chromium on `PATH`, or why none is needed here.
fn browser() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    match std::env::var("CHATWARDEN_SKIP_BROWSER") {
        Ok(why) => Err(why),
        Err(_) => panic!(
            "no Chromium on PATH: install it (`./dev test` does: apt-get install chromium), \
             or set CHATWARDEN_SKIP_BROWSER to the reason it cannot run here"
        ),
    }
}

/// Loads `url` in headless Chromium and returns what the page's script
/// wrote: the `name=outcome` words between `RESULT` and `END`.
async fn visit(browser: &PathBuf, url: &str) -> Vec<String> {
    let profile = tempfile::tempdir().expect("profile dir");
    let run = tokio::process::Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            // Chromium's virtual clock waits for the page's network
            // activity, then dumps the document once the script is done.
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("Chromium finished within a minute")
        .expect("Chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    let result = dom
        .split_once("RESULT ")
        .and_then(|(_, rest)| rest.split_once(" END"))
        .map(|(r, _)| r.to_string())
        .unwrap_or_else(|| {
            panic!(
                "the page did not finish: {dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    result.split(' ').map(str::to_string).collect()
}

#[tokio::test]
async fn a_browser_lets_only_the_listed_origins_page_read_the_gateway() {
    let browser = match browser() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("browser CORS test skipped: {why}");
            return;
        }
    };
    let app_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let other_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let app: SocketAddr = app_listener.local_addr().expect("addr");
    let other: SocketAddr = other_listener.local_addr().expect("addr");

    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(
        CONFIG,
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("APP_ORIGIN", format!("http://{app}")),
        ],
    )
    .await;
    gw.wait_ready().await;
    let token = idp.token("amelia", &["agent"], json!({}));
    let page = format!(
        "<!doctype html><html><body>pending<script>const GATEWAY = 'http://{}'; \
         const TOKEN = '{token}';{SCRIPT}</script></body></html>",
        gw.addr
    );
    serve_page(app_listener, page.clone());
    serve_page(other_listener, page);

    // The listed origin's page: preflighted calls (a token header, a JSON
    // body) and a cookie-authenticated read go through; it reads each
    // answer, the gateway's 401 and the request id included.
    let seen = visit(&browser, &format!("http://{app}/console")).await;
    assert_eq!(
        seen,
        [
            "cookie=200+id",
            "read=200+id",
            "send=200+id",
            "anonymous=401+id",
            "public=200+id",
            "image=sent"
        ],
        "the listed origin's page"
    );
    assert_eq!(up.count(), 4, "its four admitted calls were forwarded");

    // Another origin's page: the browser stops the preflighted calls at
    // the gateway's refusal, the gateway refuses its cookie read, and the
    // page reads nothing, not even the public route whose upstream said
    // any origin may read.
    let seen = visit(&browser, &format!("http://{other}/phish")).await;
    assert_eq!(
        seen,
        [
            "cookie=blocked",
            "read=blocked",
            "send=blocked",
            "anonymous=blocked",
            "public=blocked",
            "image=sent"
        ],
        "another origin's page"
    );
    let forwarded = up.seen();
    assert_eq!(
        forwarded.len(),
        5,
        "of its calls only the public one was forwarded: {forwarded:?}"
    );
    let last = &forwarded[4];
    assert_eq!(last.target, "/public/status");
    assert_eq!(
        last.headers.get("origin").and_then(|v| v.to_str().ok()),
        Some(format!("http://{other}").as_str()),
        "the upstream was asked from the other origin, and its answer let that origin read"
    );
    assert!(
        forwarded.iter().all(|s| !s.target.contains("hidden=image")),
        "no hidden image was forwarded"
    );
    let records = gw.audit_records(14).await;
    assert_eq!(
        harness::with_reason(&records, "cors_denied").len(),
        2,
        "the other page's two preflights: {records:#?}"
    );
    let from_elsewhere = harness::with_reason(&records, "origin_denied");
    assert_eq!(
        from_elsewhere.len(),
        3,
        "both hidden images and the other page's cookie read: {records:#?}"
    );
    assert!(
        from_elsewhere.iter().all(|r| r["sub"] == "amelia"),
        "each was sent with her cookie: {from_elsewhere:#?}"
    );
}
