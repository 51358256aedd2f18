//! The happy paths of `orbatch run`: input shapes, fan-out, job files, the record format.

use serde_json::Value;

use crate::support::{Cmd, Env, KEY, record, records};

const FIELDS: &[&str] = &[
    "id",
    "model",
    "endpoint",
    "row",
    "status",
    "output",
    "finish_reason",
    "generation_id",
    "generation_ids",
    "provider",
    "model_used",
    "usage",
    "attempts",
    "latency_ms",
    "ttft_ms",
    "started_at",
    "finished_at",
    "fingerprint",
    "error",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_rows_become_complete_records() {
    let env = Env::new().await;
    let input = env.jsonl("q.jsonl", &["What is 2+2?", "Name a colour.", "Say hi."]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-q"])
        .output()
        .await;
    done.code(0);
    assert_eq!(done.stdout, "", "run prints nothing on stdout");
    let recs = records(&env.path("q.out.jsonl"));
    assert_eq!(recs.len(), 3);
    let prompts = ["What is 2+2?", "Name a colour.", "Say hi."];
    for (i, prompt) in prompts.iter().enumerate() {
        // Records come in the order answers do.
        let r = record(&recs, &format!("r{}", i + 1));
        for f in FIELDS {
            assert!(r.get(*f).is_some(), "record lacks {f}: {r}");
        }
        assert_eq!(r["status"], "ok");
        assert_eq!(r["endpoint"], "chat");
        assert_eq!(r["model"], "openai/gpt-4o-mini");
        // The mock's answer: a fixed head, words from a hash, then the prompt's last words.
        let output = r["output"].as_str().unwrap();
        assert!(
            output.starts_with("mock answer (openai/gpt-4o-mini): ")
                && output.ends_with(&format!(" echo: {prompt}")),
            "{output}"
        );
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["error"], Value::Null);
        assert_eq!(r["ttft_ms"], Value::Null);
        let gid = r["generation_id"].as_str().unwrap();
        assert!(gid.starts_with("gen-"), "{gid}");
        assert_eq!(r["generation_ids"], serde_json::json!([gid]));
        assert!(r["usage"]["cost"].as_f64().unwrap() > 0.0);
        // The mock counts ceil(chars / 4) + 4 per message.
        let tokens = (prompt.len() as u64).div_ceil(4) + 4;
        assert_eq!(r["usage"]["prompt_tokens"], tokens, "{r}");
        assert_eq!(r["fingerprint"].as_str().unwrap().len(), 32);
        let ts = r["started_at"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
        assert!(r["provider"].is_string());
        assert!(r["model_used"].is_string());
    }
    // Rows are numbered from 1, ids come from the rows.
    assert_eq!(record(&recs, "r2")["row"], 2);
    let stats = env.stats();
    assert_eq!(stats.requests, 3);
    let billed: f64 = recs
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();
    assert!(
        (billed - stats.billed_usd).abs() < 1e-12,
        "{billed} vs {}",
        stats.billed_usd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_goes_to_every_model_and_row_models_win() {
    let env = Env::new().await;
    let input = env.write(
        "fan.jsonl",
        "{\"id\":\"a\",\"prompt\":\"one\"}\n\n{\"id\":\"b\",\"prompt\":\"two\",\"model\":\"mock/special\"}\n",
    );
    env.run()
        .input(&input)
        .args(&[
            "-m",
            "openai/gpt-4o-mini",
            "-m",
            "anthropic/claude-3.5-haiku",
            "-q",
        ])
        .output()
        .await
        .code(0);
    let recs = records(&env.path("fan.out.jsonl"));
    let mut keys: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["model"].as_str().unwrap().into(),
            )
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("a".into(), "anthropic/claude-3.5-haiku".into()),
            ("a".into(), "openai/gpt-4o-mini".into()),
            ("b".into(), "mock/special".into()),
        ]
    );
    // A blank line is skipped but still counts as a line, not as a row.
    assert_eq!(record(&recs, "b")["row"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_a_template_and_a_job_file() {
    let env = Env::new().await;
    env.write(
        "docs.csv",
        "id,title,body\nd1,Cats,They purr.\nd2,Dogs,\"They bark, loudly.\"\n",
    );
    let job = env.write(
        "job.toml",
        "input = \"docs.csv\"\nmodels = [\"meta-llama/llama-3.1-8b-instruct\"]\n\
         template = \"Summarise {{ title }}: {{ body }}\"\nsystem = \"Be brief.\"\n\
         concurrency = 2\n[params]\ntemperature = 0\n",
    );
    env.run()
        .arg(job.to_str().unwrap())
        .arg("-q")
        .output()
        .await
        .code(0);
    let recs = records(&env.path("docs.out.jsonl"));
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r["status"] == "ok"));
    // The mock's answer ends with the prompt's last six words: the system prompt, then the
    // rendered template.
    let out = record(&recs, "d2")["output"].as_str().unwrap().to_owned();
    assert!(
        out.ends_with(" echo: brief. Summarise Dogs: They bark, loudly."),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_job_file() {
    let env = Env::new().await;
    env.jsonl("rows.jsonl", &["a", "b"]);
    let job = env.write(
        "j.toml",
        "input = \"rows.jsonl\"\nmodels = [\"from/file\"]\n",
    );
    env.run()
        .arg(job.to_str().unwrap())
        .args(&["-m", "from/flag", "-o"])
        .arg(env.path("custom.jsonl").to_str().unwrap())
        .arg("-q")
        .output()
        .await
        .code(0);
    let recs = records(&env.path("custom.jsonl"));
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r["model"] == "from/flag"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_stdin() {
    let env = Env::new().await;
    let out = env.path("stdin.out.jsonl");
    env.run()
        .args(&[
            "-i",
            "-",
            "--input-format",
            "jsonl",
            "-m",
            "x/y",
            "-q",
            "-o",
        ])
        .arg(out.to_str().unwrap())
        .stdin(b"{\"prompt\":\"hello\"}\n{\"prompt\":\"world\"}\n")
        .output()
        .await
        .code(0);
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    // No id field: the row number is the id.
    assert_eq!(record(&recs, "2")["row"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_job_runs_with_mock_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.out.jsonl");
    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/demo.toml");
    let done = Cmd::new(&["run", job, "--mock", "-o", out.to_str().unwrap()])
        .env_remove("OPENROUTER_API_KEY")
        .output()
        .await;
    done.code(0);
    // 12 rows × 2 models, every one answered at the first attempt.
    assert!(
        done.stderr
            .starts_with("orbatch: 24 requests (12 rows) from ")
            && done
                .stderr
                .contains("\n  sent 24: 24 ok, 0 failed (24 attempts)\n"),
        "summary on stderr: {}",
        done.stderr
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 24);
    assert!(recs.iter().all(|r| r["status"] == "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_a_usage_error_and_sends_nothing() {
    let env = Env::new().await;
    let input = env.jsonl("k.jsonl", &["x"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b"])
        .env_remove("OPENROUTER_API_KEY")
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("OPENROUTER_API_KEY"),
        "{}",
        done.stderr
    );
    assert_eq!(env.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_never_appears_anywhere() {
    let env = Env::new().await;
    let input = env.jsonl("s.jsonl", &["fine", "[[mock:401]] refused"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-vvv", "-j", "1"])
        .env("RUST_LOG", "trace")
        .output()
        .await;
    // The refused key stops the run.
    done.code(3);
    assert!(!done.stderr.contains(KEY) && !done.stdout.contains(KEY));
    assert!(
        !done.stderr.contains("TESTKEY"),
        "the key leaked into stderr"
    );
    let out = std::fs::read_to_string(env.path("s.out.jsonl")).unwrap();
    assert!(!out.contains("TESTKEY"), "the key leaked into the output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_headers_and_user_agent_reach_the_server() {
    let env = Env::new().await;
    let input = env.jsonl("attr.jsonl", &["hi"]);
    env.run()
        .input(&input)
        .args(&[
            "-m",
            "a/b",
            "-q",
            "--app-url",
            "https://example.test/app",
            "--app-title",
            "My App",
        ])
        .output()
        .await
        .code(0);
    let recs = records(&env.path("attr.out.jsonl"));
    let id = recs[0]["generation_id"].as_str().unwrap();
    let url = format!("{}/generation?id={id}", env.mock.base_url());
    let body: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"]["http_referer"], "https://example.test/app",
        "{body}"
    );
    assert!(
        body["data"]["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("orbatch/"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_disjoint_and_complete() {
    let env = Env::new().await;
    let input = env.jsonl("sh.jsonl", &crate::support::numbered(40, "item"));
    for n in [2u32, 3] {
        let mut seen: Vec<String> = Vec::new();
        for k in 0..n {
            let out = env.path(&format!("sh.{k}of{n}.jsonl"));
            env.run()
                .input(&input)
                .args(&["-m", "a/b", "-q", "--shard", &format!("{k}/{n}"), "-o"])
                .arg(out.to_str().unwrap())
                .output()
                .await
                .code(0);
            seen.extend(
                records(&out)
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned()),
            );
        }
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(total, 40, "shards of {n} overlap or miss rows");
        assert_eq!(seen.len(), 40);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_batch_lines_limit_keep_fields_and_template_files() {
    let env = Env::new().await;
    let input = env.write(
        "batch.jsonl",
        "{\"custom_id\":\"b1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n\
         {\"custom_id\":\"b2\",\"method\":\"POST\",\"url\":\"/v1/responses\",\"body\":{\"model\":\"openai/gpt-4o-mini\",\"input\":\"hello\"}}\n\
         {\"custom_id\":\"b3\",\"method\":\"POST\",\"url\":\"/v1/responses\",\"body\":{\"model\":\"openai/gpt-4o-mini\",\"input\":\"not sent\"}}\n",
    );
    env.run()
        .input(&input)
        .args(&["-q", "--limit", "2"])
        .output()
        .await
        .code(0);
    let recs = records(&env.path("batch.out.jsonl"));
    assert_eq!(recs.len(), 2, "--limit 2");
    assert_eq!(record(&recs, "b1")["endpoint"], "chat");
    assert_eq!(record(&recs, "b2")["endpoint"], "responses");

    env.write("t.j2", "Tell me about {{ animal }}.");
    let input = env.write(
        "kf.jsonl",
        "{\"id\":\"k1\",\"animal\":\"otters\",\"source\":\"zoo\"}\n",
    );
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "--keep-fields", "--template-file"])
        .arg(env.path("t.j2").to_str().unwrap())
        .output()
        .await
        .code(0);
    let r = &records(&env.path("kf.out.jsonl"))[0];
    assert_eq!(r["meta"]["source"], "zoo", "{r}");
    assert!(
        r["output"]
            .as_str()
            .unwrap()
            .ends_with(" echo: Tell me about otters."),
        "{r}"
    );
}

/// `orbatch` under `sh -c 'LIMITS; exec orbatch run …'`, against this mock.
#[cfg(unix)]
async fn run_with_limits(env: &Env, limits: &str, args: &[&str]) -> std::process::Output {
    let input = env.jsonl("fd.jsonl", &["a", "b", "c"]);
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_orbatch"))
        .args(["run", "-m", "x/y", "--base-url", &env.mock.base_url(), "-i"])
        .arg(&input)
        .args(args)
        .env("OPENROUTER_API_KEY", KEY)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

/// A -j that needs more open files than the soft limit raises it (up to the hard one); one
/// that needs more than the hard limit is refused before anything is sent, saying what to run.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_for_j_or_the_run_refused() {
    let env = Env::new().await;
    let raised = run_with_limits(&env, "ulimit -Sn 64", &["-j", "40", "-v"]).await;
    let stderr = String::from_utf8_lossy(&raised.stderr);
    assert_eq!(raised.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("open-file limit raised from 64 to 114 for -j 40"),
        "{stderr}"
    );
    assert_eq!(env.stats().requests, 3);

    let refused = run_with_limits(&env, "ulimit -Sn 64 && ulimit -Hn 256", &["-j", "1024"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "orbatch: error: -j 1024 needs up to 1344 open files, but the hard limit (`ulimit -Hn`) \
         is 256; run `ulimit -n 1344` in this shell first (raising the hard limit may need root \
         or /etc/security/limits.conf), or use -j 153 or less\n"
    );
    assert_eq!(env.stats().requests, 3, "nothing more was sent");
}

/// Answers cut at max_tokens stay ok (their text is real) but are counted, per model, in the
/// summary and the report; `--truncated error` makes them error records a rerun sends again,
/// with the usage (and cost) they were billed kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cut_at_max_tokens_are_flagged_or_errors() {
    let env = Env::new().await;
    let input = env.jsonl("t.jsonl", &["one", "two", "three"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-p", "max_tokens=2"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr
            .contains("truncated: 3 answers were cut at max_tokens (finish_reason length; m/a 3)"),
        "{}",
        done.stderr
    );
    let out = env.path("t.out.jsonl");
    let recs = records(&out);
    assert!(
        recs.iter()
            .all(|r| r["status"] == "ok" && r["finish_reason"] == "length")
    );
    let report = Cmd::new(&["report", out.to_str().unwrap(), "--format", "json"])
        .output()
        .await;
    let v: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(v["total"]["truncated"], 3);
    let table = Cmd::new(&["report", out.to_str().unwrap()]).output().await;
    assert!(table.stdout.contains("truncated"), "{}", table.stdout);

    // As errors: not retried in the run, kept billed, sent again by a rerun.
    let strict = env.path("strict.jsonl");
    let done = env
        .run()
        .input(&input)
        .args(&[
            "-m",
            "m/a",
            "-p",
            "max_tokens=2",
            "--truncated",
            "error",
            "-q",
            "-o",
        ])
        .arg(strict.to_str().unwrap())
        .output()
        .await;
    done.code(1);
    let recs = records(&strict);
    for r in &recs {
        assert_eq!(r["status"], "error", "{r}");
        assert_eq!(r["error"]["kind"], "truncated", "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
        assert!(r["usage"]["cost"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["generation_ids"].as_array().unwrap().len(), 1, "{r}");
    }
    let before = env.stats().requests;
    env.run()
        .input(&input)
        .args(&["-m", "m/a", "-p", "max_tokens=2", "-q", "-o"])
        .arg(strict.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(
        env.stats().requests,
        before + 3,
        "the 3 errors were sent again"
    );
}

/// Log lines are in orbatch's own format (`orbatch: warning: …`), plain text when stderr is
/// not a terminal: no colour codes in a log file or a CI log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_plain_and_in_one_format() {
    let env = Env::new().await;
    let input = env.jsonl(
        "w.jsonl",
        &["[[mock:429*1 retry-after=1]] wait a bit", "fine"],
    );
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-v"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr
            .contains("orbatch: warning: server asked to wait 1.0s; pausing all requests"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("orbatch: info: "), "{}", done.stderr);
    assert!(
        !done.stderr.contains('\u{1b}'),
        "colour codes: {:?}",
        done.stderr
    );
    assert!(!done.stderr.contains(" WARN "), "{}", done.stderr);
}
