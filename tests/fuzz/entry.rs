//! Entry points for fuzzing the parsers that read untrusted bytes: request messages,
//! custom attributes, predictions documents and the media open path. Test code, not
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
