//! The driver: send requests in the chosen shape, read notifications, sample the
//! deployment, print progress, and stop by itself — when every request is notified
//! (then linger a while to watch the fleet scale in) or at the deadline, whichever
//! comes first. Then write `events.csv`, `summary.json` and `chart.png`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aws::read_notifications;
use crate::chart::{self, ChartOptions};
use crate::notification::timestamp;
use crate::observe::Observers;
use crate::record::{write_csv, Recorder};
use crate::shape::Shape;
use crate::summary::{RunInfo, Summary};
use crate::target::Target;

/// How much load, in what shape, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub shape: Shape,
    /// Requests to send.
    pub count: usize,
    /// Hard limit from the start of the run: requests not notified by then are lost.
    pub deadline: Duration,
    /// Time to keep watching after the last notification (to see the fleet scale in).
    pub linger: Duration,
    pub sample_every: Duration,
    pub progress_every: Duration,
    /// API calls in flight at once while sending (so a burst of 999 does not open 999
    /// connections).
    pub send_concurrency: usize,
    /// Prefix of this run's inferenceIds, e.g. `lt-3f9a2c`.
    pub run_id: String,
    /// Cancelled to end the run early (ctrl-c, or local workers that cannot start):
    /// what is not notified by then is reported lost, and the files are still written.
    pub stop: CancellationToken,
}

impl Plan {
    pub fn inference_id(&self, i: usize) -> String {
        format!("{}-{i:05}", self.run_id)
    }
}

/// A fresh run id: `lt-` and six hex digits.
pub fn new_run_id() -> String {
    format!("lt-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

/// What tells the driver the fleet is back at rest (so lingering can end early).
pub type Settled = Arc<dyn Fn() -> bool + Send + Sync>;

/// Where the notification queues are.
#[derive(Debug, Clone)]
pub struct Inboxes {
    pub sqs: aws_sdk_sqs::Client,
    pub success: String,
    pub error: String,
}

fn progress(plan: &Plan, rec: &Recorder) {
    let c = rec.counts();
    let s = c.last_sample;
    let mut line = format!(
        "[loadtest] {:>7.1} s  sent {}/{}  completed {}  failed {}  in flight {}",
        rec.now_s(),
        c.sent,
        plan.count,
        c.completed,
        c.failed,
        c.in_flight()
    );
    if c.send_errors > 0 {
        line += &format!("  send errors {}", c.send_errors);
    }
    if c.duplicates > 0 {
        line += &format!("  duplicates {}", c.duplicates);
    }
    if let (Some(v), Some(n)) = (s.visible, s.not_visible) {
        line += &format!("  queue {v}+{n}");
    }
    match (s.workers, s.desired) {
        (Some(w), Some(d)) => line += &format!("  workers {w} (desired {d})"),
        (Some(w), None) => line += &format!("  workers {w}"),
        _ => {}
    }
    if let Some(i) = s.instances {
        line += &format!("  instances {i}");
    }
    eprintln!("{line}");
}

async fn send_one(target: Arc<Target>, rec: Arc<Recorder>, id: String) {
    let at = rec.sending(&id);
    match target.send(&id).await {
        Ok(()) => rec.sent(&id, at),
        Err(e) => {
            eprintln!("[loadtest] sending {id} failed: {e}");
            rec.send_failed(&id, e);
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every request sent was notified.
    Notified,
    /// The deadline passed first.
    Deadline,
    /// Stopped early (ctrl-c, SIGTERM, or local workers that cannot start).
    Stopped,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Notified => "every request notified",
            Ending::Deadline => "deadline",
            Ending::Stopped => "stopped early",
        }
    }
}

/// The tasks that run beside the sending: the notification readers, the sampler, the
/// progress line and the end timer, all stopped by [`Watchers::stop`].
struct Watchers {
    /// Cancelled when the run is over: stops the readers, the sampler, the progress line.
    done: CancellationToken,
    background: JoinSet<()>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Watchers {
    /// Start two readers per notification queue, the sampler and the progress line.
    fn start(
        plan: &Plan,
        inboxes: &Inboxes,
        mut observers: Observers,
        rec: &Arc<Recorder>,
    ) -> Watchers {
        let done = CancellationToken::new();
        let mut background = JoinSet::new();
        for url in [&inboxes.success, &inboxes.error] {
            // Two readers per queue: a burst of completions drains in half the time.
            for _ in 0..2 {
                background.spawn(read_notifications(
                    inboxes.sqs.clone(),
                    url.clone(),
                    rec.clone(),
                    done.clone(),
                ));
            }
        }
        let (every, progress_every) = (plan.sample_every, plan.progress_every);
        let sampler = {
            let (rec, done) = (rec.clone(), done.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = done.cancelled() => break,
                        _ = tick.tick() => rec.sample(observers.sample().await),
                    }
                }
                // One last reading, so the chart ends where the run ends.
                rec.sample(observers.sample().await);
            })
        };
        {
            let (rec, done, plan) = (rec.clone(), done.clone(), plan.clone());
            background.spawn(async move {
                let mut tick = tokio::time::interval(progress_every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = done.cancelled() => break,
                        _ = tick.tick() => progress(&plan, &rec),
                    }
                }
            });
        }
        Watchers {
            done,
            background,
            sampler,
        }
    }

    /// A token cancelled when the deadline passes or `early` is (ctrl-c, or local mode's
    /// workers failing to start): the run has ended, and every wait gives way to it.
    fn end_timer(
        &mut self,
        deadline: tokio::time::Instant,
        early: CancellationToken,
    ) -> CancellationToken {
        let ended = CancellationToken::new();
        let (ended2, done) = (ended.clone(), self.done.clone());
        self.background.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => ended2.cancel(),
                _ = early.cancelled() => ended2.cancel(),
                _ = done.cancelled() => {}
            }
        });
        ended
    }

    /// Stop every task and wait for them; the sampler takes one last reading.
    async fn stop(mut self) {
        self.done.cancel();
        let _ = self.sampler.await;
        while self.background.join_next().await.is_some() {}
    }
}

