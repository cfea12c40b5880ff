//! The audit record: one JSON object per line, one line per request
//! (DESIGN.md "Audit record").

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use crate::decision::{Decision, Reason, Verdict};
use crate::jsontext;

/// `,"name":` as one constant (key names are plain ASCII, nothing to
/// escape): a copy of known length is a few moves, not a call into
/// `memcpy` (three per key, a dozen keys per record).
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// One audit line.
///
/// The module serializes exactly what it is given, so **callers must never
/// put an upstream credential, a token, a cookie or unmasked customer PII in
/// any field** (DESIGN invariant 3): `path` should be the normalized path
/// without its query string unless the query is known to be harmless, and
/// `sub` is the subject identifier, not a name or a phone number.
///
/// Field order is the wire contract; `serde` emits fields in declaration
/// order, and the hash chain relies on `prev_hash` and `hash` coming last.
///
/// Request records leave `event` and `detail` out. Records that do not
/// describe a proxied request set `event` (see [`AuditEvent`]): config reloads
/// (accepted and rejected, DESIGN: "Reloads are audit records too") and the
/// writer's own chain bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the request arrived, serialized as RFC 3339 UTC with milliseconds.
    #[serde(serialize_with = "ser_ts")]
    pub ts: OffsetDateTime,
    pub request_id: String,
    /// Shared with the snapshot (as are `route` and `upstream`): a request
    /// record takes a reference, not a copy.
    pub config_version: Arc<str>,
    pub client_ip: String,
    /// Static text for the standard methods, so most records allocate none.
    pub method: Cow<'static, str>,
    pub path: String,
    /// The matched route; `None` when no route matched (`no_route`).
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    /// The authenticated subject; `None` when unauthenticated.
    pub sub: Option<String>,
    pub roles: Vec<String>,
    #[serde(serialize_with = "ser_verdict")]
    pub decision: Verdict,
    /// The reason code; `None` on allow.
    #[serde(serialize_with = "ser_reason")]
    pub reason: Option<Reason>,
    /// Names of the rules that decided, dry-run (`mode: audit`) hits included.
    pub rules: Vec<String>,
    pub status: u16,
    pub bytes_out: u64,
    /// Milliseconds, rounded to 3 decimals (microseconds). Only set through
    /// [`AuditRecord::response`] or [`duration_ms`], which take a `Duration`
    /// and therefore always give a finite number.
    pub duration_ms: f64,
    /// How many values the redaction step masked.
    pub redactions: u64,
    /// What kind of non-request record this is; omitted for requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<AuditEvent>,
    /// Human-readable detail for event records (e.g. the reload error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Hash of the previous record; only with the hash chain on. Set by
    /// [`crate::audit::Chain`], never by callers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// Hash of this record; only with the hash chain on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// The kind of a record that does not describe a proxied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A config reload: `decision` is `allow` when the new snapshot was
    /// published, `deny` when the file was rejected (and the old snapshot
    /// kept); `detail` says why.
    Reload,
    /// A subject revoked through the admin `POST /revoke`, or a runtime
    /// revocation lifted through `POST /unrevoke` (`allow`), or an attempt
    /// at either the admin listener refused for want of credentials
    /// (`deny`); `detail` names the endpoint, the subject and who asked.
    Revoke,
    /// A signed checkpoint of the hash chain (`audit.signing_key`): the
    /// signature over this record's `prev_hash` is in `detail`.
    Checkpoint,
    /// The writer could not continue the chain of an existing file (its last
    /// line was unreadable or unchained) and started a new segment from the
    /// genesis hash.
    ChainRestart,
    /// Records were lost to write errors (e.g. disk full) before this one;
    /// `detail` says how many. The chain continues from the last record that
    /// reached the file, so the file still verifies and the gap is on record.
    RecordsLost,
}

impl AuditRecord {
    /// Starts a request record with what is known when the request arrives.
    /// The rest defaults to "nothing matched yet": no route, unauthenticated,
    /// `error` with no reason, zero counters. The gateway fills in the rest
    /// with the builder methods below as the phases run; every argument is
    /// moved in, never copied.
    pub fn request(
        ts: OffsetDateTime,
        request_id: impl Into<String>,
        config_version: impl Into<Arc<str>>,
        client_ip: impl Into<String>,
        method: impl Into<Cow<'static, str>>,
        path: impl Into<String>,
    ) -> Self {
        AuditRecord {
            ts,
            request_id: request_id.into(),
            config_version: config_version.into(),
            client_ip: client_ip.into(),
            method: method.into(),
            path: path.into(),
            route: None,
            upstream: None,
            sub: None,
            roles: Vec::new(),
            // A record that never got a decision is a gateway failure, not an allow.
            decision: Verdict::Error,
            reason: None,
            rules: Vec::new(),
            status: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            redactions: 0,
            event: None,
            detail: None,
            prev_hash: None,
            hash: None,
        }
    }

