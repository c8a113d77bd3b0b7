//! Options shared by the subcommands: the model and the per-job parameters.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use vidinfer::model::{DeviceChoice, ModelConfig};
use vidinfer::params::{Overrides, Params};
use vidinfer::schema::OutputFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether logs are JSON lines: then every line on stderr is one (summaries and errors
/// included), for log pipelines.
pub fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The log filter: `VIDINFER_LOG`, else `RUST_LOG` (both in `tracing`'s EnvFilter
/// syntax, e.g. `info,vidinfer=debug`), else warnings plus vidinfer's own info lines.
fn log_filter(vidinfer_log: Option<&str>, rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    [vidinfer_log, rust_log]
        .into_iter()
        .flatten()
        .find_map(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new("warn,vidinfer=info,vidinfer_worker=info")
        })
}

/// Colour codes only for a person at a terminal: never when stderr is a file or a
/// pipe, never with `NO_COLOR` set (https://no-color.org).
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = log_filter(
        std::env::var("VIDINFER_LOG").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            builder.json().init()
        }
    }
}

/// Which model to load and how to run it.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// TorchScript model file (scripts/export_model.py writes one, with a .json sidecar
    /// naming its classes). SageMaker unpacks model.tar.gz to /opt/ml/model.
    #[arg(long, env = "VIDINFER_MODEL", default_value = "/opt/ml/model/model.pt")]
    pub model: PathBuf,

    /// Where the model runs: auto (CUDA when a GPU is present, else CPU), cpu, cuda,
    /// cuda:N.
    #[arg(long, env = "VIDINFER_DEVICE", default_value = "auto")]
    pub device: DeviceChoice,

    /// Frames per forward call. Larger batches help a GPU; on a CPU 1-4 is as fast.
    /// (Environment: also the legacy BATCH_SIZE.)
    #[arg(long, env = "VIDINFER_BATCH_SIZE", default_value_t = 4)]
    pub batch_size: usize,

    /// LibTorch intra-op threads (0: one per core).
    #[arg(long, env = "VIDINFER_TORCH_THREADS", default_value_t = 0)]
    pub torch_threads: usize,
}

impl ModelArgs {
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            path: self.model.clone(),
            device: self.device,
            batch_size: self.batch_size,
            threads: self.torch_threads,
            queue: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ResizeMode {
    /// Shrink to fit inside the frame size, keeping the aspect ratio (never enlarge).
    Fit,
    /// Stretch to exactly the frame size (the legacy behaviour).
    Stretch,
    /// Keep the video's own size.
    Original,
    /// Straight to the size the model resizes pictures to itself (its sidecar's
    /// min_size/max_size), so frames are scaled once: v2 from the video's size, legacy
    /// from the stretched frame size (boxes still in the old 1024x1024 coordinates).
    Model,
}

/// How frames are sampled and what the output holds.
#[derive(Args, Debug, Clone)]
pub struct ParamArgs {
    /// Keep every Nth frame (0, N, 2N, ...) [default: 30, the legacy system's].
    /// (Environment: also the legacy FRAME_INTERVAL.)
    #[arg(long, env = "VIDINFER_FRAME_INTERVAL")]
    pub frame_interval: Option<u32>,

    /// Keep frames at this rate instead of every Nth (the first frame at or after each
    /// 1/fps s). A flag typed on the command line beats the other one's environment
    /// variable; typing both is an error. (Environment: also VIDINFER_SAMPLE_FPS.)
    #[arg(long, env = "VIDINFER_FPS")]
    pub fps: Option<f64>,

    /// Start at this second of the video: decoding begins at the keyframe at or before
    /// it and frames before it are not kept. Indices and times stay those of the whole
    /// video, so a range gives exactly the frames a full run gives for that span.
    #[arg(long, env = "VIDINFER_START", value_name = "SECONDS")]
    pub start: Option<f64>,

    /// Stop at this second: frames at or after it are not kept, and decoding stops.
    #[arg(long, env = "VIDINFER_END", value_name = "SECONDS")]
    pub end: Option<f64>,

    /// Keep only the keyframes, decoding nothing else (for previews and triage of long
    /// videos: a keyframe every few seconds, found without decoding the frames between
    /// them). Instead of --frame-interval or --fps; a typed flag beats the others'
    /// environment variables, as between those two. (Environment: true/false, 1/0,
    /// yes/no, on/off.)
    #[arg(long, env = "VIDINFER_KEYFRAMES",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub keyframes: bool,

    /// Frame width the model sees (with --resize). (Environment: also FRAME_WIDTH.)
    #[arg(long, env = "VIDINFER_FRAME_WIDTH", default_value_t = 1024)]
    pub frame_width: u32,

    /// Frame height the model sees (with --resize). (Environment: also FRAME_HEIGHT.)
    #[arg(long, env = "VIDINFER_FRAME_HEIGHT", default_value_t = 1024)]
    pub frame_height: u32,

