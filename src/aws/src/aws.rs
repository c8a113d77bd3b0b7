//! AWS plumbing shared by storage, notifications and the queue worker: one SDK config
//! (region, endpoint override, retries, timeouts), and one place that decides whether
//! an SDK error is worth retrying.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Where to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Region; when absent, the usual chain (AWS_REGION, profile, IMDS) decides.
    pub region: Option<String>,
    /// Endpoint override for every service (a moto server, LocalStack, a VPC endpoint);
    /// when absent, `AWS_ENDPOINT_URL` is honoured by the SDK itself.
    pub endpoint_url: Option<String>,
}

/// Load the SDK configuration: standard retry mode with 5 attempts (the SDK backs off
/// with jitter on throttling, 5xx and network errors), and bounded timeouts so that a
/// hung connection surfaces as a transient error instead of a stuck job.
pub async fn load(opts: &AwsOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &opts.endpoint_url {
        loader = loader.endpoint_url(e.clone());
    }
    loader.load().await
}

/// True when the SDK talks to an endpoint other than AWS's own (then S3 must use
/// path-style addressing: `http://host:port/bucket/key`).
pub fn has_endpoint_override(sdk: &SdkConfig) -> bool {
    sdk.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
}

/// What kind of failure an SDK error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resource does not exist (404, NoSuchKey, NoSuchBucket, NonExistentQueue, NotFound).
    NotFound,
    /// Credentials or policy refuse the call (403, AccessDenied).
    Denied,
    /// Throttling, 5xx, timeouts, network: retrying later may succeed.
    Transient,
    /// Anything else: the request itself is wrong.
    Other,
}

/// Classify an SDK error (by error code, else by HTTP status: HEAD responses carry no
/// code) and describe it in one line.
pub fn classify<E>(err: &SdkError<E>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("");
            let msg = e.message().unwrap_or("");
            let text = match (code.is_empty(), msg.is_empty(), status) {
                (true, true, Some(s)) => format!("HTTP {s}"),
                (true, true, None) => e.to_string(),
                _ => format!("{code}: {msg}"),
            };
            let kind = match code {
                "NoSuchKey"
                | "NoSuchBucket"
                | "NotFound"
                | "NotFoundException"
                | "AWS.SimpleQueueService.NonExistentQueue"
                | "QueueDoesNotExist" => ErrorKind::NotFound,
                "AccessDenied"
                | "AccessDeniedException"
                | "AuthorizationError"
                | "Forbidden"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch" => ErrorKind::Denied,
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestThrottled"
                | "RequestTimeout"
                | "InternalError"
                | "ServiceUnavailable"
                | "InternalFailure"
                | "RequestThrottledException" => ErrorKind::Transient,
                _ => match status {
                    Some(404) => ErrorKind::NotFound,
                    Some(403) => ErrorKind::Denied,
                    Some(s) if s == 429 || s >= 500 => ErrorKind::Transient,
                    _ => ErrorKind::Other,
                },
            };
            (kind, text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            format!("{}", aws_sdk_s3::error::DisplayErrorContext(err)),
        ),
        _ => (
            ErrorKind::Other,
            format!("{}", aws_sdk_s3::error::DisplayErrorContext(err)),
        ),
    }
}

/// Run `op` until it succeeds, fails permanently, or `attempts` transient failures
/// have happened, sleeping 0.5 s, 1 s, 2 s, … (capped at 15 s) between attempts.
/// For the steps after inference (store, notify, delete): the SDK already retried each
/// call, so this outer loop rides out longer outages before giving the message back.
pub async fn retry<T, E, F, Fut>(
    attempts: u32,
    mut is_transient: impl FnMut(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(500);
    let mut n = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if n < attempts && is_transient(&e) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(15));
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
