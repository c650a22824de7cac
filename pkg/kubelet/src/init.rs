//! Init containers: run one at a time in spec order, each to success, before any app container.
//! A failure follows the pod's restart policy (Never fails the pod; otherwise the same init
//! container is retried with back-off).

use crate::containers::{sync_one, PodContext};
use crate::pods::{of, PodState, SyncError};
use crate::runtime::RunState;
use crate::status::Observed;

/// The init containers' state after one sync.
#[derive(Debug, Default)]
pub(crate) struct Inits {
    /// One entry per spec init container, in order.
    pub observed: Vec<Observed>,
    /// Every init container exited 0: app containers may start.
    pub done: bool,
}

/// A container that has not run yet while the pod initializes, as upstream reports it.
pub(crate) fn initializing(name: &str, image: Option<&String>) -> Observed {
    Observed {
        name: name.into(),
        image: image.cloned().unwrap_or_default(),
        waiting: Some(("PodInitializing".into(), String::new())),
        ..Default::default()
    }
}

/// Advances the init sequence by at most one container.
pub(crate) async fn sync_inits(
    ctx: &PodContext<'_>,
    policy: &str,
    state: &mut PodState,
) -> Result<Inits, SyncError> {
    let inits = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default();
    // Init containers never restart after success; on failure only Never stops retrying.
    let init_policy = if policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    };
    let mut out = Inits {
        observed: Vec::with_capacity(inits.len()),
        done: true,
    };
    let mut blocked = false;
    for c in &inits {
        if blocked {
            out.observed.push(initializing(&c.name, c.image.as_ref()));
            continue;
        }
        let mine = of(ctx.all, &c.name);
        let latest = mine.last().cloned();
        let succeeded = latest
            .as_ref()
            .is_some_and(|l| matches!(l.state, RunState::Exited { code: 0, .. }));
        if succeeded {
            out.observed.push(Observed {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                restart_count: latest.as_ref().map(crate::pods::attempt).unwrap_or(0),
                current: latest,
                previous: mine.len().checked_sub(2).and_then(|i| mine.get(i).cloned()),
                ..Default::default()
            });
            continue;
        }
        let o = sync_one(ctx, c, true, init_policy, state).await?;
        out.observed.push(o);
        out.done = false;
        blocked = true;
    }
    Ok(out)
}
