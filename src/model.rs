//! The model runtime: one OS thread owns a TorchScript Mask R-CNN (`tch::CModule`).
//!
//! `tch` tensors are neither `Send`-safe to share nor `Sync`, so the module, and every
//! tensor, lives on a single thread. Jobs hand it batches of plain RGB pictures over a
//! bounded channel and get plain detections back; when several jobs wait, their batches
//! are merged into one forward call up to the configured batch size.
//!
//! Loading registers torchvision's compiled operators (`torchvision::nms`,
//! `roi_align`, …) in-process first, because a scripted torchvision detector refers to
//! them by name (see [`register_torchvision_ops`]), picks CUDA when a GPU is present,
//! and runs a warm-up forward so the first request does not pay for lazy init, and so a
//! file with the wrong signature fails at start-up rather than on the first video.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, IValue, Kind, Tensor};
use tokio::sync::{mpsc, oneshot};

pub use vidinfer_media::detection::{CropMask, Detection, ModelInfo, ModelInput, COCO_CLASSES};

/// What can go wrong loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {0} does not exist; pass --model PATH or set VIDINFER_MODEL")]
    NotFound(PathBuf),
    #[error(
        "{path} is not a TorchScript model vidinfer can load ({reason}); a weights-only \
         .pth or checkpoint is not enough: export the model with scripts/export_model.py"
    )]
    Load { path: PathBuf, reason: String },
    #[error("could not read the model sidecar {path}: {reason}")]
    Sidecar { path: PathBuf, reason: String },
    #[error(
        "torchvision's operators could not be loaded ({reason}); run scripts/setup.sh, or \
         set VIDINFER_TORCHVISION_OPS to a patched torchvision _C.so"
    )]
    TorchvisionOps { reason: String },
    #[error(
        "the model does not behave like a torchvision detector ({reason}); export it with \
         scripts/export_model.py"
    )]
    Signature { reason: String },
    #[error("CUDA device {0} was requested but no GPU is available")]
    NoCuda(usize),
    #[error("inference failed: {0}")]
    Forward(String),
    #[error("the model thread has stopped")]
    Stopped,
    #[error("invalid model configuration: {0}")]
    Config(String),
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA device 0 when a GPU is present, the CPU otherwise.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: use auto, cpu, cuda or cuda:N")),
        }
    }
}

/// How to load and run the model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The TorchScript file; its sidecar is the same path with a `.json` extension.
    pub path: PathBuf,
    pub device: DeviceChoice,
    /// Most pictures in one forward call (default 4).
    pub batch_size: usize,
    /// LibTorch intra-op threads; 0 keeps LibTorch's default (one per core).
    pub threads: usize,
    /// Batches that may wait for the model thread (default 2).
    pub queue: usize,
}

impl ModelConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelConfig {
            path: path.into(),
            device: DeviceChoice::Auto,
            batch_size: 4,
            threads: 0,
            queue: 2,
        }
    }
}

/// The sidecar written by scripts/export_model.py next to the TorchScript file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sidecar {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub masks: Option<bool>,
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    #[serde(default)]
    pub torch: Option<String>,
    #[serde(default)]
    pub torchvision: Option<String>,
}

impl Sidecar {
    /// The model's own input resize (`input.min_size` and `input.max_size`, written by
    /// scripts/export_model.py), when the sidecar gives both as positive whole numbers.
    pub fn model_input(&self) -> Option<ModelInput> {
        let input = self.input.as_ref()?;
        let size = |k: &str| {
            input
                .get(k)?
                .as_u64()
                .filter(|&v| v > 0)
                .and_then(|v| u32::try_from(v).ok())
        };
        Some(ModelInput {
            min_size: size("min_size")?,
            max_size: size("max_size")?,
        })
    }
}

/// One RGB picture for the model.
#[derive(Debug, Clone)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// What the model thread answers: detections per picture, and forward seconds.
pub type InferResult = Result<(Vec<Vec<Detection>>, f64), ModelError>;