    /// A non-request record (reload, chain bookkeeping). Request fields are
    /// empty; set `config_version`, `sub`, `client_ip` etc. when known (an
    /// admin `POST /reload` has them).
    pub fn event(
        ts: OffsetDateTime,
        event: AuditEvent,
        decision: Verdict,
        detail: impl Into<String>,
    ) -> Self {
        let mut record = AuditRecord::request(ts, "", "", "", "", "");
        record.decision = decision;
        record.event = Some(event);
        record.detail = Some(detail.into());
        record
    }

    pub fn route(mut self, route: impl Into<Arc<str>>, upstream: impl Into<Arc<str>>) -> Self {
        self.route = Some(route.into());
        self.upstream = Some(upstream.into());
        self
    }

    pub fn subject(mut self, sub: impl Into<String>, roles: Vec<String>) -> Self {
        self.sub = Some(sub.into());
        self.roles = roles;
        self
    }

    /// Sets `decision` and `reason` from the one `Decision` value, so the
    /// record cannot disagree with the error body.
    pub fn decision(mut self, decision: Decision) -> Self {
        self.set_decision(decision);
        self
    }

    /// [`AuditRecord::decision`] in place.
    pub fn set_decision(&mut self, decision: Decision) {
        self.decision = decision.verdict();
        self.reason = decision.reason();
    }

    pub fn rules(mut self, rules: Vec<String>) -> Self {
        self.rules = rules;
        self
    }

    pub fn response(mut self, status: u16, bytes_out: u64, duration: Duration) -> Self {
        self.status = status;
        self.bytes_out = bytes_out;
        self.duration_ms = duration_ms(duration);
        self
    }

    pub fn redactions(mut self, redactions: u64) -> Self {
        self.redactions = redactions;
        self
    }

    pub fn config_version(mut self, config_version: impl Into<Arc<str>>) -> Self {
        self.config_version = config_version.into();
        self
    }

    /// The record as one compact JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        // serde_json writes only valid UTF-8, so this conversion cannot fail;
        // the lossy variant avoids a second code path that would.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Appends the record's JSON (no newline) to `out`. The writer serializes
    /// straight into its batch buffer through this, with no intermediate String.
    ///
    /// Written field by field rather than through serde: the writer thread
    /// pays this once per request, and serde_json spent most of it escaping
    /// the constant key names. The output is byte for byte what the
    /// `Serialize` impl gives (a test holds the two together); `Serialize`
    /// stays the definition of the format.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"ts":""#);
        match Rfc3339Millis(self.ts).to_ascii() {
            Some(ascii) => out.extend_from_slice(&ascii),
            None => {
                use std::io::Write as _;
                // Writing into a Vec cannot fail; the text is digits and
                // separators, nothing to escape.
                let _ = write!(out, "{}", Rfc3339Millis(self.ts));
            }
        }
        out.push(b'"');
        key!(out, "request_id");
        jsontext::write_str(out, &self.request_id);
        key!(out, "config_version");
        jsontext::write_str(out, &self.config_version);
        key!(out, "client_ip");
        jsontext::write_str(out, &self.client_ip);
        key!(out, "method");
        jsontext::write_str(out, &self.method);
        key!(out, "path");
        jsontext::write_str(out, &self.path);
        key!(out, "route");
        json_opt_str(out, self.route.as_deref());
        key!(out, "upstream");
        json_opt_str(out, self.upstream.as_deref());
        key!(out, "sub");
        json_opt_str(out, self.sub.as_deref());
        key!(out, "roles");
        json_str_list(out, &self.roles);
        key!(out, "decision");
        jsontext::write_str(out, self.decision.as_str());
        key!(out, "reason");
        json_opt_str(out, self.reason.map(|r| r.code()));
        key!(out, "rules");
        json_str_list(out, &self.rules);
        key!(out, "status");
        json_uint(out, self.status.into());
        key!(out, "bytes_out");
        json_uint(out, self.bytes_out);
        key!(out, "duration_ms");
        // Cannot fail (see above); serde_json's float text is the contract.
        let _ = serde_json::to_writer(&mut *out, &self.duration_ms);
        key!(out, "redactions");
        json_uint(out, self.redactions);
        if let Some(event) = self.event {
            key!(out, "event");
            jsontext::write_str(out, event.as_str());
        }
        if let Some(detail) = &self.detail {
            key!(out, "detail");
            jsontext::write_str(out, detail);
        }
        if let Some(prev) = &self.prev_hash {
            key!(out, "prev_hash");
            jsontext::write_str(out, prev);
        }
        if let Some(hash) = &self.hash {
            key!(out, "hash");
            jsontext::write_str(out, hash);
        }
        out.push(b'}');
    }
}

