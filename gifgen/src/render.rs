//! Decode the video's sampled frames, pair them with the plan, draw each one.

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use image::imageops::{self, FilterType};
use image::RgbImage;
use vidinfer_media::video::{DecodeOptions, Decoder, Resize, Sampling, Source};

use crate::draw::{self, MaskRef, Overlay, Style};
use crate::encode::MAX_SIDE;
use crate::plan::{Plan, PlannedFrame};

/// How frames are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// Draw detections scoring strictly above this.
    pub score_threshold: f32,
    /// Output width in pixels; the height keeps the video's aspect ratio. `None`: the
    /// video's own size.
    pub width: Option<u32>,
    /// Blend instance masks over the picture (when the predictions have them).
    pub masks: bool,
    /// Colour boxes by class or by track.
    pub color_by: ColorBy,
    /// Draw each track's recent path (its box centres over the last sampled frames).
    pub trails: bool,
    /// Draw every frame of the video, each with the latest sampled frame's detections
    /// (for video output), instead of the sampled frames only.
    pub all_frames: bool,
    /// Round the output size down to even numbers (H.264's yuv420p needs them).
    pub even_size: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            score_threshold: 0.9,
            width: None,
            masks: false,
            color_by: ColorBy::Class,
            trails: false,
            all_frames: false,
            even_size: false,
        }
    }
}

/// What a box's colour tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorBy {
    /// One colour per class.
    Class,
    /// One colour per track (v2 documents made with tracking; untracked boxes keep
    /// their class colour).
    Track,
}

/// Sampled frames a trail reaches back.
pub const TRAIL_FRAMES: u64 = 24;

/// A box centre in output pixels.
type Centre = (f32, f32);

/// Recent box centres of each track, in output pixels, for `--trails`.
#[derive(Debug, Default)]
pub struct Trails {
    /// Track id → (frame position, centre), oldest first.
    paths: HashMap<u64, Vec<(u64, Centre)>>,
}

impl Trails {
    /// Add this frame's centres and forget what is older than [`TRAIL_FRAMES`].
    fn advance(&mut self, position: u64, centres: &[(u64, Centre)]) {
        for &(id, c) in centres {
            let path = self.paths.entry(id).or_default();
            // A frame drawn again (every frame of the video shows the latest sample)
            // adds nothing.
            if path.last().map(|p| p.0) != Some(position) {
                path.push((position, c));
            }
        }
        let oldest = position.saturating_sub(TRAIL_FRAMES);
        self.paths.retain(|_, p| {
            p.retain(|(pos, _)| *pos >= oldest);
            !p.is_empty()
        });
    }

    fn draw(&self, img: &mut RgbImage, style: draw::Style) -> Vec<[u8; 3]> {
        let mut ids: Vec<&u64> = self.paths.keys().collect();
        ids.sort_unstable();
        let mut colours = Vec::new();
        for id in ids {
            let points: Vec<Centre> = self.paths[id].iter().map(|(_, c)| *c).collect();
            let colour = draw::track_colour(*id);
            draw::draw_trail(img, &points, colour, (style.thickness / 2).max(1));
            colours.push(colour);
        }
        colours
    }
}

/// The output size for a `video_w`x`video_h` video: `width` wide keeping the aspect
/// ratio, or the video's own size.
pub fn output_size(video_w: u32, video_h: u32, width: Option<u32>) -> Result<(u32, u32)> {
    let size = match width {
        None => (video_w, video_h),
        Some(w) => {
            ensure!(w >= 1, "--width must be at least 1");
            let h = (f64::from(w) * f64::from(video_h) / f64::from(video_w)).round() as u32;
            (w, h.max(1))
        }
    };
    ensure!(
        size.0 <= MAX_SIDE && size.1 <= MAX_SIDE,
        "the GIF would be {}x{}, over the format's limit of {MAX_SIDE} pixels a side: \
         choose a smaller --width",
        size.0,
        size.1
    );
    Ok(size)
}

/// Draws plan frames onto pictures of one video.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// The video's display size.
    pub source: (u32, u32),
    /// The output picture's size.
    pub output: (u32, u32),
    pub style: Style,
    /// Output pixels per box unit.
    scale: (f64, f64),
}

impl Canvas {
    /// A canvas for `plan` over a `width`x`height` video, drawn at `opts.width` wide
    /// (rounded down to even sizes with `opts.even_size`).
    pub fn new(plan: &Plan, width: u32, height: u32, opts: &RenderOptions) -> Result<Canvas> {
        let (mut ow, mut oh) = output_size(width, height, opts.width)?;
        if opts.even_size {
            (ow, oh) = ((ow & !1).max(2), (oh & !1).max(2));
        }
        let (bx, by) = plan.box_scale(width, height);
        Ok(Canvas {
            source: (width, height),
            output: (ow, oh),
            style: Style::for_size(ow, oh),
            scale: (
                bx * f64::from(ow) / f64::from(width),
                by * f64::from(oh) / f64::from(height),
            ),
        })
    }

