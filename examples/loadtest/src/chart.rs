//! `chart.png`: four panels over one time axis (seconds since the start of the run),
//! drawn from the events with plotters into an RGB buffer and encoded as PNG:
//!
//! 1. backlog: the queue's visible and not-visible (in-flight) messages;
//! 2. in flight: requests sent and not yet notified, as the client sees them;
//! 3. completions per minute (and failures), in fixed buckets;
//! 4. the fleet: worker processes (and the autoscaler's desired count) or SageMaker
//!    instances.
//!
//! Text needs a TrueType font, read at run time ([`load_font`]); without one the chart
//! is drawn all the same, lines only.

use std::path::Path;

use anyhow::Context;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::record::{Event, Kind};

/// The default font: Debian's `fonts-dejavu-core`.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Register the TrueType font at `path` as plotters' sans-serif. Returns false when it
/// cannot be read or parsed; the chart is then drawn without text.
pub fn load_font(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // plotters keeps fonts for the life of the process; one font, loaded once per run.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
}

/// How the chart is drawn.
#[derive(Debug, Clone)]
pub struct ChartOptions {
    pub width: u32,
    pub height: u32,
    /// Draw titles, axis labels and legends (needs a font registered with
    /// [`load_font`]).
    pub text: bool,
    pub title: String,
}

/// Points (t, v) as a step function: each value holds until the next point.
fn steps(points: &[(f64, f64)], t_end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push((t, points[i - 1].1));
        }
        out.push((t, v));
    }
    if let Some(&(t, v)) = points.last() {
        if t_end > t {
            out.push((t_end, v));
        }
    }
    out
}

/// Everything the panels plot, derived from the events.
#[derive(Debug, Default, PartialEq)]
pub struct Series {
    pub t_end: f64,
    pub visible: Vec<(f64, f64)>,
    pub not_visible: Vec<(f64, f64)>,
    pub in_flight: Vec<(f64, f64)>,
    /// Bucket width of the completion rates, seconds.
    pub bucket_s: f64,
    pub completed_per_min: Vec<(f64, f64)>,
    pub failed_per_min: Vec<(f64, f64)>,
    pub workers: Vec<(f64, f64)>,
    pub desired: Vec<(f64, f64)>,
    pub instances: Vec<(f64, f64)>,
}

impl Series {
    pub fn from_events(events: &[Event]) -> Series {
        let mut ev: Vec<&Event> = events.iter().collect();
        ev.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let t_end = ev.last().map_or(1.0, |e| e.t_s).max(1.0);
        let mut s = Series {
            t_end,
            ..Series::default()
        };
        let mut in_flight = 0.0;
        s.in_flight.push((0.0, 0.0));
        for e in &ev {
            let change = match e.event {
                Kind::Sent => 1.0,
                Kind::Notified if e.duplicate != Some(true) => -1.0,
                _ => 0.0,
            };
            if change != 0.0 {
                in_flight += change;
                s.in_flight.push((e.t_s, in_flight));
            }
            if matches!(e.event, Kind::Sample | Kind::Scale) {
                if let (Some(v), Some(n)) = (e.visible, e.not_visible) {
                    s.visible.push((e.t_s, v as f64));
                    s.not_visible.push((e.t_s, n as f64));
                }
                if let Some(d) = e.desired {
                    s.desired.push((e.t_s, f64::from(d)));
                }
                if let Some(i) = e.instances {
                    s.instances.push((e.t_s, f64::from(i)));
                }
            }
            if let Some(w) = e.workers {
                s.workers.push((e.t_s, f64::from(w)));
            }
        }
        // About 60 buckets over the run, at least 5 s each.
        s.bucket_s = (t_end / 60.0).ceil().max(5.0);
        let n = (t_end / s.bucket_s).ceil() as usize + 1;
        let (mut ok, mut bad) = (vec![0usize; n], vec![0usize; n]);
        for e in ev
            .iter()
            .filter(|e| e.event == Kind::Notified && e.duplicate != Some(true))
        {
            let i = ((e.t_s / s.bucket_s) as usize).min(n - 1);
            if e.status.as_deref() == Some("Completed") {
                ok[i] += 1;
            } else {
                bad[i] += 1;
            }
        }
        let scale = 60.0 / s.bucket_s;
        for i in 0..n {
            let t = i as f64 * s.bucket_s;
            s.completed_per_min.push((t, ok[i] as f64 * scale));
            s.failed_per_min.push((t, bad[i] as f64 * scale));
        }
        s
    }
}

