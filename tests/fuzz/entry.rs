//! Entry points for fuzzing the parsers that read untrusted bytes: request messages,
//! custom attributes, predictions documents and the media open path; and the tracker,
//! which takes whatever numbers a model returns. Test code, not
//! part of the library's API: the `cargo fuzz` targets in `tests/fuzz/fuzz_targets/`
//! include this file, and `tests/fuzz_regressions.rs` includes it too and replays every
//! saved input through the same functions in the normal test suite, so a crash found
//! once stays fixed.
//!
//! Each function panics only when an invariant breaks (a parser accepting what it
//! should refuse, or a result that does not round-trip); errors are expected outcomes.

use std::io::Cursor;

use vidinfer::params::{Overrides, Params};
use vidinfer::request::{validate_inference_id, Request};
use vidinfer::schema::Predictions;
use vidinfer::track::{Observation, TrackParams, Tracker};
use vidinfer::video::{DecodeOptions, Decoder, Limits, Resize, Sampling, Source};

/// An SQS message body.
pub fn request_message(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    match Request::parse(body) {
        Ok(r) => {
            // Whatever was accepted is safe to put into an S3 key and to run.
            assert!(validate_inference_id(&r.inference_id).is_ok());
            assert!(!r.input.key.is_empty() && !r.input.key.ends_with('/'));
            let _ = r.overrides.apply(&Params::default());
        }
        Err(e) => assert!(!e.0.is_empty(), "an error without a reason"),
    }
}

/// A `CustomAttributes` string (SQS `customAttributes` or SageMaker's header).
pub fn custom_attributes(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(o) = Overrides::from_custom_attributes(s) {
        if let Ok(p) = o.apply(&Params::default()) {
            // Accepted parameters must be usable by the decoder.
            match p.sampling {
                Sampling::EveryNth(n) => assert!(n >= 1),
                Sampling::Fps(f) => assert!(f.is_finite() && f > 0.0),
                Sampling::Keyframes => {}
            }
        }
    }
}

/// A predictions document (v2 or legacy), as gifgen and downstream readers get it.
pub fn predictions(data: &[u8]) {
    let Ok(p) = Predictions::parse(data) else {
        return;
    };
    // What was read writes back to JSON that reads as the same document.
    let json = match &p {
        Predictions::V2(doc) => serde_json::to_vec(doc),
        Predictions::Legacy(frames) => serde_json::to_vec(frames),
    }
    .expect("a parsed document serializes");
    let again = Predictions::parse(&json).expect("a written document parses");
    assert_eq!(p, again);
}

/// Video bytes through the open path and the first frames, with small limits so one
/// input takes milliseconds.
pub fn media(data: &[u8]) {
    let opts = DecodeOptions {
        sampling: Sampling::EveryNth(2),
        resize: Resize::Fit {
            width: 64,
            height: 64,
        },
        threads: 1,
        limits: Limits {
            max_width: 1024,
            max_height: 1024,
            max_duration_s: 60.0,
            max_frames: 64,
            max_decoded_pixels: 64 * 1024 * 1024,
        },
        ..Default::default()
    };
    let Ok(mut dec) = Decoder::open(Source::Reader(Box::new(Cursor::new(data.to_vec()))), opts)
    else {
        return;
    };
    while let Ok(Some(f)) = dec.next_frame() {
        assert_eq!(
            f.rgb.len(),
            f.meta.width as usize * f.meta.height as usize * 3
        );
        assert!(f.meta.width <= 64 && f.meta.height <= 64);
    }
}

/// Frames of detections as a model might return them, NaN, infinities, inverted and
/// huge boxes included: the tracker never panics, gives one id (or none) per
/// detection, never gives one id to two detections of a frame, and leaves untracked
/// what has a non-finite score or box.
///
/// Bytes: a header byte per frame (detection count, 0-15), then per detection one
/// label byte and five little-endian f32s (score, x1, y1, x2, y2); frames are 1/25 s
/// apart unless a frame's count byte has its top bit set (then a 2 s gap).
pub fn track(data: &[u8]) {
    let mut t = Tracker::new(TrackParams::default());
    let mut rest = data;
    let (mut index, mut pts) = (0u64, 0.0f64);
    while let Some((&head, tail)) = rest.split_first() {
        rest = tail;
        let mut obs = Vec::new();
        for _ in 0..(head & 0x0f) {
            if rest.len() < 21 {
                break;
            }
            let f = |i: usize| f32::from_le_bytes(rest[1 + 4 * i..5 + 4 * i].try_into().unwrap());
            obs.push(Observation {
                label_id: i64::from(rest[0] % 4),
                score: f(0),
                bbox: [f(1), f(2), f(3), f(4)],
            });
            rest = &rest[21..];
        }
        pts += if head & 0x80 != 0 { 2.0 } else { 0.04 };
        let ids = t.update(index, pts, &obs);
        assert_eq!(ids.len(), obs.len());
        let mut seen: Vec<u64> = ids.iter().flatten().copied().collect();
        seen.sort_unstable();
        let n = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), n, "one id given to two detections of a frame");
        for (o, id) in obs.iter().zip(&ids) {
            let finite = o.score.is_finite() && o.bbox.iter().all(|v| v.is_finite());
            assert!(finite || id.is_none(), "{o:?} was tracked");
        }
        index += 1;
    }
    for s in t.summaries() {
        assert!(s.first_frame <= s.last_frame && s.frames >= 1);
        assert!(s.best_score.is_finite());
    }
}
