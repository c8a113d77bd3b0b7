//! Where labels go on a busy picture: each label sits above its box, else inside its
//! top edge, always inside the picture, and never on top of another label.
//!
//! Labels are placed greedily, most confident first. For each, the full text (e.g.
//! `#12 car 0.97`) is tried at the preferred spots (above the box, inside its top,
//! below it, inside its bottom); a spot taken by an earlier label leads to new spots
//! stacked above or below that label or beside it, as long as they stay near the box.
//! When no spot is free the short text (the class name) is tried the same way; when
//! that fails too the label is left out (its box is still drawn). Nothing here draws:
//! the result is rectangles, which the tests check directly.

use crate::draw::PixelBox;

/// An axis-aligned rectangle of whole pixels: `x..x+w` by `y..y+h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    fn right(&self) -> i32 {
        self.x + self.w as i32
    }

    fn bottom(&self) -> i32 {
        self.y + self.h as i32
    }

    /// Whether the two share at least one pixel.
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }

    /// Whether it lies wholly inside a `width`x`height` picture.
    pub fn inside(&self, width: u32, height: u32) -> bool {
        self.x >= 0 && self.y >= 0 && self.right() <= width as i32 && self.bottom() <= height as i32
    }
}

/// A label to place.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The box it belongs to, in picture pixels.
    pub anchor: PixelBox,
    /// The texts to try, longest first (e.g. `["#3 car 0.97", "car"]`).
    pub texts: Vec<&'a str>,
    /// Higher scores are placed first.
    pub score: f32,
}

/// Where a label went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The label's background rectangle.
    pub rect: Rect,
    /// Which of the request's texts fits there.
    pub text: usize,
}

/// Spots tried per text before giving up on it.
const MAX_TRIES: usize = 48;

/// Place `requests` on a `width`x`height` picture. `size(text)` is a text's (width,
/// height) in pixels; `pad` pixels of background surround it. Returns one entry per
/// request, in the same order: `None` for a label that did not fit anywhere.
pub fn place(
    requests: &[Request<'_>],
    size: impl Fn(&str) -> (u32, u32),
    pad: u32,
    width: u32,
    height: u32,
) -> Vec<Option<Placed>> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by(|&a, &b| requests[b].score.total_cmp(&requests[a].score));
    let mut taken: Vec<Rect> = Vec::new();
    let mut out = vec![None; requests.len()];
    for i in order {
        let r = &requests[i];
        for (t, text) in r.texts.iter().enumerate() {
            let (tw, th) = size(text);
            let (w, h) = (tw + 2 * pad, th + 2 * pad);
            if w > width || h > height {
                continue;
            }
            if let Some(rect) = find_spot(r.anchor, w, h, &taken, width, height) {
                taken.push(rect);
                out[i] = Some(Placed { rect, text: t });
                break;
            }
        }
    }
    out
}

