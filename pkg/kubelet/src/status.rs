//! Pod status from what the runtime reports: container states, phase and conditions.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{ContainerInfo, RunState};

/// What the sync loop knows about one spec container.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// Spec container name.
    pub name: String,
    /// Spec image.
    pub image: String,
    /// The latest attempt's container.
    pub current: Option<ContainerInfo>,
    /// The attempt before it.
    pub previous: Option<ContainerInfo>,
    /// Restart count (= latest attempt number).
    pub restart_count: i32,
    /// Why it is waiting, when it is.
    pub waiting: Option<(String, String)>,
    /// Readiness from probes; `None` means ready while running.
    pub ready: Option<bool>,
    /// Startup probe passed; `None` means started while running.
    pub started: Option<bool>,
}

pub(crate) fn time(s: &Option<String>) -> Option<Time> {
    s.as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(Time)
}

fn terminated(c: &ContainerInfo) -> Option<ContainerStateTerminated> {
    match c.state {
        RunState::Exited { code, oom_killed } => Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(
                if oom_killed {
                    "OOMKilled"
                } else if code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .into(),
            ),
            started_at: time(&c.started_at),
            finished_at: time(&c.finished_at),
            container_id: Some(format!("docker://{}", c.id)),
            ..Default::default()
        }),
        _ => None,
    }
}

/// The ContainerStatus of one observed container.
pub(crate) fn container_status(o: &Observed) -> ContainerStatus {
    let last_state = o
        .previous
        .as_ref()
        .and_then(terminated)
        .map(|t| ContainerState {
            terminated: Some(t),
            ..Default::default()
        });
    let mut st = ContainerStatus {
        name: o.name.clone(),
        image: o.image.clone(),
        restart_count: o.restart_count,
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    };
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    };
    if let Some((reason, message)) = &o.waiting {
        st.state = Some(waiting(reason, message));
        // A container in back-off shows its last run as lastState.
        if let Some(t) = o.current.as_ref().and_then(terminated) {
            st.last_state = Some(ContainerState {
                terminated: Some(t),
                ..Default::default()
            });
        }
        st.started = Some(false);
        st.ready = false;
    } else if let Some(c) = &o.current {
        st.container_id = Some(format!("docker://{}", c.id));
        st.image_id = c.image_id.clone();
        match &c.state {
            RunState::Running => {
                st.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time(&c.started_at),
                    }),
                    ..Default::default()
                });
                st.ready = o.ready.unwrap_or(true);
                st.started = Some(o.started.unwrap_or(true));
            }
            RunState::Exited { .. } => {
                st.state = Some(ContainerState {
                    terminated: terminated(c),
                    ..Default::default()
                });
                st.started = Some(false);
            }
            RunState::Created => {
                st.state = Some(waiting("ContainerCreating", ""));
                st.started = Some(false);
            }
        }
    } else {
        st.state = Some(waiting("ContainerCreating", ""));
        st.started = Some(false);
    }
    if let Some((_, _)) = &o.waiting {
        if let Some(c) = &o.current {
            st.container_id = Some(format!("docker://{}", c.id));
            st.image_id = c.image_id.clone();
        }
    }
    st
}

/// The pod phase from its container statuses, after upstream `getPhase`.
pub(crate) fn phase(statuses: &[ContainerStatus], restart_policy: &str) -> &'static str {
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
            } else {
                pending += 1;
            }
        } else {
            pending += 1;
        }
    }
    let total = statuses.len();
    if pending > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == total && total > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if succeeded == stopped {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn cond(old: &PodStatus, type_: &str, ok: bool, now: &Time, reason: Option<&str>) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time while the status stays the same, so unchanged pods write nothing.
    let prev = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status);
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: prev
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| Some(now.clone())),
        reason: if ok { None } else { reason.map(str::to_string) },
        ..Default::default()
    }
}

/// Init containers that have not exited 0 yet, for the Initialized condition.
fn incomplete_inits(inits: &[ContainerStatus]) -> Vec<String> {
    inits
        .iter()
        .filter(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|s| s.name.clone())
        .collect()
}

