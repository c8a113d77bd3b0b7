//! `vidinfer-loadtest`: parse the command line, turn it into a plan and a mode's
//! configuration, run, and exit non-zero when a request was lost.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use vidinfer_loadtest::aws::AwsOptions;
use vidinfer_loadtest::chart::DEFAULT_FONT;
use vidinfer_loadtest::keda::Rule;
use vidinfer_loadtest::local::LocalConfig;
use vidinfer_loadtest::remote::RemoteConfig;
use vidinfer_loadtest::run::{new_run_id, Ending, Output, Plan};
use vidinfer_loadtest::shape::Shape;
use vidinfer_loadtest::summary::Summary;

/// Load test for a vidinfer deployment: send inference requests for one video in a
/// chosen shape, watch completions through the success/error SNS topics (via SQS
/// queues subscribed to them), and report queue wait, processing time and end-to-end
/// latency per request, throughput, p50/p90/p99, failures by reason, lost requests
/// and duplicates. Writes events.csv, summary.json and chart.png (backlog, in flight,
/// completions per minute, workers or instances over time) to --out.
///
/// The run stops by itself: when every request is notified (then it lingers to watch
/// the fleet scale in), or at --deadline. It exits 1 when a request was sent and never
/// notified.
#[derive(Parser, Debug)]
#[command(name = "vidinfer-loadtest", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Everything on this machine, no AWS account: a moto server (S3, SQS, SNS),
    /// `vidinfer-worker sqs` processes on the fixture model, and an autoscaler that
    /// applies KEDA's aws-sqs-queue rule to start and stop them (scale from zero, out
    /// and in).
    ///
    /// Example (from the repository root, after `cargo build --release --workspace`):
    /// vidinfer-loadtest local --count 100 --shape step --rate 1 --step-after 20
    /// --step-rate 5 --max-workers 3 --queue-length 4
    Local(Box<LocalArgs>),
    /// An existing SQS queue served by standalone workers (ECS, or Kubernetes scaled by
    /// KEDA with docker/k8s/worker.yaml).
    ///
    /// Example: vidinfer-loadtest sqs --queue-url https://sqs.us-east-1.amazonaws.com/123/vidinfer-jobs
    /// --input s3://bucket/videos/clip.mp4 --success-queue URL --error-queue URL
    /// --workers-command "kubectl get deploy vidinfer-worker -o jsonpath={.status.replicas}"
    Sqs(Box<SqsArgs>),
    /// A SageMaker asynchronous endpoint (InvokeEndpointAsync), e.g. the one
    /// docker/terraform/ creates; the instance count comes from the variant's
    /// Application Auto Scaling activities.
    ///
    /// Example: vidinfer-loadtest sagemaker --endpoint vidinfer --input
    /// s3://bucket/videos/clip.mp4 --success-queue URL --error-queue URL --count 999
    Sagemaker(Box<SageMakerArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShapeKind {
    /// --burst-size requests at once every --burst-every seconds (default: all at once).
    Burst,
    /// --rate requests per second (open loop).
    Rate,
    /// --rate per second, then --step-rate after --step-after seconds (open loop).
    Step,
    /// --concurrency requests outstanding; the next is sent when one completes.
    Closed,
}

/// What load to send and for how long.
#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Requests to send, all for the same video.
    #[arg(long, env = "VIDINFER_LOADTEST_COUNT", default_value_t = 100)]
    count: usize,

    /// Load shape.
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_SHAPE",
        value_enum,
        default_value = "burst"
    )]
    shape: ShapeKind,

    /// Requests per second for `rate`, and for `step` before the step.
    #[arg(long, env = "VIDINFER_LOADTEST_RATE", default_value_t = 1.0)]
    rate: f64,

    /// Requests per second for `step` after the step.
    #[arg(long, env = "VIDINFER_LOADTEST_STEP_RATE", default_value_t = 4.0)]
    step_rate: f64,

    /// Seconds from the start at which `step` changes from --rate to --step-rate.
    #[arg(long, env = "VIDINFER_LOADTEST_STEP_AFTER", default_value_t = 30.0)]
    step_after: f64,

    /// Requests per burst for `burst` (0: all of --count at once, as the old notebook's
    /// loop of invoke_endpoint_async calls did).
    #[arg(long, env = "VIDINFER_LOADTEST_BURST_SIZE", default_value_t = 0)]
    burst_size: usize,

    /// Seconds between bursts.
    #[arg(long, env = "VIDINFER_LOADTEST_BURST_EVERY", default_value_t = 60.0)]
    burst_every: f64,

    /// Requests outstanding at once for `closed`.
    #[arg(long, env = "VIDINFER_LOADTEST_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,

    /// Seconds from the start after which the run stops, sent or not: requests not
    /// notified by then are reported lost.
    #[arg(long, env = "VIDINFER_LOADTEST_DEADLINE", default_value_t = 600)]
    deadline: u64,

    /// Seconds to keep watching after the last notification, to see the fleet scale in
    /// (default: 0 for sqs and sagemaker; for local, --cooldown + --drain-timeout + 15,
    /// ending as soon as the fleet is back at --min-workers).
    #[arg(long, env = "VIDINFER_LOADTEST_LINGER")]
    linger: Option<u64>,

    /// SageMaker-style options sent with every request, e.g. `frame_interval=30` (the
    /// worker's own defaults otherwise).
    #[arg(long, env = "VIDINFER_LOADTEST_CUSTOM_ATTRIBUTES")]
    custom_attributes: Option<String>,

    /// Seconds between samples of the queue and the fleet.
    #[arg(long, env = "VIDINFER_LOADTEST_SAMPLE_EVERY", default_value_t = 1.0)]
    sample_every: f64,

    /// Seconds between progress lines on stderr.
    #[arg(long, env = "VIDINFER_LOADTEST_PROGRESS_EVERY", default_value_t = 5.0)]
    progress_every: f64,

    /// Send API calls in flight at once (bursts are sent this many at a time).
    #[arg(long, env = "VIDINFER_LOADTEST_SEND_CONCURRENCY", default_value_t = 16)]
    send_concurrency: usize,
}

