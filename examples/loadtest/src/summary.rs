//! The run's totals, computed from its events: throughput, latency percentiles,
//! failures by reason, lost requests and duplicates, the fleet's size; written as
//! `summary.json` and printed at the end.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::notification::failure_kind;
use crate::record::{Event, Kind};

/// Distribution of one per-request time, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentile (`p` in 0-100) of sorted values: the smallest value with at
/// least p% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Stats {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stats {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(f64::total_cmp);
        Stats {
            count: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }
}

/// Smallest and largest value seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub min: u32,
    pub max: u32,
    /// The value at the end of the run.
    pub last: u32,
}

impl Range {
    fn of(values: impl IntoIterator<Item = u32>) -> Option<Range> {
        let mut it = values.into_iter();
        let first = it.next()?;
        let (mut min, mut max, mut last) = (first, first, first);
        for v in it {
            min = min.min(v);
            max = max.max(v);
            last = v;
        }
        Some(Range { min, max, last })
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `local`, `sqs` or `sagemaker`.
    pub mode: String,
    /// The queue URL or endpoint name loaded.
    pub target: String,
    /// The load shape, in words.
    pub shape: String,
    /// When the run started (ISO-8601 UTC).
    pub started: String,
    /// `every request notified`, `deadline` or `stopped early`.
    pub ended_by: String,
    /// Requests the run was asked to send.
    pub planned: usize,
    /// Requests accepted by the queue or endpoint.
    pub sent: usize,
    /// Requests the target refused or could not be reached for (not sent).
    pub send_errors: usize,
    /// Requests whose first notification is `Completed`.
    pub completed: usize,
    /// Requests whose first notification is `Failed`.
    pub failed: usize,
    /// Sent but not notified before the deadline. Must be 0.
    pub lost: usize,
    pub lost_ids: Vec<String>,
    /// Notifications beyond the first for an inferenceId (at-least-once delivery).
    pub duplicates: usize,
    /// Duplicates whose status, location or inline result differs from the first.
    pub conflicting_duplicates: usize,
    /// Notifications for requests this run did not send (other clients, earlier runs).
    pub foreign_notifications: usize,
    /// Failed requests by the head of their failureReason (`ClientError`, ...).
    pub failures_by_reason: BTreeMap<String, usize>,
    /// Distinct inline results among completed requests (1 when every request loads
    /// the same video with the same parameters and the model is deterministic); 0 when
    /// notifications carry no result.
    pub distinct_results: usize,
    /// From the start to the end of the run, lingering included.
    pub wall_time_s: f64,
    /// From the first send to the last first notification.
    pub busy_time_s: f64,
    /// Notified requests per second over the busy time.
    pub throughput_per_s: f64,
    pub throughput_per_min: f64,
    /// receivedTime − send time.
    pub queue_wait_s: Stats,
    /// eventTime − receivedTime.
    pub processing_s: Stats,
    /// eventTime − send time.
    pub end_to_end_s: Stats,
    /// Worker processes alive over the run (local, or from --workers-command).
    pub workers: Option<Range>,
    /// SageMaker instances over the run.
    pub instances: Option<Range>,
    /// Scaling decisions of the local autoscaler (out, in).
    pub scale_outs: usize,
    pub scale_ins: usize,
    /// Worker processes that exited without being asked to.
    pub worker_crashes: usize,
    /// Messages left in the dead-letter queue at the end (local mode).
    pub dead_lettered: Option<u64>,
}

/// Facts about the run that are not events.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub mode: String,
    pub target: String,
    pub shape: String,
    pub started: String,
    pub ended_by: String,
    pub planned: usize,
    pub wall_time_s: f64,
    pub dead_lettered: Option<u64>,
}

/// Failed requests (first notifications that are not `Completed`) by the head of
/// their failureReason.
fn failures_by_reason(firsts: &[&Event]) -> BTreeMap<String, usize> {
    let mut by_reason = BTreeMap::new();
    for e in firsts
        .iter()
        .filter(|e| e.status.as_deref() != Some("Completed"))
    {
        let kind = failure_kind(e.reason.as_deref().unwrap_or(""));
        *by_reason.entry(kind).or_insert(0) += 1;
    }
    by_reason
}

