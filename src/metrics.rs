//! Process metrics in Prometheus' text format, shared by the queue worker and the HTTP
//! server: jobs by outcome, frames, in-flight jobs, stage latencies, queue wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Job outcomes counted by `vidinfer_jobs_total{outcome=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Output stored and notification sent.
    Completed,
    /// The request was bad: failure stored and notified.
    Failed,
    /// A transient fault: the message was left for redelivery.
    Retried,
    /// The request's TTL had passed before work started.
    Expired,
    /// Handed back at shutdown.
    HandedBack,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
            Outcome::Expired => "expired",
            Outcome::HandedBack => "handed_back",
        }
    }
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<&'static str, u64>,
    frames: u64,
    detections: u64,
    in_flight: i64,
    /// stage -> (sum of seconds, count)
    stages: BTreeMap<&'static str, (f64, u64)>,
    queue_wait: (f64, u64),
}

/// Counters and sums; cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn job(&self, outcome: Outcome) {
        *self.lock().jobs.entry(outcome.label()).or_default() += 1;
    }

    pub fn frames(&self, frames: u64, detections: u64) {
        let mut m = self.lock();
        m.frames += frames;
        m.detections += detections;
    }

    pub fn in_flight(&self, delta: i64) {
        self.lock().in_flight += delta;
    }

    /// Record the seconds one stage (download, decode, infer, upload, notify, job) took.
    pub fn stage(&self, stage: &'static str, seconds: f64) {
        let mut m = self.lock();
        let e = m.stages.entry(stage).or_default();
        e.0 += seconds;
        e.1 += 1;
    }

    /// Record what the engine reports for one finished job: decode and inference
    /// time, frames and detections.
    pub fn engine_job(&self, stats: &crate::pipeline::JobStats) {
        self.stage("decode", stats.decode_s);
        self.stage("infer", stats.infer_s);
        self.frames(stats.frames_sampled, stats.detections);
    }

    pub fn queue_wait(&self, seconds: f64) {
        let mut m = self.lock();
        m.queue_wait.0 += seconds;
        m.queue_wait.1 += 1;
    }

    /// Completed jobs so far (for tests and logs).
    pub fn jobs(&self, outcome: Outcome) -> u64 {
        self.lock().jobs.get(outcome.label()).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let m = self.lock();
        let mut s = String::new();
        let _ = writeln!(s, "# HELP vidinfer_jobs_total Jobs finished, by outcome.");
        let _ = writeln!(s, "# TYPE vidinfer_jobs_total counter");
        for o in [
            Outcome::Completed,
            Outcome::Failed,
            Outcome::Retried,
            Outcome::Expired,
            Outcome::HandedBack,
        ] {
            let _ = writeln!(
                s,
                "vidinfer_jobs_total{{outcome=\"{}\"}} {}",
                o.label(),
                m.jobs.get(o.label()).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            s,
            "# HELP vidinfer_frames_total Sampled frames run through the model."
        );
        let _ = writeln!(s, "# TYPE vidinfer_frames_total counter");
        let _ = writeln!(s, "vidinfer_frames_total {}", m.frames);
        let _ = writeln!(
            s,
            "# HELP vidinfer_detections_total Detections written to documents (at or above each request's min_score)."
        );
        let _ = writeln!(s, "# TYPE vidinfer_detections_total counter");
        let _ = writeln!(s, "vidinfer_detections_total {}", m.detections);
        let _ = writeln!(
            s,
            "# HELP vidinfer_jobs_in_flight Jobs being processed now."
        );
        let _ = writeln!(s, "# TYPE vidinfer_jobs_in_flight gauge");
        let _ = writeln!(s, "vidinfer_jobs_in_flight {}", m.in_flight);
        let _ = writeln!(s, "# HELP vidinfer_stage_seconds Time spent per stage.");
        let _ = writeln!(s, "# TYPE vidinfer_stage_seconds summary");
        for (stage, (sum, count)) in &m.stages {
            let _ = writeln!(
                s,
                "vidinfer_stage_seconds_sum{{stage=\"{stage}\"}} {sum:.6}"
            );
            let _ = writeln!(
                s,
                "vidinfer_stage_seconds_count{{stage=\"{stage}\"}} {count}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP vidinfer_queue_wait_seconds Time from enqueue to the start of work."
        );
        let _ = writeln!(s, "# TYPE vidinfer_queue_wait_seconds summary");
        let _ = writeln!(s, "vidinfer_queue_wait_seconds_sum {:.6}", m.queue_wait.0);
        let _ = writeln!(s, "vidinfer_queue_wait_seconds_count {}", m.queue_wait.1);
        s
    }
}

/// `GET /metrics`, for the router of either front door.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    m.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// `GET /metrics` and a liveness `GET /ping` (always 200), for the queue worker.
pub fn worker_router(metrics: Arc<Metrics>) -> Router {
    router(metrics).route("/ping", get(|| async { "ok" }))
}
