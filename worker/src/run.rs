//! `run`: videos through the engine under one model load, one JSON document each.
//! In: local files and directories, S3 objects and prefixes. Out: a file or stdout
//! (one video), a directory or an S3 prefix (any number).
//!
//! Everything the user typed is checked before the model loads (arguments, each local
//! input's existence, kind and container, the output's directory and writability, that
//! no two inputs would write the same document): a usage mistake costs well under a
//! second and exits with status 2 ([`crate::Usage`]). S3 prefixes are listed then too;
//! S3 objects are fetched in their turn. After that a failed input is reported and the
//! others are still done, and the exit status is 1 when any failed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tracing::Instrument;
use vidinfer::aws::AwsOptions;
use vidinfer::model::Model;
use vidinfer::params::Params;
use vidinfer::pipeline::{Engine, Finished, ProgressLog};
use vidinfer::schema::Predictions;
use vidinfer::storage::{S3Uri, Storage, StorageError};

use crate::args::{ModelArgs, ParamArgs};
use crate::Usage;

/// Extensions (any case) of the files a directory or an S3 prefix contributes; keep
/// the list in `RunArgs::videos`'s help in step (a unit test checks). A video named on
/// the command line is read whatever its extension.
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "m2ts", "mts", "flv", "wmv",
    "3gp", "3g2", "ogv", "mxf",
];

/// The end of `run --help`.
const EXAMPLES: &str = "\
Examples (each with --model PATH or VIDINFER_MODEL set):
  vidinfer-worker run clip.mp4                     JSON on stdout
  vidinfer-worker run clip.mp4 -o clip.json        one file
  vidinfer-worker run a.mp4 b.mov -o out/          out/a.json, out/b.json
  vidinfer-worker run videos/ -o out/              one document per video in videos/
  vidinfer-worker run s3://bucket/in/x.mp4         an S3 object, JSON on stdout
  vidinfer-worker run s3://bucket/in/ -o s3://bucket/results/
                                                   results/<name>.json per object in in/
S3 is reached with the SDK's usual configuration (AWS_REGION, AWS_ENDPOINT_URL,
AWS_PROFILE, credentials from the environment or the instance role).

Each finished video gets one summary line on stderr; with several, a last line counts
them (\"3 inputs: 2 done, 1 failed\").
Exit status: 0 every document written; 1 a video failed (the others were still done)
or the model did not load; 2 a usage mistake, found before the model loads.";

#[derive(Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct RunArgs {
    /// Videos: files, directories, s3://bucket/key objects, s3://bucket/prefix/ prefixes.
    ///
    /// All are processed in turn under one model load. A directory stands for the files
    /// directly in it (its subdirectories are not entered), in name order, whose
    /// extension is a video's: .mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .m2ts .mts
    /// .flv .wmv .3gp .3g2 .ogv .mxf, any case; other files are skipped. An S3 location
    /// ending in `/` (or a bare bucket) is a prefix: the objects directly under it,
    /// picked the same way. A file or object named on its own is read whatever its
    /// extension; one that turns out not to be a video fails alone, the others are
    /// still done.
    #[arg(required = true, value_name = "VIDEO")]
    pub videos: Vec<PathBuf>,

    /// Where the JSON goes: a file, `-` (stdout), a directory or an s3:// prefix
    /// [default: stdout].
    ///
    /// One video file or S3 object in: a file (written as <PATH>.partial and renamed
    /// when complete) or stdout. Several inputs, or a directory or prefix among them: a
    /// directory, created if missing, that gets <name>.json for each video, <name> being
    /// the video's file name without its extension (a new directory called *.json is
    /// refused as a likely typo). An s3://bucket/prefix/ takes any number of videos:
    /// <prefix>/<name>.json each. Two videos that would write the same <name>.json
    /// (a/x.mp4 and b/x.mov) are refused before the model loads: rename one, or run
    /// them separately.
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Pretty-print the JSON (keys stay in the document's order).
    #[arg(long)]
    pub pretty: bool,

    /// Where S3 inputs are downloaded and how S3 is reached. (Boxed: keeps the
    /// subcommands' argument structs of similar size.)
    #[command(flatten)]
    pub s3: Box<S3Args>,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub params: ParamArgs,
}

/// Options for S3 inputs and outputs.
#[derive(Args, Debug)]
pub struct S3Args {
    /// Largest S3 object accepted as input, in MiB (checked on its listed or declared
    /// size before downloading, and again while downloading).
    #[arg(
        long,
        env = "VIDINFER_MAX_INPUT_MB",
        default_value_t = 2048,
        help_heading = "S3"
    )]
    pub max_input_mb: u64,

    /// Directory for downloaded S3 videos (each is deleted after its turn).
    #[arg(
        long,
        env = "VIDINFER_TMP_DIR",
        default_value_os_t = std::env::temp_dir(),
        help_heading = "S3"
    )]
    pub tmp_dir: PathBuf,

    /// AWS region (default: the SDK's chain: AWS_REGION, profile, instance metadata).
    /// Credentials come from the SDK's usual chain too. (Environment: also AWS_REGION.)
    #[arg(long, env = "VIDINFER_REGION", help_heading = "S3")]
    pub region: Option<String>,

    /// Endpoint override for S3 (e.g. a local moto server). (Environment: also
    /// AWS_ENDPOINT_URL.)
    #[arg(long, env = "VIDINFER_ENDPOINT_URL", help_heading = "S3")]
    pub endpoint_url: Option<String>,
}