/// Duplicates whose status, location or inline result differs from the first
/// notification of their inferenceId.
fn conflicting_duplicates(firsts: &[&Event], duplicates: &[&Event]) -> usize {
    duplicates
        .iter()
        .filter(|d| {
            let first = firsts.iter().find(|f| f.inference_id == d.inference_id);
            first.is_some_and(|f| {
                f.status != d.status
                    || f.location != d.location
                    || (f.result_hash.is_some()
                        && d.result_hash.is_some()
                        && f.result_hash != d.result_hash)
            })
        })
        .count()
}

/// From the first send to the last first notification; 0 when nothing was sent or
/// notified.
fn busy_time_s(sent: &[&Event], firsts: &[&Event]) -> f64 {
    let first_send = sent.iter().map(|e| e.t_s).fold(f64::INFINITY, f64::min);
    let last_note = firsts.iter().map(|e| e.t_s).fold(0.0, f64::max);
    if firsts.is_empty() || !first_send.is_finite() {
        0.0
    } else {
        (last_note - first_send).max(0.0)
    }
}

/// Worker processes alive over the run: from the samples, the scaling decisions and
/// the workers' starts and exits, in time order.
fn workers_range(events: &[Event]) -> Option<Range> {
    let of = |k: Kind| events.iter().filter(move |e| e.event == k);
    let mut fleet: Vec<&Event> = of(Kind::Sample)
        .chain(of(Kind::Scale))
        .chain(of(Kind::WorkerStarted))
        .chain(of(Kind::WorkerExited))
        .collect();
    fleet.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    Range::of(fleet.iter().filter_map(|e| e.workers))
}

impl Summary {
    pub fn compute(info: &RunInfo, events: &[Event]) -> Summary {
        let of = |k: Kind| events.iter().filter(move |e| e.event == k);
        let sent: Vec<&Event> = of(Kind::Sent).collect();
        let sent_ids: BTreeSet<&str> = sent
            .iter()
            .filter_map(|e| e.inference_id.as_deref())
            .collect();
        let firsts: Vec<&Event> = of(Kind::Notified)
            .filter(|e| e.duplicate != Some(true))
            .collect();
        let notified: BTreeSet<&str> = firsts
            .iter()
            .filter_map(|e| e.inference_id.as_deref())
            .collect();
        let lost_ids: Vec<String> = sent_ids
            .difference(&notified)
            .map(|s| s.to_string())
            .collect();
        let completed: Vec<&&Event> = firsts
            .iter()
            .filter(|e| e.status.as_deref() == Some("Completed"))
            .collect();
        let duplicates: Vec<&Event> = of(Kind::Notified)
            .filter(|e| e.duplicate == Some(true))
            .collect();
        let distinct_results = completed
            .iter()
            .filter_map(|e| e.result_hash.as_deref())
            .collect::<BTreeSet<_>>()
            .len();
        let busy_time_s = busy_time_s(&sent, &firsts);
        let throughput_per_s = if busy_time_s > 0.0 {
            firsts.len() as f64 / busy_time_s
        } else {
            0.0
        };
        let samples = || of(Kind::Sample).chain(of(Kind::Scale));
        // Events of a kind whose reason passes `test`.
        let with_reason = |k: Kind, test: &dyn Fn(&str) -> bool| {
            of(k)
                .filter(|e| e.reason.as_deref().is_some_and(test))
                .count()
        };
        Summary {
            mode: info.mode.clone(),
            target: info.target.clone(),
            shape: info.shape.clone(),
            started: info.started.clone(),
            ended_by: info.ended_by.clone(),
            planned: info.planned,
            sent: sent_ids.len(),
            send_errors: of(Kind::SendError).count(),
            completed: completed.len(),
            failed: firsts.len() - completed.len(),
            lost: lost_ids.len(),
            lost_ids,
            duplicates: duplicates.len(),
            conflicting_duplicates: conflicting_duplicates(&firsts, &duplicates),
            foreign_notifications: of(Kind::Foreign).count(),
            failures_by_reason: failures_by_reason(&firsts),
            distinct_results,
            wall_time_s: info.wall_time_s,
            busy_time_s,
            throughput_per_s,
            throughput_per_min: throughput_per_s * 60.0,
            queue_wait_s: Stats::of(firsts.iter().filter_map(|e| e.queue_wait_s)),
            processing_s: Stats::of(firsts.iter().filter_map(|e| e.processing_s)),
            end_to_end_s: Stats::of(firsts.iter().filter_map(|e| e.end_to_end_s)),
            workers: workers_range(events),
            instances: Range::of(samples().filter_map(|e| e.instances)),
            scale_outs: with_reason(Kind::Scale, &|r| r.starts_with("scale out")),
            scale_ins: with_reason(Kind::Scale, &|r| r.starts_with("scale in")),
            worker_crashes: with_reason(Kind::WorkerExited, &|r| r.contains("unexpected")),
            dead_lettered: info.dead_lettered,
        }
    }

