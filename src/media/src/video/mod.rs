//! Streaming video decoding and frame sampling over FFmpeg.
//!
//! This module owns everything between "bytes of a video" and "RGB frames the model
//! sees": opening the input with a format/protocol allow-list, choosing the video
//! stream, deciding which frames are kept (every Nth, a target fps, or keyframes),
//! asking the decoder to skip work for frames nobody will look at, and converting kept
//! frames to packed RGB24 at the requested size with the factors that map boxes back
//! to source pixels.
//!
//! # Which frames are kept, and why skipping is safe
//! A frame's *index* is its position in presentation order (0-based), the same count
//! the legacy OpenCV sampler used. Packets arrive in decode order, so the decoder keeps
//! a small look-ahead of packets: a packet's presentation index is final once every
//! packet that could still be shown before it has been read. A packet whose frame is
//! known not to be kept is sent with `skip_frame = NonReference`: if no other frame
//! refers to it the decoder drops it unseen, otherwise it is decoded as usual. Kept
//! frames are never sent with a skip flag, so they are bit-for-bit the frames a full
//! decode gives (`tests/video.rs` checks exactly that). Streams without timestamps fall
//! back to counting decoded frames with no skipping.
//!
//! # Keyframe sampling
//! [`Sampling::Keyframes`] decodes only keyframes (IDR/IRAP pictures, what FFmpeg flags
//! `key_frame`): packets the demuxer does not flag as key are never sent to the
//! decoder (once the stream has flagged any packet as key; a stream that flags none
//! is sent whole), and what is sent is decoded with `skip_frame = NonKey`. A picture's
//! own key flag has the last word, so a decoder that ignores `skip_frame` (this
//! FFmpeg's VP9 and AV1 decoders) still yields only keyframes. Every packet is still
//! read and ranked, so the rule for a keyframe's index is the same as for any frame:
//! its rank among the presentation timestamps of all the stream's packets, which is
//! its position in a full decode whenever the timestamps are usable. Where they are
//! not, the ranker counts decoded frames, which needs every frame: from the moment it
//! degrades everything is sent and decoded, and the frames whose key flag is set are
//! kept (a stream that lacks timestamps from its first packet is counted exactly; one
//! that breaks mid-way may have indices short by the frames discarded but not yet
//! ranked when it broke).
//!
//! # Layout
//! - [`Ranker`] (`ranker.rs`): presentation indices and keep-decisions from packet
//!   timestamps — the rules above, as plain bookkeeping over numbers, unit-tested on
//!   synthetic timestamp sequences.
//! - [`Converter`] (`convert.rs`): scaling, pixel format and rotation of a kept
//!   picture into a [`Frame`].
//! - [`Mp4Writer`] (`encode.rs`): the way back, RGB pictures to an H.264 MP4 (gifgen).
//! - [`Decoder`] (`decoder.rs`): the FFmpeg plumbing — input, allow-lists, limits,
//!   the look-ahead of packets, the decoder's skip flag — composing the two.

mod convert;
mod decoder;
mod encode;
mod ranker;

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

pub use convert::{model_size, target_size, Converter};
pub use decoder::{probe, Decoder};
pub use encode::Mp4Writer;
pub use ranker::{Degrade, Placement, Ranker, Slot};

/// Container formats FFmpeg may open. Formats that name other resources (HLS and DASH
/// playlists, concat scripts, image sequences, SDP, …) are absent on purpose: an input
/// must never make FFmpeg read a second file or a network address.
pub const ALLOWED_FORMATS: &str =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,ivf,h264,hevc,m4v,mpegvideo,mpeg,obu";

/// What went wrong opening or decoding a video. Every variant is a property of the
/// input (permanent) except [`VideoError::Io`], which may be a passing fault of the
/// reader.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("could not read the video: {0}")]
    Io(#[from] std::io::Error),
    #[error("the video is empty (0 bytes)")]
    Empty,
    #[error(
        "the input is not a video container vidinfer reads ({reason}); \
         send an MP4/MOV, Matroska/WebM, AVI, MPEG-TS, FLV or IVF file"
    )]
    Unrecognized { reason: String },
    #[error("the input has no video stream (audio-only or data-only file)")]
    NoVideoStream,
    #[error("no decoder for the video codec `{codec}`")]
    UnsupportedCodec { codec: String },
    #[error(
        "the video is {width}x{height}, larger than the limit of {max_width}x{max_height}; \
         raise the limit or downscale the video"
    )]
    ResolutionTooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error(
        "the video lasts {duration_s:.1} s, longer than the limit of {max_s:.1} s; \
         raise the limit or split the video"
    )]
    TooLong { duration_s: f64, max_s: f64 },
    #[error("the video has more than {max} frames, the configured limit")]
    TooManyFrames { max: u64 },
    #[error(
        "decoding the video would exceed the budget of {max_pixels} decoded pixels; \
         raise the limit or split the video"
    )]
    OverBudget { max_pixels: u64 },
    #[error("the video is damaged: {reason}")]
    Corrupt { reason: String },
    #[error("the video has no decodable frames")]
    NoFrames,
    #[error("invalid decode options: {0}")]
    InvalidOptions(String),
    #[error("FFmpeg failed while {doing}: {source}")]
    Ffmpeg {
        doing: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
}