/// Why the run ended before it was done, in words.
fn why_ended(plan: &Plan) -> &'static str {
    if plan.stop.is_cancelled() {
        "the run was stopped"
    } else {
        "the deadline passed"
    }
}

/// Send the plan's requests in its shape until all are issued or `ended` is
/// cancelled. Returns the send tasks (some may still be running) and how many requests
/// were issued.
async fn send_all(
    plan: &Plan,
    target: &Arc<Target>,
    rec: &Arc<Recorder>,
    start: Instant,
    ended: &CancellationToken,
) -> (JoinSet<()>, usize) {
    let mut sends = JoinSet::new();
    let issued = match plan.shape.schedule(plan.count) {
        Some(schedule) => {
            send_scheduled(plan, target, rec, start, schedule, ended, &mut sends).await
        }
        None => {
            let Shape::Closed { concurrency } = plan.shape else {
                unreachable!("only the closed loop has no schedule")
            };
            send_closed(plan, target, rec, concurrency, ended, &mut sends).await
        }
    };
    (sends, issued)
}

/// Open loop: send each request at its time from `start`, at most
/// `plan.send_concurrency` API calls in flight. Returns how many were issued.
async fn send_scheduled(
    plan: &Plan,
    target: &Arc<Target>,
    rec: &Arc<Recorder>,
    start: Instant,
    schedule: Vec<Duration>,
    ended: &CancellationToken,
    sends: &mut JoinSet<()>,
) -> usize {
    let permits = Arc::new(Semaphore::new(plan.send_concurrency.max(1)));
    let mut issued = 0;
    for (i, at) in schedule.into_iter().enumerate() {
        let when = tokio::time::Instant::from_std(start + at);
        let permit = tokio::select! {
            biased;
            _ = ended.cancelled() => break,
            p = async {
                tokio::time::sleep_until(when).await;
                permits.clone().acquire_owned().await
            } => p.expect("the semaphore is never closed"),
        };
        let (target, rec, id) = (target.clone(), rec.clone(), plan.inference_id(i));
        sends.spawn(async move {
            send_one(target, rec, id).await;
            drop(permit);
        });
        issued += 1;
    }
    issued
}

/// Closed loop: keep `concurrency` requests unfinished (sent and neither notified nor
/// refused) until all are issued. Returns how many were issued.
async fn send_closed(
    plan: &Plan,
    target: &Arc<Target>,
    rec: &Arc<Recorder>,
    concurrency: usize,
    ended: &CancellationToken,
    sends: &mut JoinSet<()>,
) -> usize {
    let mut issued = 0;
    'send: for i in 0..plan.count {
        loop {
            let c = rec.counts();
            let finished = c.notified() + c.send_errors;
            if issued - finished.min(issued) < concurrency {
                break;
            }
            if ended.is_cancelled() {
                break 'send;
            }
            rec.changed().await;
        }
        let (target, rec, id) = (target.clone(), rec.clone(), plan.inference_id(i));
        sends.spawn(send_one(target, rec, id));
        issued += 1;
    }
    issued
}