    /// Draw `frame`'s detections onto `picture` (the video frame at its display size).
    /// Returns the annotated picture at the output size and the exact colours drawn.
    pub fn draw(
        &self,
        picture: RgbImage,
        frame: &PlannedFrame,
        opts: &RenderOptions,
    ) -> (RgbImage, Vec<[u8; 3]>) {
        self.draw_frame(picture, frame, 0, opts, &mut Trails::default())
    }

    /// [`Canvas::draw`] for the frame at `position` among the predictions' frames,
    /// keeping `trails` up to date (and drawing them with `opts.trails`).
    pub fn draw_frame(
        &self,
        picture: RgbImage,
        frame: &PlannedFrame,
        position: u64,
        opts: &RenderOptions,
        trails: &mut Trails,
    ) -> (RgbImage, Vec<[u8; 3]>) {
        let (ow, oh) = self.output;
        let mut img = if picture.dimensions() == (ow, oh) {
            picture
        } else {
            imageops::resize(&picture, ow, oh, FilterType::Triangle)
        };
        let kept: Vec<_> = frame
            .detections
            .iter()
            .filter(|d| d.score > opts.score_threshold)
            .collect();
        let masks: Vec<Option<(Vec<u8>, u32, u32)>> = kept
            .iter()
            .map(|d| {
                d.mask
                    .as_ref()
                    .filter(|_| opts.masks)
                    .map(|m| (m.decode(), m.size[1], m.size[0]))
            })
            .collect();
        let (sx, sy) = self.scale;
        let overlays: Vec<Overlay> = kept
            .iter()
            .zip(&masks)
            .map(|(d, m)| Overlay {
                colour: match (opts.color_by, d.track_id) {
                    (ColorBy::Track, Some(id)) => draw::track_colour(id),
                    _ => draw::class_colour(d.label_id),
                },
                text: match d.track_id {
                    Some(id) => format!("#{id} {} {:.2}", d.label, d.score),
                    None => format!("{} {:.2}", d.label, d.score),
                },
                short: d.label.clone(),
                score: d.score,
                bbox: [
                    f64::from(d.bbox[0]) * sx,
                    f64::from(d.bbox[1]) * sy,
                    f64::from(d.bbox[2]) * sx,
                    f64::from(d.bbox[3]) * sy,
                ],
                mask: m.as_ref().map(|(bits, width, height)| MaskRef {
                    bits,
                    width: *width,
                    height: *height,
                }),
            })
            .collect();
        let mut colours = Vec::new();
        if opts.trails {
            let centres: Vec<(u64, Centre)> = kept
                .iter()
                .zip(&overlays)
                .filter_map(|(d, o)| {
                    let b = o.bbox;
                    d.track_id.map(|id| {
                        (
                            id,
                            (((b[0] + b[2]) / 2.0) as f32, ((b[1] + b[3]) / 2.0) as f32),
                        )
                    })
                })
                .collect();
            trails.advance(position, &centres);
            colours = trails.draw(&mut img, self.style);
        }
        for c in draw::annotate(&mut img, &overlays, self.style).colours {
            if !colours.contains(&c) {
                colours.push(c);
            }
        }
        (img, colours)
    }
}

/// One annotated frame.
#[derive(Debug, Clone)]
pub struct RenderedFrame {
    /// The frame's presentation index in the video.
    pub index: u64,
    /// Its presentation time in seconds.
    pub pts_s: f64,
    /// The video's frame rate, when the container states it.
    pub video_fps: Option<f64>,
    /// How many frames the output is expected to get (0: unknown).
    pub expected: usize,
    /// Its position among the predictions' frames.
    pub position: usize,
    pub image: RgbImage,
    /// Exact colours of the drawing, to keep in the GIF palette.
    pub colours: Vec<[u8; 3]>,
}

/// What a render produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
}

