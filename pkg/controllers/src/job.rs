//! Job controller (batch/v1): runs pods until `completions` succeed (at most `parallelism` at
//! once) or `backoffLimit` failures, and reports status and conditions like 1.33
//! (SuccessCriteriaMet/FailureTarget first, then Complete/Failed once no pod is active).
//! Supports completionMode Indexed, the exponential pod-failure backoff,
//! activeDeadlineSeconds and ttlSecondsAfterFinished.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::{key_of, split_key, Change, Informer};
use crate::job_util::{backoff_remaining, format_indexes, index_pod, parse_indexes, pod_index};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{controller_owner_ref, controller_ref, ignore_not_found, now, pod_is_ready};
use crate::{Error, Result, Shared};

struct Controller {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    jobs: Arc<Informer<Job>>,
    expectations: Expectations,
    recorder: Recorder,
    backoff_base: Duration,
}

/// Registers the Job controller's handlers; returns its worker loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = Arc::new(Controller {
        client: shared.client.clone(),
        pods: shared.informers.pods.clone(),
        jobs: shared.informers.jobs.clone(),
        expectations: Expectations::default(),
        recorder: Recorder::new(shared.client.clone(), "job-controller"),
        backoff_base: shared.config.job_backoff_base,
    });
    let _ = c.pods.store();
    {
        let q = queue.clone();
        c.jobs.on_change(move |ch| q.add(key_of(ch.object())));
    }
    {
        let (q, c2) = (queue.clone(), c.clone());
        c.pods.on_change(move |ch| {
            let pod = ch.object();
            let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "Job") else {
                return;
            };
            let key = format!(
                "{}/{}",
                pod.metadata.namespace.clone().unwrap_or_default(),
                r.name
            );
            if matches!(ch, Change::Added(_)) {
                c2.expectations.creation_observed(&key);
            }
            q.add(key);
        });
    }
    let workers = shared.config.workers;
    Box::pin(run_workers("job", queue, workers, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    }))
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn job_condition(type_: &str, reason: &str, message: &str) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let Some(job) = self.jobs.get(ns, name) else {
            self.expectations.delete(key);
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let old_status = job.status.clone().unwrap_or_default();
        let spec = job.spec.clone().unwrap_or_default();
        if has_condition(&old_status, "Complete") || has_condition(&old_status, "Failed") {
            return self
                .expire(&job, &old_status, spec.ttl_seconds_after_finished)
                .await;
        }
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completions = spec.completions.unwrap_or(1);
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let pods = self.pods.store().state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && controller_ref(&p.metadata).is_some_and(|r| r.uid == uid)
        });
        let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
        // Indexed: an index counts once, and stays done even if its pod is deleted later.
        let mut done_indexes: BTreeSet<i32> = old_status
            .completed_indexes
            .as_deref()
            .map(parse_indexes)
            .unwrap_or_default();
        let succeeded = if indexed {
            done_indexes.extend(
                pods.iter()
                    .filter(|p| phase(p).as_deref() == Some("Succeeded"))
                    .filter_map(|p| pod_index(p, completions)),
            );
            done_indexes.retain(|i| (0..completions).contains(i));
            count(done_indexes.len())
        } else {
            count(
                pods.iter()
                    .filter(|p| phase(p).as_deref() == Some("Succeeded"))
                    .count(),
            )
        };
        let failed = count(
            pods.iter()
                .filter(|p| phase(p).as_deref() == Some("Failed"))
                .count(),
        );
        let active: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| !matches!(phase(p).as_deref(), Some("Succeeded" | "Failed")))
            .collect();
        let suspended = spec.suspend.unwrap_or(false);
        let mut status = old_status.clone();
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(now());
        }
        let mut conds = status.conditions.clone().unwrap_or_default();
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let parallelism = spec.parallelism.unwrap_or(1);
        let mut requeue = None;

        // Decide whether the job has reached a terminal target.
        let already_failing = has_condition(&status, "FailureTarget");
        let already_succeeding = has_condition(&status, "SuccessCriteriaMet");
        if !already_failing && !already_succeeding {
            let deadline = spec.active_deadline_seconds.zip(status.start_time.as_ref());
            let deadline_hit = deadline
                .is_some_and(|(s, t)| t.0 + SignedDuration::from_secs(s) <= Timestamp::now());
            if failed > backoff_limit {
                conds.push(job_condition(
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                ));
            } else if deadline_hit {
                conds.push(job_condition(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                ));
            } else if match spec.completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            } {
                conds.push(job_condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ));
            } else if let Some((s, t)) = deadline {
                let due = t.0 + SignedDuration::from_secs(s);
                let left =
                    Duration::try_from(due.duration_since(Timestamp::now())).unwrap_or_default();
                requeue = Some(left + Duration::from_millis(100));
            }
        }
        let failing = conds
            .iter()
            .find(|c| c.type_ == "FailureTarget" && c.status == "True")
            .cloned();
        let succeeding = conds
            .iter()
            .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let finishing = failing.is_some() || succeeding;
        if finishing {
            // Terminal target reached: stop the remaining pods, then finish.
            for p in &active {
                let n = p.metadata.name.clone().unwrap_or_default();
                ignore_not_found(api.delete(&n, &DeleteParams::default()).await)?;
            }
            if active.is_empty() {
                if let Some(f) = failing {
                    conds.push(JobCondition {
                        type_: "Failed".into(),
                        ..f
                    });
                    self.recorder
                        .warning(job.as_ref(), f_reason(&conds), "Job failed".into());
                } else {
                    conds.push(job_condition(
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ));
                    status.completion_time = Some(now());
                    self.recorder
                        .normal(job.as_ref(), "Completed", "Job completed".into());
                }
            }
        } else if !suspended && self.expectations.satisfied(key) {
            let all: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
            let backoff = backoff_remaining(&all, self.backoff_base, Timestamp::now());
            let want = match spec.completions {
                Some(c) => parallelism.min(c - succeeded),
                None if succeeded > 0 => 0,
                None => parallelism,
            }
            .max(0);
            let have = count(active.len());
            if have < want && backoff.is_some() {
                // Recent failures: wait out the backoff before the next pod.
                requeue = min_requeue(requeue, backoff);
            } else if have < want {
                let n = usize::try_from(want - have).unwrap_or(0);
                let template = pod_for(&job)?;
                let pods_to_make: Vec<Pod> = if indexed {
                    let busy: BTreeSet<i32> = active
                        .iter()
                        .filter_map(|p| pod_index(p, completions))
                        .collect();
                    (0..completions)
                        .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
                        .take(n)
                        .map(|i| {
                            let mut p = template.clone();
                            index_pod(&mut p, name, i);
                            p
                        })
                        .collect()
                } else {
                    vec![template; n]
                };
                self.expectations.expect_creations(key, pods_to_make.len());
                let pp = PostParams::default();
                let results = join_all(pods_to_make.iter().map(|p| api.create(&pp, p))).await;
                let mut first_err = None;
                for r in results {
                    match r {
                        Ok(p) => self.recorder.normal(
                            job.as_ref(),
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                        ),
                        Err(err) => {
                            self.expectations.creation_observed(key);
                            first_err.get_or_insert(err);
                        }
                    }
                }
                if let Some(err) = first_err {
                    return Err(err.into());
                }
            } else if have > want {
                for p in active
                    .iter()
                    .take(usize::try_from(have - want).unwrap_or(0))
                {
                    let n = p.metadata.name.clone().unwrap_or_default();
                    ignore_not_found(api.delete(&n, &DeleteParams::default()).await)?;
                }
            }
        }
        status.active = Some(count(active.len())).filter(|n| *n > 0);
        status.ready = Some(count(active.iter().filter(|p| pod_is_ready(p)).count()));
        status.succeeded = Some(succeeded).filter(|n| *n > 0);
        status.failed = Some(failed).filter(|n| *n > 0);
        if indexed {
            status.completed_indexes = Some(format_indexes(&done_indexes));
        }
        status.conditions = (!conds.is_empty()).then_some(conds);
        if status != old_status {
            let mut value =
                serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
            for f in ["active", "succeeded", "failed"] {
                if value.get(f).is_none() {
                    value[f] = serde_json::Value::Null;
                }
            }
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
            let patch = Patch::Merge(json!({"status": value}));
            ignore_not_found(
                jobs.patch_status(name, &PatchParams::default(), &patch)
                    .await,
            )?;
        }
        Ok(requeue)
    }
}

