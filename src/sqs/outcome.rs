//! The outcome step: what happens to a message once its job has ended, one way or the
//! other. Errors arrive here with their types ([`JobError`]); this is the one place
//! that decides what they mean for the message and writes the failure reason:
//! - completed: store `{output}/{inferenceId}.out`, notify the success topic, delete;
//! - the request is bad ([`Disposition::Fail`]): store `{failure}/{inferenceId}-error.out`,
//!   notify the error topic, delete;
//! - the infrastructure failed ([`Disposition::Retry`]): defer the message, which is
//!   redelivered, and after the queue's `maxReceiveCount` goes to the dead-letter queue;
//! - shutdown past the grace period ([`Disposition::HandBack`]): release it untouched.
//!
//! A message is deleted only after its result (or failure) is stored and notified: when
//! storing or notifying fails, it is deferred instead.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use tracing::{info, warn};

use super::lease::Lease;
use crate::aws::retry;
use crate::metrics::{Metrics, Outcome};
use crate::notify::{InferenceResult, Notifier, NotifyError, RequestParameters};
use crate::pipeline::PipelineError;
use crate::request::RequestError;
use crate::storage::{S3Uri, Storage, StorageError};
use crate::video::TimeRange;

/// Why a message's job did not complete, typed until [`JobError::reason`] writes it.
#[derive(Debug)]
pub enum JobError {
    /// The message or its parameters are invalid.
    BadRequest(RequestError),
    /// The request waited in the queue longer than its `requestTTLSeconds`.
    Expired { age_s: i64, ttl_s: u64 },
    /// The job ran longer than its `invocationTimeoutSeconds`.
    Timeout { limit_s: u64 },
    /// Fetching the input failed (a missing object is the request's fault, throttling
    /// is not).
    Input(StorageError),
    /// Decoding or inference failed.
    Pipeline(PipelineError),
    /// The result could not be written to the operator's output location.
    StoreResult(StorageError),
    /// The result is stored but its success notification could not be published.
    Notify(NotifyError),
    /// Shutdown past the grace period.
    HandBack,
    /// Reading or writing a split request's objects (manifest, parts, claim) failed.
    Parts(StorageError),
    /// Sending a split request's segment messages failed.
    Enqueue(String),
    /// The stored parts of a split request do not make one document.
    Assembly(String),
    /// A segment cannot be computed as its request was split: the input object or the
    /// model changed in between.
    Mismatch(String),
    /// One segment of a split request failed; the request fails with its reason.
    Segment {
        index: usize,
        count: usize,
        range: TimeRange,
        source: Box<JobError>,
    },
    /// A split request already failed by one of its segments: that reason, as stored.
    Claimed(String),
}

/// What a [`JobError`] means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Store the failure, notify, delete; counted as this outcome.
    Fail(Outcome),
    /// Leave the message for redelivery.
    Retry,
    /// Give the message back untouched.
    HandBack,
}

impl JobError {
    pub fn disposition(&self) -> Disposition {
        match self {
            JobError::BadRequest(_) | JobError::Timeout { .. } => {
                Disposition::Fail(Outcome::Failed)
            }
            JobError::Expired { .. } => Disposition::Fail(Outcome::Expired),
            JobError::Input(e) if e.is_transient() => Disposition::Retry,
            JobError::Input(_) => Disposition::Fail(Outcome::Failed),
            JobError::Pipeline(e) if e.is_transient() => Disposition::Retry,
            JobError::Pipeline(_) => Disposition::Fail(Outcome::Failed),
            // The output location is the operator's: any failure to write it is not
            // the request's fault, so the message stays for redelivery (and the DLQ).
            JobError::StoreResult(_) | JobError::Notify(_) => Disposition::Retry,
            JobError::HandBack => Disposition::HandBack,
            // The segment objects live under the operator's output location.
            JobError::Parts(_) | JobError::Enqueue(_) => Disposition::Retry,
            JobError::Assembly(_) | JobError::Mismatch(_) | JobError::Claimed(_) => {
                Disposition::Fail(Outcome::Failed)
            }
            JobError::Segment { source, .. } => source.disposition(),
        }
    }

