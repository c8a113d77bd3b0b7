//! Local mode: the whole deployment on one machine, no AWS account needed. A moto
//! server stands in for S3, SQS and SNS; `vidinfer-worker sqs` processes run the
//! fixture model; a small autoscaler applies KEDA's rule ([`crate::keda`]) to the job
//! queue and starts or stops worker processes, so scale-out, scale-in and
//! scale-from-zero can be watched and charted.
//!
//! In production the same decisions are made by KEDA (`docker/k8s/worker.yaml`) or by
//! SageMaker's autoscaling (`docker/terraform/`); this module only imitates them.
//! Scale-in sends SIGTERM: the worker stops receiving, finishes what it holds and
//! exits 0, so no request is lost by scaling in.

use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::aws::{self, describe, queue_arn, queue_depth};
use crate::keda::{self, Autoscaler, Rule};
use crate::observe::{FleetStatus, Observers, Workers};
use crate::record::{Kind, Recorder};
use crate::run::{self, Inboxes, Output, Plan, Settled};
use crate::summary::{RunInfo, Summary};
use crate::target::{RequestTemplate, Target};

/// Everything local mode needs besides the plan.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The venv's python, with moto installed.
    pub python: PathBuf,
    /// The `vidinfer-worker` binary.
    pub worker_bin: PathBuf,
    pub model: PathBuf,
    pub video: PathBuf,
    pub rule: Rule,
    pub scale_on_in_flight: bool,
    /// Scale-down stabilization window (and cooldown to zero).
    pub cooldown: Duration,
    /// How often the autoscaler reads the queue.
    pub polling_interval: Duration,
    /// `--concurrency` of each worker.
    pub worker_concurrency: usize,
    /// `--torch-threads` of each worker.
    pub torch_threads: usize,
    pub visibility_timeout: u32,
    pub drain_timeout: u64,
    /// Extra arguments for every worker.
    pub worker_args: Vec<String>,
    pub custom_attributes: Option<String>,
}

impl LocalConfig {
    /// Check the files exist before anything starts, with the fix in the message.
    pub fn check(&self) -> anyhow::Result<()> {
        let need = |p: &Path, what: &str, fix: &str| -> anyhow::Result<()> {
            anyhow::ensure!(p.is_file(), "{what} {} does not exist: {fix}", p.display());
            Ok(())
        };
        need(
            &self.worker_bin,
            "the worker binary",
            "build it with `cargo build --release -p vidinfer-worker` or pass --worker-bin",
        )?;
        need(
            &self.python,
            "moto's python",
            "run scripts/setup.sh (it makes the venv with moto) or pass --moto-python",
        )?;
        need(
            &self.model,
            "the model",
            "run from the repository root or pass --model",
        )?;
        need(
            &self.video,
            "the video",
            "run from the repository root or pass --video",
        )?;
        anyhow::ensure!(
            self.rule.max_replicas >= 1 && self.rule.min_replicas <= self.rule.max_replicas,
            "--min-workers ({}) must not exceed --max-workers ({}), which must be at least 1",
            self.rule.min_replicas,
            self.rule.max_replicas
        );
        anyhow::ensure!(
            self.rule.queue_length >= 1,
            "--queue-length must be at least 1"
        );
        Ok(())
    }
}

