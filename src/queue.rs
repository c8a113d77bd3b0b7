//! The standalone worker: SQS in, S3 in and out, SNS out — SageMaker asynchronous
//! inference's semantics without SageMaker.
//!
//! Per message: parse and validate the request, check its TTL, extend the message's
//! visibility while the job runs (heartbeat), download the video, run the engine,
//! store `{output}/{inferenceId}.out`, publish the `InferenceResult` notification, and
//! only then delete the message. Failures are sorted in one place ([`JobError`]):
//! - the request is bad (unreadable media, missing object, bad parameters, timeout):
//!   store an error object, notify the error topic, delete the message;
//! - the infrastructure failed (S3/SNS throttling or outage, missing output bucket):
//!   leave the message (visible again after a short backoff) so it is redelivered, and
//!   after the queue's `maxReceiveCount` the redrive policy moves it to the DLQ;
//! - the worker is shutting down past its grace period: hand the message back
//!   (visibility 0) without writing anything.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::aws::{classify, retry};
use crate::metrics::{Metrics, Outcome};
use crate::notify::{InferenceResult, Notifier, RequestParameters};
use crate::pipeline::{Engine, Job, Params};
use crate::request::{InputPolicy, Request};
use crate::storage::{S3Uri, Storage, StorageError};
use crate::video::Source;

/// How the queue worker runs. Defaults are in `vidinfer-worker sqs --help`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
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
    /// Seconds a message stays invisible after a transient failure, per receive so far.
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
}

/// Why a job did not complete.
#[derive(Debug)]
enum JobError {
    /// The request is bad: fail it, notify, delete.
    Request(String),
    /// Infrastructure: leave the message for redelivery.
    Transient(String),
    /// Shutdown past the grace period: hand the message back untouched.
    HandBack,
}

fn storage_error(e: StorageError) -> JobError {
    if e.is_transient() {
        JobError::Transient(e.to_string())
    } else {
        JobError::Request(e.to_string())
    }
}

/// Renew a message's visibility every `every` until `stop` is cancelled, by calling
/// `extend` (which returns false when the renewal failed). Returns how many renewals
/// were made. Generic so its timing can be tested with a paused clock.
pub async fn heartbeat<F, Fut>(every: Duration, stop: CancellationToken, mut extend: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut n = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return n,
            _ = tokio::time::sleep(every) => {}
        }
        if !extend().await {
            warn!("could not extend the message's visibility; it may be redelivered");
        }
        n += 1;
    }
}

/// The queue worker.
pub struct QueueWorker {
    engine: Engine,
    storage: Storage,
    notifier: Notifier,
    sqs: aws_sdk_sqs::Client,
    config: QueueConfig,
    metrics: Arc<Metrics>,
}

/// What the notification needs to know about a request, parsed or not.
struct RequestInfo {
    inference_id: String,
    parameters: RequestParameters,
}

impl QueueWorker {
    pub fn new(
        engine: Engine,
        sdk: &aws_config::SdkConfig,
        notifier: Notifier,
        config: QueueConfig,
        metrics: Arc<Metrics>,
    ) -> QueueWorker {
        QueueWorker {
            engine,
            storage: Storage::new(sdk),
            notifier,
            sqs: aws_sdk_sqs::Client::new(sdk),
            config,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    warn!("a job task ended abnormally: {e}");
                }
            }
            // Only receive what can be started now: a message held while waiting for a
            // slot would count against its visibility timeout for nothing.
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let mut permits = vec![first];
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
                        for m in &messages {
                            if let Some(r) = m.receipt_handle() {
                                self.set_visibility(r, 0).await;
                            }
                        }
                        if !messages.is_empty() {
                            info!(count = messages.len(), "handed back messages received while stopping");
                        }
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
        info!(
            in_flight = tasks.len(),
            "shutting down: no new messages; draining"
        );
        // The drain timeout counts from the shutdown signal, not from the end of a
        // long poll that was let finish.
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

