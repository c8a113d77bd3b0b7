//! Annotated frames to an animated GIF that loops forever.
//!
//! Each frame gets its own 256-colour palette. The exact colours of what was drawn
//! (class colours, label ink) are reserved entries, so boxes and labels never band or
//! shift colour; the rest of the palette is the frame's own colours when it has few
//! enough, else a NeuQuant palette learned from the frame's other pixels.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{ensure, Context, Result};
use image::RgbImage;

/// Largest side of a GIF (its header stores sizes as 16-bit numbers).
pub const MAX_SIDE: u32 = u16::MAX as u32;

/// Reserved palette entries beyond this many are not reserved (NeuQuant needs room).
const MAX_RESERVED: usize = 64;

/// NeuQuant learns from one pixel in `samplefac` (1: all, slowest; 10: the
/// algorithm's recommended balance). Small frames learn from every pixel; larger ones
/// from about this many, with 10 as the sparsest.
const NEUQUANT_SAMPLES: usize = 100_000;

fn neuquant_samplefac(pixels: usize) -> i32 {
    (pixels / NEUQUANT_SAMPLES).clamp(1, 10) as i32
}

/// A frame's delay in the GIF's unit of 10 ms, rounded to the nearest (at least 1).
pub fn delay_centiseconds(frame_ms: u32) -> u16 {
    (frame_ms.saturating_add(5) / 10).clamp(1, u32::from(u16::MAX)) as u16
}

/// A frame as palette indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantised {
    /// RGB triples, at most 256.
    pub palette: Vec<u8>,
    /// One palette index per pixel, row-major.
    pub indices: Vec<u8>,
}

fn key(p: [u8; 3]) -> u32 {
    u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2])
}

/// Reduce `img` to at most 256 colours, keeping each colour of `reserved` exact (the
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
    let room = 256 - fixed.len();
    let mut palette: Vec<u8> = fixed.iter().flatten().copied().collect();

    // Few colours: all of them, exactly.
    let mut exact = true;
    for p in img.pixels() {
        if let std::collections::hash_map::Entry::Vacant(e) = index.entry(key(p.0)) {
            if palette.len() == 3 * 256 {
                exact = false;
                break;
            }
            e.insert((palette.len() / 3) as u8);
            palette.extend_from_slice(&p.0);
        }
    }
    if exact {
        let indices = img.pixels().map(|p| index[&key(p.0)]).collect();
        return Quantised { palette, indices };
    }

    // Many colours: NeuQuant over the pixels that are not reserved colours.
    let fixed_index: HashMap<u32, u8> = fixed
        .iter()
        .enumerate()
        .map(|(i, c)| (key(*c), i as u8))
        .collect();
    let rgba: Vec<u8> = img
        .pixels()
        .filter(|p| !fixed_index.contains_key(&key(p.0)))
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect();
    let nq = color_quant::NeuQuant::new(neuquant_samplefac(rgba.len() / 4), room, &rgba);
    let mut palette: Vec<u8> = fixed.iter().flatten().copied().collect();
    palette.extend(nq.color_map_rgb());
    let base = fixed.len();
    let mut last: Option<(u32, u8)> = None;
    let indices = img
        .pixels()
        .map(|p| {
            let k = key(p.0);
            if let Some((lk, li)) = last {
                if lk == k {
                    return li;
                }
            }
            let i = match fixed_index.get(&k) {
                Some(&i) => i,
                None => (base + nq.index_of(&[p.0[0], p.0[1], p.0[2], 255])) as u8,
            };
            last = Some((k, i));
            i
        })
        .collect();
    Quantised { palette, indices }
}

/// Writes frames of one size into a GIF that loops forever.
pub struct GifWriter<W: Write> {
    encoder: gif::Encoder<W>,
    width: u32,
    height: u32,
    delay: u16,
    frames: usize,
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
        let mut frame = gif::Frame::from_palette_pixels(
            self.width as u16,
            self.height as u16,
            q.indices,
            q.palette,
            None,
        );
        frame.delay = self.delay;
        self.encoder
            .write_frame(&frame)
            .with_context(|| format!("writing GIF frame {}", self.frames))?;
        self.frames += 1;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// Decode a GIF with the gif crate: (frames as RGB, delays, repeat).
    fn decode(bytes: &[u8]) -> (Vec<RgbImage>, Vec<u16>, gif::Repeat) {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(bytes).unwrap();
        let (w, h) = (u32::from(d.width()), u32::from(d.height()));
        let (mut frames, mut delays) = (Vec::new(), Vec::new());
        while let Some(f) = d.read_next_frame().unwrap() {
            assert_eq!((u32::from(f.width), u32::from(f.height)), (w, h));
            let rgb = f
                .buffer
                .chunks(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            frames.push(RgbImage::from_raw(w, h, rgb).unwrap());
            delays.push(f.delay);
        }
        (frames, delays, d.repeat())
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
    fn frames_of_the_wrong_size_and_empty_gifs_are_refused() {
        let mut out = Vec::new();
        let mut w = GifWriter::new(&mut out, 10, 10, 100).unwrap();
        assert!(w.add(&RgbImage::new(11, 10), &[]).is_err());
        assert!(w.finish().is_err());
        assert!(GifWriter::new(Vec::new(), 70000, 10, 100).is_err());
        assert!(GifWriter::new(Vec::new(), 0, 10, 100).is_err());
    }
}