    /// How frames are brought to the frame size [default: fit; with --format legacy,
    /// stretch, so the legacy array is in the old system's 1024x1024 coordinates].
    /// `model` skips the model's second resize (scale once, to the model's own input
    /// size); detections differ slightly from the default's (README: Frame size).
    #[arg(long, env = "VIDINFER_RESIZE", value_enum)]
    pub resize: Option<ResizeMode>,

    /// Drop detections scoring below this (default: keep what the model returns).
    #[arg(long, env = "VIDINFER_MIN_SCORE")]
    pub min_score: Option<f32>,

    /// Include instance masks (COCO RLE over the source frame) in v2 output.
    #[arg(long, env = "VIDINFER_MASKS")]
    pub masks: bool,

    /// Output document: v2 (vidinfer/v2, boxes in source pixels) or legacy (the old
    /// array of {boxes, labels, scores}, boxes in frame pixels). (Environment: also
    /// VIDINFER_OUTPUT_FORMAT.)
    #[arg(long, env = "VIDINFER_FORMAT", default_value = "v2")]
    pub format: OutputFormat,

    /// Follow objects across sampled frames: each v2 detection gets a `track_id` and the
    /// document a `tracks` list (first/last frame, best score and box). `--track false`
    /// turns it off; the legacy array never carries tracks.
    #[arg(long, env = "VIDINFER_TRACK", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), help_heading = "Tracking")]
    pub track: bool,

    /// Detections at least this confident are matched to tracks first [default: 0.5].
    #[arg(long, env = "VIDINFER_TRACK_HIGH_SCORE", help_heading = "Tracking")]
    pub track_high_score: Option<f32>,

    /// Detections below this are never tracked; those between it and the high score
    /// only extend tracks (often the partly hidden objects) [default: 0.1].
    #[arg(long, env = "VIDINFER_TRACK_LOW_SCORE", help_heading = "Tracking")]
    pub track_low_score: Option<f32>,

    /// Unmatched detections at least this confident start a new track [default: 0.6].
    #[arg(long, env = "VIDINFER_TRACK_NEW_SCORE", help_heading = "Tracking")]
    pub track_new_score: Option<f32>,

    /// Smallest overlap (IoU) between a track's predicted box and a detection to match
    /// [default: 0.2].
    #[arg(long, env = "VIDINFER_TRACK_IOU", help_heading = "Tracking")]
    pub track_iou: Option<f32>,

    /// Seconds a lost track is remembered, so an object hidden for a moment keeps its
    /// id [default: 1.0].
    #[arg(long, env = "VIDINFER_TRACK_BUFFER_S", help_heading = "Tracking")]
    pub track_buffer_s: Option<f64>,
}

/// One way to choose the sampling: its flag, its argument id, and the environment
/// names told in errors.
struct SamplingChoice {
    flag: &'static str,
    id: &'static str,
    env: &'static str,
}

const SAMPLINGS: [SamplingChoice; 3] = [
    SamplingChoice {
        flag: "--frame-interval",
        id: "frame_interval",
        env: "VIDINFER_FRAME_INTERVAL (or FRAME_INTERVAL)",
    },
    SamplingChoice {
        flag: "--fps",
        id: "fps",
        env: "VIDINFER_FPS (or VIDINFER_SAMPLE_FPS)",
    },
    SamplingChoice {
        flag: "--keyframes",
        id: "keyframes",
        env: "VIDINFER_KEYFRAMES",
    },
];

/// The `name` of each of [`SAMPLINGS`] picked by `pick`, as "a and b" or "a, b and c".
fn sampling_names(pick: impl Fn(usize) -> bool, name: fn(&SamplingChoice) -> &str) -> String {
    let names: Vec<&str> = (0..SAMPLINGS.len())
        .filter(|&i| pick(i))
        .map(|i| name(&SAMPLINGS[i]))
        .collect();
    match names.as_slice() {
        [init @ .., last] if !init.is_empty() => format!("{} and {last}", init.join(", ")),
        _ => names.join(""),
    }
}

/// Of the sampling choices that have a value (`given`, in [`SAMPLINGS`] order), which
/// to keep, by where each came from (`typed`: on the command line, else the
/// environment): the one typed beats the others' environment variables; two typed, or
/// two from the environment and none typed, is an error that names them.
fn settle(given: [bool; 3], typed: [bool; 3]) -> Result<[bool; 3], String> {
    if given.iter().filter(|&&g| g).count() <= 1 {
        return Ok(given);
    }
    let typed_given: Vec<usize> = (0..3).filter(|&i| given[i] && typed[i]).collect();
    match typed_given.as_slice() {
        [] => Err(format!(
            "the environment sets both {}: unset all but one, or choose with \
             --frame-interval, --fps or --keyframes",
            sampling_names(|i| given[i], |c| c.env)
        )),
        &[one] => {
            tracing::debug!(
                "{} given: {} ignored",
                SAMPLINGS[one].flag,
                sampling_names(|i| given[i] && i != one, |c| c.env)
            );
            Ok(std::array::from_fn(|i| i == one))
        }
        _ => Err(format!(
            "{} were both given: keep every Nth frame, frames at a rate, or the \
             keyframes, only one of them",
            sampling_names(|i| given[i] && typed[i], |c| c.flag)
        )),
    }
}

impl ParamArgs {
    /// Choose between every-Nth-frame, a rate and keyframes when more than one has a
    /// value, by where each came from: a typed flag beats the others' environment
    /// variables (a deployment's `FRAME_INTERVAL=30` must not make a typed `--fps 2`
    /// an error); two typed, or two from the environment, is a mistake the message
    /// names.
    pub fn settle_sampling(&mut self, matches: &clap::ArgMatches) -> Result<(), String> {
        let given = [
            self.frame_interval.is_some(),
            self.fps.is_some(),
            self.keyframes,
        ];
        let typed = SAMPLINGS
            .map(|c| matches.value_source(c.id) == Some(clap::parser::ValueSource::CommandLine));
        let [interval, fps, keyframes] = settle(given, typed)?;
        if !interval {
            self.frame_interval = None;
        }
        if !fps {
            self.fps = None;
        }
        self.keyframes = keyframes;
        Ok(())
    }

