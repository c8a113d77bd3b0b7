//! HTTP front door: SageMaker's bring-your-own-container contract (`GET /ping`,
//! `POST /invocations` on :8080) plus `/metrics`.
//!
//! The listener is bound before the model loads, so SageMaker's health check connects
//! at once; `/ping` answers 503 until the model is loaded and warmed up, then 200.
//! A request body (the video, up to `max_body_bytes`) is streamed into a temp file that
//! is removed when the request ends, whatever happens. Every error becomes a status
//! code and a JSON reason in one place ([`ServeError`]'s `IntoResponse`); a failed
//! request never takes the server down.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::params::{check_accept, Overrides, Params};
use crate::pipeline::{Engine, PipelineError};
use crate::video::VideoError;

/// SageMaker's header for per-request attributes (`format=legacy;frame_interval=15`).
pub const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";

/// SageMaker's id of an asynchronous inference, when it forwards one.
pub const INFERENCE_ID: &str = "x-amzn-sagemaker-inference-id";

/// The request id header: read when SageMaker's is absent, and always answered with
/// the id the request was logged under.
pub const REQUEST_ID: &str = "x-request-id";

/// The id a request is logged and answered under: SageMaker's inference id, else the
/// caller's `X-Request-Id`, else a new UUID. A header that is not short visible ASCII
/// (at most 128 characters) is not trusted into the logs and is replaced too.
pub fn request_id(headers: &HeaderMap) -> String {
    [INFERENCE_ID, REQUEST_ID]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .map(str::trim)
        .find(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// What a finished invocation produced, for the answer and its log line.
struct Served {
    document: Vec<u8>,
    stats: crate::pipeline::JobStats,
    input_bytes: u64,
    download_s: f64,
}

/// How the HTTP server behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body accepted (default 1 GiB); larger ones get 413.
    pub max_body_bytes: u64,
    /// Requests processed at once (SageMaker's MaxConcurrentInvocationsPerInstance);
    /// more get 429.
    pub max_concurrency: usize,
    /// Parameters of a request without custom attributes.
    pub defaults: Params,
    /// Where request bodies are spooled.
    pub temp_dir: PathBuf,
    /// Longest a request may take from its first byte to its answer; past it the job
    /// is abandoned (its decode stops) and the answer is 504.
    pub job_timeout: Duration,
}

/// Shared state: the engine appears once the model has loaded.
pub struct AppState {
    engine: OnceLock<Engine>,
    config: ServeConfig,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(config: ServeConfig, metrics: Arc<Metrics>) -> Arc<AppState> {
        Arc::new(AppState {
            engine: OnceLock::new(),
            slots: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config,
            metrics,
        })
    }

    /// Make the engine available: `/ping` turns 200 from now on.
    pub fn set_engine(&self, engine: Engine) {
        self.metrics.watch_model(engine.model());
        let _ = self.engine.set(engine);
    }

    pub fn is_ready(&self) -> bool {
        self.engine.get().is_some()
    }
}

/// Everything a request can fail with, and the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the model is still loading")]
    NotReady,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("the server is at its limit of {0} concurrent requests; retry later")]
    Busy(usize),
    #[error(transparent)]
    Video(VideoError),
    #[error(
        "the request took longer than the per-job limit of {0} s; send a shorter video or sample fewer frames"
    )]
    Timeout(u64),
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ServeError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServeError::Video(e) => match e {
                VideoError::Empty
                | VideoError::Corrupt { .. }
                | VideoError::NoFrames
                | VideoError::InvalidOptions(_) => StatusCode::BAD_REQUEST,
                VideoError::Unrecognized { .. }
                | VideoError::NoVideoStream
                | VideoError::UnsupportedCodec { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                VideoError::ResolutionTooLarge { .. }
                | VideoError::TooLong { .. }
                | VideoError::TooManyFrames { .. }
                | VideoError::OverBudget { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                VideoError::Io(_) | VideoError::Ffmpeg { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<PipelineError> for ServeError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Video(v) => ServeError::Video(v),
            other => ServeError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "error": status.canonical_reason().unwrap_or("error"),
            "message": self.to_string(),
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The SageMaker router: `GET /ping`, `POST /invocations`, `GET /metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/ping", get(ping))
        .route("/invocations", post(invocations))
        .with_state(state)
        .merge(crate::metrics::router(metrics))
}

async fn ping(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "").into_response()
    } else {
        ServeError::NotReady.into_response()
    }
}

fn content_type_ok(headers: &HeaderMap) -> Result<(), ServeError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.starts_with("video/") || essence == "application/octet-stream" || essence.is_empty()
    {
        Ok(())
    } else {
        Err(ServeError::UnsupportedMedia(format!(
            "Content-Type `{essence}` is not a video: send video/* or application/octet-stream"
        )))
    }
}

fn accept_ok(headers: &HeaderMap) -> Result<(), ServeError> {
    let Some(a) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    check_accept(a.to_str().unwrap_or("")).map_err(|e| ServeError::NotAcceptable(e.to_string()))
}

async fn invocations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use tracing::Instrument;
    let start = Instant::now();
    let id = request_id(&headers);
    let span = tracing::info_span!("request", request_id = %id);
    state.metrics.in_flight(1);
    let result = invoke(&state, &headers, body)
        .instrument(span.clone())
        .await;
    state.metrics.in_flight(-1);
    let total_s = start.elapsed().as_secs_f64();
    let model = state
        .engine
        .get()
        .map(|e| e.model().info().name.clone())
        .unwrap_or_default();
    let _entered = span.enter();
    let mut response = match result {
        Ok(done) => {
            state.metrics.request(200, total_s);
            let s = &done.stats;
            tracing::info!(
                status = 200,
                frames_sampled = s.frames_sampled,
                frames_decoded = s.frames_decoded,
                detections = s.detections,
                input_bytes = done.input_bytes,
                download_s = done.download_s,
                decode_s = s.decode_s,
                infer_s = s.infer_s,
                total_s,
                model = %model,
                "invocation finished"
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                done.document,
            )
                .into_response()
        }
        Err(e) => {
            state.metrics.request(e.status().as_u16(), total_s);
            tracing::warn!(
                status = e.status().as_u16(),
                total_s,
                model = %model,
                "invocation failed: {e}"
            );
            e.into_response()
        }
    };
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

async fn invoke(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Served, ServeError> {
    let engine = state.engine.get().ok_or(ServeError::NotReady)?.clone();
    let _permit = state
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ServeError::Busy(state.config.max_concurrency))?;
    let limit = state.config.job_timeout;
    tokio::time::timeout(limit, invoke_job(state, engine, headers, body))
        .await
        .map_err(|_| ServeError::Timeout(limit.as_secs()))?
}

async fn invoke_job(
    state: &AppState,
    engine: Engine,
    headers: &HeaderMap,
    body: Body,
) -> Result<Served, ServeError> {
    content_type_ok(headers)?;
    accept_ok(headers)?;
    let overrides = match headers.get(CUSTOM_ATTRIBUTES) {
        Some(v) => {
            let v = v.to_str().map_err(|_| {
                ServeError::BadRequest("custom attributes must be visible ASCII".into())
            })?;
            Overrides::from_custom_attributes(v)
                .map_err(|e| ServeError::BadRequest(e.to_string()))?
        }
        None => Overrides::default(),
    };
    let params = overrides
        .apply(&state.config.defaults)
        .map_err(|e| ServeError::BadRequest(e.to_string()))?;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > state.config.max_body_bytes {
            return Err(too_large(len, state.config.max_body_bytes));
        }
    }
    let t = Instant::now();
    let file = spool(body, &state.config.temp_dir, state.config.max_body_bytes).await?;
    let download_s = t.elapsed().as_secs_f64();
    state.metrics.stage("download", download_s);
    let input_bytes = file.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    let mut log = crate::pipeline::ProgressLog::from_env();
    let done = engine
        .process_file(file.path(), &params, |p| log.observe(p))
        .await?;
    drop(file);
    state.metrics.engine_job(&done.stats);
    Ok(Served {
        document: done.document,
        stats: done.stats,
        input_bytes,
        download_s,
    })
}

fn too_large(size: u64, max: u64) -> ServeError {
    ServeError::TooLarge(format!(
        "the request body is {size} bytes or more, over the limit of {max} bytes"
    ))
}

/// Stream a request body into a temp file (removed when dropped), enforcing the limit
/// while reading.
async fn spool(
    body: Body,
    dir: &std::path::Path,
    max: u64,
) -> Result<tempfile::NamedTempFile, ServeError> {
    let internal =
        |e: std::io::Error| ServeError::Internal(format!("spooling the request body: {e}"));
    let tmp =
        crate::storage::locked_temp_file(dir, crate::storage::REQUEST_PREFIX).map_err(internal)?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(internal)?);
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ServeError::BadRequest(format!("reading the request body failed: {e}")))?;
        n += chunk.len() as u64;
        if n > max {
            return Err(too_large(n, max));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    if n == 0 {
        return Err(ServeError::BadRequest(
            "the request body is empty: send the video bytes".into(),
        ));
    }
    Ok(tmp)
}

/// Serve `router` on `listener` until `shutdown` is cancelled, then let requests in
/// flight finish for up to `grace` (SageMaker allows 30 s after SIGTERM).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let stop = shutdown.clone();
    let server =
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await });
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("requests still in flight after the {grace:?} grace period: exiting");
            Ok(())
        }
    }
}
