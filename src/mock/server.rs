//! The HTTP server loop. It is hand-rolled over hyper (not `axum::serve`) for one reason: to
//! drop a connection with no response at all (`drop` fault), each connection gets a kill
//! switch ([`ConnKill`]) that handlers find in the request extensions; firing it makes the loop
//! drop that connection's future, which closes the socket before any status line is written.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-connection switch: firing it closes the connection without a response.
#[derive(Clone)]
pub struct ConnKill(Arc<Notify>);

impl ConnKill {
    pub fn fire(&self) {
        self.0.notify_one();
    }
}

/// How long graceful shutdown waits for in-flight requests before cutting connections.
const GRACE: Duration = Duration::from_millis(500);

/// Accept connections until `stop` is cancelled, then shut down all connections.
pub async fn run(listener: TcpListener, router: Router, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(serve_connection(stream, router.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::debug!("mock accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        }
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_connection(stream: TcpStream, router: Router, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let kill = ConnKill(Arc::new(Notify::new()));
    let tower = TowerToHyperService::new(router);
    let conn_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(conn_kill.clone());
        let tower = tower.clone();
        async move {
            let resp = hyper::service::Service::call(&tower, req).await;
            resp.map_err(|never: Infallible| match never {})
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = kill.0.notified() => return,
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = kill.0.notified() => {}
        _ = tokio::time::sleep(GRACE) => {}
    }
}

/// Bind `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
