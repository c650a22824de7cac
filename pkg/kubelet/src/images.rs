//! Making a container's image available before it is created: the pull policies Always,
//! IfNotPresent and Never with upstream's meaning, ErrImagePull then ImagePullBackOff with
//! exponential back-off per image, and upstream's Pulling/Pulled/Failed/BackOff events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::events::{self, reason};
use crate::pods::SyncError;
use crate::Kubelet;

/// Upstream's image pull back-off: 10 s doubling up to 5 minutes.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The failed pulls of one image, for one pod.
#[derive(Debug, Clone)]
pub(crate) struct PullBackoff {
    failures: u32,
    until: Instant,
    message: String,
    /// Whether the BackOff event of this back-off window was recorded.
    noted: bool,
}

/// Failed pulls per image, kept in the pod's state.
pub(crate) type Pulls = HashMap<String, PullBackoff>;

/// The delay after the `failures`-th failed pull.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(10);
    BACKOFF_START.saturating_mul(2u32.pow(exp)).min(BACKOFF_MAX)
}

/// The pull policy the API server defaults to when the pod gave none: Always for `:latest` or
/// an untagged reference, IfNotPresent otherwise.
pub(crate) fn policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let tag = last.split_once(':').map(|(_, t)| t);
    if !image.contains('@') && matches!(tag, None | Some("latest")) {
        "Always".into()
    } else {
        "IfNotPresent".into()
    }
}

/// Makes the image of `c` present. `Ok(None)` when the container can be created; otherwise the
/// waiting `(reason, message)` the container status shows.
pub(crate) async fn ensure(
    k: &Kubelet,
    pod: &Pod,
    c: &Container,
    init: bool,
    pulls: &mut Pulls,
) -> Result<Option<(String, String)>, SyncError> {
    let image = c.image.clone().unwrap_or_default();
    let path = events::container_path(init, &c.name);
    let present = k.runtime.image_present(&image).await?;
    let policy = policy(c);
    let present_msg = format!("Container image \"{image}\" already present on machine");
    match policy.as_str() {
        "Never" if present => {
            events::record(k, pod, "Normal", reason::PULLED, &present_msg, path);
            return Ok(None);
        }
        "Never" => {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            events::record(k, pod, "Warning", reason::NEVER_PULL, &msg, path);
            return Ok(Some((reason::NEVER_PULL.into(), msg)));
        }
        "IfNotPresent" if present => {
            events::record(k, pod, "Normal", reason::PULLED, &present_msg, path);
            return Ok(None);
        }
        _ => {}
    }
    if let Some(b) = pulls.get_mut(&image) {
        if Instant::now() < b.until {
            let msg = format!("Back-off pulling image \"{image}\"");
            if !b.noted {
                b.noted = true;
                events::record(k, pod, "Normal", reason::BACK_OFF, &msg, path.clone());
                events::record(
                    k,
                    pod,
                    "Warning",
                    reason::FAILED,
                    "Error: ImagePullBackOff",
                    path,
                );
            }
            let waiting = format!("{msg}: ErrImagePull: {}", b.message);
            return Ok(Some(("ImagePullBackOff".into(), waiting)));
        }
    }
    let msg = format!("Pulling image \"{image}\"");
    events::record(k, pod, "Normal", reason::PULLING, &msg, path.clone());
    let began = Instant::now();
    match k.runtime.pull(&image).await {
        Ok(size) => {
            pulls.remove(&image);
            let took = began.elapsed().as_secs_f64();
            let msg = format!(
                "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."
            );
            events::record(k, pod, "Normal", reason::PULLED, &msg, path);
            Ok(None)
        }
        Err(e) => {
            let err = e.to_string();
            let msg = format!("Failed to pull image \"{image}\": {err}");
            events::record(k, pod, "Warning", reason::FAILED, &msg, path.clone());
            if present {
                // Divergence from upstream, on purpose: with policy Always a failed pull ends in
                // ErrImagePull there. Here images are mostly built locally (hack/images) with
                // `:latest` tags and no registry is reachable, so a local copy is run instead;
                // the Failed event above still says the pull failed.
                events::record(k, pod, "Normal", reason::PULLED, &present_msg, path);
                return Ok(None);
            }
            events::record(
                k,
                pod,
                "Warning",
                reason::FAILED,
                "Error: ErrImagePull",
                path,
            );
            let failures = pulls.get(&image).map_or(0, |b| b.failures) + 1;
            pulls.insert(
                image,
                PullBackoff {
                    failures,
                    until: Instant::now() + backoff(failures),
                    message: err.clone(),
                    noted: false,
                },
            );
            Ok(Some(("ErrImagePull".into(), err)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_follows_the_tag() {
        for (image, want) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("127.0.0.1:5000/busybox", "Always"),
            ("127.0.0.1:5000/busybox:1.36", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
        ] {
            assert_eq!(policy(&container(image, None)), want, "{image}");
        }
        assert_eq!(policy(&container("busybox", Some("Never"))), "Never");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(6), Duration::from_secs(300));
        assert_eq!(backoff(60), Duration::from_secs(300));
    }
}