/// The phase including init containers, after upstream `getPhase`: a failed init container
/// with restartPolicy Never fails the pod; otherwise the pod is Pending until all succeeded.
pub(crate) fn phase_with_inits(
    inits: &[ContainerStatus],
    statuses: &[ContainerStatus],
    restart_policy: &str,
) -> &'static str {
    let failed_init = inits.iter().any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    });
    if failed_init && restart_policy == "Never" {
        return "Failed";
    }
    if !incomplete_inits(inits).is_empty() {
        return "Pending";
    }
    phase(statuses, restart_policy)
}

/// The new pod status from the old one plus observations of init and app containers.
pub(crate) fn pod_status(
    old: &PodStatus,
    init: &[Observed],
    observed: &[Observed],
    restart_policy: &str,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> PodStatus {
    let now = Time(Timestamp::now());
    let statuses: Vec<ContainerStatus> = observed.iter().map(container_status).collect();
    let inits: Vec<ContainerStatus> = init.iter().map(container_status).collect();
    let phase = phase_with_inits(&inits, &statuses, restart_policy);
    let pending_inits = incomplete_inits(&inits);
    let all_ready = statuses.iter().all(|s| s.ready) && pending_inits.is_empty();
    let mut st = old.clone();
    st.phase = Some(phase.into());
    st.host_ip = Some(host_ip.into());
    st.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
        ip: host_ip.into(),
    }]);
    if let Some(ip) = pod_ip {
        st.pod_ip = Some(ip.into());
        st.pod_ips = Some(vec![PodIP { ip: ip.into() }]);
    }
    if st.start_time.is_none() {
        st.start_time = Some(now.clone());
    }
    st.conditions = Some(vec![
        cond(
            old,
            "PodReadyToStartContainers",
            pod_ip.is_some(),
            &now,
            None,
        ),
        PodCondition {
            message: (!pending_inits.is_empty()).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    pending_inits.join(" ")
                )
            }),
            ..cond(
                old,
                "Initialized",
                pending_inits.is_empty(),
                &now,
                Some("ContainersNotInitialized"),
            )
        },
        cond(old, "Ready", all_ready, &now, Some("ContainersNotReady")),
        cond(
            old,
            "ContainersReady",
            all_ready,
            &now,
            Some("ContainersNotReady"),
        ),
        cond(old, "PodScheduled", true, &now, None),
    ]);
    st.container_statuses = Some(statuses);
    st.init_container_statuses = (!inits.is_empty()).then_some(inits);
    st
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(state: RunState) -> ContainerInfo {
        ContainerInfo {
            id: "abc".into(),
            labels: Default::default(),
            state,
            started_at: Some("2024-01-01T00:00:00Z".into()),
            finished_at: Some("2024-01-01T00:00:01Z".into()),
            image: "img".into(),
            image_id: "sha256:1".into(),
            ip: None,
        }
    }

    fn obs(state: RunState) -> Observed {
        Observed {
            name: "c".into(),
            image: "img".into(),
            current: Some(info(state)),
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_restart_policy() {
        let exit = |code| {
            obs(RunState::Exited {
                code,
                oom_killed: false,
            })
        };
        let cases = [
            (vec![obs(RunState::Running)], "Never", "Running"),
            (vec![exit(0)], "Never", "Succeeded"),
            (vec![exit(1)], "Never", "Failed"),
            (vec![exit(1)], "OnFailure", "Running"),
            (vec![exit(0)], "OnFailure", "Succeeded"),
            (vec![exit(0)], "Always", "Running"),
            (
                vec![Observed {
                    name: "c".into(),
                    ..Default::default()
                }],
                "Always",
                "Pending",
            ),
        ];
        for (observed, policy, want) in cases {
            let statuses: Vec<_> = observed.iter().map(container_status).collect();
            assert_eq!(phase(&statuses, policy), want, "{policy}");
        }
    }

    #[test]
    fn backoff_shows_last_state() {
        let mut o = obs(RunState::Exited {
            code: 2,
            oom_killed: false,
        });
        o.waiting = Some(("CrashLoopBackOff".into(), "back-off".into()));
        o.restart_count = 1;
        let s = container_status(&o);
        assert_eq!(
            s.state.unwrap().waiting.unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 2);
        assert_eq!(s.restart_count, 1);
    }
}
