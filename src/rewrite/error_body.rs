//! Masking error bodies (non-2xx answers) for callers subject to redaction.
//!
//! An upstream's error body follows no success shape (a Chatwoot 422 is
//! `{"message": …, "attributes": […]}`, a crashed app answers an HTML
//! page), yet it may echo what the client sent: a duplicate phone number,
//! an invalid e-mail address. Field selectors cannot be relied on here, so
//! every string value of a JSON body, or the whole text of a `text/*` (or
//! XML) body, is searched with the phone and e-mail detectors plus those of
//! the caller's rules, and each finding is masked in the strictest style
//! among those rules. Status code and JSON structure stay; row filters do
//! not apply.
//!
//! What cannot be searched (not UTF-8, content-coded, over the cap, a
//! binary or unknown content type, malformed JSON) is a [`RewriteError`]:
//! the proxy answers 502 `redaction_failed`, as for any body it must
//! rewrite and cannot (DESIGN invariant 4).

use bytes::Bytes;

use super::plan::{Compiled, PlannedDetect, RewritePlan};
use super::scan::{self, WalkError};
use super::{media, splice, RewriteError, RewriteOutcome};
use crate::redact::{mask_detected, Detector, Regions, Style};

/// How one caller's error bodies are searched: built from the caller's
/// [`RewritePlan`] by [`RewritePlan::error_scan`], only when an error
/// answer actually arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorScan {
    /// One detection entry (every string value, the scan's detectors and
    /// style), in the form the JSON walk reads.
    plan: RewritePlan,
}

impl RewritePlan {
    /// The error-body scan for a caller with this plan: `None` when the
    /// caller is subject to no redaction rule (a plan with row filters only:
    /// error bodies pass as they are). Detectors are phone and e-mail plus
    /// every rule's own; the style is the strictest of the rules' (`full`
    /// over `hash` over `partial`), since nothing is known of where in the
    /// body a finding sits.
    pub fn error_scan(&self) -> Option<ErrorScan> {
        if self.masks.is_empty() && self.detect.iter().all(|d| d.detectors.is_empty()) {
            return None;
        }
        // One phone detector, finding the national numbers of every rule's
        // countries; likewise one for their identity numbers.
        let mut regions = Regions::NONE;
        let mut ids: Option<Regions> = None;
        let mut detectors = vec![Detector::Email];
        for d in self.detect.iter().flat_map(|d| d.detectors.iter()) {
            match d {
                Detector::Phone(r) => regions = regions.union(*r),
                Detector::NationalId(r) => ids = Some(ids.unwrap_or_default().union(*r)),
                d if !detectors.contains(d) => detectors.push(*d),
                _ => {}
            }
        }
        detectors.insert(0, Detector::Phone(regions));
        detectors.extend(ids.map(Detector::NationalId));
        let styles = self
            .masks
            .iter()
            .map(|m| &m.style)
            .chain(self.detect.iter().map(|d| &d.style));
        Some(ErrorScan {
            plan: RewritePlan {
                row_filters: Vec::new(),
                masks: Vec::new(),
                detect: vec![PlannedDetect {
                    detectors,
                    style: strictest(styles),
                }],
                links: None,
            },
        })
    }
}

impl ErrorScan {
    /// The detectors every string is searched with.
    pub fn detectors(&self) -> &[Detector] {
        self.detect().map_or(&[], |d| &d.detectors)
    }

    /// The style findings are masked in.
    pub fn style(&self) -> &Style {
        self.detect().map_or(&Style::Full, |d| &d.style)
    }

    fn detect(&self) -> Option<&PlannedDetect> {
        self.plan.detect.first()
    }
}

/// Checks what the response head tells of an error body that is known not
/// to be empty (a positive `Content-Length`), so that a body that could
/// never be searched is refused before the head is sent.
pub fn check_error_head(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    content_length: u64,
    max_bytes: usize,
) -> Result<(), RewriteError> {
    media::check_encoding(content_encoding)?;
    if content_length > max_bytes as u64 {
        return Err(RewriteError::TooLarge {
            len: usize::try_from(content_length).unwrap_or(usize::MAX),
            max: max_bytes,
        });
    }
    error_media(content_type).map(|_| ())
}

/// Masks the phone numbers and e-mail addresses `scan` finds in one error
/// body. An empty body, or one with nothing to mask, is
/// [`RewriteOutcome::Unchanged`] (the upstream's bytes go out as they
/// came); otherwise [`RewriteOutcome::Rewritten`] with `removed` 0 and
/// `masked` the number of findings. Never [`RewriteOutcome::NotFound`].
pub fn mask_error_body(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    scan: &ErrorScan,
    max_bytes: usize,
) -> Result<RewriteOutcome, RewriteError> {
    if body.is_empty() {
        return Ok(RewriteOutcome::Unchanged);
    }
    media::check_encoding(content_encoding)?;
    if body.len() > max_bytes {
        return Err(RewriteError::TooLarge {
            len: body.len(),
            max: max_bytes,
        });
    }
    let kind = error_media(content_type)?;
    let text = std::str::from_utf8(body).map_err(|e| RewriteError::NotText {
        offset: e.valid_up_to(),
    })?;
    match kind {
        ErrorMedia::Json => mask_json(text, scan),
        ErrorMedia::Text => Ok(mask_text(text, scan)),
    }
}