impl Controller {
    /// ttlSecondsAfterFinished: deletes a finished job (and, in the foreground, its pods) once
    /// the TTL has passed since it finished; otherwise requeues for then.
    async fn expire(
        &self,
        job: &Job,
        status: &JobStatus,
        ttl: Option<i32>,
    ) -> Result<Option<Duration>> {
        let Some(ttl) = ttl else {
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let finished = status.completion_time.as_ref().map(|t| t.0).or_else(|| {
            status
                .conditions
                .iter()
                .flatten()
                .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .max()
        });
        let Some(finished) = finished else {
            return Ok(None);
        };
        let due = finished + SignedDuration::from_secs(i64::from(ttl));
        let left = due.duration_since(Timestamp::now());
        if left.is_positive() {
            let left = Duration::try_from(left).unwrap_or_default();
            return Ok(Some(left + Duration::from_millis(100)));
        }
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let dp = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Foreground),
            preconditions: Some(kube::api::Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match jobs.delete(&name, &dp).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn min_requeue(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn f_reason(conds: &[JobCondition]) -> &str {
    conds
        .iter()
        .find(|c| c.type_ == "Failed")
        .and_then(|c| c.reason.as_deref())
        .unwrap_or("Failed")
}

/// A pod for `job` from its template, with the job labels and owner reference.
fn pod_for(job: &Job) -> Result<Pod> {
    let spec = job
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid("job has no spec".into()))?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
    labels.insert("job-name".into(), name.clone());
    labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
    labels.insert("controller-uid".into(), uid);
    Ok(Pod {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![controller_owner_ref(job)]),
            ..Default::default()
        },
        spec: spec.template.spec.clone(),
        status: None,
    })
}
