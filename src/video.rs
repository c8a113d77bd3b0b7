//! Streaming video decoding and frame sampling over FFmpeg.
//!
//! This module owns everything between "bytes of a video" and "RGB frames the model
//! sees": opening the input with a format/protocol allow-list, choosing the video
//! stream, deciding which frames are kept (every Nth, or a target fps), asking the
//! decoder to skip work for frames nobody will look at, and converting kept frames to
//! packed RGB24 at the requested size with the factors that map boxes back to source
//! pixels.
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

/// Container formats FFmpeg may open. Formats that name other resources (HLS and DASH
/// playlists, concat scripts, image sequences, SDP, …) are absent on purpose: an input
/// must never make FFmpeg read a second file or a network address.
pub const ALLOWED_FORMATS: &str =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,ivf,h264,hevc,m4v,mpegvideo,mpeg,obu";

/// How many video packets the decoder reads ahead of the one it sends, so that each
/// packet's presentation index is known before it is decoded. Real encoders reorder by
/// at most 16 frames (the H.264/HEVC DPB); twice that leaves room for odd muxers.
const LOOKAHEAD_PACKETS: usize = 32;

/// How many corrupt packets in a row are tolerated before the input is declared
/// unreadable (a damaged region is skipped; a file of noise is not decoded forever).
const MAX_CONSECUTIVE_BAD_PACKETS: usize = 200;

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

/// Everything that shapes one decode.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    pub sampling: Sampling,
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
            resize: Resize::default(),
            skip_non_ref: true,
            threads: 0,
            limits: Limits::default(),
        }
    }
}

