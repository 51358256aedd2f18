//! A built-in mock of the OpenRouter API (SPEC §7): OpenRouter-shaped answers that are a pure
//! function of (model, prompt), a price table shared by `/models` and billing, and fault knobs
//! plus per-prompt `[[mock:…]]` directives. It is the target of tests, benchmarks and `run --mock`.
//!
//! Endpoints under `/api/v1`: `POST /chat/completions`, `POST /responses` (both with
//! `stream`), `GET /generation`, `GET /models`, `GET /key` (and `/auth/key`), the management API `POST /keys`,
//! `GET`/`PATCH /keys/{hash}` (`keys.rs`), the Batch API `/batches…` (`batch.rs`, also under
//! `/api/beta`), and the test hook
//! `GET /_mock/stats`.

pub(crate) mod answer;
mod batch;
mod chat;
mod config;
mod directives;
mod faults;
mod generation;
mod inference;
mod json;
mod keys;
mod pricing;
mod responses;
mod server;
mod sse;
mod state;
#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

pub use config::{Bucket, MidStreamBilling, MockConfig, Spread};
pub use pricing::{DEFAULT_PRICE, Price, price_of};
pub use state::MockStats;

use state::Shared;

/// Largest request body accepted (larger ones get axum's 413).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A running mock server (serving in a background task until shut down or dropped).
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockServer {
    /// Bind `addr` (use 127.0.0.1:0 in tests), serve in a background tokio task, return at once.
    pub async fn start(config: MockConfig, addr: SocketAddr) -> std::io::Result<MockServer> {
        let listener = server::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let stop = CancellationToken::new();
        let task = tokio::spawn(server::run(listener, router(shared.clone()), stop.clone()));
        Ok(MockServer {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// A snapshot of the counters (same data as `GET /api/v1/_mock/stats`).
    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// Stop serving: no new connections, in-flight requests get a short grace period.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// For `orbatch mock-server`: start, print `listening on http://127.0.0.1:PORT/api/v1` on
/// stdout, serve until Ctrl-C or SIGTERM.
pub async fn serve(config: MockConfig, port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = MockServer::start(config, addr).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.base_url())?;
        out.flush()?;
    }
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn router(shared: Arc<Shared>) -> Router {
    // `--without`: paths a server that is not OpenRouter does not have (then 404).
    let serves = |path: &str| !shared.config.without.iter().any(|w| w == path);
    let mut api = Router::new().route("/chat/completions", post(chat::handler));
    if serves("responses") {
        api = api.route("/responses", post(responses::handler));
    }
    if serves("generation") {
        api = api.route("/generation", get(generation::generation));
    }
    if serves("models") {
        api = api.route("/models", get(models));
    }
    if serves("key") {
        api = api
            .route("/key", get(generation::key))
            .route("/auth/key", get(generation::key));
    }
    let batches = Router::new()
        .route("/batches", post(batch::submit).get(batch::list))
        .route("/batches/{id}", get(batch::get))
        .route("/batches/{id}/results", get(batch::results))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared.clone());
    let api = api
        .route("/batches", post(batch::submit).get(batch::list))
        .route("/batches/{id}", get(batch::get))
        .route("/batches/{id}/results", get(batch::results))
        .route("/keys", post(keys::create))
        .route("/keys/{hash}", get(keys::get).patch(keys::patch))
        .route("/_mock/stats", get(stats))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared);
    Router::new()
        .nest("/api/v1", api)
        .nest("/api/beta", batches)
}

async fn models(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    pricing::models(
        shared.config.context_length,
        shared.config.max_completion_tokens,
    )
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<MockStats> {
    Json(shared.stats())
}