impl S3Args {
    fn max_input_bytes(&self) -> u64 {
        self.max_input_mb.saturating_mul(1024 * 1024)
    }
}

/// An input as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    File(PathBuf),
    Dir(PathBuf),
    S3Object(S3Uri),
    /// `s3://bucket/prefix/` or `s3://bucket`: the objects directly under it.
    S3Prefix(S3Uri),
}

impl Input {
    /// Read an argument: `s3://` locations by their syntax (a key that is empty or ends
    /// in `/` is a prefix), local paths by what is there.
    fn parse(arg: &Path) -> anyhow::Result<Input> {
        if let Some(s) = arg.to_str().filter(|s| s.starts_with("s3://")) {
            let uri: S3Uri = s.parse().map_err(|e: StorageError| Usage(e.to_string()))?;
            return Ok(if uri.key.is_empty() || uri.key.ends_with('/') {
                Input::S3Prefix(uri)
            } else {
                Input::S3Object(uri)
            });
        }
        match std::fs::metadata(arg) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Usage(format!("{}: no such file", arg.display())).into())
            }
            Err(e) => Err(Usage(format!("{}: cannot be read: {e}", arg.display())).into()),
            Ok(m) if m.is_dir() => Ok(Input::Dir(arg.to_path_buf())),
            Ok(m) if !m.is_file() => {
                Err(Usage(format!("{} is not a regular file", arg.display())).into())
            }
            Ok(_) => Ok(Input::File(arg.to_path_buf())),
        }
    }

    /// Whether it stands for any number of videos.
    fn is_collection(&self) -> bool {
        matches!(self, Input::Dir(_) | Input::S3Prefix(_))
    }
}

/// One video.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    S3(S3Uri),
}

impl Source {
    /// How reports name it.
    fn label(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::S3(u) => u.to_string(),
        }
    }

    /// `<name>.json`, the video's file name without its extension, the name its
    /// document gets in a directory or under a prefix.
    fn document_name(&self) -> OsString {
        let stem = match self {
            Source::File(p) => p.file_stem().map(OsStr::to_os_string),
            Source::S3(u) => {
                let name = u.key.rsplit('/').next().unwrap_or_default();
                Path::new(name).file_stem().map(OsStr::to_os_string)
            }
        };
        let mut name = stem.unwrap_or_else(|| "video".into());
        name.push(".json");
        name
    }
}

/// Where documents go, as `-o` says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sink {
    Stdout,
    File(PathBuf),
    Dir(PathBuf),
    S3(S3Uri),
}

/// Where one document goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dest {
    Stdout,
    File(PathBuf),
    S3(S3Uri),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Stdout => f.write_str("-"),
            Dest::File(p) => write!(f, "{}", p.display()),
            Dest::S3(u) => write!(f, "{u}"),
        }
    }
}

