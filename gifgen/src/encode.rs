//! Annotated frames to an animated GIF that loops forever.
//!
//! Each frame gets its own palette of up to 255 colours (the 256th index means
//! "transparent"). The exact colours of what was drawn (box colours, label ink) are
//! reserved entries, so boxes and label text never band or shift colour; the rest of
//! the palette is the frame's own colours when it has few enough, else a NeuQuant
//! palette learned from the frame's other pixels.
//!
//! After the first frame only what changed is stored: a pixel whose source colour is
//! still within [`KEEP_TOLERANCE`] of what it was when the pixel was last drawn (for
//! drawn colours: whose shown colour is exactly the new one) is left transparent, so
//! the viewer keeps the earlier pixel, and the frame is cropped to the rectangle of
//! pixels that did change (a rectangle that changed almost everywhere, as camera noise
//! does, is stored whole: scattered transparent pixels would only lengthen the LZW
//! code). A kept pixel is off by at most the tolerance plus the
//! quantisation of the frame that drew it: the error never accumulates.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{ensure, Context, Result};
use image::RgbImage;

/// Largest side of a GIF (its header stores sizes as 16-bit numbers).
pub const MAX_SIDE: u32 = u16::MAX as u32;

/// A pixel is redrawn when the colour on screen differs from the new frame's by more
/// than this in some channel (drawn colours: by anything at all).
pub const KEEP_TOLERANCE: u8 = 4;

/// The palette index that means "keep the previous frame's pixel".
const TRANSPARENT: u8 = 255;

/// Reserved palette entries beyond this many are not reserved (NeuQuant needs room).
const MAX_RESERVED: usize = 64;

/// NeuQuant learns from at most about this many pixels of a frame (an even spread of
/// them on larger frames): its learning, not the mapping, is what costs. 32k samples
/// keep a photo-like frame within a mean error of 4 of the source (tested below), at a
/// third of the time of the 100k the algorithm's default sampling would take on a
/// 1024x1024 frame.
const NEUQUANT_SAMPLES: usize = 32_000;

/// The step between pixels NeuQuant learns from: about [`NEUQUANT_SAMPLES`] of them,
/// and a step that shares no factor with the width, so the samples wander across the
/// columns instead of repeating the same few in every row.
fn sample_stride(width: u32, height: u32) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let pixels = width as usize * height as usize;
    let mut stride = (pixels / NEUQUANT_SAMPLES).max(1);
    while stride > 1 && gcd(stride, width as usize) != 1 {
        stride += 1;
    }
    stride
}

/// A frame's delay in the GIF's unit of 10 ms, rounded to the nearest (at least 1).
pub fn delay_centiseconds(frame_ms: u32) -> u16 {
    (frame_ms.saturating_add(5) / 10).clamp(1, u32::from(u16::MAX)) as u16
}

/// A frame as palette indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantised {
    /// RGB triples, at most 255 (index 255 stays free for transparency).
    pub palette: Vec<u8>,
    /// One palette index per pixel, row-major.
    pub indices: Vec<u8>,
    /// The first `reserved` entries are the reserved colours.
    pub reserved: usize,
}

fn key(p: [u8; 3]) -> u32 {
    u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2])
}

