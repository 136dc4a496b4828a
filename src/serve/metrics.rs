//! Prometheus metrics (`GET /metrics`, text format 0.0.4): requests, errors and latency per
//! model and protocol, batch sizes per model.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, seconds.
const LATENCY: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Batch size bucket bounds, rows.
const BATCH: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

#[derive(Default, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len()];
        }
        for (b, n) in bounds.iter().zip(self.buckets.iter_mut()) {
            if v <= *b {
                *n += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let n = self.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// (model, protocol) -> (requests, errors, latency)
    requests: BTreeMap<(String, &'static str), (u64, u64, Histogram)>,
    batches: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// One inference request of `model` over `protocol` (`rest`, `grpc`, `mlflow`).
    pub fn request(&self, model: &str, protocol: &'static str, took: Duration, ok: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.requests.entry((model.to_string(), protocol)).or_default();
        e.0 += 1;
        if !ok {
            e.1 += 1;
        }
        e.2.observe(&LATENCY, took.as_secs_f64());
    }

    /// One run of `rows` rows (a batch of one or more requests).
    pub fn batch(&self, model: &str, rows: usize) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.batches
            .entry(model.to_string())
            .or_default()
            .observe(&BATCH, rows as f64);
    }

    pub fn render(&self) -> String {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP mlart_inference_requests_total Inference requests.\n# TYPE mlart_inference_requests_total counter\n");
        for ((m, p), (n, _, _)) in &g.requests {
            let _ = writeln!(
                out,
                "mlart_inference_requests_total{{model=\"{}\",protocol=\"{p}\"}} {n}",
                escape(m)
            );
        }
        out.push_str("# HELP mlart_inference_errors_total Inference requests that failed (4xx and 5xx).\n# TYPE mlart_inference_errors_total counter\n");
        for ((m, p), (_, e, _)) in &g.requests {
            let _ = writeln!(
                out,
                "mlart_inference_errors_total{{model=\"{}\",protocol=\"{p}\"}} {e}",
                escape(m)
            );
        }
        out.push_str("# HELP mlart_inference_latency_seconds Time from request to response.\n# TYPE mlart_inference_latency_seconds histogram\n");
        for ((m, p), (_, _, h)) in &g.requests {
            let labels = format!("model=\"{}\",protocol=\"{p}\"", escape(m));
            h.render(
                &mut out,
                "mlart_inference_latency_seconds",
                &labels,
                &LATENCY,
            );
        }
        out.push_str("# HELP mlart_batch_size Rows per model run (dynamic batching joins requests).\n# TYPE mlart_batch_size histogram\n");
        for (m, h) in &g.batches {
            let labels = format!("model=\"{}\"", escape(m));
            h.render(&mut out, "mlart_batch_size", &labels, &BATCH);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request("iris", "rest", Duration::from_micros(300), true);
        m.request("iris", "rest", Duration::from_millis(3), false);
        m.batch("iris", 3);
        let t = m.render();
        assert!(t.contains("mlart_inference_requests_total{model=\"iris\",protocol=\"rest\"} 2"));
        assert!(t.contains("mlart_inference_errors_total{model=\"iris\",protocol=\"rest\"} 1"));
        assert!(t.contains(
            "mlart_inference_latency_seconds_bucket{model=\"iris\",protocol=\"rest\",le=\"0.0005\"} 1"
        ));
        assert!(t.contains("mlart_batch_size_bucket{model=\"iris\",le=\"4\"} 1"));
        assert!(t.contains("mlart_batch_size_bucket{model=\"iris\",le=\"2\"} 0"));
    }
}
