//! AWS plumbing: SDK configuration, S3 URIs, queue depth, and the readers that drain
//! the notification queues into the record.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use tokio_util::sync::CancellationToken;

use crate::notification::InferenceResult;
use crate::record::Recorder;

/// Where to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Region; when absent, the SDK's chain (AWS_REGION, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint override for every service (moto, LocalStack); when absent,
    /// `AWS_ENDPOINT_URL` is honoured by the SDK itself.
    pub endpoint_url: Option<String>,
}

/// The SDK configuration from the usual credential chain.
pub async fn sdk(opts: &AwsOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &opts.endpoint_url {
        loader = loader.endpoint_url(e.clone());
    }
    loader.load().await
}

/// The SDK configuration for a local moto server (any credentials do).
pub async fn moto_sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

/// An S3 client; path-style addressing when the endpoint is overridden (moto serves
/// `http://host:port/bucket/key`, not bucket subdomains).
pub fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(overridden)
            .build(),
    )
}

/// An SDK error in one line: the service's code and message when it answered, else
/// the chain of causes (e.g. `dispatch failure: io error: ... Connection refused`).
pub fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(se) = err {
        let e = se.err();
        match (e.code(), e.message()) {
            (Some(c), Some(m)) => return format!("{c}: {m}"),
            (Some(c), None) => return c.to_string(),
            (None, Some(m)) => return m.to_string(),
            (None, None) => return format!("HTTP {}", se.raw().status().as_u16()),
        }
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// `s3://bucket/key` split into bucket and key.
pub fn parse_s3_uri(uri: &str) -> anyhow::Result<(String, String)> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow::anyhow!("`{uri}` is not an S3 URI: write it as s3://bucket/key"))?;
    match rest.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() && !k.ends_with('/') => {
            Ok((b.to_string(), k.to_string()))
        }
        _ => anyhow::bail!("`{uri}` does not name an object: write it as s3://bucket/key"),
    }
}

/// A queue's (ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<(u64, u64)> {
    let r = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("reading the depth of {url}: {}", describe(&e)))?;
    let n = |k: &QueueAttributeName| {
        r.attributes()
            .and_then(|a| a.get(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        n(&QueueAttributeName::ApproximateNumberOfMessages),
        n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// A queue's ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    let r = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("reading the ARN of {url}: {}", describe(&e)))?;
    r.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{url} reported no QueueArn"))
}

/// Check that a notification queue can be read, so a wrong URL or a missing permission
/// stops the run before any request is sent.
pub async fn check_queue(sqs: &aws_sdk_sqs::Client, url: &str, what: &str) -> anyhow::Result<()> {
    queue_depth(sqs, url).await.map(|_| ()).map_err(|e| {
        anyhow::anyhow!(
            "{what} {url} cannot be read ({e}): check the URL, the region and the credentials"
        )
    })
}

/// Read notifications from `url` until `stop`: long-poll, record each one, delete it.
/// The queue must be the load test's own: whatever is on it is consumed.
pub async fn read_notifications(
    sqs: aws_sdk_sqs::Client,
    url: String,
    rec: Arc<Recorder>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(2)
                .send() => r,
        };
        let out = match received {
            Ok(out) => {
                backoff = Duration::from_millis(500);
                out
            }
            Err(e) => {
                eprintln!(
                    "[loadtest] reading {url} failed, retrying in {backoff:?}: {}",
                    describe(&e)
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let mut done = Vec::new();
        for (i, m) in out.messages().iter().enumerate() {
            match InferenceResult::from_sqs_body(m.body().unwrap_or("")) {
                Ok(n) => {
                    rec.notified(&n);
                }
                Err(e) => rec.unreadable(&url, e.to_string()),
            }
            if let Some(handle) = m.receipt_handle() {
                done.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .expect("id and receipt handle are set"),
                );
            }
        }
        if !done.is_empty() {
            // A failed delete only means the notification comes back and is counted
            // as a duplicate; worth a warning, not a stop.
            if let Err(e) = sqs
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(done))
                .send()
                .await
            {
                eprintln!(
                    "[loadtest] deleting notifications from {url} failed: {}",
                    describe(&e)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_name_objects() {
        assert_eq!(
            parse_s3_uri("s3://b/in/v.mp4").unwrap(),
            ("b".to_string(), "in/v.mp4".to_string())
        );
        for bad in ["b/k", "s3://b", "s3://b/", "s3://b/dir/", "s3:///k"] {
            assert!(parse_s3_uri(bad).is_err(), "{bad}");
        }
    }
}
