//! Output schemas: vidinfer's own `vidinfer/v2` document and the legacy array.
//!
//! **v2** (default) describes the video, the model and the parameters, and lists every
//! sampled frame by its index and timestamp with detections in *source-video pixels*
//! (masks as COCO run-length encoding over the source frame). `schema/v2.schema.json`
//! in the repository is its JSON Schema.
//!
//! **legacy** is the old TorchServe handler's output, byte-for-byte in shape:
//! `[{"boxes":[[x1,y1,x2,y2],…],"labels":[int],"scores":[float]}]`, one element per
//! sampled frame, boxes in the coordinates of the resized frame the model saw.
//!
//! Both are read back by [`Predictions::parse`] (gifgen and tests use it).

use serde::{Deserialize, Serialize};

use crate::detection::{CropMask, Detection, ModelInfo};
use crate::track::{TrackParams, TrackSummary};
use crate::video::{target_size, FrameMeta, Resize, Sampling, TimeRange, VideoInfo};

/// The v2 schema identifier.
pub const SCHEMA_V2: &str = "vidinfer/v2";

/// Which document a job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    V2,
    Legacy,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "v2" | "vidinfer/v2" => Ok(OutputFormat::V2),
            "legacy" | "v1" => Ok(OutputFormat::Legacy),
            _ => Err(format!("`{s}` is not an output format: use v2 or legacy")),
        }
    }
}

/// COCO's uncompressed run-length encoding of a binary mask: column-major runs,
/// starting with a (possibly empty) run of zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rle {
    /// [height, width]
    pub size: [u32; 2],
    pub counts: Vec<u32>,
}

impl Rle {
    /// Decode into a row-major 0/1 bitmap of `height * width` values.
    pub fn decode(&self) -> Vec<u8> {
        let [h, w] = self.size;
        let (h, w) = (h as usize, w as usize);
        let mut out = vec![0u8; h * w];
        let mut pos = 0usize;
        for (i, &run) in self.counts.iter().enumerate() {
            let run = run as usize;
            if i % 2 == 1 {
                for p in pos..(pos + run).min(h * w) {
                    let (x, y) = (p / h, p % h);
                    out[y * w + x] = 1;
                }
            }
            pos += run;
        }
        out
    }

    /// Number of pixels set.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| u64::from(c))
            .sum()
    }
}

/// Encode a cropped mask, seen in a picture `scale_x`/`scale_y` times smaller than the
/// source frame, as RLE over the whole `width`×`height` source frame (nearest pixel).
pub fn mask_to_rle(mask: &CropMask, scale_x: f64, scale_y: f64, width: u32, height: u32) -> Rle {
    // The mask's extent in source pixels.
    let sx0 = ((f64::from(mask.x0) * scale_x).floor() as u32).min(width);
    let sy0 = ((f64::from(mask.y0) * scale_y).floor() as u32).min(height);
    let sx1 = ((f64::from(mask.x0 + mask.width) * scale_x).ceil() as u32).min(width);
    let sy1 = ((f64::from(mask.y0 + mask.height) * scale_y).ceil() as u32).min(height);
    let mut counts = Vec::new();
    let mut current = 0u8;
    let mut run = 0u32;
    let mut push = |v: u8, n: u32, counts: &mut Vec<u32>| {
        if n == 0 {
            return;
        }
        if v == current {
            run += n;
        } else {
            counts.push(run);
            current = v;
            run = n;
        }
    };
    // Whole columns left of the mask are zeros.
    push(0, sx0 * height, &mut counts);
    for x in sx0..sx1 {
        push(0, sy0, &mut counts);
        let mx = ((f64::from(x) + 0.5) / scale_x).floor() as i64 - i64::from(mask.x0);
        for y in sy0..sy1 {
            let my = ((f64::from(y) + 0.5) / scale_y).floor() as i64 - i64::from(mask.y0);
            let v = if mx >= 0 && my >= 0 && (mx as u32) < mask.width && (my as u32) < mask.height {
                mask.bits[my as usize * mask.width as usize + mx as usize]
            } else {
                0
            };
            push(v.min(1), 1, &mut counts);
        }
        push(0, height - sy1, &mut counts);
    }
    push(0, (width - sx1) * height, &mut counts);
    counts.push(run);
    Rle {
        size: [height, width],
        counts,
    }
}

