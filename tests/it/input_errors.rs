//! Bad input is found before the first request: `PATH:LINE: what is wrong`, exit 2,
//! nothing sent.

use crate::support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_jsonl_lines_are_all_reported_and_nothing_is_sent() {
    let env = Env::new().await;
    let input = env.write(
        "bad.jsonl",
        "{\"id\":\"1\",\"prompt\":\"fine\"}\n[1,2]\n{\"id\":\"3\",\"prompt\":\n{\"id\":\"1\",\"prompt\":\"dup\"}\n\"text\"\n",
    );
    let done = env.run().input(&input).args(&["-m", "a/b"]).output().await;
    done.code(2);
    let err = &done.stderr;
    assert!(
        err.contains("bad.jsonl:2: expected a JSON object, found an array"),
        "{err}"
    );
    assert!(err.contains("bad.jsonl:3:"), "{err}");
    assert!(
        err.contains("bad.jsonl:4:") && err.contains("duplicate id"),
        "{err}"
    );
    assert!(err.contains("bad.jsonl:5:"), "{err}");
    assert!(!err.contains("bad.jsonl:1:"), "{err}");
    assert_eq!(env.stats().requests, 0, "nothing may be sent");
    assert!(
        !env.path("bad.out.jsonl").exists()
            || std::fs::read_to_string(env.path("bad.out.jsonl"))
                .unwrap()
                .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_problems_and_missing_template_variables() {
    let env = Env::new().await;
    let input = env.write("t.csv", "id,title\na,One\nb,Two,extra\nc,Three\n");
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "--template", "{{ title }} {{ body }}"])
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("t.csv:3:"), "{}", done.stderr);
    assert!(
        done.stderr.contains("body"),
        "names the missing variable: {}",
        done.stderr
    );
    assert_eq!(env.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_need_a_model_and_a_prompt() {
    let env = Env::new().await;
    let input = env.write(
        "m.jsonl",
        "{\"prompt\":\"x\"}\n{\"text\":\"no prompt\",\"model\":\"a/b\"}\n",
    );
    let done = env.run().input(&input).output().await;
    done.code(2);
    assert!(
        done.stderr.contains("m.jsonl:1:") && done.stderr.contains("-m"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("m.jsonl:2:") && done.stderr.contains("--template"),
        "{}",
        done.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_job_file_keys_are_errors() {
    let env = Env::new().await;
    env.jsonl("r.jsonl", &["a"]);
    let job = env.write("bad.toml", "input = \"r.jsonl\"\nmodel = \"a/b\"\n");
    let done = env.run().arg(job.to_str().unwrap()).output().await;
    done.code(2);
    assert!(
        done.stderr.contains("bad.toml") && done.stderr.contains("model"),
        "{}",
        done.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_output_fails_before_any_request() {
    let env = Env::new().await;
    let input = env.jsonl("w.jsonl", &["a"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-o"])
        .arg(env.path("no/such/dir/out.jsonl").to_str().unwrap())
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("out.jsonl"), "{}", done.stderr);
    assert_eq!(env.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_quoting_the_input_carry_no_terminal_escapes() {
    let env = Env::new().await;
    let input = env.write(
        "esc.jsonl",
        "{\"id\":\"\\u001b[2Jx\",\"prompt\":\"a\"}\n{\"id\":\"\\u001b[2Jx\",\"prompt\":\"b\"}\n",
    );
    let done = env.run().input(&input).args(&["-m", "a/b"]).output().await;
    done.code(2);
    assert!(
        done.stderr.contains("esc.jsonl:2: duplicate id"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains('\u{1b}'), "{:?}", done.stderr);
}