/// A moto server on a free loopback port, stopped by [`Moto::stop`] (or killed when
/// dropped).
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start(python: &Path, log: &Path) -> anyhow::Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting moto with {}", python.display()))?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "moto exited at once ({status}); see {} (is moto installed in the venv? scripts/setup.sh installs it)",
                    log.display()
                );
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not listen on port {port} within 60 s; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            sigterm(pid);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn sigterm(pid: u32) {
    // SAFETY: kill(2) has no memory effects; the pid is a child this process started
    // and has not reaped yet (tokio's Child::id is None once it has).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// The resources of one local run.
#[derive(Debug, Clone)]
pub struct Resources {
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub success_topic: String,
    pub error_topic: String,
    pub success_inbox: String,
    pub error_inbox: String,
}

impl Resources {
    /// A bucket, a job queue with a DLQ (after 3 receives), success and error topics,
    /// each subscribed by a queue the load test reads.
    pub async fn create(sdk: &SdkConfig, run_id: &str) -> anyhow::Result<Resources> {
        let s3 = aws::s3(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        let name = |what: &str| format!("vidinfer-{run_id}-{what}");
        let bucket = name("data");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("creating bucket {bucket}: {}", describe(&e)))?;
        let create_queue = |queue: String, redrive: Option<String>| {
            let sqs = sqs.clone();
            async move {
                sqs.create_queue()
                    .queue_name(&queue)
                    .set_attributes(
                        redrive.map(|r| [(QueueAttributeName::RedrivePolicy, r)].into()),
                    )
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("creating queue {queue}: {}", describe(&e)))?
                    .queue_url
                    .context("CreateQueue returned no URL")
            }
        };
        let dlq_url = create_queue(name("dlq"), None).await?;
        let dlq_arn = queue_arn(&sqs, &dlq_url).await?;
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}"#);
        let queue_url = create_queue(name("jobs"), Some(redrive)).await?;
        let mut topics = Vec::new();
        let mut inboxes = Vec::new();
        for what in ["success", "error"] {
            let topic = sns
                .create_topic()
                .name(name(what))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("creating topic {what}: {}", describe(&e)))?
                .topic_arn
                .context("CreateTopic returned no ARN")?;
            let inbox = create_queue(name(&format!("{what}-inbox")), None).await?;
            let arn = queue_arn(&sqs, &inbox).await?;
            sns.subscribe()
                .topic_arn(&topic)
                .protocol("sqs")
                .endpoint(arn)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("subscribing to {topic}: {}", describe(&e)))?;
            topics.push(topic);
            inboxes.push(inbox);
        }
        Ok(Resources {
            bucket,
            queue_url,
            dlq_url,
            success_topic: topics[0].clone(),
            error_topic: topics[1].clone(),
            success_inbox: inboxes[0].clone(),
            error_inbox: inboxes[1].clone(),
        })
    }
}

/// How to start one worker.
#[derive(Debug, Clone)]
struct WorkerSpec {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
}

struct Worker {
    id: String,
    child: Child,
    stopping: bool,
}

/// The worker processes, as a Deployment's ReplicaSet would keep them.
struct Fleet {
    spec: WorkerSpec,
    workers: Vec<Worker>,
    started: u32,
    /// Workers that exited without being asked to.
    crashes: u32,
    rec: Arc<Recorder>,
}

/// The last non-empty line of a log file (where a worker says why it stopped).
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(empty)".into())
}

impl Fleet {
    fn alive(&self) -> u32 {
        self.workers.len() as u32
    }

    fn running(&self) -> usize {
        self.workers.iter().filter(|w| !w.stopping).count()
    }

