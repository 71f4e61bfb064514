//! Prometheus metrics: a small registry rendered as text exposition format 0.0.4
//! at `GET /metrics`.
//!
//! Why hand-written rather than the `metrics` facade with its Prometheus exporter:
//! most of what we export already exists as counters the sources keep for their
//! own tests and status ([`Hj212Stats`](crate::sources::hj212::Hj212Stats),
//! [`WriterStats`](crate::store::WriterStats), field health). Reading those at
//! scrape time costs nothing on the hot path and cannot drift from what the tests
//! assert; mirroring them into a global recorder would add a second set of numbers,
//! two crates and their build time, for no reading more. The registry below is
//! explicit (no global), so tests can run several daemons in one process.
//!
//! Two ways to add a metric:
//!
//! ```
//! use pollwatch::api::metrics::Metrics;
//! let metrics = Metrics::default();
//! // 1. A counter you increment where things happen (cheap: one atomic add).
//! let sent = metrics.counter(
//!     "pollwatch_notifications_total",
//!     "Notification attempts by channel and outcome.",
//!     &[("channel", "wecom"), ("outcome", "sent")],
//! );
//! sent.inc();
//! // 2. A collector, called at every scrape, that reads state you already keep.
//! metrics.collect(|out| {
//!     out.gauge("pollwatch_open_alerts", "Open alerts.", &[("severity", "high")], 3.0);
//! });
//! assert!(metrics.render().contains("pollwatch_notifications_total{channel=\"wecom\",outcome=\"sent\"} 1"));
//! ```
//!
//! Names follow Prometheus conventions: `pollwatch_` prefix, `_total` for counters,
//! base units (`_seconds`). Label values are escaped; keep their number bounded
//! (enterprise ids are fine, reading values are not).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Collector = Box<dyn Fn(&mut Exposition) + Send + Sync>;

/// The registry; cheap to clone (all clones share it).
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    counters: Mutex<Vec<(Family, String, Arc<AtomicU64>)>>,
    collectors: Mutex<Vec<Collector>>,
}

#[derive(Clone)]
struct Family {
    name: String,
    help: String,
    kind: &'static str,
}

/// A monotonically increasing counter handle.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Registers (or finds) the counter `name{labels}`.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let labels = format_labels(labels);
        let mut counters = lock(&self.inner.counters);
        if let Some((_, _, c)) = counters
            .iter()
            .find(|(f, l, _)| f.name == name && *l == labels)
        {
            return Counter(c.clone());
        }
        let c = Arc::new(AtomicU64::new(0));
        counters.push((
            Family {
                name: name.to_string(),
                help: help.to_string(),
                kind: "counter",
            },
            labels,
            c.clone(),
        ));
        Counter(c)
    }

    /// Adds a function called at every scrape to report current values.
    pub fn collect(&self, f: impl Fn(&mut Exposition) + Send + Sync + 'static) {
        lock(&self.inner.collectors).push(Box::new(f));
    }

    /// The text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        for (family, labels, value) in lock(&self.inner.counters).iter() {
            out.push(family, labels.clone(), value.load(Ordering::Relaxed) as f64);
        }
        for c in lock(&self.inner.collectors).iter() {
            c(&mut out);
        }
        out.finish()
    }
}

/// What collectors write into; samples of one family are grouped under one
/// HELP/TYPE header whatever order they arrive in.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<String, (Family, Vec<(String, f64)>)>,
}

impl Exposition {
    fn push(&mut self, family: &Family, labels: String, value: f64) {
        self.families
            .entry(family.name.clone())
            .or_insert_with(|| (family.clone(), Vec::new()))
            .1
            .push((labels, value));
    }

    fn sample(
        &mut self,
        kind: &'static str,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let family = Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
        };
        self.push(&family, format_labels(labels), v);
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: u64) {
        self.sample("counter", name, help, labels, v as f64);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.sample("gauge", name, help, labels, v);
    }

    /// A summary without quantiles: `<name>_sum` and `<name>_count`.
    pub fn summary(&mut self, name: &str, help: &str, sum: f64, count: u64) {
        let family = Family {
            name: name.to_string(),
            help: help.to_string(),
            kind: "summary",
        };
        let entry = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| (family, Vec::new()));
        // Suffixes are carried in the label slot's prefix; see `finish`.
        entry.1.push(("_sum".to_string(), sum));
        entry.1.push(("_count".to_string(), count as f64));
    }

    fn finish(self) -> String {
        let mut s = String::new();
        for (name, (family, samples)) in self.families {
            let _ = writeln!(s, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(s, "# TYPE {name} {}", family.kind);
            for (labels, v) in samples {
                let _ = writeln!(s, "{name}{labels} {}", format_value(v));
            }
        }
        s
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_and_labels_escaped() {
        let m = Metrics::default();
        m.counter("a_total", "A.", &[("x", "1")]).add(2);
        m.collect(|o| {
            o.counter("a_total", "A.", &[("x", "q\"\\")], 5);
            o.summary("lat_seconds", "L.", 1.5, 3);
        });
        let text = m.render();
        assert_eq!(text.matches("# TYPE a_total counter").count(), 1);
        assert!(text.contains("a_total{x=\"1\"} 2\n"));
        assert!(text.contains("a_total{x=\"q\\\"\\\\\"} 5\n"));
        assert!(text.contains("lat_seconds_sum 1.5\n"));
        assert!(text.contains("lat_seconds_count 3\n"));
    }
}