/// Every string value of a JSON body (member names excepted), through the
/// same strict walk as success bodies: escapes are decoded before the
/// detectors look, and the output is JSON again.
fn mask_json(text: &str, scan: &ErrorScan) -> Result<RewriteOutcome, RewriteError> {
    let compiled = Compiled::detect_only(&scan.plan.detect);
    let walked = scan::walk(text, &compiled).map_err(|e| match e {
        WalkError::Malformed { offset, why } => RewriteError::NotJson { offset, why },
        // A plan without selectors cannot misfit a shape.
        WalkError::Shape { .. } | WalkError::MaskShape { .. } => RewriteError::Internal,
    })?;
    if walked.edits.is_empty() {
        return Ok(RewriteOutcome::Unchanged);
    }
    let masked = walked.edits.iter().map(|e| e.masked).sum();
    let body = splice(text.as_bytes(), &walked).ok_or(RewriteError::Internal)?;
    Ok(RewriteOutcome::Rewritten {
        body,
        removed: 0,
        masked,
    })
}

/// The whole text, as free text.
fn mask_text(text: &str, scan: &ErrorScan) -> RewriteOutcome {
    match mask_detected(text, scan.detectors(), scan.style()) {
        Some((masked_text, masked)) => RewriteOutcome::Rewritten {
            body: Bytes::from(masked_text),
            removed: 0,
            masked,
        },
        None => RewriteOutcome::Unchanged,
    }
}

/// What kind of error body this is, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorMedia {
    Json,
    Text,
}

/// JSON (`application/json`, `+json`) is walked; `text/*` and XML
/// (`application/xml`, `+xml`) are searched as text; anything else, or no
/// content type at all, cannot be known to be text and is refused.
fn error_media(content_type: Option<&str>) -> Result<ErrorMedia, RewriteError> {
    if media::check_content_type(content_type).is_ok() {
        return Ok(ErrorMedia::Json);
    }
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    let (kind, subtype) = essence.split_once('/').unwrap_or_default();
    let text = (kind.eq_ignore_ascii_case("text") && !subtype.is_empty())
        || (kind.eq_ignore_ascii_case("application")
            && (subtype.eq_ignore_ascii_case("xml")
                || (subtype.len() > "+xml".len()
                    && subtype
                        .get(subtype.len() - "+xml".len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case("+xml")))));
    if text {
        Ok(ErrorMedia::Text)
    } else {
        Err(RewriteError::UnsupportedContentType(
            content_type.map(str::to_owned),
        ))
    }
}

