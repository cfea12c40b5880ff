//! What several benchmarks share: a same-run ratio printed as the median
//! of interleaved rounds.

use std::hint::black_box;
use std::time::Instant;

/// Interleaved rounds of both closures; prints the median ratio so the
/// figure survives a noisy neighbour.
pub fn report_ratio<A, B, RA, RB>(label: &str, mut subject: A, mut baseline: B)
where
    A: FnMut() -> RA,
    B: FnMut() -> RB,
{
    let mut ratios = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..20_000 {
            black_box(subject());
        }
        let s = t.elapsed();
        let t = Instant::now();
        for _ in 0..20_000 {
            black_box(baseline());
        }
        let b = t.elapsed();
        ratios.push(s.as_secs_f64() / b.as_secs_f64().max(1e-12));
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "ratio: {label}: {:.2}x (median of 15 interleaved rounds)",
        ratios[ratios.len() / 2]
    );
}
