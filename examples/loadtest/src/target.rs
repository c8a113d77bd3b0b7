//! Where requests go: an SQS queue of standalone workers (the message mirrors
//! `InvokeEndpointAsync`) or a SageMaker asynchronous endpoint. Either way a request
//! names a video already in S3 and carries the load test's inferenceId.

use crate::aws::describe;

/// What every request says.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// `s3://bucket/key` of the video.
    pub input: String,
    /// SageMaker-style `key=value;...` options (e.g. `frame_interval=30`).
    pub custom_attributes: Option<String>,
    pub content_type: String,
}

#[derive(Debug)]
pub enum Target {
    Sqs {
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        request: RequestTemplate,
    },
    SageMaker {
        client: aws_sdk_sagemakerruntime::Client,
        endpoint: String,
        request: RequestTemplate,
    },
}

impl Target {
    /// The queue URL or endpoint name.
    pub fn name(&self) -> &str {
        match self {
            Target::Sqs { queue_url, .. } => queue_url,
            Target::SageMaker { endpoint, .. } => endpoint,
        }
    }

    /// Send one request. The error is one line saying why.
    pub async fn send(&self, inference_id: &str) -> Result<(), String> {
        match self {
            Target::Sqs {
                sqs,
                queue_url,
                request,
            } => {
                let mut body = serde_json::json!({
                    "inputLocation": request.input,
                    "inferenceId": inference_id,
                    "contentType": request.content_type,
                    "accept": "application/json",
                });
                if let Some(a) = &request.custom_attributes {
                    body["customAttributes"] = a.clone().into();
                }
                sqs.send_message()
                    .queue_url(queue_url)
                    .message_body(body.to_string())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| describe(&e))
            }
            Target::SageMaker {
                client,
                endpoint,
                request,
            } => client
                .invoke_endpoint_async()
                .endpoint_name(endpoint)
                .input_location(&request.input)
                .inference_id(inference_id)
                .content_type(&request.content_type)
                .accept("application/json")
                .set_custom_attributes(request.custom_attributes.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe(&e)),
        }
    }
}
