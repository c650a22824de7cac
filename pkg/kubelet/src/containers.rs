//! Syncing one container of a pod (init or app): start, restart with back-off per the restart
//! policy, postStart hook, probes. The caller decides which containers may run.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use tracing::info;

use crate::events::{self, reason};
use crate::pods::{attempt, key, of, PodState, SyncError};
use crate::runtime::{ContainerInfo, Mount, RunState};
use crate::status::{self, Observed};
use crate::volumes::PodVolumes;
use crate::{spec, Kubelet};

const BACKOFF_START: i64 = 10;
const BACKOFF_MAX: i64 = 300;

/// The crash-loop delay before restart attempt `restarts + 1`.
pub(crate) fn backoff(restarts: i32) -> i64 {
    let exp = restarts.clamp(0, 10) as u32;
    (BACKOFF_START * 2i64.pow(exp)).min(BACKOFF_MAX)
}

/// Everything a container of this pod is created with.
pub(crate) struct PodContext<'a> {
    pub k: &'a Kubelet,
    pub pod: &'a Pod,
    pub sandbox_id: &'a str,
    pub pod_ip: &'a str,
    pub volumes: &'a PodVolumes,
    /// Mounts every container gets (resolv.conf, hosts).
    pub common: &'a [Mount],
    /// The pod's runtime containers, as listed at the start of this sync.
    pub all: &'a [ContainerInfo],
}