/// One detection in the v2 document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2Detection {
    pub label: String,
    pub label_id: i64,
    pub score: f32,
    /// [x1, y1, x2, y2] in source-video pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Rle>,
    /// The object's identity across frames (tracking on; absent when the detection
    /// joined no track).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

/// One tracked object in the v2 document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2Track {
    pub id: u64,
    pub label: String,
    pub label_id: i64,
    /// Presentation index and time of the first and last sampled frames it was seen in.
    pub first_frame: u64,
    pub last_frame: u64,
    pub first_pts_s: f64,
    pub last_pts_s: f64,
    /// Sampled frames it was matched in.
    pub frames: u64,
    pub best_score: f32,
    /// [x1, y1, x2, y2] in source-video pixels, in the frame of the best score.
    pub best_box: [f32; 4],
}

/// One sampled frame in the v2 document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2Frame {
    /// Position in presentation order, counting every frame of the video from 0.
    pub index: u64,
    /// Presentation time in seconds.
    pub pts_s: f64,
    pub detections: Vec<V2Detection>,
}

/// The model as recorded in the v2 document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2Model {
    pub name: String,
    pub classes: Vec<String>,
    pub device: String,
}

/// The parameters a job ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2Params {
    pub sampling: Sampling,
    /// The span of the video the job covered (absent: all of it). Frame indices and
    /// times are those of the whole video.
    #[serde(default, skip_serializing_if = "TimeRange::is_all")]
    pub range: TimeRange,
    /// Detections below this score were dropped (absent: the model's own threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Size of the pictures the model saw.
    pub frame_width: u32,
    pub frame_height: u32,
    pub masks: bool,
    /// The tracker's parameters (absent: tracking was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackParams>,
}

/// The `vidinfer/v2` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2Output {
    pub schema: String,
    pub video: VideoInfo,
    pub model: V2Model,
    pub params: V2Params,
    pub frames: Vec<V2Frame>,
    /// Every tracked object (tracking on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<V2Track>>,
}

/// One element of the legacy array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LegacyFrame {
    pub boxes: Vec<[f32; 4]>,
    pub labels: Vec<i64>,
    pub scores: Vec<f32>,
}

/// Detections of one sampled frame as the engine produced them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameDetections {
    /// The frame; its size is the picture the model saw.
    pub meta: FrameMeta,
    pub detections: Vec<Detection>,
}

/// Everything needed to render a job's document.
#[derive(Debug, Clone)]
pub struct Assembled<'a> {
    pub video: &'a VideoInfo,
    pub model: &'a ModelInfo,
    pub sampling: Sampling,
    pub range: TimeRange,
    pub min_score: Option<f32>,
    pub masks: bool,
    pub frames: &'a [FrameDetections],
    /// The tracker's parameters and every track it made (`None`: tracking off).
    pub tracking: Option<(TrackParams, &'a [TrackSummary])>,
    /// The frame the legacy array's boxes are written in, as the size this resize gives
    /// the video, when the model saw pictures of another size (`resize=model`: the
    /// stretched frame at the model's own size); `None`: the picture the model saw.
    pub legacy_frame: Option<Resize>,
}

/// Whether a score is kept in a document with this `min_score`: the one rule for the
/// documents, their tracks and the count of detections a job reports.
pub fn meets_min_score(min_score: Option<f32>, score: f32) -> bool {
    min_score.is_none_or(|m| score >= m)
}

