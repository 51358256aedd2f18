//! `orbatch score` end to end: a real run against the mock, expected answers in the input,
//! `OUT.scores.jsonl` and the accuracy table checked line by line; bad scorer specs exit 2.

use serde_json::Value;

use crate::support::{Cmd, Env, records};

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_scored_against_the_expected_column() {
    let env = Env::new().await;
    let rows = [
        ("q1", "first"),
        ("q2", "second"),
        ("q3", "third"),
        ("q4", "[[mock:400]] x"),
    ];
    let write_input = |expected: &dyn Fn(&str) -> String| {
        let mut text = String::from("id,prompt,answer\n");
        for (id, prompt) in rows {
            text.push_str(&format!(
                "{id},{},{}\n",
                csv_quote(prompt),
                csv_quote(&expected(id))
            ));
        }
        env.write("q.csv", &text)
    };
    let input = write_input(&|_| "unknown yet".to_owned());
    let out = env.path("q.out.jsonl");
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-m", "m/b", "-q", "-o", out.to_str().unwrap()])
        .output()
        .await;
    done.code(1);
    // The expected answers: m/a's own answers (so m/a is right on q1 and q2), except on q3,
    // which neither model said; q4 failed for both, so it has nothing to score.
    let recs = records(&out);
    let a_said = |id: &str| {
        recs.iter()
            .find(|r| r["id"] == id && r["model"] == "m/a")
            .and_then(|r| r["output"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    write_input(&|id| match id {
        "q3" => "nobody said this".into(),
        "q4" => "never answered".into(),
        _ => a_said(id),
    });
    let done = Cmd::new(&[
        "score",
        out.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
    ])
    .args(&["--expected", "answer", "--scorer", "exact"])
    .output()
    .await;
    done.code(0);
    let scores_path = env.path("q.out.scores.jsonl");
    assert!(
        done.stderr
            .contains(&format!("wrote {}", scores_path.display())),
        "{}",
        done.stderr
    );
    let lines: Vec<Value> = std::fs::read_to_string(&scores_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 3 answered rows × 2 models.
    assert_eq!(lines.len(), 6, "{lines:#?}");
    for l in &lines {
        let id = l["id"].as_str().unwrap();
        let model = l["model"].as_str().unwrap();
        let want_pass = model == "m/a" && id != "q3";
        assert_eq!(l["passed"], want_pass, "{l}");
        assert_eq!(l["score"], if want_pass { 1.0 } else { 0.0 });
        assert_eq!(l["scorer"], "exact");
        let said = recs
            .iter()
            .find(|r| r["id"] == id && r["model"] == model)
            .unwrap()["output"]
            .as_str()
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(l["extracted"], said.as_str());
    }
    // The table: best first, with what could not be scored.
    let table: Vec<&str> = done.stdout.lines().filter(|l| l.contains("m/")).collect();
    assert_eq!(table.len(), 2, "{}", done.stdout);
    assert!(
        table[0].contains("m/a") && table[0].contains("66.7%"),
        "{}",
        done.stdout
    );
    assert!(
        table[1].contains("m/b") && table[1].contains("0.0%"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("2 requests have no answer"),
        "{}",
        done.stdout
    );
    // The same from a job file's [score] table, with another scorer: the file is replaced.
    let job = env.write(
        "eval.toml",
        "input = \"q.csv\"\noutput = \"q.out.jsonl\"\nmodels = [\"m/a\", \"m/b\"]\n\
         [score]\nexpected = \"answer\"\nscorer = \"contains:ignore_case\"\n",
    );
    let by_job = Cmd::new(&["score", "--job", job.to_str().unwrap(), "-q"])
        .output()
        .await;
    by_job.code(0);
    let rescored = std::fs::read_to_string(&scores_path).unwrap();
    assert_eq!(rescored.lines().count(), 6);
    assert!(
        rescored
            .lines()
            .all(|l| l.contains("\"scorer\":\"contains\"")),
        "{rescored}"
    );
    // Back to exact for the report below.
    Cmd::new(&[
        "score",
        out.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
    ])
    .args(&["--expected", "answer", "-q"])
    .output()
    .await
    .code(0);
    // The report carries the scores: accuracy with its interval, spend, pairs.
    let report = Cmd::new(&["report", out.to_str().unwrap(), "--format", "json"])
        .output()
        .await;
    report.code(0);
    let v: Value = serde_json::from_str(&report.stdout).unwrap();
    let sc = &v["scores"];
    assert_eq!(sc["files"][0], scores_path.display().to_string());
    assert_eq!(sc["scorers"], serde_json::json!(["exact"]));
    let a = &sc["models"][0];
    assert_eq!(a["model"], "m/a");
    assert_eq!(
        (a["scored"].as_u64(), a["passed"].as_u64()),
        (Some(3), Some(2))
    );
    // Wilson 2/3: (0.2077, 0.9385).
    assert!((a["ci_low"].as_f64().unwrap() - 0.2077).abs() < 1e-3, "{a}");
    assert!(
        (a["ci_high"].as_f64().unwrap() - 0.9385).abs() < 1e-3,
        "{a}"
    );
    assert_eq!(a["spend_source"], "inline");
    let spend_a: f64 = recs
        .iter()
        .filter(|r| r["model"] == "m/a")
        .filter_map(|r| r["usage"]["cost"].as_f64())
        .sum();
    assert!((a["spend"].as_f64().unwrap() - spend_a).abs() < 1e-9, "{a}");
    assert!((a["cost_per_correct"].as_f64().unwrap() - spend_a / 2.0).abs() < 1e-9);
    let pair = &sc["pairs"][0];
    assert_eq!(
        (pair["a"].as_str(), pair["b"].as_str()),
        (Some("m/a"), Some("m/b"))
    );
    assert_eq!(pair["rows"], 3);
    assert_eq!(
        (pair["only_a"].as_u64(), pair["only_b"].as_u64()),
        (Some(2), Some(0))
    );
    // Two discordant rows, both for A: p = 2 · 0.25 = 0.5, not significant.
    assert_eq!(pair["p_value"], 0.5);
    assert_eq!(pair["better"], Value::Null);
    for (format, want) in [
        ("table", "Models compared on the same rows"),
        ("md", "### Scores (exact)"),
        ("csv", "model,scored,correct,accuracy,ci_low,ci_high"),
        ("html", "<h2>Accuracy against spend</h2>"),
    ] {
        let done = Cmd::new(&["report", out.to_str().unwrap(), "--format", format])
            .output()
            .await;
        done.code(0);
        assert!(done.stdout.contains(want), "{format}: {}", done.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scorer_specs_and_inputs_exit_2() {
    let env = Env::new().await;
    let input = env.write("q.csv", "id,prompt,answer\nq1,x,1\n");
    let out = env.write("q.out.jsonl", "");
    for (args, says) in [
        (
            vec!["--scorer", "regex:(oops"],
            "--scorer \"regex:(oops\": the pattern does not compile",
        ),
        (vec!["--scorer", "fuzzy"], "unknown scorer \"fuzzy\""),
        (
            vec!["--scorer", "number:rel=-1"],
            "expected a tolerance ≥ 0",
        ),
    ] {
        let done = Cmd::new(&[
            "score",
            out.to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
        ])
        .args(&["--expected", "answer"])
        .args(&args)
        .output()
        .await;
        done.code(2);
        assert!(done.stderr.contains(says), "{args:?}: {}", done.stderr);
    }
    // A field no row has: the columns are listed.
    let done = Cmd::new(&[
        "score",
        out.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
    ])
    .args(&["--expected", "gold"])
    .output()
    .await;
    done.code(2);
    assert!(
        done.stderr.contains(
            "no row has the field \"gold\" named by --expected (the rows have \"answer\", \"id\", \"prompt\")"
        ),
        "{}",
        done.stderr
    );
    // A job file's [score] table: a bad scorer names the key and the file, for `score` and
    // for `run` and `plan` (before anything is sent).
    let job = env.write(
        "eval.toml",
        "input = \"q.csv\"\nmodels = [\"m/a\"]\n[score]\nexpected = \"answer\"\nscorer = \"number:rel=x\"\n",
    );
    for cmd in [
        Cmd::new(&["score", "--job", job.to_str().unwrap()]),
        env.run().arg(job.to_str().unwrap()),
        Cmd::new(&["plan", job.to_str().unwrap(), "--mock"]),
    ] {
        let line = cmd.line();
        let done = cmd.output().await;
        done.code(2);
        assert!(
            done.stderr.contains(&format!(
                "scorer = \"number:rel=x\" in {} [score]: rel=\"x\": expected a tolerance",
                job.display()
            )),
            "{line}: {}",
            done.stderr
        );
    }
    assert_eq!(env.stats().requests, 0);
    // An input that cannot be read names the file; nothing is written.
    let done = Cmd::new(&["score", out.to_str().unwrap(), "-i", "missing.csv"])
        .args(&["--expected", "answer"])
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("missing.csv"), "{}", done.stderr);
    assert!(!env.path("q.out.scores.jsonl").exists());
}

/// The evaluation demo of the README, end to end with the mock: `run jobs/eval.toml --mock`
/// (the mock answers each row's expected value at a per-model rate), `score --job`, `report`,
/// `export`. The accuracies are what the records say, the models differ, every row is scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eval_demo_runs_end_to_end() {
    let env = Env::new().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    for f in ["eval.toml", "eval.csv"] {
        std::fs::copy(root.join(f), env.path(f)).unwrap();
    }
    let job = env.path("eval.toml");
    let ran = Cmd::new(&["run", job.to_str().unwrap(), "--mock"])
        .output()
        .await;
    ran.code(0);
    // The job has a [score] table: the run scores its answers when it is over.
    assert!(
        ran.stderr
            .contains("orbatch: scored the answers ([score]):"),
        "{}",
        ran.stderr
    );
    assert!(env.path("eval.out.scores.jsonl").exists());
    let scored = Cmd::new(&["score", "--job", job.to_str().unwrap(), "-q"])
        .output()
        .await;
    scored.code(0);
    let out = env.path("eval.out.jsonl");
    let recs = records(&out);
    assert_eq!(recs.len(), 90);
    let lines: Vec<Value> = std::fs::read_to_string(env.path("eval.out.scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 90, "every answer scored");
    // A pass is an answer equal to the expected value (the mock gives it or "I am not sure.").
    let mut per_model: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for l in &lines {
        let r = recs
            .iter()
            .find(|r| r["id"] == l["id"] && r["model"] == l["model"])
            .unwrap();
        let said = r["output"].as_str().unwrap();
        assert_eq!(
            l["passed"].as_bool().unwrap(),
            said != "I am not sure.",
            "{l} for {said:?}"
        );
        let e = per_model
            .entry(l["model"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += 1;
        e.1 += u64::from(l["passed"].as_bool().unwrap());
    }
    let accuracies: std::collections::BTreeSet<u64> = per_model.values().map(|v| v.1).collect();
    assert!(accuracies.len() > 1, "the models differ: {per_model:?}");
    let report = Cmd::new(&["report", out.to_str().unwrap(), "--format", "json"])
        .output()
        .await;
    report.code(0);
    let v: Value = serde_json::from_str(&report.stdout).unwrap();
    for m in v["scores"]["models"].as_array().unwrap() {
        let (n, passed) = per_model[m["model"].as_str().unwrap()];
        assert_eq!(
            (m["scored"].as_u64(), m["passed"].as_u64()),
            (Some(n), Some(passed))
        );
    }
    assert_eq!(v["scores"]["pairs"].as_array().unwrap().len(), 3);
    let export = Cmd::new(&["export", out.to_str().unwrap(), "-i"])
        .arg(env.path("eval.csv").to_str().unwrap())
        .args(&["--shape", "wide", "-q"])
        .output()
        .await;
    export.code(0);
    assert_eq!(export.stdout.lines().count(), 31, "a header and 30 rows");
}

/// The judge scorer: the eval demo's answers graded by a model through the mock (which, as a
/// judge, says CORRECT when the graded answer holds the expected one). Its requests go to
/// `OUT.judge.jsonl`, a rerun sends none again, `report` shows their spend apart, and a
/// missing model or a rubric that does not compile exits 2 before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_grades_through_the_pool_resumes_and_is_audited_apart() {
    let env = Env::new().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    for f in ["eval.toml", "eval.csv"] {
        std::fs::copy(root.join(f), env.path(f)).unwrap();
    }
    let job = env.path("eval.toml");
    Cmd::new(&["run", job.to_str().unwrap(), "--mock", "-q"])
        .output()
        .await
        .code(0);
    let out = env.path("eval.out.jsonl");
    let judge = |extra: &[&str]| {
        Cmd::new(&["score", out.to_str().unwrap(), "--scorer", "judge"])
            .args(&[
                "-i",
                env.path("eval.csv").to_str().unwrap(),
                "--expected",
                "answer",
            ])
            .base_url(&env.mock.base_url())
            .args(extra)
    };
    // No judge model: refused before anything is sent.
    let done = judge(&[]).output().await;
    done.code(2);
    assert!(done.stderr.contains("--judge-model"), "{}", done.stderr);
    assert_eq!(env.stats().requests, 0);
    let bad = env.write("bad.j2", "{{ answer ");
    let done = judge(&[
        "--judge-model",
        "m/j",
        "--judge-template",
        bad.to_str().unwrap(),
    ])
    .output()
    .await;
    done.code(2);
    assert!(
        done.stderr.contains("the judge rubric does not compile"),
        "{}",
        done.stderr
    );

    let done = judge(&["--judge-model", "openai/gpt-4o-mini"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("orbatch: judge: 90 answers"),
        "{}",
        done.stderr
    );
    assert_eq!(env.stats().requests, 90, "one judge request per answer");
    let recs = records(&out);
    let lines: Vec<Value> = std::fs::read_to_string(env.path("eval.out.scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 90);
    for l in &lines {
        let said = recs
            .iter()
            .find(|r| r["id"] == l["id"] && r["model"] == l["model"])
            .and_then(|r| r["output"].as_str())
            .unwrap();
        assert_eq!(l["scorer"], "judge");
        assert_eq!(
            l["passed"].as_bool().unwrap(),
            said != "I am not sure.",
            "{l}"
        );
        let verdict = if said == "I am not sure." {
            "INCORRECT"
        } else {
            "CORRECT"
        };
        assert_eq!(l["extracted"], verdict, "{l}");
    }
    let judged = records(&env.path("eval.out.judge.jsonl"));
    assert_eq!(judged.len(), 90);
    assert!(
        judged
            .iter()
            .all(|r| r["model"] == "openai/gpt-4o-mini" && r["status"] == "ok")
    );
    assert!(
        judged[0]["id"].as_str().unwrap().contains('@'),
        "{}",
        judged[0]
    );

    // A rerun judges nothing again.
    let done = judge(&["--judge-model", "openai/gpt-4o-mini"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("90 already judged, 0 sent"),
        "{}",
        done.stderr
    );
    assert_eq!(env.stats().requests, 90);

    // The report shows what judging cost, apart from the job's own spend.
    let report = Cmd::new(&["report", out.to_str().unwrap(), "--format", "json"])
        .output()
        .await;
    report.code(0);
    let v: Value = serde_json::from_str(&report.stdout).unwrap();
    let judge_spend: f64 = judged
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();
    let shown = v["judge"]["total"]["audit"]["total"].as_f64().unwrap();
    assert!(
        (shown - judge_spend).abs() < 1e-12,
        "{shown} vs {judge_spend}"
    );
    assert!((v["judge"]["total"]["requests"].as_u64().unwrap()) == 90);
    let own: f64 = recs
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();
    assert!((v["total"]["audit"]["total"].as_f64().unwrap() - own).abs() < 1e-12);
    let table = Cmd::new(&["report", out.to_str().unwrap()]).output().await;
    assert!(
        table
            .stdout
            .contains("judge (grading the answers, not in the totals above): 90 requests"),
        "{}",
        table.stdout
    );
}

/// `[[mock:expect=VALUE]]`: any client of the mock server gets VALUE, or a wrong answer, at
/// the model's fixed accuracy, so an evaluation can be scored end to end without `--mock`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_answers_an_expected_value_by_directive() {
    let env = Env::new().await;
    let mut text = String::from("id,prompt,answer\n");
    for i in 1..=40 {
        text.push_str(&format!(
            "q{i},[[mock:expect={}]] What is {i} squared?,{}\n",
            i * i,
            i * i
        ));
    }
    let input = env.write("sq.csv", &text);
    let out = env.path("sq.out.jsonl");
    env.run()
        .input(&input)
        .args(&["-m", "m/a", "-m", "m/b", "-q", "-o", out.to_str().unwrap()])
        .output()
        .await
        .code(0);
    let recs = records(&out);
    let right = |model: &str| {
        recs.iter()
            .filter(|r| r["model"] == model)
            .filter(|r| {
                let said = r["output"].as_str().unwrap();
                assert!(
                    said == "I am not sure." || said.parse::<u64>().is_ok(),
                    "{said}"
                );
                said != "I am not sure."
            })
            .count()
    };
    let (a, b) = (right("m/a"), right("m/b"));
    assert!(a > 10 && b > 10 && (a < 40 || b < 40), "{a} {b}");
    let done = Cmd::new(&[
        "score",
        out.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
    ])
    .args(&["--expected", "answer", "--scorer", "number"])
    .output()
    .await;
    done.code(0);
    let lines: Vec<Value> = std::fs::read_to_string(env.path("sq.out.scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let passed = |m: &str| {
        lines
            .iter()
            .filter(|l| l["model"] == m && l["passed"] == true)
            .count()
    };
    assert_eq!((passed("m/a"), passed("m/b")), (a, b));
}