/// Decode `source` with the plan's sampling (every frame with `opts.all_frames`),
/// check the plan fits it, and hand each annotated frame to `on_frame` in presentation
/// order. `name` is how the video is called in messages. Fails when the predictions do
/// not fit the video; frames already handed over are then to be discarded.
pub fn render(
    source: Source,
    name: &str,
    plan: &Plan,
    opts: &RenderOptions,
    mut on_frame: impl FnMut(RenderedFrame) -> Result<()>,
) -> Result<Summary> {
    let sampling = if opts.all_frames {
        Sampling::EveryNth(1)
    } else {
        plan.sampling
    };
    let mut decoder = Decoder::open(
        source,
        DecodeOptions {
            sampling,
            range: plan.range,
            resize: Resize::Original,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening the video {name}"))?;
    let info = decoder.info().clone();
    plan.check_video(name, info.width, info.height)?;
    let canvas = Canvas::new(plan, info.width, info.height, opts)?;
    let mut matcher = plan.matcher();
    let mut trails = Trails::default();
    let expected = if opts.all_frames {
        info.frames.unwrap_or(0) as usize
    } else {
        plan.frames.len()
    };
    let mut latest: Option<(usize, &PlannedFrame)> = None;
    let mut frames = 0;
    while let Some(frame) = decoder
        .next_frame()
        .with_context(|| format!("decoding the video {name}"))?
    {
        let index = frame.meta.index;
        if !opts.all_frames {
            latest = matcher.next(index);
            if latest.is_none() {
                continue;
            }
        } else if matcher.is_sampled(index) {
            // A sample the predictions lack keeps the previous sample's detections
            // (the matcher reports the gap at the end).
            latest = matcher.next(index).or(latest);
        }
        let picture = RgbImage::from_raw(frame.meta.width, frame.meta.height, frame.rgb)
            .context("the decoder returned a picture of the wrong size")?;
        let (image, colours) = match latest {
            Some((position, planned)) => {
                canvas.draw_frame(picture, planned, position as u64, opts, &mut trails)
            }
            None => canvas.draw(picture, &PlannedFrame::default(), opts),
        };
        on_frame(RenderedFrame {
            index,
            pts_s: frame.meta.pts_s,
            video_fps: info.fps,
            expected,
            position: latest.map_or(0, |l| l.0),
            image,
            colours,
        })?;
        frames += 1;
    }
    matcher.finish(name, info.frames)?;
    Ok(Summary {
        frames,
        width: canvas.output.0,
        height: canvas.output.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::class_colour;
    use crate::plan::{Detection, Kind};
    use image::Rgb;
    use vidinfer_media::schema::Rle;

    fn det(label_id: i64, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            label_id,
            label: format!("c{label_id}"),
            score,
            bbox,
            mask: None,
            track_id: None,
        }
    }

    fn plan(dets: Vec<Detection>, box_frame: Option<(u32, u32)>) -> Plan {
        Plan {
            range: Default::default(),
            kind: if box_frame.is_some() {
                Kind::Legacy
            } else {
                Kind::V2
            },
            sampling: Sampling::EveryNth(1),
            frames: vec![PlannedFrame {
                index: Some(0),
                detections: dets,
            }],
            box_frame,
            video_size: None,
            has_masks: false,
        }
    }

    const GREY: Rgb<u8> = Rgb([100, 100, 100]);

    #[test]
    fn output_size_keeps_the_aspect_ratio() {
        assert_eq!(output_size(320, 240, None).unwrap(), (320, 240));
        assert_eq!(output_size(320, 240, Some(160)).unwrap(), (160, 120));
        assert_eq!(output_size(1920, 1080, Some(500)).unwrap(), (500, 281));
        assert_eq!(output_size(1000, 10, Some(10)).unwrap(), (10, 1));
        assert!(output_size(320, 240, Some(0)).is_err());
        assert!(output_size(100, 1000, Some(7000)).is_err());
    }

    #[test]
    fn threshold_is_strict_and_boxes_land_where_they_should() {
        let p = plan(
            vec![
                det(1, 0.95, [40.0, 40.0, 80.0, 80.0]),
                det(2, 0.90, [100.0, 40.0, 140.0, 80.0]),
                det(3, 0.85, [160.0, 40.0, 200.0, 80.0]),
            ],
            None,
        );
        let canvas = Canvas::new(&p, 320, 240, &RenderOptions::default()).unwrap();
        let pic = RgbImage::from_pixel(320, 240, GREY);
        let opts = RenderOptions::default();
        let (img, colours) = canvas.draw(pic.clone(), &p.frames[0], &opts);
        assert_eq!(img.get_pixel(40, 60).0, class_colour(1));
        assert_eq!(img.get_pixel(79, 60).0, class_colour(1));
        assert_eq!(*img.get_pixel(39, 60), GREY);
        assert_eq!(*img.get_pixel(100, 60), GREY, "0.90 is not above 0.9");
        assert_eq!(*img.get_pixel(160, 60), GREY);
        assert!(colours.contains(&class_colour(1)) && !colours.contains(&class_colour(2)));

        let low = RenderOptions {
            score_threshold: 0.8,
            ..opts
        };
        let (img, _) = canvas.draw(pic, &p.frames[0], &low);
        assert_eq!(img.get_pixel(100, 60).0, class_colour(2));
        assert_eq!(img.get_pixel(160, 60).0, class_colour(3));
    }

    #[test]
    fn tracks_get_their_own_colours_ids_in_labels_and_trails() {
        let tracked = |id, x: f32| Detection {
            track_id: Some(id),
            ..det(1, 0.95, [x, 100.0, x + 30.0, 130.0])
        };
        let pic = RgbImage::from_pixel(320, 240, GREY);
        let by_track = RenderOptions {
            color_by: ColorBy::Track,
            trails: true,
            ..RenderOptions::default()
        };
        let p = plan(vec![tracked(3, 20.0), tracked(4, 200.0)], None);
        let canvas = Canvas::new(&p, 320, 240, &RenderOptions::default()).unwrap();
        let (img, colours) = canvas.draw(pic.clone(), &p.frames[0], &by_track);
        // Same class, two tracks: two colours, neither the class colour.
        assert_eq!(img.get_pixel(20, 115).0, draw::track_colour(3));
        assert_eq!(img.get_pixel(200, 115).0, draw::track_colour(4));
        assert_ne!(draw::track_colour(3), draw::track_colour(4));
        assert!(colours.contains(&draw::track_colour(3)));
        // By class (the default), the same detections share the class colour.
        let (img, _) = canvas.draw(pic.clone(), &p.frames[0], &RenderOptions::default());
        assert_eq!(img.get_pixel(200, 115).0, class_colour(1));

        // Trails: track 3 moves right over three frames; its path is drawn between
        // the box centres (y = 115), where no box edge is.
        let mut trails = Trails::default();
        let mut last = pic.clone();
        for (pos, x) in [(0u64, 20.0), (1, 60.0), (2, 100.0)] {
            let p = plan(vec![tracked(3, x)], None);
            last = canvas
                .draw_frame(pic.clone(), &p.frames[0], pos, &by_track, &mut trails)
                .0;
        }
        assert_eq!(last.get_pixel(60, 115).0, draw::track_colour(3));
        let p = plan(vec![tracked(3, 100.0)], None);
        let (plain, _) = canvas.draw(pic.clone(), &p.frames[0], &by_track);
        assert_eq!(*plain.get_pixel(60, 115), GREY, "one frame has no trail");
    }

    #[test]
    fn legacy_boxes_map_from_the_stretched_frame_and_scale_with_the_output() {
        // A 1024x1024 legacy box over a 320x240 video, drawn at 160x120.
        let p = plan(
            vec![det(1, 0.99, [128.0, 512.0, 512.0, 1024.0])],
            Some((1024, 1024)),
        );
        let canvas = Canvas::new(
            &p,
            320,
            240,
            &RenderOptions {
                width: Some(160),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(canvas.output, (160, 120));
        let (img, _) = canvas.draw(
            RgbImage::from_pixel(320, 240, GREY),
            &p.frames[0],
            &Default::default(),
        );
        // Source box [40, 120, 160, 240] -> output [20, 60, 80, 120].
        assert_eq!(img.get_pixel(20, 90).0, class_colour(1));
        assert_eq!(img.get_pixel(79, 90).0, class_colour(1));
        assert_eq!(img.get_pixel(50, 119).0, class_colour(1));
        assert_ne!(img.get_pixel(19, 90).0, class_colour(1));
        assert_ne!(img.get_pixel(80, 90).0, class_colour(1));
    }

    #[test]
    fn masks_are_blended_only_when_asked() {
        // A mask covering the left half of a 4x2 source frame.
        let rle = Rle {
            size: [2, 4],
            counts: vec![0, 4, 4],
        };
        let mut d = det(1, 0.99, [0.0, 0.0, 4.0, 2.0]);
        d.mask = Some(rle);
        let p = plan(vec![d], None);
        let canvas = Canvas::new(
            &p,
            4,
            2,
            &RenderOptions {
                width: Some(400),
                ..Default::default()
            },
        )
        .unwrap();
        let pic = RgbImage::from_pixel(4, 2, Rgb([0, 0, 0]));
        let (plain, _) = canvas.draw(pic.clone(), &p.frames[0], &Default::default());
        assert_eq!(plain.get_pixel(100, 150).0, [0, 0, 0]);
        let masked = RenderOptions {
            masks: true,
            ..Default::default()
        };
        let (img, _) = canvas.draw(pic, &p.frames[0], &masked);
        let tint = class_colour(1).map(|c| (f32::from(c) * draw::MASK_ALPHA).round() as u8);
        assert_eq!(img.get_pixel(100, 150).0, tint);
        assert_eq!(img.get_pixel(300, 150).0, [0, 0, 0]);
    }
}
