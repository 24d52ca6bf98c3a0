//! Prometheus text-format metrics of an axon: requests, return codes, latency histograms,
//! queue depth and fused batches, and a small HTTP endpoint that serves them.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::proto::ReturnCode;
use crate::signing::Method;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const CODES: usize = 11;

#[derive(Default)]
struct MethodMetrics {
    requests: AtomicU64,
    codes: [AtomicU64; CODES],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    /// Sum of latencies, microseconds.
    latency_sum_us: AtomicU64,
    /// Model calls of this method, and the requests they served (more when fused).
    calls: AtomicU64,
    served: AtomicU64,
}

/// The counters of one axon; cheap to update from any thread.
#[derive(Default)]
pub struct Metrics {
    methods: [MethodMetrics; 2],
    queue_depth: AtomicU64,
}

fn slot(method: Method) -> usize {
    match method {
        Method::Forward => 0,
        Method::Backward => 1,
    }
}

fn code_name(i: usize) -> &'static str {
    ReturnCode::try_from(i as i32)
        .map(|c| c.as_str_name())
        .unwrap_or("RETURN_CODE_UNSPECIFIED")
}

impl Metrics {
    /// Counts a received request.
    pub fn request(&self, method: Method) {
        self.methods[slot(method)]
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answered request with its code and latency.
    pub fn response(&self, method: Method, code: ReturnCode, latency: Duration) {
        let m = &self.methods[slot(method)];
        let c = (code as usize).min(CODES - 1);
        m.codes[c].fetch_add(1, Ordering::Relaxed);
        let s = latency.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *le {
                m.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        m.latency_count.fetch_add(1, Ordering::Relaxed);
        m.latency_sum_us.fetch_add(
            latency.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Sets the queue depth gauge.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as u64, Ordering::Relaxed);
    }

    /// Counts one model call of `method` that served `requests` requests.
    pub fn batch(&self, method: Method, requests: usize) {
        let m = &self.methods[slot(method)];
        m.calls.fetch_add(1, Ordering::Relaxed);
        m.served.fetch_add(requests as u64, Ordering::Relaxed);
    }

    /// The queue depth gauge.
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// How many responses of `method` carried `code`.
    pub fn code_count(&self, method: Method, code: ReturnCode) -> u64 {
        self.methods[slot(method)].codes[(code as usize).min(CODES - 1)].load(Ordering::Relaxed)
    }

    /// `(model calls, requests they served)` of `method`.
    pub fn batches(&self, method: Method) -> (u64, u64) {
        let m = &self.methods[slot(method)];
        (
            m.calls.load(Ordering::Relaxed),
            m.served.load(Ordering::Relaxed),
        )
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let methods = [Method::Forward, Method::Backward];
        let _ = writeln!(out, "# HELP bt_wire_requests_total Requests received.");
        let _ = writeln!(out, "# TYPE bt_wire_requests_total counter");
        for m in methods {
            let v = self.methods[slot(m)].requests.load(Ordering::Relaxed);
            let _ = writeln!(out, "bt_wire_requests_total{{method=\"{}\"}} {v}", m.name());
        }
        let _ = writeln!(
            out,
            "# HELP bt_wire_responses_total Responses sent, by return code."
        );
        let _ = writeln!(out, "# TYPE bt_wire_responses_total counter");
        for m in methods {
            for c in 1..CODES {
                let v = self.methods[slot(m)].codes[c].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "bt_wire_responses_total{{method=\"{}\",code=\"{}\"}} {v}",
                    m.name(),
                    code_name(c)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP bt_wire_request_duration_seconds Time from receipt to response."
        );
        let _ = writeln!(out, "# TYPE bt_wire_request_duration_seconds histogram");
        for m in methods {
            let mm = &self.methods[slot(m)];
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                let v = mm.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "bt_wire_request_duration_seconds_bucket{{method=\"{}\",le=\"{le}\"}} {v}",
                    m.name()
                );
            }
            let count = mm.latency_count.load(Ordering::Relaxed);
            let sum = mm.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let name = m.name();
            let _ = writeln!(
                out,
                "bt_wire_request_duration_seconds_bucket{{method=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "bt_wire_request_duration_seconds_sum{{method=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "bt_wire_request_duration_seconds_count{{method=\"{name}\"}} {count}"
            );
        }
        scalar(
            &mut out,
            "bt_wire_queue_depth",
            "gauge",
            "Requests waiting for the model.",
            self.queue_depth(),
        );
        let kinds = [
            (Method::Forward, "", "Forward"),
            (Method::Backward, "backward_", "Backward"),
        ];
        for (m, prefix, name) in kinds {
            let (calls, served) = self.batches(m);
            let (calls_name, served_name) = (
                format!("bt_wire_{prefix}model_calls_total"),
                format!("bt_wire_{prefix}fused_requests_total"),
            );
            let (calls_help, served_help) = (
                format!("{name} calls of the model."),
                format!("{name} requests served by those calls."),
            );
            scalar(&mut out, &calls_name, "counter", &calls_help, calls);
            scalar(&mut out, &served_name, "counter", &served_help, served);
        }
        out
    }
}

/// Writes one unlabelled metric with its HELP and TYPE lines.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
