//! gifgen: draw a video's detections onto its sampled frames and encode them as an
//! animated GIF or an H.264 MP4 (chosen by the output's extension).
//!
//! Frames come from vidinfer's own decoder with the sampling the worker used, so frame
//! indices match the predictions'. The pieces, each usable on its own:
//! - [`input`]: where the video and the predictions are read from;
//! - [`plan`]: a predictions document (v2 or legacy) as "what to draw on which frame",
//!   and the checks that it fits the video;
//! - [`render`]: decode, match, draw ([`draw`]: palette, boxes, masks; [`label`]:
//!   where labels go; [`text`]: the embedded font);
//! - [`encode`]: palette quantisation that keeps drawn colours exact, and the GIF
//!   (changed pixels only after the first frame); MP4 goes through
//!   [`vidinfer_media::video::Mp4Writer`].
//!
//! [`run`] ties them together for the binary.

pub mod draw;
pub mod encode;
pub mod input;
pub mod label;
pub mod plan;
pub mod render;
pub mod text;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use vidinfer_media::schema::Predictions;
use vidinfer_media::video::Mp4Writer;

pub use encode::GifWriter;
pub use plan::{Kind, LegacyOptions, Plan};
pub use render::{RenderOptions, Summary};

/// What the output file is, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An animated GIF that loops forever.
    Gif,
    /// H.264 (yuv420p) in MP4, playable in a browser.
    Mp4,
}

impl Format {
    /// `.gif` or `.mp4` (any case); anything else is refused with the reason.
    pub fn from_path(output: &Path) -> Result<Format> {
        let ext = output
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("gif") => Ok(Format::Gif),
            Some("mp4") => Ok(Format::Mp4),
            Some(other) => bail!(
                "the output {} ends in .{other}: gifgen writes .gif or .mp4",
                output.display()
            ),
            None => bail!(
                "the output {} has no extension: name it .gif or .mp4",
                output.display()
            ),
        }
    }
}

/// One GIF or MP4 to make.
#[derive(Debug, Clone)]
pub struct Job {
    /// The video's location.
    pub video: String,
    /// The predictions' location.
    pub predictions: String,
    /// Where the GIF or MP4 goes (the extension decides which).
    pub output: PathBuf,
    /// Also write each annotated frame as `frame_NNNNNN.png` (video frame index) here.
    pub frames_dir: Option<PathBuf>,
    /// How long each frame shows, in milliseconds.
    pub frame_ms: u32,
    pub render: RenderOptions,
    /// How to read a legacy array (ignored for v2 documents).
    pub legacy: LegacyOptions,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: Kind,
    /// What was written (from the output's extension).
    pub format: Format,
    pub summary: Summary,
    /// Things the user may want to know (e.g. `--masks` with no masks to draw, the
    /// geometry a legacy array was read with).
    pub notes: Vec<String>,
    /// Signs that the picture may be wrong (legacy boxes that do not look like they
    /// belong to the frame size they were read in).
    pub warnings: Vec<String>,
}

/// Read the predictions as a plan (parsing either document kind).
pub fn load_plan(location: &str, legacy: &LegacyOptions) -> Result<Plan> {
    let bytes = input::read_input(location)?;
    let preds = Predictions::parse(&bytes).with_context(|| {
        format!(
            "reading the predictions {location} (expected a vidinfer/v2 document or a \
             legacy array of {{\"boxes\", \"labels\", \"scores\"}})"
        )
    })?;
    Plan::new(&preds, legacy).with_context(|| format!("reading the predictions {location}"))
}

/// The file name of the PNG for video frame `index` in `--frames-dir`.
pub fn frame_file_name(index: u64) -> String {
    format!("frame_{index:06}.png")
}

/// Check what can be checked before anything is read or decoded: the output's kind
/// and directory, and the options that depend on the kind. Returns the kind.
pub fn check(job: &Job) -> Result<Format> {
    let format = Format::from_path(&job.output)?;
    partial_path(&job.output)?;
    ensure!(
        !job.render.all_frames || format == Format::Mp4,
        "--all-frames writes every frame of the video: give an .mp4 output (a GIF of \
         every frame would be enormous)"
    );
    Ok(format)
}

/// Notes about what the options will do with this plan.
fn notes_for(job: &Job, plan: &Plan) -> Vec<String> {
    let mut notes: Vec<String> = plan.describe_geometry().into_iter().collect();
    if job.render.masks && !plan.has_masks {
        notes.push(match plan.kind {
            Kind::Legacy => "legacy predictions carry no masks: --masks draws nothing".into(),
            Kind::V2 => "the predictions carry no masks (the worker ran without --masks): \
                         --masks draws nothing"
                .into(),
        });
    }
    let wants_tracks = job.render.color_by == render::ColorBy::Track || job.render.trails;
    let has_tracks = plan
        .frames
        .iter()
        .any(|f| f.detections.iter().any(|d| d.track_id.is_some()));
    if wants_tracks && !has_tracks {
        notes.push(
            "the predictions carry no track ids (legacy output, or the worker ran with \
             --track false): --color-by track and --trails fall back to class colours"
                .into(),
        );
    }
    notes
}

