//! The parameters of one job and the one place they are validated.
//!
//! A job's [`Params`] start from a front door's defaults and are changed by
//! [`Overrides`], whichever way they arrive: command-line flags and their environment
//! variables (`vidinfer-worker`), SageMaker's custom attributes
//! (`format=legacy;frame_interval=15`, on `serve` and in SQS messages) or an SQS
//! message's `params` object. [`Overrides::apply`] is the only validator, so a value
//! refused on one door is refused, with the same sentence, on every door.
//! [`check_accept`] is likewise the one `Accept` rule.

use serde::{Deserialize, Serialize};

use crate::detection::ModelInput;
use crate::schema::OutputFormat;
use crate::track::TrackParams;
use crate::video::{model_size, DecodeOptions, Limits, Resize, Sampling, TimeRange, VideoError};

/// Largest `customAttributes` string (SageMaker's limit).
pub const MAX_CUSTOM_ATTRIBUTES: usize = 1024;

/// How one job is run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub sampling: Sampling,
    /// Only this span of the video (default: all of it).
    #[serde(default, skip_serializing_if = "TimeRange::is_all")]
    pub range: TimeRange,
    pub resize: Resize,
    /// Whether `resize` was chosen (a flag, attribute or `params`) rather than implied.
    /// An implied resize follows the format: the legacy array is always in the old
    /// system's coordinates, frames stretched to the frame size (1024x1024 unless
    /// given); v2 fits frames inside it.
    #[serde(default)]
    pub resize_explicit: bool,
    /// Frames are converted once, straight to the size the model's own transform
    /// resizes them to (`resize=model`), instead of to `resize` and then again inside
    /// the model. `resize` stays the frame the legacy array is written in: for legacy,
    /// the model sees the stretched frame at its own size (what it saw before) and
    /// boxes are mapped back to the stretched frame; for v2, the video's display size
    /// goes to the model's size and boxes to source pixels, as always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_size: bool,
    /// Drop detections scoring below this (default: keep what the model returns).
    pub min_score: Option<f32>,
    /// Include instance masks (COCO RLE) in v2 output.
    pub masks: bool,
    pub format: OutputFormat,
    pub limits: Limits,
    /// FFmpeg decoder threads (0: one per core).
    pub decode_threads: usize,
    /// Follow objects across frames (v2 output only; `None`: off).
    pub track: Option<TrackParams>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            sampling: Sampling::default(),
            range: TimeRange::default(),
            resize: Resize::default(),
            resize_explicit: false,
            model_size: false,
            min_score: None,
            masks: false,
            format: OutputFormat::V2,
            limits: Limits::default(),
            decode_threads: 0,
            track: Some(TrackParams::default()),
        }
    }
}

impl Params {
    /// What the decoder is asked for; `input` is the model's own resize, which
    /// `resize=model` needs.
    pub(crate) fn decode_options(
        &self,
        input: Option<ModelInput>,
    ) -> Result<DecodeOptions, VideoError> {
        Ok(DecodeOptions {
            sampling: self.sampling,
            range: self.range,
            resize: self.picture_size(input)?,
            skip_non_ref: true,
            threads: self.decode_threads,
            limits: self.limits,
        })
    }

    /// The size of the pictures the model is given: `resize`, or with `model_size` the
    /// size the model's transform gives the frame `resize` describes.
    pub fn picture_size(&self, input: Option<ModelInput>) -> Result<Resize, VideoError> {
        if !self.model_size {
            return Ok(self.resize);
        }
        let Some(m) = input else {
            return Err(VideoError::InvalidOptions(
                "resize=model needs the model's input size, and its sidecar (model.json) \
                 gives no input.min_size and input.max_size: choose resize=fit, stretch or \
                 original, or export the model with scripts/export_model.py"
                    .into(),
            ));
        };
        Ok(match self.resize {
            Resize::Stretch { width, height } => {
                let (width, height) = model_size(width, height, m.min_size, m.max_size);
                Resize::Stretch { width, height }
            }
            // A frame that keeps the aspect ratio has the display size's model size but
            // for rounding: from the display size it is scaled once.
            Resize::Original | Resize::Fit { .. } | Resize::Model { .. } => Resize::Model {
                min_size: m.min_size,
                max_size: m.max_size,
            },
        })
    }
}

/// Why a request (its parameters or, in [`crate::request`], its envelope) was refused.
/// Always permanent: the same request would fail again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

