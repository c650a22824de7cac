//! The Deployment rollout strategies: RollingUpdate, Recreate, and the paused (scale-only) sync.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use crate::deployment::Controller;
use crate::deployment_util::*;
use crate::{Error, Result};

fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn min_ready(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn rs_name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// The Progressing reason to record after looking for the new ReplicaSet.
fn found_or_created(
    d: &Deployment,
    rs: &ReplicaSet,
    created: bool,
) -> Option<(&'static str, String)> {
    if created {
        Some((
            "NewReplicaSetCreated",
            format!("Created new replica set \"{}\"", rs_name(rs)),
        ))
    } else if get_condition(d, "Progressing").is_none() {
        Some((
            "FoundNewReplicaSet",
            format!("Found new replica set \"{}\"", rs_name(rs)),
        ))
    } else {
        None
    }
}

impl Controller {
    fn complete(&self, d: &Deployment, new_rs: &ReplicaSet, old: &[ReplicaSet]) -> bool {
        rs_replicas(new_rs) == desired(d)
            && self.available(new_rs, min_ready(d)) == desired(d)
            && old.iter().all(|rs| rs_replicas(rs) == 0)
    }

    /// RollingUpdate: grow the new set within maxSurge, shrink old sets within maxUnavailable.
    pub(crate) async fn rollout_rolling(
        &self,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let (new_rs, old) = self.split_new_old(d, rss);
        let (surge, _) = fenceposts(d);
        let current: i32 = old.iter().map(rs_replicas).sum();
        let initial = (desired(d) + surge - current).clamp(0, desired(d));
        let (new_rs, created) = self
            .get_or_create_new_rs(d, new_rs, &old, true, initial)
            .await?;
        let new_rs = new_rs.ok_or_else(|| Error::Invalid("new replica set missing".into()))?;
        let progress = found_or_created(d, &new_rs, created);
        if created {
            return self.sync_status(d, Some(&new_rs), &old, progress).await;
        }
        if self.reconcile_new(d, &new_rs, &old).await?
            || self.reconcile_old(d, &new_rs, &old).await?
        {
            return self.sync_status(d, Some(&new_rs), &old, progress).await;
        }
        if self.complete(d, &new_rs, &old) {
            self.cleanup(d, &old).await?;
        }
        self.sync_status(d, Some(&new_rs), &old, progress).await
    }

    /// Scales the new set toward `replicas` without exceeding replicas + maxSurge in total.
    async fn reconcile_new(
        &self,
        d: &Deployment,
        new_rs: &ReplicaSet,
        old: &[ReplicaSet],
    ) -> Result<bool> {
        let want = desired(d);
        let have = rs_replicas(new_rs);
        if have == want {
            return Ok(false);
        }
        if have > want {
            self.scale(d, new_rs, want).await?;
            return Ok(true);
        }
        let (surge, _) = fenceposts(d);
        let total: i32 = have + old.iter().map(rs_replicas).sum::<i32>();
        let max_total = want + surge;
        if total >= max_total {
            return Ok(false);
        }
        let target = have + (max_total - total).min(want - have);
        self.scale(d, new_rs, target).await?;
        Ok(true)
    }

    /// Scales old sets down while keeping replicas - maxUnavailable pods available.
    async fn reconcile_old(
        &self,
        d: &Deployment,
        new_rs: &ReplicaSet,
        old: &[ReplicaSet],
    ) -> Result<bool> {
        let old_count: i32 = old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let mr = min_ready(d);
        let all_count = old_count + rs_replicas(new_rs);
        let (_, max_unavailable) = fenceposts(d);
        let min_available = desired(d) - max_unavailable;
        let new_unavailable = rs_replicas(new_rs) - self.available(new_rs, mr);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut sorted: Vec<&ReplicaSet> = old.iter().collect();
        sorted.sort_by_key(|rs| {
            rs.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond())
        });
        // First remove unhealthy old replicas: they cost no availability.
        let mut cleaned = 0;
        let mut remaining: Vec<(ReplicaSet, i32)> = Vec::new();
        for rs in &sorted {
            let spec = rs_replicas(rs);
            let avail = self.available(rs, mr);
            let mut now_spec = spec;
            if cleaned < max_scaled_down && spec > avail {
                let n = (max_scaled_down - cleaned).min(spec - avail);
                now_spec = spec - n;
                self.scale(d, rs, now_spec).await?;
                cleaned += n;
            }
            remaining.push(((*rs).clone(), now_spec));
        }
        // Then scale down available old replicas above minAvailable.
        let available_total: i32 = self.available(new_rs, mr)
            + remaining
                .iter()
                .map(|(rs, spec)| self.available(rs, mr).min(*spec))
                .sum::<i32>();
        let mut scaled = 0;
        if available_total > min_available {
            let budget = available_total - min_available;
            for (rs, spec) in &remaining {
                if scaled >= budget {
                    break;
                }
                if *spec == 0 {
                    continue;
                }
                let n = (*spec).min(budget - scaled);
                self.scale(d, rs, spec - n).await?;
                scaled += n;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// Recreate: scale every old set to zero, wait for their pods to go, then scale up the new.
    pub(crate) async fn rollout_recreate(
        &self,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let (new_rs, old) = self.split_new_old(d, rss);
        let had_new = new_rs.is_some();
        let (new_rs, _) = self.get_or_create_new_rs(d, new_rs, &old, false, 0).await?;
        let mut scaled = false;
        for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
            self.scale(d, rs, 0).await?;
            scaled = true;
        }
        let progress = new_rs
            .as_ref()
            .filter(|_| had_new)
            .and_then(|rs| found_or_created(d, rs, false));
        if scaled || self.running_pods(&old) > 0 {
            return self.sync_status(d, new_rs.as_ref(), &old, progress).await;
        }
        let Some(new_rs) = new_rs else {
            let (created, _) = self
                .get_or_create_new_rs(d, None, &old, true, desired(d))
                .await?;
            let progress = created
                .as_ref()
                .and_then(|rs| found_or_created(d, rs, true));
            return self.sync_status(d, created.as_ref(), &old, progress).await;
        };
        if rs_replicas(&new_rs) != desired(d) {
            self.scale(d, &new_rs, desired(d)).await?;
            return self.sync_status(d, Some(&new_rs), &old, progress).await;
        }
        if self.complete(d, &new_rs, &old) {
            self.cleanup(d, &old).await?;
        }
        self.sync_status(d, Some(&new_rs), &old, progress).await
    }

    /// A paused deployment is only scaled (when no rollout is in flight), never rolled.
    pub(crate) async fn sync_paused(
        &self,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let (new_rs, old) = self.split_new_old(d, rss);
        let (new_rs, _) = self.get_or_create_new_rs(d, new_rs, &old, false, 0).await?;
        // Like upstream's FindActiveOrLatest: scale the one set that holds all the replicas.
        let active: Vec<&ReplicaSet> = new_rs
            .iter()
            .chain(old.iter())
            .filter(|rs| rs_replicas(rs) > 0)
            .collect();
        let target = match active.as_slice() {
            [one] => Some(*one),
            [] => new_rs.as_ref().or_else(|| {
                old.iter()
                    .max_by_key(|rs| revision(rs.metadata.annotations.as_ref()))
            }),
            _ => None,
        };
        if let Some(rs) = target {
            if rs_replicas(rs) != desired(d) {
                self.scale(d, rs, desired(d)).await?;
            }
        }
        self.sync_status(d, new_rs.as_ref(), &old, None).await
    }
}
