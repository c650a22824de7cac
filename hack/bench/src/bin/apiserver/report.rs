//! One backend's figures and the markdown table that puts the backends side by side.

use crate::load::{ms, Proto, Sample};
use crate::scenarios::{FanOut, ListTiming};
use crate::MANY;

/// Everything measured over one backend.
#[derive(Debug)]
pub struct Results {
    pub raw_puts: Sample,
    /// CPU microseconds per raw put (the benchmark process, store writer thread included).
    pub raw_cpu_us: f64,
    /// Alternating pairs: (raw puts/s, creates/s over HTTP/1.1 with [`MANY`] clients).
    pub rounds: Vec<(f64, f64)>,
    /// Per create run: server and load-generator CPU microseconds per create.
    pub create_cpu: Vec<(Proto, usize, f64, f64)>,
    /// Whether the server spoke HTTP/2 over cleartext with prior knowledge (else why not).
    pub h2c: Result<(), String>,
    pub healthz: Vec<(Proto, Sample)>,
    pub livez: Vec<(Proto, Sample)>,
    pub creates: Vec<(Proto, usize, Sample)>,
    pub gets: Vec<(Proto, usize, Sample)>,
    /// `pods/binding` of distinct pods with [`MANY`] clients over HTTP/1.1: binds per second
    /// and how many pods were bound.
    pub binds: Option<(f64, usize)>,
    pub list_whole: ListTiming,
    pub list_paged: ListTiming,
    /// `resourceVersion=0`: served from the watch cache.
    pub list_cached: ListTiming,
    pub fan_out: FanOut,
    pub rss_idle: u64,
    pub rss_before_list: u64,
    pub rss_after_list: u64,
    pub rss_after_watch: u64,
    pub rss_peak: u64,
}

impl Default for Results {
    fn default() -> Self {
        Self {
            raw_puts: Sample::default(),
            raw_cpu_us: 0.0,
            rounds: Vec::new(),
            create_cpu: Vec::new(),
            h2c: Err("not checked".into()),
            healthz: Vec::new(),
            livez: Vec::new(),
            creates: Vec::new(),
            gets: Vec::new(),
            binds: None,
            list_whole: ListTiming::default(),
            list_paged: ListTiming::default(),
            list_cached: ListTiming::default(),
            fan_out: FanOut::default(),
            rss_idle: 0,
            rss_before_list: 0,
            rss_after_list: 0,
            rss_after_watch: 0,
            rss_peak: 0,
        }
    }
}

impl Results {
    fn healthz(&self, proto: Proto) -> Option<Sample> {
        Self::of(&self.healthz, proto)
    }

    fn livez(&self, proto: Proto) -> Option<Sample> {
        Self::of(&self.livez, proto)
    }

    fn of(rows: &[(Proto, Sample)], proto: Proto) -> Option<Sample> {
        rows.iter().find(|(p, _)| *p == proto).map(|(_, s)| *s)
    }

    /// (server, load generator) CPU µs per create.
    fn create_cpu(&self, proto: Proto, clients: usize) -> Option<(f64, f64)> {
        self.create_cpu
            .iter()
            .find(|(p, c, _, _)| *p == proto && *c == clients)
            .map(|(_, _, s, l)| (*s, *l))
    }

    fn find(rows: &[(Proto, usize, Sample)], proto: Proto, clients: usize) -> Option<Sample> {
        rows.iter()
            .find(|(p, c, _)| *p == proto && *c == clients)
            .map(|(_, _, s)| *s)
    }
}

type Cell = Box<dyn Fn(&Results) -> String>;