impl Assembled<'_> {
    fn kept(&self, d: &Detection) -> bool {
        meets_min_score(self.min_score, d.score)
    }

    /// The v2 document.
    pub fn v2(&self) -> V2Output {
        let (fw, fh) = self
            .frames
            .first()
            .map(|f| (f.meta.width, f.meta.height))
            .unwrap_or((self.video.width, self.video.height));
        V2Output {
            schema: SCHEMA_V2.into(),
            video: self.video.clone(),
            model: V2Model {
                name: self.model.name.clone(),
                classes: self.model.classes.clone(),
                device: self.model.device.clone(),
            },
            params: V2Params {
                sampling: self.sampling,
                range: self.range,
                min_score: self.min_score,
                frame_width: fw,
                frame_height: fh,
                masks: self.masks,
                tracking: self.tracking.map(|(p, _)| p),
            },
            tracks: self.tracking.map(|(_, tracks)| self.tracks(tracks)),
            frames: self
                .frames
                .iter()
                .map(|f| V2Frame {
                    index: f.meta.index,
                    pts_s: f.meta.pts_s,
                    detections: f
                        .detections
                        .iter()
                        .filter(|d| self.kept(d))
                        .map(|d| V2Detection {
                            label: self.model.label(d.label_id),
                            label_id: d.label_id,
                            score: d.score,
                            bbox: source_box(d.bbox, &f.meta, self.video),
                            mask: d.mask.as_ref().filter(|_| self.masks).map(|m| {
                                mask_to_rle(
                                    m,
                                    f.meta.scale_x,
                                    f.meta.scale_y,
                                    self.video.width,
                                    self.video.height,
                                )
                            }),
                            track_id: d.track_id,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The tracks whose best detection is in the document (not all below `min_score`).
    fn tracks(&self, tracks: &[TrackSummary]) -> Vec<V2Track> {
        tracks
            .iter()
            .filter(|t| meets_min_score(self.min_score, t.best_score))
            .map(|t| V2Track {
                id: t.id,
                label: self.model.label(t.label_id),
                label_id: t.label_id,
                first_frame: t.first_frame,
                last_frame: t.last_frame,
                first_pts_s: t.first_pts_s,
                last_pts_s: t.last_pts_s,
                frames: t.frames,
                best_score: t.best_score,
                best_box: t.best_box,
            })
            .collect()
    }

    /// The legacy array: boxes in the coordinates of the picture the model saw, or of
    /// [`Assembled::legacy_frame`].
    pub fn legacy(&self) -> Vec<LegacyFrame> {
        let frame = self
            .legacy_frame
            .map(|r| target_size(self.video.width, self.video.height, r));
        self.frames
            .iter()
            .map(|f| {
                let mut out = LegacyFrame::default();
                for d in f.detections.iter().filter(|d| self.kept(d)) {
                    out.boxes.push(legacy_box(d.bbox, &f.meta, frame));
                    out.labels.push(d.label_id);
                    out.scores.push(d.score);
                }
                out
            })
            .collect()
    }

    /// The document in the requested format, as JSON bytes.
    pub fn to_json(&self, format: OutputFormat) -> Vec<u8> {
        let r = match format {
            OutputFormat::V2 => serde_json::to_vec(&self.v2()),
            OutputFormat::Legacy => serde_json::to_vec(&self.legacy()),
        };
        r.expect("schema types always serialize")
    }
}

/// A box in the pixels of the picture the model saw, in the pixels of `frame` (a size of
/// the same video; `None` or the picture's own size: unchanged). The ratio and the
/// products are float32, the arithmetic torchvision's `resize_boxes` does when a model
/// maps its boxes from its own size back to a larger picture it was given: the legacy
/// array of a model-size picture is the one of the stretched frame but for what the
/// pictures' pixels change.
pub fn legacy_box(b: [f32; 4], meta: &FrameMeta, frame: Option<(u32, u32)>) -> [f32; 4] {
    match frame {
        Some((w, h)) if (w, h) != (meta.width, meta.height) => {
            let rx = w as f32 / meta.width as f32;
            let ry = h as f32 / meta.height as f32;
            [b[0] * rx, b[1] * ry, b[2] * rx, b[3] * ry]
        }
        _ => b,
    }
}

/// A box in the pixels of the picture the model saw, in source-video pixels (clamped to
/// the video): what the v2 document writes and the tracker follows.
pub fn source_box(b: [f32; 4], meta: &FrameMeta, video: &VideoInfo) -> [f32; 4] {
    let (w, h) = (video.width as f32, video.height as f32);
    let (sx, sy) = (meta.scale_x, meta.scale_y);
    [
        ((f64::from(b[0]) * sx) as f32).clamp(0.0, w),
        ((f64::from(b[1]) * sy) as f32).clamp(0.0, h),
        ((f64::from(b[2]) * sx) as f32).clamp(0.0, w),
        ((f64::from(b[3]) * sy) as f32).clamp(0.0, h),
    ]
}

/// A predictions file of either kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    V2(Box<V2Output>),
    Legacy(Vec<LegacyFrame>),
}

/// Why a predictions document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("neither a vidinfer/v2 document nor a legacy array of {{boxes, labels, scores}}: {0}")]
    Shape(String),
    #[error(
        "legacy frame {frame}: {boxes} boxes, {labels} labels and {scores} scores differ in number"
    )]
    Ragged {
        frame: usize,
        boxes: usize,
        labels: usize,
        scores: usize,
    },
}

impl Predictions {
    /// Read a v2 document or a legacy array, telling them apart by shape.
    pub fn parse(bytes: &[u8]) -> Result<Predictions, SchemaError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        // Coordinates and scores are f32: a larger number would read as infinity and
        // could not be written back as JSON.
        if let Some(n) = out_of_f32_range(&value) {
            return Err(SchemaError::Shape(format!(
                "the number {n} is out of range for a coordinate or score"
            )));
        }
        match &value {
            serde_json::Value::Array(_) => {
                let frames: Vec<LegacyFrame> =
                    serde_json::from_value(value).map_err(|e| SchemaError::Shape(e.to_string()))?;
                for (i, f) in frames.iter().enumerate() {
                    if f.boxes.len() != f.labels.len() || f.labels.len() != f.scores.len() {
                        return Err(SchemaError::Ragged {
                            frame: i,
                            boxes: f.boxes.len(),
                            labels: f.labels.len(),
                            scores: f.scores.len(),
                        });
                    }
                }
                Ok(Predictions::Legacy(frames))
            }
            serde_json::Value::Object(o) => {
                match o.get("schema").and_then(|s| s.as_str()) {
                    Some(SCHEMA_V2) => {}
                    Some(other) => {
                        return Err(SchemaError::Shape(format!("unknown schema `{other}`")))
                    }
                    None => return Err(SchemaError::Shape("an object without `schema`".into())),
                }
                serde_json::from_value(value)
                    .map(|v| Predictions::V2(Box::new(v)))
                    .map_err(|e| SchemaError::Shape(e.to_string()))
            }
            _ => Err(SchemaError::Shape("neither an array nor an object".into())),
        }
    }
}

