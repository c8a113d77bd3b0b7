//! Process metrics for `/metrics` (Prometheus text format), one registry per front door.
//!
//! The series follow Prometheus' naming (base units, `_total` counters, `_seconds`
//! histograms) and each front door registers only what it can have:
//!
//! | series | type | door |
//! |---|---|---|
//! | `vidinfer_jobs_total{outcome}` | counter | sqs: completed, failed, retried, expired, handed_back |
//! | `vidinfer_job_duration_seconds{outcome}` | histogram | sqs: receipt to settled |
//! | `vidinfer_queue_wait_seconds` | histogram | sqs: sent to received |
//! | `vidinfer_http_requests_total{status}` | counter | serve: `POST /invocations` by HTTP status |
//! | `vidinfer_http_request_duration_seconds{status}` | histogram | serve |
//! | `vidinfer_stage_duration_seconds{stage}` | histogram | both: download, decode, infer, track, upload, notify |
//! | `vidinfer_jobs_in_flight` | gauge | both |
//! | `vidinfer_model_queue_batches` | gauge | both: batches waiting for the model thread |
//! | `vidinfer_batch_size` | histogram | both: pictures per forward call |
//! | `vidinfer_frames_sampled_total`, `vidinfer_frames_decoded_total` | counter | both: frames through the model; pictures decoded |
//! | `vidinfer_frames_resumed_total` | counter | sqs: frames taken from checkpoints |
//! | `vidinfer_detections_total` | counter | both: detections written (≥ min_score) |
//! | `vidinfer_model_info{model,device}` | gauge (1) | both |
//! | `process_*` | | both: CPU seconds, resident memory, open fds (from /proc) |
//!
//! Duration buckets run from 50 ms to 4 h: a sampled frame's inference, a short clip
//! and a two-hour video all land in a bucket of their own.

use std::sync::{Arc, OnceLock};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::{Model, QueueProbe};

/// Seconds, from a fast stage to a long video.
const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
    3600.0, 7200.0, 14400.0,
];

/// Pictures per forward call.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0];

/// The stages `vidinfer_stage_duration_seconds` reports.
pub const STAGES: &[&str] = &["download", "decode", "infer", "track", "upload", "notify"];

/// Outcomes of a queue job, counted by `vidinfer_jobs_total{outcome=…}`.
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
    /// A long video split into segment messages (the request settles with its last
    /// segment).
    Split,
    /// A segment's part stored (or a segment of a request already settled dropped):
    /// another segment settles the request.
    Part,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Completed,
        Outcome::Failed,
        Outcome::Retried,
        Outcome::Expired,
        Outcome::HandedBack,
        Outcome::Split,
        Outcome::Part,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
            Outcome::Expired => "expired",
            Outcome::HandedBack => "handed_back",
            Outcome::Split => "split",
            Outcome::Part => "part",
        }
    }
}

/// Which front door the metrics describe: each has only its own series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The SQS worker: jobs by outcome, queue wait.
    Queue,
    /// The SageMaker HTTP server: requests by status.
    Http,
}

/// The door's own series.
enum DoorSeries {
    Queue {
        jobs: IntCounterVec,
        job_seconds: HistogramVec,
        queue_wait: Histogram,
    },
    Http {
        requests: IntCounterVec,
        request_seconds: HistogramVec,
    },
}

