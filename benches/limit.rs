//! Cost of a rate-limit check against the cost of a route lookup.
//!
//! (a) a bare `RouteTable::find` on a 201-route table (the baseline every
//! request pays); (b) `Limiter::check` for callers within their allowance
//! (1,000 callers in turn); (c) the same with 10,000 more callers already
//! in the table; (d) `Limits::limiter` (the registry lookup the proxy
//! makes) plus the check. Criterion measures
//! each; a final pass times them back to back and prints ratios to (a).
//!
//! When `redis-server` is on PATH, one is started on a free loopback port
//! and the shared store's check (one EVALSHA round trip, plus the
//! in-process shadow count) is timed against the in-process check in the
//! same run; without it, that part says it was skipped.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chatwarden::limit::redis::{RedisSettings, RedisTarget};
use chatwarden::limit::{LimitKey, LimitStore, Limiter, Limits, RateLimit};
use chatwarden::request::normalize_path;
use chatwarden::route::{MethodSet, PathTemplate, RouteTable};
use criterion::{criterion_group, Criterion};
use http::Method;

struct Fixture {
    table: RouteTable<usize>,
    path: chatwarden::request::NormalizedPath,
    limit: RateLimit,
    one: Limiter,
    crowded: Limiter,
    limits: Limits,
}

fn fixture() -> Fixture {
    let mut entries = Vec::new();
    for i in 0..200 {
        let t = PathTemplate::parse(&format!("/api/v1/accounts/{{account_id}}/r{i}/{{id}}"))
            .expect("bench template");
        entries.push((MethodSet::from_iter([Method::GET]), t, i));
    }
    let t = PathTemplate::parse("/api/v1/accounts/{account_id}/contacts/export").expect("template");
    entries.push((MethodSet::from_iter([Method::GET]), t, 200));
    let table = RouteTable::new(entries).expect("bench table");
    // Generous: no check in the bench is ever refused.
    let limit = RateLimit::new(LimitKey::Subject, Duration::from_secs(86_400), 1_000_000)
        .expect("bench limit");
    let crowded = Limiter::new(&limit);
    for i in 0..10_000 {
        let _ = crowded.check(&format!("caller-{i}@acme-retail.example"));
    }
    Fixture {
        table,
        path: normalize_path("/api/v1/accounts/1/contacts/export").expect("bench path"),
        one: Limiter::new(&limit),
        crowded,
        limits: Limits::default(),
        limit,
    }
}

/// Callers the checks rotate through, so no caller ever exhausts the
/// (generous) allowance however many iterations criterion runs: every
/// measured check is an allowed one.
fn callers() -> Vec<String> {
    (0..1000)
        .map(|i| format!("agent-{i}@acme-retail.example"))
        .collect()
}

fn bench_limit(c: &mut Criterion) {
    let fx = fixture();
    let who = callers();
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) % 1000;
        i
    };
    let mut group = c.benchmark_group("limit");
    group.bench_function("a_route_find_201", |b| {
        b.iter(|| black_box(fx.table.find(&Method::GET, black_box(&fx.path))).is_some())
    });
    group.bench_function("b_check_1k_callers", |b| {
        b.iter(|| fx.one.check(black_box(&who[next()])).is_ok())
    });
    group.bench_function("c_check_among_11k_callers", |b| {
        b.iter(|| fx.crowded.check(black_box(&who[next()])).is_ok())
    });
    group.bench_function("d_registry_and_check", |b| {
        b.iter(|| {
            fx.limits
                .limiter(black_box("contacts.export"), &fx.limit)
                .check(black_box(&who[next()]))
                .is_ok()
        })
    });
    group.finish();
}

fn print_ratios() {
    let fx = fixture();
    let who = callers();
    let i = std::cell::Cell::new(0usize);
    let next = || {
        i.set((i.get() + 1) % 1000);
        i.get()
    };
    let allowed = std::cell::Cell::new(0u32);
    const N: u32 = 500_000;
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
        black_box(fx.table.find(&Method::GET, black_box(&fx.path)));
    });
    let count = |ok: bool| allowed.set(allowed.get() + u32::from(ok));
    let one = time(&|| count(fx.one.check(black_box(&who[next()])).is_ok()));
    let crowded = time(&|| count(fx.crowded.check(black_box(&who[next()])).is_ok()));
    let full = time(&|| {
        count(
            fx.limits
                .limiter(black_box("contacts.export"), &fx.limit)
                .check(black_box(&who[next()]))
                .is_ok(),
        )
    });
    assert_eq!(
        allowed.get(),
        3 * (N + N / 10),
        "every timed check should have been allowed"
    );
    println!(
        "ratio (same run, {N} iterations each): route find {find:.1} ns; check {one:.1} ns ({:.2}×); among 10k callers {crowded:.1} ns ({:.2}×); registry + check {full:.1} ns ({:.2}×)",
        one / find,
        crowded / find,
        full / find
    );
}

criterion_group!(benches, bench_limit);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
    print_redis_ratio();
}

/// The shared store against the in-process one, same run, same callers.
fn print_redis_ratio() {
    let Some(redis) = BenchRedis::start() else {
        println!("redis store: skipped (no redis-server on PATH)");
        return;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("redis store: skipped (no runtime: {e})");
            return;
        }
    };
    let limit = RateLimit::new(LimitKey::Subject, Duration::from_secs(86_400), 1_000_000)
        .expect("bench limit");
    let target = RedisTarget::parse(&format!("redis://127.0.0.1:{}", redis.port)).expect("url");
    let shared = LimitStore::redis(RedisSettings {
        target,
        key_prefix: "bench:rl:".into(),
        timeout: Duration::from_secs(1),
        tls: None,
    });
    let memory = LimitStore::Memory;
    let local = Limits::default();
    let who = callers();
    const N: usize = 20_000;
    let (mem_ns, redis_ns, fell_back) = rt.block_on(async {
        let (m, a) = time_store(&memory, &local, &limit, &who, N).await;
        let (r, b) = time_store(&shared, &local, &limit, &who, N).await;
        (m, r, a + b)
    });
    assert_eq!(fell_back, 0, "Redis should have decided every check");
    println!(
        "redis store (same run, {N} sequential checks on loopback): in-process {mem_ns:.0} ns; redis {:.1} µs ({:.0}× the in-process check)",
        redis_ns / 1e3,
        redis_ns / mem_ns
    );
}

/// Nanoseconds per check over `n` allowed checks (after a warm-up), and
/// how many checks the shared store left to the fallback.
async fn time_store(
    store: &LimitStore,
    local: &Limits,
    limit: &RateLimit,
    who: &[String],
    n: usize,
) -> (f64, usize) {
    let mut fell_back = 0usize;
    for w in who {
        let c = store.check(local, "contacts.export", limit, w).await;
        fell_back += usize::from(c.fallback.is_some());
    }
    let start = Instant::now();
    for i in 0..n {
        let c = store
            .check(
                local,
                "contacts.export",
                limit,
                black_box(&who[i % who.len()]),
            )
            .await;
        assert!(c.verdict.is_ok(), "every timed check should be allowed");
        fell_back += usize::from(c.fallback.is_some());
    }
    (start.elapsed().as_secs_f64() * 1e9 / n as f64, fell_back)
}

/// A throwaway `redis-server` on a free loopback port, killed on drop.
struct BenchRedis {
    child: std::process::Child,
    port: u16,
}

impl BenchRedis {
    fn start() -> Option<BenchRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = BenchRedis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.pong() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    fn pong(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