    /// The failure reason, as it appears in the error object and the notification.
    /// Errors the request caused in the engine are prefixed `ClientError:`, like
    /// SageMaker's; the others name what failed.
    pub fn reason(&self) -> String {
        match self {
            JobError::BadRequest(e) => format!("ClientError: {e}"),
            JobError::Expired { age_s, ttl_s } => format!(
                "ExpiredRequest: the request waited {age_s} s in the queue, longer than its requestTTLSeconds ({ttl_s} s)"
            ),
            JobError::Timeout { limit_s } => format!(
                "InvocationTimeout: the job did not finish within invocationTimeoutSeconds ({limit_s} s)"
            ),
            JobError::Input(e) => e.to_string(),
            JobError::Pipeline(e) if e.is_transient() => e.to_string(),
            JobError::Pipeline(e) => format!("ClientError: {e}"),
            JobError::StoreResult(e) => format!("storing the result: {e}"),
            JobError::Notify(e) => format!("notifying (the output is stored): {e}"),
            JobError::HandBack => "handed back at shutdown".into(),
            JobError::Parts(e) => format!("segment objects: {e}"),
            JobError::Enqueue(e) => format!("sending the segment messages: {e}"),
            JobError::Assembly(why) => {
                format!("ClientError: the segments' parts do not make one document: {why}")
            }
            JobError::Mismatch(why) => format!("ClientError: {why}"),
            JobError::Segment {
                index,
                count,
                range,
                source,
            } => {
                let end = range.end_s.map_or("the end".to_string(), |e| format!("{e} s"));
                format!(
                    "{} (segment {} of {}: {} s to {end})",
                    source.reason(),
                    index + 1,
                    count,
                    range.start_s
                )
            }
            JobError::Claimed(reason) => reason.clone(),
        }
    }
}

/// What a notification needs to know about a request, parsed or not.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub inference_id: String,
    pub parameters: RequestParameters,
    /// When the message was received (the notification's `receivedTime`).
    pub received: OffsetDateTime,
}

/// Where outcomes go, shared by every job of a worker.
pub struct OutcomeStep {
    pub storage: Storage,
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
    /// `{output_path}/{inferenceId}.out` (SageMaker's S3OutputPath).
    pub output_path: S3Uri,
    /// `{failure_path}/{inferenceId}-error.out` (SageMaker's S3FailurePath).
    pub failure_path: S3Uri,
    /// `awsRegion` in notifications.
    pub region: String,
    /// Include the result in success notifications when it is at most 128 KB.
    pub include_response_body: bool,
    /// Attempts for each step (store, notify) before the message is deferred.
    pub step_attempts: u32,
}

