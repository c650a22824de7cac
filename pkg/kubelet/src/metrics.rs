//! `/metrics` on the kubelet API in the Prometheus text format (0.0.4): gauges read from the
//! runtime at scrape time and counters of the streaming sessions served. Upstream's names
//! where one exists (`kubelet_running_pods`, `kubelet_running_containers`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::{ContainerInfo, RunState};
use crate::{LABEL_CONTAINER, LABEL_POD_UID, SANDBOX};

/// What a streaming session was for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// How it was carried.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transport {
    WebSocket,
    Spdy,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Exec, "exec"),
    (Kind::Attach, "attach"),
    (Kind::PortForward, "portforward"),
];
const TRANSPORTS: [(Transport, &str); 2] = [
    (Transport::WebSocket, "websocket"),
    (Transport::Spdy, "spdy"),
];

/// Counters shared by the API handlers.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    sessions: [[AtomicU64; 2]; 3],
}

impl Metrics {
    /// Counts one upgraded streaming session.
    pub(crate) fn session(&self, kind: Kind, transport: Transport) {
        self.sessions[kind as usize][transport as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text: `containers` are this node's containers, `managed` the pods the
    /// kubelet currently syncs.
    pub(crate) fn render(&self, containers: &[ContainerInfo], managed: usize) -> String {
        let running = |c: &&ContainerInfo| c.state == RunState::Running;
        let is_sandbox =
            |c: &&ContainerInfo| c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(SANDBOX);
        let mut pods: Vec<&str> = containers
            .iter()
            .filter(running)
            .filter(is_sandbox)
            .filter_map(|c| c.labels.get(LABEL_POD_UID).map(String::as_str))
            .collect();
        pods.sort_unstable();
        pods.dedup();
        let app = containers
            .iter()
            .filter(running)
            .filter(|c| !is_sandbox(c))
            .count();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox.",
            pods.len(),
        );
        gauge(
            "kubelet_running_containers",
            "Number of running (non-sandbox) containers.",
            app,
        );
        gauge(
            "kubelet_managed_pods",
            "Number of pods bound to this node that the kubelet syncs.",
            managed,
        );
        let name = "kubelet_streaming_sessions_total";
        let _ = writeln!(
            out,
            "# HELP {name} Upgraded exec, attach and port-forward sessions served.\n# TYPE {name} counter"
        );
        for (kind, k) in KINDS {
            for (transport, t) in TRANSPORTS {
                let v = self.sessions[kind as usize][transport as usize].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{kind=\"{k}\",transport=\"{t}\"}} {v}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn container(uid: &str, name: &str, state: RunState) -> ContainerInfo {
        let labels: BTreeMap<String, String> = [
            (LABEL_POD_UID.to_string(), uid.to_string()),
            (LABEL_CONTAINER.to_string(), name.to_string()),
        ]
        .into();
        ContainerInfo {
            id: format!("{uid}-{name}"),
            labels,
            state,
            started_at: None,
            finished_at: None,
            image: String::new(),
            image_id: String::new(),
            ip: None,
        }
    }

    #[test]
    fn renders_gauges_and_counters() {
        let m = Metrics::default();
        m.session(Kind::PortForward, Transport::WebSocket);
        m.session(Kind::PortForward, Transport::WebSocket);
        m.session(Kind::Exec, Transport::Spdy);
        let exited = RunState::Exited {
            code: 0,
            oom_killed: false,
        };
        let cs = [
            container("a", SANDBOX, RunState::Running),
            container("a", "main", RunState::Running),
            container("a", "side", exited.clone()),
            container("b", SANDBOX, exited),
        ];
        let text = m.render(&cs, 2);
        assert!(text.contains("\nkubelet_running_pods 1\n"), "{text}");
        assert!(text.contains("\nkubelet_running_containers 1\n"), "{text}");
        assert!(text.contains("\nkubelet_managed_pods 2\n"), "{text}");
        assert!(text.contains(
            "kubelet_streaming_sessions_total{kind=\"portforward\",transport=\"websocket\"} 2\n"
        ));
        assert!(
            text.contains("kubelet_streaming_sessions_total{kind=\"exec\",transport=\"spdy\"} 1\n")
        );
        assert!(text.contains("# TYPE kubelet_streaming_sessions_total counter\n"));
    }
}