/// Reduce `img` to at most 255 colours, keeping each colour of `reserved` exact (the
/// first 64 distinct ones). Frames with few colours keep them all exactly.
pub fn quantise(img: &RgbImage, reserved: &[[u8; 3]]) -> Quantised {
    let mut fixed: Vec<[u8; 3]> = Vec::new();
    for c in reserved {
        if !fixed.contains(c) && fixed.len() < MAX_RESERVED {
            fixed.push(*c);
        }
    }
    let mut index: HashMap<u32, u8> = fixed
        .iter()
        .enumerate()
        .map(|(i, c)| (key(*c), i as u8))
        .collect();
    let room = 255 - fixed.len();
    let mut palette: Vec<u8> = fixed.iter().flatten().copied().collect();

    // Few colours: all of them, exactly.
    let mut exact = true;
    for p in img.pixels() {
        if let std::collections::hash_map::Entry::Vacant(e) = index.entry(key(p.0)) {
            if palette.len() == 3 * 255 {
                exact = false;
                break;
            }
            e.insert((palette.len() / 3) as u8);
            palette.extend_from_slice(&p.0);
        }
    }
    if exact {
        let indices = img.pixels().map(|p| index[&key(p.0)]).collect();
        return Quantised {
            palette,
            indices,
            reserved: fixed.len(),
        };
    }

    // Many colours: NeuQuant over the pixels that are not reserved colours.
    let fixed_index: HashMap<u32, u8> = fixed
        .iter()
        .enumerate()
        .map(|(i, c)| (key(*c), i as u8))
        .collect();
    let stride = sample_stride(img.width(), img.height());
    let rgba: Vec<u8> = img
        .pixels()
        .step_by(stride)
        .filter(|p| !fixed_index.contains_key(&key(p.0)))
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect();
    let nq = color_quant::NeuQuant::new(1, room, &rgba);
    let mut palette: Vec<u8> = fixed.iter().flatten().copied().collect();
    palette.extend(nq.color_map_rgb());
    let base = fixed.len();
    // NeuQuant's search runs once per cell of 4x4x4 colour values (the first pixel in
    // a cell decides its entry, so a pixel is off its own best entry by at most 3 per
    // channel): a frame of camera noise has far more distinct colours than cells.
    // Drawn colours are looked up exactly, and only in the cells that hold one.
    let cell = |p: [u8; 3]| {
        (usize::from(p[0]) >> 2) << 12 | (usize::from(p[1]) >> 2) << 6 | usize::from(p[2]) >> 2
    };
    let mut drawn_cell = vec![false; 1 << 18];
    for c in &fixed {
        drawn_cell[cell(*c)] = true;
    }
    let mut lut = vec![u16::MAX; 1 << 18];
    let indices = img
        .pixels()
        .map(|p| {
            let c = cell(p.0);
            if drawn_cell[c] {
                if let Some(&i) = fixed_index.get(&key(p.0)) {
                    return i;
                }
            }
            match lut[c] {
                u16::MAX => {
                    let i = (base + nq.index_of(&[p.0[0], p.0[1], p.0[2], 255])) as u8;
                    lut[c] = u16::from(i);
                    i
                }
                i => i as u8,
            }
        })
        .collect();
    Quantised {
        palette,
        indices,
        reserved: base,
    }
}

/// Writes frames of one size into a GIF that loops forever.
pub struct GifWriter<W: Write> {
    encoder: gif::Encoder<W>,
    width: u32,
    height: u32,
    delay: u16,
    frames: usize,
    /// What the viewer shows after the frames so far (RGB, row-major).
    shown: Vec<u8>,
    /// Each pixel's source colour when it was last drawn.
    anchor: Vec<u8>,
}

impl<W: Write> GifWriter<W> {
    /// Start a `width`x`height` GIF showing each frame for `frame_ms` (rounded to 10 ms).
    pub fn new(out: W, width: u32, height: u32, frame_ms: u32) -> Result<Self> {
        ensure!(
            (1..=MAX_SIDE).contains(&width) && (1..=MAX_SIDE).contains(&height),
            "a GIF is at most {MAX_SIDE}x{MAX_SIDE} pixels, not {width}x{height}: choose a smaller --width"
        );
        let mut encoder = gif::Encoder::new(out, width as u16, height as u16, &[])
            .context("writing the GIF header")?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .context("writing the GIF header")?;
        Ok(GifWriter {
            encoder,
            width,
            height,
            delay: delay_centiseconds(frame_ms),
            frames: 0,
            shown: Vec::new(),
            anchor: Vec::new(),
        })
    }

    /// Append a frame; `reserved` colours are kept exact.
    pub fn add(&mut self, img: &RgbImage, reserved: &[[u8; 3]]) -> Result<()> {
        ensure!(
            img.dimensions() == (self.width, self.height),
            "frame {} is {}x{}, the GIF is {}x{}",
            self.frames,
            img.width(),
            img.height(),
            self.width,
            self.height
        );
        let q = quantise(img, reserved);
        let mut frame = if self.shown.is_empty() {
            self.anchor = img.as_raw().clone();
            self.shown = q
                .indices
                .iter()
                .flat_map(|&i| {
                    let i = usize::from(i) * 3;
                    [q.palette[i], q.palette[i + 1], q.palette[i + 2]]
                })
                .collect();
            gif::Frame::from_palette_pixels(
                self.width as u16,
                self.height as u16,
                q.indices,
                q.palette,
                None,
            )
        } else {
            self.changes(img, q)
        };
        frame.delay = self.delay;
        self.encoder
            .write_frame(&frame)
            .with_context(|| format!("writing GIF frame {}", self.frames))?;
        self.frames += 1;
        Ok(())
    }

