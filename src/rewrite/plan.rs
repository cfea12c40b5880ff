//! What to rewrite in one response, and its compiled form for the walk.
//!
//! [`RewritePlan`] is plain data the proxy builds per request from the
//! route's [`RowFilter`]s and [`plan_row_filter`](crate::policy::plan_row_filter).
//! [`Compiled`] turns it into bit masks indexed by document depth, so the
//! walk answers "does this member matter?" without allocating: a selector
//! step and a field-path segment each consume exactly one nesting level,
//! so every live selector at depth `d` has consumed `d` steps, and every
//! live field watch has consumed `d - item_depth` segments.

use std::sync::Arc;

use super::links::Links;
use super::RewriteError;
use crate::identity::Identity;
use crate::policy::{
    plan_row_filter, FilterMode, ItemSelector, RoleSet, RowFilter, RowFilterPlan, SelectorStep,
};
use crate::redact::{Detector, RedactionRule, Style};

/// Everything the rewriter must do to one response body.
///
/// A plan whose filters are all [`RowFilterPlan::Skip`] is empty: the
/// response need not be buffered at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewritePlan {
    pub row_filters: Vec<PlannedRowFilter>,
    /// Values to mask whole: every string or number at or under each
    /// selector.
    pub masks: Vec<PlannedMask>,
    /// Free-text detection applied to every string value of the body (not
    /// to member names), in order.
    pub detect: Vec<PlannedDetect>,
    /// Upstream URLs to turn into the gateway's (see [`Links`]): whole
    /// string values, before detection reads them.
    pub links: Option<Links>,
}

/// A field to mask, for one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMask {
    /// `$.data.payload[*].meta.sender.phone_number`, or a container such as
    /// `$.payload[*].meta.sender` (everything inside is masked). A member
    /// that is missing or `null` has nothing to mask.
    pub field: ItemSelector,
    pub style: Style,
}

/// Phone numbers and e-mail addresses to find in free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDetect {
    pub detectors: Vec<Detector>,
    pub style: Style,
}

/// One row filter, planned for one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRowFilter {
    /// Where the items are (`$.data.payload[*]`), or the single object
    /// (`$`, `$.payload`) in [`FilterMode::Object`].
    pub items: ItemSelector,
    /// [`FilterMode::Items`]: items not allowed are removed from their
    /// array. [`FilterMode::Object`]: an object not allowed makes the whole
    /// response [`NotFound`](super::RewriteOutcome::NotFound).
    pub mode: FilterMode,
    pub plan: RowFilterPlan,
}

/// Filters or field watches one plan may carry: each is a bit in a `u64`.
pub const MAX_PLAN_ENTRIES: usize = 64;

impl RewritePlan {
    /// What a route's answers go through for one caller: its row filter
    /// as planned for `identity`, and each redaction rule whose
    /// `unless_permission` the caller lacks. Routes with either are token
    /// routes; without an identity nothing is known to be visible, so
    /// every rule masks (and no row filter can be planned).
    pub fn for_caller(
        row_filter: Option<&RowFilter>,
        redactions: &[Arc<RedactionRule>],
        identity: Option<&Identity>,
        roles: &RoleSet,
    ) -> RewritePlan {
        let mut plan = RewritePlan::default();
        if let (Some(filter), Some(identity)) = (row_filter, identity) {
            plan.push_row_filter(filter, plan_row_filter(filter, identity, roles));
        }
        for rule in redactions {
            let exempt = match (&rule.unless_permission, identity) {
                (Some(p), Some(identity)) => roles.holds(&identity.roles, p),
                _ => false,
            };
            if !exempt {
                plan.push_redaction(rule);
            }
        }
        plan
    }

    /// Adds `filter` as planned for this caller; a `Skip` plan adds nothing.
    pub fn push_row_filter(&mut self, filter: &RowFilter, plan: RowFilterPlan) {
        if plan == RowFilterPlan::Skip {
            return;
        }
        self.row_filters.push(PlannedRowFilter {
            items: filter.items.clone(),
            mode: filter.mode,
            plan,
        });
    }

    /// Adds `rule`'s masks for a caller who lacks its `unless_permission`.
    pub fn push_redaction(&mut self, rule: &RedactionRule) {
        for field in &rule.fields {
            self.masks.push(PlannedMask {
                field: field.clone(),
                style: rule.style.clone(),
            });
        }
        if !rule.detect.is_empty() {
            self.detect.push(PlannedDetect {
                detectors: rule.detect.clone(),
                style: rule.style.clone(),
            });
        }
    }

