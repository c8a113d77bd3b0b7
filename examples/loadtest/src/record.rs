//! The run's record: every event (a request sent, a notification read, a sample of the
//! queue and the fleet, a scaling decision, a worker started or stopped) with its time,
//! kept in memory and written to `events.csv`; and the counters the driver and the
//! progress line read while the run goes on.
//!
//! Times: `t_s` is seconds since the start of the run on the load test's monotonic
//! clock, when the load test saw the event; per-request latencies come from wall
//! clocks (the load test's send time, the notification's `receivedTime` and
//! `eventTime`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::notification::{timestamp, InferenceResult};

/// What an `events.csv` row records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A request was accepted by the queue or the endpoint.
    Sent,
    /// Sending a request failed (it is not counted as sent).
    SendError,
    /// A notification for one of this run's requests.
    Notified,
    /// A notification for a request this run did not send, or a message on a
    /// notification queue that is not a notification at all.
    Foreign,
    /// A periodic sample of the backlog and the fleet.
    #[default]
    Sample,
    /// The local autoscaler changed its desired worker count.
    Scale,
    WorkerStarted,
    /// A worker was sent SIGTERM (scale-in or the end of the run).
    WorkerStopping,
    WorkerExited,
}

/// One row of `events.csv`. Columns that do not apply to a kind are empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Wall-clock time, ISO-8601 UTC.
    pub time: String,
    pub event: Kind,
    pub inference_id: Option<String>,
    /// `Completed` or `Failed` (notified).
    pub status: Option<String>,
    /// A second (or later) notification for the same inferenceId.
    pub duplicate: Option<bool>,
    /// receivedTime − send time.
    pub queue_wait_s: Option<f64>,
    /// eventTime − receivedTime.
    pub processing_s: Option<f64>,
    /// eventTime − send time.
    pub end_to_end_s: Option<f64>,
    /// Failure reason, send error, or what a worker/scale event was about.
    pub reason: Option<String>,
    /// outputLocation (or failureLocation) of a notification.
    pub location: Option<String>,
    /// Fingerprint of the inline result (`responseBody`), when present.
    pub result_hash: Option<String>,
    /// ApproximateNumberOfMessages (sample, scale).
    pub visible: Option<u64>,
    /// ApproximateNumberOfMessagesNotVisible (sample, scale).
    pub not_visible: Option<u64>,
    /// Requests sent and not yet notified, as the load test sees it (sample).
    pub in_flight: Option<u64>,
    /// Worker processes alive, draining ones included (sample, scale, worker events).
    pub workers: Option<u32>,
    /// Workers the autoscaler wants (sample, scale).
    pub desired: Option<u32>,
    /// SageMaker instances, from the latest successful scaling activity (sample).
    pub instances: Option<u32>,
    /// Worker id for worker events.
    pub worker: Option<String>,
}

/// One reading of the deployment, taken by the sampler.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub visible: Option<u64>,
    pub not_visible: Option<u64>,
    pub workers: Option<u32>,
    pub desired: Option<u32>,
    pub instances: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    /// Send time of every request sent or being sent.
    send_times: HashMap<String, OffsetDateTime>,
    /// Requests accepted by the target.
    sent: usize,
    send_errors: usize,
    /// Requests notified at least once.
    first: HashSet<String>,
    completed: usize,
    failed: usize,
    duplicates: usize,
    foreign: usize,
    last_sample: Sample,
}

/// Counters for the progress line and the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub sent: usize,
    pub send_errors: usize,
    pub completed: usize,
    pub failed: usize,
    pub duplicates: usize,
    pub foreign: usize,
    pub last_sample: Sample,
}

impl Counts {
    /// Requests with a first notification.
    pub fn notified(&self) -> usize {
        self.completed + self.failed
    }

    /// Sent and not notified yet.
    pub fn in_flight(&self) -> usize {
        self.sent.saturating_sub(self.notified())
    }
}

