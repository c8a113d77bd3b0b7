//! `gifgen`: render an annotated GIF or MP4 from a video and its detections. This file
//! is the command line only; reading, matching, drawing and encoding live in the
//! library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use gifgen::{plan, Job, Kind, LegacyOptions, RenderOptions};

const LONG_ABOUT: &str = "\
Render the sampled frames of a video with their detections drawn on them (a box in a \
stable colour per class or track, a \"name score\" label, optionally the instance mask) \
into an animated GIF that loops forever, or an H.264 MP4 that plays in a browser: the \
output's extension (.gif or .mp4) decides. Labels never cover one another: on a crowded \
picture they move aside, shrink to the class name, or are left out.

Two kinds of predictions are read:
  * vidinfer/v2 documents (`vidinfer-worker run`): the sampling is taken from the \
document and frames are matched by their frame index; boxes are in video pixels.
  * the legacy array [{\"boxes\", \"labels\", \"scores\"}, ...] of the old \
generate_gif.py: one element per sampled frame, matched by position over every \
--frame-interval-th frame, boxes in the pixels of the --frame-width x --frame-height \
picture the model saw. The old script's flags work unchanged, and these three read \
the worker's environment names too: VIDINFER_FRAME_INTERVAL, VIDINFER_FRAME_WIDTH, \
VIDINFER_FRAME_HEIGHT, or the legacy FRAME_INTERVAL, FRAME_WIDTH, FRAME_HEIGHT (a flag \
on the command line wins).

Predictions that do not fit the video (another frame count, an index the video does not \
have, boxes outside the frame) are refused with an error saying what differs.

Examples:
  # A v2 document, masks on, 480 pixels wide, 5 frames per second:
  gifgen --video clip.mp4 --predictions clip.json -o clip.gif --masks --width 480 --fps 5

  # Tracks: one colour per object and the path it took:
  gifgen --video clip.mp4 --predictions clip.json -o tracks.gif --color-by track --trails

  # An MP4 at the video's own speed: every frame, each with the latest sample's boxes:
  gifgen --video clip.mp4 --predictions clip.json -o clip.mp4 --all-frames

  # Output of the old pipeline, with the old script's flags:
  gifgen --video clip.mp4 --predictions legacy.json --output-path clip.gif \\
      --frame-interval 30 --frame-width 1024 --frame-height 1024 --score-threshold 0.9 \\
      --frames-dir frames/";

/// Render a video's detections into an annotated, looping GIF or an MP4.
#[derive(Parser, Debug)]
#[command(name = "gifgen", version, long_about = LONG_ABOUT)]
struct Cli {
    /// The video the predictions were made on (a local file).
    #[arg(long, value_name = "PATH")]
    video: String,

    /// The predictions: a vidinfer/v2 JSON document or a legacy JSON array (a local file).
    #[arg(long, value_name = "PATH")]
    predictions: String,

    /// Where to write the result: .gif or .mp4 (written as <PATH>.partial, renamed
    /// when complete).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "output-path",
        value_name = "PATH",
        default_value = "output.gif"
    )]
    output: PathBuf,

    /// Draw detections scoring strictly above this, a number in [0, 1].
    #[arg(long, value_name = "SCORE", default_value_t = 0.9, value_parser = parse_unit)]
    score_threshold: f32,

    /// How long each frame shows, in milliseconds (GIFs count in 10 ms steps; at least
    /// 20, as viewers slow faster frames down to 100 ms).
    #[arg(long, value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(20..=655_350))]
    frame_duration_ms: u32,

    /// Frames per second instead of --frame-duration-ms (at most 50).
    #[arg(long, value_name = "FPS", conflicts_with = "frame_duration_ms", value_parser = parse_fps)]
    fps: Option<f64>,

    /// Output width in pixels; the height keeps the video's aspect ratio. Default: the
    /// video's own size.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..=65_535))]
    width: Option<u32>,

    /// Blend each detection's instance mask over the picture (v2 documents made with
    /// `vidinfer-worker run --masks`).
    #[arg(long)]
    masks: bool,

    /// Box colour by `class`, or by `track` (v2 documents with tracking: each object
    /// keeps its colour across frames). Labels show `#id` whenever a detection has one.
    #[arg(long, value_name = "BY", value_enum, default_value = "class")]
    color_by: gifgen::render::ColorBy,

    /// Draw each track's recent path: a line through its box centres over the last 24
    /// sampled frames, in the track's colour.
    #[arg(long)]
    trails: bool,

    /// MP4 only: draw every frame of the video, each with the latest sampled frame's
    /// detections, so the result plays at the video's own speed (--fps and
    /// --frame-duration-ms then do not apply).
    #[arg(long)]
    all_frames: bool,

    /// Also write every annotated frame as a PNG into this directory, named
    /// frame_NNNNNN.png after the frame's index in the video.
    #[arg(long, value_name = "DIR")]
    frames_dir: Option<PathBuf>,

    /// Legacy arrays: the predictions are for frames 0, N, 2N, … (v2 documents state
    /// their own sampling). (Environment: also the legacy FRAME_INTERVAL.)
    #[arg(long, value_name = "N", default_value_t = 30, env = "VIDINFER_FRAME_INTERVAL",
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Legacy predictions")]
    frame_interval: u32,

    /// Legacy arrays: width of the picture the model saw, which the boxes' x refer to
    /// (each frame was stretched to it). (Environment: also FRAME_WIDTH.)
    #[arg(long, value_name = "PX", default_value_t = 1024, env = "VIDINFER_FRAME_WIDTH",
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Legacy predictions")]
    frame_width: u32,

    /// Legacy arrays: height of the picture the model saw, which the boxes' y refer to.
    /// (Environment: also FRAME_HEIGHT.)
    #[arg(long, value_name = "PX", default_value_t = 1024, env = "VIDINFER_FRAME_HEIGHT",
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Legacy predictions")]
    frame_height: u32,

    /// Legacy arrays: class names by label id, either a JSON file (a model's .json
    /// sidecar with "classes", or an array of names) or a comma-separated list starting
    /// at id 0, e.g. __background__,square,circle. Default: torchvision's 91 COCO names.
    #[arg(long, value_name = "FILE|LIST", help_heading = "Legacy predictions")]
    classes: Option<String>,
}

