//! Packed RGB24 pictures to an H.264 MP4 that browsers play: yuv420p, the moov atom
//! at the front (`faststart`), libx264 at a constant quality.
//!
//! Pictures are converted with swscale and handed to the encoder with presentation
//! times in milliseconds, so a writer serves both a slide show (each picture shown a
//! fixed time) and a video's own timing (each picture at its source time).

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, encoder, format, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::{ff, init, VideoError};

/// The encoder's time unit: presentation times are whole milliseconds.
const TIME_BASE: Rational = Rational(1, 1000);

/// x264's constant-quality setting: 23 is its default, visually clean for annotations.
pub const CRF: &str = "23";

/// Writes RGB pictures of one size into an H.264 MP4.
pub struct Mp4Writer {
    output: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    yuv: ffmpeg::frame::Video,
    rgb: ffmpeg::frame::Video,
    stream_time_base: Rational,
    width: u32,
    height: u32,
    last_pts: Option<i64>,
    /// How long a picture shows, in milliseconds (the last one's duration in the file).
    frame_ms: i64,
    frames: usize,
    path: PathBuf,
}

impl Mp4Writer {
    /// Start `path` for `width`x`height` pictures (both even: yuv420p halves the
    /// chroma), announcing `fps` as the nominal frame rate.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self, VideoError> {
        init();
        if width < 2 || height < 2 || width % 2 == 1 || height % 2 == 1 {
            return Err(VideoError::InvalidOptions(format!(
                "an H.264 picture needs an even width and height, not {width}x{height}"
            )));
        }
        let mut output = format::output_as(path, "mp4").map_err(ff("creating the MP4"))?;
        let codec = encoder::find_by_name("libx264")
            .or_else(|| encoder::find(codec::Id::H264))
            .ok_or_else(|| VideoError::InvalidOptions("this FFmpeg has no H.264 encoder".into()))?;
        let global_header = output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);
        let mut ost = output
            .add_stream(codec)
            .map_err(ff("adding the video stream"))?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ff("creating the H.264 encoder"))?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(TIME_BASE);
        let rate = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            25.0
        };
        enc.set_frame_rate(Some(Rational((rate * 1000.0).round() as i32, 1000)));
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = Dictionary::new();
        opts.set("crf", CRF);
        opts.set("preset", "veryfast");
        let encoder = enc
            .open_with(opts)
            .map_err(ff("opening the H.264 encoder"))?;
        ost.set_parameters(&encoder);
        ost.set_time_base(TIME_BASE);
        let mut mux = Dictionary::new();
        mux.set("movflags", "+faststart");
        output
            .write_header_with(mux)
            .map_err(ff("writing the MP4 header"))?;
        let stream_time_base = output.stream(0).map(|s| s.time_base()).unwrap_or(TIME_BASE);
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            scaling::Flags::BILINEAR,
        )
        .map_err(ff("creating the colour converter"))?;
        Ok(Mp4Writer {
            output,
            encoder,
            scaler,
            yuv: ffmpeg::frame::Video::new(Pixel::YUV420P, width, height),
            rgb: ffmpeg::frame::Video::new(Pixel::RGB24, width, height),
            stream_time_base,
            width,
            height,
            last_pts: None,
            frame_ms: ((1000.0 / rate).round() as i64).max(1),
            frames: 0,
            path: path.to_path_buf(),
        })
    }

    /// Append a picture (`width * height * 3` bytes, rows top to bottom) shown from
    /// `pts_ms` milliseconds on. Times must increase; an equal or earlier time is moved
    /// one millisecond after the previous picture.
    pub fn add(&mut self, rgb: &[u8], pts_ms: i64) -> Result<(), VideoError> {
        let row = self.width as usize * 3;
        if rgb.len() != row * self.height as usize {
            return Err(VideoError::InvalidOptions(format!(
                "picture {} has {} bytes, a {}x{} RGB picture has {}",
                self.frames,
                rgb.len(),
                self.width,
                self.height,
                row * self.height as usize
            )));
        }
        let stride = self.rgb.stride(0);
        let data = self.rgb.data_mut(0);
        for (y, src) in rgb.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(src);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(ff("converting to yuv420p"))?;
        let pts = match self.last_pts {
            Some(last) if pts_ms <= last => last + 1,
            _ => pts_ms,
        };
        self.last_pts = Some(pts);
        self.yuv.set_pts(Some(pts));
        self.encoder
            .send_frame(&self.yuv)
            .map_err(ff("encoding a picture"))?;
        self.frames += 1;
        self.drain()
    }

    /// Pictures added so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    fn drain(&mut self) -> Result<(), VideoError> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // Without a duration the muxer's edit list cuts the last picture off.
            packet.set_duration(self.frame_ms);
            packet.rescale_ts(TIME_BASE, self.stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(ff("writing the MP4"))?;
        }
        Ok(())
    }

    /// Flush the encoder and write the index; the file is complete afterwards.
    pub fn finish(mut self) -> Result<PathBuf, VideoError> {
        if self.frames == 0 {
            return Err(VideoError::InvalidOptions(
                "there are no pictures to put in the MP4".into(),
            ));
        }
        self.encoder
            .send_eof()
            .map_err(ff("finishing the H.264 stream"))?;
        self.drain()?;
        self.output
            .write_trailer()
            .map_err(ff("finishing the MP4"))?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::{DecodeOptions, Decoder, Resize, Sampling};

    #[test]
    fn pictures_come_back_as_h264_with_their_times_and_colours() {
        let dir = std::env::temp_dir().join(format!("vidinfer-mp4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.mp4");
        let (w, h) = (64u32, 48u32);
        let mut mp4 = Mp4Writer::create(&path, w, h, 5.0).unwrap();
        for i in 0..10u8 {
            // A flat colour per picture: red, then greener.
            let rgb: Vec<u8> = (0..w * h).flat_map(|_| [200, i * 20, 30]).collect();
            mp4.add(&rgb, i64::from(i) * 200).unwrap();
        }
        assert_eq!(mp4.frames(), 10);
        assert!(mp4.add(&[0; 5], 3000).is_err());
        mp4.finish().unwrap();
        let mut dec = Decoder::open(
            path.as_path(),
            DecodeOptions {
                sampling: Sampling::EveryNth(1),
                resize: Resize::Original,
                ..Default::default()
            },
        )
        .unwrap();
        let info = dec.info().clone();
        assert_eq!(
            (info.codec.as_str(), info.width, info.height),
            ("h264", w, h)
        );
        assert_eq!(info.pixel_format, "yuv420p");
        let mut n = 0;
        while let Some(f) = dec.next_frame().unwrap() {
            assert!(
                (f.meta.pts_s - n as f64 * 0.2).abs() < 0.002,
                "{:?}",
                f.meta
            );
            let [r, g, b] = f.pixel(32, 24);
            let want = [200u8, n as u8 * 20, 30];
            for (got, want) in [r, g, b].iter().zip(want) {
                assert!(
                    got.abs_diff(want) <= 6,
                    "picture {n}: {:?} vs {want:?}",
                    [r, g, b]
                );
            }
            n += 1;
        }
        assert_eq!(n, 10);
        assert!(Mp4Writer::create(&dir.join("odd.mp4"), 63, 48, 5.0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
