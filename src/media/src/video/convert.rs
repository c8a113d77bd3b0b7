//! Decoded pictures to packed RGB24 frames at the requested size.
//!
//! Conversion is its own type because it is the one part of decoding with state of
//! its own that has nothing to do with *which* frames are kept: a swscale context
//! (costly to build, so cached until the picture's format or size changes), the
//! output picture it writes into, and the rotation the container asks for. The
//! [`Decoder`](super::Decoder) hands it only the frames the [`Ranker`](super::Ranker)
//! keeps.

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::{ff, Frame, FrameMeta, Limits, Resize, VideoError};

/// What a swscale context was built for: a new one is needed when any of it changes.
#[derive(PartialEq, Eq, Clone, Copy)]
struct ScalerKey {
    format: Pixel,
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
}

/// Scales (and rotates) decoded pictures into packed RGB24 [`Frame`]s, with the
/// factors that map frame pixels back to source (display) pixels.
pub struct Converter {
    /// Clockwise rotation applied after scaling (0, 90, 180 or 270).
    rotation: u32,
    resize: Resize,
    limits: Limits,
    scaler: Option<(ScalerKey, scaling::Context)>,
    converted: ffmpeg::frame::Video,
}

impl Converter {
    /// A converter for pictures shown rotated clockwise by `rotation` degrees, sized by
    /// `resize`, refusing pictures larger than `limits` allow.
    pub fn new(rotation: u32, resize: Resize, limits: Limits) -> Self {
        Converter {
            rotation,
            resize,
            limits,
            scaler: None,
            converted: ffmpeg::frame::Video::empty(),
        }
    }

    /// Scale (and rotate) the decoded picture into a packed RGB24 frame with the given
    /// index and time.
    pub fn convert(
        &mut self,
        decoded: &ffmpeg::frame::Video,
        index: u64,
        pts_s: f64,
    ) -> Result<Frame, VideoError> {
        let (w, h) = (decoded.width(), decoded.height());
        let rotation = self.rotation;
        let (disp_w, disp_h) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
        check_resolution(disp_w, disp_h, &self.limits)?;
        let (out_w, out_h) = target_size(disp_w, disp_h, self.resize);
        // Scale in the coded orientation, then rotate the small result.
        let (sw, sh) = if rotation % 180 == 90 {
            (out_h, out_w)
        } else {
            (out_w, out_h)
        };
        let key = ScalerKey {
            format: decoded.format(),
            width: w,
            height: h,
            out_width: sw,
            out_height: sh,
        };
        let scaler = scaler_for(&mut self.scaler, key)?;
        scaler
            .run(decoded, &mut self.converted)
            .map_err(ff("converting pixels"))?;
        let rgb = packed_rows(&self.converted, sw, sh);
        let rgb = rotate_rgb(rgb, sw, sh, rotation);
        Ok(Frame {
            meta: FrameMeta {
                index,
                pts_s,
                width: out_w,
                height: out_h,
                scale_x: f64::from(disp_w) / f64::from(out_w),
                scale_y: f64::from(disp_h) / f64::from(out_h),
            },
            rgb,
        })
    }
}

/// The swscale context for `key` from `cache`, rebuilt only when the key changed.
fn scaler_for(
    cache: &mut Option<(ScalerKey, scaling::Context)>,
    key: ScalerKey,
) -> Result<&mut scaling::Context, VideoError> {
    if cache.as_ref().map(|(k, _)| *k) != Some(key) {
        let ctx = scaling::Context::get(
            key.format,
            key.width,
            key.height,
            Pixel::RGB24,
            key.out_width,
            key.out_height,
            // swscale's SIMD paths: the high-precision flags cost more per
            // kept frame than decoding it (see the decode benchmark).
            scaling::Flags::BILINEAR,
        )
        .map_err(ff("setting up pixel conversion"))?;
        *cache = Some((key, ctx));
    }
    let (_, scaler) = cache.as_mut().expect("scaler set above");
    Ok(scaler)
}

/// The `w`×`h` RGB24 pixels of `picture` without the row padding of its stride.
fn packed_rows(picture: &ffmpeg::frame::Video, w: u32, h: u32) -> Vec<u8> {
    let stride = picture.stride(0);
    let data = picture.data(0);
    let row = w as usize * 3;
    let mut rgb = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        rgb.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    rgb
}

/// Refuse a picture larger than the limits allow.
pub(super) fn check_resolution(width: u32, height: u32, limits: &Limits) -> Result<(), VideoError> {
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
}
