//! From a predictions document to "what to draw on which frame", and the checks that
//! the document fits the video.
//!
//! - A `vidinfer/v2` document names its sampling (`params.sampling`) and each frame's
//!   presentation index; decoding the video with that sampling gives the same frames,
//!   and each is matched by index, never by position.
//! - A legacy array has one element per sampled frame and nothing else: the sampling
//!   (every `--frame-interval`-th frame) and the size of the frame its boxes refer to
//!   (`--frame-width`x`--frame-height`, the picture the model saw) come from the user,
//!   and elements are matched by position over that sampling.
//!
//! Anything that does not fit (a different number of frames, an index the video does
//! not have, a box outside the frame, a mask of another size) is an error naming the
//! mismatch and what to check, not a silently wrong picture.

use std::collections::HashMap;

use anyhow::{bail, ensure, Result};
use vidinfer_media::schema::{LegacyFrame, Predictions, Rle, V2Output};
use vidinfer_media::video::{Sampling, TimeRange};

/// How far (in the boxes' own pixels) a box may reach past the frame's edge before the
/// predictions are declared not to fit: rounding, not a different video.
pub const BOX_TOLERANCE: f32 = 1.0;

/// One detection as the predictions state it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub label_id: i64,
    /// The class name shown in the label.
    pub label: String,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in the plan's box coordinates ([`Plan::box_frame`]).
    pub bbox: [f32; 4],
    /// Instance mask over the source video frame (v2 documents made with masks).
    pub mask: Option<Rle>,
    /// The object's track (v2 documents made with tracking).
    pub track_id: Option<u64>,
}

/// The detections of one sampled frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlannedFrame {
    /// The frame's presentation index (v2); legacy frames are known only by position.
    pub index: Option<u64>,
    pub detections: Vec<Detection>,
}

/// Which kind of document the plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V2,
    Legacy,
}

/// Everything needed to decode the right frames and draw on them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    /// The sampling that yields the predictions' frames.
    pub sampling: Sampling,
    /// The span of the video they cover (a v2 document's `params.range`).
    pub range: TimeRange,
    pub frames: Vec<PlannedFrame>,
    /// The size of the frame box coordinates refer to: `None` for the video's own
    /// pixels (v2), `Some((w, h))` for the picture a legacy model saw.
    pub box_frame: Option<(u32, u32)>,
    /// The size of the video the predictions were made on, when the document says.
    pub video_size: Option<(u32, u32)>,
    /// Whether any detection carries a mask.
    pub has_masks: bool,
}

/// What a legacy array cannot say about itself (the old `generate_gif.py` flags).
#[derive(Debug, Clone)]
pub struct LegacyOptions {
    /// Every Nth frame was sampled (`--frame-interval`, default 30).
    pub frame_interval: u32,
    /// Width of the picture the boxes refer to (`--frame-width`, default 1024).
    pub frame_width: u32,
    /// Height of the picture the boxes refer to (`--frame-height`, default 1024).
    pub frame_height: u32,
    /// Class names indexed by label id (default: COCO's 91, as torchvision numbers them).
    pub classes: Vec<String>,
}

impl Default for LegacyOptions {
    fn default() -> Self {
        LegacyOptions {
            frame_interval: 30,
            frame_width: 1024,
            frame_height: 1024,
            classes: coco_classes(),
        }
    }
}

/// torchvision's COCO class names, indexed by label id.
pub fn coco_classes() -> Vec<String> {
    vidinfer_media::detection::COCO_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn class_name(classes: &[String], id: i64) -> String {
    usize::try_from(id)
        .ok()
        .and_then(|i| classes.get(i))
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("class {id}"))
}

/// "every 30th frame", "every frame", "2.5 frames per second", "the keyframes".
pub fn describe_sampling(s: Sampling) -> String {
    match s {
        Sampling::EveryNth(1) => "every frame".into(),
        Sampling::EveryNth(n) => {
            let suffix = match (n % 10, n % 100) {
                (_, 11..=13) => "th",
                (1, _) => "st",
                (2, _) => "nd",
                (3, _) => "rd",
                _ => "th",
            };
            format!("every {n}{suffix} frame")
        }
        Sampling::Fps(f) => format!("{f} frames per second"),
        Sampling::Keyframes => "the keyframes".into(),
    }
}

