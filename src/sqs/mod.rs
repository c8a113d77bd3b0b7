//! The standalone worker: SQS in, S3 in and out, SNS out — SageMaker asynchronous
//! inference's semantics without SageMaker. Three pieces:
//! - the receive/drain loop ([`SqsWorker::run`]): long-polls only as many messages as
//!   it has free job slots, and at shutdown stops receiving, lets jobs finish within
//!   the drain timeout and hands back the rest;
//! - the [`lease::Lease`] that owns each message's receipt (extend, release, defer,
//!   delete);
//! - the [`outcome::OutcomeStep`] that stores the result or the failure, notifies, and
//!   decides from the typed [`outcome::JobError`] what happens to the message.
//!
//! Between them, one message is: parse and validate the request, check its TTL, keep
//! the lease alive while the job runs, download the video, run the engine's job path
//! ([`Engine::process_file`]), then settle.

pub mod checkpoint;
pub mod lease;
pub mod outcome;
pub mod segments;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::aws::classify;
use crate::metrics::{Metrics, Outcome};
use crate::notify::{Notifier, RequestParameters};
use crate::params::Params;
use crate::pipeline::{Engine, PipelineError};
use crate::request::{InputPolicy, Request};
use crate::schema::FrameDetections;
use crate::storage::{Downloaded, S3Uri, Storage};
use checkpoint::{Checkpoints, Fingerprint};
use lease::{Lease, LeasePolicy};
use outcome::{JobError, OutcomeStep, RequestInfo};
use segments::{Done, SegmentMessage, SegmentStore};

pub use lease::heartbeat;

/// How the queue worker runs. Defaults are in `vidinfer-worker sqs --help`.
#[derive(Debug, Clone)]
pub struct SqsConfig {
    pub queue_url: String,
    /// Where results go: `{output_path}/{inferenceId}.out` (SageMaker's S3OutputPath).
    pub output_path: S3Uri,
    /// Where error objects go: `{failure_path}/{inferenceId}-error.out` (S3FailurePath).
    pub failure_path: S3Uri,
    /// `requestParameters.endpointName` in notifications.
    pub endpoint_name: String,
    /// `awsRegion` in notifications.
    pub region: String,
    /// Jobs processed at once by this worker.
    pub concurrency: usize,
    /// Visibility timeout set on receive and renewed by the heartbeat, in seconds.
    pub visibility_timeout_s: i32,
    /// How often the heartbeat renews the visibility timeout.
    pub heartbeat_every: Duration,
    /// Long-poll wait per receive, in seconds (0-20).
    pub wait_time_s: i32,
    /// Largest input object accepted, in bytes.
    pub max_input_bytes: u64,
    /// Grace period for in-flight jobs at shutdown before they are handed back.
    pub drain_timeout: Duration,
    /// Include the result in success notifications when it is at most 128 KB.
    pub include_response_body: bool,
    /// Seconds a message stays invisible after a transient failure, per receive so far
    /// (see [`lease::defer_seconds`]).
    pub retry_backoff_s: i32,
    /// Attempts for each post-inference step (store, notify, delete) before giving the
    /// message back.
    pub step_attempts: u32,
    /// Directory for downloaded inputs (deleted after each job).
    pub temp_dir: PathBuf,
    /// Parameters of a request that overrides nothing.
    pub defaults: Params,
    /// S3 locations requests may read (empty: any the worker's credentials can read).
    pub allowed_inputs: InputPolicy,
    /// How often a running job saves a checkpoint (`None`: never); see [`checkpoint`].
    pub checkpoint_every: Option<Duration>,
    /// Split a video longer than this many seconds into segments processed across the
    /// fleet (0: never; a request's `segment_seconds` overrides it); see [`segments`].
    pub segment_seconds: f64,
}

/// A message as received, before its body is looked at.
struct Received {
    message_id: String,
    body: String,
    /// `SentTimestamp`, in milliseconds since the epoch.
    sent_ms: Option<i64>,
    at: OffsetDateTime,
}

