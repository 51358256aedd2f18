//! Hostile flag and job-file values (exit 2, naming the flag or the key and file), a closed
//! stdout (exit 0, quietly), and the exit code of account commands that cannot finish.

use std::process::Stdio;

use orbatch::mock::MockConfig;

use crate::support::{Cmd, Done, Env, KEY, dead_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_flags_give_exit_2_naming_the_flag() {
    let env = Env::new().await;
    let input = env.jsonl("h.jsonl", &["x"]);
    let cases: &[(&[&str], &str)] = &[
        (&["--timeout", "1e20"], "--timeout 1e20"),
        (
            &["-j", "3000000000000000000"],
            "-j/--concurrency 3000000000000000000",
        ),
        (&["--rps", "1e-300"], "--rps 1e-300"),
        (&["--rps", "nan"], "--rps NaN"),
        (&["--max-cost", "-1"], "--max-cost -1"),
        (&["--burst", "0"], "--burst 0"),
        (&["--max-attempts", "0"], "--max-attempts 0"),
        (&["--shard", "3/2"], "'--shard <K/N>'"),
    ];
    for (flags, named) in cases {
        let done = env
            .run()
            .input(&input)
            .args(&["-m", "a/b"])
            .args(flags)
            .output()
            .await;
        assert_eq!(done.code, 2, "{flags:?}: {}", done.stderr);
        assert!(done.stderr.contains(named), "{flags:?}: {}", done.stderr);
        assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    }
    let wait = Cmd::new(&["costs", "x.out.jsonl", "--wait", "99999999h"])
        .output()
        .await;
    wait.code(2);
    assert!(
        wait.stderr.contains("'--wait <DURATION>'"),
        "{}",
        wait.stderr
    );
    assert_eq!(env.stats().requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_concurrency_in_a_job_file_names_the_key_and_the_file() {
    let env = Env::new().await;
    env.jsonl("rows.jsonl", &["x"]);
    let job = env.write(
        "neg.toml",
        "input = \"rows.jsonl\"\nmodels = [\"a/b\"]\nconcurrency = -4\n",
    );
    let done = env.run().arg(job.to_str().unwrap()).output().await;
    done.code(2);
    let expected = format!(
        "concurrency = -4 in {}: must be a whole number from 1 to 65536",
        job.display()
    );
    assert!(done.stderr.contains(&expected), "{}", done.stderr);
}

/// Run `cmd` with stdout a pipe whose reader is already closed: every write fails with
/// EPIPE, as when `| head -1` has read its line.
async fn with_stdout_closed(cmd: Cmd) -> Done {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(Stdio::from(writer)).output().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_command_quietly_with_exit_0() {
    let env = Env::new().await;
    let url = env.mock.base_url();
    let input = env.jsonl("p.jsonl", &["a", "b", "c"]);
    env.run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-q"])
        .output()
        .await
        .code(0);
    let out = env.path("p.out.jsonl");
    let out = out.to_str().unwrap();
    let commands = [
        Cmd::new(&["models"]).base_url(&url),
        Cmd::new(&["models", "--format", "json"]).base_url(&url),
        Cmd::new(&["key"]).base_url(&url),
        Cmd::new(&["report", out]),
        Cmd::new(&["report", out, "--format", "csv"]),
        Cmd::new(&["plan", "-m", "openai/gpt-4o-mini"])
            .input(&input)
            .base_url(&url),
        Cmd::new(&["costs", out, "--wait", "0"]).base_url(&url),
        Cmd::new(&[
            "score",
            out,
            "-i",
            input.to_str().unwrap(),
            "--expected",
            "prompt",
        ]),
        Cmd::new(&["export", out, "-i", input.to_str().unwrap()]),
        Cmd::new(&[
            "export",
            out,
            "-i",
            input.to_str().unwrap(),
            "--format",
            "jsonl",
        ]),
    ];
    for cmd in commands {
        let line = cmd.line();
        let done = with_stdout_closed(cmd).await;
        assert_eq!(done.code, 0, "{line}: {}", done.stderr);
        assert!(!done.stderr.contains("error"), "{line}: {}", done.stderr);
        assert!(!done.stderr.contains("panicked"), "{line}: {}", done.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_failure_is_1_and_a_refused_key_is_3() {
    let dead = dead_url();
    for args in [&["models"][..], &["key"]] {
        let done = Cmd::new(args).base_url(&dead).output().await;
        assert_eq!(done.code, 1, "{args:?} against nothing: {}", done.stderr);
        assert!(done.stderr.contains("GET /"), "{}", done.stderr);
    }
    let env = Env::new().await;
    let input = env.jsonl("n.jsonl", &["x"]);
    let plan = Cmd::new(&["plan", "-m", "a/b"])
        .input(&input)
        .base_url(&dead)
        .output()
        .await;
    plan.code(1);

    let env = Env::with(MockConfig {
        require_key: Some("the-right-key".into()),
        ..MockConfig::default()
    })
    .await;
    let done = Cmd::new(&["key", "--api-key-env", "MY_ORBATCH_KEY"])
        .env("MY_ORBATCH_KEY", "sk-wrong")
        .base_url(&env.mock.base_url())
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr.contains("check $MY_ORBATCH_KEY"),
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("OPENROUTER_API_KEY"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains(KEY));

    let input = env.jsonl("r.jsonl", &["x"]);
    let run = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "--api-key-env", "MY_ORBATCH_KEY"])
        .env("MY_ORBATCH_KEY", "sk-wrong")
        .output()
        .await;
    run.code(3);
    assert!(
        run.stderr.contains("read from $MY_ORBATCH_KEY"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("OPENROUTER_API_KEY"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_name_the_key_variable_actually_used() {
    let env = Env::new().await;
    let input = env.jsonl("v.jsonl", &["x"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "--api-key-env", "MY_ORBATCH_KEY"])
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("set MY_ORBATCH_KEY"),
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("OPENROUTER_API_KEY"),
        "{}",
        done.stderr
    );

    let help = Cmd::new(&["run", "--help"]).output().await;
    help.code(0);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    assert!(help.stdout.contains("130  interrupted"), "{}", help.stdout);
}