    /// Whether there is nothing to do (no filter, or only `Skip` plans,
    /// and nothing to mask).
    pub fn is_empty(&self) -> bool {
        !self.fails_closed() && self.links.is_none()
    }

    /// Whether a body that cannot be read must not reach the client: rows
    /// to remove or values to mask. A plan that only rewrites links passes
    /// what it cannot read (a media file, a body not JSON) as it is: a
    /// link left as the upstream wrote it leaks nothing the caller may not
    /// see.
    pub fn fails_closed(&self) -> bool {
        self.row_filters
            .iter()
            .any(|f| f.plan != RowFilterPlan::Skip)
            || !self.masks.is_empty()
            || self.detect.iter().any(|d| !d.detectors.is_empty())
    }
}

/// A plan as the walk reads it.
pub(super) struct Compiled<'p> {
    pub filters: Vec<CompiledFilter<'p>>,
    pub watches: Vec<Watch<'p>>,
    /// Every filter (the root value is live for all of them).
    pub all: u64,
    /// Filters in object mode.
    pub object_mode: u64,
    /// The filters' selectors, by depth.
    steps: StepTable,
    /// The plan's masks and their selectors, compiled as for filters.
    pub masks: Vec<&'p PlannedMask>,
    pub mask_all: u64,
    mask_steps: StepTable,
    pub detect: &'p [PlannedDetect],
    pub links: Option<&'p Links>,
}

/// Selectors (each one bit) indexed by document depth: whose selector ends
/// there, whose next step is `.name`, whose next step is `[*]`.
#[derive(Default)]
struct StepTable {
    roots: Vec<u64>,
    members: Vec<u64>,
    eaches: Vec<u64>,
}

impl StepTable {
    fn new<'s>(selectors: impl Iterator<Item = &'s [SelectorStep]> + Clone) -> StepTable {
        let depth = selectors.clone().map(<[_]>::len).max().unwrap_or(0) + 1;
        let mut table = StepTable {
            roots: vec![0; depth],
            members: vec![0; depth],
            eaches: vec![0; depth],
        };
        for (i, steps) in selectors.enumerate() {
            set_bit(&mut table.roots, steps.len(), i);
            for (d, step) in steps.iter().enumerate() {
                let masks = match step {
                    SelectorStep::Member(_) => &mut table.members,
                    SelectorStep::Each => &mut table.eaches,
                };
                set_bit(masks, d, i);
            }
        }
        table
    }

    fn at(masks: &[u64], depth: usize) -> u64 {
        masks.get(depth).copied().unwrap_or(0)
    }
}

/// The member name a selector's step at `depth` expects, if it is `.name`.
fn member_at(steps: &[SelectorStep], depth: usize) -> Option<&str> {
    match steps.get(depth)? {
        SelectorStep::Member(name) => Some(name),
        SelectorStep::Each => None,
    }
}

pub(super) struct CompiledFilter<'p> {
    pub selector: &'p str,
    pub steps: &'p [SelectorStep],
    pub mode: FilterMode,
    /// The watches looking inside this filter's items.
    pub watches: u64,
    /// Whether an item must pass an ownership test.
    pub needs_owner: bool,
}

/// A field path looked up inside each item of one filter.
pub(super) struct Watch<'p> {
    pub filter: usize,
    /// Document depth of the filter's items.
    pub base: usize,
    pub segments: Vec<&'p str>,
    /// Document depth of the value the path names.
    pub target_depth: usize,
    pub kind: WatchKind<'p>,
}