    /// The frame that turns what is shown into `img` (quantised as `q`): cropped to
    /// the changed pixels, and within that rectangle the unchanged ones transparent when
    /// they are at least half of it. Scattered transparent pixels among changed ones
    /// (a noisy camera) break up the runs LZW compresses and make the file larger, so a
    /// mostly changed rectangle is stored whole.
    fn changes(&mut self, img: &RgbImage, mut q: Quantised) -> gif::Frame<'static> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let src = img.as_raw();
        let keep: Vec<bool> = q
            .indices
            .iter()
            .enumerate()
            .map(|(i, &idx)| {
                let p = usize::from(idx) * 3;
                let kept = self.shown[i * 3..i * 3 + 3] == q.palette[p..p + 3]
                    || (usize::from(idx) >= q.reserved
                        && self.anchor[i * 3..i * 3 + 3]
                            .iter()
                            .zip(&src[i * 3..i * 3 + 3])
                            .all(|(a, b)| a.abs_diff(*b) <= KEEP_TOLERANCE));
                if !kept {
                    let (x, y) = (i % w, i / w);
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                }
                kept
            })
            .collect();
        if x0 > x1 {
            // Nothing changed: one transparent pixel.
            (x0, y0, x1, y1) = (0, 0, 0, 0);
        }
        let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
        let kept_inside = (y0..=y1)
            .map(|y| keep[y * w + x0..=y * w + x1].iter().filter(|&&k| k).count())
            .sum::<usize>();
        let transparent = 2 * kept_inside >= cw * ch;
        let mut buffer = Vec::with_capacity(cw * ch);
        for y in y0..=y1 {
            for i in y * w + x0..=y * w + x1 {
                let idx = q.indices[i];
                if keep[i] && transparent {
                    buffer.push(TRANSPARENT);
                } else {
                    let p = usize::from(idx) * 3;
                    self.shown[i * 3..i * 3 + 3].copy_from_slice(&q.palette[p..p + 3]);
                    self.anchor[i * 3..i * 3 + 3].copy_from_slice(&src[i * 3..i * 3 + 3]);
                    buffer.push(idx);
                }
            }
        }
        q.palette.resize(3 * 256, 0);
        gif::Frame {
            left: x0 as u16,
            top: y0 as u16,
            width: cw as u16,
            height: ch as u16,
            buffer: buffer.into(),
            palette: Some(q.palette),
            transparent: Some(TRANSPARENT),
            dispose: gif::DisposalMethod::Keep,
            ..gif::Frame::default()
        }
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Write the trailer and hand back the output.
    pub fn finish(self) -> Result<W> {
        ensure!(self.frames > 0, "there are no frames to put in the GIF");
        self.encoder.into_inner().context("finishing the GIF")
    }
}

