//! The service CIDR's sink: a dummy interface with a route for the whole CIDR, so a packet to a
//! ClusterIP that no rule rewrites stays on this machine instead of following the default
//! route. Kernels without the `dummy` driver get an empty bridge, which drops the same way.

use tracing::{info, warn};

use crate::host::{Host, HostError};

/// Which link type the sink ended up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `type dummy`.
    Dummy,
    /// `type bridge` without ports (no dummy driver).
    Bridge,
}

async fn link_exists(host: &dyn Host, name: &str) -> bool {
    host.ip(&["-o", "link", "show", "dev", name])
        .await
        .is_ok_and(|out| !out.trim().is_empty())
}

/// Creates the interface (if missing), brings it up and routes `cidr` to it (if not already).
/// Idempotent, so a restarted proxy reuses what the previous run made.
pub async fn ensure(host: &dyn Host, name: &str, cidr: &str) -> Result<SinkKind, HostError> {
    let mut kind = SinkKind::Dummy;
    if link_exists(host, name).await {
        let details = host
            .ip(&["-d", "-o", "link", "show", "dev", name])
            .await
            .unwrap_or_default();
        if details.contains("bridge") {
            kind = SinkKind::Bridge;
        }
    } else if let Err(e) = host.ip(&["link", "add", name, "type", "dummy"]).await {
        warn!(interface = name, error = %e, "no dummy interface support, using an empty bridge");
        host.ip(&["link", "add", name, "type", "bridge"]).await?;
        kind = SinkKind::Bridge;
    }
    host.ip(&["link", "set", name, "up"]).await?;
    let routed = host
        .ip(&["-o", "route", "show", "exact", cidr, "dev", name])
        .await?;
    if routed.trim().is_empty() {
        // `append`, not `add`: another proxy (another prefix, e.g. a parallel test) may
        // already route the same CIDR to its own sink; both drop, so either may win.
        host.ip(&["route", "append", cidr, "dev", name]).await?;
    }
    info!(interface = name, cidr, kind = ?kind, "service CIDR routed to the local sink");
    Ok(kind)
}

/// Deletes the interface (its route goes with it). No error when it does not exist.
pub async fn remove(host: &dyn Host, name: &str) -> Result<(), HostError> {
    if link_exists(host, name).await {
        host.ip(&["link", "del", name]).await?;
        info!(interface = name, "removed service CIDR sink");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Call, RecordingHost};

    fn ips(h: &RecordingHost) -> Vec<String> {
        h.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Ip(a) => Some(a.join(" ")),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn creates_dummy_and_route() {
        let h = RecordingHost::default();
        let kind = ensure(&h, "kp0", "10.96.0.0/12")
            .await
            .expect("test fixture");
        assert_eq!(kind, SinkKind::Dummy);
        assert_eq!(
            ips(&h),
            [
                "-o link show dev kp0",
                "link add kp0 type dummy",
                "link set kp0 up",
                "-o route show exact 10.96.0.0/12 dev kp0",
                "route append 10.96.0.0/12 dev kp0",
            ]
        );
    }

    #[tokio::test]
    async fn falls_back_to_bridge_and_is_idempotent() {
        let h = RecordingHost::default();
        h.failing_ip
            .lock()
            .expect("test fixture")
            .push("link add kp0 type dummy".into());
        h.ip_output.lock().expect("test fixture").push((
            "-o route show exact 10.96.0.0/12 dev kp0".into(),
            "10.96.0.0/12 scope link".into(),
        ));
        let kind = ensure(&h, "kp0", "10.96.0.0/12")
            .await
            .expect("test fixture");
        assert_eq!(kind, SinkKind::Bridge);
        let calls = ips(&h);
        assert!(calls.contains(&"link add kp0 type bridge".to_string()));
        assert!(!calls.iter().any(|c| c.starts_with("route append")));
    }

    #[tokio::test]
    async fn remove_only_existing() {
        let h = RecordingHost::default();
        remove(&h, "kp0").await.expect("test fixture");
        assert_eq!(ips(&h), ["-o link show dev kp0"]);
        h.ip_output
            .lock()
            .expect("test fixture")
            .push(("-o link show dev kp0".into(), "9: kp0: <UP>".into()));
        remove(&h, "kp0").await.expect("test fixture");
        assert!(ips(&h).contains(&"link del kp0".to_string()));
    }
}
