//! A key per job (issue #13 §4): `key create/show/disable` with a management key, runs with
//! `--api-key-file`, the limit the server enforces, and `orbatch audit` agreeing — or naming
//! other use of the key.

use std::path::Path;

use orbatch::mock::MockConfig;

use crate::support::{Cmd, Done, Env, KEY, numbered};

const MGMT: &str = "sk-or-v1-MANAGEMENT-fedcba9876543210";

async fn env() -> Env {
    Env::with(MockConfig {
        management_key: Some(MGMT.into()),
        ..MockConfig::default()
    })
    .await
}

/// `orbatch ARGS…` against the mock with the management key.
fn manage(env: &Env, args: &[&str]) -> Cmd {
    Cmd::new(args)
        .base_url(&env.mock.base_url())
        .env("OPENROUTER_MANAGEMENT_KEY", MGMT)
}

/// The first 32-hex-digit word of `text` (the hash `key create` prints).
fn hash_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 32)
        .unwrap_or_else(|| panic!("no hash in:\n{text}"))
        .to_owned()
}

fn assert_never_shown(done: &Done, key: &str) {
    assert!(
        !done.stdout.contains(key) && !done.stderr.contains(key),
        "the key leaked:\n{}\n{}",
        done.stdout,
        done.stderr
    );
}

/// `run` with the key file and no key in the environment.
fn run_with_key(env: &Env, input: &Path, out: &Path, key_file: &Path) -> Cmd {
    env.run()
        .env_remove("OPENROUTER_API_KEY")
        .input(input)
        .args(&[
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai/gpt-4o-mini",
            "-j",
            "1",
        ])
        .args(&["--api-key-file", key_file.to_str().unwrap()])
}

fn costs(env: &Env, out: &Path, key_file: &Path) -> Cmd {
    Cmd::new(&["costs", out.to_str().unwrap()])
        .base_url(&env.mock.base_url())
        .env_remove("OPENROUTER_API_KEY")
        .args(&["--api-key-file", key_file.to_str().unwrap(), "--wait", "5s"])
}

fn audit(env: &Env, outs: &[&Path], hash: &str) -> Cmd {
    let mut c = manage(env, &["audit", "--key-hash", hash]);
    for o in outs {
        c = c.arg(o.to_str().unwrap());
    }
    c
}

#[tokio::test]
async fn a_per_job_key_caps_the_job_and_the_audit_agrees_unless_the_key_was_used_elsewhere() {
    let env = env().await;
    let key_file = env.path("job.key");
    let kf = key_file.to_str().unwrap();
    let created = manage(
        &env,
        &[
            "key", "create", "--name", "job", "--limit", "0.0002", "--out", kf, "-vvv",
        ],
    )
    .output()
    .await;
    created.code(0);
    let hash = hash_in(&created.stdout);
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("sk-or-v1-") && key.len() > 40, "{key}");
    assert_never_shown(&created, &key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten, and nothing is created then.
    let again = manage(
        &env,
        &[
            "key", "create", "--name", "job", "--limit", "1", "--out", kf,
        ],
    )
    .output()
    .await;
    again.code(2);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);

    // Job A with the key file; its audit agrees.
    let a_in = env.jsonl("a.jsonl", &numbered(5, "first job question"));
    let a = env.path("a.out.jsonl");
    let ran = run_with_key(&env, &a_in, &a, &key_file)
        .arg("-vvv")
        .output()
        .await;
    ran.code(0);
    assert_never_shown(&ran, &key);
    costs(&env, &a, &key_file).output().await.code(0);
    let agreed = audit(&env, &[&a], &hash).output().await;
    agreed.code(0);
    assert!(agreed.stdout.contains("agree"), "{}", agreed.stdout);
    assert_never_shown(&agreed, &key);
    let json = audit(&env, &[&a], &hash)
        .args(&["--format", "json"])
        .output()
        .await;
    json.code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["agree"], true);
    let billed = env.stats().billed_usd;
    let usage = v["key"]["usage"].as_f64().unwrap();
    assert!((usage - billed).abs() < 1e-12, "{usage} vs {billed}");

    // Job B spends with the same key: auditing A alone finds other use of the key.
    let b_in = env.jsonl("b.jsonl", &numbered(3, "second job question"));
    let b = env.path("b.out.jsonl");
    run_with_key(&env, &b_in, &b, &key_file)
        .output()
        .await
        .code(0);
    let other = audit(&env, &[&a], &hash).output().await;
    other.code(1);
    assert!(
        other.stdout.contains("other use of the key"),
        "{}",
        other.stdout
    );
    // With B (not looked up yet: counted at its records' cost) the figures agree again.
    let both = audit(&env, &[&a, &b], &hash).output().await;
    both.code(0);
    assert!(both.stdout.contains("not looked up yet"), "{}", both.stdout);
    // The same output twice is counted once.
    let twice = audit(&env, &[&a, &b, &a], &hash).output().await;
    twice.code(0);
    assert!(twice.stderr.contains("given twice"), "{}", twice.stderr);

    // Job C runs into the key's limit: 402, and the run stops as out of credit (exit 3).
    let c_in = env.jsonl("c.jsonl", &numbered(40, "third job question"));
    let c = env.path("c.out.jsonl");
    let capped = run_with_key(&env, &c_in, &c, &key_file).output().await;
    capped.code(3);
    assert!(
        capped.stderr.contains("the key's credit limit is reached")
            && capped.stderr.contains("raise the key's limit"),
        "{}",
        capped.stderr
    );
    assert!(env.stats().by_status.get(&402).copied().unwrap_or(0) >= 1);
    costs(&env, &c, &key_file).output().await.code(0);
    audit(&env, &[&a, &b, &c], &hash).output().await.code(0);

    // Disabled after the job: the key is refused (exit 3), `key show` says so.
    let disabled = manage(&env, &["key", "disable", &hash]).output().await;
    disabled.code(0);
    assert!(disabled.stdout.contains("disabled"), "{}", disabled.stdout);
    let refused = run_with_key(&env, &c_in, &env.path("d.out.jsonl"), &key_file)
        .output()
        .await;
    refused.code(3);
    assert!(refused.stderr.contains("job.key"), "{}", refused.stderr);
    let shown = manage(&env, &["key", "show", &hash]).output().await;
    shown.code(0);
    assert!(shown.stdout.contains("disabled"), "{}", shown.stdout);
    assert_never_shown(&shown, &key);
}