/// Brings one container in line: starts it when missing, restarts an exited one when `policy`
/// says so (after back-off), probes a running app container.
pub(crate) async fn sync_one(
    ctx: &PodContext<'_>,
    c: &Container,
    init: bool,
    policy: &str,
    state: &mut PodState,
) -> Result<Observed, SyncError> {
    let k = ctx.k;
    let pod = ctx.pod;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut o = Observed {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mine = of(ctx.all, &c.name);
    let latest = mine.last().cloned();
    o.previous = mine.len().checked_sub(2).and_then(|i| mine.get(i).cloned());
    o.restart_count = latest.as_ref().map(attempt).unwrap_or(0);
    // Whether a created container was started here, so the listed state is out of date.
    let mut started = false;
    let start_attempt = match &latest {
        None => Some(0),
        Some(l) => match l.state {
            RunState::Running => None,
            RunState::Created => {
                k.runtime.start(&l.id).await?;
                started = true;
                None
            }
            RunState::Exited { code, .. } => {
                let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                if !restart {
                    None
                } else {
                    let finished = status::time(&l.finished_at)
                        .map(|t| t.0.as_second())
                        .unwrap_or(0);
                    let wait = backoff(attempt(l));
                    if Timestamp::now().as_second() >= finished + wait {
                        Some(attempt(l) + 1)
                    } else {
                        // Upstream names the pod `<name>_<namespace>(<uid>)` in these messages.
                        let full = format!(
                            "{name}_{}({})",
                            pod.metadata.namespace.as_deref().unwrap_or_default(),
                            pod.metadata.uid.as_deref().unwrap_or_default()
                        );
                        o.waiting = Some((
                            "CrashLoopBackOff".into(),
                            format!(
                                "back-off {wait}s restarting failed container={} pod={full}",
                                c.name
                            ),
                        ));
                        // One BackOff event per back-off window, not one per resync.
                        if state.backoff_noted.get(&c.name) != Some(&attempt(l)) {
                            state.backoff_noted.insert(c.name.clone(), attempt(l));
                            let msg = format!(
                                "Back-off restarting failed container {} in pod {full}",
                                c.name
                            );
                            let path = events::container_path(init, &c.name);
                            events::record(k, pod, "Warning", reason::BACK_OFF, &msg, path);
                        }
                        None
                    }
                }
            }
        },
    };
    if let Some(n) = start_attempt {
        if let Some(started) = start(ctx, c, init, n, &mut o, state).await? {
            for old in mine.iter().filter(|m| attempt(m) < n - 1) {
                k.runtime.remove(&old.id).await?;
            }
            o.previous = latest.clone();
            o.restart_count = n;
            o.ready = Some(c.readiness_probe.is_none() && c.startup_probe.is_none());
            o.current = Some(started);
            return Ok(o);
        }
    }
    o.current = match latest {
        Some(l) if started => Some(k.runtime.inspect(&l.id, None).await?),
        // As listed at the start of this sync: a change since is seen on the next resync.
        other => other,
    };
    if init {
        return Ok(o);
    }
    if let Some(cur) = o.current.as_ref().filter(|c| c.state == RunState::Running) {
        let out = crate::probe::check(
            k.runtime.as_ref(),
            &mut state.probes,
            c,
            &cur.id,
            ctx.pod_ip,
        )
        .await;
        o.ready = Some(out.ready);
        o.started = Some(out.started);
        let path = events::container_path(false, &c.name);
        for msg in &out.unhealthy {
            events::record(k, pod, "Warning", reason::UNHEALTHY, msg, path.clone());
        }
        if let Some(msg) = out.kill {
            info!(pod = %key(pod), container = %c.name, "{msg}");
            events::record(k, pod, "Normal", reason::KILLING, &msg, path);
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let (left, _) =
                crate::hooks::pre_stop(k.runtime.as_ref(), c, &cur.id, ctx.pod_ip, grace).await;
            k.runtime.stop(&cur.id, left).await?;
        }
    }
    Ok(o)
}

/// Creates and starts attempt `n`; `None` (with `o.waiting` set) when it cannot start yet.
async fn start(
    ctx: &PodContext<'_>,
    c: &Container,
    init: bool,
    n: i32,
    o: &mut Observed,
    state: &mut PodState,
) -> Result<Option<ContainerInfo>, SyncError> {
    let k = ctx.k;
    let pod = ctx.pod;
    let node = &k.config.node_name;
    if let Some(waiting) = crate::images::ensure(k, pod, c, init, &mut state.pulls).await? {
        o.waiting = Some(waiting);
        return Ok(None);
    }
    let env = match spec::env(&k.client, pod, c, ctx.pod_ip, &k.config.node_ip).await {
        Ok(env) => env,
        Err(msg) => {
            o.waiting = Some(("CreateContainerConfigError".into(), msg));
            return Ok(None);
        }
    };
    let mut mounts = ctx.common.to_vec();
    // A hollow node runs nothing, so it has no volumes to mount.
    let wanted = if k.config.hollow {
        Ok(Vec::new())
    } else {
        crate::volumes::mounts(ctx.volumes, c)
    };
    match wanted {
        Ok(m) => {
            // A volumeMount at /etc/hosts or /etc/resolv.conf wins over the managed file.
            mounts.retain(|x| !m.iter().any(|y| y.target == x.target));
            mounts.extend(m);
        }
        Err(msg) => {
            o.waiting = Some(("CreateContainerConfigError".into(), msg));
            return Ok(None);
        }
    }
    let s = spec::app_container(node, pod, c, n, ctx.sandbox_id, env, mounts);
    let path = events::container_path(init, &c.name);
    let id = k.runtime.create(&s).await?;
    let msg = format!("Created container: {}", c.name);
    events::record(k, pod, "Normal", reason::CREATED, &msg, path.clone());
    k.runtime.start(&id).await?;
    let msg = format!("Started container {}", c.name);
    events::record(k, pod, "Normal", reason::STARTED, &msg, path);
    info!(pod = %key(pod), container = %c.name, attempt = n, init, "started container");
    if let Err(msg) = crate::hooks::post_start(k.runtime.as_ref(), c, &id, ctx.pod_ip).await {
        // Upstream kills a container whose postStart hook failed; the restart policy decides next.
        let path = events::container_path(init, &c.name);
        let text = format!("PostStartHook failed: {msg}");
        events::record(k, pod, "Warning", "FailedPostStartHook", &text, path);
        k.runtime.stop(&id, 0).await?;
    }
    Ok(Some(k.runtime.inspect(&id, None).await?))
}