/// Prints the table (stdout) with one column per backend.
pub fn print(columns: &[(String, Results)], plan: &str) {
    let mut rows: Vec<(String, Cell)> = vec![(
        format!("raw storage creates, {MANY} writers, 1 KiB (Storage trait)"),
        Box::new(|r: &Results| r.raw_puts.cell()),
    )];
    for proto in [Proto::H1, Proto::H2] {
        rows.push((
            format!("GET /healthz, {MANY} clients, {}", proto.name()),
            Box::new(move |r: &Results| opt(r.healthz(proto), |s| s.cell())),
        ));
    }
    for proto in [Proto::H1, Proto::H2] {
        rows.push((
            format!("GET /livez (no storage), {MANY} clients, {}", proto.name()),
            Box::new(move |r: &Results| opt(r.livez(proto), |s| s.cell())),
        ));
    }
    for (verb, gets) in [("pod create", false), ("pod GET", true)] {
        for proto in [Proto::H1, Proto::H2] {
            for clients in [1, MANY] {
                rows.push((
                    format!("{verb}, {clients} client(s), {}", proto.name()),
                    Box::new(move |r: &Results| {
                        let set = if gets { &r.gets } else { &r.creates };
                        opt(Results::find(set, proto, clients), |s| s.cell())
                    }),
                ));
            }
        }
    }
    rows.push((
        format!("**creates/s ÷ raw puts/s, median of alternating pairs** ({MANY}, HTTP/1.1)"),
        Box::new(|r: &Results| paired(&r.rounds)),
    ));
    for proto in [Proto::H1, Proto::H2] {
        rows.push((
            format!("**creates/s ÷ raw puts/s** ({MANY}, {})", proto.name()),
            Box::new(move |r: &Results| {
                opt(Results::find(&r.creates, proto, MANY), |s| {
                    ratio(s.per_sec, r.raw_puts.per_sec)
                })
            }),
        ));
        rows.push((
            format!("**creates/s ÷ healthz/s** ({MANY}, {})", proto.name()),
            Box::new(move |r: &Results| {
                match (Results::find(&r.creates, proto, MANY), r.healthz(proto)) {
                    (Some(c), Some(h)) => ratio(c.per_sec, h.per_sec),
                    _ => "n/a".into(),
                }
            }),
        ));
        rows.push((
            format!("creates/s ÷ livez/s ({MANY}, {})", proto.name()),
            Box::new(move |r: &Results| {
                match (Results::find(&r.creates, proto, MANY), r.livez(proto)) {
                    (Some(c), Some(h)) => ratio(c.per_sec, h.per_sec),
                    _ => "n/a".into(),
                }
            }),
        ));
    }
    rows.push((
        format!("CPU per raw storage create ({MANY} writers, in process)"),
        Box::new(|r: &Results| format!("{:.0} µs", r.raw_cpu_us)),
    ));
    for proto in [Proto::H1, Proto::H2] {
        rows.push((
            format!(
                "CPU per pod create, server / load generator ({MANY}, {})",
                proto.name()
            ),
            Box::new(move |r: &Results| {
                opt(r.create_cpu(proto, MANY), |(s, l)| {
                    format!("{s:.0} µs / {l:.0} µs")
                })
            }),
        ));
        rows.push((
            format!(
                "raw put CPU ÷ server CPU per create ({MANY}, {})",
                proto.name()
            ),
            Box::new(move |r: &Results| {
                opt(r.create_cpu(proto, MANY), |(s, _)| ratio(r.raw_cpu_us, s))
            }),
        ));
    }
    rows.push((
        format!("pod bind (pods/binding), {MANY} clients, HTTP/1.1"),
        Box::new(|r: &Results| {
            r.binds.map_or_else(
                || "n/a".into(),
                |(rate, n)| format!("{rate:.0}/s ({n} pods)"),
            )
        }),
    ));
    rows.push((
        format!("binds/s ÷ raw puts/s ({MANY}, HTTP/1.1)"),
        Box::new(|r: &Results| {
            r.binds
                .map_or_else(|| "n/a".into(), |(rate, _)| ratio(rate, r.raw_puts.per_sec))
        }),
    ));
    rows.push((
        "LIST all pods, limit=0 (storage; best of 3)".into(),
        Box::new(|r: &Results| list_cell(&r.list_whole)),
    ));
    rows.push((
        "LIST all pods, paged (storage; best of 3)".into(),
        Box::new(|r: &Results| list_cell(&r.list_paged)),
    ));
    rows.push((
        "LIST all pods, resourceVersion=0 (watch cache; best of 3)".into(),
        Box::new(|r: &Results| list_cell(&r.list_cached)),
    ));
    rows.push((
        "server RSS: idle / before LIST / after LIST / after fan-out / peak".into(),
        Box::new(|r: &Results| {
            [
                r.rss_idle,
                r.rss_before_list,
                r.rss_after_list,
                r.rss_after_watch,
                r.rss_peak,
            ]
            .iter()
            .map(|&b| mib(b))
            .collect::<Vec<_>>()
            .join(" / ")
        }),
    ));
    rows.push((
        "watch fan-out: open all watches".into(),
        Box::new(|r: &Results| ms(r.fan_out.open)),
    ));
    rows.push((
        "watch fan-out: all writes acknowledged".into(),
        Box::new(|r: &Results| ms(r.fan_out.writes)),
    ));
    rows.push((
        "**watch fan-out: first write → last event at last watcher**".into(),
        Box::new(|r: &Results| {
            let f = &r.fan_out;
            let secs = f.delivered_after.as_secs_f64().max(f64::MIN_POSITIVE);
            let status = if f.complete {
                String::new()
            } else {
                format!(
                    " INCOMPLETE: {} of {} events",
                    f.received,
                    f.watchers * f.events
                )
            };
            format!(
                "{} ({:.0} events/s delivered){status}",
                ms(f.delivered_after),
                f.received as f64 / secs
            )
        }),
    ));
    rows.push((
        "HTTP/2 cleartext (prior knowledge)".into(),
        Box::new(|r: &Results| match &r.h2c {
            Ok(()) => "accepted".into(),
            Err(e) => e.clone(),
        }),
    ));

    println!("Sizes: {plan}");
    println!();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    println!("| metric | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for (label, cell) in &rows {
        let cells: Vec<String> = columns.iter().map(|(_, r)| cell(r)).collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}

fn opt<T>(s: Option<T>, f: impl Fn(T) -> String) -> String {
    s.map_or_else(|| "n/a".into(), f)
}

/// The median ratio of alternating (raw, creates) pairs, with its range and count.
fn paired(rounds: &[(f64, f64)]) -> String {
    let r: Vec<f64> = rounds.iter().map(|(raw, c)| c / raw).collect();
    if r.is_empty() {
        return "n/a".into();
    }
    let (lo, hi) = r.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    format!(
        "{:.2} (range {lo:.2}-{hi:.2}, {} pairs)",
        kubelite_bench::median(&r),
        r.len()
    )
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b.max(f64::MIN_POSITIVE))
}

fn list_cell(l: &ListTiming) -> String {
    format!(
        "{} ({} items, {:.1} MiB, {} page(s))",
        ms(l.time),
        l.items,
        l.bytes as f64 / (1024.0 * 1024.0),
        l.pages
    )
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::paired;

    #[test]
    fn paired_ratio_is_the_median_of_pairs() {
        assert_eq!(paired(&[]), "n/a");
        assert_eq!(
            paired(&[(100.0, 40.0), (100.0, 50.0), (200.0, 60.0)]),
            "0.40 (range 0.30-0.50, 3 pairs)"
        );
        assert_eq!(
            paired(&[(100.0, 40.0), (100.0, 50.0)]),
            "0.45 (range 0.40-0.50, 2 pairs)"
        );
    }
}