/// Chart size as WIDTHxHEIGHT.
#[derive(Debug, Clone, Copy)]
struct ChartSize(u32, u32);

impl FromStr for ChartSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT, e.g. 1200x1000"))?;
        let px = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}` is not WIDTHxHEIGHT in pixels, e.g. 1200x1000"))
        };
        let (w, h) = (px(w)?, px(h)?);
        if !((200..=10_000).contains(&w) && (200..=10_000).contains(&h)) {
            return Err(format!(
                "{w}x{h} is out of range: use 200 to 10000 pixels a side"
            ));
        }
        Ok(ChartSize(w, h))
    }
}

/// Where results go.
#[derive(Args, Debug, Clone)]
struct OutputArgs {
    /// Directory for events.csv, summary.json, chart.png (and, in local mode, logs/).
    #[arg(long, env = "VIDINFER_LOADTEST_OUT", default_value = "out/loadtest")]
    out: PathBuf,

    /// Size of chart.png in pixels, WIDTHxHEIGHT.
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_CHART_SIZE",
        default_value = "1200x1000"
    )]
    chart_size: ChartSize,

    /// TrueType font for the chart's text (Debian: fonts-dejavu-core). Without it the
    /// chart is drawn without text.
    #[arg(long, env = "VIDINFER_LOADTEST_FONT", default_value = DEFAULT_FONT)]
    font: PathBuf,
}

#[derive(Args, Debug)]
struct LocalArgs {
    #[command(flatten)]
    load: LoadArgs,

    #[command(flatten)]
    output: OutputArgs,

    /// TorchScript model the workers load.
    #[arg(
        long,
        env = "VIDINFER_MODEL",
        default_value = "tests/fixtures/model/model.pt"
    )]
    model: PathBuf,

    /// Video every request names (uploaded to the local S3).
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_VIDEO",
        default_value = "tests/fixtures/sample/shapes.mp4"
    )]
    video: PathBuf,

    /// Python with moto installed (default: $VIDINFER_VENV/bin/python, else
    /// ~/.cache/vidinfer/venv/bin/python, which scripts/setup.sh makes).
    #[arg(long, env = "VIDINFER_LOADTEST_MOTO_PYTHON")]
    moto_python: Option<PathBuf>,

    /// The worker binary (default: vidinfer-worker next to this executable).
    #[arg(long, env = "VIDINFER_LOADTEST_WORKER_BIN")]
    worker_bin: Option<PathBuf>,

    /// Fewest workers (KEDA's minReplicaCount); 0 lets the fleet scale to zero when
    /// the queue is empty.
    #[arg(long, env = "VIDINFER_LOADTEST_MIN_WORKERS", default_value_t = 0)]
    min_workers: u32,

    /// Most workers (maxReplicaCount).
    #[arg(long, env = "VIDINFER_LOADTEST_MAX_WORKERS", default_value_t = 3)]
    max_workers: u32,

    /// Messages per worker (the trigger's queueLength): desired workers =
    /// ceil(messages / this).
    #[arg(long, env = "VIDINFER_LOADTEST_QUEUE_LENGTH", default_value_t = 5)]
    queue_length: u64,

    /// The fleet wakes from zero only when the metric exceeds this
    /// (activationQueueLength).
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_ACTIVATION_QUEUE_LENGTH",
        default_value_t = 0
    )]
    activation_queue_length: u64,

    /// Count messages being processed (ApproximateNumberOfMessagesNotVisible) in the
    /// metric, as KEDA's scaleOnInFlight does by default.
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_SCALE_ON_IN_FLIGHT",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    scale_on_in_flight: bool,

    /// Seconds the autoscaler waits before scaling in: it scales down only to the
    /// highest count wanted during this window (the HPA's scale-down stabilization
    /// window and KEDA's cooldownPeriod, both 300 s by default in Kubernetes).
    #[arg(long, env = "VIDINFER_LOADTEST_COOLDOWN", default_value_t = 30.0)]
    cooldown: f64,

    /// Seconds between the autoscaler's readings of the queue (KEDA's
    /// pollingInterval, 30 s by default in Kubernetes).
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_POLLING_INTERVAL",
        default_value_t = 2.0
    )]
    polling_interval: f64,

    /// Jobs each worker processes at once (its --concurrency).
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_WORKER_CONCURRENCY",
        default_value_t = 1
    )]
    worker_concurrency: usize,

    /// LibTorch threads per worker (its --torch-threads); 1 keeps several workers from
    /// fighting over the cores.
    #[arg(long, env = "VIDINFER_LOADTEST_TORCH_THREADS", default_value_t = 1)]
    torch_threads: usize,

    /// The workers' --visibility-timeout in seconds.
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_VISIBILITY_TIMEOUT",
        default_value_t = 30
    )]
    visibility_timeout: u32,

    /// The workers' --drain-timeout in seconds: how long a stopped worker may finish
    /// its jobs.
    #[arg(long, env = "VIDINFER_LOADTEST_DRAIN_TIMEOUT", default_value_t = 30)]
    drain_timeout: u64,

    /// Extra argument for every worker, repeatable (e.g. --worker-arg=--batch-size
    /// --worker-arg=2).
    #[arg(long = "worker-arg", allow_hyphen_values = true)]
    worker_args: Vec<String>,
}

/// Where AWS is and what every request names.
#[derive(Args, Debug)]
struct RemoteArgs {
    /// `s3://bucket/key` of the video every request names (it must exist).
    #[arg(long, env = "VIDINFER_LOADTEST_INPUT")]
    input: String,

    /// URL of an SQS queue subscribed to the success topic, read (and emptied) by the
    /// load test alone.
    #[arg(long, env = "VIDINFER_LOADTEST_SUCCESS_QUEUE")]
    success_queue: String,

    /// URL of an SQS queue subscribed to the error topic, likewise.
    #[arg(long, env = "VIDINFER_LOADTEST_ERROR_QUEUE")]
    error_queue: String,

    /// Content type of the video.
    #[arg(
        long,
        env = "VIDINFER_LOADTEST_CONTENT_TYPE",
        default_value = "video/mp4"
    )]
    content_type: String,

    /// AWS region (default: the SDK's chain: AWS_REGION, profile, instance metadata).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,

    /// Endpoint override for every AWS service (e.g. a moto server).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
}

