//! The deletion conditions the namespace controller keeps on a Terminating namespace, with
//! upstream's types, reasons and messages: each maintained type is always present, True with
//! the failure when something is wrong and False with the "ok" text otherwise.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};

use crate::util::now;

/// Discovery of some group failed.
pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
/// Legacy group-version parsing failed (never happens here, kept so the set matches upstream).
pub const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
/// Deleting some resource's content failed.
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
/// Objects are still present.
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
/// Objects with finalizers are still present.
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Maintained condition types, in upstream's order, with their ok reason and message.
const TYPES: &[(&str, &str, &str)] = &[
    (
        DISCOVERY_FAILURE,
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        GV_PARSING_FAILURE,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        CONTENT_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        FINALIZERS_REMAINING,
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// What is left in a namespace after a deletion pass.
#[derive(Debug, Default)]
pub struct Totals {
    /// (resource, group) -> objects remaining.
    pub remaining: BTreeMap<(String, String), usize>,
    /// finalizer -> objects carrying it.
    pub finalizers: BTreeMap<String, usize>,
}

/// Collects failures of one pass and turns them into conditions.
#[derive(Debug, Default)]
pub struct ConditionUpdater {
    new: Vec<NamespaceCondition>,
    content_errors: Vec<String>,
}

fn failing(type_: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now()),
    }
}

impl ConditionUpdater {
    /// Discovery failed (message already formatted like upstream).
    pub fn discovery_failed(&mut self, message: String) {
        self.new
            .push(failing(DISCOVERY_FAILURE, "DiscoveryFailed", message));
    }

    /// Deleting one resource's content failed.
    pub fn delete_content_failed(&mut self, message: String) {
        self.content_errors.push(message);
    }

    /// Records what remains: ContentRemaining and FinalizersRemaining.
    pub fn content_totals(&mut self, totals: &Totals) {
        let mut remaining: Vec<String> = totals
            .remaining
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((res, group), n)| format!("{res}.{group} has {n} resource instances"))
            .collect();
        if !remaining.is_empty() {
            remaining.sort();
            self.new.push(failing(
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", remaining.join(", ")),
            ));
        }
        let mut fins: Vec<String> = totals
            .finalizers
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !fins.is_empty() {
            fins.sort();
            self.new.push(failing(
                FINALIZERS_REMAINING,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    fins.join(", ")
                ),
            ));
        }
    }

    /// Merges the pass into `status.conditions`; true when anything changed.
    pub fn apply(mut self, status: &mut NamespaceStatus) -> bool {
        if !self.content_errors.is_empty() && !self.new.iter().any(|c| c.type_ == CONTENT_FAILURE) {
            self.content_errors.sort();
            let n = self.content_errors.len();
            self.new.push(failing(
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {n} remaining: {}",
                    self.content_errors.join(", ")
                ),
            ));
        }
        let conds = status.conditions.get_or_insert_with(Vec::new);
        let mut changed = false;
        for (type_, ok_reason, ok_message) in TYPES {
            let new = self
                .new
                .iter()
                .find(|c| c.type_ == *type_)
                .cloned()
                .unwrap_or_else(|| NamespaceCondition {
                    type_: (*type_).into(),
                    status: "False".into(),
                    reason: Some((*ok_reason).into()),
                    message: Some((*ok_message).into()),
                    last_transition_time: Some(now()),
                });
            match conds.iter_mut().find(|c| c.type_ == *type_) {
                None => {
                    conds.push(new);
                    changed = true;
                }
                Some(old) => {
                    if old.status != new.status
                        || old.reason != new.reason
                        || old.message != new.message
                    {
                        if old.status != new.status {
                            old.last_transition_time = Some(now());
                        }
                        old.status = new.status;
                        old.reason = new.reason;
                        old.message = new.message;
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cond<'a>(s: &'a NamespaceStatus, t: &str) -> &'a NamespaceCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn messages_match_upstream() {
        let mut u = ConditionUpdater::default();
        let mut totals = Totals::default();
        totals.remaining.insert(("configmaps".into(), "".into()), 2);
        totals.finalizers.insert("example.com/hold".into(), 2);
        u.content_totals(&totals);
        u.delete_content_failed("b: boom".into());
        u.delete_content_failed("a: bang".into());
        let mut st = NamespaceStatus::default();
        assert!(u.apply(&mut st));
        assert_eq!(st.conditions.as_ref().unwrap().len(), 5);
        let c = cond(&st, CONTENT_REMAINING);
        assert_eq!(c.status, "True");
        assert_eq!(
            c.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        let f = cond(&st, FINALIZERS_REMAINING);
        assert_eq!(f.reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(
            f.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances")
        );
        let e = cond(&st, CONTENT_FAILURE);
        assert_eq!(
            e.message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a: bang, b: boom")
        );
        assert_eq!(cond(&st, DISCOVERY_FAILURE).status, "False");
        // Same pass again: nothing changes.
        let mut u = ConditionUpdater::default();
        u.content_totals(&totals);
        u.delete_content_failed("a: bang".into());
        u.delete_content_failed("b: boom".into());
        assert!(!u.apply(&mut st));
        // Everything gone: all False with the ok texts.
        assert!(ConditionUpdater::default().apply(&mut st));
        let c = cond(&st, CONTENT_REMAINING);
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("ContentRemoved"));
    }
}