/// The shared record of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    start_wall: OffsetDateTime,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// The run starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            start_wall: OffsetDateTime::now_utc(),
            state: Mutex::new(State::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn start_wall(&self) -> OffsetDateTime {
        self.start_wall
    }

    /// Seconds since the start.
    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn event(&self, kind: Kind) -> Event {
        Event {
            t_s: self.now_s(),
            time: timestamp(OffsetDateTime::now_utc()),
            event: kind,
            ..Event::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not hide what was recorded.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until something is recorded (or a short while passes).
    pub async fn changed(&self) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(250),
            self.changed.notified(),
        )
        .await;
    }

    /// A request is about to be sent; returns its send time. Recorded before the call
    /// so that a notification racing the send's response still finds it.
    pub fn sending(&self, id: &str) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        self.lock().send_times.insert(id.to_string(), now);
        now
    }

    /// The target accepted the request.
    pub fn sent(&self, id: &str, at: OffsetDateTime) {
        let mut e = self.event(Kind::Sent);
        e.time = timestamp(at);
        e.t_s = secs(at - self.start_wall).max(0.0);
        e.inference_id = Some(id.to_string());
        let mut s = self.lock();
        s.sent += 1;
        s.events.push(e);
        drop(s);
        self.changed.notify_waiters();
    }

    /// The target refused the request or could not be reached.
    pub fn send_failed(&self, id: &str, reason: String) {
        let mut e = self.event(Kind::SendError);
        e.inference_id = Some(id.to_string());
        e.reason = Some(reason);
        let mut s = self.lock();
        s.send_times.remove(id);
        s.send_errors += 1;
        s.events.push(e);
        drop(s);
        self.changed.notify_waiters();
    }

    /// A notification was read. Returns its kind (notified or foreign).
    pub fn notified(&self, n: &InferenceResult) -> Kind {
        let mut s = self.lock();
        let Some(&sent) = s.send_times.get(&n.inference_id) else {
            s.foreign += 1;
            let mut e = self.event(Kind::Foreign);
            e.inference_id = Some(n.inference_id.clone());
            e.status = Some(n.invocation_status.clone());
            s.events.push(e);
            return Kind::Foreign;
        };
        let mut e = self.event(Kind::Notified);
        e.inference_id = Some(n.inference_id.clone());
        e.status = Some(n.invocation_status.clone());
        e.reason = n.failure_reason.clone();
        e.location = n.output_location().map(str::to_string);
        e.result_hash = n.result_hash();
        let (received, event) = (n.received(), n.event());
        e.queue_wait_s = received.map(|r| secs(r - sent));
        e.processing_s = received.zip(event).map(|(r, ev)| secs(ev - r));
        e.end_to_end_s = event.map(|ev| secs(ev - sent));
        if s.first.insert(n.inference_id.clone()) {
            if n.is_completed() {
                s.completed += 1;
            } else {
                s.failed += 1;
            }
            e.duplicate = Some(false);
        } else {
            s.duplicates += 1;
            e.duplicate = Some(true);
        }
        s.events.push(e);
        drop(s);
        self.changed.notify_waiters();
        Kind::Notified
    }

    /// A message on a notification queue that is not a notification.
    pub fn unreadable(&self, queue: &str, why: String) {
        let mut e = self.event(Kind::Foreign);
        e.reason = Some(format!("{queue}: {why}"));
        let mut s = self.lock();
        s.foreign += 1;
        s.events.push(e);
    }

    /// A reading of the deployment.
    pub fn sample(&self, sample: Sample) {
        let mut e = self.event(Kind::Sample);
        e.visible = sample.visible;
        e.not_visible = sample.not_visible;
        e.workers = sample.workers;
        e.desired = sample.desired;
        e.instances = sample.instances;
        let mut s = self.lock();
        let in_flight = s.sent.saturating_sub(s.completed + s.failed);
        e.in_flight = Some(in_flight as u64);
        s.last_sample = sample;
        s.events.push(e);
    }

    /// The autoscaler changed its mind.
    pub fn scale(&self, metric: (u64, u64), from: u32, to: u32, workers: u32) {
        let mut e = self.event(Kind::Scale);
        e.visible = Some(metric.0);
        e.not_visible = Some(metric.1);
        e.workers = Some(workers);
        e.desired = Some(to);
        e.reason = Some(format!(
            "{} {from} -> {to} (metric {})",
            if to > from { "scale out" } else { "scale in" },
            metric.0 + metric.1
        ));
        self.lock().events.push(e);
    }

    /// A worker process started, was asked to stop, or exited.
    pub fn worker(&self, kind: Kind, worker: &str, alive: u32, reason: Option<String>) {
        let mut e = self.event(kind);
        e.worker = Some(worker.to_string());
        e.workers = Some(alive);
        e.reason = reason;
        self.lock().events.push(e);
    }

    pub fn counts(&self) -> Counts {
        let s = self.lock();
        Counts {
            sent: s.sent,
            send_errors: s.send_errors,
            completed: s.completed,
            failed: s.failed,
            duplicates: s.duplicates,
            foreign: s.foreign,
            last_sample: s.last_sample,
        }
    }

    /// Requests sent and never notified, sorted.
    pub fn lost(&self) -> Vec<String> {
        let s = self.lock();
        let mut lost: Vec<String> = s
            .events
            .iter()
            .filter(|e| e.event == Kind::Sent)
            .filter_map(|e| e.inference_id.clone())
            .filter(|id| !s.first.contains(id))
            .collect();
        lost.sort();
        lost
    }

    /// Every event so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut ev = self.lock().events.clone();
        ev.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        ev
    }
}

