//! Drawing detections onto a picture: a fixed palette of distinct colours indexed by
//! class (or track), boxes whose thickness follows the picture's size, labels in
//! anti-aliased text on translucent backgrounds placed so that no two overlap
//! ([`crate::label`]), and instance masks blended over the pixels they cover.
//!
//! Everything here works in output pixels: the caller maps boxes from the coordinates
//! the predictions use to the picture being drawn on.

use image::{Rgb, RgbImage};
use imageproc::drawing::draw_filled_rect_mut;
use imageproc::rect::Rect;

use crate::label::{self, Request};
use crate::text;

/// Ink for label text on light backgrounds.
pub const BLACK: [u8; 3] = [0, 0, 0];
/// Ink for label text on dark backgrounds.
pub const WHITE: [u8; 3] = [255, 255, 255];

/// How much of a mask's colour shows over the picture (0: none, 1: opaque).
pub const MASK_ALPHA: f32 = 0.45;

/// How much of a label's colour covers the scene under it: the scene stays visible.
pub const LABEL_ALPHA: f32 = 0.7;

/// Twenty clearly distinct colours (a widely used set chosen for telling categories
/// apart), indexed by class id modulo 20. With COCO's numbering the classes seen
/// together on roads differ strongly: person 1 green, bicycle 2 yellow, car 3 blue,
/// motorcycle 4 orange, bus 6 cyan, truck 8 lime.
pub const PALETTE: [[u8; 3]; 20] = [
    [0xE6, 0x19, 0x4B], // red
    [0x3C, 0xB4, 0x4B], // green
    [0xFF, 0xE1, 0x19], // yellow
    [0x43, 0x63, 0xD8], // blue
    [0xF5, 0x82, 0x31], // orange
    [0x91, 0x1E, 0xB4], // purple
    [0x42, 0xD4, 0xF4], // cyan
    [0xF0, 0x32, 0xE6], // magenta
    [0xBF, 0xEF, 0x45], // lime
    [0xFA, 0xBE, 0xD4], // pink
    [0x46, 0x99, 0x90], // teal
    [0xDC, 0xBE, 0xFF], // lavender
    [0x9A, 0x63, 0x24], // brown
    [0xFF, 0xFA, 0xC8], // beige
    [0x80, 0x00, 0x00], // maroon
    [0xAA, 0xFF, 0xC3], // mint
    [0x80, 0x80, 0x00], // olive
    [0xFF, 0xD8, 0xB1], // apricot
    [0x00, 0x00, 0x75], // navy
    [0xA9, 0xA9, 0xA9], // grey
];

/// The colour of a class, the same for a label id in every frame and every run.
pub fn class_colour(label_id: i64) -> [u8; 3] {
    PALETTE[label_id.rem_euclid(PALETTE.len() as i64) as usize]
}

/// A track's colour: the palette indexed by track id, so neighbouring ids differ.
pub fn track_colour(track_id: u64) -> [u8; 3] {
    PALETTE[(track_id % PALETTE.len() as u64) as usize]
}

/// A polyline through `points` (a track's recent centres), `thickness` pixels wide.
pub fn draw_trail(img: &mut RgbImage, points: &[(f32, f32)], colour: [u8; 3], thickness: u32) {
    let r = (thickness / 2) as i32;
    for w in points.windows(2) {
        for dx in -r..=r {
            for dy in -r..=r {
                let (ox, oy) = (dx as f32, dy as f32);
                imageproc::drawing::draw_line_segment_mut(
                    img,
                    (w[0].0 + ox, w[0].1 + oy),
                    (w[1].0 + ox, w[1].1 + oy),
                    Rgb(colour),
                );
            }
        }
    }
}

/// An sRGB channel value as linear light (0 to 1).
pub fn linear(v: u8) -> f64 {
    let v = f64::from(v) / 255.0;
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// WCAG relative luminance of an sRGB colour (0: black, 1: white).
pub fn luminance(c: [u8; 3]) -> f64 {
    0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2])
}

/// WCAG contrast ratio between two colours (1 to 21).
pub fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// Black or white, whichever contrasts more with `background` (always at least 4.58:1,
/// above WCAG's 4.5 for normal text).
pub fn ink_for(background: [u8; 3]) -> [u8; 3] {
    if contrast(background, BLACK) >= contrast(background, WHITE) {
        BLACK
    } else {
        WHITE
    }
}

