//! `chatwarden audit verify FILE [--key PUBLIC.pem]`: recompute the hash
//! chain line by line, and with the key, check every signed checkpoint
//! (see [`super::signing`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::chain::{check_line, LinkError};
use super::signing::{CheckpointError, Keyring, Since};

/// How many hashes of records not yet vouched for are kept to find where
/// a checkpoint's vouching begins (32 MiB). A file going longer without a
/// checkpoint has its oldest ones counted as unvouched.
const UNVOUCHED_KEPT: usize = 1 << 20;

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Number of records (lines) checked.
    pub records: u64,
    /// `prev_hash` of the first record: 64 zeros for a file that starts a
    /// chain, the last hash of the previous file for a rotated-into file.
    /// `None` for an empty file.
    pub first_prev_hash: Option<String>,
    /// `hash` of the last record: compare it with an anchor kept elsewhere to
    /// detect lines removed from the end, which a chain alone cannot see.
    pub last_hash: Option<String>,
    /// Signed checkpoints seen (each checked when a key was given).
    pub checkpoints: u64,
    /// Records after the last checkpoint (all of them when there is none):
    /// no signature vouches for these yet.
    pub unsigned_tail: u64,
    /// With a key: stretches of lines (first, last) that signed checkpoints
    /// follow but none vouches for (see [`VerifyError::Unvouched`]).
    pub unvouched: Vec<(u64, u64)>,
    /// With keys: the ids of the keys that signed checkpoints, in the
    /// order they first did (two after a key rotation).
    pub signed_by: Vec<String>,
}

/// The first place where the chain breaks.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read audit file: {0}")]
    Io(#[from] io::Error),
    #[error("line {line}: {problem}")]
    Broken { line: u64, problem: Break },
    /// A key was given and no record is a checkpoint: a file rewritten
    /// without the key would look just like this.
    #[error("no signed checkpoint in {records} record(s): nothing vouches for the file")]
    Unsigned { records: u64 },
    /// A key was given and lines `first..=last`, followed by signed
    /// checkpoints, are vouched for by none of them: the last records
    /// before a crash, which the gateway never signed, or records
    /// rewritten while it was stopped, which it took over at startup.
    #[error("lines {first}-{last}: {UNVOUCHED}")]
    Unvouched { first: u64, last: u64 },
}

/// What an unvouched stretch of lines is, for messages.
pub const UNVOUCHED: &str = "vouched for by no signed checkpoint (written just before a crash \
     and never signed, or rewritten while the gateway was stopped)";

/// Why a line breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    /// Not a JSON object, not UTF-8, empty, or cut short (truncated file).
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error("no prev_hash/hash (record written without the hash chain)")]
    MissingHash,
    #[error("prev_hash/hash malformed or not the last two keys")]
    MalformedHash,
    /// The line is intact but does not follow the line before it: a record
    /// was deleted, inserted or moved.
    #[error(
        "prev_hash does not match the previous record's hash \
         (a record was deleted, inserted or reordered)"
    )]
    PrevHashMismatch,
    /// The line's content no longer matches its own hash.
    #[error("hash does not match the record's content (the record was edited)")]
    HashMismatch,
    /// A checkpoint whose signature does not hold.
    #[error("checkpoint: {0}")]
    Checkpoint(CheckpointError),
}

/// Verifies the audit file at `path` (the chain only; checkpoints are
/// counted, not checked).
pub fn verify_file(path: impl AsRef<Path>) -> Result<VerifySummary, VerifyError> {
    verify_reader(BufReader::new(File::open(path)?))
}

/// Verifies the audit file at `path` and every checkpoint in it against
/// `key`; a file without any, or with records that checkpoints follow but
/// none vouches for, is refused.
pub fn verify_file_signed(
    path: impl AsRef<Path>,
    key: &Keyring,
) -> Result<VerifySummary, VerifyError> {
    let summary = verify_file_with(path, Some(key))?;
    if summary.checkpoints == 0 {
        return Err(VerifyError::Unsigned {
            records: summary.records,
        });
    }
    if let Some(&(first, last)) = summary.unvouched.first() {
        return Err(VerifyError::Unvouched { first, last });
    }
    Ok(summary)
}

