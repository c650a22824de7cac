//! What the API server and scheduler benchmarks share: a process's CPU time and this
//! process's memory from `/proc`, latency percentiles, and the median their alternating
//! rounds report.

use std::time::Duration;

use anyhow::Context;

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, 100 on every architecture this
/// runs on: 10 ms resolution, enough over a run of seconds on 2 cores.
const USER_HZ: u64 = 100;

/// CPU time (user + system, all threads) a process has used so far, from `/proc/<pid>/stat`.
/// `pid` 0 means this process.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    stat_cpu(&stat).with_context(|| format!("malformed {path}"))
}

/// utime + stime of one `/proc/<pid>/stat` line.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU microseconds per operation: `cpu` spread over `ops`.
pub fn per_op_us(cpu: Duration, ops: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / ops.max(1) as f64
}

/// This process's resident set (`VmRSS`) or peak (`VmHWM`) in MiB, from `/proc/self/status`
/// (0 when unreadable).
pub fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Value at quantile `q` (0..1) of sorted durations, rounding to the nearest index (zero for
/// none).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The middle value (the mean of the two middle values for an even count; NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let line = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(stat_cpu(line), Some(Duration::from_millis(1750)));
        assert_eq!(stat_cpu("42 (x) S 1 2"), None);
    }

    #[test]
    fn percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn medians() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = cpu_time(0).expect("own cpu time");
        let begun = std::time::Instant::now();
        let mut x = 0u64;
        while begun.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time(0).expect("own cpu time");
        assert!(after > before, "{before:?} -> {after:?}");
        assert_eq!(per_op_us(Duration::from_millis(3), 1000), 3.0);
        assert!(status_mib("VmRSS") > 0.0);
    }
}