/// Line thickness and text size for a picture, chosen from its shorter side so that
/// boxes and labels look alike on a thumbnail and on a 4K frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    /// Box edge thickness in pixels (drawn inward from the box's outer edge).
    pub thickness: u32,
    /// Text size in pixels (the font's em; capitals are about 0.73 of it).
    pub text_px: f32,
    /// Background around the text, in pixels.
    pub pad: u32,
}

/// Text size as a share of the picture's shorter side.
pub const TEXT_SHARE: f64 = 0.022;
/// The smallest text size in pixels, whatever the picture.
pub const MIN_TEXT_PX: f64 = 12.0;

impl Style {
    /// Text at [`TEXT_SHARE`] of the shorter side, never under [`MIN_TEXT_PX`]: 12 px
    /// up to 545 px, 24 px at 1080p, 48 px at 4K. Lines 2 px, then 1 px per 360 px of
    /// the shorter side (3 px at 1080p, 6 px at 4K).
    pub fn for_size(width: u32, height: u32) -> Style {
        let short = f64::from(width.min(height));
        let text_px = (short * TEXT_SHARE).max(MIN_TEXT_PX).round();
        Style {
            thickness: ((short / 360.0).round() as u32).max(2),
            text_px: text_px as f32,
            pad: ((text_px / 8.0).round() as u32).max(1),
        }
    }
}

/// A box in whole pixels of the picture, edges inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBox {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

impl PixelBox {
    /// The pixels covered by `[x1, y1, x2, y2]` (continuous coordinates, x2/y2 exclusive,
    /// as boxes and masks use them): columns round(x1) to round(x2)-1, clamped to the
    /// picture, and at least one pixel wide and tall.
    pub fn from_coords(b: [f64; 4], width: u32, height: u32) -> PixelBox {
        let (wmax, hmax) = (width as i32 - 1, height as i32 - 1);
        let left = (b[0].round() as i32).clamp(0, wmax);
        let top = (b[1].round() as i32).clamp(0, hmax);
        let right = (b[2].round() as i32 - 1).clamp(left, wmax);
        let bottom = (b[3].round() as i32 - 1).clamp(top, hmax);
        PixelBox {
            left,
            top,
            right,
            bottom,
        }
    }

    fn width(&self) -> u32 {
        (self.right - self.left + 1) as u32
    }

    fn height(&self) -> u32 {
        (self.bottom - self.top + 1) as u32
    }
}

/// A binary mask over the source frame, row-major, 1 for pixels of the object.
#[derive(Debug, Clone, Copy)]
pub struct MaskRef<'a> {
    pub bits: &'a [u8],
    pub width: u32,
    pub height: u32,
}

/// One detection to draw, already mapped to the picture's pixels.
#[derive(Debug, Clone)]
pub struct Overlay<'a> {
    /// Box, label and mask colour (by class or by track: the caller's choice).
    pub colour: [u8; 3],
    /// The label text, e.g. `#3 car 0.97`.
    pub text: String,
    /// What the label shrinks to on a crowded picture (the class name).
    pub short: String,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in the picture's continuous pixel coordinates.
    pub bbox: [f64; 4],
    /// A mask to blend, stretched over the whole picture.
    pub mask: Option<MaskRef<'a>>,
}

/// What [`annotate`] drew.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drawn {
    /// The exact colours of boxes and label text, which the GIF palette keeps unchanged.
    pub colours: Vec<[u8; 3]>,
    /// Each label's background rectangle (None: no room for it), in overlay order.
    pub labels: Vec<Option<label::Rect>>,
}