/// Write events as CSV with a header row.
pub fn write_csv(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    for e in events {
        w.serialize(e)?;
    }
    w.flush()?;
    Ok(())
}

/// Read an `events.csv` back.
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Event>> {
    let mut r = csv::Reader::from_path(path)?;
    let mut out = Vec::new();
    for row in r.deserialize() {
        out.push(row?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(id: &str, status: &str, hash_src: &str) -> InferenceResult {
        let now = OffsetDateTime::now_utc();
        InferenceResult {
            inference_id: id.into(),
            invocation_status: status.into(),
            received_time: timestamp(now),
            event_time: timestamp(now + time::Duration::milliseconds(1500)),
            failure_reason: None,
            response_parameters: None,
            response_body: Some(crate::notification::ResponseBody {
                content: hash_src.into(),
            }),
        }
    }

    #[test]
    fn counts_duplicates_foreign_and_lost() {
        let r = Recorder::new();
        for id in ["a", "b", "c"] {
            let at = r.sending(id);
            r.sent(id, at);
        }
        r.sending("d");
        r.send_failed("d", "throttled".into());
        assert_eq!(r.notified(&note("a", "Completed", "x")), Kind::Notified);
        assert_eq!(r.notified(&note("a", "Completed", "x")), Kind::Notified);
        assert_eq!(r.notified(&note("b", "Failed", "")), Kind::Notified);
        assert_eq!(r.notified(&note("b", "Completed", "")), Kind::Notified);
        assert_eq!(r.notified(&note("zzz", "Completed", "")), Kind::Foreign);
        let c = r.counts();
        assert_eq!((c.sent, c.send_errors, c.completed, c.failed), (3, 1, 1, 1));
        assert_eq!((c.duplicates, c.foreign, c.in_flight()), (2, 1, 1));
        assert_eq!(r.lost(), vec!["c".to_string()]);
        let first = r
            .events()
            .into_iter()
            .find(|e| e.event == Kind::Notified)
            .unwrap();
        assert!((first.processing_s.unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn events_survive_a_csv_round_trip() {
        let r = Recorder::new();
        let at = r.sending("a");
        r.sent("a", at);
        r.notified(&note("a", "Completed", "x"));
        r.sample(Sample {
            visible: Some(3),
            not_visible: Some(1),
            workers: Some(2),
            desired: Some(2),
            instances: None,
        });
        r.worker(Kind::WorkerStarted, "w1", 1, Some("pid 42".into()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        let events = r.events();
        write_csv(&path, &events).unwrap();
        assert_eq!(read_csv(&path).unwrap(), events);
    }
}