/// Counters, gauges and histograms of one front door; cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    door: DoorSeries,
    stages: HistogramVec,
    in_flight: IntGauge,
    model_queue: IntGauge,
    batch_size: Histogram,
    frames_sampled: IntCounter,
    frames_resumed: IntCounter,
    frames_decoded: IntCounter,
    detections: IntCounter,
    model_info: IntGaugeVec,
    queue_probe: OnceLock<QueueProbe>,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    pub fn new(door: Door) -> Metrics {
        Self::build(door).expect("metric names and labels are valid and unique")
    }

    fn build(door: Door) -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let door = match door {
            Door::Queue => {
                let jobs = IntCounterVec::new(
                    Opts::new("vidinfer_jobs_total", "Queue jobs finished, by outcome."),
                    &["outcome"],
                )?;
                let job_seconds = HistogramVec::new(
                    histogram(
                        "vidinfer_job_duration_seconds",
                        "Seconds from a message's receipt to its settlement, by outcome.",
                        DURATION_BUCKETS,
                    ),
                    &["outcome"],
                )?;
                let queue_wait = Histogram::with_opts(histogram(
                    "vidinfer_queue_wait_seconds",
                    "Seconds from a message's enqueue to its receipt.",
                    DURATION_BUCKETS,
                ))?;
                // Every outcome from the first scrape, so rate() has a zero to start at.
                for o in Outcome::ALL {
                    jobs.with_label_values(&[o.label()]);
                }
                reg(Box::new(jobs.clone()))?;
                reg(Box::new(job_seconds.clone()))?;
                reg(Box::new(queue_wait.clone()))?;
                DoorSeries::Queue {
                    jobs,
                    job_seconds,
                    queue_wait,
                }
            }
            Door::Http => {
                let requests = IntCounterVec::new(
                    Opts::new(
                        "vidinfer_http_requests_total",
                        "POST /invocations answered, by HTTP status.",
                    ),
                    &["status"],
                )?;
                let request_seconds = HistogramVec::new(
                    histogram(
                        "vidinfer_http_request_duration_seconds",
                        "Seconds to answer POST /invocations, by HTTP status.",
                        DURATION_BUCKETS,
                    ),
                    &["status"],
                )?;
                reg(Box::new(requests.clone()))?;
                reg(Box::new(request_seconds.clone()))?;
                DoorSeries::Http {
                    requests,
                    request_seconds,
                }
            }
        };
        let stages = HistogramVec::new(
            histogram(
                "vidinfer_stage_duration_seconds",
                "Seconds one job spent in a stage (decode overlaps infer).",
                DURATION_BUCKETS,
            ),
            &["stage"],
        )?;
        let in_flight = IntGauge::new("vidinfer_jobs_in_flight", "Jobs being processed now.")?;
        let model_queue = IntGauge::new(
            "vidinfer_model_queue_batches",
            "Batches waiting for the model thread (the one it runs not counted).",
        )?;
        let batch_size = Histogram::with_opts(histogram(
            "vidinfer_batch_size",
            "Pictures per forward call of the model.",
            BATCH_BUCKETS,
        ))?;
        let frames_sampled = IntCounter::new(
            "vidinfer_frames_sampled_total",
            "Sampled frames run through the model (not those taken from a checkpoint).",
        )?;
        let frames_resumed = IntCounter::new(
            "vidinfer_frames_resumed_total",
            "Sampled frames taken from a checkpoint instead of the model.",
        )?;
        let frames_decoded = IntCounter::new(
            "vidinfer_frames_decoded_total",
            "Pictures the decoder produced.",
        )?;
        let detections = IntCounter::new(
            "vidinfer_detections_total",
            "Detections written to documents (at or above each request's min_score).",
        )?;
        let model_info = IntGaugeVec::new(
            Opts::new("vidinfer_model_info", "The loaded model (value 1)."),
            &["model", "device"],
        )?;
        for c in [
            Box::new(stages.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(in_flight.clone()),
            Box::new(model_queue.clone()),
            Box::new(batch_size.clone()),
            Box::new(frames_sampled.clone()),
            Box::new(frames_resumed.clone()),
            Box::new(frames_decoded.clone()),
            Box::new(detections.clone()),
            Box::new(model_info.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            reg(c)?;
        }
        Ok(Metrics {
            registry,
            door,
            stages,
            in_flight,
            model_queue,
            batch_size,
            frames_sampled,
            frames_resumed,
            frames_decoded,
            detections,
            model_info,
            queue_probe: OnceLock::new(),
        })
    }

    /// Follow a loaded model: its batch sizes, its queue depth and its name.
    pub fn watch_model(&self, model: &Model) {
        let batch_size = self.batch_size.clone();
        model.observe_batches(move |n| batch_size.observe(n as f64));
        let _ = self.queue_probe.set(model.queue_probe());
        let info = model.info();
        self.model_info
            .with_label_values(&[info.name.as_str(), info.device.as_str()])
            .set(1);
    }

    /// A queue job settled after `seconds` (SQS worker).
    pub fn job(&self, outcome: Outcome, seconds: f64) {
        if let DoorSeries::Queue {
            jobs, job_seconds, ..
        } = &self.door
        {
            jobs.with_label_values(&[outcome.label()]).inc();
            job_seconds
                .with_label_values(&[outcome.label()])
                .observe(seconds);
        }
    }

    /// An HTTP request answered with `status` after `seconds` (serve).
    pub fn request(&self, status: u16, seconds: f64) {
        if let DoorSeries::Http {
            requests,
            request_seconds,
        } = &self.door
        {
            let status = status.to_string();
            requests.with_label_values(&[status.as_str()]).inc();
            request_seconds
                .with_label_values(&[status.as_str()])
                .observe(seconds);
        }
    }

    pub fn queue_wait(&self, seconds: f64) {
        if let DoorSeries::Queue { queue_wait, .. } = &self.door {
            queue_wait.observe(seconds);
        }
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.add(delta);
    }

    /// Record the seconds one stage (see [`STAGES`]) of one job took.
    pub fn stage(&self, stage: &'static str, seconds: f64) {
        debug_assert!(STAGES.contains(&stage), "unknown stage {stage}");
        self.stages.with_label_values(&[stage]).observe(seconds);
    }

    /// Record what the engine reports for one finished job: decode, inference and
    /// tracking time, frames and detections.
    pub fn engine_job(&self, stats: &crate::pipeline::JobStats) {
        self.stage("decode", stats.decode_s);
        self.stage("infer", stats.infer_s);
        self.stage("track", stats.track_s);
        self.frames_sampled
            .inc_by(stats.frames_sampled - stats.frames_resumed);
        self.frames_resumed.inc_by(stats.frames_resumed);
        self.frames_decoded.inc_by(stats.frames_decoded);
        self.detections.inc_by(stats.detections);
    }

    /// Queue jobs settled with `outcome` so far (for tests and logs).
    pub fn jobs(&self, outcome: Outcome) -> u64 {
        match &self.door {
            DoorSeries::Queue { jobs, .. } => jobs.with_label_values(&[outcome.label()]).get(),
            DoorSeries::Http { .. } => 0,
        }
    }

    /// HTTP requests answered with `status` so far (for tests and logs).
    pub fn requests(&self, status: u16) -> u64 {
        match &self.door {
            DoorSeries::Http { requests, .. } => requests
                .with_label_values(&[status.to_string().as_str()])
                .get(),
            DoorSeries::Queue { .. } => 0,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(probe) = self.queue_probe.get() {
            self.model_queue.set(probe.depth() as i64);
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("encoding the metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
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
                    [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line `name{labels} value` in an exposition.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_queue_door_counts_outcomes_and_fills_histograms() {
        let m = Metrics::new(Door::Queue);
        let before = m.render();
        // Every outcome is there from the start, at zero.
        for o in Outcome::ALL {
            let series = format!("vidinfer_jobs_total{{outcome=\"{}\"}}", o.label());
            assert_eq!(sample(&before, &series), Some(0.0), "{series}");
        }
        m.job(Outcome::Completed, 42.0);
        m.job(Outcome::Failed, 0.2);
        m.stage("infer", 3.0);
        m.queue_wait(1.5);
        let text = m.render();
        assert_eq!(
            sample(&text, "vidinfer_jobs_total{outcome=\"completed\"}"),
            Some(1.0)
        );
        assert_eq!(m.jobs(Outcome::Completed), 1);
        // 42 s falls in the 60 s bucket, not in the 30 s one.
        assert_eq!(
            sample(
                &text,
                "vidinfer_job_duration_seconds_bucket{outcome=\"completed\",le=\"30\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "vidinfer_job_duration_seconds_bucket{outcome=\"completed\",le=\"60\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "vidinfer_stage_duration_seconds_sum{stage=\"infer\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "vidinfer_queue_wait_seconds_count"),
            Some(1.0)
        );
        // Only the queue's series: no HTTP status counter.
        assert!(!text.contains("vidinfer_http_requests_total"));
        assert!(text.contains("# TYPE vidinfer_job_duration_seconds histogram"));
    }

    #[test]
    fn an_http_door_counts_by_status_only() {
        let m = Metrics::new(Door::Http);
        m.request(200, 2.0);
        m.request(415, 0.01);
        m.request(415, 0.02);
        m.job(Outcome::Retried, 1.0); // not a serve outcome: ignored
        let text = m.render();
        assert_eq!(
            sample(&text, "vidinfer_http_requests_total{status=\"415\"}"),
            Some(2.0)
        );
        assert_eq!(m.requests(200), 1);
        assert_eq!(
            sample(
                &text,
                "vidinfer_http_request_duration_seconds_count{status=\"415\"}"
            ),
            Some(2.0)
        );
        assert!(!text.contains("vidinfer_jobs_total"));
        assert!(!text.contains("vidinfer_queue_wait_seconds"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
