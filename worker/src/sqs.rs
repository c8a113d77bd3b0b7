//! `sqs`: the standalone queue worker (ECS/Kubernetes + KEDA).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vidinfer::aws::AwsOptions;
use vidinfer::metrics::{Door, Metrics};
use vidinfer::model::Model;
use vidinfer::notify::Notifier;
use vidinfer::params::Params;
use vidinfer::pipeline::Engine;
use vidinfer::request::InputPolicy;
use vidinfer::sqs::{SqsConfig, SqsWorker};
use vidinfer::storage::S3Uri;

use crate::args::{ModelArgs, ParamArgs};

#[derive(Args, Debug)]
pub struct SqsArgs {
    /// URL of the SQS queue to consume (one message = one inference request; see the
    /// README for the message format).
    #[arg(long, env = "VIDINFER_QUEUE_URL")]
    pub queue_url: String,

    /// S3 prefix for results: each is written to {OUTPUT_PATH}/{inferenceId}.out
    /// (SageMaker's S3OutputPath).
    /// (Environment: also VIDINFER_S3_OUTPUT_PATH.)
    #[arg(long, env = "VIDINFER_OUTPUT_PATH")]
    pub output_path: S3Uri,

    /// S3 prefix for error objects, {FAILURE_PATH}/{inferenceId}-error.out
    /// (SageMaker's S3FailurePath; default: the output path).
    /// (Environment: also VIDINFER_S3_FAILURE_PATH.)
    #[arg(long, env = "VIDINFER_FAILURE_PATH")]
    pub failure_path: Option<S3Uri>,

    /// SNS topic ARN for success notifications (none: no success notifications).
    #[arg(long, env = "VIDINFER_SUCCESS_TOPIC")]
    pub success_topic: Option<String>,

    /// SNS topic ARN for failure notifications (none: no failure notifications).
    #[arg(long, env = "VIDINFER_ERROR_TOPIC")]
    pub error_topic: Option<String>,

    /// Include the result in success notifications when it is at most 128 KB
    /// (SageMaker's IncludeInferenceResponseIn).
    #[arg(long, env = "VIDINFER_INCLUDE_RESPONSE_BODY")]
    pub include_response_body: bool,

    /// Name reported as requestParameters.endpointName in notifications.
    #[arg(long, env = "VIDINFER_ENDPOINT_NAME", default_value = "vidinfer")]
    pub endpoint_name: String,

    /// Jobs processed at once (their downloads and decodes overlap; the model is shared).
    #[arg(long, env = "VIDINFER_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,

    /// Visibility timeout in seconds, set on receive and renewed by a heartbeat every
    /// third of it while a job runs.
    #[arg(long, env = "VIDINFER_VISIBILITY_TIMEOUT", default_value_t = 120)]
    pub visibility_timeout: u32,

    /// Long-poll wait per receive in seconds (0-20).
    #[arg(long, env = "VIDINFER_WAIT_TIME", default_value_t = 20)]
    pub wait_time: u32,

    /// Largest input video accepted, in MiB.
    #[arg(long, env = "VIDINFER_MAX_INPUT_MB", default_value_t = 2048)]
    pub max_input_mb: u64,

    /// Seconds in-flight jobs get to finish after SIGTERM/ctrl-c before their messages
    /// are handed back to the queue.
    #[arg(long, env = "VIDINFER_DRAIN_TIMEOUT", default_value_t = 30)]
    pub drain_timeout: u64,

    /// Seconds a message stays invisible after a transient failure, times its receive
    /// count (so retries back off).
    #[arg(long, env = "VIDINFER_RETRY_BACKOFF", default_value_t = 10)]
    pub retry_backoff: u32,

    /// Directory for downloaded videos (each is deleted when its job ends).
    #[arg(long, env = "VIDINFER_TMP_DIR", default_value_os_t = std::env::temp_dir())]
    pub tmp_dir: PathBuf,

    /// S3 prefixes requests may name as input, comma-separated (`s3://bucket` or
    /// `s3://bucket/prefix/`). Once set, every other location is refused with a failure
    /// notification. Default: any location the worker's credentials can read.
    #[arg(long, env = "VIDINFER_ALLOWED_INPUTS", value_delimiter = ',')]
    pub allowed_inputs: Vec<S3Uri>,