impl Sink {
    /// Read `-o` for these inputs. `many`: several inputs or a directory or prefix,
    /// which need a directory or a prefix.
    fn parse(output: Option<&Path>, inputs: &[Input], many: bool) -> Result<Sink, Usage> {
        if let Some(s) = output
            .and_then(Path::to_str)
            .filter(|s| s.starts_with("s3://"))
        {
            let uri = s
                .parse()
                .map_err(|e: StorageError| Usage(format!("-o: {e}")))?;
            return Ok(Sink::S3(uri));
        }
        let path = output.filter(|p| p.as_os_str() != "-");
        match (path, many) {
            (None, false) => Ok(Sink::Stdout),
            (Some(p), false) => Ok(Sink::File(p.to_path_buf())),
            (None, true) => Err(Usage(match inputs {
                [Input::Dir(d)] => format!(
                    "{} is a directory: give -o DIR (or -o s3://bucket/prefix/) for one \
                     document per video in it",
                    d.display()
                ),
                [Input::S3Prefix(u)] => format!(
                    "{u} is a prefix: give -o DIR (or -o s3://bucket/prefix/) for one \
                     document per video under it"
                ),
                _ => format!(
                    "{} inputs need -o DIR or -o s3://bucket/prefix/ (one document per \
                     video); a file or stdout takes one video",
                    inputs.len()
                ),
            })),
            (Some(p), true) => {
                if p.exists() && !p.is_dir() {
                    return Err(Usage(format!(
                        "-o {} is a file: with several videos, -o names a directory (one \
                         document per video)",
                        p.display()
                    )));
                }
                let json = p
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("json"));
                if json && !p.exists() {
                    return Err(Usage(format!(
                        "-o {} looks like a file name: with several videos, -o names a \
                         directory (one document per video)",
                        p.display()
                    )));
                }
                Ok(Sink::Dir(p.to_path_buf()))
            }
        }
    }

    fn dest(&self, source: &Source) -> Dest {
        match self {
            Sink::Stdout => Dest::Stdout,
            Sink::File(p) => Dest::File(p.clone()),
            Sink::Dir(d) => Dest::File(d.join(source.document_name())),
            Sink::S3(prefix) => Dest::S3(prefix.join(&source.document_name().to_string_lossy())),
        }
    }
}

/// One video's turn.
struct Item {
    source: Source,
    dest: Dest,
    /// Why it cannot be done, when that is known before the model loads (its
    /// container, an S3 listing, its size).
    refused: Option<anyhow::Error>,
}

/// Whether a directory entry or an S3 key's last segment names a video, by extension.
fn has_video_extension(name: &Path) -> bool {
    name.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| e.eq_ignore_ascii_case(v)))
}

/// The video files directly in `dir`, in name order, and how many other files were
/// skipped.
fn videos_in(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, usize)> {
    let unreadable = |e: std::io::Error| Usage(format!("{}: cannot be read: {e}", dir.display()));
    let mut found = Vec::new();
    let mut skipped = 0;
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        // Followed through symbolic links; subdirectories are not entered.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if has_video_extension(&path) {
            found.push(path);
        } else {
            skipped += 1;
        }
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if found.is_empty() {
        return Err(Usage(format!(
            "{} holds no video files (picked by extension: .{})",
            dir.display(),
            VIDEO_EXTENSIONS.join(" .")
        ))
        .into());
    }
    Ok((found, skipped))
}

