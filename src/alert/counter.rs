//! Per-(rule, key) counters over a sliding window, estimated from two fixed
//! windows: the count of the current fixed window plus the previous one's,
//! weighted by how much of it still overlaps the sliding window ending now
//! (`cur + prev × (window − elapsed) / window`). O(1) memory per key; the
//! estimate is exact when events are spread evenly and never off by more
//! than the previous window's count.
//!
//! A key fires once when the estimate reaches the threshold. Its counts
//! then start again from zero and it stays quiet for one full window, so a
//! sustained flood raises one alert per window, not one per request.
//!
//! Time is the event's own (`Event::ts`, the request's arrival): no clock
//! is read here, and tests drive time by the events they pass.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use time::OffsetDateTime;

use super::payload::Alert;
use super::rule::{AlertRule, Event, Trigger};

/// Request ids kept per key for the alert (the most recent ones).
pub const SAMPLE_IDS: usize = 5;

/// When a rule tracks `max_keys` keys and a new one arrives (after idle
/// keys were dropped), this fraction of the keys, oldest first, is
/// forgotten at once so the next arrivals do not each pay for a scan.
const EVICT_DIVISOR: usize = 8;

/// Every rule's counters, kept for the life of the process: a reload that
/// leaves a rule's name and trigger unchanged keeps counting where it was.
#[derive(Default)]
pub struct AlertCounters {
    by_rule: RwLock<HashMap<String, Arc<RuleCounters>>>,
}

/// One rule's counters.
pub struct RuleCounters {
    trigger: Trigger,
    keys: Mutex<HashMap<String, KeyState>>,
    evicted: AtomicU64,
}

/// What counting one event did.
#[derive(Debug, Default)]
pub struct Observation {
    pub fired: Option<Alert>,
    /// Keys forgotten before their window ran out to make room.
    pub evicted: u64,
}

impl AlertCounters {
    /// Counts `event` against each rule that matches it; `on` hears the
    /// rules for which something happened (fired or evicted).
    pub fn observe(
        &self,
        rules: &[Arc<AlertRule>],
        event: &Event<'_>,
        mut on: impl FnMut(&AlertRule, Observation),
    ) {
        for rule in rules {
            if !rule.trigger.when.matches(event) {
                continue;
            }
            let Some(key) = rule.trigger.key.of(event) else {
                continue;
            };
            let obs = self.counters(rule).count(&rule.name.0, key, event);
            if obs.fired.is_some() || obs.evicted > 0 {
                on(rule, obs);
            }
        }
    }

    /// The counters of `rule`, made on first use or when its trigger
    /// changed (a changed rule counts afresh).
    pub fn counters(&self, rule: &AlertRule) -> Arc<RuleCounters> {
        {
            let map = self.by_rule.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = map.get(&rule.name.0).filter(|c| c.trigger == rule.trigger) {
                return c.clone();
            }
        }
        let mut map = self.by_rule.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(&rule.name.0).filter(|c| c.trigger == rule.trigger) {
            return c.clone();
        }
        let c = Arc::new(RuleCounters::new(rule.trigger.clone()));
        map.insert(rule.name.0.clone(), c.clone());
        c
    }
}

impl RuleCounters {
    pub fn new(trigger: Trigger) -> RuleCounters {
        RuleCounters {
            trigger,
            keys: Mutex::new(HashMap::new()),
            evicted: AtomicU64::new(0),
        }
    }

    /// Counts one event for `key`; fires when the window's estimate reaches
    /// the threshold outside a quiet period.
    pub fn count(&self, rule: &str, key: &str, event: &Event<'_>) -> Observation {
        self.count_at(rule, key, event.ts, event.request_id, event.config_version)
    }