impl VideoError {
    /// True when retrying the same request could succeed (the reader failed, not the
    /// video). Everything else is a property of the input.
    pub fn is_transient(&self) -> bool {
        matches!(self, VideoError::Io(_))
    }
}

/// Which frames of the video are kept for inference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Keep frames 0, N, 2N, … in presentation order (the legacy `FRAME_INTERVAL`).
    EveryNth(u32),
    /// Keep the first frame at or after each multiple of `1/fps` seconds (robust to
    /// variable frame rate).
    Fps(f64),
    /// Keep the keyframes (the frames FFmpeg flags `key_frame`: IDR/IRAP pictures),
    /// decoding nothing else: previews and triage of long videos, where decoding every
    /// frame would cost minutes. Indices are still presentation indices (see the
    /// module's documentation).
    Keyframes,
}

impl Default for Sampling {
    /// Every 30th frame: the legacy system's default.
    fn default() -> Self {
        Sampling::EveryNth(30)
    }
}

/// The size kept frames are converted to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// The video's own display size.
    Original,
    /// Shrink to fit inside `width`×`height`, keeping the aspect ratio; never enlarge.
    Fit { width: u32, height: u32 },
    /// Stretch to exactly `width`×`height` (the legacy `FRAME_WIDTH`/`FRAME_HEIGHT`).
    Stretch { width: u32, height: u32 },
    /// Straight to the size a torchvision detector's own transform resizes the display
    /// size to, so its transform leaves the picture as it is and the frame is scaled
    /// once instead of twice ([`model_size`]: the shorter side to `min_size`, the
    /// longer at most `max_size`, floored as the scripted transform floors).
    Model { min_size: u32, max_size: u32 },
}

impl Default for Resize {
    /// Fit inside 1024×1024, keeping the aspect ratio.
    fn default() -> Self {
        Resize::Fit {
            width: 1024,
            height: 1024,
        }
    }
}

/// Bounds checked before anything is allocated for a video (declared values) and
/// again while decoding (actual values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted width in pixels (default 7680, 8K UHD).
    pub max_width: u32,
    /// Largest accepted height in pixels (default 4320, 8K UHD).
    pub max_height: u32,
    /// Longest accepted duration in seconds (default 4 hours).
    pub max_duration_s: f64,
    /// Most frames decoded from one video (default 1,000,000: over 9 h at 30 fps).
    pub max_frames: u64,
    /// Most pixels decoded from one video, kept or not: a budget for the decoder's work
    /// (default 2.1e12, a million 1080p frames).
    pub max_decoded_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 7680,
            max_height: 4320,
            max_duration_s: 4.0 * 3600.0,
            max_frames: 1_000_000,
            max_decoded_pixels: 1_000_000 * 1920 * 1080,
        }
    }
}

/// A span of the video in seconds of presentation time: frames with `start_s <= t <
/// end_s` (to the end when `end_s` is `None`). Frames keep the index and time they have
/// in the whole video.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TimeRange {
    #[serde(default)]
    pub start_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_s: Option<f64>,
}

impl TimeRange {
    /// The whole video.
    pub fn is_all(&self) -> bool {
        self.start_s <= 0.0 && self.end_s.is_none()
    }

    pub fn contains(&self, t: f64) -> bool {
        t >= self.start_s && self.end_s.is_none_or(|e| t < e)
    }

    /// Why this is not a usable range (negative, not finite, empty).
    pub fn check(&self) -> Result<(), String> {
        if !(self.start_s.is_finite() && self.start_s >= 0.0) {
            return Err(format!("start_s must be 0 or more, got {}", self.start_s));
        }
        match self.end_s {
            Some(e) if !(e.is_finite() && e > self.start_s) => Err(format!(
                "end_s must be after start_s ({} s), got {e}",
                self.start_s
            )),
            _ => Ok(()),
        }
    }
}