#[derive(Args, Debug)]
struct SqsArgs {
    #[command(flatten)]
    load: LoadArgs,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    remote: RemoteArgs,

    /// URL of the job queue the workers consume.
    #[arg(long, env = "VIDINFER_QUEUE_URL")]
    queue_url: String,

    /// Shell command printing the current number of workers, run at every sample
    /// (e.g. `kubectl get deploy vidinfer-worker -o jsonpath={.status.replicas}`);
    /// without it the chart has no worker line.
    #[arg(long, env = "VIDINFER_LOADTEST_WORKERS_COMMAND")]
    workers_command: Option<String>,
}

#[derive(Args, Debug)]
struct SageMakerArgs {
    #[command(flatten)]
    load: LoadArgs,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    remote: RemoteArgs,

    /// Name of the asynchronous endpoint.
    #[arg(long, env = "VIDINFER_LOADTEST_ENDPOINT")]
    endpoint: String,

    /// Production variant whose instance count is charted.
    #[arg(long, env = "VIDINFER_LOADTEST_VARIANT", default_value = "AllTraffic")]
    variant: String,
}

fn seconds(v: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v >= 0.0,
        "{flag} must be a number of seconds, 0 or more; got {v}"
    );
    Ok(Duration::from_secs_f64(v))
}