/// Wait for a notification of every request sent, or for the run to end first.
async fn await_notifications(
    plan: &Plan,
    rec: &Recorder,
    sends: &JoinSet<()>,
    issued: usize,
    ended: &CancellationToken,
) -> Ending {
    loop {
        let c = rec.counts();
        if sends.is_empty() && c.notified() >= c.sent && issued == plan.count {
            eprintln!("[loadtest] {:.1} s: every request is notified", rec.now_s());
            return Ending::Notified;
        }
        if ended.is_cancelled() {
            eprintln!(
                "[loadtest] {}: {} of {} requests were never notified",
                why_ended(plan),
                c.in_flight(),
                c.sent
            );
            return if plan.stop.is_cancelled() {
                Ending::Stopped
            } else {
                Ending::Deadline
            };
        }
        rec.changed().await;
    }
}

/// Linger: watch the fleet scale in for up to `plan.linger` (duplicates may still
/// arrive), ending early once `settled` says it is back at rest or the run ends.
async fn linger(plan: &Plan, rec: &Recorder, settled: Option<&Settled>, ended: &CancellationToken) {
    eprintln!(
        "[loadtest] watching the deployment for up to {:.0} s more",
        plan.linger.as_secs_f64()
    );
    let lingering = tokio::time::sleep(plan.linger);
    tokio::pin!(lingering);
    loop {
        if settled.is_some_and(|f| f()) {
            eprintln!("[loadtest] {:.1} s: the fleet is back at rest", rec.now_s());
            break;
        }
        tokio::select! {
            _ = ended.cancelled() => break,
            _ = &mut lingering => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Run the plan against `target`. Returns how it ended; the record holds what
/// happened.
pub async fn drive(
    plan: &Plan,
    target: Arc<Target>,
    inboxes: &Inboxes,
    observers: Observers,
    settled: Option<Settled>,
    rec: Arc<Recorder>,
) -> Ending {
    let start = rec.start();
    let deadline = tokio::time::Instant::from_std(start + plan.deadline);
    let mut watchers = Watchers::start(plan, inboxes, observers, &rec);
    eprintln!(
        "[loadtest] run {}: {} requests to {} ({}), deadline {} s",
        plan.run_id,
        plan.count,
        target.name(),
        plan.shape,
        plan.deadline.as_secs()
    );
    let ended = watchers.end_timer(deadline, plan.stop.clone());

    let (mut sends, issued) = send_all(plan, &target, &rec, start, &ended).await;
    tokio::select! {
        _ = ended.cancelled() => {}
        _ = async { while sends.join_next().await.is_some() {} } => {}
    }
    if issued < plan.count {
        eprintln!(
            "[loadtest] {} before every request was sent: {issued} of {}",
            why_ended(plan),
            plan.count
        );
    } else {
        eprintln!(
            "[loadtest] {:.1} s: all {issued} requests issued; waiting for notifications",
            rec.now_s()
        );
    }

    let ending = await_notifications(plan, &rec, &sends, issued, &ended).await;
    if plan.linger > Duration::ZERO && !ended.is_cancelled() {
        linger(plan, &rec, settled.as_ref(), &ended).await;
    }
    sends.abort_all();
    watchers.stop().await;
    progress(plan, &rec);
    ending
}

/// Where the results go and how the chart looks.
#[derive(Debug, Clone)]
pub struct Output {
    pub dir: PathBuf,
    pub chart_width: u32,
    pub chart_height: u32,
    /// TrueType font for the chart's text.
    pub font: PathBuf,
}

impl Output {
    pub fn prepare(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| {
            format!(
                "cannot create the output directory {}: pick another with --out",
                self.dir.display()
            )
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Write `events.csv`, `summary.json` and `chart.png`; print and return the summary.
pub fn finish(
    out: &Output,
    mut info: RunInfo,
    rec: &Recorder,
    started: Instant,
) -> anyhow::Result<Summary> {
    info.wall_time_s = started.elapsed().as_secs_f64();
    info.started = timestamp(rec.start_wall());
    let events = rec.events();
    let csv = out.path("events.csv");
    write_csv(&csv, &events).with_context(|| format!("writing {}", csv.display()))?;
    let summary = Summary::compute(&info, &events);
    let json = out.path("summary.json");
    std::fs::write(&json, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let text = load_font_once(&out.font);
    if !text {
        eprintln!(
            "[loadtest] no usable font at {} (Debian: apt-get install fonts-dejavu-core, or pass --font): the chart is drawn without text",
            out.font.display()
        );
    }
    let png = out.path("chart.png");
    chart::draw(
        &png,
        &events,
        &ChartOptions {
            width: out.chart_width,
            height: out.chart_height,
            text,
            title: format!(
                "vidinfer load test · {} requests, {} · {}",
                info.planned, info.shape, info.target
            ),
        },
    )?;
    print!("{}", summary.text());
    println!(
        "  files         {}, {}, {}",
        csv.display(),
        json.display(),
        png.display()
    );
    Ok(summary)
}

fn load_font_once(path: &Path) -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| chart::load_font(path))
}