    /// [`count`](Self::count) for an event known by its time, request id
    /// and config version (all the counters use of it).
    pub fn count_at(
        &self,
        rule: &str,
        key: &str,
        ts: OffsetDateTime,
        request_id: &str,
        config_version: &str,
    ) -> Observation {
        let t = millis(ts);
        let w = window_millis(&self.trigger);
        let idx = t / w;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = 0;
        if !keys.contains_key(key) {
            if keys.len() >= self.trigger.max_keys.get() {
                evicted = make_room(&mut keys, self.trigger.max_keys.get(), idx);
                self.evicted.fetch_add(evicted, Ordering::Relaxed);
            }
            keys.insert(key.to_owned(), KeyState::new(idx));
        }
        let Some(state) = keys.get_mut(key) else {
            return Observation::default();
        };
        let fired = state.record(t, idx, w, request_id).and_then(|count| {
            (count >= u64::from(self.trigger.threshold.get())).then(|| {
                let alert = Alert {
                    rule: rule.to_owned(),
                    key: self.trigger.key,
                    value: key.to_owned(),
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    threshold: self.trigger.threshold.get(),
                    window_secs: self.trigger.window.as_secs(),
                    first: from_millis(state.first(t, w)),
                    last: from_millis(state.last),
                    config_version: config_version.to_owned(),
                    request_ids: state.samples.drain(..).collect(),
                };
                state.reset(t + w);
                alert
            })
        });
        Observation { fired, evicted }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys forgotten so far to stay under `max_keys`.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// One key's two fixed windows, in milliseconds since the Unix epoch.
struct KeyState {
    /// Index of the current fixed window (`t / window`).
    window: u64,
    cur: u64,
    prev: u64,
    first_cur: Option<u64>,
    first_prev: Option<u64>,
    last: u64,
    /// No alert before this time (one window after the last one).
    quiet_until: u64,
    samples: VecDeque<String>,
}

impl KeyState {
    fn new(window: u64) -> KeyState {
        KeyState {
            window,
            cur: 0,
            prev: 0,
            first_cur: None,
            first_prev: None,
            last: 0,
            quiet_until: 0,
            samples: VecDeque::with_capacity(SAMPLE_IDS),
        }
    }

    /// Counts the event at `t`; `Some(estimate)` unless the key is in its
    /// quiet period.
    fn record(&mut self, t: u64, idx: u64, w: u64, request_id: &str) -> Option<u64> {
        if idx == self.window + 1 {
            self.prev = self.cur;
            self.first_prev = self.first_cur;
            self.cur = 0;
            self.first_cur = None;
        } else if idx > self.window + 1 {
            self.prev = 0;
            self.first_prev = None;
            self.cur = 0;
            self.first_cur = None;
        }
        // An event logged late (idx below the current window) is counted
        // in the current window.
        self.window = self.window.max(idx);
        self.first_cur.get_or_insert(t);
        self.cur = self.cur.saturating_add(1);
        self.last = self.last.max(t);
        if self.samples.len() == SAMPLE_IDS {
            self.samples.pop_front();
        }
        self.samples.push_back(request_id.to_owned());
        (t >= self.quiet_until).then(|| {
            self.cur
                .saturating_add(self.prev.saturating_mul(self.prev_weight(t, w)) / w)
        })
    }

    /// How many of the previous window's milliseconds still lie in the
    /// sliding window ending at `t`.
    fn prev_weight(&self, t: u64, w: u64) -> u64 {
        let into_current = t.saturating_sub(self.window * w).min(w);
        w - into_current
    }

    /// The oldest counted event.
    fn first(&self, t: u64, w: u64) -> u64 {
        match self.first_prev {
            Some(f) if self.prev > 0 && self.prev_weight(t, w) > 0 => f,
            _ => self.first_cur.unwrap_or(t),
        }
    }

    /// After firing: count from zero, and stay quiet until `until`.
    fn reset(&mut self, until: u64) {
        self.cur = 0;
        self.prev = 0;
        self.first_cur = None;
        self.first_prev = None;
        self.quiet_until = until;
    }
}

/// Drops keys whose windows are over, then, if still full, the oldest
/// `1/EVICT_DIVISOR` by last event; returns how many live keys were dropped.
fn make_room(keys: &mut HashMap<String, KeyState>, max: usize, idx: u64) -> u64 {
    // Nothing counted two windows ago still weighs; the quiet period (one
    // window from the alert) is over too.
    keys.retain(|_, s| idx < s.window + 2);
    if keys.len() < max {
        return 0;
    }
    let n = (keys.len() / EVICT_DIVISOR).max(keys.len() + 1 - max);
    let mut by_age: Vec<(u64, &String)> = keys.iter().map(|(k, s)| (s.last, k)).collect();
    if n < by_age.len() {
        by_age.select_nth_unstable(n);
    }
    let doomed: Vec<String> = by_age.iter().take(n).map(|(_, k)| (*k).clone()).collect();
    for k in &doomed {
        keys.remove(k);
    }
    doomed.len() as u64
}

pub(super) fn window_millis(trigger: &Trigger) -> u64 {
    // `Trigger::new` keeps the window between 1s and a week.
    u64::try_from(trigger.window.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

pub(super) fn millis(ts: OffsetDateTime) -> u64 {
    u64::try_from(ts.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

pub(super) fn from_millis(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::rule::tests::event;
    use crate::alert::rule::{KeyKind, Matcher, RuleName};
    use crate::decision::{Reason, Verdict};

    const MIN: u64 = 60;
    /// 2025-11-24T16:00:00Z: a whole number of 10-minute windows.
    const START: u64 = 1_764_000_000;

    fn trigger(threshold: u32, window_secs: u64, max_keys: usize) -> Trigger {
        Trigger::new(
            Matcher {
                decision: Some(Verdict::Deny),
                ..Matcher::default()
            },
            KeyKind::Subject,
            threshold,
            Duration::from_secs(window_secs),
            max_keys,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(name: &str, trigger: Trigger) -> Arc<AlertRule> {
        Arc::new(AlertRule {
            name: RuleName(name.into()),
            trigger,
            sinks: Vec::new(),
        })
    }

    /// A fake clock: a denial of `sub` at `secs` after a fixed start (the
    /// start is aligned to a 10-minute window).
    struct Feed<'a> {
        counters: &'a RuleCounters,
    }

    impl Feed<'_> {
        fn deny(&self, sub: &str, secs: u64, id: &str) -> Observation {
            let mut e = event(Some(sub), Verdict::Deny, Some(Reason::PermissionDenied));
            e.ts = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(START + secs);
            e.request_id = id;
            self.counters.count("repeated-denials", sub, &e)
        }
    }

    #[test]
    fn fires_once_when_the_threshold_is_reached_then_stays_quiet() {
        let c = RuleCounters::new(trigger(5, 10 * MIN, 100));
        let feed = Feed { counters: &c };
        for i in 0..4 {
            let obs = feed.deny("mallory", i * 10, &format!("r{i}"));
            assert!(obs.fired.is_none(), "denial {} of 5 is below", i + 1);
        }
        let alert = feed
            .deny("mallory", 40, "r4")
            .fired
            .expect("the fifth denial within 10 minutes fires");
        assert_eq!(
            (alert.rule.as_str(), alert.value.as_str(), alert.count),
            ("repeated-denials", "mallory", 5)
        );
        assert_eq!(alert.key, KeyKind::Subject);
        assert_eq!(alert.request_ids, ["r0", "r1", "r2", "r3", "r4"]);
        assert_eq!(
            (alert.last - alert.first).whole_seconds(),
            40,
            "first and last counted requests"
        );
        for i in 5..30 {
            assert!(
                feed.deny("mallory", 40 + i, "more").fired.is_none(),
                "no alert storm: denial {i} is within the quiet window"
            );
        }
        assert!(
            feed.deny("oliver", 50, "o1").fired.is_none(),
            "other subjects count apart"
        );
    }

    #[test]
    fn a_sustained_flood_alerts_once_per_window() {
        let c = RuleCounters::new(trigger(3, MIN, 100));
        let feed = Feed { counters: &c };
        let fired: Vec<u64> = (0..300)
            .filter(|s| feed.deny("mallory", *s, "r").fired.is_some())
            .collect();
        assert_eq!(
            fired,
            [2, 62, 122, 182, 242],
            "one denial a second: an alert at the third, then one per minute"
        );
    }

    #[test]
    fn counts_fade_as_the_window_slides() {
        let c = RuleCounters::new(trigger(5, 10 * MIN, 100));
        let feed = Feed { counters: &c };
        for i in 0..4 {
            let _ = feed.deny("mallory", 9 * MIN + i, "early");
        }
        // At 11 minutes (one minute into the next fixed window) the four
        // early ones still weigh 9/10: 1 + ⌊4 × 0.9⌋ = 4 < 5.
        assert!(feed.deny("mallory", 11 * MIN, "a").fired.is_none());
        // One more: 2 + ⌊4 × 0.898⌋ = 5.
        let alert = feed
            .deny("mallory", 11 * MIN + 1, "b")
            .fired
            .expect("denials straddling the fixed windows still add up");
        assert_eq!(alert.count, 5);
        assert_eq!(
            (alert.last - alert.first).whole_seconds(),
            (2 * MIN + 1) as i64,
            "first is the oldest counted denial"
        );

        let c = RuleCounters::new(trigger(5, 10 * MIN, 100));
        let feed = Feed { counters: &c };
        for i in 0..4 {
            let _ = feed.deny("mallory", i, "old");
        }
        assert!(
            feed.deny("mallory", 25 * MIN, "late").fired.is_none(),
            "denials two windows old no longer count"
        );
    }

    #[test]
    fn tracked_keys_are_capped_and_the_oldest_evicted() {
        let c = RuleCounters::new(trigger(2, 10 * MIN, 16));
        let feed = Feed { counters: &c };
        for i in 0..16 {
            let _ = feed.deny(&format!("spray-{i}"), i, "r");
        }
        assert_eq!(c.len(), 16);
        let obs = feed.deny("newcomer", 20, "r");
        assert_eq!(obs.evicted, 2, "an eighth of 16 keys, the oldest");
        assert_eq!(c.len(), 15);
        assert_eq!(c.evicted(), 2);
        assert!(
            feed.deny("spray-0", 21, "r").fired.is_none(),
            "the oldest key was forgotten: its earlier denial no longer counts"
        );
        assert!(
            feed.deny("spray-15", 22, "r").fired.is_some(),
            "a recent key kept its count"
        );
        // Keys idle for two windows are dropped without counting as evictions.
        for i in 0..16 {
            let _ = feed.deny(&format!("later-{i}"), 30 * MIN + i, "r");
        }
        assert_eq!(c.evicted(), 2, "idle keys are not evictions");
        assert!(c.len() <= 16);
    }

    #[test]
    fn counters_survive_a_reload_unless_the_rule_changes() {
        let counters = AlertCounters::default();
        let at = |secs: u64| {
            let mut e = event(Some("mallory"), Verdict::Deny, Some(Reason::IpDenied));
            e.ts = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(START + secs);
            e
        };
        let mut fired = Vec::new();
        let v1 = vec![rule("denials", trigger(3, 10 * MIN, 100))];
        for s in 0..2 {
            counters.observe(&v1, &at(s), |r, o| fired.push((r.name.0.clone(), o)));
        }
        // A reload: a new snapshot with an equal rule (new Arc, new sinks).
        let v2 = vec![rule("denials", trigger(3, 10 * MIN, 100))];
        counters.observe(&v2, &at(2), |r, o| fired.push((r.name.0.clone(), o)));
        assert_eq!(
            fired.len(),
            1,
            "the third denial fires across the reload: counts were kept"
        );
        // A changed threshold counts afresh.
        let v3 = vec![rule("denials", trigger(2, 10 * MIN, 100))];
        counters.observe(&v3, &at(3), |r, o| fired.push((r.name.0.clone(), o)));
        assert_eq!(fired.len(), 1, "a changed rule starts from zero");
        counters.observe(&v3, &at(4), |r, o| fired.push((r.name.0.clone(), o)));
        assert_eq!(fired.len(), 2, "and fires on its own threshold");
    }

    #[test]
    fn unmatched_and_keyless_events_are_not_counted() {
        let counters = AlertCounters::default();
        let rules = vec![rule("denials", trigger(1, MIN, 100))];
        let mut fired = 0;
        let allowed = event(Some("mallory"), Verdict::Allow, None);
        counters.observe(&rules, &allowed, |_, _| fired += 1);
        let anonymous = event(None, Verdict::Deny, Some(Reason::TokenMissing));
        counters.observe(&rules, &anonymous, |_, _| fired += 1);
        assert_eq!(fired, 0, "an allow does not match; no subject, no key");
        assert!(
            counters.counters(&rules[0]).is_empty(),
            "nothing was tracked"
        );
    }
}