fn parse_unit(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number in [0, 1]")),
    }
}

fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 50.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a frame rate in (0, 50] (GIF viewers slow faster frames down)"
        )),
    }
}

/// Class names from `--classes`: a JSON file or a comma-separated list.
fn load_classes(value: &str) -> Result<Vec<String>> {
    let path = std::path::Path::new(value);
    if path.is_file() {
        let bytes = gifgen::input::read_input(value)?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("--classes {value}: not JSON"))?;
        let list = match &json {
            serde_json::Value::Array(_) => &json,
            serde_json::Value::Object(o) => o
                .get("classes")
                .or_else(|| o.get("model").and_then(|m| m.get("classes")))
                .unwrap_or(&serde_json::Value::Null),
            _ => &serde_json::Value::Null,
        };
        return serde_json::from_value::<Vec<String>>(list.clone()).map_err(|_| {
            anyhow::anyhow!(
                "--classes {value}: expected an array of class names or an object with \
                 \"classes\" (a model's .json sidecar)"
            )
        });
    }
    if value.ends_with(".json") {
        bail!("--classes {value}: no such file");
    }
    Ok(value.split(',').map(|s| s.trim().to_string()).collect())
}

fn explicit(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

fn main() -> ExitCode {
    // The options it shares with the worker read the same environment names.
    let matches = vidinfer_media::cli::with_env_aliases(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tell the user which legacy-only flags a v2 document made moot.
fn note_ignored_legacy_flags(matches: &ArgMatches) {
    let ignored: Vec<&str> = ["frame_interval", "frame_width", "frame_height", "classes"]
        .into_iter()
        .filter(|id| explicit(matches, id))
        .collect();
    if !ignored.is_empty() {
        let flags: Vec<String> = ignored
            .iter()
            .map(|id| format!("--{}", id.replace('_', "-")))
            .collect();
        eprintln!(
            "note: {} only apply to legacy predictions; this v2 document states its own \
             sampling, frame size and class names",
            flags.join(", ")
        );
    }
}

fn run(cli: Cli, matches: &ArgMatches) -> Result<()> {
    let frame_ms = match cli.fps {
        Some(fps) => (1000.0 / fps).round() as u32,
        None => cli.frame_duration_ms,
    };
    let classes = match &cli.classes {
        Some(v) => load_classes(v)?,
        None => plan::coco_classes(),
    };
    let job = Job {
        video: cli.video.clone(),
        predictions: cli.predictions.clone(),
        output: cli.output.clone(),
        frames_dir: cli.frames_dir.clone(),
        frame_ms,
        render: RenderOptions {
            score_threshold: cli.score_threshold,
            width: cli.width,
            masks: cli.masks,
            color_by: cli.color_by,
            trails: cli.trails,
            all_frames: cli.all_frames,
            even_size: false,
        },
        legacy: LegacyOptions {
            frame_interval: cli.frame_interval,
            frame_width: cli.frame_width,
            frame_height: cli.frame_height,
            classes,
        },
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let show_progress = std::io::stderr().is_terminal();
    let report = gifgen::run(&job, |done, total| {
        if !show_progress {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let template = if total == 0 {
                "{spinner} drawing frames {pos} ({elapsed})"
            } else {
                "{spinner} drawing frames [{bar:30}] {pos}/{len} ({elapsed})"
            };
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            b
        });
        b.set_position(done as u64);
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = report?;
    if report.kind == Kind::V2 {
        note_ignored_legacy_flags(matches);
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let s = &report.summary;
    let pace = match (report.format, cli.all_frames) {
        (gifgen::Format::Mp4, true) => "at the video's own speed".to_string(),
        (gifgen::Format::Mp4, false) => format!("{frame_ms} ms each"),
        (gifgen::Format::Gif, _) => format!(
            "{} ms each",
            u32::from(gifgen::encode::delay_centiseconds(frame_ms)) * 10
        ),
    };
    eprintln!(
        "wrote {}: {} frames, {}x{}, {pace}",
        cli.output.display(),
        s.frames,
        s.width,
        s.height,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_come_from_a_sidecar_an_array_or_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let sidecar = dir.path().join("model.json");
        std::fs::write(&sidecar, br#"{"name": "m", "classes": ["bg", "cat"]}"#).unwrap();
        assert_eq!(
            load_classes(sidecar.to_str().unwrap()).unwrap(),
            ["bg", "cat"]
        );
        let array = dir.path().join("classes.json");
        std::fs::write(&array, br#"["bg", "dog"]"#).unwrap();
        assert_eq!(
            load_classes(array.to_str().unwrap()).unwrap(),
            ["bg", "dog"]
        );
        assert_eq!(load_classes("bg, a,b").unwrap(), ["bg", "a", "b"]);
        let e = load_classes("nope.json").unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        std::fs::write(&array, br#"{"labels": []}"#).unwrap();
        let e = load_classes(array.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected an array of class names"), "{e}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let m = Cli::command()
            .try_get_matches_from([
                "gifgen",
                "--video",
                "v",
                "--predictions",
                "p",
                "--output-path",
                "x.gif",
            ])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.output, PathBuf::from("x.gif"));
        assert_eq!(
            (cli.frame_interval, cli.frame_width, cli.frame_height),
            (30, 1024, 1024)
        );
        assert_eq!((cli.score_threshold, cli.frame_duration_ms), (0.9, 200));
        assert!(!explicit(&m, "frame_interval"));
        let m = Cli::command()
            .try_get_matches_from([
                "gifgen",
                "--video",
                "v",
                "--predictions",
                "p",
                "--frame-interval",
                "30",
            ])
            .unwrap();
        assert!(explicit(&m, "frame_interval"));
    }
}