impl DecodeOptions {
    fn validate(&self) -> Result<(), VideoError> {
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

/// One kept frame: packed RGB24 pixels plus where it sits in the video.
#[derive(Clone, PartialEq)]
pub struct Frame {
    /// Position in presentation order, counting every frame of the video from 0.
    pub index: u64,
    /// Presentation time in seconds from the start of the video.
    pub pts_s: f64,
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, rows top to bottom, R G B.
    pub rgb: Vec<u8>,
    /// Source (display) pixels per frame pixel, horizontally: multiply a frame x by it.
    pub scale_x: f64,
    /// Source (display) pixels per frame pixel, vertically.
    pub scale_y: f64,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("index", &self.index)
            .field("pts_s", &self.pts_s)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("scale_x", &self.scale_x)
            .field("scale_y", &self.scale_y)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// The RGB value at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
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

/// Decides, in presentation order, which frames are kept.
struct Sampler {
    sampling: Sampling,
    last_slot: Option<i64>,
}

impl Sampler {
    fn keep(&mut self, index: u64, pts_s: f64) -> bool {
        match self.sampling {
            Sampling::EveryNth(n) => index % u64::from(n) == 0,
            Sampling::Fps(fps) => {
                // A tiny epsilon so a frame exactly on a slot boundary (t = k/fps)
                // lands in slot k despite float rounding.
                let slot = (pts_s * fps + 1e-6).floor() as i64;
                if self.last_slot.is_some_and(|s| slot <= s) {
                    false
                } else {
                    self.last_slot = Some(slot);
                    true
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    index: u64,
    kept: bool,
}

/// Assigns presentation indices to packets read in decode order.
struct Ranker {
    /// Timestamps read but not yet given an index.
    pending: BTreeSet<i64>,
    /// Timestamps with an index, waiting for their frame to leave the decoder.
    ranked: BTreeMap<i64, Slot>,
    next_index: u64,
    /// Largest timestamp given an index so far.
    watermark: Option<i64>,
    /// Cleared when the stream breaks the look-ahead assumption or lacks timestamps.
    exact: bool,
}

/// The state of one open video.
pub struct Decoder {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    time_base: f64,
    start_pts: Option<i64>,
    info: VideoInfo,
    opts: DecodeOptions,
    sampler: Sampler,
    ranker: Ranker,
    window: VecDeque<ffmpeg::Packet>,
    input_done: bool,
    eof_sent: bool,
    /// Frames that left the decoder (kept or not): used where timestamps are missing.
    counted: u64,
    /// Pixels of every frame that left the decoder, against `Limits::max_decoded_pixels`.
    decoded_pixels: u64,
    scaler: Option<(ScalerKey, scaling::Context)>,
    decoded: ffmpeg::frame::Video,
    converted: ffmpeg::frame::Video,
    skip_active: bool,
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct ScalerKey {
    format: Pixel,
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
}

fn ff(doing: &'static str) -> impl FnOnce(ffmpeg::Error) -> VideoError {
    move |source| VideoError::Ffmpeg { doing, source }
}

fn rational(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

/// Clockwise rotation (0/90/180/270) from a stream's display matrix, as FFmpeg's own
/// `autorotate` computes it.
fn stream_rotation(stream: &ffmpeg::format::stream::Stream) -> u32 {
    for side in stream.side_data() {
        if side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix
            && side.data().len() >= 36
        {
            // SAFETY: a display matrix is nine native-endian i32 values (36 bytes),
            // checked above; av_display_rotation_get only reads them.
            let ccw =
                unsafe { ffmpeg::ffi::av_display_rotation_get(side.data().as_ptr() as *const i32) };
            if !ccw.is_finite() {
                return 0;
            }
            let cw = (-ccw).round() as i64;
            let quarter = ((cw % 360 + 360) % 360 + 45) / 90 * 90 % 360;
            return quarter as u32;
        }
    }
    0
}

fn io_error_of(e: &ffmpeg::Error) -> Option<std::io::Error> {
    match e {
        ffmpeg::Error::Other { errno } if *errno == libc_eio() => {
            Some(std::io::Error::other(e.to_string()))
        }
        _ => None,
    }
}

const fn libc_eio() -> i32 {
    5
}

impl Decoder {
    /// Open a video and prepare to decode it. Fails fast on inputs that are not video,
    /// exceed the limits, or name a codec FFmpeg cannot decode.
    pub fn open(source: impl Into<Source>, opts: DecodeOptions) -> Result<Decoder, VideoError> {
        init();
        opts.validate()?;
        let (io, hint) = match source.into() {
            Source::Path(path) => {
                let file = File::open(&path)?;
                if file.metadata()?.len() == 0 {
                    return Err(VideoError::Empty);
                }
                let hint = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let io = ffmpeg::format::context::StreamIo::from_read_seek(file)
                    .map_err(ff("setting up input"))?;
                (io, hint)
            }
            Source::Reader(mut reader) => {
                let len = reader.seek(std::io::SeekFrom::End(0))?;
                if len == 0 {
                    return Err(VideoError::Empty);
                }
                reader.seek(std::io::SeekFrom::Start(0))?;
                let io = ffmpeg::format::context::StreamIo::from_read_seek(reader)
                    .map_err(ff("setting up input"))?;
                (io, None)
            }
        };
        let mut dict = ffmpeg::Dictionary::new();
        dict.set("format_whitelist", ALLOWED_FORMATS);
        // Custom I/O reads the main input; nothing else may be opened, by any protocol.
        dict.set("protocol_whitelist", "none");
        // The file name is only a format hint, never opened.
        let hint = hint.filter(|h| !h.contains('\0'));
        let input =
            ffmpeg::format::input_from_stream(io, hint.as_deref(), Some(dict)).map_err(|e| {
                match io_error_of(&e) {
                    Some(io) => VideoError::Io(io),
                    None => VideoError::Unrecognized {
                        reason: e.to_string(),
                    },
                }
            })?;
        Self::from_input(input, opts)
    }

    fn from_input(
        input: ffmpeg::format::context::Input,
        opts: DecodeOptions,
    ) -> Result<Decoder, VideoError> {
        let container = input.format().name().to_string();
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or(VideoError::NoVideoStream)?;
        let stream_index = stream.index();
        let params = stream.parameters();
        let codec_id = params.id();
        // Cover art (mjpeg/png attached pictures) counts as a video stream to FFmpeg but
        // is a still image: refuse it like an audio-only file.
        let attached_pic = stream
            .disposition()
            .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC);
        if attached_pic {
            return Err(VideoError::NoVideoStream);
        }
        let time_base = rational(stream.time_base()).unwrap_or(1.0 / 90_000.0);
        let fps = rational(stream.avg_frame_rate()).or_else(|| rational(stream.rate()));
        let duration_s = if stream.duration() > 0 {
            Some(stream.duration() as f64 * time_base)
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
        } else {
            None
        };
        let frames = (stream.frames() > 0).then(|| stream.frames() as u64);
        let start_pts =
            (stream.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE).then(|| stream.start_time());
        let rotation = stream_rotation(&stream);

        let mut ctx = ffmpeg::codec::context::Context::from_parameters(params)
            .map_err(ff("reading codec parameters"))?;
        let codec_name = ffmpeg::codec::decoder::find(codec_id)
            .map(|c| c.name().to_string())
            .ok_or_else(|| VideoError::UnsupportedCodec {
                codec: format!("{codec_id:?}").to_lowercase(),
            })?;
        // The declared size, before the decoder opens (it refuses sizes over max_pixels).
        // SAFETY: `ctx` owns a valid AVCodecContext filled from the stream parameters.
        let (declared_w, declared_h) = unsafe { ((*ctx.as_ptr()).width, (*ctx.as_ptr()).height) };
        if declared_w > 0 && declared_h > 0 {
            let (w, h) = (declared_w as u32, declared_h as u32);
            let (w, h) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
            check_resolution(w, h, &opts.limits)?;
        }
        // FFmpeg checks this before it allocates any picture, so a stream that switches
        // to a huge size mid-way is refused inside the decoder, not after the fact.
        let max_pixels = u64::from(opts.limits.max_width) * u64::from(opts.limits.max_height);
        // SAFETY: `ctx` owns a valid AVCodecContext that is not open yet; max_pixels is
        // a plain field read by avcodec_open2 and the decoders.
        unsafe {
            (*ctx.as_mut_ptr()).max_pixels = max_pixels.min(i64::MAX as u64) as i64;
        }
        ctx.set_threading(threading::Config {
            kind: threading::Type::Frame,
            count: opts.threads,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|_| VideoError::UnsupportedCodec {
                codec: codec_name.clone(),
            })?;
        let (coded_w, coded_h) = (decoder.width(), decoder.height());
        if coded_w == 0 || coded_h == 0 {
            return Err(VideoError::Corrupt {
                reason: "the video stream declares no picture size".into(),
            });
        }
        let (width, height) = if rotation % 180 == 90 {
            (coded_h, coded_w)
        } else {
            (coded_w, coded_h)
        };
        check_resolution(width, height, &opts.limits)?;
        if let Some(d) = duration_s {
            if d > opts.limits.max_duration_s {
                return Err(VideoError::TooLong {
                    duration_s: d,
                    max_s: opts.limits.max_duration_s,
                });
            }
        }
        if let Some(n) = frames {
            if n > opts.limits.max_frames {
                return Err(VideoError::TooManyFrames {
                    max: opts.limits.max_frames,
                });
            }
        }
        let pixel_format = pixel_name(decoder.format());
        let info = VideoInfo {
            container,
            codec: codec_name,
            width,
            height,
            rotation,
            fps,
            duration_s,
            frames,
            pixel_format,
        };
        Ok(Decoder {
            input,
            decoder,
            stream_index,
            time_base,
            start_pts,
            info,
            sampler: Sampler {
                sampling: opts.sampling,
                last_slot: None,
            },
            opts,
            ranker: Ranker {
                pending: BTreeSet::new(),
                ranked: BTreeMap::new(),
                next_index: 0,
                watermark: None,
                exact: true,
            },
            window: VecDeque::with_capacity(LOOKAHEAD_PACKETS + 1),
            input_done: false,
            eof_sent: false,
            counted: 0,
            decoded_pixels: 0,
            scaler: None,
            decoded: ffmpeg::frame::Video::empty(),
            converted: ffmpeg::frame::Video::empty(),
            skip_active: false,
        })
    }

    /// What the container says about the video.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Whether frame indices come from timestamps (exact, skipping allowed) or from
    /// counting decoded frames (streams without usable timestamps).
    pub fn indices_from_timestamps(&self) -> bool {
        self.ranker.exact
    }

    /// How many pictures the decoder produced so far, kept or not (skipped non-reference
    /// frames are not among them).
    pub fn frames_decoded(&self) -> u64 {
        self.counted
    }

    /// The next kept frame, or `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    if let Some(frame) = self.on_decoded()? {
                        return Ok(Some(frame));
                    }
                    continue;
                }
                Err(ffmpeg::Error::Other { errno })
                    if errno == ffmpeg::error::EAGAIN && !self.eof_sent => {}
                // The end; or, once flushed, a decoder that still wants input or fails
                // on a picture cut short: what it produced so far is the video.
                Err(ffmpeg::Error::Eof) => return self.end(),
                Err(_) if self.eof_sent => return self.end(),
                Err(e) => {
                    return Err(VideoError::Corrupt {
                        reason: format!("decoding failed after frame {}: {e}", self.counted),
                    })
                }
            }
            self.feed()?;
        }
    }

    fn end(&self) -> Result<Option<Frame>, VideoError> {
        if self.counted == 0 {
            Err(VideoError::NoFrames)
        } else {
            Ok(None)
        }
    }

    /// Read packets until the look-ahead is full, then send the oldest to the decoder
    /// (or signal the end of the stream).
    fn feed(&mut self) -> Result<(), VideoError> {
        self.fill_window()?;
        let Some(packet) = self.window.pop_front() else {
            if !self.eof_sent {
                self.set_skip(false);
                self.ranker_finalize(None);
                match self.decoder.send_eof() {
                    // A stream cut short can leave the decoder with a partial picture
                    // it refuses to flush: what it already produced still counts.
                    Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                    Err(e) => {
                        return Err(VideoError::Corrupt {
                            reason: format!("the decoder could not be flushed: {e}"),
                        })
                    }
                }
                self.eof_sent = true;
            }
            return Ok(());
        };
        let skip = self.opts.skip_non_ref && self.ranker.exact && self.skippable(&packet);
        self.set_skip(skip);
        let mut bad = 0;
        match self.decoder.send_packet(&packet) {
            Ok(()) => {}
            Err(ffmpeg::Error::InvalidData) => bad += 1,
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                // The decoder wants its output drained first; keep the packet.
                self.window.push_front(packet);
            }
            Err(e) => {
                return Err(VideoError::Corrupt {
                    reason: format!("the decoder rejected a packet: {e}"),
                })
            }
        }
        if bad > 0 {
            tracing::debug!("skipped a packet the decoder could not read");
        }
        Ok(())
    }

    fn set_skip(&mut self, skip: bool) {
        if skip != self.skip_active {
            self.decoder.skip_frame(if skip {
                ffmpeg::Discard::NonReference
            } else {
                ffmpeg::Discard::Default
            });
            self.skip_active = skip;
        }
    }

    /// True when this packet's frame is known not to be kept.
    fn skippable(&mut self, packet: &ffmpeg::Packet) -> bool {
        let Some(pts) = packet.pts() else {
            return false;
        };
        // Everything in the look-ahead, and so everything read later, is shown after
        // the earliest timestamp still in it: what is below that is final.
        let window_min = self
            .window
            .iter()
            .filter_map(|p| p.pts())
            .chain(std::iter::once(pts))
            .min();
        self.ranker_finalize(window_min);
        self.ranker.ranked.get(&pts).is_some_and(|s| !s.kept)
    }

    fn fill_window(&mut self) -> Result<(), VideoError> {
        let mut bad_in_a_row = 0;
        while !self.input_done && self.window.len() < LOOKAHEAD_PACKETS {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    bad_in_a_row = 0;
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    if self.start_pts.is_none() {
                        self.start_pts = packet.pts();
                    }
                    match packet.pts() {
                        Some(pts) => {
                            if self.ranker.watermark.is_some_and(|w| pts <= w)
                                || !self.ranker.pending.insert(pts)
                            {
                                // Shown before a frame that already has its index, or
                                // a repeated timestamp: indices can no longer be
                                // derived from timestamps.
                                self.degrade("timestamps out of the look-ahead order");
                            }
                        }
                        None => self.degrade("packets without timestamps"),
                    }
                    self.window.push_back(packet);
                }
                Err(ffmpeg::Error::Eof) => self.input_done = true,
                Err(ffmpeg::Error::InvalidData) => {
                    bad_in_a_row += 1;
                    if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(VideoError::Corrupt {
                            reason: "too many unreadable packets in a row".into(),
                        });
                    }
                }
                Err(e) => {
                    if let Some(io) = io_error_of(&e) {
                        return Err(VideoError::Io(io));
                    }
                    // A truncated file ends in a read error: decode what was read.
                    tracing::debug!("demuxing stopped early: {e}");
                    self.input_done = true;
                }
            }
        }
        Ok(())
    }

