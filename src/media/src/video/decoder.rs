//! The FFmpeg side of decoding: opening the input under the allow-lists and limits,
//! reading packets into the look-ahead, driving the codec, and counting its work.
//!
//! [`Decoder`] is what callers hold. It keeps only FFmpeg plumbing and the limits on
//! decoder work; which index each frame gets and whether it is kept is the
//! [`Ranker`]'s decision, and turning a kept picture into a [`Frame`] is the
//! [`Converter`]'s job.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Seek;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg_next as ffmpeg;

use super::convert::check_resolution;
use super::ranker::LOOKAHEAD_PACKETS;
use super::{
    ff, init, Converter, DecodeOptions, Degrade, Frame, Limits, Ranker, Sampling, Source,
    VideoError, VideoInfo, ALLOWED_FORMATS,
};

/// How many corrupt packets in a row are tolerated before the input is declared
/// unreadable (a damaged region is skipped; a file of noise is not decoded forever).
const MAX_CONSECUTIVE_BAD_PACKETS: usize = 200;

/// The state of one open video: the FFmpeg input and codec, the look-ahead of packets,
/// the [`Ranker`] that indexes and samples frames, and the [`Converter`] for the kept
/// ones.
pub struct Decoder {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    info: VideoInfo,
    opts: DecodeOptions,
    ranker: Ranker,
    converter: Converter,
    window: VecDeque<ffmpeg::Packet>,
    input_done: bool,
    eof_sent: bool,
    /// Frames that left the decoder (kept or not): used where timestamps are missing.
    counted: u64,
    /// Pixels of every frame that left the decoder, against `Limits::max_decoded_pixels`.
    decoded_pixels: u64,
    decoded: ffmpeg::frame::Video,
    /// The decoder's `skip_frame` as last set (changed only when it must change).
    discard: ffmpeg::Discard,
    /// Whether the demuxer flagged any packet of the stream as key: then, under keyframe
    /// sampling, the packets it does not flag are never sent to the decoder.
    key_flags_seen: bool,
    /// A time range's start not reached yet (see [`Gate`]); `None` once decoding runs.
    gate: Option<Gate>,
    /// A frame at or after the range's end has left the decoder: nothing more is kept.
    past_end: bool,
}

/// Holds packets back until decoding reaches a range's start: only the packets from
/// the last keyframe at or before the start are decoded, the ones before it are ranked
/// (so indices stay the whole video's) and dropped.
struct Gate {
    start_s: f64,
    /// Packets since the last keyframe at or before the start, in decode order.
    held: Vec<ffmpeg::Packet>,
    /// Packets dropped so far.
    dropped: u64,
}