impl Plan {
    /// Read a predictions document into a plan, checking what can be checked without
    /// the video (sizes of legacy options, duplicate indices, empty documents).
    pub fn new(preds: &Predictions, legacy: &LegacyOptions) -> Result<Plan> {
        let plan = match preds {
            Predictions::V2(doc) => Plan::from_v2(doc)?,
            Predictions::Legacy(frames) => Plan::from_legacy(frames, legacy)?,
        };
        ensure!(
            !plan.frames.is_empty(),
            "the predictions have no frames: there is nothing to draw"
        );
        let has_masks = plan
            .frames
            .iter()
            .any(|f| f.detections.iter().any(|d| d.mask.is_some()));
        Ok(Plan { has_masks, ..plan })
    }

    fn from_v2(doc: &V2Output) -> Result<Plan> {
        let mut seen = HashMap::new();
        for (pos, f) in doc.frames.iter().enumerate() {
            if let Some(prev) = seen.insert(f.index, pos) {
                bail!(
                    "the predictions list frame index {} twice (entries {prev} and {pos}); \
                     a v2 document has one entry per sampled frame",
                    f.index
                );
            }
        }
        let frames = doc
            .frames
            .iter()
            .map(|f| PlannedFrame {
                index: Some(f.index),
                detections: f
                    .detections
                    .iter()
                    .map(|d| Detection {
                        label_id: d.label_id,
                        label: if d.label.is_empty() {
                            class_name(&doc.model.classes, d.label_id)
                        } else {
                            d.label.clone()
                        },
                        score: d.score,
                        bbox: d.bbox,
                        mask: d.mask.clone(),
                        track_id: d.track_id,
                    })
                    .collect(),
            })
            .collect();
        Ok(Plan {
            kind: Kind::V2,
            sampling: doc.params.sampling,
            range: doc.params.range,
            frames,
            box_frame: None,
            video_size: Some((doc.video.width, doc.video.height)),
            has_masks: false,
        })
    }

    fn from_legacy(frames: &[LegacyFrame], legacy: &LegacyOptions) -> Result<Plan> {
        ensure!(
            legacy.frame_interval >= 1,
            "--frame-interval must be at least 1"
        );
        ensure!(
            legacy.frame_width >= 1 && legacy.frame_height >= 1,
            "--frame-width and --frame-height must be at least 1, got {}x{}",
            legacy.frame_width,
            legacy.frame_height
        );
        let frames = frames
            .iter()
            .map(|f| PlannedFrame {
                index: None,
                detections: f
                    .boxes
                    .iter()
                    .zip(&f.labels)
                    .zip(&f.scores)
                    .map(|((b, &l), &s)| Detection {
                        label_id: l,
                        label: class_name(&legacy.classes, l),
                        score: s,
                        bbox: *b,
                        mask: None,
                        track_id: None,
                    })
                    .collect(),
            })
            .collect();
        Ok(Plan {
            range: TimeRange::default(),
            kind: Kind::Legacy,
            sampling: Sampling::EveryNth(legacy.frame_interval),
            frames,
            box_frame: Some((legacy.frame_width, legacy.frame_height)),
            video_size: None,
            has_masks: false,
        })
    }

    /// Source pixels per box unit, horizontally and vertically, for a video of
    /// `width`x`height` (1 for v2; legacy boxes live in a stretched picture).
    pub fn box_scale(&self, width: u32, height: u32) -> (f64, f64) {
        match self.box_frame {
            None => (1.0, 1.0),
            Some((fw, fh)) => (
                f64::from(width) / f64::from(fw),
                f64::from(height) / f64::from(fh),
            ),
        }
    }

    /// For a legacy array: the geometry it is read with, in words.
    pub fn describe_geometry(&self) -> Option<String> {
        let (fw, fh) = self.box_frame?;
        Some(format!(
            "legacy predictions read as {} with boxes in a {fw}x{fh} picture stretched \
             over the video (--frame-interval, --frame-width, --frame-height)",
            describe_sampling(self.sampling)
        ))
    }

