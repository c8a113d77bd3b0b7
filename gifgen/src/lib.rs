//! gifgen: draw a video's detections onto its sampled frames and encode them as an
//! animated GIF.
//!
//! Frames come from vidinfer's own decoder with the sampling the worker used, so frame
//! indices match the predictions'. The pieces, each usable on its own:
//! - [`input`]: where the video and the predictions are read from;
//! - [`plan`]: a predictions document (v2 or legacy) as "what to draw on which frame",
//!   and the checks that it fits the video;
//! - [`render`]: decode, match, draw ([`draw`] and its bitmap [`font`]);
//! - [`encode`]: palette quantisation that keeps drawn colours exact, and the GIF.
//!
//! [`run`] ties them together for the binary.

pub mod draw;
pub mod encode;
pub mod font;
pub mod input;
pub mod plan;
pub mod render;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use vidinfer_media::schema::Predictions;

pub use encode::GifWriter;
pub use plan::{Kind, LegacyOptions, Plan};
pub use render::{RenderOptions, Summary};

/// One GIF to make.
#[derive(Debug, Clone)]
pub struct Job {
    /// The video's location.
    pub video: String,
    /// The predictions' location.
    pub predictions: String,
    /// Where the GIF goes.
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
    pub summary: Summary,
    /// Things the user may want to know (e.g. `--masks` with no masks to draw).
    pub notes: Vec<String>,
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

/// Make the GIF (and the PNGs) for `job`. `progress(done, total)` is called as frames
/// are finished. The GIF appears at `job.output` only when everything succeeded.
///
/// Two threads share the work: this one decodes and draws, a second one quantises,
/// encodes and writes, a couple of frames behind.
pub fn run(job: &Job, progress: impl FnMut(usize, usize) + Send) -> Result<Report> {
    let plan = load_plan(&job.predictions, &job.legacy)?;
    let mut notes = Vec::new();
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
    // `_download` keeps a downloaded (s3://) video on disk until rendering ends.
    let (source, _download) = input::video_source(&job.video)?;
    let partial = partial_path(&job.output)?;
    if let Some(dir) = &job.frames_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the frames directory {}", dir.display()))?;
    }
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let total = plan.frames.len();
    let result = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<render::RenderedFrame>(2);
        let writer = scope.spawn(move || write_frames(job, file, rx, total, progress));
        let rendered = render::render(source, &job.video, &plan, &job.render, |frame| {
            tx.send(frame)
                .map_err(|_| anyhow::anyhow!("the GIF writer stopped"))
        });
        drop(tx);
        let written = writer.join().expect("the GIF writer panicked");
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
                summary,
                notes,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// The writing side of [`run`]: PNGs, then the frame into the GIF.
fn write_frames(
    job: &Job,
    file: File,
    frames: std::sync::mpsc::Receiver<render::RenderedFrame>,
    total: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    let mut file = Some(file);
    let mut gif: Option<GifWriter<BufWriter<File>>> = None;
    for frame in frames {
        if let Some(dir) = &job.frames_dir {
            let path = dir.join(frame_file_name(frame.index));
            frame
                .image
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let writer = match &mut gif {
            Some(g) => g,
            None => {
                let (w, h) = frame.image.dimensions();
                let f = file.take().expect("the file is taken once");
                gif.insert(GifWriter::new(BufWriter::new(f), w, h, job.frame_ms)?)
            }
        };
        writer.add(&frame.image, &frame.colours)?;
        progress(writer.frames(), total);
    }
    // No frames at all: the renderer reports why (the predictions do not fit).
    if let Some(gif) = gif {
        let mut out = gif.finish()?;
        std::io::Write::flush(&mut out).context("writing the GIF")?;
    }
    Ok(())
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

    /// Decode a GIF with the gif crate: (width, height, RGB frames, delays, repeat).
    fn decode_gif(path: &Path) -> (u32, u32, Vec<Vec<u8>>, Vec<u16>, gif::Repeat) {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(File::open(path).unwrap()).unwrap();
        let (w, h) = (u32::from(d.width()), u32::from(d.height()));
        let (mut frames, mut delays) = (Vec::new(), Vec::new());
        while let Some(f) = d.read_next_frame().unwrap() {
            frames.push(
                f.buffer
                    .chunks(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
            );
            delays.push(f.delay);
        }
        (w, h, frames, delays, d.repeat())
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
