//! Drawing detections onto a picture: a stable colour per class, boxes whose thickness
//! follows the picture's size, labels on a filled background that always stays inside
//! the picture, and instance masks blended over the pixels they cover.
//!
//! Everything here works in output pixels: the caller maps boxes from the coordinates
//! the predictions use to the picture being drawn on.

use image::{Rgb, RgbImage};
use imageproc::drawing::draw_filled_rect_mut;
use imageproc::rect::Rect;

use crate::font;

/// Ink for label text on light backgrounds.
pub const BLACK: [u8; 3] = [0, 0, 0];
/// Ink for label text on dark backgrounds.
pub const WHITE: [u8; 3] = [255, 255, 255];

/// How much of a mask's colour shows over the picture (0: none, 1: opaque).
pub const MASK_ALPHA: f32 = 0.45;

/// The colour of a class, the same for a label id in every frame and every run.
///
/// Hues step by the golden ratio from one id to the next, so ids close together (the
/// classes most models list first) get far-apart hues; saturation and brightness cycle
/// through three tiers so that ids whose hues come close again still differ.
pub fn class_colour(label_id: i64) -> [u8; 3] {
    let id = label_id.rem_euclid(1 << 20);
    let hue = (0.07 + id as f64 * 0.618_033_988_749_895).fract();
    let (s, v) = match id % 3 {
        0 => (0.80, 1.00),
        1 => (0.90, 0.90),
        _ => (0.75, 0.80),
    };
    hsv_to_rgb(hue, s, v)
}

fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [u8; 3] {
    let h6 = h * 6.0;
    let sector = h6.floor() as i64 % 6;
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match sector {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r, g, b].map(|c| (c * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// A track's colour: the class palette indexed by track id, so neighbouring ids differ.
pub fn track_colour(track_id: u64) -> [u8; 3] {
    class_colour((track_id % (1 << 20)) as i64)
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

/// The text colour that reads best on `background`.
pub fn ink_for(background: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = background.map(f64::from);
    if 0.299 * r + 0.587 * g + 0.114 * b > 150.0 {
        BLACK
    } else {
        WHITE
    }
}

/// Line thickness and text size for a picture, chosen from its size so that boxes and
/// labels look alike on a thumbnail and on a full-HD frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Box edge thickness in pixels (drawn inward from the box's outer edge).
    pub thickness: u32,
    /// Each font pixel is a `font_scale`x`font_scale` square (1: 8 px tall text).
    pub font_scale: u32,
}

impl Style {
    /// 2 px lines and 8 px text (7 px capitals) up to 320x240, growing with the shorter
    /// side: 480 px: 3 px lines and 16 px text; 1080 px: 7 px lines and 40 px text.
    pub fn for_size(width: u32, height: u32) -> Style {
        let short = f64::from(width.min(height));
        Style {
            thickness: ((short / 160.0).round() as u32).max(2),
            font_scale: ((short / 200.0).round() as u32).max(1),
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
    /// The label text, e.g. `person: 0.97`.
    pub text: String,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in the picture's continuous pixel coordinates.
    pub bbox: [f64; 4],
    /// A mask to blend, stretched over the whole picture.
    pub mask: Option<MaskRef<'a>>,
}

/// Draw `overlays` onto `img`: masks first, then boxes, then labels (lowest score
/// first, so the most confident label ends up on top). Returns the exact colours used
/// by boxes, label backgrounds and text, which the GIF palette must hold unchanged.
pub fn annotate(img: &mut RgbImage, overlays: &[Overlay<'_>], style: Style) -> Vec<[u8; 3]> {
    let mut order: Vec<&Overlay> = overlays.iter().collect();
    order.sort_by(|a, b| a.score.total_cmp(&b.score));
    let mut used = Vec::new();
    let mut note = |c: [u8; 3]| {
        if !used.contains(&c) {
            used.push(c);
        }
    };
    for o in &order {
        if let Some(m) = o.mask {
            blend_mask(img, m, o.colour, MASK_ALPHA);
        }
    }
    let (w, h) = img.dimensions();
    let boxes: Vec<PixelBox> = order
        .iter()
        .map(|o| PixelBox::from_coords(o.bbox, w, h))
        .collect();
    for (o, b) in order.iter().zip(&boxes) {
        let colour = o.colour;
        draw_box(img, *b, colour, style.thickness);
        note(colour);
    }
    for (o, b) in order.iter().zip(&boxes) {
        let colour = o.colour;
        draw_label(img, *b, &o.text, colour, style.font_scale);
        note(ink_for(colour));
    }
    used
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

/// Where a label of `text_w`x`text_h` pixels (plus padding) goes for box `b`: on top of
/// the box's upper edge when there is room, else just inside it, shifted left or up as
/// needed to stay inside the picture. Returns (x, y, width, height) of the background.
pub fn label_rect(
    b: PixelBox,
    text_w: u32,
    text_h: u32,
    pad: u32,
    width: u32,
    height: u32,
) -> (i32, i32, u32, u32) {
    let bw = (text_w + 2 * pad).min(width);
    let bh = (text_h + 2 * pad).min(height);
    let x = b.left.min(width as i32 - bw as i32).max(0);
    let above = b.top - bh as i32;
    let y = if above >= 0 { above } else { b.top };
    let y = y.min(height as i32 - bh as i32).max(0);
    (x, y, bw, bh)
}

/// `text` on a filled background of `colour`, placed by [`label_rect`]; text wider than
/// the picture is cut at the picture's edge.
pub fn draw_label(img: &mut RgbImage, b: PixelBox, text: &str, colour: [u8; 3], scale: u32) {
    let (w, h) = img.dimensions();
    let (tw, th) = font::measure(text, scale);
    let pad = scale;
    let (x, y, bw, bh) = label_rect(b, tw, th, pad, w, h);
    draw_filled_rect_mut(img, Rect::at(x, y).of_size(bw, bh), Rgb(colour));
    let ink = Rgb(ink_for(colour));
    let (x_end, y_end) = (i64::from(x) + i64::from(bw), i64::from(y) + i64::from(bh));
    font::render(
        text,
        i64::from(x) + i64::from(pad),
        i64::from(y) + i64::from(pad),
        scale,
        |px, py| {
            if px >= 0 && py >= 0 && px < x_end && py < y_end {
                img.put_pixel(px as u32, py as u32, ink);
            }
        },
    );
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
            text: format!("thing: {score:.2}"),
            score,
            bbox,
            mask: None,
        }
    }

    #[test]
    fn class_colours_are_stable_distinct_and_never_black_or_white() {
        assert_eq!(class_colour(1), class_colour(1));
        let colours: Vec<[u8; 3]> = (0..91).map(class_colour).collect();
        for (i, a) in colours.iter().enumerate() {
            assert_ne!(*a, BLACK);
            assert_ne!(*a, WHITE);
            for b in &colours[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The first classes are far apart (sum of channel differences).
        for a in 1..8 {
            for b in a + 1..8 {
                let d: u32 = class_colour(a)
                    .iter()
                    .zip(class_colour(b))
                    .map(|(x, y)| u32::from(x.abs_diff(y)))
                    .sum();
                assert!(d > 60, "classes {a} and {b} look alike");
            }
        }
        assert_eq!(class_colour(-1), class_colour((1 << 20) - 1));
    }

    #[test]
    fn style_grows_with_the_picture() {
        assert_eq!(
            Style::for_size(320, 240),
            Style {
                thickness: 2,
                font_scale: 1
            }
        );
        assert_eq!(Style::for_size(160, 120).thickness, 2);
        let hd = Style::for_size(1920, 1080);
        assert_eq!((hd.thickness, hd.font_scale), (7, 5));
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
    fn labels_sit_above_the_box_or_inside_and_never_leave_the_picture() {
        let (w, h) = (100, 80);
        // Room above: the label's bottom row touches the box's top edge.
        let b = PixelBox::from_coords([10.0, 40.0, 50.0, 70.0], w, h);
        let (x, y, bw, bh) = label_rect(b, 40, 7, 1, w, h);
        assert_eq!((x, y, bw, bh), (10, 31, 42, 9));
        // No room above: inside the top of the box.
        let b = PixelBox::from_coords([10.0, 3.0, 50.0, 70.0], w, h);
        assert_eq!(label_rect(b, 40, 7, 1, w, h).1, 3);
        // At the right edge: shifted left to fit.
        let b = PixelBox::from_coords([90.0, 40.0, 100.0, 70.0], w, h);
        assert_eq!(label_rect(b, 40, 7, 1, w, h).0, 58);
        // Wider than the picture: clipped to it.
        assert_eq!(label_rect(b, 400, 7, 1, w, h), (0, 31, 100, 9));
        // Exhaustively: every box position keeps the label inside.
        for top in 0..h as i32 {
            for left in 0..w as i32 {
                let b = PixelBox {
                    left,
                    top,
                    right: left,
                    bottom: top,
                };
                let (x, y, bw, bh) = label_rect(b, 60, 14, 2, w, h);
                assert!(x >= 0 && y >= 0 && x as u32 + bw <= w && y as u32 + bh <= h);
            }
        }
    }

    #[test]
    fn a_label_in_a_corner_is_drawn_inside_with_readable_ink() {
        let mut img = RgbImage::from_pixel(100, 80, GREY);
        let o = overlay(2, 0.97, [70.0, 0.0, 100.0, 31.0]);
        let used = annotate(&mut img, &[o], Style::for_size(100, 80));
        let colour = class_colour(2);
        assert_eq!(used, vec![colour, ink_for(colour)]);
        assert_eq!(img.get_pixel(80, 30).0, colour, "bottom edge");
        assert_eq!(img.get_pixel(99, 15).0, colour, "right edge");
        // "thing: 0.97" is 65 px + 2 px padding wide: it ends at the right edge.
        let row: Vec<[u8; 3]> = (0..100).map(|x| img.get_pixel(x, 0).0).collect();
        assert_eq!(row[32], GREY.0);
        assert!(row[33..].iter().all(|c| *c == colour));
        let ink = (34..100)
            .flat_map(|x| (1..8).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 == ink_for(colour))
            .count();
        assert!(ink > 60, "the text is drawn ({ink} ink pixels)");
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

    #[test]
    fn the_most_confident_label_is_drawn_last() {
        let mut img = RgbImage::from_pixel(100, 80, GREY);
        let low = overlay(1, 0.91, [10.0, 30.0, 60.0, 70.0]);
        let high = overlay(3, 0.99, [12.0, 30.0, 60.0, 70.0]);
        annotate(&mut img, &[high, low], Style::for_size(100, 80));
        // Both labels start near x=10..12 at the same height: the 0.99 one covers
        // (row 20 is the labels' top padding, free of text).
        assert_eq!(img.get_pixel(70, 20).0, class_colour(3));
    }
}