/// `full` over `hash` over `partial`: the style that shows least. A
/// finding is part of a string, which cannot be withheld (`null`), so
/// `withhold` counts as `full`.
fn strictest<'s>(styles: impl Iterator<Item = &'s Style>) -> Style {
    let mut best: Option<&Style> = None;
    for style in styles {
        let rank = |s: &Style| s.strictness().min(Style::Full.strictness());
        if best.is_none_or(|b| rank(style) > rank(b)) {
            best = Some(style);
        }
    }
    match best {
        Some(Style::Withhold) => Style::Full,
        Some(s) => s.clone(),
        None => Style::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ItemSelector;
    use crate::redact::RedactionRule;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    const CAP: usize = 1 << 20;

    fn rule(fields: &[&str], detect: &[Detector], style: Style) -> RedactionRule {
        RedactionRule {
            name: "r".into(),
            unless_permission: None,
            fields: fields
                .iter()
                .map(|f| ItemSelector::parse(f).unwrap_or_else(|e| panic!("{f}: {e}")))
                .collect(),
            detect: detect.to_vec(),
            style,
        }
    }

    /// The scan of a caller subject to one fields-only partial rule (the
    /// detectors come from the error scan itself).
    fn partial() -> ErrorScan {
        let mut plan = RewritePlan::default();
        plan.push_redaction(&rule(&["$.payload.email"], &[], Style::Partial));
        plan.error_scan()
            .unwrap_or_else(|| panic!("a redaction rule means an error scan"))
    }

    fn masked(body: &[u8], ct: Option<&str>, scan: &ErrorScan) -> (String, u64) {
        match mask_error_body(body, ct, None, scan, CAP) {
            Ok(RewriteOutcome::Rewritten {
                body,
                removed,
                masked,
            }) => {
                assert_eq!(removed, 0, "error bodies lose no rows");
                (String::from_utf8_lossy(&body).into_owned(), masked)
            }
            other => panic!(
                "{} should be masked, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    #[test]
    fn a_plan_without_redaction_has_no_error_scan() {
        assert_eq!(RewritePlan::default().error_scan(), None);
        let scan = partial();
        assert_eq!(scan.detectors(), &[Detector::PHONE, Detector::Email]);
        assert_eq!(scan.style(), &Style::Partial);
    }

    #[test]
    fn one_phone_detector_finds_every_rules_countries() {
        use crate::redact::Region;
        let es = Regions::NONE.with(Region::Spain);
        let india = Regions::NONE.with(Region::India);
        let mut plan = RewritePlan::default();
        plan.push_redaction(&rule(
            &[],
            &[Detector::Phone(es), Detector::NationalId(es)],
            Style::Partial,
        ));
        plan.push_redaction(&rule(
            &[],
            &[
                Detector::Phone(india),
                Detector::Email,
                Detector::NationalId(india),
            ],
            Style::Full,
        ));
        let scan = plan.error_scan().unwrap_or_else(|| panic!("rules apply"));
        let both = es.union(india);
        assert_eq!(
            scan.detectors(),
            &[
                Detector::Phone(both),
                Detector::Email,
                Detector::NationalId(both)
            ]
        );
        let (body, n) = masked(
            br#"{"message":"612 345 678 and 98765 43210 are taken, as is DNI 12345678Z"}"#,
            JSON,
            &scan,
        );
        assert_eq!(
            body,
            r#"{"message":"[redacted] and [redacted] are taken, as is DNI [redacted]"}"#
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn the_strictest_style_of_the_callers_rules_applies() {
        let mut plan = RewritePlan::default();
        plan.push_redaction(&rule(&["$.a"], &[], Style::Partial));
        plan.push_redaction(&rule(&[], &[Detector::Email], Style::Full));
        plan.push_redaction(&rule(&["$.b"], &[], Style::Hash(b"k".to_vec())));
        let scan = plan.error_scan().unwrap_or_else(|| panic!("rules apply"));
        assert_eq!(scan.style(), &Style::Full);
        let (body, n) = masked(br#"{"message":"a@example.com taken"}"#, JSON, &scan);
        assert_eq!(body, r#"{"message":"[redacted] taken"}"#);
        assert_eq!(n, 1);

        // A withholding rule (fields only) is as strict, and a finding in
        // a string is masked, never turned into `null`.
        let mut plan = RewritePlan::default();
        plan.push_redaction(&rule(&["$.a"], &[], Style::Partial));
        plan.push_redaction(&rule(&["$.meta"], &[], Style::Withhold));
        let scan = plan.error_scan().unwrap_or_else(|| panic!("rules apply"));
        assert_eq!(scan.style(), &Style::Full);
        let (body, _) = masked(br#"{"message":"a@example.com taken"}"#, JSON, &scan);
        assert_eq!(body, r#"{"message":"[redacted] taken"}"#);
    }

    #[test]
    fn every_nested_string_of_a_json_error_is_masked_and_the_rest_kept() {
        let body = br#"{"message": "Phone number +447700900123 has already been taken",
  "attributes": ["phone_number"],
  "errors": [{"field": "email", "message": "sophie.taylor@example.com is taken", "code": 422,
              "detail": {"deep": ["call 07700 900123", true, null, 106540352242922]}}]}"#;
        let (out, n) = masked(body, JSON, &partial());
        assert_eq!(n, 3, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(
            v["message"],
            "Phone number +*********123 has already been taken"
        );
        assert_eq!(v["attributes"][0], "phone_number");
        assert_eq!(v["errors"][0]["message"], "s***@example.com is taken");
        assert_eq!(v["errors"][0]["code"], 422);
        assert_eq!(v["errors"][0]["detail"]["deep"][0], "call ***** ***123");
        assert_eq!(
            v["errors"][0]["detail"]["deep"][3],
            serde_json::json!(106540352242922u64),
            "numbers are ids, not phone numbers"
        );
        assert!(
            out.starts_with("{\"message\": ") && out.contains("\n  \"attributes\""),
            "untouched bytes keep the upstream's spacing: {out}"
        );
    }

    #[test]
    fn escaped_strings_are_decoded_before_detection() {
        // `\u0040` is `@`, `\u002b` is `+`: a leak if only raw bytes were read.
        let body = br#"{"error":"sophie\u0040example.com and \u002b447700900123 \"quoted\""}"#;
        let (out, n) = masked(body, JSON, &partial());
        assert_eq!(n, 2, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["error"], "s***@example.com and +*********123 \"quoted\"");
    }

    #[test]
    fn member_names_are_left_alone_and_pii_free_bodies_unchanged() {
        for body in [
            &br#"{"error":"Resource could not be found"}"#[..],
            br#"{"errors":["You need to sign in or sign up before continuing."]}"#,
            br#"{"message":"Phone number should be in e164 format","attributes":["phone_number"]}"#,
            br#"[1, 2.5e3, "x", {"id": 106540352242922}]"#,
        ] {
            assert_eq!(
                mask_error_body(body, JSON, None, &partial(), CAP),
                Ok(RewriteOutcome::Unchanged),
                "{} has nothing to mask and should pass byte for byte",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn text_and_html_error_pages_are_searched_as_text() {
        let html = b"<html><body><h1>500 Internal Server Error</h1>\
            <p>while saving jo.bloggs@example.co.uk (+44 7700 900123)</p></body></html>";
        let (out, n) = masked(html, Some("text/html; charset=utf-8"), &partial());
        assert_eq!(n, 2);
        assert!(
            out.contains("j***@example.co.uk") && out.contains("+** **** ***123"),
            "{out}"
        );
        assert!(
            !out.contains("jo.bloggs") && !out.contains("7700 900"),
            "{out}"
        );
        let (out, _) = masked(b"duplicate: a@example.com", Some("text/plain"), &partial());
        assert_eq!(out, "duplicate: a***@example.com");
        let (out, _) = masked(
            b"<error>a@example.com</error>",
            Some("application/problem+xml"),
            &partial(),
        );
        assert_eq!(out, "<error>a***@example.com</error>");
        assert_eq!(
            mask_error_body(b"Bad Gateway", Some("text/plain"), None, &partial(), CAP),
            Ok(RewriteOutcome::Unchanged)
        );
    }

    #[test]
    fn unsearchable_bodies_are_refused() {
        let scan = partial();
        let gz: &[u8] = &[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe];
        type Case<'a> = (&'a [u8], Option<&'a str>, Option<&'a str>, &'a str);
        let cases: [Case<'_>; 7] = [
            (gz, JSON, Some("gzip"), "encoding"),
            (b"{}", JSON, Some("br"), "encoding"),
            (gz, Some("application/octet-stream"), None, "content_type"),
            (b"a@example.com", None, None, "content_type"),
            (
                b"caf\xe9 a@example.com",
                Some("text/plain; charset=latin1"),
                None,
                "not_text",
            ),
            (b"{\"e\": \"a@example.com\"", JSON, None, "not_json"),
            (
                b"<p>a@example.com</p>",
                Some("image/svg"),
                None,
                "content_type",
            ),
        ];
        for (body, ct, ce, kind) in cases {
            let got = mask_error_body(body, ct, ce, &scan, CAP);
            assert_eq!(
                got.as_ref().map_err(RewriteError::kind),
                Err(kind),
                "{ct:?} {ce:?} should be refused as {kind}, got {got:?}"
            );
        }
        let big = vec![b'a'; 65];
        assert_eq!(
            mask_error_body(&big, Some("text/plain"), None, &scan, 64).map_err(|e| e.kind()),
            Err("too_large")
        );
    }

    #[test]
    fn an_empty_body_stays_empty_whatever_it_claims_to_be() {
        for (ct, ce) in [
            (None, None),
            (Some("application/octet-stream"), Some("gzip")),
            (JSON, None),
        ] {
            assert_eq!(
                mask_error_body(b"", ct, ce, &partial(), CAP),
                Ok(RewriteOutcome::Unchanged)
            );
        }
    }

    #[test]
    fn the_head_check_refuses_what_could_never_be_searched() {
        assert!(check_error_head(JSON, None, 10, CAP).is_ok());
        assert!(check_error_head(Some("text/html"), Some("identity"), 10, CAP).is_ok());
        for (ct, ce, len) in [
            (JSON, Some("gzip"), 10),
            (Some("application/pdf"), None, 10),
            (None, None, 10),
            (JSON, None, CAP as u64 + 1),
        ] {
            assert!(
                check_error_head(ct, ce, len, CAP).is_err(),
                "{ct:?} {ce:?} {len} should be refused at the head"
            );
        }
    }

    #[test]
    fn hash_style_masks_equal_values_equally() {
        let mut plan = RewritePlan::default();
        plan.push_redaction(&rule(
            &["$.x"],
            &[],
            Style::Hash(b"0123456789abcdef".to_vec()),
        ));
        let scan = plan.error_scan().unwrap_or_else(|| panic!("rules apply"));
        let (a, _) = masked(br#"["a@example.com","a@example.com"]"#, JSON, &scan);
        let v: serde_json::Value = serde_json::from_str(&a).expect("JSON");
        assert_eq!(v[0], v[1]);
        assert!(v[0].as_str().is_some_and(|s| s.starts_with('#')), "{a}");
    }
}