/// Make the GIF or MP4 (and the PNGs) for `job`. `progress(done, total)` is called as
/// frames are finished (`total` 0: not known). The output appears at `job.output` only
/// when everything succeeded.
///
/// Two threads share the work: this one decodes and draws, a second one encodes and
/// writes, a couple of frames behind.
pub fn run(job: &Job, progress: impl FnMut(usize, usize) + Send) -> Result<Report> {
    let format = check(job)?;
    let plan = load_plan(&job.predictions, &job.legacy)?;
    let notes = notes_for(job, &plan);
    // `_download` keeps a downloaded (s3://) video on disk until rendering ends.
    let (source, _download) = input::video_source(&job.video)?;
    let partial = partial_path(&job.output)?;
    if let Some(dir) = &job.frames_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the frames directory {}", dir.display()))?;
    }
    let render_opts = RenderOptions {
        even_size: format == Format::Mp4,
        ..job.render.clone()
    };
    let result = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<render::RenderedFrame>(2);
        // The GIF's file is made here, so a path that cannot be written fails before
        // any decoding; FFmpeg's MP4 writer is made on the writing thread.
        let gif_file = match format {
            Format::Gif => Some(
                File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?,
            ),
            Format::Mp4 => None,
        };
        let writer = scope.spawn(|| {
            let sink = match gif_file {
                Some(file) => Sink::Gif {
                    file: Some(file),
                    gif: None,
                },
                None => Sink::Mp4 {
                    path: partial.clone(),
                    mp4: None,
                },
            };
            write_frames(job, sink, rx, progress)
        });
        let rendered = render::render(source, &job.video, &plan, &render_opts, |frame| {
            tx.send(frame)
                .map_err(|_| anyhow::anyhow!("the writer stopped"))
        });
        drop(tx);
        let written = writer.join().expect("the writer panicked");
        match (rendered, written) {
            (Ok(summary), Ok(())) => Ok(summary),
            // A failed writer is why the renderer stopped: its error is the cause.
            (_, Err(e)) | (Err(e), Ok(())) => Err(e),
        }
    });
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, &job.output)
                .with_context(|| format!("writing {}", job.output.display()))?;
            Ok(Report {
                kind: plan.kind,
                format,
                summary,
                notes,
                warnings: plan.geometry_warning().into_iter().collect(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Where the frames go: a GIF (started on the first frame, when its size is known)
/// or an MP4.
enum Sink {
    Gif {
        file: Option<File>,
        gif: Option<GifWriter<BufWriter<File>>>,
    },
    Mp4 {
        path: PathBuf,
        mp4: Option<Mp4Writer>,
    },
}

impl Sink {
    /// Add a frame; returns the frames written so far.
    fn add(&mut self, job: &Job, frame: &render::RenderedFrame) -> Result<usize> {
        let (w, h) = frame.image.dimensions();
        match self {
            Sink::Gif { file, gif } => {
                let writer = match gif {
                    Some(g) => g,
                    None => {
                        let f = file.take().expect("the file is taken once");
                        gif.insert(GifWriter::new(BufWriter::new(f), w, h, job.frame_ms)?)
                    }
                };
                writer.add(&frame.image, &frame.colours)?;
                Ok(writer.frames())
            }
            Sink::Mp4 { path, mp4 } => {
                let all = job.render.all_frames;
                let writer = match mp4 {
                    Some(m) => m,
                    None => {
                        let fps = match frame.video_fps {
                            Some(f) if all => f,
                            _ => 1000.0 / f64::from(job.frame_ms.max(1)),
                        };
                        mp4.insert(
                            Mp4Writer::create(path, w, h, fps)
                                .with_context(|| format!("creating {}", path.display()))?,
                        )
                    }
                };
                let pts_ms = if all {
                    (frame.pts_s * 1000.0).round() as i64
                } else {
                    writer.frames() as i64 * i64::from(job.frame_ms)
                };
                writer
                    .add(frame.image.as_raw(), pts_ms)
                    .context("writing the MP4")?;
                Ok(writer.frames())
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Gif { gif: Some(gif), .. } => {
                let mut out = gif.finish()?;
                std::io::Write::flush(&mut out).context("writing the GIF")
            }
            Sink::Mp4 { mp4: Some(mp4), .. } => {
                mp4.finish().context("finishing the MP4")?;
                Ok(())
            }
            // No frames at all: the renderer reports why (the predictions do not fit).
            _ => Ok(()),
        }
    }
}

/// The writing side of [`run`]: PNGs, then the frame into the GIF or MP4.
fn write_frames(
    job: &Job,
    mut sink: Sink,
    frames: std::sync::mpsc::Receiver<render::RenderedFrame>,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    for frame in frames {
        if let Some(dir) = &job.frames_dir {
            let path = dir.join(frame_file_name(frame.index));
            frame
                .image
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let done = sink.add(job, &frame)?;
        progress(done, frame.expected);
    }
    sink.finish()
}

/// `out.gif` is written as `out.gif.partial` next to it, then renamed.
fn partial_path(output: &Path) -> Result<PathBuf> {
    let name = output
        .file_name()
        .with_context(|| format!("the output {} is not a file name", output.display()))?;
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        ensure!(
            dir.is_dir(),
            "the output's directory {} does not exist",
            dir.display()
        );
    }
    let mut partial = name.to_os_string();
    partial.push(".partial");
    Ok(output.with_file_name(partial))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidinfer_media::schema::LegacyFrame;

    fn sample_video() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sample/shapes.mp4");
        p.to_str().unwrap().to_string()
    }

    /// Decode a GIF as a viewer shows it: (width, height, RGB frames, delays, repeat).
    fn decode_gif(path: &Path) -> (u32, u32, Vec<Vec<u8>>, Vec<u16>, gif::Repeat) {
        let (w, h, frames, delays, repeat) =
            encode::decode_composited(&std::fs::read(path).unwrap());
        (
            w,
            h,
            frames.into_iter().map(|f| f.into_raw()).collect(),
            delays,
            repeat,
        )
    }

    #[test]
    fn a_legacy_job_on_the_sample_video_makes_a_looping_gif_with_exact_boxes() {
        let dir = tempfile::tempdir().unwrap();
        // Every 50th frame of 150: frames 0, 50, 100. One box per frame in a 640x480
        // stretched frame, i.e. [20, 30, 120, 90] in the 320x240 video.
        let legacy: Vec<LegacyFrame> = (0..3)
            .map(|_| LegacyFrame {
                boxes: vec![[40.0, 60.0, 240.0, 180.0]],
                labels: vec![7],
                scores: vec![0.95],
            })
            .collect();
        let preds = dir.path().join("legacy.json");
        std::fs::write(&preds, serde_json::to_vec(&legacy).unwrap()).unwrap();
        let job = Job {
            video: sample_video(),
            predictions: preds.to_str().unwrap().into(),
            output: dir.path().join("out.gif"),
            frames_dir: Some(dir.path().join("frames")),
            frame_ms: 250,
            render: RenderOptions {
                width: Some(160),
                ..Default::default()
            },
            legacy: LegacyOptions {
                frame_interval: 50,
                frame_width: 640,
                frame_height: 480,
                ..Default::default()
            },
        };
        let mut calls = Vec::new();
        let report = run(&job, |done, total| calls.push((done, total))).unwrap();
        assert_eq!(calls, vec![(1, 3), (2, 3), (3, 3)]);
        assert_eq!(report.kind, Kind::Legacy);
        assert_eq!(
            report.summary,
            Summary {
                frames: 3,
                width: 160,
                height: 120
            }
        );
        assert!(!dir.path().join("out.gif.partial").exists());
        let (w, h, frames, delays, repeat) = decode_gif(&job.output);
        assert_eq!((w, h), (160, 120));
        assert_eq!(delays, vec![25, 25, 25]);
        assert_eq!(repeat, gif::Repeat::Infinite);
        // At half size the box is [10, 15, 60, 45]: edges at x 10 and 59, y 44.
        let colour = draw::class_colour(7);
        let px = |f: &[u8], x: usize, y: usize| {
            [
                f[(y * 160 + x) * 3],
                f[(y * 160 + x) * 3 + 1],
                f[(y * 160 + x) * 3 + 2],
            ]
        };
        for f in &frames {
            assert_eq!(px(f, 10, 30), colour);
            assert_eq!(px(f, 59, 30), colour);
            assert_eq!(px(f, 35, 44), colour);
            assert_ne!(px(f, 9, 30), colour);
            assert_ne!(px(f, 60, 30), colour);
        }
        for i in [0, 50, 100] {
            assert!(dir.path().join("frames").join(frame_file_name(i)).is_file());
        }

        // The same job against a wrong interval fails and leaves no GIF behind.
        let wrong = Job {
            output: dir.path().join("wrong.gif"),
            frames_dir: None,
            legacy: LegacyOptions {
                frame_interval: 30,
                ..job.legacy.clone()
            },
            ..job.clone()
        };
        let e = run(&wrong, |_, _| {}).unwrap_err().to_string();
        assert!(
            e.contains("have 3 frames") && e.contains("5 sampled frames"),
            "{e}"
        );
        assert!(!wrong.output.exists());
        assert!(!dir.path().join("wrong.gif.partial").exists());
    }

    #[test]
    fn partial_files_sit_next_to_the_output() {
        assert_eq!(
            partial_path(Path::new("out.gif")).unwrap(),
            PathBuf::from("out.gif.partial")
        );
        assert_eq!(
            partial_path(Path::new("/tmp/x.gif")).unwrap(),
            PathBuf::from("/tmp/x.gif.partial")
        );
        let e = partial_path(Path::new("/no/such/dir/x.gif")).unwrap_err();
        assert!(e.to_string().contains("/no/such/dir does not exist"));
        assert!(partial_path(Path::new("/")).is_err());
        assert_eq!(frame_file_name(30), "frame_000030.png");
    }
}
