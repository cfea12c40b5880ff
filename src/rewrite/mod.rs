//! The response-body rewriter: removes the rows a caller may not see from a
//! buffered JSON body and masks the personal data they may not see, in the
//! same pass.
//!
//! Pure and synchronous: the proxy buffers the upstream body up to its cap,
//! calls [`rewrite`] at end of stream and sends what it returns. Every
//! [`RewriteError`] means the body must not reach the client (DESIGN
//! invariant 4): the proxy answers 502 `redaction_failed`.
//!
//! How: one validating walk over the bytes ([`scan`]) follows the plan's
//! selectors, decides each item as [`item_allowed`](crate::policy::item_allowed)
//! would, masks configured fields and the phone numbers and e-mail
//! addresses found in free text ([`crate::redact`]), and records byte
//! ranges to drop or replace; the output is the body with those edits
//! applied. Nothing else is re-serialized, so key order, number spelling
//! and whitespace of everything kept are the upstream's own.
//!
//! Error answers (non-2xx) follow no success shape: for a caller subject
//! to redaction, [`mask_error_body`] searches every string of them with the
//! detectors instead (see [`error_body`]).
//!
//! Counts next to a filtered list (Chatwoot's `data.meta.all_count`,
//! `mine_count`, …) are not recomputed: one page cannot tell the caller's
//! totals. A redaction rule of style `withhold` makes them `null` for the
//! callers the filter applies to.

mod error_body;
mod frames;
pub mod links;
mod media;
pub mod messages;
mod plan;
mod scan;
pub mod subscriptions;

use bytes::Bytes;
use thiserror::Error;

pub use error_body::{check_error_head, mask_error_body, ErrorScan};
pub use links::{public_origin, Links, Origin};
pub use plan::{PlannedDetect, PlannedMask, PlannedRowFilter, RewritePlan, MAX_PLAN_ENTRIES};

use plan::Compiled;
use scan::{WalkError, Walked};

/// Largest upstream body buffered for rewriting (the proxy's cap, and
/// `chatwarden explain --response`'s).
pub const MAX_REWRITE_BYTES: usize = 16 * 1024 * 1024;

/// What [`rewrite`] decided for one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteOutcome {
    /// Send this body instead of the upstream's.
    Rewritten {
        body: Bytes,
        /// Rows removed (a removed row's own nested rows are not counted).
        removed: u64,
        /// Values masked in what was kept.
        masked: u64,
    },
    /// Send the upstream's bytes as they are: the plan is empty, the body
    /// is empty, or every row passed (the body was still checked to be
    /// JSON of the expected shape).
    Unchanged,
    /// An object-mode filter refused the object: the caller may not know it
    /// exists, so the proxy answers 404.
    NotFound,
}