    /// For a legacy array: a warning when its boxes cannot have come from the frame
    /// size it is read with — every box (of at least three) inside the top-left
    /// quarter, as boxes made on a smaller frame look.
    pub fn geometry_warning(&self) -> Option<String> {
        let (fw, fh) = self.box_frame?;
        let boxes: Vec<[f32; 4]> = self
            .frames
            .iter()
            .flat_map(|f| f.detections.iter().map(|d| d.bbox))
            .collect();
        if boxes.len() < 3 {
            return None;
        }
        let max_x = boxes.iter().map(|b| b[2]).fold(0.0f32, f32::max);
        let max_y = boxes.iter().map(|b| b[3]).fold(0.0f32, f32::max);
        (max_x <= fw as f32 / 2.0 && max_y <= fh as f32 / 2.0).then(|| {
            format!(
                "all {} boxes lie within the top-left {}x{} of the {fw}x{fh} frame they are \
                 read in: were they made on a smaller frame? Pass its size with \
                 --frame-width/--frame-height (vidinfer's legacy output is in the \
                 stretched {fw}x{fh} frame unless the worker was given another --resize)",
                boxes.len(),
                max_x.ceil(),
                max_y.ceil()
            )
        })
    }

    fn frame_name(&self, position: usize) -> String {
        match self.frames[position].index {
            Some(i) => format!("frame index {i}"),
            None => format!("frame {position} of the predictions"),
        }
    }

    /// Check the predictions against a `width`x`height` video (display size): the
    /// document's own record of the video, every box and every mask.
    pub fn check_video(&self, video: &str, width: u32, height: u32) -> Result<()> {
        if let Some((w, h)) = self.video_size {
            ensure!(
                (w, h) == (width, height),
                "the predictions were made on a {w}x{h} video but {video} is {width}x{height}: \
                 are they for another video?"
            );
        }
        let (fw, fh) = self.box_frame.unwrap_or((width, height));
        let (fwf, fhf) = (fw as f32, fh as f32);
        for (pos, f) in self.frames.iter().enumerate() {
            for d in &f.detections {
                let [x1, y1, x2, y2] = d.bbox;
                let fits = d.bbox.iter().all(|v| v.is_finite())
                    && x1 <= x2
                    && y1 <= y2
                    && x1 >= -BOX_TOLERANCE
                    && y1 >= -BOX_TOLERANCE
                    && x2 <= fwf + BOX_TOLERANCE
                    && y2 <= fhf + BOX_TOLERANCE;
                if !fits {
                    let hint = match self.kind {
                        Kind::Legacy => format!(
                            "legacy boxes are in the pixels of the picture the model saw, \
                             {fw}x{fh} here: pass its size with --frame-width/--frame-height"
                        ),
                        Kind::V2 => format!(
                            "v2 boxes are in the video's pixels ({width}x{height}): \
                             are these predictions for {video}?"
                        ),
                    };
                    bail!(
                        "{}: the box [{x1}, {y1}, {x2}, {y2}] of `{}` does not fit in the \
                         {fw}x{fh} frame; {hint}",
                        self.frame_name(pos),
                        d.label,
                    );
                }
                if let Some(m) = &d.mask {
                    let [mh, mw] = m.size;
                    ensure!(
                        (mw, mh) == (width, height),
                        "{}: the mask of `{}` is {mw}x{mh} but {video} is {width}x{height}: \
                         are these predictions for this video?",
                        self.frame_name(pos),
                        d.label,
                    );
                    let total: u64 = m.counts.iter().map(|&c| u64::from(c)).sum();
                    ensure!(
                        total == u64::from(mw) * u64::from(mh),
                        "{}: the mask of `{}` has runs adding up to {total} pixels, not \
                         {mw}x{mh}: the predictions file is damaged",
                        self.frame_name(pos),
                        d.label,
                    );
                }
            }
        }
        Ok(())
    }

    /// A matcher that pairs the video's sampled frames with the plan's frames.
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            by_index: self
                .frames
                .iter()
                .enumerate()
                .filter_map(|(p, f)| f.index.map(|i| (i, p)))
                .collect(),
            matched: vec![false; self.frames.len()],
            plan: self,
            sampled: 0,
            last_index: None,
            unmatched: None,
        }
    }
}

/// Pairs the video's sampled frames, as they are decoded, with the plan's frames: by
/// index for v2, by position for legacy. [`Matcher::finish`] tells whether the two
/// sides agreed.
pub struct Matcher<'a> {
    plan: &'a Plan,
    by_index: HashMap<u64, usize>,
    matched: Vec<bool>,
    /// Sampled frames of the video so far.
    sampled: usize,
    last_index: Option<u64>,
    /// The first sampled frame of the video with no entry in the predictions.
    unmatched: Option<u64>,
}

