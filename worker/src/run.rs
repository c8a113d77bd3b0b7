//! `run`: one local video through the engine, JSON to a file or stdout.
//!
//! Everything the user typed is checked before the model loads (arguments, the input's
//! existence, kind and container, the output's directory and writability): a usage
//! mistake costs well under a second and exits with status 2 ([`crate::Usage`]);
//! failures after that exit with 1.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use vidinfer::model::Model;
use vidinfer::pipeline::Engine;
use vidinfer::schema::Predictions;

use crate::args::{ModelArgs, ParamArgs};
use crate::Usage;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The video file.
    pub video: PathBuf,

    /// Where to write the JSON (default, or `-`: stdout). Written as <PATH>.partial and
    /// renamed when complete.
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Pretty-print the JSON (keys stay in the document's order).
    #[arg(long)]
    pub pretty: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub params: ParamArgs,
}

/// The input must be an existing regular file.
fn check_input(video: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(video) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Usage(format!("{}: no such file", video.display())).into())
        }
        Err(e) => Err(Usage(format!("{}: cannot be read: {e}", video.display())).into()),
        Ok(m) if m.is_dir() => Err(Usage(format!(
            "{} is a directory, not a video file",
            video.display()
        ))
        .into()),
        Ok(m) if !m.is_file() => {
            Err(Usage(format!("{} is not a regular file", video.display())).into())
        }
        Ok(_) => Ok(()),
    }
}

/// Where the document goes: `None` for stdout.
fn output_path(output: &Option<PathBuf>) -> Option<&Path> {
    output.as_deref().filter(|p| p.as_os_str() != "-")
}

/// `path.partial`, the name the document is written under before the rename.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// The output's directory must exist and take a new file: tried by creating (and
/// removing) the partial file.
fn check_output(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Err(Usage(format!(
            "-o {} is a directory; give a file name",
            path.display()
        ))
        .into());
    }
    let tmp = partial(path);
    std::fs::File::create(&tmp)
        .map_err(|e| Usage(format!("-o {}: cannot write there: {e}", path.display())))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

pub fn main(a: RunArgs) -> anyhow::Result<()> {
    let params = a.params.params().map_err(|e| Usage(format!("{e:#}")))?;
    check_input(&a.video)?;
    let output = output_path(&a.output);
    if let Some(path) = output {
        check_output(path)?;
    }
    // The container and stream are read before the model loads: a file that is not a
    // video is refused at once.
    vidinfer::video::probe(a.video.as_path())
        .with_context(|| format!("reading {}", a.video.display()))?;
    let model = Model::load(a.model.config()).context("loading the model")?;
    let rt = vidinfer::runtime::build()?;
    let engine = Engine::new(model);
    let mut log = vidinfer::pipeline::ProgressLog::from_env();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} frames {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(a.video.display().to_string());
        bar
    });
    let out = rt
        .block_on(engine.process_file(&a.video, &params, |p| match &bar {
            Some(bar) => {
                if let Some(n) = p.frames_expected {
                    bar.set_length(n.max(p.frames_done));
                }
                bar.set_position(p.frames_done);
            }
            // No terminal (CI, a container, a redirected stderr): log lines instead.
            None => log.observe(p),
        }))
        .with_context(|| format!("processing {}", a.video.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let bytes = if a.pretty {
        // Through the typed document, so the keys keep its order (schema, video, model,
        // params, frames) rather than a map's sorted one.
        match Predictions::parse(&out.document).context("reading back the document")? {
            Predictions::V2(d) => serde_json::to_vec_pretty(&d)?,
            Predictions::Legacy(f) => serde_json::to_vec_pretty(&f)?,
        }
    } else {
        out.document
    };
    match output {
        Some(path) => {
            // Write beside the target, then rename: no half-written file on failure.
            let tmp = partial(path);
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.write_all(b"\n")?;
        }
    }
    let s = &out.stats;
    // Counted as the document holds them (at or above --min-score).
    let written = s.detections;
    let device = engine.model().info().device.to_string();
    if crate::args::json_logs() {
        tracing::info!(
            video = %a.video.display(),
            width = out.video.width,
            height = out.video.height,
            codec = %out.video.codec,
            frames_sampled = s.frames_sampled,
            frames_decoded = s.frames_decoded,
            detections = written,
            decode_s = s.decode_s,
            infer_s = s.infer_s,
            total_s = s.wall_s,
            model = %engine.model().info().name,
            device = %device,
            "job finished"
        );
    } else {
        eprintln!(
            "{}: {}x{} {} | {} frames sampled of {} decoded | {written} detections | decode {:.2}s, model {:.2}s ({:.1} frames/s), total {:.2}s on {device}",
            a.video.display(),
            out.video.width,
            out.video.height,
            out.video.codec,
            s.frames_sampled,
            s.frames_decoded,
            s.decode_s,
            s.infer_s,
            s.frames_sampled as f64 / s.infer_s.max(1e-9),
            s.wall_s,
        );
    }
    Ok(())
}