/// One job's batch on its way to the model thread, with where to send the answer.
struct BatchRequest {
    images: Vec<Image>,
    masks: bool,
    reply: oneshot::Sender<InferResult>,
}

/// Called on the model thread with the number of pictures of each forward call.
pub type BatchObserver = Box<dyn Fn(usize) + Send + Sync>;

/// A cheap, cloneable handle to the model thread.
#[derive(Clone)]
pub struct Model {
    tx: mpsc::Sender<BatchRequest>,
    info: Arc<ModelInfo>,
    observers: Arc<Observers>,
}

/// Who is told the size of each forward call.
type Observers = std::sync::Mutex<Vec<BatchObserver>>;

/// Reads how many batches wait for the model thread without keeping it alive.
#[derive(Clone)]
pub struct QueueProbe(mpsc::WeakSender<BatchRequest>);

impl QueueProbe {
    /// Batches queued for the model thread (not counting the one it is running); 0 once
    /// the model has stopped.
    pub fn depth(&self) -> usize {
        self.0
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("info", &self.info).finish()
    }
}

/// Where the patched torchvision operator library is looked for, in order.
fn torchvision_ops_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("VIDINFER_TORCHVISION_OPS") {
        c.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            c.push(dir.join("libtorchvision_ops.so"));
            c.push(dir.join("../lib/libtorchvision_ops.so"));
        }
    }
    if let Some(cache) = std::env::var_os("VIDINFER_CACHE") {
        c.push(PathBuf::from(cache).join("lib/libtorchvision_ops.so"));
    }
    if let Some(p) = option_env!("VIDINFER_BUILD_TORCHVISION_OPS") {
        c.push(PathBuf::from(p));
    }
    c
}

/// Register torchvision's C++ operators with LibTorch, once per process.
///
/// A scripted torchvision detector calls `torchvision::nms` and `roi_align`; LibTorch
/// only knows them once torchvision's `_C.so` is loaded. The wheel's copy names
/// `libtorch_python.so` (and so libpython), so scripts/setup.sh makes a copy without
/// that dependency (`patchelf --remove-needed`) and with an rpath to LibTorch; it is
/// opened here with `RTLD_GLOBAL` so its static registrars run.
pub fn register_torchvision_ops() -> Result<PathBuf, ModelError> {
    static LOADED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates = torchvision_ops_candidates();
            let mut tried = Vec::new();
            for path in candidates {
                if !path.exists() {
                    tried.push(format!("{} (missing)", path.display()));
                    continue;
                }
                // SAFETY: loading a shared library runs its initialisers; this one only
                // registers operators with the already-loaded LibTorch. It is never
                // unloaded (forgotten below), so no symbol outlives it.
                let lib = unsafe {
                    libloading::os::unix::Library::open(
                        Some(&path),
                        libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                    )
                };
                match lib {
                    Ok(lib) => {
                        std::mem::forget(lib);
                        tracing::info!("torchvision ops loaded from {}", path.display());
                        return Ok(path);
                    }
                    Err(e) => tried.push(format!("{}: {e}", path.display())),
                }
            }
            Err(if tried.is_empty() {
                "no candidate path".to_string()
            } else {
                tried.join("; ")
            })
        })
        .clone()
        .map_err(|reason| ModelError::TorchvisionOps { reason })
}

/// `name:size:crc32` of the model file: the same file gives the same value on every
/// worker, any other file (retrained, re-exported) almost surely another.
fn fingerprint(path: &Path, name: &str) -> Result<String, ModelError> {
    use std::io::Read;
    let read_error = |e: std::io::Error| ModelError::Load {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(format!("{name}:{size}:{:08x}", hasher.finalize()))
}

fn sidecar_path(model: &Path) -> PathBuf {
    model.with_extension("json")
}

fn read_sidecar(model: &Path) -> Result<Sidecar, ModelError> {
    let path = sidecar_path(model);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ModelError::Sidecar {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sidecar::default()),
        Err(e) => Err(ModelError::Sidecar {
            path,
            reason: e.to_string(),
        }),
    }
}

