//! Decoded pictures to packed RGB24 frames at the requested size.
//!
//! Conversion is its own type because it is the one part of decoding with state of
//! its own that has nothing to do with *which* frames are kept: swscale contexts
//! (costly to build, so cached until the picture's format or size changes), the
//! pictures they write into, and the rotation the container asks for. The
//! [`Decoder`](super::Decoder) hands it only the frames the [`Ranker`](super::Ranker)
//! keeps. At every frame it is a third of the CPU time of a 720p decode, so how the
//! passes are arranged ([`Scaler`]) and where the last one writes matter.

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
    scaler: Option<(ScalerKey, Scaler)>,
}

/// How a picture becomes RGB24 at the output size.
///
/// swscale scales planar YUV and converts same-size YUV 4:2:0 to RGB with SIMD code,
/// but when it does both in one pass (scaled YUV to packed RGB) its output stage is
/// plain C: at 720p to 1024x1024 that one pass cost more CPU than decoding the frame
/// (5.6 ms against 1.5 ms for the two passes; `perf` on the decode benchmark put 45 %
/// of all samples in it). So 8-bit 4:2:0 pictures are scaled in their own format
/// first and converted at the output size; anything else (10-bit, 4:2:2, RGB, ...)
/// and pictures already at the output size take the one pass.
enum Scaler {
    /// Format and size in one swscale pass.
    Direct {
        ctx: scaling::Context,
        rgb: ffmpeg::frame::Video,
    },
    /// Size first (in the picture's format), then YUV to RGB24 at the output size.
    TwoPass {
        size: scaling::Context,
        scaled: ffmpeg::frame::Video,
        colour: scaling::Context,
        rgb: ffmpeg::frame::Video,
    },
}

impl Scaler {
    fn new(key: ScalerKey) -> Result<Scaler, VideoError> {
        let context = |format, w, h, out_format, out_w, out_h| {
            scaling::Context::get(
                format,
                w,
                h,
                out_format,
                out_w,
                out_h,
                // swscale's SIMD paths: the high-precision flags cost more per kept
                // frame than decoding it (see the decode benchmark).
                scaling::Flags::BILINEAR,
            )
            .map_err(ff("setting up pixel conversion"))
        };
        let resized = (key.width, key.height) != (key.out_width, key.out_height);
        // The JPEG-range variant keeps its range through the first pass.
        if resized && matches!(key.format, Pixel::YUV420P | Pixel::YUVJ420P) {
            Ok(Scaler::TwoPass {
                size: context(
                    key.format,
                    key.width,
                    key.height,
                    key.format,
                    key.out_width,
                    key.out_height,
                )?,
                scaled: ffmpeg::frame::Video::empty(),
                colour: context(
                    key.format,
                    key.out_width,
                    key.out_height,
                    Pixel::RGB24,
                    key.out_width,
                    key.out_height,
                )?,
                rgb: ffmpeg::frame::Video::empty(),
            })
        } else {
            Ok(Scaler::Direct {
                ctx: context(
                    key.format,
                    key.width,
                    key.height,
                    Pixel::RGB24,
                    key.out_width,
                    key.out_height,
                )?,
                rgb: ffmpeg::frame::Video::empty(),
            })
        }
    }

    /// The packed RGB24 pixels of `decoded` at the output size, `w`×`h`.
    fn run(
        &mut self,
        decoded: &ffmpeg::frame::Video,
        w: u32,
        h: u32,
    ) -> Result<Vec<u8>, VideoError> {
        match self {
            Scaler::Direct { ctx, rgb } => to_rgb(ctx, decoded, rgb, w, h),
            Scaler::TwoPass {
                size,
                scaled,
                colour,
                rgb,
            } => {
                size.run(decoded, scaled).map_err(ff("scaling pixels"))?;
                to_rgb(colour, scaled, rgb, w, h)
            }
        }
    }
}

