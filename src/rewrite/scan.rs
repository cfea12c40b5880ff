//! One validating pass over a JSON body that finds what the plan must
//! change and records it as byte-range edits; nothing is re-serialized.
//!
//! The walk is a strict RFC 8259 recognizer (the same acceptance as
//! `serde_json::from_slice::<Value>`: paired surrogates, finite numbers,
//! 128 levels of nesting), so a body it accepts is JSON and the spliced
//! output is too. Untouched bytes are copied as they came: key order,
//! number spelling and whitespace survive without `preserve_order`.
//!
//! Item decisions match [`item_allowed`](crate::policy::item_allowed),
//! which reads a parsed `Value` (last duplicate key wins). Clients do not
//! all agree on duplicate keys, so an item with a duplicate key anywhere on
//! a tested field path is removed as ambiguous, and duplicate keys on a
//! selector path are all filtered.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Number;

use super::plan::{bit, bits, Compiled, WatchKind};
use crate::jsontext;
use crate::policy::FilterMode;
use crate::redact::{mask_detected, mask_detected_into, mask_whole_into, Style};

/// Deepest nesting of arrays and objects accepted (as serde_json).
const MAX_NESTING: usize = 128;

/// Bytes `start..end` of the body are replaced by `replacement` (dropped
/// when there is none), a range of [`Walked::replacements`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Edit {
    pub start: usize,
    pub end: usize,
    /// Items this edit removes.
    pub removed: u64,
    /// A masked value: where in [`Walked::replacements`] the JSON value
    /// that takes the original's place is (a string, or `null` when the
    /// style withholds it).
    pub replacement: Option<Range<usize>>,
    /// Values this edit masks (a free-text string may hold several).
    pub masked: u64,
}

impl Edit {
    fn remove(start: usize, end: usize, removed: u64) -> Edit {
        Edit {
            start,
            end,
            removed,
            replacement: None,
            masked: 0,
        }
    }
}