    /// Record the workers that exited.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let status = match self.workers[i].child.try_wait() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("[loadtest] cannot check {}: {e}", self.workers[i].id);
                    None
                }
            };
            if let Some(status) = status {
                let w = self.workers.remove(i);
                let reason = if w.stopping && status.success() {
                    format!("{status} after SIGTERM")
                } else if w.stopping && status.signal() == Some(libc::SIGTERM) {
                    // The worker installs its handler once the model is loaded; before
                    // that SIGTERM ends it at once, holding no job.
                    format!("{status} after SIGTERM, before it was ready")
                } else if w.stopping {
                    format!("{status} after SIGTERM: the worker did not drain cleanly")
                } else {
                    self.crashes += 1;
                    let log = self.spec.log_dir.join(format!("{}.log", w.id));
                    format!(
                        "{status}: exited unexpectedly; the end of {}: {}",
                        log.display(),
                        last_line(&log)
                    )
                };
                if !reason.ends_with("after SIGTERM") {
                    eprintln!("[loadtest] {} {reason}", w.id);
                }
                self.rec
                    .worker(Kind::WorkerExited, &w.id, self.alive(), Some(reason));
            } else {
                i += 1;
            }
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.started += 1;
        let id = format!("worker-{}", self.started);
        let log = self.spec.log_dir.join(format!("{id}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&self.spec.bin)
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            // Only if the load test itself dies: scale-in and the end of the run stop
            // workers with SIGTERM.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.bin.display()))?;
        let pid = child.id().unwrap_or(0);
        self.workers.push(Worker {
            id: id.clone(),
            child,
            stopping: false,
        });
        self.rec.worker(
            Kind::WorkerStarted,
            &id,
            self.alive(),
            Some(format!("pid {pid}, log {}", log.display())),
        );
        Ok(())
    }

    fn stop(&mut self, index: usize, why: &str) {
        let w = &mut self.workers[index];
        if let Some(pid) = w.child.id() {
            sigterm(pid);
        }
        w.stopping = true;
        let id = w.id.clone();
        self.rec.worker(
            Kind::WorkerStopping,
            &id,
            self.alive(),
            Some(why.to_string()),
        );
    }

    /// Run `n` workers (draining ones not counted): start new ones, or SIGTERM the
    /// newest, as a ReplicaSet scaling down prefers the youngest pods.
    fn scale_to(&mut self, n: usize) -> anyhow::Result<()> {
        while self.running() < n {
            self.spawn()?;
        }
        while self.running() > n {
            let newest = self
                .workers
                .iter()
                .rposition(|w| !w.stopping)
                .expect("running() > 0");
            self.stop(newest, "scale-in");
        }
        Ok(())
    }

    /// SIGTERM every worker and wait for them to drain; SIGKILL only what is still
    /// alive after `grace`.
    async fn shutdown(&mut self, grace: Duration) {
        for i in 0..self.workers.len() {
            if !self.workers[i].stopping {
                self.stop(i, "end of the run");
            }
        }
        let until = Instant::now() + grace;
        while !self.workers.is_empty() && Instant::now() < until {
            self.reap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for w in &mut self.workers {
            eprintln!(
                "[loadtest] {} did not exit within {grace:?} of SIGTERM: killing it",
                w.id
            );
            let _ = w.child.kill().await;
        }
        self.reap();
    }
}

/// The autoscaler with what it acts on.
struct Autoscaling {
    fleet: Fleet,
    scaler: Autoscaler,
    scale_on_in_flight: bool,
    polling_interval: Duration,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    status: Arc<FleetStatus>,
    /// The run's early stop, used when workers cannot even start.
    stop_run: CancellationToken,
}

/// Unexpected worker exits, with nothing completed yet, after which the run is
/// stopped: the workers cannot start (a missing library, a bad model), and waiting for
/// the deadline would only repeat that.
const CRASHES_BEFORE_GIVING_UP: u32 = 3;

impl Autoscaling {
    /// Every polling interval read the queue, apply the rule, start or stop workers;
    /// reap exited workers in between. Returns the fleet when `stop` is cancelled.
    async fn run(mut self, stop: CancellationToken) -> Fleet {
        let rec = self.fleet.rec.clone();
        let mut next_poll = Instant::now();
        let mut warned = false;
        loop {
            self.fleet.reap();
            if self.fleet.crashes >= CRASHES_BEFORE_GIVING_UP
                && rec.counts().notified() == 0
                && !self.stop_run.is_cancelled()
            {
                eprintln!(
                    "[loadtest] the workers keep exiting before completing anything ({} so far; their logs are in {}): stopping the run",
                    self.fleet.crashes,
                    self.fleet.spec.log_dir.display()
                );
                self.stop_run.cancel();
            }
            if Instant::now() >= next_poll && !self.stop_run.is_cancelled() {
                next_poll += self.polling_interval;
                self.poll(&rec, &mut warned).await;
            }
            self.status
                .alive
                .store(self.fleet.alive(), Ordering::Relaxed);
            self.status
                .desired
                .store(self.scaler.current(), Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => return self.fleet,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    async fn poll(&mut self, rec: &Recorder, warned: &mut bool) {
        let (visible, not_visible) = match queue_depth(&self.sqs, &self.queue_url).await {
            Ok(d) => d,
            Err(e) => {
                if !*warned {
                    eprintln!("[loadtest] the autoscaler cannot read the queue: {e:#}");
                    *warned = true;
                }
                return;
            }
        };
        let metric = keda::metric(visible, not_visible, self.scale_on_in_flight);
        let before = self.scaler.current();
        let desired = self.scaler.tick(rec.start().elapsed(), metric);
        if desired != before {
            rec.scale((visible, not_visible), before, desired, self.fleet.alive());
            eprintln!(
                "[loadtest] {:>7.1} s  autoscaler: {before} -> {desired} workers (queue {visible}+{not_visible})",
                rec.now_s()
            );
        }
        if let Err(e) = self.fleet.scale_to(desired as usize) {
            eprintln!("[loadtest] starting a worker failed: {e:#}");
        }
    }
}

/// Run the plan on a local deployment and write the results to `out`.
pub async fn run(cfg: &LocalConfig, plan: &Plan, out: &Output) -> anyhow::Result<Summary> {
    let started = Instant::now();
    cfg.check()?;
    out.prepare()?;
    let log_dir = out.path("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let moto = Moto::start(&cfg.python, &log_dir.join("moto.log")).await?;
    eprintln!("[loadtest] moto server on {}", moto.endpoint);
    let result = run_on(cfg, plan, out, &moto, &log_dir, started).await;
    moto.stop().await;
    result
}

/// Upload the video to the run's bucket (as `in/<file name>`); returns its S3 URI.
async fn upload_video(
    sdk: &SdkConfig,
    cfg: &LocalConfig,
    res: &Resources,
) -> anyhow::Result<String> {
    let video_name = cfg
        .video
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("video.mp4")
        .to_string();
    let key = format!("in/{video_name}");
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&cfg.video)
        .await
        .with_context(|| format!("reading {}", cfg.video.display()))?;
    aws::s3(sdk)
        .put_object()
        .bucket(&res.bucket)
        .key(&key)
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("uploading the video: {}", describe(&e)))?;
    Ok(format!("s3://{}/{key}", res.bucket))
}

/// How to start a worker of this run: `vidinfer-worker sqs` on the job queue, its
/// results and failures to the bucket, notifications to the topics, AWS on moto.
fn worker_spec(cfg: &LocalConfig, res: &Resources, moto: &Moto, log_dir: &Path) -> WorkerSpec {
    let mut args: Vec<String> = vec![
        "sqs".into(),
        "--queue-url".into(),
        res.queue_url.clone(),
        "--output-path".into(),
        format!("s3://{}/results", res.bucket),
        "--failure-path".into(),
        format!("s3://{}/failures", res.bucket),
        "--success-topic".into(),
        res.success_topic.clone(),
        "--error-topic".into(),
        res.error_topic.clone(),
        "--model".into(),
        cfg.model.display().to_string(),
        "--endpoint-name".into(),
        "vidinfer-local".into(),
        "--metrics-addr".into(),
        "off".into(),
        "--concurrency".into(),
        cfg.worker_concurrency.to_string(),
        "--torch-threads".into(),
        cfg.torch_threads.to_string(),
        // Short polls: a stopped worker leaves within a second.
        "--wait-time".into(),
        "1".into(),
        "--visibility-timeout".into(),
        cfg.visibility_timeout.to_string(),
        "--drain-timeout".into(),
        cfg.drain_timeout.to_string(),
        // The result inline, so duplicates can be compared with the first result.
        "--include-response-body".into(),
    ];
    args.extend(cfg.worker_args.iter().cloned());
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ENDPOINT_URL".into(), moto.endpoint.clone()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    WorkerSpec {
        bin: cfg.worker_bin.clone(),
        args,
        env,
        log_dir: log_dir.to_path_buf(),
    }
}

/// The autoscaler task, running beside the driver until [`Scaling::finish`].
struct Scaling {
    task: tokio::task::JoinHandle<Fleet>,
    /// The fleet's size and the autoscaler's wish, as the observers read them.
    status: Arc<FleetStatus>,
    stop: CancellationToken,
}

impl Scaling {
    /// Start the autoscaler on the job queue, with no worker yet.
    fn start(
        cfg: &LocalConfig,
        plan: &Plan,
        spec: WorkerSpec,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
        rec: &Arc<Recorder>,
    ) -> Scaling {
        let fleet = Fleet {
            spec,
            workers: Vec::new(),
            started: 0,
            crashes: 0,
            rec: rec.clone(),
        };
        let status = Arc::new(FleetStatus::default());
        let stop = CancellationToken::new();
        eprintln!(
            "[loadtest] autoscaler: KEDA aws-sqs-queue rule, queueLength {}, activation {}, {}-{} workers, cooldown {} s, polling every {:.1} s",
            cfg.rule.queue_length,
            cfg.rule.activation_queue_length,
            cfg.rule.min_replicas,
            cfg.rule.max_replicas,
            cfg.cooldown.as_secs_f64(),
            cfg.polling_interval.as_secs_f64()
        );
        let task = tokio::spawn(
            Autoscaling {
                fleet,
                scaler: Autoscaler::new(cfg.rule, cfg.cooldown),
                scale_on_in_flight: cfg.scale_on_in_flight,
                polling_interval: cfg.polling_interval,
                sqs: sqs.clone(),
                queue_url: queue_url.to_string(),
                status: status.clone(),
                stop_run: plan.stop.clone(),
            }
            .run(stop.clone()),
        );
        Scaling { task, status, stop }
    }

    /// Stop the autoscaler, then SIGTERM the workers and wait for them to drain.
    async fn finish(self, drain_timeout: u64) -> anyhow::Result<()> {
        self.stop.cancel();
        let mut fleet = self.task.await.context("the autoscaler task failed")?;
        fleet
            .shutdown(Duration::from_secs(drain_timeout + 10))
            .await;
        Ok(())
    }
}

/// Drive the plan against the job queue, the fleet observed through `status`; the
/// run lingers until the fleet is back at `min_replicas`.
async fn drive_local(
    cfg: &LocalConfig,
    plan: &Plan,
    sqs: &aws_sdk_sqs::Client,
    res: &Resources,
    input: String,
    status: &Arc<FleetStatus>,
    rec: &Arc<Recorder>,
) -> run::Ending {
    let target = Arc::new(Target::Sqs {
        sqs: sqs.clone(),
        queue_url: res.queue_url.clone(),
        request: RequestTemplate {
            input,
            custom_attributes: cfg.custom_attributes.clone(),
            content_type: "video/mp4".into(),
        },
    });
    let inboxes = Inboxes {
        sqs: sqs.clone(),
        success: res.success_inbox.clone(),
        error: res.error_inbox.clone(),
    };
    let observers = Observers {
        queue: Some((sqs.clone(), res.queue_url.clone())),
        workers: Workers::Local(status.clone()),
        instances: None,
    };
    let min = cfg.rule.min_replicas;
    let settled: Settled = {
        let status = status.clone();
        Arc::new(move || status.get() == (min, min))
    };
    run::drive(
        plan,
        target,
        &inboxes,
        observers,
        Some(settled),
        rec.clone(),
    )
    .await
}

async fn run_on(
    cfg: &LocalConfig,
    plan: &Plan,
    out: &Output,
    moto: &Moto,
    log_dir: &Path,
    started: Instant,
) -> anyhow::Result<Summary> {
    let sdk = aws::moto_sdk(&moto.endpoint).await;
    let res = Resources::create(&sdk, &plan.run_id).await?;
    let input = upload_video(&sdk, cfg, &res).await?;
    eprintln!(
        "[loadtest] created s3://{}, the job queue (+DLQ), the topics and their queues; video at {input}",
        res.bucket
    );

    let rec = Arc::new(Recorder::new());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let spec = worker_spec(cfg, &res, moto, log_dir);
    let scaling = Scaling::start(cfg, plan, spec, &sqs, &res.queue_url, &rec);
    let ending = drive_local(cfg, plan, &sqs, &res, input, &scaling.status, &rec).await;
    scaling.finish(cfg.drain_timeout).await?;

    let dead_lettered = queue_depth(&sqs, &res.dlq_url)
        .await
        .ok()
        .map(|d| d.0 + d.1);
    run::finish(
        out,
        RunInfo {
            mode: "local".into(),
            target: format!(
                "local SQS workers, autoscaled {}-{}",
                cfg.rule.min_replicas, cfg.rule.max_replicas
            ),
            shape: plan.shape.to_string(),
            planned: plan.count,
            ended_by: ending.as_str().into(),
            dead_lettered,
            ..RunInfo::default()
        },
        &rec,
        started,
    )
}