#[tokio::test]
async fn management_calls_need_the_management_key() {
    let env = env().await;
    let out = env.path("k.key");
    let kf = out.to_str().unwrap();
    let create = ["key", "create", "--name", "j", "--limit", "1", "--out", kf];
    // None set: exit 2, naming the variable; no file left behind.
    let none = Cmd::new(&create)
        .base_url(&env.mock.base_url())
        .output()
        .await;
    none.code(2);
    assert!(
        none.stderr.contains("OPENROUTER_MANAGEMENT_KEY"),
        "{}",
        none.stderr
    );
    assert!(!out.exists());
    // An ordinary key: the server refuses (403), orbatch says a management key is needed.
    let ordinary = Cmd::new(&create)
        .base_url(&env.mock.base_url())
        .env("OPENROUTER_MANAGEMENT_KEY", KEY)
        .output()
        .await;
    ordinary.code(3);
    assert!(
        ordinary.stderr.contains("needs a management key"),
        "{}",
        ordinary.stderr
    );
    assert!(
        !out.exists(),
        "the claimed file is removed when nothing was created"
    );
    // The management key cannot make completions.
    let input = env.jsonl("q.jsonl", &["hello"]);
    env.run()
        .env("OPENROUTER_API_KEY", MGMT)
        .input(&input)
        .args(&["-m", "a/b"])
        .output()
        .await
        .code(3);
    // Unknown hash: not found, said so.
    let unknown = manage(&env, &["key", "show", "0123abcd"]).output().await;
    unknown.code(1);
    assert!(
        unknown.stderr.contains("no key has this hash"),
        "{}",
        unknown.stderr
    );
}

#[tokio::test]
async fn a_server_that_refuses_with_401_is_told_the_same() {
    let env = Env::with(MockConfig {
        management_key: Some(MGMT.into()),
        management_refusal: 401,
        ..MockConfig::default()
    })
    .await;
    let done = Cmd::new(&["key", "show", "abc"])
        .base_url(&env.mock.base_url())
        .env("OPENROUTER_MANAGEMENT_KEY", KEY)
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr.contains("needs a management key"),
        "{}",
        done.stderr
    );
}

#[tokio::test]
async fn a_key_limit_answered_403_also_stops_the_run() {
    let env = Env::with(MockConfig {
        management_key: Some(MGMT.into()),
        key_limit_status: 403,
        ..MockConfig::default()
    })
    .await;
    let key_file = env.path("job.key");
    manage(
        &env,
        &[
            "key",
            "create",
            "--name",
            "j",
            "--limit",
            "0",
            "--out",
            key_file.to_str().unwrap(),
        ],
    )
    .output()
    .await
    .code(0);
    let input = env.jsonl("q.jsonl", &numbered(3, "q"));
    let done = run_with_key(&env, &input, &env.path("o.jsonl"), &key_file)
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr.contains("the key's credit limit is reached"),
        "{}",
        done.stderr
    );
    assert_eq!(env.stats().by_status.get(&403).copied(), Some(1));
}

#[tokio::test]
async fn a_key_file_must_hold_a_key_and_should_be_private() {
    let env = env().await;
    let input = env.jsonl("q.jsonl", &["hello"]);
    let empty = env.write("empty.key", "\n");
    let done = run_with_key(&env, &input, &env.path("o.jsonl"), &empty)
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("empty.key") && done.stderr.contains("empty"),
        "{}",
        done.stderr
    );
    let missing = env.path("missing.key");
    let done = Cmd::new(&["plan", "-i", input.to_str().unwrap(), "-m", "a/b"])
        .args(&["--api-key-file", missing.to_str().unwrap()])
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("missing.key"), "{}", done.stderr);
    // Readable by others: it works, with a warning saying how to fix it.
    let shared = env.write("shared.key", KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let done = run_with_key(&env, &input, &env.path("o.jsonl"), &shared)
            .output()
            .await;
        done.code(0);
        assert!(
            done.stderr.contains("can be read by others") && done.stderr.contains("chmod 600"),
            "{}",
            done.stderr
        );
        assert_never_shown(&done, KEY);
    }
}
