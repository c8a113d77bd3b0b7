//! SNS notifications in SageMaker asynchronous inference's exact `InferenceResult`
//! shape, so consumers written for a SageMaker endpoint work unchanged with the
//! standalone worker.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aws::{classify, ErrorKind};

/// Largest response body SageMaker includes in a notification (128 KB).
pub const MAX_RESPONSE_BODY: usize = 128 * 1024;

/// `requestParameters`: what the request said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_attributes: Option<String>,
    pub endpoint_name: String,
    pub input_location: String,
}

/// `responseParameters`: where the result (or the error) is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseParameters {
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_location: Option<String>,
}

/// The inference response carried inline when configured and small enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseBody {
    pub content: String,
    pub encoding: String,
}

/// SageMaker's asynchronous inference notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceResult {
    pub aws_region: String,
    pub event_time: String,
    pub received_time: String,
    /// `Completed` or `Failed`.
    pub invocation_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub request_parameters: RequestParameters,
    pub response_parameters: ResponseParameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<ResponseBody>,
    pub inference_id: String,
    pub event_version: String,
    pub event_source: String,
    pub event_name: String,
}

/// SageMaker's timestamp form: ISO-8601 UTC with milliseconds, `2022-01-25T22:46:00.608Z`.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl InferenceResult {
    fn base(
        region: &str,
        received: OffsetDateTime,
        status: &str,
        inference_id: &str,
        request: RequestParameters,
        response: ResponseParameters,
    ) -> InferenceResult {
        InferenceResult {
            aws_region: region.to_string(),
            event_time: timestamp(OffsetDateTime::now_utc()),
            received_time: timestamp(received),
            invocation_status: status.to_string(),
            failure_reason: None,
            request_parameters: request,
            response_parameters: response,
            response_body: None,
            inference_id: inference_id.to_string(),
            event_version: "1.0".into(),
            event_source: "aws:sagemaker".into(),
            event_name: "InferenceResult".into(),
        }
    }

    /// A `Completed` notification. `body` is included when given and at most 128 KB.
    pub fn completed(
        region: &str,
        received: OffsetDateTime,
        inference_id: &str,
        request: RequestParameters,
        content_type: &str,
        output_location: String,
        body: Option<&[u8]>,
    ) -> InferenceResult {
        let mut r = Self::base(
            region,
            received,
            "Completed",
            inference_id,
            request,
            ResponseParameters {
                content_type: content_type.to_string(),
                output_location: Some(output_location),
                failure_location: None,
            },
        );
        r.response_body = body
            .filter(|b| b.len() <= MAX_RESPONSE_BODY)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|s| ResponseBody {
                content: s.to_string(),
                encoding: "STRING".into(),
            });
        r
    }

    /// A `Failed` notification.
    pub fn failed(
        region: &str,
        received: OffsetDateTime,
        inference_id: &str,
        request: RequestParameters,
        reason: String,
        failure_location: Option<String>,
    ) -> InferenceResult {
        let mut r = Self::base(
            region,
            received,
            "Failed",
            inference_id,
            request,
            ResponseParameters {
                content_type: "application/json".into(),
                output_location: None,
                failure_location,
            },
        );
        r.failure_reason = Some(reason);
        r
    }

    pub fn is_completed(&self) -> bool {
        self.invocation_status == "Completed"
    }
}

/// Why a notification could not be published.
#[derive(Debug, thiserror::Error)]
#[error("publishing to {topic} failed: {message}")]
pub struct NotifyError {
    pub topic: String,
    pub message: String,
    pub transient: bool,
}

/// Publishes notifications to the success and error topics (either may be absent, as
/// in SageMaker: no topic, no notification).
#[derive(Clone, Debug)]
pub struct Notifier {
    client: aws_sdk_sns::Client,
    success_topic: Option<String>,
    error_topic: Option<String>,
}

impl Notifier {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        success_topic: Option<String>,
        error_topic: Option<String>,
    ) -> Notifier {
        Notifier {
            client: aws_sdk_sns::Client::new(sdk),
            success_topic,
            error_topic,
        }
    }

    /// Publish to the topic for the result's status. Returns the topic used, if any.
    pub async fn publish(&self, result: &InferenceResult) -> Result<Option<String>, NotifyError> {
        let topic = if result.is_completed() {
            &self.success_topic
        } else {
            &self.error_topic
        };
        let Some(topic) = topic else {
            return Ok(None);
        };
        let message = serde_json::to_string(result).expect("notifications always serialize");
        self.client
            .publish()
            .topic_arn(topic)
            .message(message)
            .send()
            .await
            .map_err(|e| {
                let (kind, message) = classify(&e);
                NotifyError {
                    topic: topic.clone(),
                    message,
                    // A missing topic or a denied publish is an operator's problem, not
                    // the request's: keep the message so nothing is lost.
                    transient: kind != ErrorKind::Other,
                }
            })?;
        Ok(Some(topic.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = time::macros::datetime!(2022-01-25 22:46:00.608 UTC);
        assert_eq!(timestamp(t), "2022-01-25T22:46:00.608Z");
    }
}