/// Verifies the audit file at `path`, and its checkpoints against `key`
/// when one is given; a file without checkpoints is the caller's to judge
/// (the newest of a set of rotated files may not have one yet).
pub fn verify_file_with(
    path: impl AsRef<Path>,
    key: Option<&Keyring>,
) -> Result<VerifySummary, VerifyError> {
    verify_lines(BufReader::new(File::open(path)?), key)
}

/// Verifies audit lines from `reader`. The first record's `prev_hash` is
/// taken as the anchor (see [`VerifySummary::first_prev_hash`]); every later
/// record must link to the one before it.
pub fn verify_reader(reader: impl BufRead) -> Result<VerifySummary, VerifyError> {
    verify_lines(reader, None)
}

fn verify_lines(reader: impl BufRead, key: Option<&Keyring>) -> Result<VerifySummary, VerifyError> {
    verify_lines_keeping(reader, key, UNVOUCHED_KEPT)
}

/// [`verify_lines`], keeping at most `kept` hashes of unvouched records.
fn verify_lines_keeping(
    mut reader: impl BufRead,
    key: Option<&Keyring>,
    kept: usize,
) -> Result<VerifySummary, VerifyError> {
    let mut line = Vec::with_capacity(1024);
    let mut records = 0u64;
    let mut first_prev = None;
    let mut last = None;
    let mut checkpoints = 0u64;
    // Lines 1..=vouched are vouched for by a checkpoint; the hashes of the
    // lines after them (the oldest `dropped` of them forgotten) are kept to
    // find where the next checkpoint's vouching begins.
    let mut vouched = 0u64;
    let mut unvouched: Vec<[u8; 32]> = Vec::new();
    let mut dropped = 0u64;
    let mut gaps = Vec::new();
    let mut signed_by: Vec<String> = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let line_no = records + 1;
        let broken = |problem| VerifyError::Broken {
            line: line_no,
            problem,
        };
        // A missing final newline means the write was cut short; the JSON
        // check below usually catches it, this catches a cut right before '\n'.
        let Some(content) = line.strip_suffix(b"\n") else {
            return Err(broken(Break::BadJson(
                "last line has no newline (truncated)".into(),
            )));
        };
        let link = check_line(content).map_err(|e| broken(e.into()))?;
        match last {
            None => first_prev = Some(link.prev),
            Some(prev) if prev != link.prev => return Err(broken(Break::PrevHashMismatch)),
            Some(_) => {}
        }
        if let Some(detail) = checkpoint_detail(content) {
            if let Some(key) = key {
                let (since, signer) = key
                    .check(&hex::encode(link.prev), &detail)
                    .map_err(|e| broken(Break::Checkpoint(e)))?;
                if !signed_by.iter().any(|s| s == signer) {
                    signed_by.push(signer.to_string());
                }
                // Vouched for from `since` on: the lines kept since the last
                // vouched one, up to the one whose hash it names, are not.
                let gap = match since {
                    Since::Start => 0,
                    Since::Hash(h) => match unvouched.iter().position(|u| *u == h) {
                        Some(i) => dropped + i as u64 + 1,
                        None => dropped,
                    },
                };
                if gap > 0 {
                    gaps.push((vouched + 1, vouched + gap));
                }
            }
            checkpoints += 1;
            vouched = line_no;
            unvouched.clear();
            dropped = 0;
        } else if key.is_some() {
            if unvouched.len() >= kept {
                let half = (kept / 2).max(1);
                unvouched.drain(..half);
                dropped += half as u64;
            }
            unvouched.push(link.hash);
        }
        last = Some(link.hash);
        records += 1;
    }
    Ok(VerifySummary {
        records,
        first_prev_hash: first_prev.map(hex::encode),
        last_hash: last.map(hex::encode),
        checkpoints,
        unsigned_tail: records - vouched,
        unvouched: gaps,
        signed_by,
    })
}