/// Refuse two inputs that would write the same document (the same name into one
/// directory or prefix, or one video named twice), naming both.
fn check_collisions(items: &[Item]) -> Result<(), Usage> {
    let mut seen: HashMap<&Dest, &Source> = HashMap::new();
    for item in items.iter().filter(|i| i.refused.is_none()) {
        if let Some(first) = seen.get(&item.dest) {
            return Err(Usage(format!(
                "{} and {} would both write {}: rename one, or run them separately",
                first.label(),
                item.source.label(),
                item.dest
            )));
        }
        seen.insert(&item.dest, &item.source);
    }
    Ok(())
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

/// Create the output directory if missing, and make sure it takes new files.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Usage(format!("-o {}: cannot create it: {e}", dir.display())))?;
    let probe = dir.join(format!(".vidinfer-write-check-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| Usage(format!("-o {}: cannot write there: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The S3 client, made only when an input or the output is on S3.
async fn s3_client(a: &RunArgs) -> Storage {
    let sdk = vidinfer::aws::load(&AwsOptions {
        region: a.s3.region.clone(),
        endpoint_url: a.s3.endpoint_url.clone(),
    })
    .await;
    Storage::new(&sdk)
}

/// The videos under an S3 prefix as items (or the prefix itself, refused, when it
/// cannot be listed or holds no video).
async fn list_prefix(storage: &Storage, prefix: &S3Uri, sink: &Sink, max_bytes: u64) -> Vec<Item> {
    let refused = |e: anyhow::Error| {
        let source = Source::S3(prefix.clone());
        vec![Item {
            dest: sink.dest(&source),
            source,
            refused: Some(e),
        }]
    };
    let listed = match storage.list(prefix).await {
        Ok(l) => l,
        Err(e) => return refused(anyhow::Error::new(e).context(format!("listing {prefix}"))),
    };
    let total = listed.len();
    let videos: Vec<(S3Uri, u64)> = listed
        .into_iter()
        .filter(|(u, _)| has_video_extension(Path::new(u.key.rsplit('/').next().unwrap_or(""))))
        .collect();
    if videos.is_empty() {
        return refused(anyhow::anyhow!(
            "{prefix} holds no video objects directly under it (picked by extension: .{})",
            VIDEO_EXTENSIONS.join(" .")
        ));
    }
    if videos.len() < total {
        tracing::info!(
            prefix = %prefix,
            skipped = total - videos.len(),
            "objects without a video extension skipped"
        );
    }
    videos
        .into_iter()
        .map(|(uri, size)| {
            let too_large = (size > max_bytes).then(|| {
                StorageError::TooLarge {
                    uri: uri.to_string(),
                    size,
                    max: max_bytes,
                }
                .into()
            });
            let source = Source::S3(uri);
            Item {
                dest: sink.dest(&source),
                source,
                refused: too_large,
            }
        })
        .collect()
}

/// The videos of one run, each with its destination, checked as far as possible
/// before the model loads.
struct Plan {
    items: Vec<Item>,
    /// Several videos (or a directory or prefix): failures are reported one by one and
    /// counted at the end; otherwise the one failure is the run's error.
    many: bool,
    storage: Option<Storage>,
}

impl Plan {
    /// Everything up to the model load: the inputs' existence and kind, directories
    /// expanded and S3 prefixes listed, `-o` read and checked (a directory is created),
    /// no two videos writing one document, local containers probed.
    fn make(
        a: &RunArgs,
        params: &vidinfer::params::Params,
        rt: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Plan> {
        let inputs = a
            .videos
            .iter()
            .map(|v| Input::parse(v))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let many = inputs.len() > 1 || inputs.iter().any(Input::is_collection);
        let sink = Sink::parse(a.output.as_deref(), &inputs, many)?;

        // Local directories first (their mistakes are usage errors), S3 prefixes after.
        enum Expanded {
            Video(Source),
            Prefix(S3Uri),
        }
        let mut expanded = Vec::new();
        for input in &inputs {
            match input {
                Input::File(p) => expanded.push(Expanded::Video(Source::File(p.clone()))),
                Input::S3Object(u) => expanded.push(Expanded::Video(Source::S3(u.clone()))),
                Input::S3Prefix(u) => expanded.push(Expanded::Prefix(u.clone())),
                Input::Dir(d) => {
                    let (videos, skipped) = videos_in(d)?;
                    if skipped > 0 {
                        tracing::info!(
                            dir = %d.display(),
                            skipped,
                            "files without a video extension skipped"
                        );
                    }
                    let videos = videos.into_iter().map(|p| Expanded::Video(Source::File(p)));
                    expanded.extend(videos);
                }
            }
        }
        let s3_in = inputs
            .iter()
            .any(|i| matches!(i, Input::S3Object(_) | Input::S3Prefix(_)));
        if s3_in && !a.s3.tmp_dir.is_dir() {
            return Err(Usage(format!(
                "--tmp-dir {} is not a directory (S3 videos are downloaded there)",
                a.s3.tmp_dir.display()
            ))
            .into());
        }

        let storage = (s3_in || matches!(sink, Sink::S3(_))).then(|| rt.block_on(s3_client(a)));
        let mut items = Vec::new();
        for e in expanded {
            match e {
                Expanded::Video(source) => items.push(Item {
                    dest: sink.dest(&source),
                    source,
                    refused: None,
                }),
                Expanded::Prefix(prefix) => {
                    let s = storage.as_ref().expect("an S3 client for S3 inputs");
                    let max = a.s3.max_input_bytes();
                    items.extend(rt.block_on(list_prefix(s, &prefix, &sink, max)));
                }
            }
        }
        check_collisions(&items)?;
        match &sink {
            Sink::Stdout => {}
            Sink::File(path) => check_output(path)?,
            Sink::Dir(dir) => prepare_dir(dir)?,
            Sink::S3(prefix) => {
                let s = storage.as_ref().expect("an S3 client for S3 output");
                match rt.block_on(s.check_bucket(prefix)) {
                    Err(e @ StorageError::NotFound { .. }) => {
                        return Err(Usage(format!("-o {prefix}: {e}")).into())
                    }
                    r => r.with_context(|| format!("-o {prefix}"))?,
                }
            }
        }
        // The container and stream are read before the model loads: a local file that
        // is not a video, or that ends before --start, is refused at once.
        let opts = vidinfer::video::DecodeOptions {
            range: params.range,
            ..Default::default()
        };
        for item in items.iter_mut().filter(|i| i.refused.is_none()) {
            if let Source::File(path) = &item.source {
                if let Err(e) = vidinfer::video::Decoder::open(path.as_path(), opts.clone()) {
                    // --start past the video's end is a mistake in what was typed.
                    let e = match e {
                        vidinfer::video::VideoError::InvalidOptions(why) => {
                            anyhow::Error::new(Usage(format!("{}: {why}", path.display())))
                        }
                        e => anyhow::Error::new(e).context(format!("reading {}", path.display())),
                    };
                    if !many {
                        return Err(e);
                    }
                    item.refused = Some(e);
                }
            }
        }
        Ok(Plan {
            items,
            many,
            storage,
        })
    }
}

pub fn main(a: RunArgs) -> anyhow::Result<()> {
    let params = a.params.params().map_err(|e| Usage(format!("{e:#}")))?;
    let rt = vidinfer::runtime::build()?;
    let Plan {
        items,
        many,
        storage,
    } = Plan::make(&a, &params, &rt)?;

    // With every input refused already, the model need not load.
    let runner = if items.iter().any(|i| i.refused.is_none()) {
        let model = Model::load(a.model.config()).context("loading the model")?;
        Some(Runner {
            engine: Engine::new(model),
            params,
            pretty: a.pretty,
            storage,
            tmp_dir: a.s3.tmp_dir.clone(),
            max_input_bytes: a.s3.max_input_bytes(),
        })
    } else {
        None
    };
    let total = items.len();
    let (mut done, mut failed) = (0usize, 0usize);
    for item in items {
        let label = item.source.label();
        let result = match item.refused {
            Some(e) => Err(e),
            None => {
                let runner = runner
                    .as_ref()
                    .expect("the model loads when any input is left");
                let span = tracing::info_span!("input", video = %label);
                rt.block_on(runner.one(&item.source, &item.dest).instrument(span))
                    .map(|finished| runner.report(&label, &item.dest, &finished, many))
            }
        };
        match result {
            Ok(()) => done += 1,
            Err(e) if !many => return Err(e),
            Err(e) => {
                failed += 1;
                if crate::args::json_logs() {
                    tracing::error!(video = %label, error = %format!("{e:#}"), "input failed");
                } else {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    if many {
        let line = format!(
            "{total} input{}: {done} done, {failed} failed",
            if total == 1 { "" } else { "s" }
        );
        if crate::args::json_logs() {
            tracing::info!(inputs = total, done, failed, "inputs finished");
        }
        if failed > 0 {
            // Exit status 1, with this line as the error (main prints it).
            anyhow::bail!(line);
        }
        if !crate::args::json_logs() {
            eprintln!("{line}");
        }
    }
    Ok(())
}

/// What every input's turn needs: the loaded engine, the parameters, and the S3 client.
struct Runner {
    engine: Engine,
    params: Params,
    pretty: bool,
    storage: Option<Storage>,
    tmp_dir: PathBuf,
    max_input_bytes: u64,
}

impl Runner {
    /// One video: fetch it (S3), run the engine, write its document to `dest`. The
    /// returned [`Finished`] has its document taken out.
    async fn one(&self, source: &Source, dest: &Dest) -> anyhow::Result<Finished> {
        let label = source.label();
        let downloaded;
        let path: &Path = match source {
            Source::File(p) => p,
            Source::S3(uri) => {
                let storage = self.storage.as_ref().expect("an S3 client for S3 inputs");
                let vidinfer::storage::Downloaded { file, bytes, .. } = storage
                    .download(uri, &self.tmp_dir, self.max_input_bytes)
                    .await
                    .with_context(|| format!("downloading {label}"))?;
                tracing::debug!(bytes, "downloaded");
                downloaded = file;
                downloaded.path()
            }
        };
        let mut log = ProgressLog::from_env();
        let bar = progress_bar(&label);
        let mut out = self
            .engine
            .process_file(path, &self.params, |p| match &bar {
                Some(bar) => {
                    if let Some(n) = p.frames_expected {
                        bar.set_length(n.max(p.frames_done));
                    }
                    bar.set_position(p.frames_done);
                }
                // No terminal (CI, a container, a redirected stderr): log lines instead.
                None => log.observe(p),
            })
            .await
            .with_context(|| format!("processing {label}"))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let document = std::mem::take(&mut out.document);
        let bytes = if self.pretty {
            // Through the typed document, so the keys keep its order (schema, video,
            // model, params, frames) rather than a map's sorted one.
            match Predictions::parse(&document).context("reading back the document")? {
                Predictions::V2(d) => serde_json::to_vec_pretty(&d)?,
                Predictions::Legacy(f) => serde_json::to_vec_pretty(&f)?,
            }
        } else {
            document
        };
        self.write(dest, bytes)
            .await
            .with_context(|| format!("writing the document of {label} to {dest}"))?;
        Ok(out)
    }

    /// The summary of one finished input: a text line, or a JSON "job finished" line.
    /// With several inputs the text line also says where the document went.
    fn report(&self, label: &str, dest: &Dest, out: &Finished, many: bool) {
        let s = &out.stats;
        let info = self.engine.model().info();
        let device = info.device.to_string();
        // Counted as the document holds them (at or above --min-score).
        let written = s.detections;
        if crate::args::json_logs() {
            tracing::info!(
                video = %label,
                output = %dest,
                width = out.video.width,
                height = out.video.height,
                codec = %out.video.codec,
                frames_sampled = s.frames_sampled,
                frames_decoded = s.frames_decoded,
                detections = written,
                decode_s = s.decode_s,
                infer_s = s.infer_s,
                total_s = s.wall_s,
                model = %info.name,
                device = %device,
                "job finished"
            );
        } else {
            let to = if many {
                format!(" -> {dest}")
            } else {
                String::new()
            };
            eprintln!(
                "{label}: {}x{} {} | {} frames sampled of {} decoded | {written} detections | decode {:.2}s, model {:.2}s ({:.1} frames/s), total {:.2}s on {device}{to}",
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
    }

    async fn write(&self, dest: &Dest, bytes: Vec<u8>) -> anyhow::Result<()> {
        match dest {
            Dest::File(path) => {
                // Write beside the target, then rename: no half-written file on failure.
                let tmp = partial(path);
                std::fs::write(&tmp, &bytes)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, path)?;
            }
            Dest::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&bytes)?;
                stdout.write_all(b"\n")?;
                stdout.flush()?;
            }
            Dest::S3(uri) => {
                let storage = self.storage.as_ref().expect("an S3 client for S3 output");
                storage.put(uri, bytes, "application/json").await?;
            }
        }
        Ok(())
    }
}

/// A progress bar for a person at a terminal; `None` when stderr is not one.
fn progress_bar(label: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} frames {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        bar
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(s: &str) -> S3Uri {
        s.parse().unwrap()
    }

    #[test]
    fn documents_are_named_after_the_video_without_its_extension() {
        let file = Source::File("in/clip.final.MP4".into());
        assert_eq!(file.document_name(), "clip.final.json");
        let object = Source::S3(s3("s3://bucket/a/b/c.mov"));
        assert_eq!(object.document_name(), "c.json");
        assert_eq!(
            Sink::Dir("out".into()).dest(&file),
            Dest::File("out/clip.final.json".into())
        );
        assert_eq!(
            Sink::S3(s3("s3://bucket/results")).dest(&object),
            Dest::S3(s3("s3://bucket/results/c.json"))
        );
        assert_eq!(
            Sink::S3(s3("s3://bucket/results/")).dest(&file),
            Dest::S3(s3("s3://bucket/results/clip.final.json"))
        );
        // One video to a file keeps the file's name.
        assert_eq!(
            Sink::File("x.json".into()).dest(&file),
            Dest::File("x.json".into())
        );
    }

    #[test]
    fn s3_arguments_are_objects_or_prefixes_by_their_trailing_slash() {
        assert_eq!(
            Input::parse(Path::new("s3://bucket/in/x.mp4")).unwrap(),
            Input::S3Object(s3("s3://bucket/in/x.mp4"))
        );
        assert_eq!(
            Input::parse(Path::new("s3://bucket/in/")).unwrap(),
            Input::S3Prefix(s3("s3://bucket/in/"))
        );
        assert_eq!(
            Input::parse(Path::new("s3://bucket")).unwrap(),
            Input::S3Prefix(s3("s3://bucket"))
        );
        let e = Input::parse(Path::new("s3://B/x")).unwrap_err();
        assert!(e.downcast_ref::<Usage>().is_some(), "{e}");
    }

    #[test]
    fn the_output_must_be_a_directory_or_prefix_for_many_videos() {
        let one = [Input::File("a.mp4".into())];
        let two = [Input::File("a.mp4".into()), Input::File("b.mp4".into())];
        assert_eq!(Sink::parse(None, &one, false).unwrap(), Sink::Stdout);
        assert_eq!(
            Sink::parse(Some(Path::new("-")), &one, false).unwrap(),
            Sink::Stdout
        );
        assert_eq!(
            Sink::parse(Some(Path::new("o.json")), &one, false).unwrap(),
            Sink::File("o.json".into())
        );
        assert!(Sink::parse(None, &two, true).is_err());
        assert!(Sink::parse(Some(Path::new("-")), &two, true).is_err());
        assert!(Sink::parse(Some(Path::new("new-out.json")), &two, true).is_err());
        assert_eq!(
            Sink::parse(Some(Path::new("new-out")), &two, true).unwrap(),
            Sink::Dir("new-out".into())
        );
        assert_eq!(
            Sink::parse(Some(Path::new("s3://bucket/r/")), &two, true).unwrap(),
            Sink::S3(s3("s3://bucket/r/"))
        );
        let dir = [Input::Dir("videos".into())];
        let e = Sink::parse(None, &dir, true).unwrap_err();
        assert!(e.0.contains("videos is a directory"), "{e}");
    }

    #[test]
    fn two_inputs_writing_one_document_are_refused() {
        let sink = Sink::Dir("out".into());
        let item = |p: &str| {
            let source = Source::File(p.into());
            Item {
                dest: sink.dest(&source),
                source,
                refused: None,
            }
        };
        assert!(check_collisions(&[item("a/x.mp4"), item("a/y.mp4")]).is_ok());
        let e = check_collisions(&[item("a/x.mp4"), item("b/y.mp4"), item("b/x.mov")]).unwrap_err();
        assert!(
            e.0.contains("a/x.mp4 and b/x.mov would both write out/x.json"),
            "{e}"
        );
        // A refused input writes nothing, so it collides with nothing.
        let mut refused = item("b/x.mov");
        refused.refused = Some(anyhow::anyhow!("not a video"));
        assert!(check_collisions(&[item("a/x.mp4"), refused]).is_ok());
    }

    #[test]
    fn directories_contribute_files_by_extension() {
        assert!(has_video_extension(Path::new("a.mp4")));
        assert!(has_video_extension(Path::new("dir/B.MOV")));
        assert!(!has_video_extension(Path::new("a.json")));
        assert!(!has_video_extension(Path::new("mp4")));
        assert!(!has_video_extension(Path::new("a.mp4.partial")));
    }

    #[test]
    fn the_help_lists_every_video_extension() {
        use clap::Args as _;
        let cmd = RunArgs::augment_args(clap::Command::new("run"));
        let help = cmd
            .get_arguments()
            .find(|a| a.get_id() == "videos")
            .and_then(|a| a.get_long_help())
            .unwrap()
            .to_string();
        for ext in VIDEO_EXTENSIONS {
            assert!(
                help.contains(&format!(".{ext} ")) || help.contains(&format!(".{ext},")),
                "{ext}: {help}"
            );
        }
    }
}