/// What the chosen video stream declares, read before its decoder is opened.
struct StreamFacts {
    index: usize,
    time_base: f64,
    fps: Option<f64>,
    duration_s: Option<f64>,
    frames: Option<u64>,
    start_pts: Option<i64>,
    rotation: u32,
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

/// The best video stream of `input`, what it declares, and its codec parameters.
fn stream_facts(
    input: &ffmpeg::format::context::Input,
) -> Result<(StreamFacts, ffmpeg::codec::Parameters), VideoError> {
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or(VideoError::NoVideoStream)?;
    let params = stream.parameters();
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
    let facts = StreamFacts {
        index: stream.index(),
        time_base,
        fps,
        duration_s,
        frames: (stream.frames() > 0).then(|| stream.frames() as u64),
        start_pts: (stream.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE)
            .then(|| stream.start_time()),
        rotation: stream_rotation(&stream),
    };
    Ok((facts, params))
}

/// Open a decoder for `params`, refusing a declared size over the limits before it
/// allocates anything; also returns the codec's name.
fn open_codec(
    params: ffmpeg::codec::Parameters,
    rotation: u32,
    opts: &DecodeOptions,
) -> Result<(ffmpeg::decoder::Video, String), VideoError> {
    let codec_id = params.id();
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
    Ok((decoder, codec_name))
}

/// The display size of the opened decoder's pictures, checked against `limits` along
/// with the declared duration and frame count.
fn check_opened(
    decoder: &ffmpeg::decoder::Video,
    facts: &StreamFacts,
    limits: &Limits,
) -> Result<(u32, u32), VideoError> {
    let (coded_w, coded_h) = (decoder.width(), decoder.height());
    if coded_w == 0 || coded_h == 0 {
        return Err(VideoError::Corrupt {
            reason: "the video stream declares no picture size".into(),
        });
    }
    let (width, height) = if facts.rotation % 180 == 90 {
        (coded_h, coded_w)
    } else {
        (coded_w, coded_h)
    };
    check_resolution(width, height, limits)?;
    if let Some(d) = facts.duration_s {
        if d > limits.max_duration_s {
            return Err(VideoError::TooLong {
                duration_s: d,
                max_s: limits.max_duration_s,
            });
        }
    }
    if let Some(n) = facts.frames {
        if n > limits.max_frames {
            return Err(VideoError::TooManyFrames {
                max: limits.max_frames,
            });
        }
    }
    Ok((width, height))
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
        let (facts, params) = stream_facts(&input)?;
        let (decoder, codec) = open_codec(params, facts.rotation, &opts)?;
        let (width, height) = check_opened(&decoder, &facts, &opts.limits)?;
        if let Some(d) = facts.duration_s.filter(|d| opts.range.start_s >= *d) {
            return Err(VideoError::InvalidOptions(format!(
                "the range starts at {} s, at or after the end of the video ({d:.3} s)",
                opts.range.start_s
            )));
        }
        let start_s = opts.range.start_s;
        let info = VideoInfo {
            container,
            codec,
            width,
            height,
            rotation: facts.rotation,
            fps: facts.fps,
            duration_s: facts.duration_s,
            frames: facts.frames,
            pixel_format: pixel_name(decoder.format()),
        };
        Ok(Decoder {
            input,
            decoder,
            stream_index: facts.index,
            ranker: Ranker::new(opts.sampling, facts.time_base, facts.start_pts, info.fps)
                .with_range(opts.range),
            converter: Converter::new(info.rotation, opts.resize, opts.limits),
            info,
            opts,
            window: VecDeque::with_capacity(LOOKAHEAD_PACKETS + 1),
            input_done: false,
            eof_sent: false,
            counted: 0,
            decoded_pixels: 0,
            decoded: ffmpeg::frame::Video::empty(),
            discard: ffmpeg::Discard::Default,
            key_flags_seen: false,
            gate: (start_s > 0.0).then(|| Gate {
                start_s,
                held: Vec::new(),
                dropped: 0,
            }),
            past_end: false,
        })
    }

    /// What the container says about the video.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Whether frame indices come from timestamps (exact, skipping allowed) or from
    /// counting decoded frames (streams without usable timestamps).
    pub fn indices_from_timestamps(&self) -> bool {
        self.ranker.is_exact()
    }

    /// How many pictures the decoder produced so far, kept or not (skipped non-reference
    /// frames, and non-key frames under keyframe sampling, are not among them).
    pub fn frames_decoded(&self) -> u64 {
        self.counted
    }

