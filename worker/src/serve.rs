//! `serve`: the SageMaker asynchronous-endpoint container (bring your own container).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vidinfer::http::{AppState, ServeConfig};
use vidinfer::metrics::{Door, Metrics};
use vidinfer::model::Model;
use vidinfer::pipeline::Engine;

use crate::args::{ModelArgs, ParamArgs};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. SageMaker sends /ping and /invocations to port 8080.
    #[arg(long, env = "VIDINFER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Requests processed at once; more get 429 (set it to the endpoint's
    /// MaxConcurrentInvocationsPerInstance).
    #[arg(long, env = "VIDINFER_MAX_CONCURRENCY", default_value_t = 2)]
    pub max_concurrency: usize,

    /// Largest request body (video) accepted, in MiB; larger ones get 413.
    #[arg(long, env = "VIDINFER_MAX_BODY_MB", default_value_t = 1024)]
    pub max_body_mb: u64,

    /// Seconds requests in flight get to finish after SIGTERM (SageMaker waits 30 s).
    #[arg(long, env = "VIDINFER_SHUTDOWN_GRACE", default_value_t = 28)]
    pub shutdown_grace: u64,

    /// Longest one request may take, in seconds, from its first byte to its answer;
    /// past it the job is abandoned and answered 504 (keep it under the endpoint's
    /// InvocationTimeoutSeconds so the error is ours, with a reason).
    #[arg(long, env = "VIDINFER_JOB_TIMEOUT", default_value_t = 900)]
    pub job_timeout: u64,

    /// Directory where request bodies are spooled (each is deleted after its request).
    #[arg(long, env = "VIDINFER_TMP_DIR", default_value_os_t = std::env::temp_dir())]
    pub tmp_dir: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub params: ParamArgs,
}

pub fn main(a: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.max_concurrency >= 1,
        "--max-concurrency must be at least 1"
    );
    anyhow::ensure!(a.job_timeout >= 1, "--job-timeout must be at least 1 s");
    let defaults = a.params.params()?;
    let rt = vidinfer::runtime::build()?;
    // Request bodies a killed server left in the temp dir (live ones are locked).
    let swept = vidinfer::storage::sweep_stale_temp_files(&a.tmp_dir);
    if swept > 0 {
        tracing::info!(swept, dir = %a.tmp_dir.display(), "removed request bodies left by a stopped server");
    }
    rt.block_on(async move {
        // Bind first: SageMaker's health check may connect before the model is loaded.
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        let bound = listener.local_addr().unwrap_or(a.listen);
        tracing::info!(addr = %bound, "listening; /ping answers 503 until the model is loaded");
        let metrics = Arc::new(Metrics::new(Door::Http));
        let state = AppState::new(
            ServeConfig {
                max_body_bytes: a.max_body_mb * 1024 * 1024,
                max_concurrency: a.max_concurrency,
                defaults,
                temp_dir: a.tmp_dir.clone(),
                job_timeout: Duration::from_secs(a.job_timeout),
            },
            metrics,
        );
        let shutdown = crate::shutdown::token();
        let load = {
            let state = state.clone();
            let config = a.model.config();
            let shutdown = shutdown.clone();
            tokio::task::spawn_blocking(move || match Model::load(config) {
                Ok(model) => {
                    state.set_engine(Engine::new(model));
                    Ok(())
                }
                Err(e) => {
                    // Without a model the container is useless: stop, so the platform
                    // reports the failure instead of a health check that never passes.
                    shutdown.cancel();
                    Err(e)
                }
            })
        };
        let router = vidinfer::http::router(state);
        vidinfer::http::serve(
            listener,
            router,
            shutdown,
            Duration::from_secs(a.shutdown_grace),
        )
        .await?;
        if load.is_finished() {
            load.await?.context("loading the model")?;
        }
        Ok(())
    })
}
