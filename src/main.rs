//! The `orbatch` binary: parse arguments, run the command on a tokio runtime, exit.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = orbatch::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orbatch: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let interrupt = CancellationToken::new();
    let exit = runtime.block_on(async {
        tokio::spawn(watch_signals(interrupt.clone()));
        // The command runs as a task on the worker threads, not on this thread: a future
        // polled by `block_on` here is woken through a futex on every event (for `run`,
        // every finished request), which costs more CPU than the request itself.
        match tokio::spawn(orbatch::execute(cli, interrupt)).await {
            Ok(exit) => exit,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => orbatch::exit::Exit::Interrupted,
            },
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(500));
    ExitCode::from(exit.code())
}

/// First Ctrl-C / SIGTERM: stop dispatching and let in-flight requests finish. Second: quit
/// at once (every record already written is a whole line, so the output stays valid).
async fn watch_signals(interrupt: CancellationToken) {
    for _ in 0..2 {
        if wait_for_signal().await.is_err() {
            return;
        }
        if interrupt.is_cancelled() {
            eprintln!("orbatch: interrupted again; quitting now");
            std::process::exit(130);
        }
        eprintln!("orbatch: stopping: finishing requests in flight (Ctrl-C again to quit at once)");
        interrupt.cancel();
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
