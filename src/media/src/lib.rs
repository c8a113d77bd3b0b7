//! # vidinfer-media
//!
//! The bottom layer of vidinfer: everything about pictures and documents that needs
//! neither LibTorch nor AWS, so `gifgen` and the media tests build without them.
//!
//! # Layout
//! - [`video`]: streaming decode and frame sampling over FFmpeg — the presentation-order
//!   [`video::Ranker`], the [`video::Converter`] (scale, pixel format, rotation) and the
//!   [`video::Decoder`] that composes them, with input limits and a format allow-list.
//! - [`cli`]: the environment names of the binaries' options (`VIDINFER_` + flag) and
//!   the older names still accepted.
//! - [`detection`]: detections, cropped masks, the model's description, COCO's class
//!   names — plain data the engine produces and the schema writes.
//! - [`schema`]: the `vidinfer/v2` document and the legacy array, written and read.
//! - [`track`]: the multi-object tracker (ByteTrack association, Kalman prediction)
//!   that gives detections a `track_id` across sampled frames.

pub mod cli;
pub mod detection;
pub mod schema;
pub mod track;
pub mod video;