impl Received {
    /// Milliseconds the message waited in the queue.
    fn wait_ms(&self) -> Option<i64> {
        self.sent_ms
            .map(|sent| (self.at.unix_timestamp_nanos() / 1_000_000) as i64 - sent)
    }

    /// Whole seconds the message waited in the queue (what `requestTTLSeconds` bounds).
    fn age_s(&self) -> Option<i64> {
        self.wait_ms().map(|ms| ms / 1000)
    }
}

/// The queue worker.
pub struct SqsWorker {
    engine: Engine,
    storage: Storage,
    sqs: aws_sdk_sqs::Client,
    config: SqsConfig,
    metrics: Arc<Metrics>,
    outcome: OutcomeStep,
    checkpoints: Option<Checkpoints>,
    segments: SegmentStore,
}

impl SqsWorker {
    pub fn new(
        engine: Engine,
        sdk: &aws_config::SdkConfig,
        notifier: Notifier,
        config: SqsConfig,
        metrics: Arc<Metrics>,
    ) -> SqsWorker {
        let storage = Storage::new(sdk);
        let outcome = OutcomeStep {
            storage: storage.clone(),
            notifier,
            metrics: metrics.clone(),
            output_path: config.output_path.clone(),
            failure_path: config.failure_path.clone(),
            region: config.region.clone(),
            include_response_body: config.include_response_body,
            step_attempts: config.step_attempts,
        };
        metrics.watch_model(engine.model());
        let checkpoints = config
            .checkpoint_every
            .map(|every| Checkpoints::new(storage.clone(), &config.output_path, every));
        SqsWorker {
            checkpoints,
            segments: SegmentStore::new(storage.clone(), &config.output_path),
            engine,
            storage,
            sqs: aws_sdk_sqs::Client::new(sdk),
            config,
            metrics,
            outcome,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn lease(&self, receipt: String, receive_count: i64) -> Lease {
        Lease::new(
            self.sqs.clone(),
            LeasePolicy {
                queue_url: self.config.queue_url.clone(),
                visibility_timeout_s: self.config.visibility_timeout_s,
                retry_backoff_s: self.config.retry_backoff_s,
                delete_attempts: self.config.step_attempts,
            },
            receipt,
            receive_count,
        )
    }

    /// Receive and process messages until `shutdown` is cancelled, then let in-flight
    /// jobs finish within the drain timeout and hand back the rest.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let hard_stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_secs(1);
        let mut stopped_at: Option<Instant> = None;
        info!(queue = %self.config.queue_url, concurrency = self.config.concurrency, "worker started");
        // Downloads a killed worker left in the temp dir (live ones are locked).
        let swept = crate::storage::sweep_stale_temp_files(&self.config.temp_dir);
        if swept > 0 {
            info!(swept, dir = %self.config.temp_dir.display(), "removed downloads left by a stopped worker");
        }
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    warn!("a job task ended abnormally: {e}");
                }
            }
            // Only receive what can be started now: a message held while waiting for a
            // slot would count against its visibility timeout for nothing.
            let mut permits = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => vec![p.expect("the semaphore is never closed")],
            };
            while permits.len() < 10 {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let receive = self.receive(permits.len() as i32);
            tokio::pin!(receive);
            let received = tokio::select! {
                biased;
                r = &mut receive => r,
                _ = shutdown.cancelled() => {
                    // A long poll in progress may already have been handed messages:
                    // dropping it would leave them invisible for a whole visibility
                    // timeout. Let it end (within the wait time) and give them back.
                    stopped_at = Some(Instant::now());
                    if let Ok(messages) = receive.await {
                        self.release_all(messages).await;
                    }
                    break;
                }
            };
            match received {
                Ok(messages) => {
                    backoff = Duration::from_secs(1);
                    for (message, permit) in messages.into_iter().zip(permits.drain(..)) {
                        let worker = self.clone();
                        let stop = hard_stop.clone();
                        tasks.spawn(async move {
                            worker.handle(message, stop).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    warn!("receiving from the queue failed, retrying in {backoff:?}: {e}");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        self.drain(tasks, hard_stop, stopped_at).await;
    }

    /// Let in-flight jobs finish within the drain timeout (counted from the shutdown
    /// signal, not from the end of a long poll that was let finish), then hand back
    /// what is left.
    async fn drain(
        &self,
        mut tasks: JoinSet<()>,
        hard_stop: CancellationToken,
        stopped_at: Option<Instant>,
    ) {
        info!(
            in_flight = tasks.len(),
            "shutting down: no new messages; draining"
        );
        let since = stopped_at.map_or(Duration::ZERO, |t| t.elapsed());
        let drained =
            tokio::time::timeout(self.config.drain_timeout.saturating_sub(since), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        if drained.is_err() {
            warn!(
                left = tasks.len(),
                "drain timeout: handing the remaining messages back"
            );
            hard_stop.cancel();
            while tasks.join_next().await.is_some() {}
        }
        info!("worker stopped");
    }

    /// Hand back messages received while stopping.
    async fn release_all(&self, messages: Vec<Message>) {
        let count = messages.len();
        for m in messages {
            if let Some(r) = m.receipt_handle() {
                self.lease(r.to_string(), 1).release().await;
            }
        }
        if count > 0 {
            info!(count, "handed back messages received while stopping");
        }
    }

    async fn receive(&self, max: i32) -> Result<Vec<Message>, String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.config.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(self.config.wait_time_s.clamp(0, 20))
            .visibility_timeout(self.config.visibility_timeout_s)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| classify(&e).1)?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Process one message end to end. Never panics on bad input; every path ends in
    /// exactly one of: deleted (completed/failed), deferred, handed back.
    async fn handle(&self, message: Message, hard_stop: CancellationToken) {
        let at = OffsetDateTime::now_utc();
        let message_id = message.message_id().unwrap_or("unknown").to_string();
        let Some(receipt) = message.receipt_handle().map(str::to_string) else {
            warn!(message_id, "message without a receipt handle: ignored");
            return;
        };
        let attr = |k: MessageSystemAttributeName| {
            message
                .attributes()
                .and_then(|a| a.get(&k))
                .and_then(|v| v.parse::<i64>().ok())
        };
        let sent_ms = attr(MessageSystemAttributeName::SentTimestamp);
        let receive_count = attr(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(1);
        let received = Received {
            message_id,
            body: message.body().unwrap_or("").to_string(),
            sent_ms,
            at,
        };
        if let Some(wait_ms) = received.wait_ms() {
            self.metrics.queue_wait(wait_ms.max(0) as f64 / 1000.0);
        }
        let lease = self.lease(receipt, receive_count);
        self.metrics.in_flight(1);
        // The job's fields are filled in as it runs, so its last line ("job finished")
        // carries them all: one structured line per job.
        let empty = tracing::field::Empty;
        let span = tracing::info_span!(
            "job",
            message_id = %received.message_id,
            inference_id = empty,
            segment = empty,
            input_bytes = empty,
            frames_sampled = empty,
            frames_decoded = empty,
            detections = empty,
            download_s = empty,
            decode_s = empty,
            infer_s = empty,
        );
        let started = Instant::now();
        let outcome = async {
            // A segment of a request split earlier (by this worker or another).
            if let Some(seg) = SegmentMessage::parse(&received.body) {
                return self.handle_segment(seg, lease, &hard_stop).await;
            }
            let (info, result, ran) = match self.admit(&received) {
                Ok((request, params, info)) => {
                    let result = self
                        .run_job(&info, &request, &params, &lease, &hard_stop)
                        .await;
                    (info, result, true)
                }
                Err((info, e)) => (info, Err(e), false),
            };
            let outcome = match result {
                Ok(Done::Split) => {
                    // Handed on to the segment messages, which settle the request.
                    lease.delete().await;
                    Outcome::Split
                }
                Ok(Done::Document(doc)) => self.outcome.settle(&info, lease, Ok(doc)).await,
                Err(e) => self.outcome.settle(&info, lease, Err(e)).await,
            };
            // Settled for good (the message is deleted): its checkpoint has served.
            // Retried or handed back: kept, so the redelivery resumes from it.
            let settled = matches!(
                outcome,
                Outcome::Completed | Outcome::Failed | Outcome::Expired
            );
            if let (true, true, Some(c)) = (ran, settled, &self.checkpoints) {
                c.delete(&info.inference_id).await;
            }
            outcome
        }
        .instrument(span.clone())
        .await;
        info!(
            parent: &span,
            outcome = outcome.label(),
            total_s = started.elapsed().as_secs_f64(),
            model = %self.engine.model().info().name,
            "job finished"
        );
        self.metrics.in_flight(-1);
        self.metrics.job(outcome, started.elapsed().as_secs_f64());
    }

    /// Parse and check a message: the request, its input location, its TTL and its
    /// parameters. What is refused still yields the notification's request info.
    #[allow(clippy::result_large_err)]
    fn admit(
        &self,
        msg: &Received,
    ) -> Result<(Request, Params, RequestInfo), (RequestInfo, JobError)> {
        let request = Request::parse(&msg.body).and_then(|r| {
            self.config.allowed_inputs.check(&r.input)?;
            Ok(r)
        });
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                warn!("bad request: {e}");
                let info = RequestInfo {
                    inference_id: best_effort_id(&msg.body, &msg.message_id),
                    parameters: self.parameters(None, best_effort_input(&msg.body)),
                    received: msg.at,
                };
                return Err((info, JobError::BadRequest(e)));
            }
        };
        tracing::Span::current().record("inference_id", request.inference_id.as_str());
        let info = RequestInfo {
            inference_id: request.inference_id.clone(),
            parameters: self.parameters(Some(&request), request.input.to_string()),
            received: msg.at,
        };
        if let Some(age_s) = msg.age_s().filter(|age| *age > request.ttl_s as i64) {
            let ttl_s = request.ttl_s;
            return Err((info, JobError::Expired { age_s, ttl_s }));
        }
        match request.overrides.apply(&self.config.defaults) {
            Ok(params) => Ok((request, params, info)),
            Err(e) => Err((info, JobError::BadRequest(e))),
        }
    }

    fn parameters(&self, request: Option<&Request>, input_location: String) -> RequestParameters {
        RequestParameters {
            accept: request.and_then(|r| r.accept.clone()),
            content_type: request.and_then(|r| r.content_type.clone()),
            custom_attributes: request.and_then(|r| r.custom_attributes.clone()),
            endpoint_name: self.config.endpoint_name.clone(),
            input_location,
        }
    }

    /// Run the job while keeping the lease alive, within the request's invocation
    /// timeout, unless shutdown hands it back first. Returns the document.
    async fn run_job(
        &self,
        info: &RequestInfo,
        request: &Request,
        params: &Params,
        lease: &Lease,
        hard_stop: &CancellationToken,
    ) -> Result<Done, JobError> {
        let keep_alive = lease.keep_alive(self.config.heartbeat_every);
        let limit_s = request.invocation_timeout_s;
        let timeout = Duration::from_secs(limit_s);
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, self.process(info, request, params)) => {
                r.unwrap_or(Err(JobError::Timeout { limit_s }))
            }
            _ = hard_stop.cancelled() => Err(JobError::HandBack),
        };
        keep_alive.stop().await;
        result
    }

    /// Download the input and run the engine's job path on it, or split it into
    /// segments when it is long and splitting is asked for.
    async fn process(
        &self,
        info: &RequestInfo,
        request: &Request,
        params: &Params,
    ) -> Result<Done, JobError> {
        let Downloaded { file, bytes, etag } = self.download(&request.input).await?;
        let fingerprint = Fingerprint {
            input: request.input.to_string(),
            etag,
            size: bytes,
            params: params.clone(),
            model: self.engine.model().info().fingerprint.clone(),
        };
        let segment_s = request
            .overrides
            .segment_seconds
            .unwrap_or(self.config.segment_seconds);
        if segment_s > 0.0 {
            let split = self
                .split(info, request, &fingerprint, file.path(), segment_s)
                .await?;
            if split {
                return Ok(Done::Split);
            }
        }
        let id = request.inference_id.as_str();
        let resume = match &self.checkpoints {
            Some(c) => c.load(id, &fingerprint).await,
            None => Vec::new(),
        };
        let mut saver = self.checkpoints.as_ref().map(|c| c.saver(id, fingerprint));
        let mut log = crate::pipeline::ProgressLog::from_env();
        let mut progress = |p, frames: &[FrameDetections]| {
            log.observe(p);
            if let Some(s) = saver.as_mut() {
                s.offer(frames);
            }
        };
        let path = file.path();
        let mut result = self
            .engine
            .process_file_from(path, params, resume, &mut progress)
            .await;
        if let Err(PipelineError::Resume(why)) = &result {
            warn!("checkpoint ignored, starting over: {why}");
            result = self
                .engine
                .process_file_from(path, params, Vec::new(), &mut progress)
                .await;
        }
        if let Some(s) = saver {
            s.finish().await;
        }
        let done = result.map_err(JobError::Pipeline)?;
        drop(file);
        self.record_run(&done.stats);
        Ok(Done::Document(done.document))
    }

    /// Download `input` into the temp dir, timed into the download stage and the job's
    /// line.
    async fn download(&self, input: &S3Uri) -> Result<Downloaded, JobError> {
        let t = Instant::now();
        let downloaded = self
            .storage
            .download(input, &self.config.temp_dir, self.config.max_input_bytes)
            .await
            .map_err(JobError::Input)?;
        let download_s = t.elapsed().as_secs_f64();
        self.metrics.stage("download", download_s);
        let span = tracing::Span::current();
        span.record("input_bytes", downloaded.bytes);
        span.record("download_s", download_s);
        info!(bytes = downloaded.bytes, input = %input, "downloaded");
        Ok(downloaded)
    }

    /// An engine run's counts and timings, into the metrics and the job's line.
    fn record_run(&self, s: &crate::pipeline::JobStats) {
        let span = tracing::Span::current();
        span.record("frames_sampled", s.frames_sampled);
        span.record("frames_decoded", s.frames_decoded);
        span.record("detections", s.detections);
        span.record("decode_s", s.decode_s);
        span.record("infer_s", s.infer_s);
        self.metrics.engine_job(s);
    }
}

/// The inference id of a request that failed validation: its own when it has a valid
/// one, else its SQS message id (else a new one).
fn best_effort_id(body: &str, message_id: &str) -> String {
    let valid = |id: &str| crate::request::validate_inference_id(id).is_ok();
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("inferenceId")?.as_str().map(str::to_string))
        .filter(|id| valid(id))
        .or_else(|| valid(message_id).then(|| message_id.to_string()))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The `inputLocation` of a body that failed validation, when it has a readable one.
fn best_effort_input(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("inputLocation")?
                .as_str()
                .map(|s| s.chars().take(1100).collect())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_bodies_still_name_their_input() {
        assert_eq!(
            best_effort_input(r#"{"inputLocation":"s3://b/k","inferenceId":"../x"}"#),
            "s3://b/k"
        );
        assert_eq!(best_effort_input("garbage"), "");
        let mid = "0f3c2a1e-aaaa-bbbb-cccc-123456789012";
        assert_eq!(best_effort_id(r#"{"inferenceId":"mine"}"#, mid), "mine");
        assert_eq!(best_effort_id(r#"{"inferenceId":"../x"}"#, mid), mid);
        assert_eq!(best_effort_id("garbage", mid), mid);
        assert_ne!(best_effort_id("garbage", "a/b"), "a/b");
    }
}