fn rate(v: f64, flag: &str) -> anyhow::Result<f64> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0,
        "{flag} must be a number of requests per second above 0; got {v}"
    );
    Ok(v)
}

impl LoadArgs {
    fn plan(&self, default_linger: Duration) -> anyhow::Result<Plan> {
        anyhow::ensure!(self.count >= 1, "--count must be at least 1");
        anyhow::ensure!(self.deadline >= 1, "--deadline must be at least 1 s");
        let shape = match self.shape {
            ShapeKind::Burst => {
                let every = seconds(self.burst_every, "--burst-every")?;
                anyhow::ensure!(
                    self.burst_size == 0 || self.burst_size >= self.count || !every.is_zero(),
                    "--burst-every must be above 0 when bursts are smaller than --count"
                );
                Shape::Burst {
                    size: self.burst_size,
                    every,
                }
            }
            ShapeKind::Rate => Shape::Rate {
                per_s: rate(self.rate, "--rate")?,
            },
            ShapeKind::Step => Shape::Step {
                per_s: rate(self.rate, "--rate")?,
                after: seconds(self.step_after, "--step-after")?,
                then_per_s: rate(self.step_rate, "--step-rate")?,
            },
            ShapeKind::Closed => {
                anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
                Shape::Closed {
                    concurrency: self.concurrency,
                }
            }
        };
        let sample_every = seconds(self.sample_every, "--sample-every")?;
        anyhow::ensure!(
            sample_every >= Duration::from_millis(100),
            "--sample-every must be at least 0.1 s"
        );
        let progress_every = seconds(self.progress_every, "--progress-every")?;
        anyhow::ensure!(
            progress_every >= Duration::from_millis(100),
            "--progress-every must be at least 0.1 s"
        );
        anyhow::ensure!(
            self.send_concurrency >= 1,
            "--send-concurrency must be at least 1"
        );
        Ok(Plan {
            shape,
            count: self.count,
            deadline: Duration::from_secs(self.deadline),
            linger: self.linger.map_or(default_linger, Duration::from_secs),
            sample_every,
            progress_every,
            send_concurrency: self.send_concurrency,
            run_id: new_run_id(),
            stop: CancellationToken::new(),
        })
    }
}

impl OutputArgs {
    fn output(&self) -> Output {
        Output {
            dir: self.out.clone(),
            chart_width: self.chart_size.0,
            chart_height: self.chart_size.1,
            font: self.font.clone(),
        }
    }
}

impl RemoteArgs {
    fn config(&self, custom_attributes: Option<String>) -> RemoteConfig {
        RemoteConfig {
            aws: AwsOptions {
                region: self.region.clone(),
                endpoint_url: self.endpoint_url.clone(),
            },
            input: self.input.clone(),
            custom_attributes,
            content_type: self.content_type.clone(),
            success_inbox: self.success_queue.clone(),
            error_inbox: self.error_queue.clone(),
        }
    }
}

