//! SageMaker's asynchronous-inference `InferenceResult` notification, parsed with the
//! load test's own struct, the way any downstream consumer would: if this parses what
//! the workers publish, consumers written for SageMaker work unchanged.
//!
//! A notification reaches an SQS queue subscribed to the topic either raw
//! (`RawMessageDelivery`) or wrapped in SNS's envelope (`{"Type": "Notification",
//! "Message": "<the JSON as a string>", ...}`); both are accepted.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The fields the load test reads; everything else is ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceResult {
    pub inference_id: String,
    /// `Completed` or `Failed`.
    pub invocation_status: String,
    /// When the request was accepted: the worker's pick-up time for the SQS worker,
    /// the endpoint's acceptance of `InvokeEndpointAsync` for SageMaker.
    pub received_time: String,
    /// When the result (or the failure) was final.
    pub event_time: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub response_parameters: Option<ResponseParameters>,
    #[serde(default)]
    pub response_body: Option<ResponseBody>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseParameters {
    #[serde(default)]
    pub output_location: Option<String>,
    #[serde(default)]
    pub failure_location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseBody {
    pub content: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

/// Why a message on a notification queue is not a notification.
#[derive(Debug, thiserror::Error)]
#[error("not an InferenceResult notification ({0})")]
pub struct NotANotification(String);

impl InferenceResult {
    /// Parse an SQS message body: a raw notification or one in SNS's envelope.
    pub fn from_sqs_body(body: &str) -> Result<InferenceResult, NotANotification> {
        if let Ok(env) = serde_json::from_str::<Envelope>(body) {
            if env.kind == "Notification" {
                return serde_json::from_str(&env.message)
                    .map_err(|e| NotANotification(e.to_string()));
            }
        }
        serde_json::from_str(body).map_err(|e| NotANotification(e.to_string()))
    }

    pub fn is_completed(&self) -> bool {
        self.invocation_status == "Completed"
    }

    pub fn received(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.received_time, &Rfc3339).ok()
    }

    pub fn event(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.event_time, &Rfc3339).ok()
    }

    /// The failure's category (see [`failure_kind`]).
    pub fn failure_kind(&self) -> Option<String> {
        self.failure_reason.as_deref().map(failure_kind)
    }

    /// A fingerprint of the result carried inline (`responseBody`), to tell whether two
    /// notifications for one request carry the same result. FNV-1a: stable across
    /// runs and platforms, unlike std's hasher.
    pub fn result_hash(&self) -> Option<String> {
        self.response_body.as_ref().map(|b| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in b.content.as_bytes() {
                h ^= u64::from(*byte);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
    }

    pub fn output_location(&self) -> Option<&str> {
        self.response_parameters.as_ref().and_then(|r| {
            r.output_location
                .as_deref()
                .or(r.failure_location.as_deref())
        })
    }
}

/// A short category for a failure reason: the part before the first `:`
/// (`ClientError`, `ExpiredRequest`, ...), so failures can be counted by kind.
pub fn failure_kind(reason: &str) -> String {
    let head = reason.split(':').next().unwrap_or(reason).trim();
    if head.is_empty() || head.len() > 60 {
        "Other".to_string()
    } else {
        head.to_string()
    }
}

/// SageMaker's timestamp form, ISO-8601 UTC with milliseconds: the worker's own.
pub use vidinfer_aws::notify::timestamp;

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = r#"{"awsRegion":"us-east-1","eventTime":"2022-01-25T22:46:00.608Z","receivedTime":"2022-01-25T22:45:58.108Z","invocationStatus":"Completed","requestParameters":{"contentType":"video/mp4","endpointName":"e","inputLocation":"s3://b/in.mp4"},"responseParameters":{"contentType":"application/json","outputLocation":"s3://b/out/x-1.out"},"responseBody":{"content":"{}","encoding":"STRING"},"inferenceId":"x-1","eventVersion":"1.0","eventSource":"aws:sagemaker","eventName":"InferenceResult"}"#;

    #[test]
    fn parses_raw_and_enveloped_notifications() {
        let raw = InferenceResult::from_sqs_body(NOTE).unwrap();
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ok",
            "Message": NOTE,
        })
        .to_string();
        let wrapped = InferenceResult::from_sqs_body(&envelope).unwrap();
        assert_eq!(raw, wrapped);
        assert_eq!(raw.inference_id, "x-1");
        assert!(raw.is_completed());
        assert_eq!(raw.output_location(), Some("s3://b/out/x-1.out"));
        let took = raw.event().unwrap() - raw.received().unwrap();
        assert_eq!(took.whole_milliseconds(), 2500);
        assert_eq!(raw.result_hash().unwrap().len(), 16);
    }

    #[test]
    fn failures_are_counted_by_the_head_of_their_reason() {
        let mut n = InferenceResult::from_sqs_body(NOTE).unwrap();
        n.invocation_status = "Failed".into();
        n.failure_reason = Some("ClientError: the object does not exist".into());
        assert_eq!(n.failure_kind().as_deref(), Some("ClientError"));
        n.failure_reason = Some(String::new());
        assert_eq!(n.failure_kind().as_deref(), Some("Other"));
    }

    #[test]
    fn other_messages_are_refused() {
        assert!(InferenceResult::from_sqs_body("hello").is_err());
        assert!(
            InferenceResult::from_sqs_body(r#"{"Type":"Notification","Message":"{}"}"#).is_err()
        );
    }

    #[test]
    fn timestamps_round_trip() {
        let t = time::macros::datetime!(2022-01-25 22:46:00.608 UTC);
        assert_eq!(timestamp(t), "2022-01-25T22:46:00.608Z");
        assert_eq!(OffsetDateTime::parse(&timestamp(t), &Rfc3339).unwrap(), t);
    }
}