/// Decode a GIF as a viewer shows it: each frame composited over the previous ones
/// (transparent pixels keep what was there). (width, height, frames, delays, repeat).
#[cfg(test)]
pub(crate) fn decode_composited(bytes: &[u8]) -> (u32, u32, Vec<RgbImage>, Vec<u16>, gif::Repeat) {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut d = opts.read_info(bytes).unwrap();
    let (w, h) = (u32::from(d.width()), u32::from(d.height()));
    let mut canvas = RgbImage::new(w, h);
    let (mut frames, mut delays) = (Vec::new(), Vec::new());
    while let Some(f) = d.read_next_frame().unwrap() {
        let (fw, fh) = (u32::from(f.width), u32::from(f.height));
        for y in 0..fh {
            for x in 0..fw {
                let i = ((y * fw + x) * 4) as usize;
                let p = &f.buffer[i..i + 4];
                if p[3] != 0 {
                    let (cx, cy) = (x + u32::from(f.left), y + u32::from(f.top));
                    canvas.put_pixel(cx, cy, image::Rgb([p[0], p[1], p[2]]));
                }
            }
        }
        frames.push(canvas.clone());
        delays.push(f.delay);
    }
    (w, h, frames, delays, d.repeat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// Decode a GIF with the gif crate: (frames as RGB, delays, repeat).
    fn decode(bytes: &[u8]) -> (Vec<RgbImage>, Vec<u16>, gif::Repeat) {
        let (_, _, frames, delays, repeat) = decode_composited(bytes);
        (frames, delays, repeat)
    }

    /// A photo-like frame: smooth gradients in all three channels (far over 256 colours).
    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) * 127 / (w + h)) as u8 + 64,
            ])
        })
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let sum: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn large_frames_learn_from_a_spread_of_pixels_and_stay_close() {
        assert_eq!(sample_stride(160, 120), 1);
        let s = sample_stride(1024, 1024);
        assert!((32..=34).contains(&s) && s % 2 == 1, "{s}");
        let img = gradient(640, 480);
        let q = quantise(&img, &[]);
        let back = RgbImage::from_fn(640, 480, |x, y| {
            let i = usize::from(q.indices[(y * 640 + x) as usize]) * 3;
            Rgb([q.palette[i], q.palette[i + 1], q.palette[i + 2]])
        });
        let d = mean_abs_diff(&back, &img);
        assert!(d < 4.5, "mean abs diff {d}");
    }

    #[test]
    fn delays_round_to_the_gif_unit() {
        assert_eq!(delay_centiseconds(200), 20);
        assert_eq!(delay_centiseconds(33), 3);
        assert_eq!(delay_centiseconds(35), 4);
        assert_eq!(delay_centiseconds(1), 1);
        assert_eq!(delay_centiseconds(u32::MAX), u16::MAX);
    }

    #[test]
    fn few_colours_are_kept_exactly() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            Rgb([(x % 7 * 30) as u8, (y % 5 * 40) as u8, 9])
        });
        let q = quantise(&img, &[[1, 2, 3]]);
        assert_eq!(&q.palette[..3], &[1, 2, 3], "reserved first even if unused");
        assert_eq!(q.palette.len(), 3 * (1 + 35));
        for (p, &i) in img.pixels().zip(&q.indices) {
            let i = usize::from(i) * 3;
            assert_eq!(&q.palette[i..i + 3], &p.0);
        }
    }

    #[test]
    fn reserved_colours_stay_exact_in_a_photo_like_frame() {
        let mut img = gradient(160, 120);
        let (red, ink) = ([230, 40, 60], [255, 255, 255]);
        for x in 20..140 {
            img.put_pixel(x, 10, Rgb(red));
            img.put_pixel(x, 11, Rgb(ink));
        }
        let mut out = Vec::new();
        let mut w = GifWriter::new(&mut out, 160, 120, 200).unwrap();
        w.add(&img, &[red, ink]).unwrap();
        w.add(&img, &[red, ink]).unwrap();
        assert_eq!(w.frames(), 2);
        w.finish().unwrap();
        let (frames, delays, repeat) = decode(&out);
        assert_eq!(frames.len(), 2);
        assert_eq!(delays, vec![20, 20]);
        assert_eq!(repeat, gif::Repeat::Infinite);
        for f in &frames {
            for x in 20..140 {
                assert_eq!(f.get_pixel(x, 10).0, red);
                assert_eq!(f.get_pixel(x, 11).0, ink);
            }
            // The rest is quantised closely. A gradient over two full channels is the
            // worst case for 254 colours; the ideal (uniform cells) is about 3.
            let d = mean_abs_diff(f, &img);
            assert!(d < 4.5, "mean abs diff {d}");
        }
    }

    #[test]
    fn later_frames_store_only_what_changed_and_show_the_right_picture() {
        let base = gradient(200, 150);
        let mut moved = base.clone();
        // A line is drawn (redrawn) and a patch of the scene changes slightly (within
        // the tolerance: kept).
        let red = [230, 25, 75];
        for x in 40..80 {
            moved.put_pixel(x, 60, Rgb(red));
        }
        for y in 100..110 {
            for x in 100..120 {
                let p = moved.get_pixel_mut(x, y);
                p.0[0] = p.0[0].saturating_add(2);
            }
        }
        let mut out = Vec::new();
        let mut w = GifWriter::new(&mut out, 200, 150, 100).unwrap();
        w.add(&base, &[red]).unwrap();
        w.add(&moved, &[red]).unwrap();
        w.add(&moved, &[red]).unwrap();
        w.finish().unwrap();
        let (_, _, frames, _, _) = decode_composited(&out);
        assert_eq!(frames.len(), 3);
        for x in 40..80 {
            assert_eq!(frames[1].get_pixel(x, 60).0, red);
        }
        for f in &frames[1..] {
            let d = mean_abs_diff(f, &moved);
            assert!(d < 4.5, "mean abs diff {d}");
        }
        // The stored frames: the second is cropped around the change, the third is a
        // single transparent pixel.
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::Indexed);
        let mut d = opts.read_info(out.as_slice()).unwrap();
        let sizes: Vec<(u16, u16)> =
            std::iter::from_fn(|| d.read_next_frame().unwrap().map(|f| (f.width, f.height)))
                .collect();
        assert_eq!(sizes[0], (200, 150));
        assert!(sizes[1].0 < 200 && sizes[1].1 < 150, "{:?}", sizes[1]);
        assert_eq!(sizes[2], (1, 1));
    }

    #[test]
    fn frames_of_the_wrong_size_and_empty_gifs_are_refused() {
        let mut out = Vec::new();
        let mut w = GifWriter::new(&mut out, 10, 10, 100).unwrap();
        assert!(w.add(&RgbImage::new(11, 10), &[]).is_err());
        assert!(w.finish().is_err());
        assert!(GifWriter::new(Vec::new(), 70000, 10, 100).is_err());
        assert!(GifWriter::new(Vec::new(), 0, 10, 100).is_err());
    }
}