    fn degrade(&mut self, why: &str) {
        if self.ranker.exact {
            if self.ranker.next_index == 0 && self.counted == 0 {
                tracing::debug!("frame indices counted from decoded frames: {why}");
            } else {
                tracing::warn!(
                    "frame indices counted from decoded frames from frame {} on: {why}",
                    self.counted
                );
            }
            self.ranker.exact = false;
            self.set_skip(false);
        }
    }

    /// Give indices, in presentation order, to every pending timestamp below `limit`
    /// (all of them when `limit` is `None`).
    fn ranker_finalize(&mut self, limit: Option<i64>) {
        if !self.ranker.exact {
            return;
        }
        while let Some(&pts) = self.ranker.pending.first() {
            if limit.is_some_and(|l| pts > l) {
                break;
            }
            self.ranker.pending.pop_first();
            let index = self.ranker.next_index;
            self.ranker.next_index += 1;
            let kept = self.sampler.keep(index, self.seconds(pts));
            self.ranker.ranked.insert(pts, Slot { index, kept });
            self.ranker.watermark = Some(pts);
        }
    }

    fn seconds(&self, pts: i64) -> f64 {
        (pts - self.start_pts.unwrap_or(0)) as f64 * self.time_base
    }

    /// A frame left the decoder: decide its index and whether it is kept.
    fn on_decoded(&mut self) -> Result<Option<Frame>, VideoError> {
        self.counted += 1;
        if self.counted > self.opts.limits.max_frames {
            return Err(VideoError::TooManyFrames {
                max: self.opts.limits.max_frames,
            });
        }
        self.decoded_pixels += u64::from(self.decoded.width()) * u64::from(self.decoded.height());
        if self.decoded_pixels > self.opts.limits.max_decoded_pixels {
            return Err(VideoError::OverBudget {
                max_pixels: self.opts.limits.max_decoded_pixels,
            });
        }
        // A real presentation timestamp; best-effort guesses (from DTS) are only used
        // when nothing better exists.
        let pts = self.decoded.pts();
        let slot = match pts {
            Some(pts) if self.ranker.exact => {
                self.ranker_finalize(Some(pts));
                self.take_ranked(pts).unwrap_or_else(|| {
                    self.degrade("a frame with a timestamp no packet carried");
                    self.count_slot(self.seconds(pts))
                })
            }
            Some(pts) => match self.take_ranked(pts) {
                Some(slot) => slot,
                None => self.count_slot(self.counted_pts_s(self.ranker.next_index)),
            },
            None => self.count_slot(self.counted_pts_s(self.ranker.next_index)),
        };
        // Without trustworthy timestamps (e.g. AVI's packed B-frames, whose frames carry
        // their neighbour's time) the index at the stated rate is the better clock.
        let pts_s = match pts {
            Some(p) if self.ranker.exact => self.seconds(p),
            _ => self.counted_pts_s(slot.index),
        };
        if pts_s > self.opts.limits.max_duration_s {
            return Err(VideoError::TooLong {
                duration_s: pts_s,
                max_s: self.opts.limits.max_duration_s,
            });
        }
        if !slot.kept {
            return Ok(None);
        }
        let frame = self.convert(slot.index, pts_s)?;
        Ok(Some(frame))
    }

