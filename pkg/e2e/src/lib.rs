//! Shared helpers for kubelite's end-to-end tests: the real `kubectl` and kube-rs against a real
//! API server on both storage backends (see `tests/`).
//!
//! - [`harness`]: the runner (`e2e_main!`), one shared server per backend, [`Env`] per test.
//! - [`kubectl`]: the kubectl runner (fixed kubeconfig, private cache dir, timeouts).
//! - [`wait_until`]: polling with a deadline, for what converges asynchronously.
//! - [`Table`], [`expect_at`]: reading kubectl tables by column and JSON by pointer.
//!
//! Run: `cargo test -p kubelite-e2e` (`--test kubectl` or `--test kube_rs` for one binary; a
//! libtest filter such as `etcd::watch` for a subset). `KUBELITE_E2E_TRACE=1` prints every
//! kubectl invocation with its output.

pub mod harness;
pub mod kubectl;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

pub use harness::{Backend, Env};
pub use kubectl::{Background, Kubectl, Output};

/// How often [`wait_until`] polls.
const POLL: Duration = Duration::from_millis(100);

/// Polls `probe` until it returns `Ok(Some(value))` or `timeout` passes. A probe error does not
/// stop the polling (the state may still converge); the last one is reported on timeout.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            match last {
                Some(e) => bail!("condition not met within {timeout:?}; last error: {e:#}"),
                None => bail!("condition not met within {timeout:?}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Fails with a readable message unless `haystack` contains `needle`.
pub fn assert_contains(haystack: &str, needle: &str) -> Result<()> {
    if !haystack.contains(needle) {
        bail!("expected {needle:?} in:\n{haystack}");
    }
    Ok(())
}

/// Fails unless the JSON `value` holds `want` at `pointer` (RFC 6901, e.g. `/spec/replicas`).
pub fn expect_at(value: &serde_json::Value, pointer: &str, want: serde_json::Value) -> Result<()> {
    let got = value.pointer(pointer);
    if got != Some(&want) {
        let kind = value["kind"].as_str().unwrap_or("object");
        let name = value["metadata"]["name"].as_str().unwrap_or("");
        bail!("{kind} {name:?} at {pointer}: expected {want}, got {got:?}");
    }
    Ok(())
}

/// Fails with a readable message if `haystack` contains `needle`.
pub fn assert_not_contains(haystack: &str, needle: &str) -> Result<()> {
    if haystack.contains(needle) {
        bail!("did not expect {needle:?} in:\n{haystack}");
    }
    Ok(())
}

/// The whitespace-separated header words of a kubectl table (its first line).
pub fn table_header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The first column of every data row of a kubectl table.
pub fn table_names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Builds a header list from words, for comparisons with [`table_header`].
pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// A kubectl table parsed by column position: kubectl aligns every cell under its header, and
/// headers are separated by at least two spaces (a header itself may hold one, `NOMINATED NODE`),
/// so empty cells and cells with spaces are read correctly.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column headers, left to right.
    pub headers: Vec<String>,
    /// Each data row's cells, one per header (empty string for an empty cell).
    pub rows: Vec<Vec<String>>,
    text: String,
}