fn default_python() -> PathBuf {
    let venv = std::env::var_os("VIDINFER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vidinfer/venv")
        });
    venv.join("bin/python")
}

fn default_worker_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("vidinfer-worker"))
}

impl LocalArgs {
    fn config(&self) -> anyhow::Result<LocalConfig> {
        let cooldown = seconds(self.cooldown, "--cooldown")?;
        let polling_interval = seconds(self.polling_interval, "--polling-interval")?;
        anyhow::ensure!(
            polling_interval >= Duration::from_millis(100),
            "--polling-interval must be at least 0.1 s"
        );
        anyhow::ensure!(
            self.worker_concurrency >= 1,
            "--worker-concurrency must be at least 1"
        );
        anyhow::ensure!(
            self.visibility_timeout >= 10,
            "--visibility-timeout must be at least 10 s (the worker's minimum)"
        );
        Ok(LocalConfig {
            python: self.moto_python.clone().unwrap_or_else(default_python),
            worker_bin: match &self.worker_bin {
                Some(p) => p.clone(),
                None => default_worker_bin()?,
            },
            model: self.model.clone(),
            video: self.video.clone(),
            rule: Rule {
                queue_length: self.queue_length,
                activation_queue_length: self.activation_queue_length,
                min_replicas: self.min_workers,
                max_replicas: self.max_workers,
            },
            scale_on_in_flight: self.scale_on_in_flight,
            cooldown,
            polling_interval,
            worker_concurrency: self.worker_concurrency,
            torch_threads: self.torch_threads,
            visibility_timeout: self.visibility_timeout,
            drain_timeout: self.drain_timeout,
            worker_args: self.worker_args.clone(),
            custom_attributes: self.load.custom_attributes.clone(),
        })
    }
}

/// End the run early on ctrl-c or SIGTERM: stop sending, stop the local fleet, and
/// still write the results.
fn stop_on_signal(stop: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("[loadtest] interrupted: ending the run and writing what was recorded");
        stop.cancel();
    });
}

async fn run(command: Command) -> anyhow::Result<Summary> {
    match command {
        Command::Local(a) => {
            let cfg = a.config()?;
            let linger = cfg.cooldown + Duration::from_secs(cfg.drain_timeout + 15);
            let plan = a.load.plan(linger)?;
            stop_on_signal(plan.stop.clone());
            vidinfer_loadtest::local::run(&cfg, &plan, &a.output.output()).await
        }
        Command::Sqs(a) => {
            let plan = a.load.plan(Duration::ZERO)?;
            stop_on_signal(plan.stop.clone());
            let cfg = a.remote.config(a.load.custom_attributes.clone());
            vidinfer_loadtest::remote::run_sqs(
                &cfg,
                &a.queue_url,
                a.workers_command.clone(),
                &plan,
                &a.output.output(),
            )
            .await
        }
        Command::Sagemaker(a) => {
            let plan = a.load.plan(Duration::ZERO)?;
            stop_on_signal(plan.stop.clone());
            let cfg = a.remote.config(a.load.custom_attributes.clone());
            vidinfer_loadtest::remote::run_sagemaker(
                &cfg,
                &a.endpoint,
                &a.variant,
                &plan,
                &a.output.output(),
            )
            .await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(s) if s.lost > 0 => {
            let shown: Vec<&str> = s.lost_ids.iter().take(5).map(String::as_str).collect();
            let ids = format!(
                "{}{}",
                shown.join(", "),
                if s.lost > shown.len() { ", ..." } else { "" }
            );
            if s.ended_by == Ending::Stopped.as_str() {
                eprintln!(
                    "error: the run was stopped early: {} of {} requests sent were not notified by then ({ids})",
                    s.lost, s.sent
                );
            } else {
                eprintln!(
                    "error: {} of {} requests were sent but never notified before the deadline ({ids}): raise --deadline, or look at the deployment's logs (and, for SQS workers, the dead-letter queue)",
                    s.lost, s.sent
                );
            }
            ExitCode::FAILURE
        }
        Ok(s) if s.sent == 0 => {
            eprintln!("error: no request could be sent: see the send errors above");
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
