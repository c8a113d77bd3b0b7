//! `vidinfer-worker`: the front doors to the vidinfer engine. Thin by design: parse the
//! command line, set up logging, hand a typed config to the subcommand's `run`.

mod args;
mod run;
mod serve;
mod shutdown;
mod sqs;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Video inference worker: decode a video with FFmpeg, sample frames, run a TorchScript
/// Mask R-CNN (LibTorch; CUDA when a GPU is present) and write JSON detections.
///
/// Every option can also be set through the environment variable shown in its help,
/// VIDINFER_ + the flag's name (--fps: VIDINFER_FPS); the legacy system's names
/// (FRAME_INTERVAL, FRAME_WIDTH, FRAME_HEIGHT, BATCH_SIZE) are read when those are
/// unset. A flag on the command line beats the environment.
#[derive(Parser, Debug)]
#[command(name = "vidinfer-worker", version, about, long_about)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        env = "VIDINFER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: args::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the model over videos (local files or directories, S3 objects or prefixes)
    /// and write one JSON document of detections per video.
    Run(Box<run::RunArgs>),
    /// Consume inference requests from an SQS queue: S3 in, S3 out, SNS notifications
    /// in SageMaker's InferenceResult format. Stops on SIGTERM/ctrl-c after draining.
    ///
    /// Example: vidinfer-worker sqs --queue-url https://sqs.us-east-1.amazonaws.com/123/jobs
    /// --output-path s3://bucket/results --success-topic arn:aws:sns:...:ok
    /// --error-topic arn:aws:sns:...:err --model /opt/ml/model/model.pt
    Sqs(Box<sqs::SqsArgs>),
    /// Serve SageMaker's container contract on :8080: GET /ping (200 once the model is
    /// loaded) and POST /invocations (body: the video; answer: the JSON), plus /metrics.
    /// Per-request options come in X-Amzn-SageMaker-Custom-Attributes, e.g.
    /// "format=legacy;frame_interval=15".
    Serve(Box<serve::ServeArgs>),
    /// Print what the decoder sees in a video (container, codec, size, rotation, frame
    /// rate, duration) as JSON, without loading a model.
    Probe {
        /// Path of the video file.
        video: std::path::PathBuf,
    },
}

fn probe(video: &std::path::Path) -> anyhow::Result<()> {
    let info = vidinfer::video::probe(video)?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

/// A mistake in what the user typed (an argument, a path): exit status 2, like the
/// command-line parser's own errors. Everything else that fails exits with 1.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> std::process::ExitCode {
    // Options read VIDINFER_<FLAG>; the legacy names are read when those are unset.
    let matches = vidinfer::cli::with_env_aliases(Cli::command()).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    args::init_tracing(cli.log_format);
    let sub = matches.subcommand().map(|(_, m)| m);
    let settled = match (&mut cli.command, sub) {
        (Command::Run(a), Some(m)) => a.params.settle_sampling(m),
        (Command::Sqs(a), Some(m)) => a.params.settle_sampling(m),
        (Command::Serve(a), Some(m)) => a.params.settle_sampling(m),
        _ => Ok(()),
    };
    let result = match settled {
        Err(e) => Err(Usage(e).into()),
        Ok(()) => match cli.command {
            Command::Run(a) => run::main(*a),
            Command::Sqs(a) => sqs::main(*a),
            Command::Serve(a) => serve::main(*a),
            Command::Probe { video } => probe(&video),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let usage = e.downcast_ref::<Usage>().is_some();
            if args::json_logs() {
                tracing::error!(error = %format!("{e:#}"), usage, "failed");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
