//! A small fluent harness: start a mock, write an input file, run `orbatch`, read records.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use orbatch::mock::{MockConfig, MockServer, MockStats};
use serde_json::Value;

/// A recognisable fake key: tests check it never leaks.
pub const KEY: &str = "sk-or-v1-TESTKEY-0123456789abcdef";

/// A mock server plus a temp folder for inputs and outputs.
pub struct Env {
    pub mock: MockServer,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        Env::with(MockConfig::default()).await
    }

    pub async fn with(config: MockConfig) -> Env {
        let mock = MockServer::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("mock server starts");
        Env {
            mock,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file in the temp folder and return its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write input");
        p
    }

    /// JSONL rows `{"id": "r<i>", "prompt": "<prompt>"}` for each prompt.
    pub fn jsonl<S: AsRef<str>>(&self, name: &str, prompts: &[S]) -> PathBuf {
        let lines: String = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let row = serde_json::json!({"id": format!("r{}", i + 1), "prompt": p.as_ref()});
                format!("{row}\n")
            })
            .collect();
        self.write(name, &lines)
    }

    pub fn stats(&self) -> MockStats {
        self.mock.stats()
    }

    /// Wait until the mock's stats satisfy `ready` (polled every 5 ms; panics after 30 s, so
    /// a run that never gets there fails instead of hanging). Tests wait for what the server
    /// saw, never for a fixed time.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&MockStats) -> bool) -> MockStats {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.stats();
            if ready(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {what}: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `orbatch run` against this mock with the test key.
    pub fn run(&self) -> Cmd {
        Cmd::new(&["run"]).base_url(&self.mock.base_url())
    }
}

/// `n` distinct prompts: `"{prefix} 0"`, `"{prefix} 1"`, …
pub fn numbered(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

/// A command line being built.
pub struct Cmd {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    stdout: Option<std::process::Stdio>,
}

impl Cmd {
    pub fn new(args: &[&str]) -> Cmd {
        Cmd {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("OPENROUTER_API_KEY".into(), KEY.into()),
                // Retries without real backoff sleeps; Retry-After still applies.
                ("ORBATCH_BACKOFF_BASE_MS".into(), "1".into()),
            ],
            stdin: None,
            stdout: None,
        }
    }

    pub fn base_url(self, url: &str) -> Cmd {
        self.args(&["--base-url", url])
    }

    pub fn arg(mut self, a: impl AsRef<str>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Cmd {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    pub fn input(self, p: &Path) -> Cmd {
        self.arg("-i").arg(p.to_str().unwrap())
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn env_remove(mut self, k: &str) -> Cmd {
        self.env.retain(|(key, _)| key != k);
        self
    }

    /// Send stdout there instead of capturing it.
    pub fn stdout(mut self, to: std::process::Stdio) -> Cmd {
        self.stdout = Some(to);
        self
    }

    /// The command line, for messages.
    pub fn line(&self) -> String {
        format!("orbatch {}", self.args.join(" "))
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Cmd {
        self.stdin = Some(bytes.to_vec());
        self
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_orbatch"));
        c.args(&self.args);
        c.env_remove("OPENROUTER_API_KEY");
        c.env_remove("OPENROUTER_BASE_URL");
        c.env_remove("RUST_LOG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.kill_on_drop(true);
        c
    }

    /// Run to completion.
    pub async fn output(mut self) -> Done {
        use tokio::io::AsyncWriteExt;
        let started = Instant::now();
        let mut c = self.command();
        c.stdin(std::process::Stdio::piped());
        c.stdout(
            self.stdout
                .take()
                .unwrap_or_else(std::process::Stdio::piped),
        );
        c.stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn orbatch");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(bytes) = &self.stdin {
            stdin.write_all(bytes).await.expect("write stdin");
        }
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("orbatch finished within 60 s")
            .expect("orbatch ran");
        Done::new(out, started.elapsed())
    }

    /// Start without waiting (for kill tests).
    pub fn spawn(self) -> tokio::process::Child {
        let mut c = self.command();
        c.stdin(std::process::Stdio::null());
        c.stdout(std::process::Stdio::null());
        c.stderr(std::process::Stdio::piped());
        c.spawn().expect("spawn orbatch")
    }
}

/// A finished command.
pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Done {
    fn new(out: Output, elapsed: Duration) -> Done {
        Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    /// Assert the exit code, showing stderr when it differs.
    pub fn code(&self, expected: i32) -> &Done {
        assert_eq!(self.code, expected, "exit code; stderr:\n{}", self.stderr);
        self
    }
}

/// Every line of a JSONL file as JSON; panics on an invalid line (the file must stay valid).
pub fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output must end with a newline"
    );
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: invalid JSON ({e}): {l}", path.display(), i + 1))
        })
        .collect()
}

/// The record for `id` (the last one, as resume reads it).
pub fn record<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records
        .iter()
        .rev()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record for {id}"))
}

/// A base URL where nothing listens.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/api/v1")
}