/// The `detail` of a checkpoint record (the chain has checked the line is
/// a JSON object already).
fn checkpoint_detail(content: &[u8]) -> Option<String> {
    // Most lines are requests: skip the parse unless the event is there.
    memchr::memmem::find(content, br#""event":"checkpoint""#)?;
    let record: serde_json::Value = serde_json::from_slice(content).ok()?;
    if record.get("event")?.as_str()? != "checkpoint" {
        return None;
    }
    Some(record.get("detail")?.as_str()?.to_string())
}

impl From<LinkError> for Break {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::BadJson(msg) => Break::BadJson(msg),
            LinkError::MissingHash => Break::MissingHash,
            LinkError::MalformedHash => Break::MalformedHash,
            LinkError::HashMismatch => Break::HashMismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::audit::chain::Chain;
    use crate::audit::record::AuditRecord;
    use crate::decision::{Decision, Reason};

    fn chained_lines(n: u32) -> Vec<String> {
        let mut chain = Chain::genesis();
        (0..n)
            .map(|i| {
                let mut r = chained_request(i as usize)
                    .decision(Decision::Deny(Reason::PermissionDenied))
                    .response(403, 60, Duration::from_micros(800));
                chain.seal(&mut r);
                r.to_json_line()
            })
            .collect()
    }

    fn verify_lines(lines: &[String]) -> Result<VerifySummary, VerifyError> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        verify_reader(text.as_bytes())
    }

    fn broken_at(result: Result<VerifySummary, VerifyError>) -> (u64, Break) {
        match result {
            Err(VerifyError::Broken { line, problem }) => (line, problem),
            other => panic!("verification should have failed, got {other:?}"),
        }
    }

    /// A signed chain: `r` a request record, `c(k)` a checkpoint whose
    /// vouching begins after line `k` (0: the start).
    enum Line {
        R,
        C(usize),
    }

    fn signed_chain(layout: &[Line]) -> (String, Keyring) {
        use crate::audit::signing::{tests::key_pair, Signer};
        let (private, public) = key_pair();
        let signer = Signer::from_pem(private.as_bytes()).expect("signer");
        let mut chain = Chain::genesis();
        let mut hashes = vec![crate::audit::GENESIS];
        let mut text = String::new();
        for (i, line) in layout.iter().enumerate() {
            let mut record = match line {
                Line::R => chained_request(i),
                Line::C(since) => signer.checkpoint(&chain.prev(), &hashes[*since], 0),
            };
            chain.seal(&mut record);
            hashes.push(chain.prev());
            text.push_str(&record.to_json_line());
            text.push('\n');
        }
        let key = crate::audit::signing::Checker::from_pem(public.as_bytes()).expect("checker");
        (text, Keyring::from(key))
    }

    fn chained_request(i: usize) -> AuditRecord {
        AuditRecord::request(
            datetime!(2026-11-23 18:47:52.123 UTC),
            format!("req-{i}"),
            "v1",
            "192.0.2.1",
            "GET",
            "/api/v1/contacts",
        )
    }

    #[test]
    fn a_checkpoint_vouches_for_the_records_after_its_since_only() {
        use Line::{C, R};
        // A first process (since the start), a crash after lines 6-7, a
        // second process that took over after line 7.
        let (text, key) = signed_chain(&[C(0), R, R, R, C(0), R, R, C(7), R, C(7)]);
        let summary = super::verify_lines(text.as_bytes(), Some(&key)).expect("the chain holds");
        assert_eq!(summary.unvouched, vec![(6, 7)]);
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (4, 0));
        // Without the crash: the second process took over after the first
        // one's last checkpoint, and everything is vouched for.
        let (text, key) = signed_chain(&[C(0), R, R, C(0), C(3), R, C(3), R]);
        let summary = super::verify_lines(text.as_bytes(), Some(&key)).expect("the chain holds");
        assert_eq!(summary.unvouched, vec![]);
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (4, 1));
        // A rotated-into file: the since is in an earlier file.
        let (text, key) = signed_chain(&[R, R, C(1), R]);
        let tail: String = text.lines().skip(2).map(|l| format!("{l}\n")).collect();
        let summary = super::verify_lines(tail.as_bytes(), Some(&key)).expect("the chain holds");
        assert_eq!(
            summary.unvouched,
            vec![],
            "line 1 of this file follows the since"
        );
        // Without a key nothing is checked, so nothing is judged unvouched.
        let (text, _) = signed_chain(&[C(0), R, R, C(2)]);
        let summary = super::verify_lines(text.as_bytes(), None).expect("the chain holds");
        assert_eq!(summary.unvouched, vec![]);
    }

    #[test]
    fn a_long_unvouched_stretch_is_counted_whole_past_the_hashes_kept() {
        use Line::{C, R};
        let mut layout = vec![C(0)];
        layout.extend((0..10).map(|_| R));
        layout.push(C(11));
        let (text, key) = signed_chain(&layout);
        for kept in [1, 2, 4, 64] {
            let summary =
                verify_lines_keeping(text.as_bytes(), Some(&key), kept).expect("the chain holds");
            assert_eq!(summary.unvouched, vec![(2, 11)], "keeping {kept}");
        }
        // Vouching from after line 3, whose hash is no longer kept: lines
        // 2-3 are not vouched for, and neither, for want of the hash to
        // tell, are the lines forgotten after them.
        let mut layout = vec![C(0)];
        layout.extend((0..10).map(|_| R));
        layout.push(C(3));
        let (text, key) = signed_chain(&layout);
        let summary = verify_lines_keeping(text.as_bytes(), Some(&key), 64).expect("holds");
        assert_eq!(summary.unvouched, vec![(2, 3)]);
        let summary = verify_lines_keeping(text.as_bytes(), Some(&key), 4).expect("holds");
        assert!(
            matches!(summary.unvouched[..], [(2, last)] if last >= 3),
            "{:?}",
            summary.unvouched
        );
    }

    #[test]
    fn intact_chain_verifies() {
        let lines = chained_lines(5);
        let summary = match verify_lines(&lines) {
            Ok(s) => s,
            Err(e) => panic!("an untouched chain should verify: {e}"),
        };
        assert_eq!(summary.records, 5, "all five records should be counted");
        assert_eq!(summary.first_prev_hash, Some("0".repeat(64)));
    }

    #[test]
    fn empty_input_is_an_empty_chain() {
        let summary = verify_reader(&b""[..]).ok();
        assert_eq!(
            summary.map(|s| s.records),
            Some(0),
            "empty file should verify with 0 records"
        );
    }

    #[test]
    fn edited_field_is_a_hash_mismatch_on_that_line() {
        let mut lines = chained_lines(5);
        lines[2] = lines[2].replace(r#""decision":"deny""#, r#""decision":"allow""#);
        assert_eq!(broken_at(verify_lines(&lines)), (3, Break::HashMismatch));
    }

    #[test]
    fn deleted_line_breaks_the_next_link() {
        let mut lines = chained_lines(5);
        lines.remove(1);
        assert_eq!(
            broken_at(verify_lines(&lines)),
            (2, Break::PrevHashMismatch)
        );
    }

    #[test]
    fn reordered_lines_break_at_the_first_moved_one() {
        let mut lines = chained_lines(5);
        lines.swap(2, 3);
        assert_eq!(
            broken_at(verify_lines(&lines)),
            (3, Break::PrevHashMismatch)
        );
    }

    #[test]
    fn truncated_last_line_is_bad_json() {
        let lines = chained_lines(4);
        let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        text.truncate(text.len() - 40);
        let (line, problem) = broken_at(verify_reader(text.as_bytes()));
        assert_eq!(line, 4, "the cut line should be reported");
        assert!(
            matches!(problem, Break::BadJson(_)),
            "a cut line is bad JSON, got {problem:?}"
        );
    }

    #[test]
    fn cut_just_before_the_newline_is_reported() {
        let lines = chained_lines(2);
        let text = format!("{}\n{}", lines[0], lines[1]);
        let (line, problem) = broken_at(verify_reader(text.as_bytes()));
        assert_eq!(line, 2);
        assert!(
            matches!(problem, Break::BadJson(_)),
            "missing newline should be flagged"
        );
    }

    #[test]
    fn unchained_and_garbage_lines_are_named() {
        let mut lines = chained_lines(2);
        lines.push(r#"{"ts":"2026-11-23T18:47:52.123Z"}"#.into());
        assert_eq!(broken_at(verify_lines(&lines)), (3, Break::MissingHash));
        let mut lines = chained_lines(2);
        lines.insert(1, String::new());
        assert!(matches!(
            broken_at(verify_lines(&lines)),
            (2, Break::BadJson(_))
        ));
        let bytes = [&b"\xff\xfe\n"[..]].concat();
        assert!(matches!(
            broken_at(verify_reader(&bytes[..])),
            (1, Break::BadJson(_))
        ));
    }
}
