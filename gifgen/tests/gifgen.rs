//! The `gifgen` binary end to end, on the bundled sample video with predictions built
//! from its ground truth (so every box is known to the pixel).
//!
//! Cargo builds the binary for these tests and names it in `CARGO_BIN_EXE_gifgen`.
//! GIF pixels are decoded by FFmpeg (an independent decoder; the tests already need
//! it), while the GIF's structure (frame delays, the loop extension) is read by a small
//! block walker below.

// The shared harness names the media layer `vidinfer::` (it is the root crate's);
// here that is vidinfer-media, so these tests build without LibTorch.
extern crate vidinfer_media as vidinfer;

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{repo, sample_video, scratch, SampleTruth};
use vidinfer_media::schema::{LegacyFrame, V2Detection, V2Frame, V2Model, V2Output, V2Params};
use vidinfer_media::video::Sampling;

/// Every 30th frame of the 150-frame sample: indices 0, 30, 60, 90, 120.
const INTERVAL: u64 = 30;
const SAMPLED: [u64; 5] = [0, 30, 60, 90, 120];
/// The score given to every ground-truth object.
const TRUTH_SCORE: f32 = 0.97;
/// Extra detections in frame 0, on empty parts of the picture, to test the threshold:
/// (label id, score, box). Strictly above 0.9 is drawn by default, so neither is.
const EXTRAS: [(i64, f32, [f32; 4]); 2] = [
    (3, 0.85, [140.0, 100.0, 200.0, 140.0]),
    (2, 0.90, [140.0, 180.0, 200.0, 220.0]),
];
const CLASSES: [&str; 4] = ["__background__", "square", "circle", "triangle"];

/// The `gifgen` binary Cargo built for these tests.
fn gifgen() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gifgen"))
}