/// Everything that shapes one decode.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    pub sampling: Sampling,
    /// Only frames in this span are kept; decoding starts at the keyframe at or before
    /// its start (default: the whole video).
    pub range: TimeRange,
    pub resize: Resize,
    /// Let the decoder drop non-reference frames that are not kept (default on).
    pub skip_non_ref: bool,
    /// Decoder threads; 0 lets FFmpeg pick one per core (default 0).
    pub threads: usize,
    pub limits: Limits,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            sampling: Sampling::default(),
            range: TimeRange::default(),
            resize: Resize::default(),
            skip_non_ref: true,
            threads: 0,
            limits: Limits::default(),
        }
    }
}

impl DecodeOptions {
    fn validate(&self) -> Result<(), VideoError> {
        self.range.check().map_err(VideoError::InvalidOptions)?;
        match self.sampling {
            Sampling::EveryNth(0) => {
                return Err(VideoError::InvalidOptions(
                    "the frame interval must be at least 1".into(),
                ))
            }
            Sampling::Fps(f) if !(f.is_finite() && f > 0.0) => {
                return Err(VideoError::InvalidOptions(format!(
                    "the sampling fps must be a positive number, got {f}"
                )))
            }
            _ => {}
        }
        match self.resize {
            Resize::Fit { width, height } | Resize::Stretch { width, height }
                if width == 0 || height == 0 =>
            {
                Err(VideoError::InvalidOptions(format!(
                    "the frame size must be positive, got {width}x{height}"
                )))
            }
            Resize::Model { min_size, max_size } if min_size == 0 || max_size == 0 => {
                Err(VideoError::InvalidOptions(format!(
                    "the model's input sizes must be positive, got min_size {min_size} and \
                     max_size {max_size}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// What is known about a video once it is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Container format as FFmpeg names it (e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    /// Codec short name (e.g. `h264`).
    pub codec: String,
    /// Display width in pixels (after rotation metadata is applied).
    pub width: u32,
    /// Display height in pixels (after rotation metadata is applied).
    pub height: u32,
    /// Clockwise rotation applied to decoded pictures (0, 90, 180 or 270).
    pub rotation: u32,
    /// Average frame rate, when the container states one.
    pub fps: Option<f64>,
    /// Duration in seconds, when known.
    pub duration_s: Option<f64>,
    /// Number of frames, when the container states it.
    pub frames: Option<u64>,
    /// Decoded pixel format (e.g. `yuv420p10le`).
    pub pixel_format: String,
}

/// Where a sampled frame sits in the video and the geometry of its picture: the one
/// frame-metadata type, carried from the decoder through the model to the document.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    /// Position in presentation order, counting every frame of the video from 0.
    pub index: u64,
    /// Presentation time in seconds from the start of the video.
    pub pts_s: f64,
    /// Size of the picture (what the model sees).
    pub width: u32,
    pub height: u32,
    /// Source (display) pixels per picture pixel, horizontally: multiply a picture x by it.
    pub scale_x: f64,
    /// Source (display) pixels per picture pixel, vertically.
    pub scale_y: f64,
}

/// One kept frame: packed RGB24 pixels plus where it sits in the video.
#[derive(Clone, PartialEq)]
pub struct Frame {
    pub meta: FrameMeta,
    /// `width * height * 3` bytes, rows top to bottom, R G B.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// The RGB value at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.meta.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Where the video bytes come from.
pub enum Source {
    Path(PathBuf),
    Reader(Box<dyn ReadSeek>),
}

/// A seekable byte stream FFmpeg can demux from (a file, a buffer, a ranged S3 reader).
pub trait ReadSeek: Read + Seek + Send + 'static {}
impl<T: Read + Seek + Send + 'static> ReadSeek for T {}

impl From<&Path> for Source {
    fn from(p: &Path) -> Self {
        Source::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Self {
        Source::Path(p)
    }
}

/// Initialise FFmpeg once per process and keep its log quiet: errors reach the caller
/// as typed values, not as lines on stderr.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Turn an FFmpeg error into [`VideoError::Ffmpeg`], saying what was being done.
fn ff(doing: &'static str) -> impl FnOnce(ffmpeg::Error) -> VideoError {
    move |source| VideoError::Ffmpeg { doing, source }
}
