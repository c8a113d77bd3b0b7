//! Inference requests: the SQS message body (mirroring `InvokeEndpointAsync`) and the
//! per-request parameter overrides, which arrive either in the message's `params`
//! object or in SageMaker's `CustomAttributes` string (`format=legacy;frame_interval=15`).
//!
//! ```json
//! {
//!   "inputLocation": "s3://my-bucket/videos/clip.mp4",
//!   "inferenceId": "clip-0001",
//!   "contentType": "video/mp4",
//!   "accept": "application/json",
//!   "customAttributes": "format=legacy;frame_interval=15",
//!   "requestTTLSeconds": 21600,
//!   "invocationTimeoutSeconds": 900,
//!   "params": {"frameInterval": 10, "minScore": 0.5, "masks": true}
//! }
//! ```
//! Only `inputLocation` is required. Unknown top-level fields are ignored (so producers
//! can add their own bookkeeping); unknown override keys are an error, because a typo
//! there would silently change the result.

use serde::Deserialize;

use crate::params::{check_accept, err};
pub use crate::params::{Overrides, RequestError};
use crate::storage::S3Uri;

/// Largest accepted message body (SQS's own maximum is 256 KiB; requests are small).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default and maximum `requestTTLSeconds` (SageMaker: 6 hours).
pub const DEFAULT_TTL_S: u64 = 21_600;
/// Default `invocationTimeoutSeconds` (SageMaker: 15 minutes) and its maximum (1 hour).
pub const DEFAULT_INVOCATION_TIMEOUT_S: u64 = 900;
pub const MAX_INVOCATION_TIMEOUT_S: u64 = 3_600;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    input_location: Option<String>,
    inference_id: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    custom_attributes: Option<String>,
    #[serde(rename = "requestTTLSeconds")]
    request_ttl_seconds: Option<u64>,
    invocation_timeout_seconds: Option<u64>,
    params: Option<serde_json::Value>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub input: S3Uri,
    /// As given, else generated; safe to use in an S3 key.
    pub inference_id: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub custom_attributes: Option<String>,
    pub ttl_s: u64,
    pub invocation_timeout_s: u64,
    pub overrides: Overrides,
}

/// Check an inference id: 1-64 characters of `A-Z a-z 0-9 . _ : -`, not starting
/// with `.` (it becomes part of an S3 key, so no `/`, no `..`, no control characters).
pub fn validate_inference_id(id: &str) -> Result<(), RequestError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "inferenceId `{}` is invalid: use 1-64 characters of letters, digits, '.', '_', ':' or '-', not starting with '.'",
            id.chars().take(80).collect::<String>().escape_debug()
        )))
    }
}

/// The S3 locations requests may name as input. Empty allows any location (the
/// worker's IAM role is then the only fence); once a prefix is configured everything
/// outside the listed prefixes is refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputPolicy {
    prefixes: Vec<S3Uri>,
}

impl InputPolicy {
    /// Allow objects under these prefixes: `s3://bucket` (the whole bucket),
    /// `s3://bucket/videos/` or `s3://bucket/videos` (both: keys under `videos/`).
    pub fn new(prefixes: Vec<S3Uri>) -> InputPolicy {
        let prefixes = prefixes
            .into_iter()
            .map(|mut p| {
                if !p.key.is_empty() && !p.key.ends_with('/') {
                    p.key.push('/');
                }
                p
            })
            .collect();
        InputPolicy { prefixes }
    }

    /// True when no prefix is configured (every location allowed).
    pub fn is_open(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Refuse `uri` unless it lies under an allowed prefix. Keys with `.` or `..`
    /// segments or empty segments are refused outright under a policy: S3 keeps them
    /// literally, but a proxy or a tool along the way may not, and no real video key
    /// needs them.
    pub fn check(&self, uri: &S3Uri) -> Result<(), RequestError> {
        if self.is_open() {
            return Ok(());
        }
        if uri
            .key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(err(format!(
                "inputLocation {uri} has an empty, `.` or `..` path segment; name the object by its plain key"
            )));
        }
        let allowed = self
            .prefixes
            .iter()
            .any(|p| p.bucket == uri.bucket && uri.key.starts_with(&p.key));
        if allowed {
            Ok(())
        } else {
            let list: Vec<String> = self.prefixes.iter().map(|p| p.to_string()).collect();
            Err(err(format!(
                "inputLocation {uri} is outside the locations this worker may read ({}); \
                 put the video there or ask the operator to allow its prefix",
                list.join(", ")
            )))
        }
    }
}