/// The first free spot for a `w`x`h` label of box `b`, searched outward from the
/// preferred spots through the labels in the way.
fn find_spot(b: PixelBox, w: u32, h: u32, taken: &[Rect], width: u32, height: u32) -> Option<Rect> {
    let (wi, hi) = (w as i32, h as i32);
    // Near the box: the label may start at most a label's height (and width) away.
    let near = |c: &Rect| {
        c.bottom() >= b.top - 2 * hi
            && c.y <= b.bottom + 1 + 2 * hi
            && c.right() >= b.left - wi / 2
            && c.x <= b.right + 1 + wi / 2
    };
    let fit = |x: i32, y: i32| Rect {
        x: x.clamp(0, width as i32 - wi),
        y: y.clamp(0, height as i32 - hi),
        w,
        h,
    };
    // The preferred spots, in order; one that would cross the picture's top or bottom
    // edge is not moved onto the box but skipped for the next.
    let mut queue: Vec<Rect> = [b.top - hi, b.top, b.bottom + 1, b.bottom + 1 - hi]
        .into_iter()
        .filter(|&y| y >= 0 && y + hi <= height as i32)
        .map(|y| fit(b.left, y))
        .collect();
    let mut seen: Vec<Rect> = Vec::new();
    let mut next = 0;
    while next < queue.len() && seen.len() < MAX_TRIES {
        let c = queue[next];
        next += 1;
        if seen.contains(&c) {
            continue;
        }
        seen.push(c);
        match taken.iter().find(|t| t.intersects(&c)) {
            None if c.inside(width, height) && near(&c) => return Some(c),
            None => {}
            Some(t) => {
                // Stack above or below the label in the way, or step beside it.
                for s in [
                    fit(c.x, t.y - hi),
                    fit(c.x, t.bottom()),
                    fit(t.right(), c.y),
                    fit(t.x - wi, c.y),
                ] {
                    if near(&s) && !seen.contains(&s) {
                        queue.push(s);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pbox(l: i32, t: i32, r: i32, b: i32) -> PixelBox {
        PixelBox {
            left: l,
            top: t,
            right: r,
            bottom: b,
        }
    }

    /// 8 px per character, 12 px tall.
    fn size(t: &str) -> (u32, u32) {
        (8 * t.len() as u32, 12)
    }

    #[test]
    fn a_lone_label_sits_above_its_box_else_inside() {
        let req = |b| Request {
            anchor: b,
            texts: vec!["car 0.97", "car"],
            score: 0.9,
        };
        let p = place(&[req(pbox(50, 40, 120, 90))], size, 2, 320, 240);
        assert_eq!(
            p[0],
            Some(Placed {
                rect: Rect {
                    x: 50,
                    y: 24,
                    w: 68,
                    h: 16
                },
                text: 0
            })
        );
        // No room above: inside the top edge.
        let p = place(&[req(pbox(50, 5, 120, 90))], size, 2, 320, 240);
        assert_eq!(p[0].unwrap().rect.y, 5);
        // At the right edge: shifted left to stay inside.
        let p = place(&[req(pbox(300, 40, 319, 90))], size, 2, 320, 240);
        assert_eq!(p[0].unwrap().rect.x, 320 - 68);
    }

    #[test]
    fn the_more_confident_label_keeps_the_spot_and_the_other_moves() {
        let reqs = [
            Request {
                anchor: pbox(52, 40, 120, 90),
                texts: vec!["truck 0.91", "truck"],
                score: 0.91,
            },
            Request {
                anchor: pbox(50, 40, 120, 90),
                texts: vec!["car 0.99", "car"],
                score: 0.99,
            },
        ];
        let p = place(&reqs, size, 2, 320, 240);
        let (a, b) = (p[0].unwrap(), p[1].unwrap());
        assert_eq!(
            b.rect,
            Rect {
                x: 50,
                y: 24,
                w: 68,
                h: 16
            }
        );
        assert!(!a.rect.intersects(&b.rect));
    }

    #[test]
    fn labels_shorten_then_give_up_rather_than_overlap() {
        // A 100x40 picture: room for a few labels only.
        let reqs: Vec<Request> = (0..10)
            .map(|i| Request {
                anchor: pbox(10, 10, 90, 30),
                texts: vec!["motorcycle 0.95", "motorcycle"],
                score: 0.9 - i as f32 * 0.01,
            })
            .collect();
        let p = place(&reqs, size, 1, 100, 40);
        let placed: Vec<Placed> = p.iter().flatten().copied().collect();
        assert!(!placed.is_empty() && placed.len() < 10);
        assert!(
            placed.iter().all(|l| l.text == 1),
            "the full text is 122 px"
        );
        for (i, a) in placed.iter().enumerate() {
            assert!(a.rect.inside(100, 40));
            for b in &placed[i + 1..] {
                assert!(!a.rect.intersects(&b.rect));
            }
        }
    }

    #[test]
    fn rect_geometry() {
        let a = Rect {
            x: 0,
            y: 0,
            w: 10,
            h: 10,
        };
        assert!(a.intersects(&Rect {
            x: 9,
            y: 9,
            w: 5,
            h: 5
        }));
        assert!(!a.intersects(&Rect {
            x: 10,
            y: 0,
            w: 5,
            h: 5
        }));
        assert!(!a.intersects(&Rect {
            x: 0,
            y: 10,
            w: 5,
            h: 5
        }));
        assert!(a.inside(10, 10) && !a.inside(9, 10));
        assert!(!Rect {
            x: -1,
            y: 0,
            w: 2,
            h: 2
        }
        .inside(10, 10));
    }
}