    /// The job parameters these flags describe, checked by the same validator as a
    /// request's custom attributes and `params` ([`Overrides::apply`]).
    pub fn params(&self) -> anyhow::Result<Params> {
        let resize = self.resize.map(|r| match r {
            ResizeMode::Fit => "fit",
            ResizeMode::Stretch => "stretch",
            ResizeMode::Original => "original",
            ResizeMode::Model => "model",
        });
        let flags = Overrides {
            frame_interval: (self.fps.is_none() && !self.keyframes)
                .then_some(self.frame_interval.unwrap_or(30)),
            fps: self.fps,
            start_s: self.start,
            end_s: self.end,
            sampling: self.keyframes.then(|| "keyframes".to_string()),
            min_score: self.min_score,
            format: Some(
                match self.format {
                    OutputFormat::V2 => "v2",
                    OutputFormat::Legacy => "legacy",
                }
                .to_string(),
            ),
            masks: Some(self.masks),
            resize: resize.map(str::to_string),
            frame_width: Some(self.frame_width),
            frame_height: Some(self.frame_height),
            track: Some(self.track),
            track_high_score: self.track_high_score,
            track_low_score: self.track_low_score,
            track_new_score: self.track_new_score,
            track_iou: self.track_iou,
            track_buffer_s: self.track_buffer_s,
            segment_seconds: None,
        };
        flags
            .apply(&Params::default())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_filter_comes_from_vidinfer_log_then_rust_log() {
        assert_eq!(
            log_filter(Some("debug"), Some("error")).to_string(),
            "debug"
        );
        assert_eq!(
            log_filter(None, Some("vidinfer=trace")).to_string(),
            "vidinfer=trace"
        );
        // An unparsable value falls through to the next.
        assert_eq!(log_filter(Some("a=[x"), Some("error")).to_string(), "error");
        assert!(log_filter(None, None).to_string().contains("vidinfer=info"));
    }

    #[test]
    fn a_typed_sampling_beats_the_environment_and_two_of_a_kind_are_an_error() {
        let (f, t) = (false, true);
        // Only one given: kept whatever its source.
        assert_eq!(settle([t, f, f], [f, f, f]), Ok([t, f, f]));
        // Typed --keyframes over FRAME_INTERVAL (and VIDINFER_FPS) from the environment.
        assert_eq!(settle([t, f, t], [f, f, t]), Ok([f, f, t]));
        assert_eq!(settle([t, t, t], [f, f, t]), Ok([f, f, t]));
        // Typed --frame-interval over VIDINFER_KEYFRAMES.
        assert_eq!(settle([t, f, t], [t, f, f]), Ok([t, f, f]));
        let e = settle([f, t, t], [f, t, t]).unwrap_err();
        assert!(
            e.starts_with("--fps and --keyframes were both given"),
            "{e}"
        );
        let e = settle([t, t, t], [f, f, f]).unwrap_err();
        assert!(
            e.contains("the environment sets both") && e.contains("VIDINFER_KEYFRAMES"),
            "{e}"
        );

        // Through clap: what value_source reports for the typed flags.
        use clap::{Args, FromArgMatches};
        let cmd = ParamArgs::augment_args(clap::Command::new("t"));
        let m = cmd
            .try_get_matches_from(["t", "--keyframes", "--frame-interval", "5"])
            .unwrap();
        let mut a = ParamArgs::from_arg_matches(&m).unwrap();
        let e = a.settle_sampling(&m).unwrap_err();
        assert!(
            e.starts_with("--frame-interval and --keyframes were both given"),
            "{e}"
        );
        let cmd = ParamArgs::augment_args(clap::Command::new("t"));
        let m = cmd.try_get_matches_from(["t", "--keyframes"]).unwrap();
        let mut a = ParamArgs::from_arg_matches(&m).unwrap();
        a.settle_sampling(&m).unwrap();
        assert_eq!(
            a.params().unwrap().sampling,
            vidinfer::video::Sampling::Keyframes
        );
    }

    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