fn resolve_device(choice: DeviceChoice) -> Result<Device, ModelError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(if tch::Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        DeviceChoice::Cuda(n) => {
            if tch::Cuda::is_available() && (n as i64) < tch::Cuda::device_count() {
                Ok(Device::Cuda(n))
            } else {
                Err(ModelError::NoCuda(n))
            }
        }
    }
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    }
}

impl Model {
    /// Load the model on its own thread and wait until the warm-up forward has run.
    /// Blocking: call it before starting a runtime or from `spawn_blocking`.
    pub fn load(config: ModelConfig) -> Result<Model, ModelError> {
        if config.batch_size == 0 {
            return Err(ModelError::Config(
                "the batch size must be at least 1".into(),
            ));
        }
        if !config.path.is_file() {
            return Err(ModelError::NotFound(config.path.clone()));
        }
        let sidecar = read_sidecar(&config.path)?;
        register_torchvision_ops()?;
        let (tx, rx) = mpsc::channel::<BatchRequest>(config.queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let observers: Arc<Observers> = Arc::default();
        let thread_observers = observers.clone();
        std::thread::Builder::new()
            .name("vidinfer-model".into())
            .spawn(move || {
                let loaded = Runtime::load(&config, sidecar);
                match loaded {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(rt.info.clone()));
                        rt.serve(rx, &thread_observers);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| ModelError::Config(format!("cannot start the model thread: {e}")))?;
        let info = ready_rx.recv().map_err(|_| ModelError::Stopped)??;
        Ok(Model {
            tx,
            info: Arc::new(info),
            observers,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Have `f` called with the size of every forward call from now on (for a
    /// batch-size histogram), on the model thread: keep it cheap.
    pub fn observe_batches(&self, f: impl Fn(usize) + Send + Sync + 'static) {
        self.observers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    /// A handle that reads the model queue's depth (for a gauge).
    pub fn queue_probe(&self) -> QueueProbe {
        QueueProbe(self.tx.downgrade())
    }

    /// Run the model on a batch of pictures. Returns each picture's detections and the
    /// seconds the forward call(s) took on the model thread.
    pub async fn infer(&self, images: Vec<Image>, masks: bool) -> InferResult {
        if images.is_empty() {
            return Ok((Vec::new(), 0.0));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(BatchRequest {
                images,
                masks,
                reply,
            })
            .await
            .map_err(|_| ModelError::Stopped)?;
        rx.await.map_err(|_| ModelError::Stopped)?
    }

    /// Blocking form of [`Model::infer`] for callers outside an async runtime.
    pub fn infer_blocking(&self, images: Vec<Image>, masks: bool) -> InferResult {
        if images.is_empty() {
            return Ok((Vec::new(), 0.0));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(BatchRequest {
                images,
                masks,
                reply,
            })
            .map_err(|_| ModelError::Stopped)?;
        rx.blocking_recv().map_err(|_| ModelError::Stopped)?
    }
}

/// The state that lives on the model thread.
struct Runtime {
    module: tch::CModule,
    device: Device,
    info: ModelInfo,
}

impl Runtime {
    fn load(config: &ModelConfig, sidecar: Sidecar) -> Result<Runtime, ModelError> {
        let start = Instant::now();
        if config.threads > 0 {
            tch::set_num_threads(config.threads as i32);
        }
        let device = resolve_device(config.device)?;
        let mut module =
            tch::CModule::load_on_device(&config.path, device).map_err(|e| ModelError::Load {
                path: config.path.clone(),
                reason: load_reason(&e.to_string()),
            })?;
        module.set_eval();
        let classes = if sidecar.classes.is_empty() {
            COCO_CLASSES.iter().map(|s| s.to_string()).collect()
        } else {
            sidecar.classes.clone()
        };
        let name = sidecar.name.clone().unwrap_or_else(|| {
            config
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let fingerprint = fingerprint(&config.path, &name)?;
        let mut rt = Runtime {
            module,
            device,
            info: ModelInfo {
                name,
                classes,
                masks: sidecar.masks.unwrap_or(true),
                device: device_name(device),
                batch_size: config.batch_size,
                load_s: 0.0,
                fingerprint,
                input: sidecar.model_input(),
            },
        };
        // Warm-up: a mid-grey picture; also proves the calling convention works.
        let warm = Image {
            width: 320,
            height: 240,
            rgb: vec![128; 320 * 240 * 3],
        };
        // LibTorch prints its C++ warnings straight to fd 2, outside any log format;
        // torchvision's scripted R-CNN warns once, on its first forward, that it
        // "always returns a (Losses, Detections) tuple in scripting". The warm-up is that
        // first forward: what it prints is taken off stderr and logged here instead.
        let (out, printed) = capture_stderr(|| rt.forward(std::slice::from_ref(&warm), true));
        log_libtorch_output(&printed);
        let out = out.map_err(|e| match e {
            ModelError::Forward(reason) => ModelError::Signature { reason },
            other => other,
        })?;
        if out.len() != 1 {
            return Err(ModelError::Signature {
                reason: format!("one picture gave {} results", out.len()),
            });
        }
        rt.info.load_s = start.elapsed().as_secs_f64();
        tracing::info!(
            model = %rt.info.name,
            device = %rt.info.device,
            classes = rt.info.classes.len(),
            load_s = rt.info.load_s,
            "model loaded"
        );
        Ok(rt)
    }

    /// Serve requests until every handle is dropped, merging waiting requests into one
    /// forward call up to the batch size.
    fn serve(self, mut rx: mpsc::Receiver<BatchRequest>, observers: &Observers) {
        let mut carry: Option<BatchRequest> = None;
        loop {
            let first = match carry.take() {
                Some(r) => r,
                None => match rx.blocking_recv() {
                    Some(r) => r,
                    None => return,
                },
            };
            let mut group = vec![first];
            let mut n = group[0].images.len();
            while n < self.info.batch_size {
                match rx.try_recv() {
                    Ok(r)
                        if r.masks == group[0].masks
                            && n + r.images.len() <= self.info.batch_size =>
                    {
                        n += r.images.len();
                        group.push(r);
                    }
                    Ok(r) => {
                        carry = Some(r);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.run_group(group, observers);
        }
    }

    fn run_group(&self, group: Vec<BatchRequest>, observers: &Observers) {
        let masks = group[0].masks;
        let mut images = Vec::new();
        let mut owners = Vec::new();
        let mut replies = Vec::new();
        for r in group {
            owners.push(r.images.len());
            images.extend(r.images);
            replies.push(r.reply);
        }
        let start = Instant::now();
        let mut result = Ok(Vec::with_capacity(images.len()));
        // A request may be larger than the batch size: run it in chunks.
        for chunk in images.chunks(self.info.batch_size) {
            for observe in observers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                observe(chunk.len());
            }
            match self.forward(chunk, masks) {
                Ok(d) => {
                    if let Ok(all) = result.as_mut() {
                        all.extend(d)
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(mut all) => {
                for (reply, n) in replies.into_iter().zip(owners) {
                    let rest = all.split_off(n);
                    let share = secs * n as f64 / images.len() as f64;
                    let _ = reply.send(Ok((all, share)));
                    all = rest;
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(ModelError::Forward(msg.clone())));
                }
            }
        }
    }

    fn to_tensor(&self, img: &Image) -> Result<Tensor, ModelError> {
        let expect = img.width as usize * img.height as usize * 3;
        if img.rgb.len() != expect || expect == 0 {
            return Err(ModelError::Forward(format!(
                "picture buffer has {} bytes, {}x{} RGB needs {expect}",
                img.rgb.len(),
                img.width,
                img.height
            )));
        }
        // Upload bytes, convert on the device: a quarter of the transfer of floats.
        let t = Tensor::from_slice(&img.rgb)
            .view([img.height as i64, img.width as i64, 3])
            .to_device(self.device)
            .permute([2, 0, 1])
            .to_kind(Kind::Float)
            / 255.0;
        Ok(t)
    }

    fn forward(&self, images: &[Image], masks: bool) -> Result<Vec<Vec<Detection>>, ModelError> {
        let _guard = tch::no_grad_guard();
        let inputs = images
            .iter()
            .map(|i| self.to_tensor(i))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .module
            .forward_is(&[IValue::TensorList(inputs)])
            .map_err(|e| ModelError::Forward(first_line(&e.to_string())))?;
        // Scripted torchvision detectors return (losses, detections).
        let dets = match out {
            IValue::Tuple(mut parts) if parts.len() == 2 => parts.pop().unwrap(),
            IValue::GenericList(l) => IValue::GenericList(l),
            other => {
                return Err(ModelError::Forward(format!(
                    "expected (losses, detections), got {}",
                    ivalue_kind(&other)
                )))
            }
        };
        let IValue::GenericList(list) = dets else {
            return Err(ModelError::Forward("detections are not a list".into()));
        };
        if list.len() != images.len() {
            return Err(ModelError::Forward(format!(
                "{} pictures gave {} results",
                images.len(),
                list.len()
            )));
        }
        list.into_iter()
            .zip(images)
            .map(|(d, img)| parse_detections(d, img, masks))
            .collect()
    }
}

/// Run `f` with file descriptor 2 pointed at a temporary file; returns its result and
/// what was written there. Falls back to running `f` plainly if the redirection cannot
/// be set up.
fn capture_stderr<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let Ok(mut file) = tempfile::tempfile() else {
        return (f(), String::new());
    };
    let _ = std::io::stderr().flush();
    // SAFETY: dup/dup2/close on descriptors this function owns or on fd 2, which it
    // restores before returning; no Rust object holds fd 2's duplicate.
    let saved = unsafe { libc::dup(2) };
    if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        if saved >= 0 {
            unsafe { libc::close(saved) };
        }
        return (f(), String::new());
    }
    let out = f();
    let _ = std::io::stderr().flush();
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut text = String::new();
    if file.rewind().is_ok() {
        let _ = file.read_to_string(&mut text);
    }
    (out, text)
}

/// Lines LibTorch printed during the warm-up, as log lines: the known, harmless
/// warning of scripted torchvision detectors at debug level, anything else as a warning.
fn log_libtorch_output(printed: &str) {
    for line in printed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("RCNN always returns a (Losses, Detections) tuple in scripting") {
            tracing::debug!(target: "libtorch", "{line}");
        } else {
            tracing::warn!(target: "libtorch", "{line}");
        }
    }
}

/// LibTorch's load error in a few words: its first sentence, without the prefix.
fn load_reason(message: &str) -> String {
    let line = first_line(message);
    let line = line.strip_prefix("Internal torch error: ").unwrap_or(&line);
    let sentence = line.split(". ").next().unwrap_or(line);
    let mut short: String = sentence.chars().take(120).collect();
    if short.len() < sentence.len() {
        short.push('…');
    }
    short
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

fn ivalue_kind(v: &IValue) -> &'static str {
    match v {
        IValue::Tensor(_) => "a tensor",
        IValue::Tuple(_) => "a tuple",
        IValue::GenericList(_) | IValue::TensorList(_) => "a list",
        IValue::GenericDict(_) => "a dict",
        _ => "another value",
    }
}

/// One image's result dict, its tensors found by name.
struct RawResult {
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    masks: Option<Tensor>,
}

impl RawResult {
    fn from_ivalue(d: IValue) -> Result<RawResult, ModelError> {
        let IValue::GenericDict(entries) = d else {
            return Err(ModelError::Forward("a result is not a dict".into()));
        };
        let (mut boxes, mut labels, mut scores, mut masks) = (None, None, None, None);
        for (k, v) in entries {
            if let (IValue::String(k), IValue::Tensor(t)) = (k, v) {
                match k.as_str() {
                    "boxes" => boxes = Some(t),
                    "labels" => labels = Some(t),
                    "scores" => scores = Some(t),
                    "masks" => masks = Some(t),
                    _ => {}
                }
            }
        }
        let missing = |k: &str| ModelError::Forward(format!("a result has no `{k}`"));
        Ok(RawResult {
            boxes: boxes.ok_or_else(|| missing("boxes"))?,
            labels: labels.ok_or_else(|| missing("labels"))?,
            scores: scores.ok_or_else(|| missing("scores"))?,
            masks,
        })
    }
}

fn conv(e: tch::TchError) -> ModelError {
    ModelError::Forward(e.to_string())
}

fn parse_detections(
    d: IValue,
    img: &Image,
    want_masks: bool,
) -> Result<Vec<Detection>, ModelError> {
    let raw = RawResult::from_ivalue(d)?;
    let cpu = |t: Tensor, kind| t.to_device(Device::Cpu).to_kind(kind);
    let boxes = cpu(raw.boxes, Kind::Float);
    let labels = cpu(raw.labels, Kind::Int64);
    let scores = cpu(raw.scores, Kind::Float);
    let n = labels.size().first().copied().unwrap_or(0);
    let boxes: Vec<f32> = Vec::try_from(boxes.flatten(0, -1)).map_err(conv)?;
    let labels: Vec<i64> = Vec::try_from(&labels).map_err(conv)?;
    let scores: Vec<f32> = Vec::try_from(&scores).map_err(conv)?;
    if boxes.len() != n as usize * 4 || scores.len() != n as usize {
        return Err(ModelError::Forward(
            "boxes, labels and scores disagree in length".into(),
        ));
    }
    // Masks come pasted onto the whole picture as probabilities: threshold at 0.5 on
    // the device, then copy out only each detection's box.
    let masks = raw.masks.filter(|_| want_masks).map(|m| {
        m.squeeze_dim(1)
            .gt(0.5)
            .to_kind(Kind::Uint8)
            .to_device(Device::Cpu)
    });
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let bbox = [
            boxes[4 * i],
            boxes[4 * i + 1],
            boxes[4 * i + 2],
            boxes[4 * i + 3],
        ];
        let mask = match &masks {
            Some(m) => Some(crop_mask(&m.get(i as i64), bbox, img)?),
            None => None,
        };
        out.push(Detection {
            label_id: labels[i],
            score: scores[i],
            bbox,
            mask,
            track_id: None,
        });
    }
    Ok(out)
}

/// The part of a whole-picture 0/1 mask under `bbox` (at least one pixel).
fn crop_mask(m: &Tensor, bbox: [f32; 4], img: &Image) -> Result<CropMask, ModelError> {
    let (w, h) = (img.width as i64, img.height as i64);
    let x0 = (bbox[0].floor() as i64).clamp(0, w - 1);
    let y0 = (bbox[1].floor() as i64).clamp(0, h - 1);
    let x1 = (bbox[2].ceil() as i64).clamp(x0 + 1, w);
    let y1 = (bbox[3].ceil() as i64).clamp(y0 + 1, h);
    let crop = m.narrow(0, y0, y1 - y0).narrow(1, x0, x1 - x0).contiguous();
    let bits: Vec<u8> = Vec::try_from(crop.flatten(0, -1)).map_err(conv)?;
    Ok(CropMask {
        x0: x0 as u32,
        y0: y0 as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
        bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_gives_the_input_size_only_when_both_sides_are_whole_numbers() {
        let sidecar = |input: serde_json::Value| Sidecar {
            input: Some(input),
            ..Sidecar::default()
        };
        let fixture = serde_json::json!({"colour": "RGB", "min_size": 240, "max_size": 320});
        assert_eq!(
            sidecar(fixture).model_input(),
            Some(ModelInput {
                min_size: 240,
                max_size: 320
            })
        );
        for input in [
            serde_json::json!({"min_size": 800}),
            serde_json::json!({"min_size": 0, "max_size": 1333}),
            serde_json::json!({"min_size": 800.5, "max_size": 1333}),
            serde_json::json!({"min_size": "800", "max_size": 1333}),
        ] {
            assert_eq!(sidecar(input.clone()).model_input(), None, "{input}");
        }
        assert_eq!(Sidecar::default().model_input(), None);
    }
}
