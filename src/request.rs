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

use crate::pipeline::Params;
use crate::schema::OutputFormat;
use crate::storage::S3Uri;
use crate::video::{Resize, Sampling};

/// Largest accepted message body (SQS's own maximum is 256 KiB; requests are small).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest `customAttributes` string (SageMaker's limit).
pub const MAX_CUSTOM_ATTRIBUTES: usize = 1024;
/// Default and maximum `requestTTLSeconds` (SageMaker: 6 hours).
pub const DEFAULT_TTL_S: u64 = 21_600;
/// Default `invocationTimeoutSeconds` (SageMaker: 15 minutes) and its maximum (1 hour).
pub const DEFAULT_INVOCATION_TIMEOUT_S: u64 = 900;
pub const MAX_INVOCATION_TIMEOUT_S: u64 = 3_600;

/// Why a request was refused. Always permanent: the same message would fail again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn err(msg: impl Into<String>) -> RequestError {
    RequestError(msg.into())
}

/// Per-request overrides of the worker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overrides {
    pub frame_interval: Option<u32>,
    pub fps: Option<f64>,
    pub min_score: Option<f32>,
    pub format: Option<String>,
    pub masks: Option<bool>,
    pub resize: Option<String>,
    pub frame_width: Option<u32>,
    pub frame_height: Option<u32>,
}

impl Overrides {
    /// Parse SageMaker-style custom attributes: `key=value` pairs separated by `;`,
    /// keys in snake_case or camelCase. Pairs without `=` are ignored (callers use
    /// custom attributes for their own tags too), but a known key with a bad value, or
    /// an unknown key that looks like a vidinfer option, is an error.
    pub fn from_custom_attributes(s: &str) -> Result<Overrides, RequestError> {
        if s.len() > MAX_CUSTOM_ATTRIBUTES {
            return Err(err(format!(
                "customAttributes is {} characters, over the limit of {MAX_CUSTOM_ATTRIBUTES}",
                s.len()
            )));
        }
        let mut o = Overrides::default();
        for pair in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let num =
                |what: &str| err(format!("customAttributes: `{k}` must be {what}, got `{v}`"));
            match k.replace('_', "").to_ascii_lowercase().as_str() {
                "frameinterval" => {
                    o.frame_interval = Some(v.parse().map_err(|_| num("a whole number"))?)
                }
                "fps" => o.fps = Some(v.parse().map_err(|_| num("a number"))?),
                "minscore" => o.min_score = Some(v.parse().map_err(|_| num("a number"))?),
                "format" => o.format = Some(v.to_string()),
                "masks" => o.masks = Some(parse_bool(v).ok_or_else(|| num("true or false"))?),
                "resize" => o.resize = Some(v.to_string()),
                "framewidth" => o.frame_width = Some(v.parse().map_err(|_| num("a whole number"))?),
                "frameheight" => {
                    o.frame_height = Some(v.parse().map_err(|_| num("a whole number"))?)
                }
                _ => {} // someone else's attribute
            }
        }
        Ok(o)
    }

    /// Later overrides win field by field.
    pub fn merge(self, later: Overrides) -> Overrides {
        Overrides {
            frame_interval: later.frame_interval.or(self.frame_interval),
            fps: later.fps.or(self.fps),
            min_score: later.min_score.or(self.min_score),
            format: later.format.or(self.format),
            masks: later.masks.or(self.masks),
            resize: later.resize.or(self.resize),
            frame_width: later.frame_width.or(self.frame_width),
            frame_height: later.frame_height.or(self.frame_height),
        }
    }

    /// Apply to the worker's defaults, validating every value.
    pub fn apply(&self, base: &Params) -> Result<Params, RequestError> {
        let mut p = base.clone();
        if self.frame_interval.is_some() && self.fps.is_some() {
            return Err(err("give either frame_interval or fps, not both"));
        }
        if let Some(n) = self.frame_interval {
            if n == 0 {
                return Err(err("frame_interval must be at least 1"));
            }
            p.sampling = Sampling::EveryNth(n);
        }
        if let Some(f) = self.fps {
            if !(f.is_finite() && f > 0.0 && f <= 240.0) {
                return Err(err(format!("fps must be in (0, 240], got {f}")));
            }
            p.sampling = Sampling::Fps(f);
        }
        if let Some(s) = self.min_score {
            if !(0.0..=1.0).contains(&s) {
                return Err(err(format!("min_score must be within [0, 1], got {s}")));
            }
            p.min_score = Some(s);
        }
        if let Some(f) = &self.format {
            p.format = f.parse::<OutputFormat>().map_err(err)?;
        }
        if let Some(m) = self.masks {
            p.masks = m;
        }
        let (mut w, mut h) = match p.resize {
            Resize::Fit { width, height } | Resize::Stretch { width, height } => (width, height),
            Resize::Original => (1024, 1024),
        };
        for (v, name) in [
            (self.frame_width, "frame_width"),
            (self.frame_height, "frame_height"),
        ] {
            if let Some(v) = v {
                if !(16..=8192).contains(&v) {
                    return Err(err(format!("{name} must be within [16, 8192], got {v}")));
                }
            }
        }
        w = self.frame_width.unwrap_or(w);
        h = self.frame_height.unwrap_or(h);
        let mode = match (&self.resize, p.resize) {
            (Some(m), _) => m.to_ascii_lowercase(),
            (None, Resize::Stretch { .. }) => "stretch".into(),
            (None, Resize::Original) => "original".into(),
            (None, Resize::Fit { .. }) => "fit".into(),
        };
        p.resize = match mode.as_str() {
            "fit" => Resize::Fit {
                width: w,
                height: h,
            },
            "stretch" => Resize::Stretch {
                width: w,
                height: h,
            },
            "original" => Resize::Original,
            other => {
                return Err(err(format!(
                    "resize must be fit, stretch or original, got `{other}`"
                )))
            }
        };
        Ok(p)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

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
    /// Parse and validate a message body. `fallback_id` names the request in the failure
    /// notification when the body is too broken to carry an id.
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
            let a = a.to_ascii_lowercase();
            if !(a.contains("application/json") || a.contains("*/*")) {
                return Err(err(format!(
                    "accept `{a}` is not served: vidinfer answers application/json"
                )));
            }
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