pub(super) enum WatchKind<'p> {
    /// The owner value must be text in these.
    Owner(&'p [String]),
    /// The array here must not contain this label.
    Label(&'p str),
}

impl<'p> Compiled<'p> {
    pub fn new(plan: &'p RewritePlan) -> Result<Compiled<'p>, RewriteError> {
        let mut filters = Vec::new();
        let mut watches = Vec::new();
        for planned in &plan.row_filters {
            let RowFilterPlan::Keep {
                owner,
                hidden_labels,
            } = &planned.plan
            else {
                continue;
            };
            let index = filters.len();
            let base = planned.items.steps().len();
            let mut mask = 0u64;
            let mut watch = |segments: Vec<&'p str>, kind: WatchKind<'p>| {
                mask |= bit(watches.len());
                watches.push(Watch {
                    filter: index,
                    base,
                    target_depth: base + segments.len(),
                    segments,
                    kind,
                });
            };
            if let Some(owner) = owner {
                watch(
                    owner.field.segments().collect(),
                    WatchKind::Owner(&owner.allowed_values),
                );
            }
            for hidden in hidden_labels {
                watch(
                    hidden.field.segments().collect(),
                    WatchKind::Label(&hidden.label),
                );
            }
            filters.push(CompiledFilter {
                selector: planned.items.as_str(),
                steps: planned.items.steps(),
                mode: planned.mode,
                watches: mask,
                needs_owner: owner.is_some(),
            });
        }
        for (what, count) in [
            ("row filters", filters.len()),
            ("field tests", watches.len()),
            ("masked fields", plan.masks.len()),
        ] {
            if count > MAX_PLAN_ENTRIES {
                return Err(RewriteError::PlanTooLarge { what, count });
            }
        }

        let mut compiled = Compiled {
            all: 0,
            object_mode: 0,
            steps: StepTable::new(filters.iter().map(|f| f.steps)),
            filters,
            watches,
            masks: plan.masks.iter().collect(),
            mask_all: 0,
            mask_steps: StepTable::new(plan.masks.iter().map(|m| m.field.steps())),
            detect: &plan.detect,
            links: plan.links.as_ref(),
        };
        for i in 0..compiled.masks.len() {
            compiled.mask_all |= bit(i);
        }
        for (i, filter) in compiled.filters.iter().enumerate() {
            compiled.all |= bit(i);
            if filter.mode == FilterMode::Object {
                compiled.object_mode |= bit(i);
            }
        }
        Ok(compiled)
    }

    /// A plan with nothing to do: the walk only validates.
    pub fn empty() -> Compiled<'static> {
        Compiled::detect_only(&[])
    }

    /// Free-text detection alone (error bodies): no selector, so nothing
    /// to allocate.
    pub fn detect_only(detect: &'p [PlannedDetect]) -> Compiled<'p> {
        Compiled {
            filters: Vec::new(),
            watches: Vec::new(),
            all: 0,
            object_mode: 0,
            steps: StepTable::default(),
            masks: Vec::new(),
            mask_all: 0,
            mask_steps: StepTable::default(),
            detect,
            links: None,
        }
    }

    /// Mask `m`'s [`Style::strictness`].
    pub fn mask_strictness(&self, m: usize) -> u8 {
        self.masks.get(m).map_or(0, |mask| mask.style.strictness())
    }

    pub fn mask_roots_at(&self, depth: usize) -> u64 {
        StepTable::at(&self.mask_steps.roots, depth)
    }

    pub fn mask_members_at(&self, depth: usize) -> u64 {
        StepTable::at(&self.mask_steps.members, depth)
    }

    pub fn mask_eaches_at(&self, depth: usize) -> u64 {
        StepTable::at(&self.mask_steps.eaches, depth)
    }

    /// The member name mask `m` expects at `depth`.
    pub fn mask_member_name(&self, m: usize, depth: usize) -> Option<&'p str> {
        member_at(self.masks.get(m)?.field.steps(), depth)
    }

    pub fn roots_at(&self, depth: usize) -> u64 {
        StepTable::at(&self.steps.roots, depth)
    }

    pub fn members_at(&self, depth: usize) -> u64 {
        StepTable::at(&self.steps.members, depth)
    }

    pub fn eaches_at(&self, depth: usize) -> u64 {
        StepTable::at(&self.steps.eaches, depth)
    }

    /// The member name filter `f` expects at `depth`, if its step there is
    /// `.name`.
    pub fn member_name(&self, f: usize, depth: usize) -> Option<&'p str> {
        member_at(self.filters.get(f)?.steps, depth)
    }

    /// The segment watch `w` expects among the members of an object at
    /// `depth`.
    pub fn segment(&self, w: usize, depth: usize) -> Option<&'p str> {
        let watch = self.watches.get(w)?;
        watch.segments.get(depth.checked_sub(watch.base)?).copied()
    }
}

/// The single bit of entry `i` (callers keep `i` below
/// [`MAX_PLAN_ENTRIES`]).
pub(super) fn bit(i: usize) -> u64 {
    1u64.checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Sets bit `i` of the mask for `depth` (the vectors are sized to the
/// deepest selector).
fn set_bit(masks: &mut [u64], depth: usize, i: usize) {
    if let Some(mask) = masks.get_mut(depth) {
        *mask |= bit(i);
    }
}

/// The indexes of the bits set in `mask`, lowest first.
pub(super) fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}