    /// The index a frame got from timestamps, if any. Frames leave the decoder in
    /// presentation order, so entries before `pts` belong to frames the decoder
    /// dropped and are forgotten.
    fn take_ranked(&mut self, pts: i64) -> Option<Slot> {
        let later = self.ranker.ranked.split_off(&(pts + 1));
        let slot = self.ranker.ranked.remove(&pts);
        self.ranker.ranked = later;
        slot
    }

    /// Index and keep-decision for a frame when timestamps cannot be trusted: the
    /// next number after every index handed out so far.
    fn count_slot(&mut self, pts_s: f64) -> Slot {
        let index = self.ranker.next_index;
        self.ranker.next_index += 1;
        Slot {
            index,
            kept: self.sampler.keep(index, pts_s),
        }
    }

    /// Presentation time of a frame without a timestamp: from its index at the stated
    /// frame rate (such streams, e.g. AVI, are constant-rate by construction).
    fn counted_pts_s(&self, index: u64) -> f64 {
        match self.info.fps {
            Some(f) => index as f64 / f,
            None => self.decoded.timestamp().map_or(0.0, |t| self.seconds(t)),
        }
    }

    /// Scale (and rotate) the decoded picture into a packed RGB24 frame.
    fn convert(&mut self, index: u64, pts_s: f64) -> Result<Frame, VideoError> {
        let (w, h) = (self.decoded.width(), self.decoded.height());
        let rotation = self.info.rotation;
        let (disp_w, disp_h) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
        check_resolution(disp_w, disp_h, &self.opts.limits)?;
        let (out_w, out_h) = target_size(disp_w, disp_h, self.opts.resize);
        // Scale in the coded orientation, then rotate the small result.
        let (sw, sh) = if rotation % 180 == 90 {
            (out_h, out_w)
        } else {
            (out_w, out_h)
        };
        let key = ScalerKey {
            format: self.decoded.format(),
            width: w,
            height: h,
            out_width: sw,
            out_height: sh,
        };
        if self.scaler.as_ref().map(|(k, _)| *k) != Some(key) {
            let ctx = scaling::Context::get(
                key.format,
                w,
                h,
                Pixel::RGB24,
                sw,
                sh,
                // swscale's SIMD paths: the high-precision flags cost more per
                // kept frame than decoding it (see the decode benchmark).
                scaling::Flags::BILINEAR,
            )
            .map_err(ff("setting up pixel conversion"))?;
            self.scaler = Some((key, ctx));
        }
        let (_, scaler) = self.scaler.as_mut().expect("scaler set above");
        scaler
            .run(&self.decoded, &mut self.converted)
            .map_err(ff("converting pixels"))?;
        let stride = self.converted.stride(0);
        let data = self.converted.data(0);
        let row = sw as usize * 3;
        let mut rgb = Vec::with_capacity(row * sh as usize);
        for y in 0..sh as usize {
            rgb.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        let rgb = rotate_rgb(rgb, sw, sh, rotation);
        Ok(Frame {
            index,
            pts_s,
            width: out_w,
            height: out_h,
            rgb,
            scale_x: f64::from(disp_w) / f64::from(out_w),
            scale_y: f64::from(disp_h) / f64::from(out_h),
        })
    }
}

impl Iterator for Decoder {
    type Item = Result<Frame, VideoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

fn check_resolution(width: u32, height: u32, limits: &Limits) -> Result<(), VideoError> {
    if width > limits.max_width || height > limits.max_height {
        return Err(VideoError::ResolutionTooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    Ok(())
}

fn pixel_name(format: Pixel) -> String {
    let desc: Option<ffmpeg::format::pixel::Descriptor> = format.descriptor();
    desc.map(|d| d.name().to_string())
        .unwrap_or_else(|| format!("{format:?}").to_lowercase())
}

/// The output size for a display size under a resize policy.
pub fn target_size(width: u32, height: u32, resize: Resize) -> (u32, u32) {
    match resize {
        Resize::Original => (width, height),
        Resize::Stretch { width, height } => (width, height),
        Resize::Fit {
            width: max_w,
            height: max_h,
        } => {
            let scale = (f64::from(max_w) / f64::from(width))
                .min(f64::from(max_h) / f64::from(height))
                .min(1.0);
            let w = ((f64::from(width) * scale).round() as u32).clamp(1, max_w);
            let h = ((f64::from(height) * scale).round() as u32).clamp(1, max_h);
            (w, h)
        }
    }
}

/// Rotate a packed RGB24 picture clockwise by 0, 90, 180 or 270 degrees.
fn rotate_rgb(rgb: Vec<u8>, w: u32, h: u32, rotation: u32) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let px = |x: usize, y: usize| (y * w + x) * 3;
    match rotation {
        90 => {
            // Output is h wide and w tall; output (x', y') = input (y', h-1-x').
            let mut out = vec![0u8; rgb.len()];
            for yo in 0..w {
                for xo in 0..h {
                    let s = px(yo, h - 1 - xo);
                    let d = (yo * h + xo) * 3;
                    out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
                }
            }
            out
        }
        180 => {
            let mut out = vec![0u8; rgb.len()];
            for y in 0..h {
                for x in 0..w {
                    let s = px(x, y);
                    let d = px(w - 1 - x, h - 1 - y);
                    out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
                }
            }
            out
        }
        270 => {
            // Output (x', y') = input (w-1-y', x').
            let mut out = vec![0u8; rgb.len()];
            for yo in 0..w {
                for xo in 0..h {
                    let s = px(w - 1 - yo, xo);
                    let d = (yo * h + xo) * 3;
                    out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
                }
            }
            out
        }
        _ => rgb,
    }
}

/// Open a video only to read what it declares.
pub fn probe(source: impl Into<Source>) -> Result<VideoInfo, VideoError> {
    Ok(Decoder::open(source, DecodeOptions::default())?.info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_never_enlarges_and_keeps_aspect() {
        let fit = Resize::Fit {
            width: 1024,
            height: 1024,
        };
        assert_eq!(target_size(1920, 1080, fit), (1024, 576));
        assert_eq!(target_size(1080, 1920, fit), (576, 1024));
        assert_eq!(target_size(640, 360, fit), (640, 360));
        assert_eq!(
            target_size(
                1920,
                1080,
                Resize::Stretch {
                    width: 1024,
                    height: 1024
                }
            ),
            (1024, 1024)
        );
    }

    #[test]
    fn rotations_move_a_corner_pixel_where_expected() {
        // 3x2 picture with a marked top-left pixel.
        let mut rgb = vec![0u8; 3 * 2 * 3];
        rgb[0] = 255;
        let r90 = rotate_rgb(rgb.clone(), 3, 2, 90);
        // Clockwise: top-left goes to top-right of the 2x3 output.
        assert_eq!(r90[3], 255);
        let r180 = rotate_rgb(rgb.clone(), 3, 2, 180);
        assert_eq!(r180[(3 * 2 - 1) * 3], 255);
        let r270 = rotate_rgb(rgb, 3, 2, 270);
        // Counter-clockwise: top-left goes to bottom-left of the 2x3 output.
        assert_eq!(r270[(2 * 2) * 3], 255);
    }

    #[test]
    fn fps_sampler_keeps_first_frame_of_each_slot() {
        let mut s = Sampler {
            sampling: Sampling::Fps(2.0),
            last_slot: None,
        };
        let kept: Vec<u64> = (0..30).filter(|&i| s.keep(i, i as f64 / 10.0)).collect();
        assert_eq!(kept, vec![0, 5, 10, 15, 20, 25]);
    }
}