impl<'a> Matcher<'a> {
    /// The plan's frame for the video's next sampled frame (presentation index
    /// `index`), or `None` when the predictions have no entry for it.
    pub fn next(&mut self, index: u64) -> Option<(usize, &'a PlannedFrame)> {
        let position = self.sampled;
        self.sampled += 1;
        self.last_index = Some(index);
        let found = match self.plan.kind {
            Kind::V2 => self.by_index.get(&index).copied(),
            Kind::Legacy => (position < self.plan.frames.len()).then_some(position),
        };
        match found {
            Some(p) => {
                self.matched[p] = true;
                Some((p, &self.plan.frames[p]))
            }
            None => {
                self.unmatched.get_or_insert(index);
                None
            }
        }
    }

    /// Whether the frame with presentation index `index` is one of the sampled frames
    /// (for decoding every frame and picking the samples out): every Nth frame by the
    /// rule, frames sampled by rate by the document's own list.
    pub fn is_sampled(&self, index: u64) -> bool {
        match self.plan.sampling {
            Sampling::EveryNth(n) => index % u64::from(n.max(1)) == 0,
            Sampling::Fps(_) | Sampling::Keyframes => self.by_index.contains_key(&index),
        }
    }

    /// How many of the video's sampled frames were seen.
    pub fn sampled(&self) -> usize {
        self.sampled
    }

    /// Ok when every sampled frame of the video had an entry and every entry a frame.
    /// `video_frames` is the video's frame count when the container states it (used
    /// only to make the message more helpful).
    pub fn finish(self, video: &str, video_frames: Option<u64>) -> Result<()> {
        let plan = self.plan;
        let missing = self.matched.iter().position(|m| !m);
        if missing.is_none() && self.unmatched.is_none() {
            return Ok(());
        }
        let n = plan.frames.len();
        let m = self.sampled;
        let sampling = describe_sampling(plan.sampling);
        let stated = video_frames
            .map(|t| format!(" of its {t}"))
            .unwrap_or_default();
        let counts = format!(
            "the predictions have {n} frames but {video} has {m} sampled frames \
             ({sampling}{stated})"
        );
        let detail = match plan.kind {
            Kind::Legacy => {
                let hint = video_frames
                    .and_then(|t| intervals_giving(t, n as u64))
                    .map(|(lo, hi)| match hi {
                        Some(hi) if hi == lo => format!(" (--frame-interval {lo} would give {n})"),
                        Some(hi) => format!(" (--frame-interval {lo} to {hi} would give {n})"),
                        None => format!(" (--frame-interval {lo} or more would give {n})"),
                    })
                    .unwrap_or_default();
                format!(
                    "legacy predictions are matched to frames by position, so the counts \
                     must agree: pass the --frame-interval they were made with{hint}, and \
                     check they belong to this video"
                )
            }
            Kind::V2 => match (missing, self.unmatched) {
                (Some(p), _) => {
                    let index = plan.frames[p].index.unwrap_or_default();
                    match self.last_index {
                        Some(last) if index > last => format!(
                            "frame index {index} is beyond the video's last sampled frame \
                             ({last}): are these predictions for this video?"
                        ),
                        None => {
                            format!("frame index {index} is not in the video, which has no frames")
                        }
                        _ => format!(
                            "frame index {index} is not one of the video's sampled frames: \
                             are these predictions for this video?"
                        ),
                    }
                }
                (None, Some(index)) => format!(
                    "the video's sampled frame {index} has no entry in the predictions: \
                     are they for this video, or cut short?"
                ),
                (None, None) => unreachable!("handled above"),
            },
        };
        bail!("the predictions do not fit the video: {counts}; {detail}")
    }
}