    async fn set_visibility(&self, receipt: &str, seconds: i32) -> bool {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.config.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| warn!("changing visibility failed: {}", classify(&e).1))
            .is_ok()
    }

    async fn delete(&self, receipt: &str) -> bool {
        let r = retry(
            self.config.step_attempts,
            |_: &String| true,
            || async {
                self.sqs
                    .delete_message()
                    .queue_url(&self.config.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| classify(&e).1)
            },
        )
        .await;
        if let Err(e) = &r {
            warn!("deleting the message failed; it will be redelivered and processed again: {e}");
        }
        r.is_ok()
    }

    /// Process one message end to end. Never panics on bad input; every path ends in
    /// exactly one of: deleted (completed/failed), left for redelivery, handed back.
    async fn handle(&self, message: Message, hard_stop: CancellationToken) {
        let received = OffsetDateTime::now_utc();
        let message_id = message.message_id().unwrap_or("unknown").to_string();
        let Some(receipt) = message.receipt_handle().map(str::to_string) else {
            warn!(message_id, "message without a receipt handle: ignored");
            return;
        };
        let attrs = message.attributes();
        let attr = |k: MessageSystemAttributeName| {
            attrs
                .and_then(|a| a.get(&k))
                .and_then(|v| v.parse::<i64>().ok())
        };
        let sent_ms = attr(MessageSystemAttributeName::SentTimestamp);
        let receive_count = attr(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(1);
        if let Some(sent) = sent_ms {
            let wait = (received.unix_timestamp_nanos() / 1_000_000) as i64 - sent;
            self.metrics.queue_wait(wait.max(0) as f64 / 1000.0);
        }
        let body = message.body().unwrap_or("");
        self.metrics.in_flight(1);
        let span = tracing::info_span!("job", message_id = %message_id, inference_id = tracing::field::Empty);
        let outcome = self
            .handle_inner(
                body,
                &message_id,
                &receipt,
                sent_ms,
                receive_count,
                received,
                hard_stop,
            )
            .instrument(span)
            .await;
        self.metrics.in_flight(-1);
        self.metrics.job(outcome);
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle_inner(
        &self,
        body: &str,
        message_id: &str,
        receipt: &str,
        sent_ms: Option<i64>,
        receive_count: i64,
        received: OffsetDateTime,
        hard_stop: CancellationToken,
    ) -> Outcome {
        let req = match Request::parse(body).and_then(|r| {
            self.config.allowed_inputs.check(&r.input)?;
            Ok(r)
        }) {
            Ok(r) => r,
            Err(e) => {
                let info = RequestInfo {
                    inference_id: best_effort_id(body, message_id),
                    parameters: RequestParameters {
                        accept: None,
                        content_type: None,
                        custom_attributes: None,
                        endpoint_name: self.config.endpoint_name.clone(),
                        input_location: best_effort_input(body),
                    },
                };
                warn!("bad request: {e}");
                return self
                    .fail(
                        &info,
                        receipt,
                        received,
                        format!("ClientError: {e}"),
                        Outcome::Failed,
                    )
                    .await;
            }
        };
        tracing::Span::current().record("inference_id", req.inference_id.as_str());
        let info = RequestInfo {
            inference_id: req.inference_id.clone(),
            parameters: RequestParameters {
                accept: req.accept.clone(),
                content_type: req.content_type.clone(),
                custom_attributes: req.custom_attributes.clone(),
                endpoint_name: self.config.endpoint_name.clone(),
                input_location: req.input.to_string(),
            },
        };
        if let Some(sent) = sent_ms {
            let age_s = ((received.unix_timestamp_nanos() / 1_000_000) as i64 - sent) / 1000;
            if age_s > req.ttl_s as i64 {
                let reason = format!(
                    "ExpiredRequest: the request waited {age_s} s in the queue, longer than its requestTTLSeconds ({} s)",
                    req.ttl_s
                );
                warn!("{reason}");
                return self
                    .fail(&info, receipt, received, reason, Outcome::Expired)
                    .await;
            }
        }
        let params = match req.overrides.apply(&self.config.defaults) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .fail(
                        &info,
                        receipt,
                        received,
                        format!("ClientError: {e}"),
                        Outcome::Failed,
                    )
                    .await
            }
        };

        let stop_heartbeat = CancellationToken::new();
        let hb = {
            let stop = stop_heartbeat.clone();
            let every = self.config.heartbeat_every;
            let vis = self.config.visibility_timeout_s;
            let receipt = receipt.to_string();
            let sqs = self.sqs.clone();
            let queue = self.config.queue_url.clone();
            tokio::spawn(heartbeat(every, stop, move || {
                let sqs = sqs.clone();
                let queue = queue.clone();
                let receipt = receipt.clone();
                async move {
                    sqs.change_message_visibility()
                        .queue_url(queue)
                        .receipt_handle(receipt)
                        .visibility_timeout(vis)
                        .send()
                        .await
                        .is_ok()
                }
            }))
        };
        let started = Instant::now();
        let timeout = Duration::from_secs(req.invocation_timeout_s);
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, self.process(&req, &params)) => match r {
                Ok(r) => r,
                Err(_) => Err(JobError::Request(format!(
                    "InvocationTimeout: the job did not finish within invocationTimeoutSeconds ({} s)",
                    req.invocation_timeout_s
                ))),
            },
            _ = hard_stop.cancelled() => Err(JobError::HandBack),
        };
        stop_heartbeat.cancel();
        let _ = hb.await;
        self.metrics.stage("job", started.elapsed().as_secs_f64());

        match result {
            Ok((output, doc)) => {
                let body = self.config.include_response_body.then_some(doc.as_slice());
                let note = InferenceResult::completed(
                    &self.config.region,
                    received,
                    &info.inference_id,
                    info.parameters.clone(),
                    "application/json",
                    output.to_string(),
                    body,
                );
                if let Err(e) = self.publish(&note).await {
                    warn!("notification failed; leaving the message for redelivery (the output is stored): {e}");
                    self.set_visibility(receipt, self.backoff(receive_count))
                        .await;
                    return Outcome::Retried;
                }
                self.delete(receipt).await;
                info!(output = %output, "completed");
                Outcome::Completed
            }
            Err(JobError::Request(reason)) => {
                warn!("failed: {reason}");
                self.fail(&info, receipt, received, reason, Outcome::Failed)
                    .await
            }
            Err(JobError::Transient(reason)) => {
                warn!(
                    receive_count,
                    "transient failure, the message will be redelivered: {reason}"
                );
                self.set_visibility(receipt, self.backoff(receive_count))
                    .await;
                Outcome::Retried
            }
            Err(JobError::HandBack) => {
                self.set_visibility(receipt, 0).await;
                info!("handed back at shutdown");
                Outcome::HandedBack
            }
        }
    }

    fn backoff(&self, receive_count: i64) -> i32 {
        (self.config.retry_backoff_s as i64 * receive_count.max(1)).min(900) as i32
    }

    /// Download, infer, store. Returns where the output went and the document.
    async fn process(&self, req: &Request, params: &Params) -> Result<(S3Uri, Vec<u8>), JobError> {
        let t = Instant::now();
        let (file, bytes) = self
            .storage
            .download(
                &req.input,
                &self.config.temp_dir,
                self.config.max_input_bytes,
            )
            .await
            .map_err(storage_error)?;
        self.metrics.stage("download", t.elapsed().as_secs_f64());
        info!(bytes, input = %req.input, "downloaded");
        let job = Job {
            source: Source::Path(file.path().to_path_buf()),
            params: params.clone(),
        };
        let out = self.engine.run(job, |_| {}).await.map_err(|e| {
            if e.is_transient() {
                JobError::Transient(e.to_string())
            } else {
                JobError::Request(format!("ClientError: {e}"))
            }
        })?;
        drop(file);
        self.metrics.engine_job(&out.stats);
        let doc = out.document(self.engine.model(), params);
        let output = self
            .config
            .output_path
            .join(&format!("{}.out", req.inference_id));
        let t = Instant::now();
        retry(
            self.config.step_attempts,
            StorageError::is_transient,
            || self.storage.put(&output, doc.clone(), "application/json"),
        )
        .await
        // The output location is the operator's: any failure to write it is not the
        // request's fault, so the message stays for redelivery (and the DLQ).
        .map_err(|e| JobError::Transient(format!("storing the result: {e}")))?;
        self.metrics.stage("upload", t.elapsed().as_secs_f64());
        Ok((output, doc))
    }

    async fn publish(&self, note: &InferenceResult) -> Result<(), String> {
        let t = Instant::now();
        let r = retry(
            self.config.step_attempts,
            |e: &crate::notify::NotifyError| e.transient,
            || self.notifier.publish(note),
        )
        .await;
        self.metrics.stage("notify", t.elapsed().as_secs_f64());
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Fail a request: store the error object, notify the error topic, delete the
    /// message. If storing or notifying fails, the message is left for redelivery.
    async fn fail(
        &self,
        info: &RequestInfo,
        receipt: &str,
        received: OffsetDateTime,
        reason: String,
        outcome: Outcome,
    ) -> Outcome {
        let location = self
            .config
            .failure_path
            .join(&format!("{}-error.out", info.inference_id));
        let body = serde_json::to_vec(&serde_json::json!({
            "inferenceId": info.inference_id,
            "inputLocation": info.parameters.input_location,
            "failureReason": reason,
        }))
        .expect("json");
        let stored = retry(
            self.config.step_attempts,
            StorageError::is_transient,
            || {
                self.storage
                    .put(&location, body.clone(), "application/json")
            },
        )
        .await;
        if let Err(e) = stored {
            warn!("storing the failure object failed; leaving the message for redelivery: {e}");
            self.set_visibility(receipt, self.config.retry_backoff_s)
                .await;
            return Outcome::Retried;
        }
        let note = InferenceResult::failed(
            &self.config.region,
            received,
            &info.inference_id,
            info.parameters.clone(),
            reason,
            Some(location.to_string()),
        );
        if let Err(e) = self.publish(&note).await {
            warn!("failure notification failed; leaving the message for redelivery: {e}");
            self.set_visibility(receipt, self.config.retry_backoff_s)
                .await;
            return Outcome::Retried;
        }
        self.delete(receipt).await;
        outcome
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
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn heartbeat_renews_on_schedule_and_stops_when_told() {
        let calls = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let c = calls.clone();
        let task = tokio::spawn(heartbeat(
            Duration::from_secs(30),
            stop.clone(),
            move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    true
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing before the first interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        stop.cancel();
        assert_eq!(task.await.unwrap(), 11);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 11, "no renewals after stop");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_keeps_going_when_a_renewal_fails() {
        let calls = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let c = calls.clone();
        let task = tokio::spawn(heartbeat(
            Duration::from_secs(10),
            stop.clone(),
            move || {
                let c = c.clone();
                async move { c.fetch_add(1, Ordering::SeqCst) % 2 == 0 }
            },
        ));
        tokio::time::sleep(Duration::from_secs(55)).await;
        stop.cancel();
        assert_eq!(task.await.unwrap(), 5);
    }

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