/// Shortest segment a video is split into (shorter ones cost more in downloads and
/// seams than they gain).
pub const MIN_SEGMENT_SECONDS: f64 = 1.0;

/// A usable `segment_seconds`: 0 (never split) or at least [`MIN_SEGMENT_SECONDS`].
pub fn check_segment_seconds(s: f64) -> Result<(), String> {
    if s == 0.0 || (s.is_finite() && s >= MIN_SEGMENT_SECONDS) {
        Ok(())
    } else {
        Err(format!(
            "segment_seconds must be 0 (never split) or at least {MIN_SEGMENT_SECONDS}, got {s}"
        ))
    }
}

pub(crate) fn err(msg: impl Into<String>) -> RequestError {
    RequestError(msg.into())
}

/// Per-request overrides of the worker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overrides {
    pub frame_interval: Option<u32>,
    /// Seconds of presentation time where the job starts (frames before are not kept).
    #[serde(alias = "start_s")]
    pub start_s: Option<f64>,
    /// Seconds where it ends (frames at or after are not kept).
    #[serde(alias = "end_s")]
    pub end_s: Option<f64>,
    pub fps: Option<f64>,
    /// `keyframes`: keep only the keyframes (instead of `frame_interval` or `fps`).
    pub sampling: Option<String>,
    pub min_score: Option<f32>,
    pub format: Option<String>,
    pub masks: Option<bool>,
    pub resize: Option<String>,
    pub frame_width: Option<u32>,
    pub frame_height: Option<u32>,
    /// Tracking on or off (on by default for v2).
    pub track: Option<bool>,
    #[serde(alias = "track_high_score")]
    pub track_high_score: Option<f32>,
    #[serde(alias = "track_low_score")]
    pub track_low_score: Option<f32>,
    #[serde(alias = "track_new_score")]
    pub track_new_score: Option<f32>,
    #[serde(alias = "track_iou")]
    pub track_iou: Option<f32>,
    #[serde(alias = "track_buffer_s")]
    pub track_buffer_s: Option<f64>,
    /// The queue worker splits a longer video into segments of this many seconds,
    /// processed across the fleet (0: never split). Not a parameter of the result:
    /// other front doors ignore it.
    #[serde(alias = "segment_seconds")]
    pub segment_seconds: Option<f64>,
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
                "starts" => o.start_s = Some(v.parse().map_err(|_| num("a number of seconds"))?),
                "ends" => o.end_s = Some(v.parse().map_err(|_| num("a number of seconds"))?),
                "sampling" => o.sampling = Some(v.to_string()),
                "minscore" => o.min_score = Some(v.parse().map_err(|_| num("a number"))?),
                "format" => o.format = Some(v.to_string()),
                "masks" => o.masks = Some(parse_bool(v).ok_or_else(|| num("true or false"))?),
                "resize" => o.resize = Some(v.to_string()),
                "framewidth" => o.frame_width = Some(v.parse().map_err(|_| num("a whole number"))?),
                "frameheight" => {
                    o.frame_height = Some(v.parse().map_err(|_| num("a whole number"))?)
                }
                "track" => o.track = Some(parse_bool(v).ok_or_else(|| num("true or false"))?),
                "trackhighscore" => {
                    o.track_high_score = Some(v.parse().map_err(|_| num("a number"))?)
                }
                "tracklowscore" => {
                    o.track_low_score = Some(v.parse().map_err(|_| num("a number"))?)
                }
                "tracknewscore" => {
                    o.track_new_score = Some(v.parse().map_err(|_| num("a number"))?)
                }
                "trackiou" => o.track_iou = Some(v.parse().map_err(|_| num("a number"))?),
                "trackbuffers" => o.track_buffer_s = Some(v.parse().map_err(|_| num("a number"))?),
                "segmentseconds" => {
                    o.segment_seconds = Some(v.parse().map_err(|_| num("a number of seconds"))?)
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
            start_s: later.start_s.or(self.start_s),
            end_s: later.end_s.or(self.end_s),
            fps: later.fps.or(self.fps),
            sampling: later.sampling.or(self.sampling),
            min_score: later.min_score.or(self.min_score),
            format: later.format.or(self.format),
            masks: later.masks.or(self.masks),
            resize: later.resize.or(self.resize),
            frame_width: later.frame_width.or(self.frame_width),
            frame_height: later.frame_height.or(self.frame_height),
            track: later.track.or(self.track),
            track_high_score: later.track_high_score.or(self.track_high_score),
            track_low_score: later.track_low_score.or(self.track_low_score),
            track_new_score: later.track_new_score.or(self.track_new_score),
            track_iou: later.track_iou.or(self.track_iou),
            track_buffer_s: later.track_buffer_s.or(self.track_buffer_s),
            segment_seconds: later.segment_seconds.or(self.segment_seconds),
        }
    }

    /// The tracking part of [`Overrides::apply`].
    fn apply_track(&self, base: Option<TrackParams>) -> Result<Option<TrackParams>, RequestError> {
        let tuned = self.track_high_score.is_some()
            || self.track_low_score.is_some()
            || self.track_new_score.is_some()
            || self.track_iou.is_some()
            || self.track_buffer_s.is_some();
        match self.track {
            Some(false) if tuned => {
                return Err(err("track=false cannot be combined with track_* settings"))
            }
            Some(false) => return Ok(None),
            None if base.is_none() && !tuned => return Ok(None),
            _ => {}
        }
        let mut t = base.unwrap_or_default();
        t.high_score = self.track_high_score.unwrap_or(t.high_score);
        t.low_score = self.track_low_score.unwrap_or(t.low_score);
        t.new_score = self.track_new_score.unwrap_or(t.new_score);
        t.iou = self.track_iou.unwrap_or(t.iou);
        t.buffer_s = self.track_buffer_s.unwrap_or(t.buffer_s);
        t.check().map_err(err)?;
        Ok(Some(t))
    }

    /// Apply to the worker's defaults, validating every value.
    pub fn apply(&self, base: &Params) -> Result<Params, RequestError> {
        let mut p = base.clone();
        if let Some(s) = self.segment_seconds {
            check_segment_seconds(s).map_err(err)?;
        }
        if self.frame_interval.is_some() && self.fps.is_some() {
            return Err(err("give either frame_interval or fps, not both"));
        }
        if let Some(s) = &self.sampling {
            if !s.replace('_', "").eq_ignore_ascii_case("keyframes") {
                return Err(err(format!(
                    "sampling must be `keyframes`, got `{s}` (for every Nth frame or a rate, \
                     give frame_interval or fps)"
                )));
            }
            if self.frame_interval.is_some() || self.fps.is_some() {
                return Err(err(
                    "give one of frame_interval, fps or sampling=keyframes, not several",
                ));
            }
            p.sampling = Sampling::Keyframes;
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
        if self.start_s.is_some() || self.end_s.is_some() {
            let range = TimeRange {
                start_s: self.start_s.unwrap_or(p.range.start_s),
                end_s: self.end_s.or(p.range.end_s),
            };
            range.check().map_err(err)?;
            p.range = range;
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
            Resize::Original | Resize::Model { .. } => (1024, 1024),
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
        p.resize_explicit = self.resize.is_some() || base.resize_explicit;
        let mode = match (&self.resize, p.resize) {
            (Some(m), _) => m.to_ascii_lowercase(),
            (None, _) if !p.resize_explicit => match p.format {
                OutputFormat::Legacy => "stretch".into(),
                OutputFormat::V2 => "fit".into(),
            },
            (None, _) if p.model_size => "model".into(),
            (None, Resize::Stretch { .. }) => "stretch".into(),
            (None, Resize::Original) => "original".into(),
            (None, Resize::Fit { .. } | Resize::Model { .. }) => "fit".into(),
        };
        p.model_size = mode == "model";
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
            // The frame the legacy array is written in; the pictures themselves are
            // the model's size of it (see `Params::picture_size`). v2 keeps the frame
            // size too, for a request that switches to legacy.
            "model" => match p.format {
                OutputFormat::Legacy => Resize::Stretch {
                    width: w,
                    height: h,
                },
                OutputFormat::V2 => Resize::Fit {
                    width: w,
                    height: h,
                },
            },
            other => {
                return Err(err(format!(
                    "resize must be fit, stretch, original or model, got `{other}`"
                )))
            }
        };
        p.track = self.apply_track(p.track)?;
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

/// The one `Accept` rule, for the HTTP header and the SQS message field alike: absent,
/// empty, or anything that admits `application/json` (`application/json`,
/// `application/*`, `*/*`, with or without parameters and other types beside them).
pub fn check_accept(accept: &str) -> Result<(), RequestError> {
    let a = accept.to_ascii_lowercase();
    if a.trim().is_empty()
        || a.contains("application/json")
        || a.contains("*/*")
        || a.contains("application/*")
    {
        Ok(())
    } else {
        Err(err(format!(
            "the accepted type `{a}` cannot be served: vidinfer answers application/json"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(attrs: &str) -> Result<Params, RequestError> {
        Overrides::from_custom_attributes(attrs)?.apply(&Params::default())
    }

    #[test]
    fn time_ranges_from_attributes_or_params_checked() {
        let p = apply("start_s=12.5;end_s=60").unwrap();
        assert_eq!(
            p.range,
            TimeRange {
                start_s: 12.5,
                end_s: Some(60.0)
            }
        );
        let o: Overrides = serde_json::from_str(r#"{"startS": 3}"#).unwrap();
        let p = o.apply(&Params::default()).unwrap();
        assert_eq!((p.range.start_s, p.range.end_s), (3.0, None));
        // The whole video is not written into the parameters at all.
        let json = serde_json::to_value(Params::default()).unwrap();
        assert!(json.get("range").is_none());
        for (attrs, why) in [
            ("start_s=-1", "start_s must be 0 or more"),
            ("start_s=5;end_s=5", "end_s must be after start_s"),
            ("end_s=nan", "end_s must be after"),
            ("start_s=x", "must be a number of seconds"),
        ] {
            let e = apply(attrs).unwrap_err().to_string();
            assert!(e.contains(why), "{attrs}: {e}");
        }
    }

    #[test]
    fn keyframe_sampling_from_attributes_or_params_and_never_with_another_sampling() {
        assert_eq!(
            apply("sampling=keyframes").unwrap().sampling,
            Sampling::Keyframes
        );
        assert_eq!(
            apply("sampling=Key_Frames").unwrap().sampling,
            Sampling::Keyframes
        );
        let o: Overrides = serde_json::from_str(r#"{"sampling": "keyframes"}"#).unwrap();
        assert_eq!(
            o.apply(&Params::default()).unwrap().sampling,
            Sampling::Keyframes
        );
        // A worker sampling keyframes: a request for every Nth frame gets that.
        let keyframes = apply("sampling=keyframes").unwrap();
        let o = Overrides::from_custom_attributes("frame_interval=5").unwrap();
        assert_eq!(o.apply(&keyframes).unwrap().sampling, Sampling::EveryNth(5));
        for (attrs, needle) in [
            ("sampling=keyframes;fps=2", "not several"),
            ("sampling=keyframes;frame_interval=3", "not several"),
            ("sampling=every_nth", "must be `keyframes`"),
        ] {
            let e = apply(attrs).unwrap_err().to_string();
            assert!(e.contains(needle), "{attrs}: {e}");
        }
        // The attribute and the params object merge field by field: still a conflict.
        let attrs = Overrides::from_custom_attributes("sampling=keyframes").unwrap();
        let params: Overrides = serde_json::from_str(r#"{"fps": 1.0}"#).unwrap();
        assert!(attrs.merge(params).apply(&Params::default()).is_err());
    }

    #[test]
    fn legacy_output_is_in_the_stretched_frame_unless_a_resize_is_chosen() {
        let stretch = |width, height| Resize::Stretch { width, height };
        let fit = |width, height| Resize::Fit { width, height };
        assert_eq!(apply("").unwrap().resize, fit(1024, 1024));
        assert_eq!(apply("format=legacy").unwrap().resize, stretch(1024, 1024));
        assert_eq!(
            apply("format=legacy;frame_width=640;frame_height=480")
                .unwrap()
                .resize,
            stretch(640, 480)
        );
        let chosen = apply("format=legacy;resize=fit").unwrap();
        assert_eq!(
            (chosen.resize, chosen.resize_explicit),
            (fit(1024, 1024), true)
        );
        // A worker started with --format legacy (nothing chosen): a request for v2
        // gets v2's fit, one for legacy the stretch.
        let legacy_worker = apply("format=legacy").unwrap();
        assert!(!legacy_worker.resize_explicit);
        let v2 = Overrides::from_custom_attributes("format=v2")
            .unwrap()
            .apply(&legacy_worker)
            .unwrap();
        assert_eq!(v2.resize, fit(1024, 1024));
        // A worker started with an explicit resize keeps it for every format.
        let original = apply("resize=original").unwrap();
        let legacy = Overrides::from_custom_attributes("format=legacy")
            .unwrap()
            .apply(&original)
            .unwrap();
        assert_eq!(legacy.resize, Resize::Original);
    }

    #[test]
    fn resize_model_keeps_the_frame_of_its_format_and_needs_the_model_input_size() {
        let stretch = |width, height| Resize::Stretch { width, height };
        let fit = |width, height| Resize::Fit { width, height };
        let input = ModelInput {
            min_size: 240,
            max_size: 320,
        };
        let model = Resize::Model {
            min_size: 240,
            max_size: 320,
        };
        // Off unless chosen; the defaults are unchanged.
        assert!(!apply("").unwrap().model_size);
        assert!(!apply("format=legacy").unwrap().model_size);

        // v2: pictures at the model's size of the display size.
        let v2 = apply("resize=model").unwrap();
        assert!(v2.model_size && v2.resize_explicit);
        assert_eq!(v2.picture_size(Some(input)).unwrap(), model);
        // Legacy: the stretched frame stays the legacy frame; the model's size of it
        // is what is decoded (1024x1024 under 240/320: 240x240).
        let legacy = apply("format=legacy;resize=Model;frame_width=640;frame_height=480").unwrap();
        assert_eq!(legacy.resize, stretch(640, 480));
        assert_eq!(legacy.picture_size(Some(input)).unwrap(), stretch(320, 240));
        let legacy = apply("format=legacy;resize=model").unwrap();
        assert_eq!(legacy.picture_size(Some(input)).unwrap(), stretch(240, 240));
        // Other modes are untouched by the model's size.
        let chosen = apply("resize=fit").unwrap();
        assert_eq!(chosen.picture_size(Some(input)).unwrap(), fit(1024, 1024));

        // A worker started with resize=model keeps it for a legacy request, with the
        // worker's frame size, and a request can choose another mode.
        let worker = apply("resize=model;frame_width=800;frame_height=600").unwrap();
        let o = Overrides::from_custom_attributes("format=legacy").unwrap();
        let req = o.apply(&worker).unwrap();
        assert!(req.model_size);
        assert_eq!(req.resize, stretch(800, 600));
        let o = Overrides::from_custom_attributes("resize=stretch").unwrap();
        let req = o.apply(&worker).unwrap();
        assert!(!req.model_size);
        assert_eq!(req.picture_size(Some(input)).unwrap(), stretch(800, 600));

        // Without the model's input size the job is refused with what to do.
        let e = v2.picture_size(None).unwrap_err().to_string();
        assert!(
            e.contains("resize=model") && e.contains("export_model.py"),
            "{e}"
        );
        let e = apply("resize=smaller").unwrap_err().to_string();
        assert!(e.contains("fit, stretch, original or model"), "{e}");
        // Not written into saved parameters unless on.
        let json = serde_json::to_value(Params::default()).unwrap();
        assert!(json.get("model_size").is_none());
    }

    #[test]
    fn tracking_is_on_by_default_and_tuned_or_turned_off_per_request() {
        assert_eq!(
            Params::default().track,
            Some(TrackParams::default()),
            "on by default"
        );
        assert_eq!(apply("track=false").unwrap().track, None);
        let t = apply("track_iou=0.3;trackBufferS=2.5;track_high_score=0.6")
            .unwrap()
            .track
            .unwrap();
        assert_eq!((t.iou, t.buffer_s, t.high_score), (0.3, 2.5, 0.6));
        assert_eq!(t.low_score, TrackParams::default().low_score);
        // A worker started without tracking: a request that tunes it turns it on.
        let off = Params {
            track: None,
            ..Params::default()
        };
        let o = Overrides::from_custom_attributes("track_iou=0.4").unwrap();
        assert_eq!(o.apply(&off).unwrap().track.unwrap().iou, 0.4);
        assert_eq!(Overrides::default().apply(&off).unwrap().track, None);
        // The params object: camelCase or snake_case keys.
        let o: Overrides =
            serde_json::from_str(r#"{"track": true, "track_buffer_s": 0.5}"#).unwrap();
        assert_eq!(o.apply(&off).unwrap().track.unwrap().buffer_s, 0.5);
    }

    #[test]
    fn bad_tracking_values_are_refused_with_the_setting_named() {
        for (attrs, needle) in [
            ("track=maybe", "true or false"),
            ("track_iou=0", "track_iou"),
            ("track_iou=1.5", "track_iou"),
            ("track_buffer_s=-1", "track_buffer_s"),
            ("track_buffer_s=nan", "track_buffer_s"),
            ("track_low_score=0.8", "track_low_score"),
            ("track=false;track_iou=0.3", "track=false"),
        ] {
            let e = apply(attrs).unwrap_err().to_string();
            assert!(e.contains(needle), "{attrs}: {e}");
        }
    }
}
