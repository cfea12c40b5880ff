//! `chatwarden demo`: the gateway on the embedded demo config, in front of
//! the built-in CRM and WhatsApp upstreams on loopback, plus a guide of
//! what to try.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::config::env::Overlay;
use crate::config::{load_str, ProcessEnv};
use crate::demo::upstream::{
    serve_crm, serve_whatsapp, DEMO_CRM_API_TOKEN, DEMO_META_ACCESS_TOKEN,
};
use crate::server::{self, RunOptions};

/// The demo config, embedded so the demo runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

/// Start everything and serve until interrupted.
pub fn run(listen: &str, admin: &str) -> ExitCode {
    let upstreams = match start_upstreams() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("chatwarden demo: cannot start the demo upstreams: {e}");
            return ExitCode::from(1);
        }
    };
    let audit_path = std::env::temp_dir().join("chatwarden-demo-audit.jsonl");
    let vars: HashMap<String, String> = [
        ("DEMO_LISTEN", listen.to_string()),
        ("DEMO_ADMIN", admin.to_string()),
        ("DEMO_CRM_URL", format!("http://{}", upstreams.crm)),
        (
            "DEMO_WHATSAPP_URL",
            format!("http://{}", upstreams.whatsapp),
        ),
        ("DEMO_CRM_TOKEN", DEMO_CRM_API_TOKEN.to_string()),
        ("DEMO_META_TOKEN", DEMO_META_ACCESS_TOKEN.to_string()),
        ("DEMO_AUDIT", audit_path.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let snapshot = match load_str(
        DEMO_CONFIG,
        Path::new("config/demo.yaml"),
        &Overlay {
            top: &vars,
            base: &ProcessEnv,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatwarden demo: the embedded demo config is invalid:\n{e}");
            return ExitCode::from(1);
        }
    };
    let (server, _handles) = match server::build(snapshot, &RunOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatwarden demo: {e}");
            return ExitCode::from(1);
        }
    };
    print_guide(listen, admin, &audit_path);
    server.run_forever()
}

struct DemoUpstreams {
    crm: SocketAddr,
    whatsapp: SocketAddr,
}

/// The upstreams run on their own small runtime, on ports the OS picks, so
/// the demo never collides with something already listening.
fn start_upstreams() -> std::io::Result<DemoUpstreams> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo-upstreams")
        .enable_all()
        .build()?;
    let (crm, whatsapp) = runtime.block_on(async {
        let crm = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let whatsapp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Ok::<_, std::io::Error>((crm, whatsapp))
    })?;
    let addrs = DemoUpstreams {
        crm: crm.local_addr()?,
        whatsapp: whatsapp.local_addr()?,
    };
    runtime.spawn(serve_crm(crm));
    runtime.spawn(serve_whatsapp(whatsapp));
    // The runtime must outlive this function: it serves until the process
    // exits, on its own thread.
    std::thread::Builder::new()
        .name("demo-upstreams".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(addrs)
}

fn print_guide(listen: &str, admin: &str, audit: &Path) {
    let gw = format!("http://{listen}");
    println!(
        r#"
chatwarden demo — gateway on {gw}, admin on http://{admin}
  in front of a Chatwoot-like CRM (account 1, "Acme Retail") and a WhatsApp Cloud API
  look-alike. The gateway holds both upstream credentials: clients never see them.

Try:
  # A routed call: the gateway injects the CRM's api_access_token for you
  curl -s {gw}/api/v1/accounts/1/conversations | head -c 600; echo

  # Send a WhatsApp message from the UK business number
  curl -s -X POST {gw}/v23.0/106540352242922/messages -H 'content-type: application/json' \
       -d '{{"messaging_product":"whatsapp","to":"447700900123","type":"text","text":{{"body":"Your order has shipped"}}}}'; echo

  # Default deny: no route, never reaches the CRM
  curl -s {gw}/api/v1/accounts/1/contacts/1/destroy_all; echo

  # Path tricks are normalized once, and what is checked is what is forwarded
  curl -s --path-as-is {gw}/api/v1/accounts/1/x/../../../../admin; echo
  curl -s {gw}/api/v1/accounts/1/contacts%2F1; echo

  # Health, readiness, Prometheus metrics
  curl -s http://{admin}/metrics | grep chatwarden_requests_total

  # The audit trail: one hash-chained JSON line per request
  tail -n 5 {audit}
  chatwarden audit verify {audit}

Ctrl-C to stop.
"#,
        audit = audit.display()
    );
}