impl Request {
    /// Parse and validate a message body. A body too broken to parse still gets a
    /// failure notification: see `best_effort_id` in the SQS worker.
    pub fn parse(body: &str) -> Result<Request, RequestError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(err(format!(
                "the message is {} bytes, over the limit of {MAX_MESSAGE_BYTES}",
                body.len()
            )));
        }
        let raw: RawRequest = serde_json::from_str(body).map_err(|e| {
            err(format!("the message is not a JSON request object ({e}); expected {{\"inputLocation\": \"s3://bucket/key\", ...}}"))
        })?;
        let input = raw.input_location.ok_or_else(|| {
            err("the message has no inputLocation (an s3://bucket/key URI of the video)")
        })?;
        let input: S3Uri = input
            .parse()
            .map_err(|e: crate::storage::StorageError| err(format!("inputLocation: {e}")))?;
        if input.key.is_empty() || input.key.ends_with('/') {
            return Err(err(format!(
                "inputLocation {input} names a prefix, not an object"
            )));
        }
        let inference_id = match raw.inference_id {
            Some(id) => {
                validate_inference_id(&id)?;
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let ttl_s = raw.request_ttl_seconds.unwrap_or(DEFAULT_TTL_S);
        if !(1..=DEFAULT_TTL_S).contains(&ttl_s) {
            return Err(err(format!(
                "requestTTLSeconds must be within [1, {DEFAULT_TTL_S}], got {ttl_s}"
            )));
        }
        let invocation_timeout_s = raw
            .invocation_timeout_seconds
            .unwrap_or(DEFAULT_INVOCATION_TIMEOUT_S);
        if !(1..=MAX_INVOCATION_TIMEOUT_S).contains(&invocation_timeout_s) {
            return Err(err(format!(
                "invocationTimeoutSeconds must be within [1, {MAX_INVOCATION_TIMEOUT_S}], got {invocation_timeout_s}"
            )));
        }
        if let Some(a) = &raw.accept {
            check_accept(a)?;
        }
        let from_attrs = match &raw.custom_attributes {
            Some(s) => Overrides::from_custom_attributes(s)?,
            None => Overrides::default(),
        };
        let from_params: Overrides = match raw.params {
            Some(v) => serde_json::from_value(v).map_err(|e| err(format!("params: {e}")))?,
            None => Overrides::default(),
        };
        Ok(Request {
            input,
            inference_id,
            content_type: raw.content_type,
            accept: raw.accept,
            custom_attributes: raw.custom_attributes,
            ttl_s,
            invocation_timeout_s,
            overrides: from_attrs.merge(from_params),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;
    use crate::schema::OutputFormat;
    use crate::video::Sampling;

    #[test]
    fn input_policy_denies_by_default_once_configured() {
        let uri = |s: &str| s.parse::<S3Uri>().unwrap();
        let open = InputPolicy::default();
        assert!(open.check(&uri("s3://any-bucket/a/../b.mp4")).is_ok());
        let p = InputPolicy::new(vec![uri("s3://videos-in/uploads"), uri("s3://shared")]);
        assert!(p.check(&uri("s3://videos-in/uploads/a.mp4")).is_ok());
        assert!(p.check(&uri("s3://videos-in/uploads/team/b.mp4")).is_ok());
        assert!(p.check(&uri("s3://shared/x.mp4")).is_ok());
        // A sibling prefix that merely starts with the same letters is not inside.
        let e = p
            .check(&uri("s3://videos-in/uploads-private/a.mp4"))
            .unwrap_err();
        assert!(e.0.contains("outside the locations"), "{e}");
        assert!(p.check(&uri("s3://videos-in/other/a.mp4")).is_err());
        assert!(p.check(&uri("s3://videos-inx/uploads/a.mp4")).is_err());
        for key in [
            "uploads/../secret/a.mp4",
            "uploads/./a.mp4",
            "uploads//a.mp4",
        ] {
            let e = p.check(&uri(&format!("s3://videos-in/{key}"))).unwrap_err();
            assert!(e.0.contains("segment"), "{key}: {e}");
        }
    }

    #[test]
    fn a_full_request_parses_and_params_override_attributes() {
        let r = Request::parse(
            r#"{"inputLocation":"s3://bucket-a/v/clip.mp4","inferenceId":"clip-1","customAttributes":"format=legacy;frame_interval=15;team=vision","params":{"frameInterval":10,"masks":true},"requestTTLSeconds":60,"extra":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(r.input.to_string(), "s3://bucket-a/v/clip.mp4");
        assert_eq!(r.inference_id, "clip-1");
        assert_eq!(r.ttl_s, 60);
        assert_eq!(r.invocation_timeout_s, 900);
        let p = r.overrides.apply(&Params::default()).unwrap();
        assert_eq!(p.sampling, Sampling::EveryNth(10));
        assert_eq!(p.format, OutputFormat::Legacy);
        assert!(p.masks);
    }

    #[test]
    fn bad_requests_say_what_to_fix() {
        let cases = [
            ("not json", "not a JSON request"),
            ("{}", "no inputLocation"),
            (r#"{"inputLocation":"https://x/y.mp4"}"#, "s3://"),
            (r#"{"inputLocation":"s3://bucket-a/"}"#, "prefix"),
            (
                r#"{"inputLocation":"s3://bucket-a/k","inferenceId":"../../etc"}"#,
                "inferenceId",
            ),
            (
                r#"{"inputLocation":"s3://bucket-a/k","inferenceId":"a/b"}"#,
                "inferenceId",
            ),
            (
                r#"{"inputLocation":"s3://bucket-a/k","requestTTLSeconds":0}"#,
                "requestTTLSeconds",
            ),
            (
                r#"{"inputLocation":"s3://bucket-a/k","invocationTimeoutSeconds":7200}"#,
                "invocationTimeoutSeconds",
            ),
            (
                r#"{"inputLocation":"s3://bucket-a/k","accept":"text/csv"}"#,
                "accept",
            ),
            (
                r#"{"inputLocation":"s3://bucket-a/k","params":{"frameIntervall":3}}"#,
                "params",
            ),
            (
                r#"{"inputLocation":"s3://bucket-a/k","customAttributes":"frame_interval=abc"}"#,
                "whole number",
            ),
        ];
        for (body, needle) in cases {
            let e = Request::parse(body).unwrap_err();
            assert!(e.0.contains(needle), "{body}: {e}");
        }
        let huge = format!(
            r#"{{"inputLocation":"s3://bucket-a/k","x":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(Request::parse(&huge).unwrap_err().0.contains("limit"));
        let r =
            Request::parse(r#"{"inputLocation":"s3://bucket-a/k","params":{"frameInterval":0}}"#)
                .unwrap();
        assert!(r.overrides.apply(&Params::default()).is_err());
        let r = Request::parse(r#"{"inputLocation":"s3://bucket-a/k","params":{"minScore":1.5}}"#)
            .unwrap();
        assert!(r.overrides.apply(&Params::default()).is_err());
    }

    #[test]
    fn ids_are_generated_when_absent() {
        let a = Request::parse(r#"{"inputLocation":"s3://bucket-a/k"}"#).unwrap();
        let b = Request::parse(r#"{"inputLocation":"s3://bucket-a/k"}"#).unwrap();
        assert_ne!(a.inference_id, b.inference_id);
        validate_inference_id(&a.inference_id).unwrap();
    }
}
