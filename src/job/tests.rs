//! Tests of the input module: shapes, ids, limit/shard, CSV, problems, robustness.

use std::path::PathBuf;

use serde_json::{Map, Value, json};
use tempfile::TempDir;

use super::*;

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
}

fn file(name: &str, bytes: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    Fixture { _dir: dir, path }
}

fn config(path: &std::path::Path, format: InputFormat) -> InputConfig {
    InputConfig {
        source: InputSource::Path(path.to_owned()),
        format,
        models: vec!["m1".into()],
        endpoint: Endpoint::Chat,
        template: None,
        system: None,
        id_field: None,
        params: Map::new(),
        keep_fields: false,
        limit: None,
        shard: None,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// Runs JSONL `text` through both passes with `tweak` applied to the config.
fn run_with(
    name: &str,
    bytes: &[u8],
    format: InputFormat,
    tweak: impl FnOnce(&mut InputConfig),
) -> Result<(Input, Vec<Request>), InputError> {
    let f = file(name, bytes);
    let mut c = config(&f.path, format);
    tweak(&mut c);
    let input = Input::open(c)?;
    let reqs = input.requests()?.collect::<Result<Vec<_>, _>>()?;
    assert_eq!(reqs.len() as u64, input.request_count());
    Ok((input, reqs))
}

fn jsonl(text: &str, tweak: impl FnOnce(&mut InputConfig)) -> Result<Vec<Request>, InputError> {
    run_with("in.jsonl", text.as_bytes(), InputFormat::Jsonl, tweak).map(|(_, r)| r)
}

fn bodies(reqs: &[Request]) -> Vec<Value> {
    reqs.iter().map(|r| Value::Object(r.body.clone())).collect()
}

fn problems(err: &InputError) -> Vec<(Option<u64>, String)> {
    err.problems
        .iter()
        .map(|p| (p.line, p.message.clone()))
        .collect()
}

#[test]
fn prompt_row_chat_and_responses() {
    let reqs = jsonl(r#"{"prompt":"hi"}"#, |_| {}).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![json!({"model":"m1","messages":[{"role":"user","content":"hi"}]})]
    );
    assert_eq!(reqs[0].id, "1");
    assert_eq!(reqs[0].row, 1);
    assert_eq!(reqs[0].line, 1);
    assert_eq!(reqs[0].endpoint, Endpoint::Chat);
    assert_eq!(
        reqs[0].fingerprint,
        fingerprint(Endpoint::Chat, &reqs[0].body)
    );
    let reqs = jsonl(r#"{"prompt":"hi"}"#, |c| c.endpoint = Endpoint::Responses).unwrap();
    assert_eq!(bodies(&reqs), vec![json!({"model":"m1","input":"hi"})]);
    assert_eq!(reqs[0].endpoint, Endpoint::Responses);
}

#[test]
fn non_object_and_malformed_lines_are_problems() {
    let err = jsonl("[1]\n{\"prompt\":\n\n{\"prompt\":\"ok\"}\n", |_| {}).unwrap_err();
    let p = problems(&err);
    assert_eq!(
        p[0],
        (Some(1), "expected a JSON object, found an array".into())
    );
    assert_eq!(p[1].0, Some(2));
    assert!(p[1].1.starts_with("invalid JSON at column"), "{}", p[1].1);
    assert_eq!(p.len(), 2);
}

#[test]
fn params_merge_order_row_wins() {
    let reqs = jsonl(
        r#"{"prompt":"hi","params":{"temperature":1,"seed":7}}"#,
        |c| c.params = obj(json!({"temperature":0,"max_tokens":5})),
    )
    .unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![
            json!({"model":"m1","messages":[{"role":"user","content":"hi"}],
                    "temperature":1,"seed":7,"max_tokens":5})
        ]
    );
}