/// The top of a panel's y axis: room above the data for the legend.
fn top(series: &[&[(f64, f64)]]) -> f64 {
    let m = series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    (m * 1.5).max(m + 2.0)
}

/// Axis labels for counts and seconds: whole numbers only (a fractional tick of a
/// count means nothing), and no `.0`.
fn whole(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{:.0}", v)
    } else {
        String::new()
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

struct Line {
    label: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

fn line(label: &'static str, colour: RGBColor, points: Vec<(f64, f64)>) -> Line {
    Line {
        label,
        colour,
        points,
    }
}

fn panel(
    area: &Area<'_>,
    opts: &ChartOptions,
    title: &str,
    y_desc: &str,
    t_end: f64,
    lines: &[Line],
    last: bool,
) -> anyhow::Result<()> {
    let y_max = top(&lines
        .iter()
        .map(|l| l.points.as_slice())
        .collect::<Vec<_>>());
    let mut builder = ChartBuilder::on(area);
    builder.margin(10);
    if opts.text {
        builder
            .caption(title, ("sans-serif", 18))
            .x_label_area_size(if last { 40 } else { 28 })
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0f64..t_end, 0f64..y_max)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if opts.text {
        mesh.label_style(("sans-serif", 13))
            .y_desc(y_desc)
            .x_label_formatter(&whole)
            .y_label_formatter(&whole)
            .y_labels(((y_max.ceil() as usize) + 1).min(8));
        if last {
            mesh.x_desc("seconds since the start of the run");
        }
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for l in lines.iter().filter(|l| !l.points.is_empty()) {
        let style = l.colour.stroke_width(2);
        let series = chart.draw_series(LineSeries::new(l.points.iter().copied(), style))?;
        if opts.text {
            series
                .label(l.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    if opts.text && lines.iter().any(|l| !l.points.is_empty()) {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// The fleet panel's lines and title: the autoscaler's wish first, so the workers
/// actually running draw on top; or the SageMaker instances.
fn fleet_lines(s: &Series) -> (Vec<Line>, &'static str) {
    let t = s.t_end;
    let mut fleet = Vec::new();
    if !s.desired.is_empty() {
        fleet.push(line("desired (autoscaler)", ORANGE, steps(&s.desired, t)));
    }
    if !s.workers.is_empty() {
        fleet.push(line("workers running", GREY, steps(&s.workers, t)));
    }
    if !s.instances.is_empty() {
        fleet.push(line("instances", GREY, steps(&s.instances, t)));
    }
    let title = if fleet.is_empty() {
        "fleet (not observed)"
    } else if s.instances.is_empty() {
        "workers"
    } else {
        "SageMaker instances (from scaling activities)"
    };
    (fleet, title)
}

/// Draw the four panels, one above the other, into `body`.
fn draw_panels(body: &Area<'_>, s: &Series, opts: &ChartOptions) -> anyhow::Result<()> {
    let panels = body.split_evenly((4, 1));
    let t = s.t_end;
    let backlog_title = if s.visible.is_empty() {
        "backlog (not observed for this target: see the in-flight panel)"
    } else {
        "backlog: messages in the job queue"
    };
    panel(
        &panels[0],
        opts,
        backlog_title,
        "messages",
        t,
        &[
            line("visible", BLUE, steps(&s.visible, t)),
            line("not visible (in flight)", ORANGE, steps(&s.not_visible, t)),
        ],
        false,
    )?;
    panel(
        &panels[1],
        opts,
        "in flight: sent, not yet notified",
        "requests",
        t,
        &[line("in flight", PURPLE, steps(&s.in_flight, t))],
        false,
    )?;
    let rate_title = format!(
        "completions per minute ({} s buckets)",
        s.bucket_s.round() as u64
    );
    panel(
        &panels[2],
        opts,
        &rate_title,
        "per minute",
        t,
        &[
            line("completed", GREEN, steps(&s.completed_per_min, t)),
            line("failed", RED, steps(&s.failed_per_min, t)),
        ],
        false,
    )?;
    let (fleet, fleet_title) = fleet_lines(s);
    panel(&panels[3], opts, fleet_title, "count", t, &fleet, true)
}

/// Encode an RGB buffer of `w`x`h` pixels as a PNG at `path`.
fn write_png(path: &Path, buf: &[u8], w: u32, h: u32) -> anyhow::Result<()> {
    // Flat colours and thin lines compress well: the best level makes the file about
    // four times smaller than the encoder's fast default, for a few milliseconds.
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create {}: check --out", path.display()))?;
    let encoder = PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
        CompressionType::Best,
        FilterType::Adaptive,
    );
    encoder
        .write_image(buf, w, h, ExtendedColorType::Rgb8)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Draw the chart for `events` into a PNG at `path`.
pub fn draw(path: &Path, events: &[Event], opts: &ChartOptions) -> anyhow::Result<()> {
    let (w, h) = (opts.width, opts.height);
    anyhow::ensure!(
        (200..=10_000).contains(&w) && (200..=10_000).contains(&h),
        "the chart size {w}x{h} is out of range: use 200 to 10000 pixels a side"
    );
    let s = Series::from_events(events);
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = if opts.text {
            root.titled(&opts.title, ("sans-serif", 22))?
        } else {
            root.clone()
        };
        draw_panels(&body, &s, opts)?;
        root.present()?;
    }
    write_png(path, &buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_s: f64, event: Kind) -> Event {
        Event {
            t_s,
            event,
            ..Event::default()
        }
    }

    fn events() -> Vec<Event> {
        let mut out = Vec::new();
        for i in 0..4 {
            let mut e = ev(0.5 * f64::from(i), Kind::Sent);
            e.inference_id = Some(format!("r{i}"));
            out.push(e);
        }
        for (i, t) in [(0, 7.0), (1, 8.0), (2, 12.0)] {
            let mut e = ev(t, Kind::Notified);
            e.inference_id = Some(format!("r{i}"));
            e.status = Some(if i == 2 { "Failed" } else { "Completed" }.into());
            e.duplicate = Some(false);
            out.push(e);
        }
        let mut dup = out[4].clone();
        dup.t_s = 13.0;
        dup.duplicate = Some(true);
        out.push(dup);
        for (t, v, n, w) in [
            (0.0, 0, 0, 0),
            (1.0, 4, 0, 1),
            (6.0, 1, 2, 3),
            (14.0, 0, 0, 1),
        ] {
            let mut e = ev(t, Kind::Sample);
            e.visible = Some(v);
            e.not_visible = Some(n);
            e.workers = Some(w);
            e.desired = Some(w);
            out.push(e);
        }
        out
    }

    #[test]
    fn series_follow_the_events() {
        let s = Series::from_events(&events());
        assert_eq!(s.t_end, 14.0);
        assert_eq!(s.in_flight.last(), Some(&(12.0, 1.0)), "one never notified");
        assert_eq!(s.in_flight.iter().map(|p| p.1).fold(0.0, f64::max), 4.0);
        assert_eq!(s.bucket_s, 5.0);
        // 5 s buckets: two completions in [5, 10), one failure in [10, 15).
        assert_eq!(s.completed_per_min[1], (5.0, 24.0));
        assert_eq!(s.failed_per_min[2], (10.0, 12.0));
        assert_eq!(s.workers.iter().map(|p| p.1).fold(0.0, f64::max), 3.0);
        assert_eq!(s.visible.len(), 4);
    }

    #[test]
    fn steps_hold_each_value_until_the_next() {
        assert_eq!(
            steps(&[(0.0, 1.0), (2.0, 3.0)], 5.0),
            vec![(0.0, 1.0), (2.0, 1.0), (2.0, 3.0), (5.0, 3.0)]
        );
        assert!(steps(&[], 5.0).is_empty());
    }

    /// No font is registered in the unit tests: the text-free chart must not need one.
    #[test]
    fn draws_a_png_without_a_font() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let opts = ChartOptions {
            width: 640,
            height: 480,
            text: false,
            title: "t".into(),
        };
        draw(&path, &events(), &opts).unwrap();
        let (w, h) = image::image_dimensions(&path).unwrap();
        assert_eq!((w, h), (640, 480));
        draw(&path, &[], &opts).unwrap();
        assert!(draw(&path, &[], &ChartOptions { width: 10, ..opts }).is_err());
    }
}