/// Why a body that had to be rewritten could not be; each one means 502
/// `redaction_failed`, never the upstream's body.
///
/// Messages carry no body content, only offsets and the plan's selectors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RewriteError {
    #[error("body of {len} bytes is over the rewrite cap of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("content encoding `{0}` cannot be rewritten")]
    UnsupportedEncoding(String),
    #[error("content type {} is not JSON", display_content_type(.0))]
    UnsupportedContentType(Option<String>),
    #[error("body is not JSON: {why} at byte {offset}")]
    NotJson { offset: usize, why: &'static str },
    #[error("error body is not UTF-8 text: invalid byte at {offset}")]
    NotText { offset: usize },
    #[error("selector `{selector}` does not fit the body: {why}")]
    ShapeMismatch { selector: String, why: &'static str },
    #[error("masked field `{selector}` does not fit the body: {why}")]
    MaskShapeMismatch { selector: String, why: &'static str },
    #[error("plan has {count} {what}; at most {MAX_PLAN_ENTRIES} are supported")]
    PlanTooLarge { what: &'static str, count: usize },
    #[error("rewriter produced overlapping edits")]
    Internal,
}

impl RewriteError {
    /// A short stable label for metrics and audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            RewriteError::TooLarge { .. } => "too_large",
            RewriteError::UnsupportedEncoding(_) => "encoding",
            RewriteError::UnsupportedContentType(_) => "content_type",
            RewriteError::NotJson { .. } => "not_json",
            RewriteError::NotText { .. } => "not_text",
            RewriteError::ShapeMismatch { .. } | RewriteError::MaskShapeMismatch { .. } => "shape",
            RewriteError::PlanTooLarge { .. } => "plan",
            RewriteError::Internal => "internal",
        }
    }
}

/// Whether a body of this type and encoding can be read here: JSON, not
/// content-coded.
pub fn readable(content_type: Option<&str>, content_encoding: Option<&str>) -> bool {
    media::check_encoding(content_encoding).is_ok()
        && media::check_content_type(content_type).is_ok()
}

/// Applies `plan` to one response body.
///
/// In order: an empty plan or an empty body is [`RewriteOutcome::Unchanged`]
/// without looking further; then the encoding must be identity, the body
/// at most `max_bytes`, the content type JSON, and the body valid JSON in
/// which every selector finds what it names (a missing member or a wrong
/// container type is a [`RewriteError::ShapeMismatch`]: the upstream
/// changed shape and rows cannot be known to be filtered). A plan that
/// only rewrites links ([`RewritePlan::fails_closed`] false) leaves a body
/// it cannot read [`RewriteOutcome::Unchanged`] instead.
pub fn rewrite(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    plan: &RewritePlan,
    max_bytes: usize,
) -> Result<RewriteOutcome, RewriteError> {
    match rewrite_strictly(body, content_type, content_encoding, plan, max_bytes) {
        Err(_) if !plan.fails_closed() => Ok(RewriteOutcome::Unchanged),
        outcome => outcome,
    }
}

fn rewrite_strictly(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    plan: &RewritePlan,
    max_bytes: usize,
) -> Result<RewriteOutcome, RewriteError> {
    if plan.is_empty() || body.is_empty() {
        return Ok(RewriteOutcome::Unchanged);
    }
    media::check_encoding(content_encoding)?;
    if body.len() > max_bytes {
        return Err(RewriteError::TooLarge {
            len: body.len(),
            max: max_bytes,
        });
    }
    media::check_content_type(content_type)?;
    let compiled = Compiled::new(plan)?;
    let text = std::str::from_utf8(body).map_err(|e| RewriteError::NotJson {
        offset: e.valid_up_to(),
        why: "invalid UTF-8",
    })?;
    let walked = scan::walk(text, &compiled).map_err(|e| match e {
        WalkError::Malformed { offset, why } => RewriteError::NotJson { offset, why },
        // The walk stops at the first misfit; a body that is also not JSON
        // further on is reported as such.
        WalkError::MaskShape { mask, why } => match scan::validate(text) {
            Err(WalkError::Malformed { offset, why }) => RewriteError::NotJson { offset, why },
            _ => RewriteError::MaskShapeMismatch {
                selector: compiled
                    .masks
                    .get(mask)
                    .map(|m| m.field.as_str().to_owned())
                    .unwrap_or_default(),
                why,
            },
        },
        WalkError::Shape { filter, why } => match scan::validate(text) {
            Err(WalkError::Malformed { offset, why }) => RewriteError::NotJson { offset, why },
            _ => RewriteError::ShapeMismatch {
                selector: compiled
                    .filters
                    .get(filter)
                    .map(|f| f.selector.to_owned())
                    .unwrap_or_default(),
                why,
            },
        },
    })?;
    if walked.not_found {
        return Ok(RewriteOutcome::NotFound);
    }
    if walked.edits.is_empty() {
        return Ok(RewriteOutcome::Unchanged);
    }
    let removed = walked.edits.iter().map(|e| e.removed).sum();
    let masked = walked.edits.iter().map(|e| e.masked).sum();
    let body = splice(body, &walked).ok_or(RewriteError::Internal)?;
    Ok(RewriteOutcome::Rewritten {
        body,
        removed,
        masked,
    })
}

/// `src` with the ranges of `edits` (in order, not overlapping) dropped or
/// replaced; `None` if they are out of order or overlap.
fn splice(src: &[u8], walked: &Walked) -> Option<Bytes> {
    let edits = &walked.edits;
    let cut: usize = edits.iter().map(|e| e.end.saturating_sub(e.start)).sum();
    let added: usize = edits
        .iter()
        .filter_map(|e| e.replacement.as_ref().map(|r| r.len()))
        .sum();
    let mut out = Vec::with_capacity((src.len() + added).saturating_sub(cut));
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(src.get(at..edit.start)?);
        if let Some(replacement) = &edit.replacement {
            out.extend_from_slice(walked.replacements.get(replacement.clone())?);
        }
        at = edit.end;
    }
    out.extend_from_slice(src.get(at..)?);
    Some(Bytes::from(out))
}

fn display_content_type(content_type: &Option<String>) -> &str {
    content_type.as_deref().unwrap_or("(missing)")
}

#[cfg(test)]
mod tests;