fn run(args: &[&str]) -> Output {
    Command::new(gifgen())
        .args(args)
        .output()
        .expect("spawn gifgen")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run gifgen on the sample video and `predictions`, writing `out`; extra flags follow.
/// Returns the arguments given and what gifgen did.
fn run_on_sample(predictions: &Path, out: &Path, extra: &[&str]) -> (Vec<String>, Output) {
    let args: Vec<String> = [
        "--video",
        sample_video().to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = run(&refs);
    (args, result)
}

/// Run gifgen on the sample video and `predictions`, expecting success; extra flags
/// follow. Returns the GIF's path.
fn render(dir: &Path, name: &str, predictions: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let (args, result) = run_on_sample(predictions, &out, extra);
    assert!(
        result.status.success(),
        "gifgen {args:?} failed:\n{}",
        stderr(&result)
    );
    assert!(out.is_file());
    out
}

/// Run gifgen expecting failure; returns stderr.
fn refuse(predictions: &Path, extra: &[&str]) -> String {
    let dir = scratch();
    let out = dir.path().join("refused.gif");
    let (args, result) = run_on_sample(predictions, &out, extra);
    assert!(!result.status.success(), "gifgen {args:?} should fail");
    assert!(!out.exists(), "no GIF is left behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "no partial file is left behind");
    stderr(&result)
}

// --- Predictions built from the ground truth -------------------------------------

/// A detection: label id, score, box in source pixels, optional mask.
type Det = (i64, f32, [f32; 4], Option<vidinfer_media::schema::Rle>);

/// The detections to draw on each sampled frame: every true object at 0.97, plus the
/// threshold probes in frame 0.
fn truth_detections() -> Vec<(u64, f64, Vec<Det>)> {
    let truth = SampleTruth::load();
    assert_eq!((truth.width, truth.height, truth.frames), (320, 240, 150));
    SAMPLED
        .iter()
        .map(|&i| {
            let f = &truth.truth[i as usize];
            assert_eq!(f.index, i);
            let mut dets: Vec<Det> = f
                .objects
                .iter()
                .map(|o| (o.label_id, TRUTH_SCORE, o.bbox, Some(o.mask.clone())))
                .collect();
            if i == 0 {
                dets.extend(EXTRAS.iter().map(|&(l, s, b)| (l, s, b, None)));
            }
            (i, f.pts_s, dets)
        })
        .collect()
}

fn v2_document(frames: &[(u64, f64, Vec<Det>)]) -> V2Output {
    let video = vidinfer_media::video::probe(sample_video().as_path()).unwrap();
    V2Output {
        schema: vidinfer_media::schema::SCHEMA_V2.into(),
        video,
        model: V2Model {
            name: "truth".into(),
            classes: CLASSES.map(String::from).to_vec(),
            device: "cpu".into(),
        },
        params: V2Params {
            sampling: Sampling::EveryNth(INTERVAL as u32),
            range: Default::default(),
            min_score: None,
            frame_width: 320,
            frame_height: 240,
            masks: true,
            tracking: None,
        },
        tracks: None,
        frames: frames
            .iter()
            .map(|(index, pts_s, dets)| V2Frame {
                index: *index,
                pts_s: *pts_s,
                detections: dets
                    .iter()
                    .map(|(l, s, b, m)| V2Detection {
                        label: CLASSES[*l as usize].into(),
                        label_id: *l,
                        score: *s,
                        bbox: *b,
                        mask: m.clone(),
                        track_id: None,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The same detections as a legacy array, boxes in a `fw`x`fh` stretched frame.
fn legacy_document(frames: &[(u64, f64, Vec<Det>)], fw: f32, fh: f32) -> Vec<LegacyFrame> {
    let (kx, ky) = (fw / 320.0, fh / 240.0);
    frames
        .iter()
        .map(|(_, _, dets)| LegacyFrame {
            boxes: dets
                .iter()
                .map(|(_, _, b, _)| [b[0] * kx, b[1] * ky, b[2] * kx, b[3] * ky])
                .collect(),
            labels: dets.iter().map(|d| d.0).collect(),
            scores: dets.iter().map(|d| d.1).collect(),
        })
        .collect()
}

fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
    path
}

// --- Reading GIFs and PNGs back ----------------------------------------------------

/// What the GIF's blocks say, read without decoding pixels.
#[derive(Debug)]
struct GifMeta {
    width: u32,
    height: u32,
    /// The NETSCAPE2.0 loop count (0: forever), if the extension is present.
    loops: Option<u16>,
    /// Each frame's delay in 10 ms units.
    delays: Vec<u16>,
}

fn sub_blocks<'a>(bytes: &'a [u8], pos: &mut usize) -> Vec<&'a [u8]> {
    let mut blocks = Vec::new();
    loop {
        let len = bytes[*pos] as usize;
        *pos += 1;
        if len == 0 {
            return blocks;
        }
        blocks.push(&bytes[*pos..*pos + len]);
        *pos += len;
    }
}

fn gif_meta(path: &Path) -> GifMeta {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"GIF89a"), "not a GIF89a file");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let (width, height) = (u32::from(u16_at(6)), u32::from(u16_at(8)));
    let mut pos = 13;
    if bytes[10] & 0x80 != 0 {
        pos += 3 << ((bytes[10] & 7) + 1);
    }
    let (mut loops, mut delays, mut delay) = (None, Vec::new(), None);
    loop {
        match bytes[pos] {
            0x21 => {
                let label = bytes[pos + 1];
                pos += 2;
                let blocks = sub_blocks(&bytes, &mut pos);
                match label {
                    0xF9 => delay = Some(u16::from_le_bytes([blocks[0][1], blocks[0][2]])),
                    0xFF if blocks[0] == b"NETSCAPE2.0" => {
                        loops = Some(u16::from_le_bytes([blocks[1][1], blocks[1][2]]))
                    }
                    _ => {}
                }
            }
            0x2C => {
                let (x, y) = (u32::from(u16_at(pos + 1)), u32::from(u16_at(pos + 3)));
                let (w, h) = (u32::from(u16_at(pos + 5)), u32::from(u16_at(pos + 7)));
                // The first frame covers the picture; later ones only what changed.
                if delays.is_empty() {
                    assert_eq!((x, y, w, h), (0, 0, width, height), "the first frame");
                }
                assert!(
                    x + w <= width && y + h <= height,
                    "a frame inside the picture"
                );
                let packed = bytes[pos + 9];
                pos += 10;
                if packed & 0x80 != 0 {
                    pos += 3 << ((packed & 7) + 1);
                }
                pos += 1; // LZW minimum code size
                sub_blocks(&bytes, &mut pos);
                delays.push(delay.take().expect("a delay before each frame"));
            }
            0x3B => break,
            b => panic!("unexpected GIF block {b:#04x} at byte {pos}"),
        }
    }
    GifMeta {
        width,
        height,
        loops,
        delays,
    }
}

/// An RGB picture.
#[derive(Clone, PartialEq)]
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Picture {
    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    fn mean_abs_diff(&self, other: &Picture) -> f64 {
        assert_eq!((self.width, self.height), (other.width, other.height));
        let sum: u64 = self
            .rgb
            .iter()
            .zip(&other.rgb)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        sum as f64 / self.rgb.len() as f64
    }
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture({}x{})", self.width, self.height)
    }
}

/// Decode every frame of an image file (GIF or PNG) with FFmpeg, as RGB.
fn decode(path: &Path, width: u32, height: u32) -> Vec<Picture> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("spawn ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not decode {}",
        path.display()
    );
    let size = (width * height * 3) as usize;
    assert_eq!(
        out.stdout.len() % size,
        0,
        "{} is not {width}x{height}",
        path.display()
    );
    out.stdout
        .chunks(size)
        .map(|c| Picture {
            width,
            height,
            rgb: c.to_vec(),
        })
        .collect()
}

fn decode_gif(path: &Path) -> (GifMeta, Vec<Picture>) {
    let meta = gif_meta(path);
    let frames = decode(path, meta.width, meta.height);
    assert_eq!(
        frames.len(),
        meta.delays.len(),
        "FFmpeg and the block walker agree"
    );
    (meta, frames)
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

fn decode_png(path: &Path) -> Picture {
    let (w, h) = png_size(path);
    decode(path, w, h).remove(0)
}

// --- What a drawn box must look like ----------------------------------------------

/// gifgen's class colours: the fixed palette of twenty documented in gifgen's draw.rs,
/// indexed by label id modulo 20. Restated here so a change of palette is a deliberate,
/// visible change.
fn class_colour(label_id: i64) -> [u8; 3] {
    const PALETTE: [u32; 20] = [
        0xE6194B, 0x3CB44B, 0xFFE119, 0x4363D8, 0xF58231, 0x911EB4, 0x42D4F4, 0xF032E6, 0xBFEF45,
        0xFABED4, 0x469990, 0xDCBEFF, 0x9A6324, 0xFFFAC8, 0x800000, 0xAAFFC3, 0x808000, 0xFFD8B1,
        0x000075, 0xA9A9A9,
    ];
    let c = PALETTE[label_id.rem_euclid(20) as usize];
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

/// Assert a box is drawn at `b` (output pixels, far edges exclusive) in the class
/// colour, two pixels thick and inward: the outer edge pixels of the left, right and
/// bottom sides (and the top, when the label sits above it) carry the colour, the
/// pixels just outside and just past the thickness do not.
fn assert_box(pic: &Picture, label_id: i64, b: [f32; 4], what: &str) {
    let colour = class_colour(label_id);
    let [x1, y1, x2, y2] = b.map(|v| v.round() as u32);
    let (xm, ym) = ((x1 + x2) / 2, (y1 + y2) / 2);
    let mut on = vec![
        (x1, ym, "left edge"),
        (x1 + 1, ym, "left edge, 2nd pixel"),
        (x2 - 1, ym, "right edge"),
        (x2 - 2, ym, "right edge, 2nd pixel"),
        (xm, y2 - 1, "bottom edge"),
        (xm, y2 - 2, "bottom edge, 2nd pixel"),
    ];
    if y1 >= 10 {
        on.push((xm, y1, "top edge"));
    }
    for (x, y, side) in on {
        assert_eq!(pic.at(x, y), colour, "{what}: {side} at ({x},{y})");
    }
    let mut off = vec![
        (x1 + 2, ym, "inside the left edge"),
        (x2 - 3, ym, "inside the right edge"),
        (xm, y2 - 3, "inside the bottom edge"),
        (x2, ym, "right of the box"),
    ];
    if x1 > 0 {
        off.push((x1 - 1, ym, "left of the box"));
    }
    if y2 < pic.height {
        off.push((xm, y2, "below the box"));
    }
    for (x, y, side) in off {
        assert_ne!(pic.at(x, y), colour, "{what}: {side} at ({x},{y})");
    }
}

/// Like [`assert_box`] on a small picture where labels (at their minimum readable size)
/// may lie over parts of boxes: along the middle of the left, right and bottom edges,
/// at least two edges have most pixels in the colour (a label may cover the third), and
/// most pixels just right of the box do not.
fn assert_box_mostly(pic: &Picture, label_id: i64, b: [f32; 4], what: &str) {
    let colour = class_colour(label_id);
    let [x1, y1, x2, y2] = b.map(|v| v.round() as u32);
    let ys: Vec<u32> = (y1 + (y2 - y1) / 5..=y2 - 1 - (y2 - y1) / 5).collect();
    let xs: Vec<u32> = (x1 + (x2 - x1) / 5..=x2 - 1 - (x2 - x1) / 5).collect();
    let share = |pts: Vec<(u32, u32)>| {
        let n = pts.len().max(1);
        pts.into_iter()
            .filter(|&(x, y)| pic.at(x, y) == colour)
            .count() as f64
            / n as f64
    };
    let left = share(ys.iter().map(|&y| (x1, y)).collect());
    let right = share(ys.iter().map(|&y| (x2 - 1, y)).collect());
    let bottom = share(xs.iter().map(|&x| (x, y2 - 1)).collect());
    let edges = [left, right, bottom].iter().filter(|&&v| v >= 0.5).count();
    assert!(
        edges >= 2,
        "{what}: edges in colour: left {left:.2}, right {right:.2}, bottom {bottom:.2}"
    );
    if x2 < pic.width {
        let outside = share(ys.iter().map(|&y| (x2, y)).collect());
        assert!(outside < 0.5, "{what}: right of the box {outside:.2}");
    }
}

/// Assert no box of `label_id` is drawn at `b`.
fn assert_no_box(pic: &Picture, label_id: i64, b: [f32; 4], what: &str) {
    let colour = class_colour(label_id);
    let [x1, y1, x2, y2] = b.map(|v| v.round() as u32);
    let ym = (y1 + y2) / 2;
    for (x, y) in [(x1, ym), (x2 - 1, ym), ((x1 + x2) / 2, y2 - 1)] {
        assert_ne!(pic.at(x, y), colour, "{what}: a box edge at ({x},{y})");
    }
}

// --- The tests ------------------------------------------------------------------------

#[test]
fn truth_boxes_are_drawn_in_class_colours_at_their_coordinates() {
    let dir = scratch();
    let frames = truth_detections();
    let preds = write_json(dir.path(), "v2.json", &v2_document(&frames));
    let gif = render(dir.path(), "out.gif", &preds, &[]);
    let (meta, pictures) = decode_gif(&gif);
    assert_eq!(
        (meta.width, meta.height),
        (320, 240),
        "the video's own size"
    );
    assert_eq!(meta.delays, vec![20; 5], "5 frames of 200 ms");
    assert_eq!(meta.loops, Some(0), "loops forever");
    for ((index, _, dets), pic) in frames.iter().zip(&pictures) {
        for (l, s, b, _) in dets {
            let what = format!("frame {index}, class {l} at {b:?}");
            if *s > 0.9 {
                assert_box(pic, *l, *b, &what);
            } else {
                assert_no_box(pic, *l, *b, &what);
            }
        }
    }
}

#[test]
fn the_score_threshold_is_strict_and_adjustable() {
    let dir = scratch();
    let preds = write_json(dir.path(), "v2.json", &v2_document(&truth_detections()));
    let gif = render(dir.path(), "low.gif", &preds, &["--score-threshold", "0.8"]);
    let first = &decode_gif(&gif).1[0];
    for (l, s, b) in EXTRAS {
        assert_box(first, l, b, &format!("score {s} over 0.8"));
    }
    let gif = render(
        dir.path(),
        "exact.gif",
        &preds,
        &["--score-threshold", "0.85"],
    );
    let first = &decode_gif(&gif).1[0];
    let [(l1, _, b1), (l2, _, b2)] = EXTRAS;
    assert_no_box(first, l1, b1, "0.85 is not above 0.85");
    assert_box(first, l2, b2, "0.90 is above 0.85");

    let e = refuse(&preds, &["--score-threshold", "1.5"]);
    assert!(e.contains("`1.5` is not a number in [0, 1]"), "{e}");
}

#[test]
fn legacy_arrays_and_v2_documents_draw_the_same_picture() {
    let dir = scratch();
    let frames = truth_detections();
    let v2 = write_json(dir.path(), "v2.json", &v2_document(&frames));
    let v2_gif = render(dir.path(), "v2.gif", &v2, &[]);
    let (_, v2_pictures) = decode_gif(&v2_gif);
    let classes = repo().join("tests/fixtures/model/model.json");
    let classes = classes.to_str().unwrap();

    // The legacy defaults: every 30th frame, boxes in a 1024x1024 stretched frame.
    let legacy = write_json(
        dir.path(),
        "legacy.json",
        &legacy_document(&frames, 1024.0, 1024.0),
    );
    let gif = render(dir.path(), "legacy.gif", &legacy, &["--classes", classes]);
    let (meta, pictures) = decode_gif(&gif);
    assert_eq!(meta.delays.len(), 5);
    assert_eq!(pictures, v2_pictures, "legacy at 1024x1024 and v2 differ");

    // The old script's flags, spelled out, and another frame size.
    let legacy = write_json(
        dir.path(),
        "legacy640.json",
        &legacy_document(&frames, 640.0, 480.0),
    );
    let gif = render(
        dir.path(),
        "legacy640.gif",
        &legacy,
        &[
            "--frame-interval",
            "30",
            "--frame-width",
            "640",
            "--frame-height",
            "480",
            "--score-threshold",
            "0.9",
            "--classes",
            "__background__,square,circle,triangle",
        ],
    );
    assert_eq!(
        decode_gif(&gif).1,
        v2_pictures,
        "legacy at 640x480 and v2 differ"
    );

    // --output-path is the old script's name for -o.
    let out = dir.path().join("alias.gif");
    let video = sample_video();
    let result = run(&[
        "--video",
        video.to_str().unwrap(),
        "--predictions",
        legacy.to_str().unwrap(),
        "--frame-width",
        "640",
        "--frame-height",
        "480",
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(out.is_file());

    // The same geometry from the environment, under the worker's names and the legacy
    // ones; a typed flag beats the environment.
    let with_env = |name: &str, env: &[(&str, &str)], flags: &[&str]| {
        let out = dir.path().join(name);
        let result = Command::new(gifgen())
            .args(["--video", video.to_str().unwrap(), "--predictions"])
            .arg(&legacy)
            .arg("-o")
            .arg(&out)
            .args(["--classes", "__background__,square,circle,triangle"])
            .args(flags)
            .envs(env.iter().copied())
            .output()
            .expect("spawn gifgen");
        assert!(result.status.success(), "{env:?}: {}", stderr(&result));
        decode_gif(&out).1
    };
    let env = [
        ("VIDINFER_FRAME_INTERVAL", "30"),
        ("FRAME_WIDTH", "640"),
        ("VIDINFER_FRAME_HEIGHT", "480"),
    ];
    assert_eq!(with_env("env.gif", &env, &[]), v2_pictures, "from the env");
    let env = [("FRAME_WIDTH", "999"), ("FRAME_HEIGHT", "480")];
    assert_eq!(
        with_env("flag.gif", &env, &["--frame-width", "640"]),
        v2_pictures,
        "--frame-width beats FRAME_WIDTH"
    );
}

/// A v2 document made over a time range (`params.range`) draws just the span's frames,
/// the same pictures as those frames of a whole-video document.
#[test]
fn a_documents_time_range_is_the_span_drawn() {
    let dir = scratch();
    let frames = truth_detections();
    let whole = write_json(dir.path(), "whole.json", &v2_document(&frames));
    let (all_dir, part_dir) = (dir.path().join("all"), dir.path().join("part"));
    let frames_dir = |d: &Path| ["--frames-dir".to_string(), d.display().to_string()];
    let flags = frames_dir(&all_dir);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    render(dir.path(), "whole.gif", &whole, &flags);
    // Frames 30, 60 and 90 (1.2 s to 3.6 s at 25 fps) lie in [1.0, 4.0).
    let range = vidinfer_media::video::TimeRange {
        start_s: 1.0,
        end_s: Some(4.0),
    };
    let inside: Vec<_> = frames
        .iter()
        .filter(|(_, pts, _)| range.contains(*pts))
        .cloned()
        .collect();
    assert_eq!(inside.len(), 3);
    let mut doc = v2_document(&inside);
    doc.params.range = range;
    let part = write_json(dir.path(), "part.json", &doc);
    let flags = frames_dir(&part_dir);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (meta, _) = decode_gif(&render(dir.path(), "part.gif", &part, &flags));
    assert_eq!(meta.delays.len(), 3);
    let names = |d: &Path| {
        let mut n: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let drawn = names(&part_dir);
    assert_eq!(
        drawn,
        ["frame_000030.png", "frame_000060.png", "frame_000090.png"]
    );
    for name in drawn {
        let a = std::fs::read(all_dir.join(&name)).unwrap();
        let b = std::fs::read(part_dir.join(&name)).unwrap();
        assert!(a == b, "{name} drawn differently");
    }
}

#[test]
fn frame_timing_size_and_png_frames_follow_the_flags() {
    let dir = scratch();
    let frames = truth_detections();
    let preds = write_json(dir.path(), "v2.json", &v2_document(&frames));

    let gif = render(dir.path(), "fps.gif", &preds, &["--fps", "4"]);
    assert_eq!(gif_meta(&gif).delays, vec![25; 5]);
    let gif = render(
        dir.path(),
        "ms.gif",
        &preds,
        &["--frame-duration-ms", "500"],
    );
    assert_eq!(gif_meta(&gif).delays, vec![50; 5]);

    // Half size: boxes at half the coordinates, lines still 2 px.
    let pngs = dir.path().join("frames");
    let gif = render(
        dir.path(),
        "small.gif",
        &preds,
        &["--width", "160", "--frames-dir", pngs.to_str().unwrap()],
    );
    let (meta, pictures) = decode_gif(&gif);
    assert_eq!((meta.width, meta.height), (160, 120));
    for ((index, _, dets), pic) in frames.iter().zip(&pictures) {
        for (l, s, b, _) in dets.iter().filter(|d| d.1 > 0.9) {
            let half = b.map(|v| v / 2.0);
            // Tiny boxes (under 6 px) have no inside to check.
            if half[2] - half[0] >= 6.0 && half[3] - half[1] >= 6.0 {
                assert_box_mostly(
                    pic,
                    *l,
                    half,
                    &format!("frame {index} at half size, score {s}"),
                );
            }
        }
    }
    // The PNGs are the frames before quantisation, named by frame index.
    let mut names: Vec<String> = std::fs::read_dir(&pngs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected: Vec<String> = SAMPLED
        .iter()
        .map(|i| format!("frame_{i:06}.png"))
        .collect();
    assert_eq!(names, expected);
    for (name, gif_frame) in names.iter().zip(&pictures) {
        let png = decode_png(&pngs.join(name));
        let d = png.mean_abs_diff(gif_frame);
        assert!(d < 3.0, "{name}: the GIF frame is {d:.2} off its PNG");
    }

    let e = refuse(&preds, &["--fps", "4", "--frame-duration-ms", "100"]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = refuse(&preds, &["--frame-duration-ms", "10"]);
    assert!(e.contains("10 is not in 20..=655350"), "{e}");
}

#[test]
fn predictions_that_do_not_fit_the_video_are_refused_clearly() {
    let dir = scratch();
    let frames = truth_detections();

    // One frame short: v2.
    let mut doc = v2_document(&frames);
    doc.frames.pop();
    let p = write_json(dir.path(), "short.json", &doc);
    let e = refuse(&p, &[]);
    assert!(
        e.contains("the predictions have 4 frames but")
            && e.contains("has 5 sampled frames (every 30th frame of its 150)"),
        "{e}"
    );
    assert!(e.contains("sampled frame 120 has no entry"), "{e}");

    // An index past the end of the video.
    let mut doc = v2_document(&frames);
    doc.frames[4].index = 9000;
    let e = refuse(&write_json(dir.path(), "beyond.json", &doc), &[]);
    assert!(
        e.contains("frame index 9000 is beyond the video's last sampled frame (120)"),
        "{e}"
    );

    // An index the sampling never yields.
    let mut doc = v2_document(&frames);
    doc.frames[1].index = 31;
    let e = refuse(&write_json(dir.path(), "offgrid.json", &doc), &[]);
    assert!(
        e.contains("frame index 31 is not one of the video's sampled frames"),
        "{e}"
    );

    // A box outside the 320x240 frame.
    let mut doc = v2_document(&frames);
    doc.frames[2].detections[0].bbox = [300.0, 10.0, 400.0, 60.0];
    let e = refuse(&write_json(dir.path(), "outside.json", &doc), &[]);
    assert!(
        e.contains("frame index 60: the box [300, 10, 400, 60]"),
        "{e}"
    );
    assert!(e.contains("does not fit in the 320x240 frame"), "{e}");

    // A document about another video.
    let mut doc = v2_document(&frames);
    doc.video.width = 640;
    let e = refuse(&write_json(dir.path(), "other.json", &doc), &[]);
    assert!(e.contains("made on a 640x240 video"), "{e}");

    // Legacy: one frame too many, and a hint at the interval that would fit.
    let mut legacy = legacy_document(&frames, 1024.0, 1024.0);
    legacy.push(LegacyFrame::default());
    let e = refuse(&write_json(dir.path(), "long.json", &legacy), &[]);
    assert!(
        e.contains("the predictions have 6 frames but") && e.contains("has 5 sampled frames"),
        "{e}"
    );
    assert!(e.contains("--frame-interval 25 to 29 would give 6"), "{e}");

    // Legacy: the right count at another interval is still the wrong count here.
    let legacy = legacy_document(&frames, 1024.0, 1024.0);
    let p = write_json(dir.path(), "legacy.json", &legacy);
    let e = refuse(&p, &["--frame-interval", "25"]);
    assert!(e.contains("has 6 sampled frames (every 25th frame"), "{e}");

    // Legacy: boxes made for a bigger frame than the one stated.
    let e = refuse(&p, &["--frame-width", "640", "--frame-height", "480"]);
    assert!(e.contains("does not fit in the 640x480 frame"), "{e}");
    assert!(e.contains("--frame-width/--frame-height"), "{e}");

    // Not predictions at all, and missing inputs.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, br#"{"hello": 1}"#).unwrap();
    let e = refuse(&junk, &[]);
    assert!(
        e.contains("expected a vidinfer/v2 document or a legacy array"),
        "{e}"
    );
    let e = refuse(&dir.path().join("missing.json"), &[]);
    assert!(
        e.contains("missing.json") && e.contains("No such file"),
        "{e}"
    );
}

/// One frame drawn with masks, compared with a reference picture. The reference was
/// made by this test (set GIFGEN_BLESS=1 to remake it after a deliberate change of
/// drawing) and is checked by eye: tests/fixtures/gifgen/shapes_030_masks.png.
#[test]
fn a_frame_with_masks_matches_the_golden_picture() {
    let dir = scratch();
    let preds = write_json(dir.path(), "v2.json", &v2_document(&truth_detections()));
    let pngs = dir.path().join("frames");
    let gif = render(
        dir.path(),
        "masks.gif",
        &preds,
        &["--masks", "--frames-dir", pngs.to_str().unwrap()],
    );
    let frame = pngs.join("frame_000030.png");
    let golden = repo().join("tests/fixtures/gifgen/shapes_030_masks.png");
    if std::env::var_os("GIFGEN_BLESS").is_some() || !golden.exists() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::copy(&frame, &golden).unwrap();
        eprintln!("wrote the golden picture {}", golden.display());
    }
    let expected = decode_png(&golden);
    let drawn = decode_png(&frame);
    // A little room for FFmpeg versions decoding the sample slightly differently.
    let d = drawn.mean_abs_diff(&expected);
    assert!(
        d < 1.0,
        "frame 30 differs from the golden picture by {d:.3} on average"
    );
    // The GIF's quantised frame stays close to it too.
    let gif_frame = &decode_gif(&gif).1[1];
    let d = gif_frame.mean_abs_diff(&expected);
    assert!(
        d < 3.0,
        "the GIF's frame 30 is {d:.3} off the golden picture"
    );
    // Masks tint the inside of a shape: the square's centre is not the unmasked colour.
    let plain = render(dir.path(), "plain.gif", &preds, &[]);
    let plain_frame = &decode_gif(&plain).1[1];
    let b = SampleTruth::load().truth[30].objects[0].bbox;
    let (cx, cy) = (((b[0] + b[2]) / 2.0) as u32, ((b[1] + b[3]) / 2.0) as u32);
    assert_ne!(
        gif_frame.at(cx, cy),
        plain_frame.at(cx, cy),
        "the mask is blended"
    );
}

#[test]
fn help_teaches_the_flags_their_defaults_and_an_example() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Examples:",
        "gifgen --video clip.mp4 --predictions clip.json",
        "--output-path",
        "--score-threshold <SCORE>",
        "[default: 0.9]",
        "[default: 200]",
        "[default: 30]",
        "[default: 1024]",
        "[default: output.gif]",
        "--masks",
        "--frames-dir <DIR>",
        "--width <PX>",
        "--fps <FPS>",
        "--classes <FILE|LIST>",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// Inputs from S3 (a moto server): the same picture as from local files.
#[test]
fn s3_inputs_render_the_same_gif_as_local_files() {
    let dir = scratch();
    let frames = truth_detections();
    let preds = write_json(dir.path(), "v2.json", &v2_document(&frames));
    let local = render(dir.path(), "local.gif", &preds, &[]);
    let moto = common::moto::Moto::start();
    let bucket = common::moto::unique("gifgen");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sdk = moto.sdk().await;
        common::moto::s3(&sdk)
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        common::moto::upload(
            &sdk,
            &bucket,
            "v/shapes.mp4",
            std::fs::read(sample_video()).unwrap(),
        )
        .await;
        common::moto::upload(&sdk, &bucket, "p/v2.json", std::fs::read(&preds).unwrap()).await;
    });
    let out = dir.path().join("s3.gif");
    let result = Command::new(gifgen())
        .args(["--video", &format!("s3://{bucket}/v/shapes.mp4")])
        .args(["--predictions", &format!("s3://{bucket}/p/v2.json")])
        .arg("-o")
        .arg(&out)
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&local).unwrap());
    let missing = Command::new(gifgen())
        .args(["--video", &format!("s3://{bucket}/v/missing.mp4")])
        .args(["--predictions", &format!("s3://{bucket}/p/v2.json")])
        .arg("-o")
        .arg(dir.path().join("never.gif"))
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("does not exist"),
        "{}",
        stderr(&missing)
    );
}

/// (codec, pixel format, width, height, frames) of a video's first stream, by ffprobe.
fn probe(path: &Path) -> (String, String, u32, u32, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,nb_read_frames",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(path)
        .output()
        .expect("spawn ffprobe");
    assert!(out.status.success(), "ffprobe {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {text}"))
            .to_string()
    };
    (
        field("codec_name"),
        field("pix_fmt"),
        field("width").parse().unwrap(),
        field("height").parse().unwrap(),
        field("nb_read_frames").parse().unwrap(),
    )
}

#[test]
fn mp4_output_has_the_frames_size_and_codec_a_browser_plays() {
    let dir = scratch();
    let v2 = write_json(dir.path(), "v2.json", &v2_document(&truth_detections()));
    let mp4 = render(dir.path(), "out.mp4", &v2, &[]);
    assert_eq!(probe(&mp4), ("h264".into(), "yuv420p".into(), 320, 240, 5));
    // The index (moov) comes before the media (mdat): playable while downloading.
    let bytes = std::fs::read(&mp4).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(at(b"moov") < at(b"mdat"));
    // Every frame, at an odd width made even.
    let all = render(
        dir.path(),
        "all.mp4",
        &v2,
        &["--all-frames", "--width", "161"],
    );
    assert_eq!(
        probe(&all),
        ("h264".into(), "yuv420p".into(), 160, 120, 150)
    );
    let gif = render(dir.path(), "out.gif", &v2, &[]);
    let (gif_len, mp4_len) = (
        std::fs::metadata(&gif).unwrap().len(),
        std::fs::metadata(&mp4).unwrap().len(),
    );
    assert!(mp4_len < gif_len, "MP4 {mp4_len} B, GIF {gif_len} B");
}

#[test]
fn bad_outputs_fail_before_anything_is_decoded() {
    let dir = scratch();
    let v2 = write_json(dir.path(), "v2.json", &v2_document(&truth_detections()));
    // The video does not exist either: the output's problem is found first.
    let attempt = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "--video",
            "/no/such/video.mp4",
            "--predictions",
            v2.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let result = run(&args);
        assert_eq!(result.status.code(), Some(1));
        let e = stderr(&result);
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        e
    };
    let e = attempt(&dir.path().join("out.avi"), &[]);
    assert!(
        e.contains("ends in .avi: gifgen writes .gif or .mp4"),
        "{e}"
    );
    let e = attempt(&dir.path().join("out"), &[]);
    assert!(e.contains("has no extension"), "{e}");
    let e = attempt(&dir.path().join("missing/out.gif"), &[]);
    assert!(e.contains("missing does not exist"), "{e}");
    let e = attempt(&dir.path().join("out.gif"), &["--all-frames"]);
    assert!(e.contains("give an .mp4 output"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only v2.json"
    );
}

#[test]
fn legacy_geometry_is_stated_and_boxes_from_a_smaller_frame_are_warned() {
    let dir = scratch();
    let frames = truth_detections();
    let right = write_json(
        dir.path(),
        "legacy.json",
        &legacy_document(&frames, 1024.0, 1024.0),
    );
    let (_, out) = run_on_sample(&right, &dir.path().join("a.gif"), &["--masks"]);
    let e = stderr(&out);
    assert!(out.status.success(), "{e}");
    assert!(
        e.contains("every 30th frame with boxes in a 1024x1024 picture stretched"),
        "{e}"
    );
    assert!(e.contains("legacy predictions carry no masks"), "{e}");
    assert!(!e.contains("warning:"), "{e}");
    // Boxes in the video's own 320x240 pixels (a fitted frame), read with the legacy
    // defaults: drawn small in the corner, so gifgen says so.
    let fitted = write_json(
        dir.path(),
        "fitted.json",
        &legacy_document(&frames, 320.0, 240.0),
    );
    let (_, out) = run_on_sample(&fitted, &dir.path().join("b.gif"), &[]);
    let e = stderr(&out);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("warning: all"), "{e}");
    assert!(e.contains("--frame-width/--frame-height"), "{e}");
}
