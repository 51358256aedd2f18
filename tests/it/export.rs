//! `orbatch export` end to end: rows joined back to their records by id, every input column
//! kept, per-model values, both shapes and formats, formula cells neutralised, shards merged.

use serde_json::Value;

use crate::support::{Cmd, Env, records};

/// Run a CSV of four rows (one failing, one with a formula-looking cell) on two models.
async fn run_job(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let input = env.write(
        "q.csv",
        "qid,prompt,topic\n\
         a1,first question,geo\n\
         a2,=1+1 is,\"math, simple\"\n\
         a3,[[mock:400]] refused,misc\n\
         a4,fourth,@home\n",
    );
    let out = env.path("q.out.jsonl");
    env.run()
        .input(&input)
        .args(&["--id-field", "qid", "-m", "m/a", "-m", "m/b", "-q", "-o"])
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    (input, out)
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_csv_has_every_input_column_and_each_models_values() {
    let env = Env::new().await;
    let (input, out) = run_job(&env).await;
    let recs = records(&out);
    let done = Cmd::new(&[
        "export",
        out.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
    ])
    .args(&["--id-field", "qid"])
    .output()
    .await;
    done.code(0);
    let rows = csv_rows(&done.stdout);
    assert_eq!(
        rows[0],
        [
            "id",
            "prompt",
            "topic",
            "model",
            "status",
            "output",
            "error_kind",
            "tokens_in",
            "tokens_out",
            "spend_usd",
            "spend_source",
            "score",
            "passed"
        ]
    );
    // 4 rows × 2 models, in input order, models by name.
    assert_eq!(rows.len(), 9, "{}", done.stdout);
    let ids: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("a1", "m/a"),
            ("a1", "m/b"),
            ("a2", "m/a"),
            ("a2", "m/b"),
            ("a3", "m/a"),
            ("a3", "m/b"),
            ("a4", "m/a"),
            ("a4", "m/b")
        ]
    );
    for row in &rows[1..] {
        let r = recs
            .iter()
            .find(|r| r["id"] == row[0] && r["model"] == row[3])
            .unwrap();
        assert_eq!(row[4], r["status"].as_str().unwrap());
        let output = r["output"].as_str().unwrap_or("");
        assert_eq!(row[5], output);
        assert_eq!(row[6], r["error"]["kind"].as_str().unwrap_or(""));
        let cost = r["usage"]["cost"].as_f64().unwrap_or(0.0);
        assert!(
            (row[9].parse::<f64>().unwrap() - cost).abs() < 1e-12,
            "{row:?}"
        );
        assert_eq!(row[10], "inline");
    }
    // The input's own cells, with formulas neutralised (a comma kept inside its quotes).
    assert_eq!(rows[3][1], "'=1+1 is");
    assert_eq!(rows[3][2], "math, simple");
    assert_eq!(rows[7][2], "'@home");
    // --raw keeps them.
    let raw = Cmd::new(&[
        "export",
        out.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
    ])
    .args(&["--id-field", "qid", "--raw"])
    .output()
    .await;
    assert_eq!(csv_rows(&raw.stdout)[3][1], "=1+1 is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_and_jsonl_shapes_and_scores_and_shards() {
    let env = Env::new().await;
    let input = env.write(
        "q.jsonl",
        "{\"id\":\"x1\",\"prompt\":\"one\",\"gold\":\"nope\"}\n\
         {\"id\":\"x2\",\"prompt\":\"two\",\"gold\":\"nope\",\"extra\":{\"k\":1}}\n\
         {\"id\":\"x3\",\"prompt\":\"three\",\"gold\":\"nope\"}\n",
    );
    // Two shards of the same input.
    let mut outs = Vec::new();
    for shard in ["0/2", "1/2"] {
        let out = env.path(&format!("q.{}.jsonl", shard.replace('/', "of")));
        env.run()
            .input(&input)
            .args(&["-m", "m/a", "-m", "m/b", "-q", "--shard", shard, "-o"])
            .arg(out.to_str().unwrap())
            .output()
            .await
            .code(0);
        Cmd::new(&[
            "score",
            out.to_str().unwrap(),
            "-i",
            input.to_str().unwrap(),
        ])
        .args(&["--expected", "gold", "-q"])
        .output()
        .await
        .code(0);
        outs.push(out);
    }
    let dest = env.path("wide.csv");
    let done = Cmd::new(&[
        "export",
        outs[0].to_str().unwrap(),
        outs[1].to_str().unwrap(),
    ])
    .args(&["-i", input.to_str().unwrap(), "--shape", "wide", "-o"])
    .arg(dest.to_str().unwrap())
    .output()
    .await;
    done.code(0);
    assert!(
        done.stderr
            .contains("exported 3 rows × 2 models as 3 lines"),
        "{}",
        done.stderr
    );
    let rows = csv_rows(&std::fs::read_to_string(&dest).unwrap());
    assert_eq!(rows.len(), 4);
    // Keys in first-seen order (each row's own in name order).
    assert_eq!(&rows[0][..4], ["id", "gold", "prompt", "extra"]);
    assert_eq!(rows[0][4], "m/a:status");
    assert_eq!(rows[0][4 + 9], "m/b:status");
    assert_eq!(rows[0][4 + 7], "m/a:score");
    assert_eq!(rows[2][3], "{\"k\":1}");
    assert_eq!(rows[1][3], "");
    for row in &rows[1..] {
        assert_eq!(row[4], "ok");
        assert_eq!(row[4 + 7], "0", "{row:?}");
        assert_eq!(row[4 + 8], "false", "{row:?}");
    }
    // JSONL long: the input row nested, numbers as numbers.
    let done = Cmd::new(&[
        "export",
        outs[0].to_str().unwrap(),
        outs[1].to_str().unwrap(),
    ])
    .args(&["-i", input.to_str().unwrap(), "--format", "jsonl"])
    .output()
    .await;
    done.code(0);
    let lines: Vec<Value> = done
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["id"], "x1");
    assert_eq!(lines[0]["input"]["prompt"], "one");
    assert!(lines[0]["tokens_in"].is_u64(), "{}", lines[0]);
    assert_eq!(lines[0]["passed"], false);
    // An input given as stdin cannot be read twice.
    let done = Cmd::new(&["export", outs[0].to_str().unwrap(), "-i", "-"])
        .args(&["--input-format", "jsonl"])
        .stdin(b"{}\n")
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("pass it as a file"), "{}", done.stderr);
}
