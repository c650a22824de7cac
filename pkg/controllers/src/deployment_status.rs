//! Deployment status: replica counts summed over its ReplicaSets and the Available/Progressing
//! conditions, including the progress deadline.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::deployment_util::*;

/// progressDeadlineSeconds of MaxInt32 means "no deadline".
const NO_DEADLINE: i32 = i32::MAX;

/// The status the deployment should have, and when to re-check its progress deadline.
pub fn calculate(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    progress: Option<(&str, String)>,
) -> (DeploymentStatus, Option<Duration>) {
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter()).collect();
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let replicas: i32 = all.iter().map(|rs| st(rs).replicas).sum();
    let updated = new_rs.map(|rs| st(rs).replicas).unwrap_or(0);
    let ready: i32 = all
        .iter()
        .map(|rs| st(rs).ready_replicas.unwrap_or(0))
        .sum();
    let available: i32 = all
        .iter()
        .map(|rs| st(rs).available_replicas.unwrap_or(0))
        .sum();
    let total_spec: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let unavailable = (total_spec - available).max(0);
    let old_status = d.status.clone().unwrap_or_default();
    let mut conds = old_status.conditions.clone().unwrap_or_default();

    let rolling = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate");
    let max_unavailable = if rolling { fenceposts(d).1 } else { 0 };
    if available >= desired - max_unavailable {
        set_condition(
            &mut conds,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut conds,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }

    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let rs_name = new_rs
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    let mut requeue = None;
    let current = conds.iter().find(|c| c.type_ == "Progressing").cloned();
    let current_reason = current.as_ref().and_then(|c| c.reason.clone());
    if spec.paused.unwrap_or(false) {
        if current_reason.as_deref() != Some("DeploymentPaused") {
            set_condition(
                &mut conds,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".into(),
                ),
            );
        }
    } else if current_reason.as_deref() == Some("DeploymentPaused") {
        set_condition(
            &mut conds,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            ),
        );
    } else if deadline != NO_DEADLINE {
        let complete = updated == desired
            && replicas == desired
            && available == desired
            && new_rs.is_some_and(|rs| rs_replicas(rs) == desired);
        let progressed = updated > old_status.updated_replicas.unwrap_or(0)
            || ready > old_status.ready_replicas.unwrap_or(0)
            || available > old_status.available_replicas.unwrap_or(0)
            || (old_status.replicas.unwrap_or(0) - old_status.updated_replicas.unwrap_or(0))
                > (replicas - updated);
        if let Some((reason, message)) = progress {
            touch_progressing(&mut conds, reason, message);
        } else if complete {
            set_condition(
                &mut conds,
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                ),
            );
        } else if progressed && new_rs.is_some() {
            touch_progressing(
                &mut conds,
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
            );
        } else if let Some(cur) = &current {
            let last = cur.last_update_time.as_ref().map(|t| t.0);
            let limit = last.map(|t| t + SignedDuration::from_secs(deadline.into()));
            let timed_out = cur.reason.as_deref() == Some("ProgressDeadlineExceeded")
                || limit.is_some_and(|l| l <= Timestamp::now());
            if timed_out && cur.reason.as_deref() != Some("NewReplicaSetAvailable") {
                set_condition(
                    &mut conds,
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    ),
                );
            }
        }
        if !complete {
            let cur = conds.iter().find(|c| c.type_ == "Progressing");
            if let Some(cur) = cur.filter(|c| c.status == "True") {
                if let Some(last) = cur.last_update_time.as_ref() {
                    let due = last.0 + SignedDuration::from_secs(deadline.into());
                    let left = due.duration_since(Timestamp::now());
                    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                    requeue = Some(left + Duration::from_millis(100));
                }
            }
        }
    }

    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some(unavailable),
        collision_count: old_status.collision_count,
        conditions: Some(conds),
        terminating_replicas: None,
    };
    (status, requeue)
}

/// Sets Progressing=True with `reason`, always refreshing lastUpdateTime (progress was made).
fn touch_progressing(
    conds: &mut Vec<k8s_openapi::api::apps::v1::DeploymentCondition>,
    reason: &str,
    message: String,
) {
    let mut cond = condition("Progressing", "True", reason, message);
    if let Some(existing) = conds.iter().find(|c| c.type_ == "Progressing") {
        if existing.status == "True" {
            cond.last_transition_time = existing.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != "Progressing");
    conds.push(cond);
}
