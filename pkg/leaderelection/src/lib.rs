//! Lease-based leader election on `coordination.k8s.io/v1` Leases, shared by the scheduler and
//! the controller-manager.
//!
//! Semantics follow client-go's `leaderelection` package: a candidate takes a Lease when it has
//! no holder or when the holder has not renewed it for `lease_duration` *as observed locally*
//! (we time the lease with our own monotonic clock, never by comparing the stored `renewTime`
//! with our wall clock, so clock skew between machines cannot make two leaders). Writes use the
//! Lease's `resourceVersion`, so two candidates racing for the same Lease cannot both win.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Errors of the elector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Lease could not be renewed within `renew_deadline`: leadership is lost.
    #[error("leadership lost: lease {0} not renewed within the renew deadline")]
    LeadershipLost(String),
    /// The apiserver rejected a request.
    #[error("lease request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Timing of the election (client-go names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a non-leader waits after the last observed renewal before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Interval between acquire/renew attempts.
    pub retry_period: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What we last saw in the Lease, and when we first saw it (our monotonic clock).
struct Observed {
    holder: String,
    renew_time: Option<Timestamp>,
    at: Instant,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    config: LeaseConfig,
    observed: Option<Observed>,
    leading: watch::Sender<bool>,
}

impl LeaderElector {
    /// A candidate named `identity` for the Lease `namespace/lease_name`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        config: LeaseConfig,
    ) -> Self {
        let (leading, _) = watch::channel(false);
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            config,
            observed: None,
            leading,
        }
    }

    /// A receiver that is `true` exactly while this candidate holds the Lease.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Waits for leadership, then runs `on_leading` while renewing the Lease.
    ///
    /// Returns `Ok(Some(output))` when `on_leading` finishes, `Ok(None)` when `shutdown`
    /// completes first (in both cases a held Lease is released so another candidate can take
    /// over at once), and `Err(LeadershipLost)` when renewal fails for `renew_deadline`; then
    /// `on_leading` is dropped and the caller should exit, as upstream components do.
    pub async fn run<F: Future>(
        mut self,
        on_leading: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Option<F::Output>> {
        tokio::pin!(shutdown);
        loop {
            let acquired = tokio::select! {
                _ = &mut shutdown => return Ok(None),
                r = self.try_acquire_or_renew() => r,
            };
            match acquired {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(lease = %self.lease_name, error = %e, "error acquiring lease"),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(None),
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        info!(lease = %self.lease_name, identity = %self.identity, "became leader");
        self.leading.send_replace(true);

        enum Outcome<T> {
            Done(T),
            Shutdown,
            Lost(Error),
        }
        let outcome = {
            let renew = self.keep_renewing();
            tokio::pin!(on_leading, renew);
            tokio::select! {
                out = &mut on_leading => Outcome::Done(out),
                _ = &mut shutdown => Outcome::Shutdown,
                err = &mut renew => Outcome::Lost(err),
            }
        };
        self.leading.send_replace(false);
        match outcome {
            Outcome::Done(out) => {
                self.release().await;
                Ok(Some(out))
            }
            Outcome::Shutdown => {
                self.release().await;
                Ok(None)
            }
            Outcome::Lost(err) => {
                warn!(lease = %self.lease_name, identity = %self.identity, "lost leadership");
                Err(err)
            }
        }
    }

    /// Renews every `retry_period`; returns only when leadership is lost.
    async fn keep_renewing(&mut self) -> Error {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let budget = self
                .config
                .renew_deadline
                .saturating_sub(last_renew.elapsed())
                .max(Duration::from_millis(1));
            match tokio::time::timeout(budget, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renew = Instant::now(),
                Ok(Ok(false)) => return Error::LeadershipLost(self.lease_name.clone()),
                Ok(Err(e)) => debug!(lease = %self.lease_name, error = %e, "renew failed"),
                Err(_) => debug!(lease = %self.lease_name, "renew timed out"),
            }
            if last_renew.elapsed() >= self.config.renew_deadline {
                return Error::LeadershipLost(self.lease_name.clone());
            }
        }
    }

    fn duration_seconds(&self) -> i32 {
        let ms = self.config.lease_duration.as_millis();
        i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX).max(1)
    }

    /// One attempt: `Ok(true)` when we hold the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renew_time = spec.renew_time.as_ref().map(|t| t.0);
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time,
                at: Instant::now(),
            });
        }
        let observed_at = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
        let held_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let ours = holder == self.identity;
        if !holder.is_empty() && !ours && observed_at.elapsed() < held_duration {
            return Ok(false);
        }
        let mut new_spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            renew_time: Some(MicroTime(now)),
            ..spec.clone()
        };
        if !ours {
            new_spec.acquire_time = Some(MicroTime(now));
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up (empty holder, 1 s duration) so a standby takes over immediately.
    async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
                return Ok::<(), kube::Error>(());
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.spec = Some(spec);
            self.api
                .replace(&self.lease_name, &PostParams::default(), &lease)
                .await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => info!(lease = %self.lease_name, identity = %self.identity, "released lease"),
            Err(e) => warn!(lease = %self.lease_name, error = %e, "error releasing lease"),
        }
    }
}