/// Bytes past the last row that a SIMD converter may touch (it works in blocks of 8
/// or 16 pixels); FFmpeg pads its own pictures the same way.
const PAD: usize = 64;

/// The last pass, to packed RGB24 `w`×`h`. When a row needs no padding for FFmpeg's
/// alignment (`w * 3` a multiple of 64, as for 1024-wide frames) swscale writes straight
/// into the frame's buffer; otherwise into `rgb` (FFmpeg's padded rows), copied out
/// row by row. The copy was 4-7 % of the CPU time at every frame.
fn to_rgb(
    ctx: &mut scaling::Context,
    input: &ffmpeg::frame::Video,
    rgb: &mut ffmpeg::frame::Video,
    w: u32,
    h: u32,
) -> Result<Vec<u8>, VideoError> {
    if (w as usize * 3) % 64 == 0 {
        to_rgb_direct(ctx, input, w, h)
    } else {
        ctx.run(input, rgb).map_err(ff("converting pixels"))?;
        Ok(packed_rows(rgb, w, h))
    }
}

/// [`to_rgb`] straight into the frame's buffer, for rows of a multiple of 64 bytes.
fn to_rgb_direct(
    ctx: &mut scaling::Context,
    input: &ffmpeg::frame::Video,
    w: u32,
    h: u32,
) -> Result<Vec<u8>, VideoError> {
    let row = w as usize * 3;
    debug_assert_eq!(row % 64, 0, "rows FFmpeg would pad");
    let same_input = {
        let def = ctx.input();
        (def.format, def.width, def.height) == (input.format(), input.width(), input.height())
    };
    let out = ctx.output();
    if !same_input || (out.format, out.width, out.height) != (Pixel::RGB24, w, h) {
        return Err(VideoError::Ffmpeg {
            doing: "converting pixels",
            source: ffmpeg::Error::InvalidData,
        });
    }
    let len = row * h as usize;
    let mut pixels: Vec<u8> = Vec::with_capacity(len + PAD);
    let dst: [*mut u8; 4] = [
        pixels.as_mut_ptr(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ];
    let dst_stride: [i32; 4] = [row as i32, 0, 0, 0];
    // SAFETY: the context was built for this input's format and size and for RGB24
    // w x h output (checked above); the input's planes are the decoder's, valid for
    // its height; the output is one plane of `h` rows of `row` bytes plus PAD bytes
    // of slack, owned by `pixels`, which outlives the call.
    let rows = unsafe {
        let frame = input.as_ptr();
        ffmpeg::ffi::sws_scale(
            ctx.as_mut_ptr(),
            (*frame).data.as_ptr() as *const *const u8,
            (*frame).linesize.as_ptr(),
            0,
            input.height() as i32,
            dst.as_ptr(),
            dst_stride.as_ptr(),
        )
    };
    if rows != h as i32 {
        return Err(VideoError::Ffmpeg {
            doing: "converting pixels",
            source: if rows < 0 {
                ffmpeg::Error::from(rows)
            } else {
                ffmpeg::Error::Bug
            },
        });
    }
    // SAFETY: swscale wrote every byte of the `h` rows of packed RGB24 (no padding in
    // a row, every pixel written), which is `len` bytes from the start.
    unsafe { pixels.set_len(len) };
    Ok(pixels)
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
        let rgb = scaler_for(&mut self.scaler, key)?.run(decoded, sw, sh)?;
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

/// The scaler for `key` from `cache`, rebuilt (with its pictures, whose size may
/// change with it) only when the key changed.
fn scaler_for(
    cache: &mut Option<(ScalerKey, Scaler)>,
    key: ScalerKey,
) -> Result<&mut Scaler, VideoError> {
    if cache.as_ref().map(|(k, _)| *k) != Some(key) {
        *cache = Some((key, Scaler::new(key)?));
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
        Resize::Model { min_size, max_size } => model_size(width, height, min_size, max_size),
    }
}

/// The size a scripted torchvision detector (`GeneralizedRCNNTransform`, evaluation)
/// resizes a `width`×`height` picture to, computed as its scripted code computes it:
/// the scale is `min(min_size / shorter side, max_size / longer side)` in float32,
/// each quotient compiled as `reciprocal(side) * size` (the sides are float32 tensors
/// there), and each side becomes `floor(side * scale)` in double precision
/// (`interpolate` with `recompute_scale_factor=True`). Converting a frame straight to
/// this size gives the model the picture its own resize would have made of the
/// display-size frame, scaled once.
///
/// The transform still runs on the picture it is given. At this size it computes a
/// scale of 1 for most sizes (an identity resize; 320×240 under the fixture model's
/// 240/320, 1920×1080 under COCO's 800/1333), but float32 rounding makes it not
/// idempotent: for about a third of the sizes of a grid up to 2000×1200 it rescales
/// one side by one pixel (854×480 under 800/1333 gives 1332×749, which it takes to
/// 1333×749). Boxes still map back exactly, since the model maps its boxes to the
/// picture it was given.
/// `tests/model.rs` compares this function with torchvision over a grid of sizes.
pub fn model_size(width: u32, height: u32, min_size: u32, max_size: u32) -> (u32, u32) {
    let (short, long) = (width.min(height) as f32, width.max(height) as f32);
    let scale = (short.recip() * min_size as f32).min(long.recip() * max_size as f32);
    let side = |v: u32| ((f64::from(v) * f64::from(scale)).floor() as u32).max(1);
    (side(width), side(height))
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

    /// Sizes torchvision 0.28's scripted `GeneralizedRCNNTransform` gave (`image_sizes`,
    /// as width x height), chosen where rounding decides: odd sides, a scale just under
    /// or over a whole pixel, portrait, enlarging and shrinking.
    #[test]
    fn model_size_is_torchvision_scripted_transform_size() {
        for ((w, h, min, max), expect) in [
            ((1920, 1080, 800, 1333), (1333, 749)),
            ((1080, 1920, 800, 1333), (749, 1333)),
            ((4096, 2160, 800, 1333), (1333, 702)),
            // 800/240 in float32 times 240 is 800.00004: floor keeps 800 (a float32
            // quotient 800/240 would give 799.99998 and 799).
            ((320, 240, 800, 1333), (1066, 800)),
            ((720, 480, 800, 1333), (1200, 800)),
            ((854, 480, 800, 1333), (1332, 749)),
            ((1000, 563, 800, 1333), (1333, 750)),
            ((1023, 577, 800, 1333), (1332, 751)),
            ((7, 5, 800, 1333), (1120, 800)),
            // The fixture model's 240/320.
            ((320, 240, 240, 320), (320, 240)),
            ((1024, 1024, 240, 320), (240, 240)),
            ((1000, 563, 240, 320), (320, 180)),
            ((333, 187, 240, 320), (320, 179)),
            ((641, 359, 240, 320), (319, 179)),
            ((1920, 1080, 512, 853), (853, 479)),
            ((1080, 1920, 512, 853), (479, 853)),
            ((1920, 1080, 600, 1000), (1000, 562)),
        ] {
            assert_eq!(model_size(w, h, min, max), expect, "{w}x{h} at {min}/{max}");
            let resize = Resize::Model {
                min_size: min,
                max_size: max,
            };
            assert_eq!(target_size(w, h, resize), expect);
        }
        // Never a side of 0, however thin the picture.
        assert_eq!(model_size(16, 4000, 240, 320), (1, 320));
    }

    /// A YUV 4:2:0 picture with a different value at every sample.
    fn pattern(w: u32, h: u32) -> ffmpeg::frame::Video {
        crate::video::init();
        let mut picture = ffmpeg::frame::Video::new(Pixel::YUV420P, w, h);
        for plane in 0..3 {
            let (pw, ph) = if plane == 0 {
                (w as usize, h as usize)
            } else {
                (w.div_ceil(2) as usize, h.div_ceil(2) as usize)
            };
            let stride = picture.stride(plane);
            let data = picture.data_mut(plane);
            for y in 0..ph {
                for x in 0..pw {
                    data[y * stride + x] = ((x * 7 + y * 13 + plane * 50) % 256) as u8;
                }
            }
        }
        picture
    }

    /// Writing into the frame's own buffer gives the bytes of FFmpeg's padded picture,
    /// for one-pass scaling and for the same-size conversion of the two-pass path, odd
    /// heights included.
    #[test]
    fn rgb_written_in_place_equals_the_padded_picture_copied_out() {
        // `input` converted to w x h RGB, written in place and copied out, agree.
        let check = |input: &ffmpeg::frame::Video, w: u32, h: u32| {
            let mut ctx = scaling::Context::get(
                Pixel::YUV420P,
                input.width(),
                input.height(),
                Pixel::RGB24,
                w,
                h,
                scaling::Flags::BILINEAR,
            )
            .unwrap();
            let direct = to_rgb_direct(&mut ctx, input, w, h).unwrap();
            let mut padded = ffmpeg::frame::Video::empty();
            ctx.run(input, &mut padded).unwrap();
            assert_eq!(direct.len(), (w * h * 3) as usize);
            assert!(direct == packed_rows(&padded, w, h), "{w}x{h}");
        };
        // One pass, scaling 320x181 down, up, and not at all.
        let input = pattern(320, 181);
        for (w, h) in [(64, 48), (1024, 577), (320, 181)] {
            check(&input, w, h);
        }
        // The second pass of a two-pass conversion: same size, YUV to RGB (SIMD).
        for (w, h) in [(64, 64), (1024, 576), (128, 37)] {
            check(&pattern(w, h), w, h);
        }
    }

    /// Scaling in YUV before converting gives, on smooth content, the picture of the
    /// one-pass conversion it replaced to within a level on average (sharp edges
    /// differ more where chroma is resampled at another point of the chain).
    #[test]
    fn two_passes_stay_within_a_level_of_one_pass() {
        crate::video::init();
        let (w, h) = (1280u32, 720u32);
        let mut input = ffmpeg::frame::Video::new(Pixel::YUV420P, w, h);
        for plane in 0..3 {
            let (pw, ph) = if plane == 0 { (w, h) } else { (w / 2, h / 2) };
            let stride = input.stride(plane);
            let data = input.data_mut(plane);
            for y in 0..ph as usize {
                for x in 0..pw as usize {
                    let v = match plane {
                        0 => 16 + x * 219 / pw as usize,
                        1 => 64 + y * 128 / ph as usize,
                        _ => 200 - (x + y) * 128 / (pw + ph) as usize,
                    };
                    data[y * stride + x] = v as u8;
                }
            }
        }
        for (ow, oh) in [(1024, 1024), (1024, 576), (333, 187)] {
            let key = ScalerKey {
                format: Pixel::YUV420P,
                width: w,
                height: h,
                out_width: ow,
                out_height: oh,
            };
            let mut two = Scaler::new(key).unwrap();
            assert!(matches!(two, Scaler::TwoPass { .. }));
            let two = two.run(&input, ow, oh).unwrap();
            let mut one = scaling::Context::get(
                Pixel::YUV420P,
                w,
                h,
                Pixel::RGB24,
                ow,
                oh,
                scaling::Flags::BILINEAR,
            )
            .unwrap();
            let mut rgb = ffmpeg::frame::Video::empty();
            one.run(&input, &mut rgb).unwrap();
            let one = packed_rows(&rgb, ow, oh);
            let diff: u64 = one
                .iter()
                .zip(&two)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let mean = diff as f64 / one.len() as f64;
            assert!(mean < 1.0, "{ow}x{oh}: mean difference {mean}");
        }
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
