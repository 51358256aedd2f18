//! Server-sent-event plumbing for streamed answers: a producer task writes events into a
//! channel that backs the response body, so pacing is plain sequential async code and a client
//! that goes away simply makes the next send fail.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::state::Shared;

type Item = Result<Bytes, std::io::Error>;

/// The sending half of a streamed body. Every method returns false once the client is gone.
pub struct Sse {
    tx: mpsc::Sender<Item>,
}

/// A streamed body and the [`Sse`] that feeds it.
pub fn channel() -> (Sse, Body) {
    let (tx, rx) = mpsc::channel::<Item>(16);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (Sse { tx }, Body::from_stream(stream))
}

impl Sse {
    async fn send(&self, text: String) -> bool {
        self.tx.send(Ok(Bytes::from(text))).await.is_ok()
    }

    /// `: OPENROUTER PROCESSING` keep-alive comments, `n` of them.
    pub async fn comments(&self, n: u32) -> bool {
        for _ in 0..n {
            if !self.send(": OPENROUTER PROCESSING\n\n".to_string()).await {
                return false;
            }
        }
        true
    }

    /// One `data: <json>` event.
    pub async fn data(&self, json: &Value) -> bool {
        self.send(format!("data: {json}\n\n")).await
    }

    /// The final `data: [DONE]`.
    pub async fn done(&self) -> bool {
        self.send("data: [DONE]\n\n".to_string()).await
    }
}

/// The pause between stream steps: one answer latency spread over `steps` pauses.
pub fn pacing(state: &Shared, steps: usize) -> Duration {
    state.latency() / (steps.max(1) as u32)
}

/// `--stall-ms`: wait before the first body byte.
pub async fn stall(state: &Shared) {
    super::inference::sleep(Duration::from_millis(state.config.stall_ms)).await;
}
