//! The one place a front door's tokio runtime is built.
//!
//! Two worker threads are enough: the heavy work runs elsewhere (decode on blocking
//! threads, inference on the model thread), and the async side only moves bytes and
//! frames between them.

/// The runtime every `vidinfer-worker` subcommand runs on.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vidinfer-rt")
        .enable_all()
        .build()
}
