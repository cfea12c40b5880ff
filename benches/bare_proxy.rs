//! The floor for any pingora-based gateway: a pass-through `ProxyHttp`
//! that does nothing but pick the upstream. The load benchmark
//! (`benches/load/run`) measures chatwarden and its peers as ratios to it.
//!
//! ```text
//! bare_proxy --serve 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--threads N] [--work-stealing]
//! ```
//!
//! The server settings mirror chatwarden's (`src/server.rs`): one worker
//! thread unless told otherwise, no work stealing, and the client write
//! buffer chatwarden's listeners default to, so the difference to
//! chatwarden is the policy path and nothing else. Run by `cargo bench`
//! (no `--serve`), it exits at once.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use chatwarden::config::snapshot::DEFAULT_WRITE_BUFFER;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_proxy::{ProxyHttp, Session};

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    serve: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
    work_stealing: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut serve, mut upstream, mut threads, mut work_stealing) = (None, None, 1, false);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--serve" => serve = Some(value("--serve")?),
            "--upstream" => upstream = Some(value("--upstream")?),
            "--threads" => {
                threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--work-stealing" => work_stealing = true,
            // What `cargo bench` passes (`--bench`, filters): not ours.
            _ => {}
        }
    }
    let Some(serve) = serve else {
        return Ok(None);
    };
    let addr = |s: String, name: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| format!("{name} {s}: {e}"))
    };
    Ok(Some(Args {
        serve: addr(serve, "--serve")?,
        upstream: addr(upstream.ok_or("--upstream is required")?, "--upstream")?,
        threads: threads.max(1),
        work_stealing,
    }))
}

// The same allocator as the chatwarden binary, so the baseline differs
// from it only by the policy path.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("bare_proxy: not a criterion bench; benches/load/run starts it with --serve");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bare_proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: args.work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
        "bare",
    );
    proxy.add_listener(
        ListenerConfig::tcp(args.serve.to_string())
            .l4_buffer(L4BufferSettings::default().write(DEFAULT_WRITE_BUFFER)),
    );
    server.add_service(proxy);
    server.bootstrap();
    server.run_forever()
}
