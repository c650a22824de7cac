//! The OS boundary: `iptables-save`, `iptables-restore`, `ip`, `conntrack` and sysctls behind
//! one small trait, with the real implementation (shelling out) and a recording fake for unit
//! tests.

use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Failure of one host command.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The program could not be started (missing binary, no permission).
    #[error("running {program}: {source}")]
    Spawn {
        /// Program name.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{program} {args} failed: {stderr}")]
    Failed {
        /// Program name.
        program: String,
        /// Its arguments, space separated.
        args: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// Writing a sysctl failed.
    #[error("writing {path}: {source}")]
    Sysctl {
        /// The /proc/sys path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What the proxy needs from the host.
#[async_trait]
pub trait Host: Send + Sync {
    /// `iptables-save` of the nat and filter tables.
    async fn iptables_save(&self) -> Result<String, HostError>;
    /// `iptables-restore --noflush` of `input` as one transaction.
    async fn iptables_restore(&self, input: &str) -> Result<(), HostError>;
    /// `ip <args>`; returns stdout.
    async fn ip(&self, args: &[&str]) -> Result<String, HostError>;
    /// Reads a sysctl such as `net/ipv4/conf/all/route_localnet`.
    async fn read_sysctl(&self, key: &str) -> Result<String, HostError>;
    /// Writes a sysctl.
    async fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError>;
    /// `conntrack <args>` (a `-D` that matched nothing is not an error).
    async fn conntrack(&self, args: &[&str]) -> Result<(), HostError>;
}

/// The real host: runs the programs from $PATH.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, HostError> {
    let spawn_err = |source| HostError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.map_err(spawn_err)?;
        // Dropping the pipe closes it, so the program sees EOF.
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if !out.status.success() {
        return Err(HostError::Failed {
            program: program.to_string(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.trim_start_matches('/'))
}

#[async_trait]
impl Host for RealHost {
    async fn iptables_save(&self) -> Result<String, HostError> {
        let mut out = run("iptables-save", &["-t", "nat"], None).await?;
        out.push_str(&run("iptables-save", &["-t", "filter"], None).await?);
        Ok(out)
    }

    async fn iptables_restore(&self, input: &str) -> Result<(), HostError> {
        // -w: wait for the xtables lock instead of failing when another writer holds it.
        run("iptables-restore", &["-w", "5", "--noflush"], Some(input))
            .await
            .map(|_| ())
    }

    async fn ip(&self, args: &[&str]) -> Result<String, HostError> {
        run("ip", args, None).await
    }

    async fn read_sysctl(&self, key: &str) -> Result<String, HostError> {
        let path = sysctl_path(key);
        tokio::fs::read_to_string(&path)
            .await
            .map(|s| s.trim().to_string())
            .map_err(|source| HostError::Sysctl { path, source })
    }

    async fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError> {
        let path = sysctl_path(key);
        tokio::fs::write(&path, value)
            .await
            .map_err(|source| HostError::Sysctl { path, source })
    }

    async fn conntrack(&self, args: &[&str]) -> Result<(), HostError> {
        match run("conntrack", args, None).await {
            // conntrack exits 1 when a delete matched no entry; that is the usual case.
            Err(HostError::Failed { stderr, .. })
                if stderr.contains("0 flow entries have been deleted") =>
            {
                Ok(())
            }
            r => r.map(|_| ()),
        }
    }
}

/// One call the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `iptables-save`.
    Save,
    /// `iptables-restore` with this input.
    Restore(String),
    /// `ip` with these arguments.
    Ip(Vec<String>),
    /// A sysctl write.
    WriteSysctl(String, String),
    /// `conntrack` with these arguments.
    Conntrack(Vec<String>),
}

/// A recording fake: returns canned output and remembers every call.
#[derive(Debug, Default)]
pub struct RecordingHost {
    /// What `iptables_save` returns.
    pub save: Mutex<String>,
    /// `ip` argument prefixes (space joined) that fail, e.g. `link add kp0 type dummy`.
    pub failing_ip: Mutex<Vec<String>>,
    /// What `ip` returns for a given argument string (space joined); default "".
    pub ip_output: Mutex<Vec<(String, String)>>,
    /// Current sysctl values.
    pub sysctls: Mutex<Vec<(String, String)>>,
    /// Every call, in order.
    pub calls: Mutex<Vec<Call>>,
    /// When set, `iptables_restore` fails (once per set).
    pub fail_restore: Mutex<bool>,
}

impl RecordingHost {
    fn record(&self, c: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(c);
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Host for RecordingHost {
    async fn iptables_save(&self) -> Result<String, HostError> {
        self.record(Call::Save);
        Ok(self.save.lock().map(|s| s.clone()).unwrap_or_default())
    }

    async fn iptables_restore(&self, input: &str) -> Result<(), HostError> {
        self.record(Call::Restore(input.to_string()));
        let fail = self
            .fail_restore
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or(false);
        if fail {
            return Err(HostError::Failed {
                program: "iptables-restore".into(),
                args: "--noflush".into(),
                stderr: "fake failure".into(),
            });
        }
        Ok(())
    }

    async fn ip(&self, args: &[&str]) -> Result<String, HostError> {
        let joined = args.join(" ");
        self.record(Call::Ip(args.iter().map(|s| s.to_string()).collect()));
        let fails = self
            .failing_ip
            .lock()
            .map(|f| f.iter().any(|p| joined.starts_with(p.as_str())))
            .unwrap_or(false);
        if fails {
            return Err(HostError::Failed {
                program: "ip".into(),
                args: joined,
                stderr: "fake failure".into(),
            });
        }
        let out = self.ip_output.lock().ok().and_then(|o| {
            o.iter()
                .find(|(a, _)| *a == joined)
                .map(|(_, out)| out.clone())
        });
        Ok(out.unwrap_or_default())
    }

    async fn read_sysctl(&self, key: &str) -> Result<String, HostError> {
        let v = self.sysctls.lock().ok().and_then(|s| {
            s.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        });
        Ok(v.unwrap_or_else(|| "0".into()))
    }

    async fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError> {
        self.record(Call::WriteSysctl(key.into(), value.into()));
        if let Ok(mut s) = self.sysctls.lock() {
            s.push((key.into(), value.into()));
        }
        Ok(())
    }

    async fn conntrack(&self, args: &[&str]) -> Result<(), HostError> {
        self.record(Call::Conntrack(
            args.iter().map(|s| s.to_string()).collect(),
        ));
        Ok(())
    }
}
