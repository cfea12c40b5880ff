//! `chatwarden check`: validate a config file without serving it, and say
//! which of its valid choices leave something exposed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use crate::config::{load_file, ProcessEnv, Snapshot};

pub fn run(config: &Path) -> ExitCode {
    match load_file(config, &ProcessEnv) {
        Ok(snapshot) => {
            println!(
                "{}: ok (version {}, {} listener(s), {} upstream(s), {} route(s))",
                config.display(),
                snapshot.version,
                snapshot.listeners.len(),
                snapshot.upstreams.len(),
                snapshot.routes.len()
            );
            for warning in warnings(&snapshot) {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::from(1)
        }
    }
}

/// What a valid config leaves exposed: secrets or staff tokens in clear on
/// the network, an admin port anyone can use, an audit trail that could be
/// rewritten unseen. Advice, not errors: a lab or a gateway behind a
/// TLS-terminating load balancer may mean it.
pub fn warnings(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for l in &s.listeners {
        if l.tls.is_none() && !local(l.addr) {
            out.push(format!(
                "listener `{}` on {} speaks plain HTTP: staff tokens cross the network in clear (set tls, unless a load balancer in network.trusted_proxies terminates TLS in front of it)",
                l.name, l.addr
            ));
        }
    }
    if let Some(a) = &s.admin {
        let due = a.tls.as_ref().and_then(|t| t.crl_next_update);
        if let Some(due) = due.filter(|d| *d < jiff::Timestamp::now().as_second()) {
            let when = jiff::Timestamp::from_second(due)
                .map_or_else(|_| due.to_string(), |t| t.to_string());
            out.push(format!(
                "admin.tls.client_crl: a revocation list was due to be replaced at {when}: a client certificate revoked since may be missing from it (fetch the new list and reload)"
            ));
        }
        if !local(a.addr) {
            if a.tls.is_none() {
                out.push(format!(
                    "the admin listener on {} speaks plain HTTP: the admin token, /revoke and /reload cross the network in clear (set admin.tls)",
                    a.addr
                ));
            }
            let certificates = a.tls.as_ref().is_some_and(|t| t.clients.is_some());
            if a.token.is_none() && !certificates {
                out.push(format!(
                    "the admin listener on {} asks for neither a token (admin.token_env) nor a client certificate (admin.tls.client_ca): whoever reaches it can revoke, reload and read /metrics",
                    a.addr
                ));
            }
        }
    }
    for u in s.upstreams.values() {
        if !u.tls && !u.inject.is_empty() && !local_host(&u.host) {
            let names: Vec<&str> = u.inject.iter().map(|(n, _)| n.as_str()).collect();
            out.push(format!(
                "upstream `{}` is plain http:// to {}: its injected credentials ({}) cross the network in clear",
                u.name.0,
                u.host,
                names.join(", ")
            ));
        }
    }
    // Meta's Graph API answers with links to itself (every list's
    // `paging.next`) and to its media host: followed as written, they
    // leave the gateway with the client's bearer token, the staff token.
    for u in s.upstreams.values() {
        if u.host.eq_ignore_ascii_case(META_GRAPH_HOST) && !u.links.contains(&u.origin()) {
            out.push(format!(
                "upstream `{}` is Meta's Graph API, whose answers link to itself (paging.next) and to its media host: without `links: [{}, …]` a client that follows one leaves the gateway and sends its staff token to Meta",
                u.name.0, u.name.0
            ));
        }
    }
    // A stream nothing reads next to answers that are masked: whoever may
    // open it gets, live, what the masked routes hide.
    let masks_answers = s
        .routes
        .values()
        .any(|r| !r.websocket && (!r.redactions.is_empty() || r.row_filter.is_some()));
    for r in s.routes.values() {
        if masks_answers && r.websocket && r.message_filter.is_none() && r.redactions.is_empty() {
            out.push(format!(
                "route `{}` passes its WebSocket messages unread{}, while other routes filter or mask their answers: give it a message_filter and redaction rules, or a permission only roles cleared for everything hold",
                r.name.0,
                r.requirement
                    .permission
                    .as_ref()
                    .map(|p| format!(" to every role with `{p}`"))
                    .unwrap_or_default()
            ));
        }
    }
    if !s.audit.hash_chain {
        out.push(
            "audit.hash_chain is off: an edited or deleted audit record would not show".into(),
        );
    } else if s.audit.signing.is_none() {
        out.push(
            "audit.signing_key is not set: whoever can write the audit file can rewrite it with a chain that still verifies".into(),
        );
    }
    out
}

/// The WhatsApp Cloud API's host.
const META_GRAPH_HOST: &str = "graph.facebook.com";

fn local(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