/// What the walk found.
#[derive(Debug, Default)]
pub(super) struct Walked {
    /// In body order, not overlapping.
    pub edits: Vec<Edit>,
    /// The replacement values of all edits, end to end: one buffer for
    /// the whole body rather than an allocation per masked value.
    pub replacements: Vec<u8>,
    /// An object-mode filter refused its object.
    pub not_found: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WalkError {
    Malformed {
        offset: usize,
        why: &'static str,
    },
    Shape {
        filter: usize,
        why: &'static str,
    },
    /// A masked field's path runs into a value of the wrong kind (not a
    /// missing member or `null`, which hold nothing to mask).
    MaskShape {
        mask: usize,
        why: &'static str,
    },
}

/// Walks `text` against `plan`. Taking the body as text (the caller
/// checked it is UTF-8 once) lets every string in it be borrowed as `&str`
/// without checking its bytes again.
pub(super) fn walk(text: &str, plan: &Compiled<'_>) -> Result<Walked, WalkError> {
    let src = text.as_bytes();
    let mut walker = Walker {
        text,
        src,
        pos: 0,
        plan,
        frames: vec![Frame::default(); plan.filters.len()],
        out: Walked::default(),
        scratch: String::new(),
    };
    if !walker.value(0, plan.all, 0, plan.mask_all, None)? {
        // An items-mode selector that names the root cannot remove it.
        walker.out.not_found = true;
    }
    walker.skip_ws();
    if walker.pos != src.len() {
        return Err(walker.malformed("trailing characters after the JSON value"));
    }
    Ok(walker.out)
}

/// Checks that `text` is JSON.
pub(super) fn validate(text: &str) -> Result<(), WalkError> {
    walk(text, &Compiled::empty()).map(|_| ())
}

/// What one item of a filter has shown so far.
#[derive(Debug, Default, Clone, Copy)]
struct Frame {
    /// The owner field's verdict, once seen.
    owner: Option<bool>,
    /// A hidden label was found.
    hidden: bool,
    /// A tested path went through a duplicate key.
    ambiguous: bool,
}

struct Walker<'s, 'p> {
    /// The body; `src` is its bytes. Positions are byte offsets into both,
    /// and every string or number starts and ends at an ASCII byte, so its
    /// range always slices `text` on character boundaries.
    text: &'s str,
    src: &'s [u8],
    pos: usize,
    plan: &'p Compiled<'p>,
    /// Per filter: the item being read (a filter's items never nest, as
    /// they all sit at the depth of its selector).
    frames: Vec<Frame>,
    out: Walked,
    /// A masked value's text, before it is written out as JSON.
    scratch: String,
}

impl<'s> Walker<'s, '_> {
    /// Reads the value at `pos`, `depth` levels deep. `sel`: filters whose
    /// selector matched the path so far; `watch`: field tests whose path
    /// matched so far; `msel`: masks whose selector matched so far;
    /// `masking`: the mask in force from an enclosing masked value. Returns
    /// whether the value is kept (false only for an items-mode item that
    /// is not allowed).
    fn value(
        &mut self,
        depth: usize,
        sel: u64,
        mut watch: u64,
        msel: u64,
        masking: Option<usize>,
    ) -> Result<bool, WalkError> {
        if sel | watch | msel == 0 && masking.is_none() {
            // Outside every selector, test path and mask: most of a body.
            self.plain(depth)?;
            return Ok(true);
        }
        self.skip_ws();
        let plan = self.plan;
        let mask_roots = msel & plan.mask_roots_at(depth);
        // Several masks on one value (an enclosing one still in force, two
        // rules on one field): the strictest style applies, the first of
        // equals.
        let masking = bits(mask_roots).fold(masking, |held, m| match held {
            Some(h) if plan.mask_strictness(h) >= plan.mask_strictness(m) => Some(h),
            _ => Some(m),
        });
        let mask_passing = msel & !mask_roots;
        let mask_members = mask_passing & plan.mask_members_at(depth);
        let mask_eaches = mask_passing & plan.mask_eaches_at(depth);
        let roots = sel & plan.roots_at(depth);
        for f in bits(roots) {
            if let (Some(frame), Some(filter)) = (self.frames.get_mut(f), plan.filters.get(f)) {
                *frame = Frame::default();
                watch |= filter.watches;
            }
        }
        let mut targets = 0;
        for w in bits(watch) {
            if plan.watches.get(w).is_some_and(|x| x.target_depth == depth) {
                targets |= bit(w);
            }
        }
        let passing = sel & !roots;
        let need_object = (passing & plan.members_at(depth)) | (roots & plan.object_mode);
        let need_array = passing & plan.eaches_at(depth);

        let start = self.pos;
        match self.peek() {
            Some(b'{') => {
                if need_array != 0 {
                    return Err(shape(need_array, "expected an array, found an object"));
                }
                if mask_eaches != 0 {
                    return Err(mask_shape(
                        mask_eaches,
                        "expected an array, found an object",
                    ));
                }
                self.object(
                    depth,
                    passing & plan.members_at(depth),
                    watch & !targets,
                    mask_members,
                    masking,
                )?;
                self.owner_is(targets, false);
            }
            Some(b'[') => {
                if need_object != 0 {
                    return Err(shape(need_object, "expected an object, found an array"));
                }
                if mask_members != 0 {
                    return Err(mask_shape(
                        mask_members,
                        "expected an object, found an array",
                    ));
                }
                self.array(depth, need_array, targets, mask_eaches, masking)?;
                self.owner_is(targets, false);
            }
            Some(other) => {
                let wanted = need_object | need_array;
                if wanted != 0 {
                    return Err(shape(wanted, "expected a container, found a scalar"));
                }
                let mask_wanted = mask_members | mask_eaches;
                if mask_wanted != 0 && other != b'n' {
                    return Err(mask_shape(
                        mask_wanted,
                        "expected a container, found a scalar",
                    ));
                }
                match other {
                    b'"' => {
                        let escaped = self.string()?;
                        if self.owner_targets(targets) != 0 {
                            let text = self.text(start, self.pos, escaped)?;
                            self.owner_matches(targets, &text);
                        }
                        match masking {
                            Some(m) => self.mask(m, start, escaped)?,
                            None => self.free_text(start, escaped)?,
                        }
                    }
                    b'-' | b'0'..=b'9' => {
                        self.number()?;
                        if self.owner_targets(targets) != 0 {
                            let number: Number = serde_json::from_slice(self.since(start))
                                .map_err(|_| self.malformed_at(start, "number out of range"))?;
                            self.owner_matches(targets, &number.to_string());
                        }
                        if let Some(m) = masking {
                            self.mask(m, start, false)?;
                        }
                    }
                    b't' | b'f' | b'n' => {
                        let word: &[u8] = match other {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        self.literal(word)?;
                        // Booleans and null are not owner text.
                        self.owner_is(targets, false);
                    }
                    _ => return Err(self.malformed("expected a JSON value")),
                }
            }
            None => return Err(self.malformed("unexpected end of input")),
        }

        let mut keep = true;
        for f in bits(roots) {
            if !self.allowed(f) {
                match plan.filters.get(f).map(|filter| filter.mode) {
                    Some(FilterMode::Object) | None => self.out.not_found = true,
                    Some(FilterMode::Items) => keep = false,
                }
            }
        }
        Ok(keep)
    }

    /// Reads an object at `pos`. `expect`: filters that need one of its
    /// members; `watch`: field tests that go through its members; `mexpect`:
    /// masks that go through one of its members (which may be missing).
    fn object(
        &mut self,
        depth: usize,
        expect: u64,
        watch: u64,
        mexpect: u64,
        masking: Option<usize>,
    ) -> Result<(), WalkError> {
        let mut found = 0u64;
        let mut seen = 0u64;
        if !self.open(depth, b'}')? {
            loop {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    return Err(self.malformed("expected a member name"));
                }
                let key_start = self.pos;
                let escaped = self.string()?;
                let (mut child_sel, mut child_watch, mut child_msel) = (0, 0, 0);
                if expect | watch | mexpect != 0 {
                    let key = self.text(key_start, self.pos, escaped)?;
                    for m in bits(mexpect) {
                        if self.plan.mask_member_name(m, depth) == Some(&*key) {
                            child_msel |= bit(m);
                        }
                    }
                    for f in bits(expect) {
                        if self.plan.member_name(f, depth) == Some(&*key) {
                            child_sel |= bit(f);
                        }
                    }
                    for w in bits(watch) {
                        if self.plan.segment(w, depth) == Some(&*key) {
                            child_watch |= bit(w);
                        }
                    }
                    for w in bits(child_watch & seen) {
                        self.ambiguous(w);
                    }
                    seen |= child_watch;
                    found |= child_sel;
                }
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return Err(self.malformed("expected `:` after a member name"));
                }
                self.pos += 1;
                if !self.value(depth + 1, child_sel, child_watch, child_msel, masking)? {
                    self.out.not_found = true;
                }
                if self.closes(b'}')? {
                    break;
                }
            }
        }
        let missing = expect & !found;
        if missing != 0 {
            return Err(shape(missing, "a selected member is missing"));
        }
        Ok(())
    }

    /// Reads an array at `pos`. `each`: filters whose selector goes through
    /// its elements; `targets`: field tests naming this array (labels);
    /// `meach`: masks whose selector goes through its elements.
    fn array(
        &mut self,
        depth: usize,
        each: u64,
        targets: u64,
        meach: u64,
        masking: Option<usize>,
    ) -> Result<(), WalkError> {
        let labels = self.label_targets(targets);
        if self.open(depth, b']')? {
            return Ok(());
        }
        // Removal keeps the commas right: elements removed before the first
        // kept one go with the comma after them (one edit up to the kept
        // element's start); later ones go with the comma before them.
        let mut any_kept = false;
        let mut pending: Option<(usize, u64)> = None;
        let mut prev_end = self.pos;
        loop {
            self.skip_ws();
            let start = self.pos;
            let mark = self.out.edits.len();
            let keep = self.value(depth + 1, each, 0, meach, masking)?;
            let end = self.pos;
            if labels != 0 && self.src.get(start) == Some(&b'"') {
                self.hide_if_label(labels, start, end)?;
            }
            if !keep {
                // Edits inside a removed element are moot.
                self.out.edits.truncate(mark);
                if any_kept {
                    self.out.edits.push(Edit::remove(prev_end, end, 1));
                } else {
                    let (from, count) = pending.unwrap_or((start, 0));
                    pending = Some((from, count + 1));
                }
            } else {
                if let Some((from, removed)) = pending.take() {
                    self.out
                        .edits
                        .insert(mark, Edit::remove(from, start, removed));
                }
                any_kept = true;
            }
            prev_end = end;
            if self.closes(b']')? {
                break;
            }
        }
        if let Some((from, removed)) = pending {
            self.out.edits.push(Edit::remove(from, prev_end, removed));
        }
        Ok(())
    }

    /// Reads the value at `pos` that no filter, field test or mask reaches
    /// (what [`Walker::value`] does with none in force, without their
    /// bookkeeping): it is only checked to be JSON, and its strings
    /// searched by the plan's detectors.
    fn plain(&mut self, depth: usize) -> Result<(), WalkError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                if self.open(depth, b'}')? {
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.malformed("expected a member name"));
                    }
                    self.string()?;
                    self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Err(self.malformed("expected `:` after a member name"));
                    }
                    self.pos += 1;
                    self.plain(depth + 1)?;
                    if self.closes(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                if self.open(depth, b']')? {
                    return Ok(());
                }
                loop {
                    self.plain(depth + 1)?;
                    if self.closes(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b'"') => {
                let start = self.pos;
                let escaped = self.string()?;
                self.free_text(start, escaped)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.malformed("expected a JSON value")),
            None => Err(self.malformed("unexpected end of input")),
        }
    }

    /// Steps over `{` or `[` at `depth` (see [`Walker::enter`]) and, when
    /// `close` follows, over it too: true for an empty container.
    fn open(&mut self, depth: usize, close: u8) -> Result<bool, WalkError> {
        self.enter(depth)?;
        self.skip_ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        Ok(empty)
    }

    /// After a member (`close` is `}`) or an element (`]`): steps over the
    /// `,` before the next one (false) or over `close` (true).
    fn closes(&mut self, close: u8) -> Result<bool, WalkError> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ if close == b'}' => Err(self.malformed("expected `,` or `}` in an object")),
            _ => Err(self.malformed("expected `,` or `]` in an array")),
        }
    }

    /// Steps over `{` or `[` at `depth`, refusing to nest too deep.
    fn enter(&mut self, depth: usize) -> Result<(), WalkError> {
        if depth + 1 >= MAX_NESTING {
            return Err(self.malformed("nested too deep"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Reads a string at `pos` (its opening quote); returns whether it
    /// holds escapes.
    fn string(&mut self) -> Result<bool, WalkError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            let Some(at) = jsontext::special_from(self.src, self.pos) else {
                self.pos = self.src.len();
                return Err(self.malformed("unterminated string"));
            };
            self.pos = at;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(self.malformed("control character in a string")),
            }
        }
    }

    /// Reads an escape at `pos` (its backslash).
    fn escape(&mut self) -> Result<(), WalkError> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                if (0xDC00..=0xDFFF).contains(&unit) {
                    return Err(self.malformed("lone trailing surrogate"));
                }
                if (0xD800..=0xDBFF).contains(&unit) {
                    if self.src.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.malformed("lone leading surrogate"));
                    }
                    self.pos += 2;
                    if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                        return Err(self.malformed("lone leading surrogate"));
                    }
                }
                Ok(())
            }
            _ => Err(self.malformed("invalid escape")),
        }
    }

    fn hex4(&mut self) -> Result<u16, WalkError> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.malformed("invalid \\u escape"))?;
            // Four hex digits fit a u16 exactly.
            unit = (unit << 4) | digit as u16;
            self.pos += 1;
        }
        Ok(unit)
    }

    /// Reads a number at `pos`.
    fn number(&mut self) -> Result<(), WalkError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.malformed("invalid number")),
        }
        let mut simple = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.malformed("invalid number"));
            }
            self.digits();
            simple = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.malformed("invalid number"));
            }
            self.digits();
            simple = false;
        }
        // A u64/i64 cannot overflow f64; anything longer or with a
        // fraction or exponent must be finite, as serde_json demands.
        if !simple || self.pos - start > 20 {
            let finite = self
                .text_since(start)
                .parse::<f64>()
                .ok()
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(self.malformed_at(start, "number out of range"));
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), WalkError> {
        if self.src.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(self.malformed("invalid literal"));
        }
        self.pos += word.len();
        Ok(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The bytes from `start` to `pos`.
    fn since(&self, start: usize) -> &'s [u8] {
        self.src.get(start..self.pos).unwrap_or_default()
    }

    /// The text from `start` to `pos` (a number's, or a string's with its
    /// quotes).
    fn text_since(&self, start: usize) -> &'s str {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// The text of the string at `start..end` (quotes included), borrowed
    /// from the body unless it holds escapes.
    fn text(&self, start: usize, end: usize, escaped: bool) -> Result<Cow<'s, str>, WalkError> {
        if escaped {
            let raw: &'s [u8] = self.src.get(start..end).unwrap_or_default();
            return serde_json::from_slice::<String>(raw)
                .map(Cow::Owned)
                .map_err(|_| self.malformed_at(start, "invalid string"));
        }
        self.text
            .get(start + 1..end.saturating_sub(1))
            .map(Cow::Borrowed)
            .ok_or_else(|| self.malformed_at(start, "invalid string"))
    }

    /// Replaces the string or number at `start..pos` by its mask under
    /// mask `m`'s style.
    fn mask(&mut self, m: usize, start: usize, escaped: bool) -> Result<(), WalkError> {
        let Some(mask) = self.plan.masks.get(m) else {
            return Err(self.malformed_at(start, "unknown mask"));
        };
        if mask.style == Style::Withhold {
            let from = self.out.replacements.len();
            self.out.replacements.extend_from_slice(b"null");
            self.out.edits.push(Edit {
                start,
                end: self.pos,
                removed: 0,
                replacement: Some(from..self.out.replacements.len()),
                masked: 1,
            });
            return Ok(());
        }
        let text: Cow<'s, str> = if self.src.get(start) == Some(&b'"') {
            self.text(start, self.pos, escaped)?
        } else {
            Cow::Borrowed(self.text_since(start))
        };
        self.scratch.clear();
        mask_whole_into(&text, &mask.style, &mut self.scratch);
        self.replace_with_scratch(start, 1);
        Ok(())
    }

    /// The string at `start..pos`, which no mask covers: a link to an
    /// upstream is turned into the gateway's, and what the client gets is
    /// searched for phone numbers and e-mail addresses.
    fn free_text(&mut self, start: usize, escaped: bool) -> Result<(), WalkError> {
        let plan = self.plan;
        if let Some(links) = plan.links.filter(|l| l.may_hold(self.since(start))) {
            let original = self.text(start, self.pos, escaped)?;
            let mut linked = String::new();
            if links.rewrite_into(&original, &mut linked) {
                self.detect_in(start, &linked, true);
                return Ok(());
            }
        }
        if plan.detect.is_empty() {
            return Ok(());
        }
        let raw = self.since(start);
        // Nothing to find without an `@` or a digit; most strings stop here.
        if !raw.iter().any(|b| *b == b'@' || b.is_ascii_digit()) {
            return Ok(());
        }
        let original = self.text(start, self.pos, escaped)?;
        self.detect_in(start, &original, false);
        Ok(())
    }

    /// Masks the phone numbers and e-mail addresses in `text`, the value
    /// of the string at `start..pos` (`changed`: already not the body's,
    /// so it replaces the string even when nothing is found).
    fn detect_in(&mut self, start: usize, text: &str, changed: bool) {
        let detect = self.plan.detect;
        if let [only] = detect {
            // One rule (the usual case): masked straight into the scratch
            // buffer, no allocation.
            self.scratch.clear();
            let found = mask_detected_into(text, &only.detectors, &only.style, &mut self.scratch);
            if found > 0 {
                self.replace_with_scratch(start, found);
                return;
            }
        } else {
            // Several rules (or none): each masks what the ones before it
            // left.
            let mut current: Option<String> = None;
            let mut found = 0;
            for d in detect {
                let seen = current.as_deref().unwrap_or(text);
                if let Some((masked, n)) = mask_detected(seen, &d.detectors, &d.style) {
                    current = Some(masked);
                    found += n;
                }
            }
            if let Some(masked) = current {
                self.scratch = masked;
                self.replace_with_scratch(start, found);
                return;
            }
        }
        if changed {
            self.scratch.clear();
            self.scratch.push_str(text);
            self.replace_with_scratch(start, 0);
        }
    }

    /// Replaces the value at `start..pos` by `scratch` as a JSON string.
    fn replace_with_scratch(&mut self, start: usize, masked: u64) {
        let from = self.out.replacements.len();
        jsontext::write_str(&mut self.out.replacements, &self.scratch);
        self.out.edits.push(Edit {
            start,
            end: self.pos,
            removed: 0,
            replacement: Some(from..self.out.replacements.len()),
            masked,
        });
    }

    fn owner_targets(&self, targets: u64) -> u64 {
        bits(targets)
            .filter(|&w| {
                matches!(
                    self.plan.watches.get(w).map(|x| &x.kind),
                    Some(WatchKind::Owner(_))
                )
            })
            .fold(0, |mask, w| mask | bit(w))
    }

    fn label_targets(&self, targets: u64) -> u64 {
        targets & !self.owner_targets(targets)
    }

    /// Records the owner verdict for text found at an owner field.
    fn owner_matches(&mut self, targets: u64, text: &str) {
        for w in bits(targets) {
            let Some(watch) = self.plan.watches.get(w) else {
                continue;
            };
            if let WatchKind::Owner(allowed) = watch.kind {
                let verdict = allowed.iter().any(|a| a == text);
                if let Some(frame) = self.frames.get_mut(watch.filter) {
                    frame.owner = Some(verdict);
                }
            }
        }
    }

    /// Records `verdict` for every owner field among `targets`.
    fn owner_is(&mut self, targets: u64, verdict: bool) {
        for w in bits(self.owner_targets(targets)) {
            if let Some(frame) = self
                .plan
                .watches
                .get(w)
                .and_then(|watch| self.frames.get_mut(watch.filter))
            {
                frame.owner = Some(verdict);
            }
        }
    }

    /// Marks the item if the string `start..end` is one of the hidden
    /// labels `labels`.
    fn hide_if_label(&mut self, labels: u64, start: usize, end: usize) -> Result<(), WalkError> {
        let escaped = self.src.get(start..end).is_some_and(|s| s.contains(&b'\\'));
        let text = self.text(start, end, escaped)?;
        for w in bits(labels) {
            let Some(watch) = self.plan.watches.get(w) else {
                continue;
            };
            if let WatchKind::Label(label) = watch.kind {
                if label == text.as_ref() {
                    if let Some(frame) = self.frames.get_mut(watch.filter) {
                        frame.hidden = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn ambiguous(&mut self, w: usize) {
        if let Some(frame) = self
            .plan
            .watches
            .get(w)
            .and_then(|watch| self.frames.get_mut(watch.filter))
        {
            frame.ambiguous = true;
        }
    }

    /// Whether the item of filter `f` just read passes it.
    fn allowed(&self, f: usize) -> bool {
        let (Some(frame), Some(filter)) = (self.frames.get(f), self.plan.filters.get(f)) else {
            return false;
        };
        !frame.ambiguous && !frame.hidden && (!filter.needs_owner || frame.owner == Some(true))
    }

    fn malformed(&self, why: &'static str) -> WalkError {
        self.malformed_at(self.pos, why)
    }

    fn malformed_at(&self, offset: usize, why: &'static str) -> WalkError {
        WalkError::Malformed { offset, why }
    }
}

/// A shape error blamed on the lowest mask in `masks`.
fn mask_shape(masks: u64, why: &'static str) -> WalkError {
    WalkError::MaskShape {
        mask: masks.trailing_zeros() as usize,
        why,
    }
}

/// A shape error blamed on the lowest filter in `filters`.
fn shape(filters: u64, why: &'static str) -> WalkError {
    WalkError::Shape {
        filter: filters.trailing_zeros() as usize,
        why,
    }
}