impl AuditEvent {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Reload => "reload",
            AuditEvent::Revoke => "revoke",
            AuditEvent::Checkpoint => "checkpoint",
            AuditEvent::ChainRestart => "chain_restart",
            AuditEvent::RecordsLost => "records_lost",
        }
    }
}

fn json_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => jsontext::write_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_str_list(out: &mut Vec<u8>, values: &[String]) {
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        jsontext::write_str(out, v);
    }
    out.push(b']');
}

fn json_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Milliseconds with three decimals (microsecond resolution) from a duration.
pub fn duration_ms(duration: Duration) -> f64 {
    // Round to the nearest microsecond, then express in milliseconds.
    (duration.as_nanos() as f64 / 1000.0).round() / 1000.0
}

/// `ts` as `2026-11-23T18:47:52.123Z`, formatted by hand: infallible, and no
/// format description to parse per record.
pub(crate) struct Rfc3339Millis(pub OffsetDateTime);

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl Rfc3339Millis {
    /// The same text as `Display`, in a fixed buffer filled digit by digit:
    /// no formatting machinery, and serde_json takes it as one plain string
    /// instead of escaping each formatted piece. `None` for a year outside
    /// 0..=9999, which `Display` still handles.
    fn to_ascii(&self) -> Option<[u8; 24]> {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000Z";
        put_digits(&mut out[0..4], year);
        put_digits(&mut out[5..7], u8::from(t.month()).into());
        put_digits(&mut out[8..10], t.day().into());
        put_digits(&mut out[11..13], t.hour().into());
        put_digits(&mut out[14..16], t.minute().into());
        put_digits(&mut out[17..19], t.second().into());
        put_digits(&mut out[20..23], t.millisecond().into());
        Some(out)
    }
}