    /// Seconds between checkpoints of a running job (0: none). A checkpoint holds the
    /// detections so far at {OUTPUT_PATH}/.checkpoints/{inferenceId}.json; when the
    /// request is redelivered (a crash, a spot stop, SIGKILL) the job resumes after it.
    /// Deleted once the request is settled.
    #[arg(long, env = "VIDINFER_CHECKPOINT_INTERVAL", default_value_t = 60.0,
          value_parser = parse_seconds)]
    pub checkpoint_interval: f64,

    /// Split a video longer than this many seconds into segments of this length, sent
    /// to the same queue and processed by whichever workers take them; the worker that
    /// stores the last part assembles the one document and sends the one notification
    /// (0: never split; a request's `segment_seconds` overrides it). Parts live under
    /// {OUTPUT_PATH}/.parts/{inferenceId}/ until the request is settled.
    #[arg(long, env = "VIDINFER_SEGMENT_SECONDS", default_value_t = 0.0,
          value_parser = parse_segment_seconds)]
    pub segment_seconds: f64,

    /// Address of the /metrics (Prometheus) and /ping endpoint; "off" disables it.
    #[arg(long, env = "VIDINFER_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,

    /// AWS region (default: the SDK's chain: AWS_REGION, profile, instance metadata).
    /// (Environment: also AWS_REGION.)
    #[arg(long, env = "VIDINFER_REGION")]
    pub region: Option<String>,

    /// Endpoint override for S3, SQS and SNS (e.g. a local moto server). (Environment:
    /// also AWS_ENDPOINT_URL.)
    #[arg(long, env = "VIDINFER_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub params: ParamArgs,
}

pub fn main(a: SqsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        a.visibility_timeout >= 10,
        "--visibility-timeout must be at least 10 s"
    );
    anyhow::ensure!(
        a.wait_time <= 20,
        "--wait-time must be within 0-20 s (SQS's maximum)"
    );
    let defaults = a.params.params()?;
    let rt = vidinfer::runtime::build()?;
    let result = rt.block_on(async move {
        // Signals first: a worker scaled in while it is still loading the model exits 0
        // (it holds no message yet) instead of dying by the signal.
        let shutdown = crate::shutdown::token();
        let config = a.model.config();
        let load = tokio::task::spawn_blocking(move || Model::load(config));
        let model = tokio::select! {
            m = load => m?.context("loading the model")?,
            _ = shutdown.cancelled() => {
                tracing::info!("stopped while loading the model");
                return Ok(());
            }
        };
        let sdk = vidinfer::aws::load(&AwsOptions {
            region: a.region.clone(),
            endpoint_url: a.endpoint_url.clone(),
        })
        .await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let metrics = Arc::new(Metrics::new(Door::Queue));
        if a.metrics_addr != "off" {
            serve_metrics(&a.metrics_addr, metrics.clone(), shutdown.clone()).await?;
        }
        let notifier = Notifier::new(&sdk, a.success_topic.clone(), a.error_topic.clone());
        let config = a.config(region, defaults);
        let worker = Arc::new(SqsWorker::new(
            Engine::new(model),
            &sdk,
            notifier,
            config,
            metrics,
        ));
        worker.run(shutdown).await;
        Ok(())
    });
    // A model load abandoned at shutdown may still be reading: don't wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more)")),
    }
}

fn parse_segment_seconds(s: &str) -> Result<f64, String> {
    let v = parse_seconds(s)?;
    vidinfer::params::check_segment_seconds(v)?;
    Ok(v)
}

impl SqsArgs {
    /// The worker's configuration from these flags.
    fn config(&self, region: String, defaults: Params) -> SqsConfig {
        let failure_path = self
            .failure_path
            .clone()
            .unwrap_or_else(|| self.output_path.clone());
        let vis = self.visibility_timeout as i32;
        SqsConfig {
            queue_url: self.queue_url.clone(),
            output_path: self.output_path.clone(),
            failure_path,
            endpoint_name: self.endpoint_name.clone(),
            region,
            concurrency: self.concurrency,
            visibility_timeout_s: vis,
            heartbeat_every: Duration::from_secs(u64::from(self.visibility_timeout / 3).max(1)),
            wait_time_s: self.wait_time as i32,
            max_input_bytes: self.max_input_mb * 1024 * 1024,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            include_response_body: self.include_response_body,
            retry_backoff_s: self.retry_backoff as i32,
            step_attempts: 5,
            temp_dir: self.tmp_dir.clone(),
            defaults,
            allowed_inputs: InputPolicy::new(self.allowed_inputs.clone()),
            checkpoint_every: (self.checkpoint_interval > 0.0)
                .then(|| Duration::from_secs_f64(self.checkpoint_interval)),
            segment_seconds: self.segment_seconds,
        }
    }
}

/// Serve `/metrics` and `/ping` on `addr` until `stop`.
async fn serve_metrics(
    addr: &str,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--metrics-addr `{addr}` is not host:port"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    // The bound address: with port 0 the system picks one, and this is how to find it.
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "metrics on /metrics");
    let router = vidinfer::metrics::worker_router(metrics);
    tokio::spawn(async move {
        vidinfer::http::serve(listener, router, stop, Duration::from_secs(1)).await
    });
    Ok(())
}