    /// The next kept frame, or `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        loop {
            if self.past_end {
                return Ok(None);
            }
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
        if self.gate.is_some() {
            return self.feed_gate();
        }
        let Some(packet) = self.window.pop_front() else {
            if !self.eof_sent {
                self.set_skip(false);
                self.ranker.finalize(None);
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
        if self.keyframes_only()
            && self.key_flags_seen
            && self.ranker.is_exact()
            && !packet.is_key()
        {
            // Ranked when it was read; its frame would be discarded anyway, and handing
            // it to a frame thread only to discard it costs more than decoding the
            // keyframes (3.5x on a 10-minute 1080p clip).
            return Ok(());
        }
        let skip = self.opts.skip_non_ref
            && self
                .ranker
                .skippable(packet.pts(), self.window.iter().map(|p| p.pts()));
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

    /// Before a range's start: hold the next packet back, dropping what came before
    /// a newer keyframe at or before the start; once a packet decodes after the start
    /// (or the input ends), hand what is held back to the decoder in order.
    fn feed_gate(&mut self) -> Result<(), VideoError> {
        let Some(gate) = self.gate.as_mut() else {
            return Ok(());
        };
        if !self.ranker.is_exact() {
            // Indices are counted from decoded frames: every frame must be decoded.
            if gate.dropped > 0 {
                return Err(VideoError::InvalidOptions(format!(
                    "this stream's timestamps became unusable after {} packets were \
                     skipped to reach {} s, so its frame indices cannot be known: run \
                     it without a start",
                    gate.dropped, gate.start_s
                )));
            }
            return self.open_gate();
        }
        let Some(packet) = self.window.pop_front() else {
            return self.open_gate(); // the input ended before the start
        };
        let seconds = |t: Option<i64>| t.map(|t| self.ranker.seconds(t));
        let (pts_s, dts_s) = (seconds(packet.pts()), seconds(packet.dts()));
        let gate = self.gate.as_mut().expect("checked above");
        if packet.is_key() && pts_s.is_some_and(|t| t <= gate.start_s) {
            gate.dropped += gate.held.len() as u64;
            gate.held.clear();
        }
        gate.held.push(packet);
        // Decode order: once a packet decodes after the start, no later keyframe is
        // shown at or before it.
        if dts_s.or(pts_s).is_some_and(|t| t > gate.start_s) {
            return self.open_gate();
        }
        Ok(())
    }

    fn open_gate(&mut self) -> Result<(), VideoError> {
        if let Some(gate) = self.gate.take() {
            if gate.dropped > 0 {
                tracing::debug!(
                    dropped = gate.dropped,
                    start_s = gate.start_s,
                    "packets before the range's keyframe skipped"
                );
            }
            for p in gate.held.into_iter().rev() {
                self.window.push_front(p);
            }
        }
        Ok(())
    }

    /// Set the decoder's `skip_frame` for the next packet: `skip` when the ranker
    /// says the packet's frame is not kept. Keyframe sampling discards every non-key
    /// frame while indices come from timestamps; once they are counted instead, every
    /// frame must come out to be counted, so nothing is discarded.
    fn set_skip(&mut self, skip: bool) {
        let discard = if self.keyframes_only() && self.ranker.is_exact() {
            ffmpeg::Discard::NonKey
        } else if skip {
            ffmpeg::Discard::NonReference
        } else {
            ffmpeg::Discard::Default
        };
        if discard != self.discard {
            self.decoder.skip_frame(discard);
            self.discard = discard;
        }
    }

    fn keyframes_only(&self) -> bool {
        self.opts.sampling == Sampling::Keyframes
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
                    self.key_flags_seen |= packet.is_key();
                    if let Err(why) = self.ranker.on_packet(packet.pts()) {
                        self.degrade(why);
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

    /// The ranker just gave up on timestamps (it reports that once): say so, and stop
    /// skipping.
    fn degrade(&mut self, why: Degrade) {
        if self.ranker.next_index() == 0 && self.counted == 0 {
            tracing::debug!("frame indices counted from decoded frames: {why}");
        } else {
            tracing::warn!(
                "frame indices counted from decoded frames from frame {} on: {why}",
                self.counted
            );
        }
        self.set_skip(false);
    }

    /// A frame left the decoder: check the limits, let the ranker place it, and
    /// convert it if it is kept.
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
        let placed = self
            .ranker
            .on_frame(self.decoded.pts(), self.decoded.timestamp());
        if let Some(why) = placed.degraded {
            self.degrade(why);
        }
        if placed.pts_s > self.opts.limits.max_duration_s {
            return Err(VideoError::TooLong {
                duration_s: placed.pts_s,
                max_s: self.opts.limits.max_duration_s,
            });
        }
        if self.opts.range.end_s.is_some_and(|e| placed.pts_s >= e) {
            // Frames leave in presentation order: everything after is past the end.
            self.past_end = true;
            return Ok(None);
        }
        // Under keyframe sampling the decoder discards non-key frames, except where
        // frames are counted (then all come out) or where it ignores `skip_frame`:
        // the picture's own key flag decides.
        if !placed.kept || (self.keyframes_only() && !self.decoded.is_key()) {
            return Ok(None);
        }
        let frame = self
            .converter
            .convert(&self.decoded, placed.index, placed.pts_s)?;
        Ok(Some(frame))
    }
}

impl Iterator for Decoder {
    type Item = Result<Frame, VideoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

fn pixel_name(format: Pixel) -> String {
    let desc: Option<ffmpeg::format::pixel::Descriptor> = format.descriptor();
    desc.map(|d| d.name().to_string())
        .unwrap_or_else(|| format!("{format:?}").to_lowercase())
}

/// Open a video only to read what it declares.
pub fn probe(source: impl Into<Source>) -> Result<VideoInfo, VideoError> {
    Ok(Decoder::open(source, DecodeOptions::default())?.info)
}