impl OutcomeStep {
    /// Settle a message: the one place a job's result decides its message's fate.
    pub async fn settle(
        &self,
        info: &RequestInfo,
        lease: Lease,
        result: Result<Vec<u8>, JobError>,
    ) -> Outcome {
        let error = match result {
            Ok(doc) => match self.complete(info, doc).await {
                Ok(output) => {
                    lease.delete().await;
                    info!(output = %output, "completed");
                    return Outcome::Completed;
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        match error.disposition() {
            Disposition::Fail(outcome) => {
                let reason = error.reason();
                warn!("failed: {reason}");
                self.fail(info, lease, reason, outcome).await
            }
            Disposition::Retry => {
                warn!(
                    "transient failure, the message will be redelivered: {}",
                    error.reason()
                );
                lease.defer().await;
                Outcome::Retried
            }
            Disposition::HandBack => {
                lease.release().await;
                info!("handed back at shutdown");
                Outcome::HandedBack
            }
        }
    }

    /// Store the result and notify the success topic.
    async fn complete(&self, info: &RequestInfo, doc: Vec<u8>) -> Result<S3Uri, JobError> {
        let output = self.output_path.join(&format!("{}.out", info.inference_id));
        let t = Instant::now();
        retry(self.step_attempts, StorageError::is_transient, || {
            self.storage.put(&output, doc.clone(), "application/json")
        })
        .await
        .map_err(JobError::StoreResult)?;
        self.metrics.stage("upload", t.elapsed().as_secs_f64());
        let body = self.include_response_body.then_some(doc.as_slice());
        let note = InferenceResult::completed(
            &self.region,
            info.received,
            &info.inference_id,
            info.parameters.clone(),
            "application/json",
            output.to_string(),
            body,
        );
        // On failure the output is stored and only the notification is missing:
        // redelivery writes the same output again and retries the notification.
        self.publish(&note).await.map_err(JobError::Notify)?;
        Ok(output)
    }

    /// Fail a request: store the error object, notify the error topic, delete the
    /// message. If storing or notifying fails, the message is deferred instead.
    async fn fail(
        &self,
        info: &RequestInfo,
        lease: Lease,
        reason: String,
        outcome: Outcome,
    ) -> Outcome {
        let location = self
            .failure_path
            .join(&format!("{}-error.out", info.inference_id));
        let body = serde_json::to_vec(&serde_json::json!({
            "inferenceId": info.inference_id,
            "inputLocation": info.parameters.input_location,
            "failureReason": reason,
        }))
        .expect("json");
        let stored = retry(self.step_attempts, StorageError::is_transient, || {
            self.storage
                .put(&location, body.clone(), "application/json")
        })
        .await;
        if let Err(e) = stored {
            warn!("storing the failure object failed; leaving the message for redelivery: {e}");
            lease.defer().await;
            return Outcome::Retried;
        }
        let note = InferenceResult::failed(
            &self.region,
            info.received,
            &info.inference_id,
            info.parameters.clone(),
            reason,
            Some(location.to_string()),
        );
        if let Err(e) = self.publish(&note).await {
            warn!("failure notification failed; leaving the message for redelivery: {e}");
            lease.defer().await;
            return Outcome::Retried;
        }
        lease.delete().await;
        outcome
    }

    async fn publish(&self, note: &InferenceResult) -> Result<(), NotifyError> {
        let t = Instant::now();
        let r = retry(
            self.step_attempts,
            |e: &NotifyError| e.transient,
            || self.notifier.publish(note),
        )
        .await;
        self.metrics.stage("notify", t.elapsed().as_secs_f64());
        r.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_dispositions_are_decided_in_one_place() {
        let bad = JobError::BadRequest(RequestError("frame_interval must be at least 1".into()));
        assert_eq!(bad.disposition(), Disposition::Fail(Outcome::Failed));
        assert_eq!(
            bad.reason(),
            "ClientError: frame_interval must be at least 1"
        );
        let expired = JobError::Expired {
            age_s: 70,
            ttl_s: 60,
        };
        assert_eq!(expired.disposition(), Disposition::Fail(Outcome::Expired));
        assert!(expired.reason().starts_with("ExpiredRequest: "));
        let timeout = JobError::Timeout { limit_s: 5 };
        assert!(timeout.reason().starts_with("InvocationTimeout: "));
        let no_object = JobError::Input(StorageError::NotFound {
            uri: "s3://b/k".into(),
        });
        assert_eq!(no_object.disposition(), Disposition::Fail(Outcome::Failed));
        let corrupt = JobError::Pipeline(PipelineError::Video(crate::video::VideoError::NoFrames));
        assert_eq!(corrupt.disposition(), Disposition::Fail(Outcome::Failed));
        assert!(corrupt.reason().starts_with("ClientError: "));
        let stopped = JobError::Pipeline(PipelineError::Model(crate::model::ModelError::Stopped));
        assert_eq!(stopped.disposition(), Disposition::Retry);
        assert!(!stopped.reason().starts_with("ClientError"));
        let store = JobError::StoreResult(StorageError::NotFound {
            uri: "s3://out/x".into(),
        });
        assert_eq!(store.disposition(), Disposition::Retry);
        assert_eq!(JobError::HandBack.disposition(), Disposition::HandBack);
    }
}