    /// The closing lines printed at the end of a run.
    pub fn text(&self) -> String {
        let lat = |name: &str, s: &Stats| {
            format!(
                "  {name:<13} p50 {:>7.2} s   p90 {:>7.2} s   p99 {:>7.2} s   max {:>7.2} s\n",
                s.p50, s.p90, s.p99, s.max
            )
        };
        let mut out = format!(
            "{} requests ({}) to {}: {} completed, {} failed, {} lost, {} duplicates, {} send errors\n",
            self.planned,
            self.shape,
            self.target,
            self.completed,
            self.failed,
            self.lost,
            self.duplicates,
            self.send_errors
        );
        out += &format!(
            "  throughput    {:.2}/s ({:.1}/min) over {:.1} s; wall time {:.1} s\n",
            self.throughput_per_s, self.throughput_per_min, self.busy_time_s, self.wall_time_s
        );
        out += &lat("queue wait", &self.queue_wait_s);
        out += &lat("processing", &self.processing_s);
        out += &lat("end to end", &self.end_to_end_s);
        if let Some(w) = self.workers {
            out += &format!(
                "  workers       min {} max {} at the end {} ({} scale-outs, {} scale-ins, {} crashes)\n",
                w.min, w.max, w.last, self.scale_outs, self.scale_ins, self.worker_crashes
            );
        }
        if let Some(i) = self.instances {
            out += &format!(
                "  instances     min {} max {} at the end {}\n",
                i.min, i.max, i.last
            );
        }
        if !self.failures_by_reason.is_empty() {
            let list: Vec<String> = self
                .failures_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out += &format!("  failures      {}\n", list.join(", "));
        }
        if !self.lost_ids.is_empty() {
            let shown: Vec<&str> = self.lost_ids.iter().take(10).map(String::as_str).collect();
            out += &format!(
                "  lost          {}{}\n",
                shown.join(", "),
                if self.lost_ids.len() > 10 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&v, 99.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let s = Stats::of([3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.count, s.p50, s.max, s.mean), (3, 2.0, 3.0, 2.0));
    }

    fn ev(t_s: f64, event: Kind, id: &str) -> Event {
        Event {
            t_s,
            event,
            inference_id: Some(id.into()),
            ..Event::default()
        }
    }

    #[test]
    fn totals_come_from_the_events() {
        let mut events = vec![ev(0.0, Kind::Sent, "a"), ev(0.0, Kind::Sent, "b")];
        events.push(ev(1.0, Kind::Sent, "c"));
        let mut done = ev(2.0, Kind::Notified, "a");
        done.status = Some("Completed".into());
        done.duplicate = Some(false);
        done.end_to_end_s = Some(2.0);
        done.result_hash = Some("h".into());
        let mut again = done.clone();
        again.t_s = 3.0;
        again.duplicate = Some(true);
        let mut failed = ev(4.0, Kind::Notified, "b");
        failed.status = Some("Failed".into());
        failed.duplicate = Some(false);
        failed.reason = Some("ClientError: no such key".into());
        let mut sample = ev(1.0, Kind::Sample, "");
        sample.workers = Some(0);
        let mut scale = ev(1.5, Kind::Scale, "");
        scale.workers = Some(3);
        scale.reason = Some("scale out 0 -> 3 (metric 3)".into());
        events.extend([done, again, failed, sample, scale]);
        let s = Summary::compute(
            &RunInfo {
                planned: 3,
                ..RunInfo::default()
            },
            &events,
        );
        assert_eq!((s.sent, s.completed, s.failed, s.lost), (3, 1, 1, 1));
        assert_eq!(s.lost_ids, vec!["c".to_string()]);
        assert_eq!((s.duplicates, s.conflicting_duplicates), (1, 0));
        assert_eq!(s.failures_by_reason["ClientError"], 1);
        assert_eq!(s.busy_time_s, 4.0);
        assert_eq!(s.throughput_per_s, 0.5);
        assert_eq!(s.end_to_end_s.p50, 2.0);
        assert_eq!(s.distinct_results, 1);
        assert_eq!(
            s.workers,
            Some(Range {
                min: 0,
                max: 3,
                last: 3
            })
        );
        assert_eq!((s.scale_outs, s.scale_ins), (1, 0));
    }
}