/// Writes `n` as decimal into all of `dst`, zero-padded on the left.
fn put_digits(dst: &mut [u8], mut n: u32) {
    for digit in dst.iter_mut().rev() {
        // `n % 10` is below 10, so the cast and the sum stay in range.
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn ser_ts<S: Serializer>(ts: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = Rfc3339Millis(*ts);
    if let Some(ascii) = text.to_ascii() {
        // Always Ok: the buffer holds only ASCII digits and separators.
        if let Ok(ascii) = std::str::from_utf8(&ascii) {
            return s.serialize_str(ascii);
        }
    }
    s.collect_str(&text)
}

fn ser_verdict<S: Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(verdict.as_str())
}

fn ser_reason<S: Serializer>(reason: &Option<Reason>, s: S) -> Result<S::Ok, S::Error> {
    match reason {
        Some(r) => s.serialize_str(r.code()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn denied() -> AuditRecord {
        AuditRecord::request(
            datetime!(2026-11-23 18:47:52.123456 UTC),
            "req-1",
            "v7",
            "203.0.113.9",
            "GET",
            "/v23.0/123/messages",
        )
        .decision(Decision::Deny(Reason::NoRoute))
        .response(404, 87, Duration::from_micros(1234))
    }

    #[test]
    fn fields_come_in_contract_order_with_nulls() {
        let expected = concat!(
            r#"{"ts":"2026-11-23T18:47:52.123Z","request_id":"req-1","config_version":"v7","#,
            r#""client_ip":"203.0.113.9","method":"GET","path":"/v23.0/123/messages","#,
            r#""route":null,"upstream":null,"sub":null,"roles":[],"decision":"deny","#,
            r#""reason":"no_route","rules":[],"status":404,"bytes_out":87,"#,
            r#""duration_ms":1.234,"redactions":0}"#
        );
        assert_eq!(
            denied().to_json_line(),
            expected,
            "a denied, unrouted request should serialize nulls and omit event/detail/hashes"
        );
    }

    #[test]
    fn allowed_request_fills_every_field() {
        let record = AuditRecord::request(
            datetime!(2026-01-02 03:04:05 +02:00),
            "req-2",
            "v8",
            "10.0.0.1",
            "POST",
            "/api/v1/accounts/1/conversations",
        )
        .route("crm_conversations", "crm")
        .subject("u-42", vec!["agent".into(), "supervisor".into()])
        .decision(Decision::Allow)
        .rules(vec!["office_hours".into()])
        .response(200, 4096, Duration::from_nanos(12_345_678))
        .redactions(3);
        let expected = concat!(
            r#"{"ts":"2026-01-02T01:04:05.000Z","request_id":"req-2","config_version":"v8","#,
            r#""client_ip":"10.0.0.1","method":"POST","path":"/api/v1/accounts/1/conversations","#,
            r#""route":"crm_conversations","upstream":"crm","sub":"u-42","#,
            r#""roles":["agent","supervisor"],"decision":"allow","reason":null,"#,
            r#""rules":["office_hours"],"status":200,"bytes_out":4096,"#,
            r#""duration_ms":12.346,"redactions":3}"#
        );
        assert_eq!(
            record.to_json_line(),
            expected,
            "ts should be converted to UTC with ms, duration rounded to 3 decimals"
        );
    }

    #[test]
    fn reload_event_carries_event_and_detail() {
        let record = AuditRecord::event(
            datetime!(2026-11-23 18:47:52 UTC),
            AuditEvent::Reload,
            Verdict::Deny,
            "config/chatwarden.yaml:3:1: unknown key",
        )
        .config_version("v7");
        let line = record.to_json_line();
        assert!(
            line.ends_with(
                r#""redactions":0,"event":"reload","detail":"config/chatwarden.yaml:3:1: unknown key"}"#
            ),
            "a reload record should end with event and detail, got {line}"
        );
        assert!(
            line.contains(r#""decision":"deny""#),
            "a rejected reload should be a deny, got {line}"
        );
    }

    #[test]
    fn upstream_failure_is_an_error_decision() {
        let line = denied()
            .decision(Decision::Deny(Reason::UpstreamTimeout))
            .to_json_line();
        assert!(
            line.contains(r#""decision":"error","reason":"upstream_timeout""#),
            "an upstream timeout should be audited as an error, got {line}"
        );
    }

    #[test]
    fn timestamp_digits_match_the_display_form() {
        for ts in [
            datetime!(2026-11-23 18:47:52.123456 UTC),
            datetime!(2026-01-02 03:04:05 +02:00),
            datetime!(0001-01-01 00:00:00.001 UTC),
            datetime!(9999-12-31 23:59:59.999 UTC),
            datetime!(2024-02-29 12:00:00.5 -05:30),
        ] {
            let display = Rfc3339Millis(ts).to_string();
            let ascii = Rfc3339Millis(ts).to_ascii().map(|a| a.to_vec());
            assert_eq!(
                ascii,
                Some(display.clone().into_bytes()),
                "the digit-by-digit form of {ts} should be {display}"
            );
        }
        assert_eq!(
            Rfc3339Millis(datetime!(-0001-06-01 00:00:00 UTC)).to_ascii(),
            None,
            "a negative year should fall back to Display"
        );
    }

    #[test]
    fn hostile_strings_stay_one_json_line() {
        let mut record = denied();
        record.path = "/a\nb\"c\\\u{0}é".into();
        let line = record.to_json_line();
        assert!(!line.contains('\n'), "a newline in a field must be escaped");
        let parsed: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => panic!("the line should be valid JSON: {e}"),
        };
        assert_eq!(
            parsed["path"], "/a\nb\"c\\\u{0}é",
            "the path should round-trip"
        );
    }

    /// The hand-written writer and the `Serialize` impl give the same bytes,
    /// whatever the strings hold.
    #[test]
    fn hand_written_json_is_serdes_json() {
        let awkward = [
            "",
            "plain",
            "exactly8",
            "/api/v1/accounts/1/conversations/42",
            "quote\"in the middle of a longer string",
            "back\\slash",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f} \u{7f}",
            "é ü 中文 🙂 and \"more\" after",
            "twelve chars\n",
            "!#$%&'()*+,-./0123456789:;<=>?@[]^_`{|}~",
        ];
        let mut records = vec![denied()];
        for (i, text) in awkward.iter().enumerate() {
            let mut r = AuditRecord::request(
                datetime!(2026-11-23 18:47:52.5 UTC),
                *text,
                *text,
                "2001:db8::1",
                *text,
                *text,
            )
            .route(*text, "crm")
            .subject(*text, vec![text.to_string(), "agent".into()])
            .decision(Decision::Deny(Reason::ScopeDenied))
            .rules(vec![text.to_string()])
            .response(
                u16::MAX,
                u64::MAX,
                Duration::from_nanos(i as u64 * 987_654_321),
            )
            .redactions(i as u64);
            r.detail = Some(text.to_string());
            r.event = [
                None,
                Some(AuditEvent::Reload),
                Some(AuditEvent::ChainRestart),
            ][i % 3];
            r.prev_hash = (i % 2 == 0).then(|| "0".repeat(64));
            r.hash = (i % 2 == 0).then(|| text.to_string());
            records.push(r);
        }
        records.push(AuditRecord::event(
            datetime!(-0001-06-01 00:00:00 UTC),
            AuditEvent::RecordsLost,
            Verdict::Error,
            "3 lost",
        ));
        for record in records {
            let mut ours = Vec::new();
            record.write_json(&mut ours);
            let serde = match serde_json::to_vec(&record) {
                Ok(v) => v,
                Err(e) => panic!("serde should serialize every record: {e}"),
            };
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde),
                "the hand-written line should be serde_json's"
            );
        }
    }
}