/// Draw `overlays` onto `img`: masks first, then boxes (lowest score first, so the
/// most confident box ends up on top), then the labels where [`label::place`] put them.
pub fn annotate(img: &mut RgbImage, overlays: &[Overlay<'_>], style: Style) -> Drawn {
    let mut order: Vec<usize> = (0..overlays.len()).collect();
    order.sort_by(|&a, &b| overlays[a].score.total_cmp(&overlays[b].score));
    let mut colours = Vec::new();
    let mut note = |c: [u8; 3]| {
        if !colours.contains(&c) {
            colours.push(c);
        }
    };
    for &i in &order {
        if let Some(m) = overlays[i].mask {
            blend_mask(img, m, overlays[i].colour, MASK_ALPHA);
        }
    }
    let (w, h) = img.dimensions();
    let boxes: Vec<PixelBox> = overlays
        .iter()
        .map(|o| PixelBox::from_coords(o.bbox, w, h))
        .collect();
    for &i in &order {
        draw_box(img, boxes[i], overlays[i].colour, style.thickness);
        note(overlays[i].colour);
    }
    let requests: Vec<Request> = overlays
        .iter()
        .zip(&boxes)
        .map(|(o, b)| Request {
            anchor: *b,
            texts: vec![o.text.as_str(), o.short.as_str()],
            score: o.score,
        })
        .collect();
    let placed = label::place(
        &requests,
        |t| text::measure(t, style.text_px),
        style.pad,
        w,
        h,
    );
    for (o, p) in overlays.iter().zip(&placed) {
        if let Some(p) = p {
            let words = if p.text == 0 { &o.text } else { &o.short };
            note(draw_label(img, p.rect, words, o.colour, style));
        }
    }
    Drawn {
        colours,
        labels: placed.iter().map(|p| p.map(|p| p.rect)).collect(),
    }
}

/// A box outline `thickness` pixels wide, drawn inward from the box's outer edge (a box
/// thinner than twice that is filled).
pub fn draw_box(img: &mut RgbImage, b: PixelBox, colour: [u8; 3], thickness: u32) {
    let t = thickness.max(1);
    let (bw, bh) = (b.width(), b.height());
    let c = Rgb(colour);
    let tw = t.min(bw);
    let th = t.min(bh);
    // Top and bottom bands span the full width; left and right bands the full height.
    draw_filled_rect_mut(img, Rect::at(b.left, b.top).of_size(bw, th), c);
    draw_filled_rect_mut(
        img,
        Rect::at(b.left, b.bottom - th as i32 + 1).of_size(bw, th),
        c,
    );
    draw_filled_rect_mut(img, Rect::at(b.left, b.top).of_size(tw, bh), c);
    draw_filled_rect_mut(
        img,
        Rect::at(b.right - tw as i32 + 1, b.top).of_size(tw, bh),
        c,
    );
}

/// A label: `words` on a translucent background of `colour` filling `rect`, in black
/// or white, whichever reads better on what the background turned out to be. Returns
/// the ink.
pub fn draw_label(
    img: &mut RgbImage,
    rect: label::Rect,
    words: &str,
    colour: [u8; 3],
    style: Style,
) -> [u8; 3] {
    let mut sum = [0f64; 3];
    let mut n = 0f64;
    let (w, h) = img.dimensions();
    let x_end = (rect.x + rect.w as i32).min(w as i32);
    let y_end = (rect.y + rect.h as i32).min(h as i32);
    let tint = colour.map(|c| LABEL_ALPHA * f32::from(c));
    for y in rect.y.max(0)..y_end {
        for x in rect.x.max(0)..x_end {
            let p = img.get_pixel_mut(x as u32, y as u32);
            for (i, (v, t)) in p.0.iter_mut().zip(tint).enumerate() {
                *v = ((1.0 - LABEL_ALPHA) * f32::from(*v) + t).round() as u8;
                sum[i] += f64::from(*v);
            }
            n += 1.0;
        }
    }
    let mean = sum.map(|s| (s / n.max(1.0)).round() as u8);
    let ink = ink_for(mean);
    text::draw(
        img,
        words,
        rect.x + style.pad as i32,
        rect.y + style.pad as i32,
        style.text_px,
        ink,
    );
    ink
}

/// Blend `colour` over the pixels `mask` covers. The mask spans the whole picture at
/// its own resolution; each picture pixel takes the mask pixel under its centre.
pub fn blend_mask(img: &mut RgbImage, mask: MaskRef<'_>, colour: [u8; 3], alpha: f32) {
    let (w, h) = img.dimensions();
    if mask.width == 0 || mask.height == 0 || mask.bits.len() < (mask.width * mask.height) as usize
    {
        return;
    }
    let cols: Vec<usize> = (0..w)
        .map(|x| {
            let mx = ((f64::from(x) + 0.5) * f64::from(mask.width) / f64::from(w)) as u32;
            mx.min(mask.width - 1) as usize
        })
        .collect();
    let tint = colour.map(|c| alpha * f32::from(c));
    for y in 0..h {
        let my = ((f64::from(y) + 0.5) * f64::from(mask.height) / f64::from(h)) as u32;
        let row = my.min(mask.height - 1) as usize * mask.width as usize;
        for (x, mx) in cols.iter().enumerate() {
            if mask.bits[row + mx] != 0 {
                let p = img.get_pixel_mut(x as u32, y);
                for (v, t) in p.0.iter_mut().zip(tint) {
                    *v = ((1.0 - alpha) * f32::from(*v) + t).round() as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY: Rgb<u8> = Rgb([128, 128, 128]);

    fn overlay(label_id: i64, score: f32, bbox: [f64; 4]) -> Overlay<'static> {
        Overlay {
            colour: class_colour(label_id),
            text: format!("thing {score:.2}"),
            short: "thing".into(),
            score,
            bbox,
            mask: None,
        }
    }

    /// CIE L*a*b* of an sRGB colour (D65).
    fn lab(c: [u8; 3]) -> [f64; 3] {
        let [r, g, b] = c.map(linear);
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| {
            if t > 0.008856 {
                t.cbrt()
            } else {
                7.787 * t + 16.0 / 116.0
            }
        };
        [
            116.0 * f(y) - 16.0,
            500.0 * (f(x) - f(y)),
            200.0 * (f(y) - f(z)),
        ]
    }

    fn delta_e(a: [u8; 3], b: [u8; 3]) -> f64 {
        let (a, b) = (lab(a), lab(b));
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    }

    #[test]
    fn classes_seen_together_get_clearly_different_colours() {
        assert_eq!(class_colour(3), class_colour(3));
        assert_eq!(class_colour(-1), class_colour(19));
        for (i, a) in PALETTE.iter().enumerate() {
            assert_ne!(*a, BLACK);
            assert_ne!(*a, WHITE);
            for b in &PALETTE[i + 1..] {
                assert!(delta_e(*a, *b) > 15.0, "{a:?} and {b:?} look alike");
            }
        }
        // COCO: person, bicycle, car, motorcycle, bus, truck.
        let road = [1, 2, 3, 4, 6, 8];
        for (i, &a) in road.iter().enumerate() {
            for &b in &road[i + 1..] {
                let d = delta_e(class_colour(a), class_colour(b));
                assert!(d > 30.0, "classes {a} and {b}: delta E {d:.1}");
            }
        }
        assert_ne!(track_colour(7), track_colour(8));
    }

    #[test]
    fn ink_always_contrasts_with_its_background() {
        for c in PALETTE
            .iter()
            .copied()
            .chain([[128, 128, 128], [0, 0, 0], [255; 3]])
        {
            let ink = ink_for(c);
            assert!(contrast(c, ink) >= 4.5, "{c:?}: {:.2}", contrast(c, ink));
        }
        assert_eq!(ink_for([255, 225, 25]), BLACK);
        assert_eq!(ink_for([0, 0, 117]), WHITE);
    }

    #[test]
    fn style_grows_with_the_picture_within_the_stated_range() {
        for (w, h) in [(320, 240), (1920, 1080), (3840, 2160), (160, 120)] {
            let s = Style::for_size(w, h);
            let short = f64::from(w.min(h));
            let want = (short * TEXT_SHARE).max(MIN_TEXT_PX);
            assert!((f64::from(s.text_px) - want).abs() <= 0.5, "{w}x{h}: {s:?}");
            assert!(s.thickness >= 2 && s.pad >= 1);
        }
        assert_eq!(Style::for_size(320, 240).text_px, 12.0);
        assert_eq!(Style::for_size(1920, 1080).text_px, 24.0);
        assert_eq!(Style::for_size(3840, 2160).text_px, 48.0);
        assert_eq!(Style::for_size(1920, 1080).thickness, 3);
    }

    #[test]
    fn pixel_boxes_use_exclusive_far_edges_and_stay_inside() {
        let b = PixelBox::from_coords([46.0, 14.0, 89.0, 58.0], 320, 240);
        assert_eq!((b.left, b.top, b.right, b.bottom), (46, 14, 88, 57));
        let b = PixelBox::from_coords([-3.0, -1.0, 400.0, 300.0], 320, 240);
        assert_eq!((b.left, b.top, b.right, b.bottom), (0, 0, 319, 239));
        let b = PixelBox::from_coords([10.0, 10.0, 10.0, 10.0], 320, 240);
        assert_eq!((b.width(), b.height()), (1, 1));
    }

    #[test]
    fn boxes_are_drawn_inward_in_the_class_colour() {
        let mut img = RgbImage::from_pixel(100, 80, GREY);
        let b = PixelBox::from_coords([10.0, 20.0, 50.0, 60.0], 100, 80);
        draw_box(&mut img, b, [200, 10, 10], 3);
        for (x, y) in [(10, 40), (12, 40), (49, 40), (47, 40), (30, 20), (30, 59)] {
            assert_eq!(img.get_pixel(x, y).0, [200, 10, 10], "({x},{y})");
        }
        for (x, y) in [
            (9, 40),
            (13, 40),
            (50, 40),
            (46, 40),
            (30, 19),
            (30, 23),
            (30, 60),
        ] {
            assert_eq!(*img.get_pixel(x, y), GREY, "({x},{y})");
        }
    }

    #[test]
    fn a_label_is_translucent_with_readable_ink_above_its_box() {
        // Half the picture black, half white: the label background lets both through.
        let mut img = RgbImage::from_fn(200, 100, |x, _| {
            if x < 100 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let o = overlay(3, 0.97, [60.0, 50.0, 180.0, 95.0]);
        let drawn = annotate(&mut img, &[o], Style::for_size(200, 100));
        let r = drawn.labels[0].expect("placed");
        assert_eq!(
            (r.x, r.y + r.h as i32),
            (60, 50),
            "above the box, at its left"
        );
        let colour = class_colour(3);
        assert_eq!(drawn.colours, vec![colour, ink_for(colour)]);
        // Translucent: the background differs left and right of x = 100, inside the
        // label's top padding row (no text there).
        let (left, right) = (
            img.get_pixel(62, r.y as u32).0,
            img.get_pixel(130, r.y as u32).0,
        );
        assert_ne!(left, right);
        assert!(left.iter().zip(colour).all(|(v, c)| v.abs_diff(c) < 90));
        // Some ink is drawn inside the rectangle, none outside its rows above the box.
        let ink = ink_for(colour);
        let inked = (r.x..r.x + r.w as i32)
            .flat_map(|x| (r.y..r.y + r.h as i32).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x as u32, y as u32).0 == ink)
            .count();
        assert!(inked > 20, "{inked} ink pixels");
    }

    #[test]
    fn masks_blend_under_their_pixels_only() {
        let mut img = RgbImage::from_pixel(8, 4, Rgb([0, 0, 0]));
        // A 4x2 mask covering its left half: the left half of the picture.
        let bits = [1, 1, 0, 0, 1, 1, 0, 0];
        let mask = MaskRef {
            bits: &bits,
            width: 4,
            height: 2,
        };
        blend_mask(&mut img, mask, [200, 100, 0], 0.5);
        assert_eq!(img.get_pixel(0, 0).0, [100, 50, 0]);
        assert_eq!(img.get_pixel(3, 3).0, [100, 50, 0]);
        assert_eq!(img.get_pixel(4, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(7, 3).0, [0, 0, 0]);
    }

    /// A deterministic crowd: `n` boxes of 20..120 px, many overlapping, some touching
    /// the picture's edges.
    fn crowd(n: usize, w: u32, h: u32, seed: u64) -> Vec<Overlay<'static>> {
        let mut state = seed;
        let mut next = move |m: u32| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % u64::from(m)) as f64
        };
        (0..n)
            .map(|i| {
                let (bw, bh) = (20.0 + next(100), 20.0 + next(100));
                let x = match i % 10 {
                    0 => 0.0,
                    1 => f64::from(w) - bw,
                    _ => next(w - 20),
                };
                let y = match i % 7 {
                    0 => 0.0,
                    1 => f64::from(h) - bh,
                    _ => next(h - 20),
                };
                let label = next(91) as i64;
                Overlay {
                    colour: class_colour(label),
                    text: format!("#{i} motorcycle 0.{:02}", next(100)),
                    short: "motorcycle".into(),
                    score: 0.5 + next(50) as f32 / 100.0,
                    bbox: [x, y, (x + bw).min(f64::from(w)), (y + bh).min(f64::from(h))],
                    mask: None,
                }
            })
            .collect()
    }

    #[test]
    fn on_crowded_scenes_no_two_labels_overlap_and_all_stay_inside() {
        for (seed, (w, h), n) in [
            (1, (320, 240), 100),
            (2, (1024, 1024), 150),
            (3, (1920, 1080), 120),
            (4, (640, 360), 200),
        ] {
            let mut img = RgbImage::from_pixel(w, h, GREY);
            let overlays = crowd(n, w, h, seed);
            let drawn = annotate(&mut img, &overlays, Style::for_size(w, h));
            let rects: Vec<label::Rect> = drawn.labels.iter().flatten().copied().collect();
            assert!(
                rects.len() >= 10,
                "{w}x{h}: only {} labels placed",
                rects.len()
            );
            for (i, a) in rects.iter().enumerate() {
                assert!(a.inside(w, h), "{w}x{h}: {a:?} leaves the picture");
                for b in &rects[i + 1..] {
                    assert!(!a.intersects(b), "{w}x{h}: {a:?} overlaps {b:?}");
                }
            }
        }
    }
}