/// The intervals N for which every-Nth sampling of `total` frames gives `count`
/// frames: `(lo, Some(hi))`, or `(lo, None)` for "lo or more"; `None` if there are none.
fn intervals_giving(total: u64, count: u64) -> Option<(u64, Option<u64>)> {
    if count == 0 || total == 0 || count > total {
        return None;
    }
    // ceil(total / n) == count  <=>  total/count <= n < total/(count-1)
    let lo = total.div_ceil(count);
    if count == 1 {
        return Some((lo, None));
    }
    let hi = (total - 1) / (count - 1);
    (lo <= hi).then_some((lo, Some(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidinfer_media::schema::LegacyFrame;

    fn legacy(n: usize) -> Predictions {
        Predictions::Legacy(
            (0..n)
                .map(|i| LegacyFrame {
                    boxes: vec![[10.0, 20.0, 500.0, 1024.0]],
                    labels: vec![1],
                    scores: vec![0.5 + i as f32 / 100.0],
                })
                .collect(),
        )
    }

    fn v2(indices: &[u64], sampling: Sampling) -> Predictions {
        let frames: Vec<serde_json::Value> = indices
            .iter()
            .map(|i| {
                serde_json::json!({"index": i, "pts_s": *i as f64 / 25.0, "detections": [
                    {"label": "", "label_id": 2, "score": 0.95, "box": [1.0, 2.0, 30.0, 40.0]}
                ]})
            })
            .collect();
        let doc = serde_json::json!({
            "schema": "vidinfer/v2",
            "video": {"container": "mov", "codec": "h264", "width": 320, "height": 240,
                      "rotation": 0, "fps": 25.0, "duration_s": 6.0, "frames": 150,
                      "pixel_format": "yuv420p"},
            "model": {"name": "m", "classes": ["__background__", "square", "circle"], "device": "cpu"},
            "params": {"sampling": sampling, "frame_width": 320, "frame_height": 240, "masks": false},
            "frames": frames,
        });
        Predictions::parse(doc.to_string().as_bytes()).unwrap()
    }

    fn run_matcher(
        plan: &Plan,
        video_indices: impl IntoIterator<Item = u64>,
    ) -> Result<Vec<usize>> {
        let mut m = plan.matcher();
        let mut got = Vec::new();
        for i in video_indices {
            if let Some((p, _)) = m.next(i) {
                got.push(p);
            }
        }
        m.finish("v.mp4", Some(150)).map(|()| got)
    }

    #[test]
    fn sampling_reads_like_english() {
        assert_eq!(describe_sampling(Sampling::EveryNth(1)), "every frame");
        assert_eq!(describe_sampling(Sampling::EveryNth(2)), "every 2nd frame");
        assert_eq!(describe_sampling(Sampling::EveryNth(3)), "every 3rd frame");
        assert_eq!(
            describe_sampling(Sampling::EveryNth(11)),
            "every 11th frame"
        );
        assert_eq!(
            describe_sampling(Sampling::EveryNth(21)),
            "every 21st frame"
        );
        assert_eq!(
            describe_sampling(Sampling::EveryNth(30)),
            "every 30th frame"
        );
        assert_eq!(
            describe_sampling(Sampling::Fps(2.5)),
            "2.5 frames per second"
        );
    }

    #[test]
    fn v2_frames_match_by_index_whatever_their_order() {
        let plan = Plan::new(
            &v2(&[60, 0, 30], Sampling::EveryNth(30)),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(plan.sampling, Sampling::EveryNth(30));
        assert_eq!(
            plan.frames[0].detections[0].label, "circle",
            "named from the classes"
        );
        assert_eq!(run_matcher(&plan, [0, 30, 60]).unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn v2_mismatches_name_the_frame_and_the_counts() {
        let plan = Plan::new(
            &v2(&[0, 30, 9000], Sampling::EveryNth(30)),
            &Default::default(),
        )
        .unwrap();
        let e = run_matcher(&plan, [0, 30, 60]).unwrap_err().to_string();
        assert!(e.contains("have 3 frames"), "{e}");
        assert!(
            e.contains("has 3 sampled frames (every 30th frame of its 150)"),
            "{e}"
        );
        assert!(
            e.contains("frame index 9000 is beyond the video's last sampled frame (60)"),
            "{e}"
        );

        let plan = Plan::new(&v2(&[0, 15], Sampling::EveryNth(30)), &Default::default()).unwrap();
        let e = run_matcher(&plan, [0, 30]).unwrap_err().to_string();
        assert!(
            e.contains("frame index 15 is not one of the video's sampled frames"),
            "{e}"
        );

        let plan = Plan::new(&v2(&[0, 30], Sampling::EveryNth(30)), &Default::default()).unwrap();
        let e = run_matcher(&plan, [0, 30, 60]).unwrap_err().to_string();
        assert!(
            e.contains("have 2 frames but v.mp4 has 3 sampled frames"),
            "{e}"
        );
        assert!(e.contains("sampled frame 60 has no entry"), "{e}");

        let dup = Plan::new(
            &v2(&[0, 30, 0], Sampling::EveryNth(30)),
            &Default::default(),
        );
        assert!(dup.unwrap_err().to_string().contains("frame index 0 twice"));
    }

    #[test]
    fn legacy_frames_match_by_position_and_counts_must_agree() {
        let plan = Plan::new(&legacy(5), &Default::default()).unwrap();
        assert_eq!(plan.sampling, Sampling::EveryNth(30));
        assert_eq!(
            plan.frames[0].detections[0].label, "person",
            "COCO by default"
        );
        assert_eq!(
            run_matcher(&plan, [0, 30, 60, 90, 120]).unwrap(),
            vec![0, 1, 2, 3, 4]
        );

        let e = run_matcher(&plan, [0, 30, 60, 90]).unwrap_err().to_string();
        assert!(
            e.contains("have 5 frames but v.mp4 has 4 sampled frames"),
            "{e}"
        );
        let plan6 = Plan::new(&legacy(6), &Default::default()).unwrap();
        let e = run_matcher(&plan6, [0, 30, 60, 90, 120])
            .unwrap_err()
            .to_string();
        assert!(e.contains("have 6 frames"), "{e}");
        assert!(e.contains("--frame-interval 25 to 29 would give 6"), "{e}");
    }

    #[test]
    fn interval_hints_are_exact() {
        for total in 1..200u64 {
            for count in 1..=total {
                if let Some((lo, hi)) = intervals_giving(total, count) {
                    let end = hi.unwrap_or(total * 3);
                    for n in lo..=end {
                        assert_eq!(total.div_ceil(n), count, "total {total} n {n}");
                    }
                    if lo > 1 {
                        assert_ne!(total.div_ceil(lo - 1), count, "the range is widest");
                    }
                    if let Some(hi) = hi {
                        assert_ne!(total.div_ceil(hi + 1), count, "the range is widest");
                    }
                } else {
                    assert!((1..=total).all(|n| total.div_ceil(n) != count));
                }
            }
        }
    }

    #[test]
    fn boxes_and_masks_must_fit_the_frame_they_refer_to() {
        let legacy_opts = LegacyOptions::default();
        let plan = Plan::new(&legacy(2), &legacy_opts).unwrap();
        plan.check_video("v.mp4", 320, 240).unwrap();
        assert_eq!(plan.box_scale(320, 240), (0.3125, 0.234375));
        let small = LegacyOptions {
            frame_width: 640,
            frame_height: 480,
            ..legacy_opts
        };
        let e = Plan::new(&legacy(2), &small)
            .unwrap()
            .check_video("v.mp4", 320, 240)
            .unwrap_err()
            .to_string();
        assert!(e.contains("frame 0 of the predictions"), "{e}");
        assert!(e.contains("does not fit in the 640x480 frame"), "{e}");
        assert!(e.contains("--frame-width/--frame-height"), "{e}");

        let plan = Plan::new(&v2(&[0], Sampling::EveryNth(30)), &Default::default()).unwrap();
        plan.check_video("v.mp4", 320, 240).unwrap();
        let e = plan.check_video("v.mp4", 640, 480).unwrap_err().to_string();
        assert!(
            e.contains("made on a 320x240 video but v.mp4 is 640x480"),
            "{e}"
        );

        let mut bad = plan.clone();
        bad.frames[0].detections[0].bbox = [300.0, 0.0, 330.0, 20.0];
        let e = bad.check_video("v.mp4", 320, 240).unwrap_err().to_string();
        assert!(
            e.contains("frame index 0: the box [300, 0, 330, 20]"),
            "{e}"
        );
        bad.frames[0].detections[0].bbox = [30.0, 0.0, 20.0, 20.0];
        assert!(bad.check_video("v.mp4", 320, 240).is_err(), "x2 < x1");
        bad.frames[0].detections[0].bbox = [f32::NAN, 0.0, 20.0, 20.0];
        assert!(bad.check_video("v.mp4", 320, 240).is_err(), "NaN");
        bad.frames[0].detections[0].bbox = [-0.5, 0.0, 320.5, 240.0];
        bad.check_video("v.mp4", 320, 240).unwrap();

        bad.frames[0].detections[0].mask = Some(Rle {
            size: [120, 160],
            counts: vec![19200],
        });
        let e = bad.check_video("v.mp4", 320, 240).unwrap_err().to_string();
        assert!(e.contains("mask of `circle` is 160x120"), "{e}");
        bad.frames[0].detections[0].mask = Some(Rle {
            size: [240, 320],
            counts: vec![100, 5],
        });
        let e = bad.check_video("v.mp4", 320, 240).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn empty_predictions_and_bad_legacy_options_are_refused() {
        assert!(Plan::new(&legacy(0), &Default::default()).is_err());
        let zero = LegacyOptions {
            frame_interval: 0,
            ..Default::default()
        };
        assert!(Plan::new(&legacy(1), &zero).is_err());
    }
}