impl Table {
    /// Parses kubectl's human-readable output.
    pub fn parse(text: &str) -> Self {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let mut starts = Vec::new();
        let mut headers = Vec::new();
        let bytes = header.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            // A header ends at two consecutive spaces or the end of the line.
            while i < bytes.len()
                && !(bytes[i] == b' ' && bytes.get(i + 1).is_none_or(|b| *b == b' '))
            {
                i += 1;
            }
            starts.push(start);
            headers.push(header[start..i].to_string());
        }
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                (0..starts.len())
                    .map(|c| {
                        let from = starts[c].min(line.len());
                        let to = starts
                            .get(c + 1)
                            .copied()
                            .unwrap_or(line.len())
                            .min(line.len());
                        line.get(from..to).unwrap_or_default().trim().to_string()
                    })
                    .collect()
            })
            .collect();
        Self {
            headers,
            rows,
            text: text.to_string(),
        }
    }

    /// The cell in column `header` of the row whose NAME cell is `name`.
    pub fn cell(&self, name: &str, header: &str) -> Result<String> {
        let col = self.column(header)?;
        let name_col = self.column("NAME")?;
        let row = self
            .rows
            .iter()
            .find(|r| r[name_col] == name)
            .ok_or_else(|| anyhow::anyhow!("no row {name:?} in\n{}", self.text))?;
        Ok(row[col].clone())
    }

    /// Every cell of column `header`, top to bottom.
    pub fn column_values(&self, header: &str) -> Result<Vec<String>> {
        let col = self.column(header)?;
        Ok(self.rows.iter().map(|r| r[col].clone()).collect())
    }

    fn column(&self, header: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| h == header)
            .ok_or_else(|| anyhow::anyhow!("no column {header:?} in\n{}", self.text))
    }

    /// Fails unless the headers are exactly `expected` (space-separated words, e.g.
    /// `"NAME READY STATUS RESTARTS AGE"`).
    pub fn expect_headers(&self, expected: &str) -> Result<()> {
        if words(&self.headers.join(" ")) != words(expected) {
            bail!(
                "expected headers {expected:?}, got {:?} in\n{}",
                self.headers,
                self.text
            );
        }
        Ok(())
    }

    /// Fails unless the row `name` has `want` in each given column.
    pub fn expect_row(&self, name: &str, want: &[(&str, &str)]) -> Result<()> {
        for (header, value) in want {
            let got = self.cell(name, header)?;
            if got != *value {
                bail!(
                    "row {name:?} column {header}: expected {value:?}, got {got:?} in\n{}",
                    self.text
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = "NAME   READY   STATUS    RESTARTS   AGE   IP       NODE     NOMINATED NODE   READINESS GATES\n\
                        web    0/1     Pending   0          3s    <none>   <none>   <none>           <none>\n";
    const JOBS: &str = "NAME   STATUS    COMPLETIONS   DURATION   AGE\nj      Running   0/1                      5s\n";

    #[test]
    fn tables_parse() {
        assert_eq!(
            table_header(JOBS),
            words("NAME STATUS COMPLETIONS DURATION AGE")
        );
        assert_eq!(table_names(PODS), vec!["web"]);
        let pods = Table::parse(PODS);
        pods.expect_headers(
            "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES",
        )
        .expect("headers");
        assert_eq!(pods.headers[7], "NOMINATED NODE");
        pods.expect_row(
            "web",
            &[
                ("STATUS", "Pending"),
                ("NOMINATED NODE", "<none>"),
                ("READINESS GATES", "<none>"),
            ],
        )
        .expect("row");
        assert!(pods.cell("nope", "STATUS").is_err());
        let jobs = Table::parse(JOBS);
        jobs.expect_row(
            "j",
            &[("COMPLETIONS", "0/1"), ("DURATION", ""), ("AGE", "5s")],
        )
        .expect("row");
    }

    #[test]
    fn namespaces_are_dns_labels() {
        let ns = harness::namespace_for(
            "A_very_long_test_name_that_goes_on_and_on_forever",
            Backend::Etcd,
        );
        assert!(ns.len() <= 63 - 8, "{ns}");
        assert!(ns.ends_with("-etcd"), "{ns}");
        assert!(ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[tokio::test]
    async fn wait_until_polls_and_times_out() {
        let mut n = 0;
        let got = wait_until(Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { Ok((v >= 3).then_some(v)) }
        })
        .await
        .expect("converges");
        assert_eq!(got, 3);
        let err = wait_until(Duration::from_millis(250), || async {
            Err::<Option<()>, _>(anyhow::anyhow!("still broken"))
        })
        .await
        .expect_err("times out");
        assert!(format!("{err}").contains("still broken"), "{err}");
    }
}