/// The first non-integer number whose magnitude exceeds f32's range, if any.
fn out_of_f32_range(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => n
            .as_f64()
            .filter(|x| !x.is_finite() || x.abs() > f64::from(f32::MAX)),
        serde_json::Value::Array(a) => a.iter().find_map(out_of_f32_range),
        serde_json::Value::Object(o) => o.values().find_map(out_of_f32_range),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_beyond_f32_are_refused_not_read_as_infinity() {
        let legacy = br#"[{"boxes":[[1,2,3,1e39]],"labels":[1],"scores":[0.9]}]"#;
        let e = Predictions::parse(legacy).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let fine = br#"[{"boxes":[[1,2,3,3.0e38]],"labels":[1],"scores":[0.9]}]"#;
        assert!(Predictions::parse(fine).is_ok());
    }

    #[test]
    fn rle_of_a_crop_round_trips_at_scale_one_and_two() {
        // A 3x2 mask at (2,1) in a 6x4 picture: an L shape.
        let mask = CropMask {
            x0: 2,
            y0: 1,
            width: 3,
            height: 2,
            bits: vec![1, 0, 0, 1, 1, 1],
        };
        let rle = mask_to_rle(&mask, 1.0, 1.0, 6, 4);
        assert_eq!(rle.area(), 4);
        let bits = rle.decode();
        let set: Vec<(usize, usize)> = (0..24)
            .filter(|i| bits[*i] == 1)
            .map(|i| (i % 6, i / 6))
            .collect();
        assert_eq!(set, vec![(2, 1), (2, 2), (3, 2), (4, 2)]);
        let rle2 = mask_to_rle(&mask, 2.0, 2.0, 12, 8);
        assert_eq!(rle2.area(), 16);
        assert_eq!(rle2.counts.iter().map(|&c| c as u64).sum::<u64>(), 96);
    }

    /// A picture at the model's size of the stretched 1024x1024 frame (240x240 under
    /// 240/320): legacy boxes go to the stretched frame by the float32 ratio, v2 boxes
    /// to source pixels by the frame's scale, the two agreeing on where a box is.
    #[test]
    fn boxes_of_a_model_size_picture_map_to_the_legacy_frame_and_to_source() {
        let video = VideoInfo {
            container: "mp4".into(),
            codec: "h264".into(),
            width: 1280,
            height: 720,
            rotation: 0,
            fps: None,
            duration_s: None,
            frames: None,
            pixel_format: "yuv420p".into(),
        };
        let meta = FrameMeta {
            index: 0,
            pts_s: 0.0,
            width: 240,
            height: 240,
            scale_x: 1280.0 / 240.0,
            scale_y: 720.0 / 240.0,
        };
        let b = [12.5, 30.25, 239.0, 240.0];
        let stretched = Resize::Stretch {
            width: 1024,
            height: 1024,
        };
        let frame = Some(target_size(video.width, video.height, stretched));
        let legacy = legacy_box(b, &meta, frame);
        let ratio = 1024f32 / 240f32;
        assert_eq!(legacy, b.map(|v| v * ratio));
        assert_eq!(legacy[3], 1024.0);
        // The same box in source pixels, from either frame.
        let source = source_box(b, &meta, &video);
        for k in 0..4 {
            let s = if k % 2 == 0 { 1280.0 } else { 720.0 };
            assert!((legacy[k] * s / 1024.0 - source[k]).abs() < 1e-3);
        }
        // A picture that is the legacy frame, or no legacy frame: unchanged.
        assert_eq!(legacy_box(b, &meta, Some((240, 240))), b);
        assert_eq!(legacy_box(b, &meta, None), b);
    }

    #[test]
    fn legacy_and_v2_are_told_apart_and_ragged_legacy_is_refused() {
        let legacy = br#"[{"boxes":[[1,2,3,4]],"labels":[1],"scores":[0.9]},{"boxes":[],"labels":[],"scores":[]}]"#;
        assert!(
            matches!(Predictions::parse(legacy).unwrap(), Predictions::Legacy(f) if f.len() == 2)
        );
        let ragged = br#"[{"boxes":[[1,2,3,4]],"labels":[],"scores":[0.9]}]"#;
        assert!(matches!(
            Predictions::parse(ragged),
            Err(SchemaError::Ragged { frame: 0, .. })
        ));
        assert!(matches!(
            Predictions::parse(br#"{"a":1}"#),
            Err(SchemaError::Shape(_))
        ));
        assert!(matches!(
            Predictions::parse(b"nope"),
            Err(SchemaError::Json(_))
        ));
    }
}
