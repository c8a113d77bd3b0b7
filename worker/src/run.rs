//! `run`: one local video through the engine, JSON to a file or stdout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vidinfer::model::Model;
use vidinfer::pipeline::Engine;

use crate::args::{ModelArgs, ParamArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The video file.
    pub video: PathBuf,

    /// Where to write the JSON (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Pretty-print the JSON.
    #[arg(long)]
    pub pretty: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub params: ParamArgs,
}

pub fn main(a: RunArgs) -> anyhow::Result<()> {
    let params = a.params.params()?;
    anyhow::ensure!(a.video.is_file(), "{} is not a file", a.video.display());
    let model = Model::load(a.model.config()).context("loading the model")?;
    let rt = vidinfer::runtime::build()?;
    let engine = Engine::new(model);
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
        .block_on(engine.process_file(&a.video, &params, |p| {
            if let Some(bar) = &bar {
                if let Some(n) = p.frames_expected {
                    bar.set_length(n.max(p.frames_done));
                }
                bar.set_position(p.frames_done);
            }
        }))
        .with_context(|| format!("processing {}", a.video.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let bytes = if a.pretty {
        let value: serde_json::Value = serde_json::from_slice(&out.document)?;
        serde_json::to_vec_pretty(&value)?
    } else {
        out.document
    };
    match &a.output {
        Some(path) => {
            // Write beside the target, then rename: no half-written file on failure.
            let tmp = path.with_extension("json.partial");
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
    eprintln!(
        "{}: {}x{} {} | {} frames sampled of {} decoded | {} detections | decode {:.2}s, model {:.2}s ({:.1} frames/s), total {:.2}s on {}",
        a.video.display(),
        out.video.width,
        out.video.height,
        out.video.codec,
        s.frames_sampled,
        s.frames_decoded,
        s.detections,
        s.decode_s,
        s.infer_s,
        s.frames_sampled as f64 / s.infer_s.max(1e-9),
        s.wall_s,
        engine.model().info().device,
    );
    Ok(())
}
