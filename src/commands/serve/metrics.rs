//! `GET /metrics`: counters and histograms in Prometheus' text format
//! (version 0.0.4), written here: a handful of series do not need a crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::generation::service::Load;

/// Every series' name starts with this.
const PREFIX: &str = "trtllm_minitron";

/// Upper bounds (seconds) of the latency histograms: from a tiny model's
/// milliseconds to an 8B model's seconds on a CPU.
const LATENCY_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0,
];

pub struct Histogram {
    counts: [AtomicU64; LATENCY_BOUNDS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BOUNDS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}_{name} histogram");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BOUNDS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{PREFIX}_{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{PREFIX}_{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{PREFIX}_{name}_sum {sum}");
        let _ = writeln!(out, "{PREFIX}_{name}_count {total}");
    }
}

pub struct Metrics {
    /// HTTP responses by (path, status code).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Finished generations by how they ended (`length`, `stop`, `cancelled`,
    /// `error`, `abandoned`: the client went away).
    finished: Mutex<BTreeMap<&'static str, u64>>,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            finished: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            time_to_first_token: Histogram::new(),
            inter_token_latency: Histogram::new(),
        }
    }
}

impl Metrics {
    pub fn request(&self, path: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((path.to_string(), status)).or_default() += 1;
    }

    pub fn finished(&self, reason: &'static str) {
        let mut map = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_default() += 1;
    }

    pub fn prompt_tokens(&self, n: usize) {
        self.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn generated_token(&self) {
        self.generation_tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the service's current load.
    pub fn render(&self, load: Load) -> String {
        let mut out = String::new();
        let mut series = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
            let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{PREFIX}_{name}{labels} {value}");
            }
        };
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
        series(
            "http_requests_total",
            "counter",
            "HTTP requests answered, by path and status code.",
            requests
                .into_iter()
                .map(|((path, status), n)| (format!("{{path=\"{}\",status=\"{status}\"}}", escape(&path)), n))
                .collect(),
        );
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner()).clone();
        series(
            "generations_finished_total",
            "counter",
            "Generations (choices) finished, by how they ended.",
            finished
                .into_iter()
                .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n))
                .collect(),
        );
        series(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens of the generations taken.",
            vec![(String::new(), self.prompt_tokens.load(Ordering::Relaxed))],
        );
        series(
            "generation_tokens_total",
            "counter",
            "Tokens generated.",
            vec![(String::new(), self.generation_tokens.load(Ordering::Relaxed))],
        );
        series(
            "queue_depth",
            "gauge",
            "Generations waiting for a place in the running batch.",
            vec![(String::new(), load.waiting as u64)],
        );
        series(
            "running_batch_size",
            "gauge",
            "Generations in the running batch.",
            vec![(String::new(), load.running as u64)],
        );
        self.time_to_first_token.write(
            &mut out,
            "time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token.",
        );
        self.inter_token_latency.write(
            &mut out,
            "inter_token_latency_seconds",
            "Time between consecutive generated tokens of a generation.",
        );
        out
    }
}

/// A label value as the text format wants it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let m = Metrics::default();
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 429);
        m.time_to_first_token.observe(Duration::from_millis(3));
        m.time_to_first_token.observe(Duration::from_millis(30));
        m.time_to_first_token.observe(Duration::from_secs(1000));
        let text = m.render(Load {
            waiting: 2,
            running: 5,
        });
        for line in [
            "trtllm_minitron_http_requests_total{path=\"/v1/completions\",status=\"200\"} 2",
            "trtllm_minitron_http_requests_total{path=\"/v1/completions\",status=\"429\"} 1",
            "trtllm_minitron_queue_depth 2",
            "trtllm_minitron_running_batch_size 5",
            "trtllm_minitron_time_to_first_token_seconds_bucket{le=\"0.0025\"} 0",
            "trtllm_minitron_time_to_first_token_seconds_bucket{le=\"0.005\"} 1",
            "trtllm_minitron_time_to_first_token_seconds_bucket{le=\"0.05\"} 2",
            "trtllm_minitron_time_to_first_token_seconds_bucket{le=\"100\"} 2",
            "trtllm_minitron_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3",
            "trtllm_minitron_time_to_first_token_seconds_count 3",
            "trtllm_minitron_time_to_first_token_seconds_sum 1000.033",
            "# TYPE trtllm_minitron_inter_token_latency_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
