//! Label text: anti-aliased glyphs of DejaVu Sans Condensed Bold, embedded in the
//! binary (no font file at run time), laid out and drawn by `imageproc`'s text drawing
//! over `ab_glyph`. The font's licence is `gifgen/assets/DejaVu-LICENSE.txt`.

use std::sync::OnceLock;

use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSansCondensed-Bold.ttf");

/// The embedded font, parsed once.
pub fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses"))
}

/// Width and height in pixels of `text` set at `px` pixels (the font's em size): the
/// height is the font's line height (ascent to descent), the same for every text.
pub fn measure(text: &str, px: f32) -> (u32, u32) {
    if text.is_empty() {
        return (0, line_height(px));
    }
    imageproc::drawing::text_size(PxScale::from(px), font(), text)
}

/// The line height at `px`: what [`measure`] gives as height.
pub fn line_height(px: f32) -> u32 {
    imageproc::drawing::text_size(PxScale::from(px), font(), "H").1
}

/// Draw `text` with its line box's top-left corner at (x, y), anti-aliased in `ink`.
/// Pixels outside the picture are skipped.
pub fn draw(img: &mut RgbImage, text: &str, x: i32, y: i32, px: f32, ink: [u8; 3]) {
    imageproc::drawing::draw_text_mut(img, Rgb(ink), x, y, PxScale::from(px), font(), text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows that hold any ink: (first, last).
    fn ink_rows(img: &RgbImage) -> Option<(u32, u32)> {
        let rows: Vec<u32> = (0..img.height())
            .filter(|&y| (0..img.width()).any(|x| img.get_pixel(x, y).0[0] > 128))
            .collect();
        Some((*rows.first()?, *rows.last()?))
    }

    #[test]
    fn text_is_measured_and_drawn_inside_its_line_box() {
        for px in [12.0f32, 24.0, 48.0] {
            let (w, h) = measure("car 0.97", px);
            assert!(h as f32 >= px && (h as f32) < 1.4 * px, "{px}: {h}");
            assert!(w as f32 > 3.0 * px && (w as f32) < 5.0 * px, "{px}: {w}");
            let mut img = RgbImage::new(w + 4, h + 4);
            draw(&mut img, "Hg", 2, 2, px, [255, 255, 255]);
            let (top, bottom) = ink_rows(&img).expect("ink");
            assert!(
                top >= 2 && bottom < h + 2,
                "{px}: rows {top}..{bottom} of {h}"
            );
            // Capitals are about 0.73 em tall: readable, not a speck.
            assert!((bottom - top) as f32 > 0.7 * px, "{px}: {top}..{bottom}");
        }
        assert_eq!(measure("", 20.0).0, 0);
        assert_eq!(measure("", 20.0).1, line_height(20.0));
        assert!(measure("person", 20.0).0 > measure("car", 20.0).0);
    }
}
