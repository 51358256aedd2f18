//! Tests of the input module: shapes, ids, limit/shard, CSV, problems, robustness.

use std::path::PathBuf;

use serde_json::{Map, Value, json};
use tempfile::TempDir;

use super::problems::MAX_PROBLEMS;
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
        schema: None,
        limit: None,
        shard: None,
        hidden: false,
        context: None,
        chunk: None,
        reduce_from: None,
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

#[test]
fn messages_row_both_endpoints() {
    let line = r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"text","text":"b"}]}]}"#;
    let reqs = jsonl(line, |_| {}).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![
            json!({"model":"m1","messages":[{"role":"user","content":"a"},
            {"role":"assistant","content":[{"type":"text","text":"b"}]}]})
        ]
    );
    let reqs = jsonl(line, |c| c.endpoint = Endpoint::Responses).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![json!({"model":"m1","input":[
            {"type":"message","role":"user","content":"a"},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"b"}]}]})]
    );
}

#[test]
fn input_row_both_endpoints() {
    let reqs = jsonl(r#"{"input":"q"}"#, |c| c.endpoint = Endpoint::Responses).unwrap();
    assert_eq!(bodies(&reqs), vec![json!({"model":"m1","input":"q"})]);
    let reqs = jsonl(r#"{"input":"q"}"#, |_| {}).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![json!({"model":"m1","messages":[{"role":"user","content":"q"}]})]
    );
    let items = r#"{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"x"},{"type":"input_text","text":"y"}]}]}"#;
    let reqs = jsonl(items, |c| c.endpoint = Endpoint::Responses).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![
            json!({"model":"m1","input":[{"type":"message","role":"user",
            "content":[{"type":"input_text","text":"x"},{"type":"input_text","text":"y"}]}]})
        ]
    );
    let reqs = jsonl(items, |_| {}).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![json!({"model":"m1","messages":[{"role":"user","content":"x\ny"}]})]
    );
    let err = jsonl(r#"{"input":[{"type":"function_call","name":"f"}]}"#, |_| {}).unwrap_err();
    assert!(problems(&err)[0].1.contains("no chat equivalent"), "{err}");
    let err = jsonl(r#"{"input":5}"#, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err)[0].1,
        "\"input\" must be a string or an array of items, found a number"
    );
}

#[test]
fn fan_out_and_row_model_override() {
    let text = "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"model\":\"own\"}\n";
    let (input, reqs) = run_with("f.jsonl", text.as_bytes(), InputFormat::Jsonl, |c| {
        c.models = vec!["x".into(), "y".into()];
    })
    .unwrap();
    assert_eq!(input.rows(), 2);
    assert_eq!(input.request_count(), 3);
    let got: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.id.as_str(), r.model.as_str()))
        .collect();
    assert_eq!(got, vec![("1", "x"), ("1", "y"), ("2", "own")]);
    assert_eq!(reqs[0].body["model"], "x");
    assert_eq!(reqs[1].body["model"], "y");
    assert_ne!(reqs[0].fingerprint, reqs[1].fingerprint);
    let err = jsonl(r#"{"prompt":"a"}"#, |c| c.models.clear()).unwrap_err();
    assert_eq!(problems(&err), vec![(Some(1), shape::NO_MODEL.to_owned())]);
    let err = jsonl(r#"{"prompt":"a","model":3}"#, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(
            Some(1),
            "\"model\" must be a string, found a number".to_owned()
        )]
    );
}

#[test]
fn batch_line_with_and_without_models() {
    let line = r#"{"custom_id":"r1","method":"POST","url":"/v1/responses","body":{"model":"bm","input":"hi","temperature":0.5}}"#;
    let reqs = jsonl(line, |c| c.models.clear()).unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].id, "r1");
    assert_eq!(reqs[0].endpoint, Endpoint::Responses);
    assert_eq!(
        bodies(&reqs),
        vec![json!({"model":"bm","input":"hi","temperature":0.5})]
    );
    let reqs = jsonl(line, |c| {
        c.models = vec!["x".into(), "y".into()];
        c.system = Some("ignored for batch lines".into());
    })
    .unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![
            json!({"model":"x","input":"hi","temperature":0.5}),
            json!({"model":"y","input":"hi","temperature":0.5})
        ]
    );
    let err = jsonl(
        r#"{"custom_id":"r","method":"POST","url":"/v1/embeddings","body":{"model":"m","input":"x"}}"#,
        |_| {},
    )
    .unwrap_err();
    assert!(
        problems(&err)[0].1.starts_with("unsupported \"url\""),
        "{err}"
    );
    let err = jsonl(
        r#"{"custom_id":"r","method":"POST","url":"/v1/chat/completions","body":{"messages":[]}}"#,
        |c| c.models.clear(),
    )
    .unwrap_err();
    assert_eq!(problems(&err)[0].1, shape::NO_MODEL);
}

#[test]
fn system_message_placement() {
    let sys = |c: &mut InputConfig| c.system = Some("S".into());
    let reqs = jsonl(r#"{"prompt":"p"}"#, sys).unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![
            json!({"model":"m1","messages":[{"role":"system","content":"S"},{"role":"user","content":"p"}]})
        ]
    );
    let reqs = jsonl(r#"{"messages":[{"role":"user","content":"u"}]}"#, sys).unwrap();
    assert_eq!(
        reqs[0].body["messages"][0],
        json!({"role":"system","content":"S"})
    );
    let own = r#"{"messages":[{"role":"system","content":"mine"},{"role":"user","content":"u"}]}"#;
    let reqs = jsonl(own, sys).unwrap();
    assert_eq!(reqs[0].body["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(reqs[0].body["messages"][0]["content"], "mine");
    let reqs = jsonl(r#"{"prompt":"p"}"#, |c| {
        sys(c);
        c.endpoint = Endpoint::Responses;
    })
    .unwrap();
    assert_eq!(
        bodies(&reqs),
        vec![json!({"model":"m1","input":"p","instructions":"S"})]
    );
    let reqs = jsonl(own, |c| {
        sys(c);
        c.endpoint = Endpoint::Responses;
    })
    .unwrap();
    assert!(!reqs[0].body.contains_key("instructions"));
}

#[test]
fn forbidden_params() {
    for key in ["model", "messages", "input", "stream"] {
        let line = format!(r#"{{"prompt":"p","params":{{"{key}":1}}}}"#);
        let err = jsonl(&line, |_| {}).unwrap_err();
        let msg = &problems(&err)[0].1;
        assert!(msg.contains(&format!("may not set \"{key}\"")), "{msg}");
        let err = jsonl(r#"{"prompt":"p"}"#, |c| c.params = obj(json!({key: 1}))).unwrap_err();
        assert_eq!(err.path, PARAMS_PATH);
    }
    let err = jsonl(r#"{"prompt":"p","params":[1]}"#, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err)[0].1,
        "\"params\" must be an object, found an array"
    );
}

#[test]
fn id_rules() {
    let text = "{\"prompt\":\"a\",\"id\":\"x\",\"custom_id\":\"c\"}\n{\"prompt\":\"a\",\"custom_id\":\"c\"}\n{\"prompt\":\"a\",\"id\":17}\n{\"prompt\":\"a\"}\n";
    let reqs = jsonl(text, |_| {}).unwrap();
    let ids: Vec<&str> = reqs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["x", "c", "17", "4"]);
    let reqs = jsonl("{\"prompt\":\"a\",\"key\":\"k1\",\"id\":\"x\"}", |c| {
        c.id_field = Some("key".into())
    })
    .unwrap();
    assert_eq!(reqs[0].id, "k1");
    let err = jsonl("{\"prompt\":\"a\"}", |c| c.id_field = Some("key".into())).unwrap_err();
    assert_eq!(problems(&err)[0].1, "missing id field \"key\" (--id-field)");
    let err = jsonl(
        "{\"prompt\":\"a\",\"id\":1.5}\n{\"prompt\":\"a\",\"id\":[1]}",
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        problems(&err),
        vec![
            (
                Some(1),
                "\"id\" must be a string or an integer, found 1.5".to_owned()
            ),
            (
                Some(2),
                "\"id\" must be a string or an integer, found an array".to_owned()
            ),
        ]
    );
}

#[test]
fn duplicate_ids_name_both_lines() {
    let text = "{\"prompt\":\"a\",\"id\":\"x\"}\n\n{\"prompt\":\"b\",\"id\":\"y\"}\n{\"prompt\":\"c\",\"id\":\"x\"}\n{\"prompt\":\"c\",\"id\":2}\n";
    let err = jsonl(text, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(
            Some(4),
            "duplicate id \"x\" (first seen on line 1)".to_owned()
        )]
    );
    assert_eq!(
        err.to_string(),
        format!("{}:4: duplicate id \"x\" (first seen on line 1)", err.path)
    );
}

#[test]
fn limit_and_shards() {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("{{\"id\":\"r{i}\",\"prompt\":\"p{i}\"}}\n"));
    }
    let f = file("s.jsonl", text.as_bytes());
    let ids = |c: InputConfig| -> Vec<String> {
        let input = Input::open(c).unwrap();
        let ids: Vec<String> = input.requests().unwrap().map(|r| r.unwrap().id).collect();
        assert_eq!(ids.len() as u64, input.rows());
        ids
    };
    let mut c = config(&f.path, InputFormat::Jsonl);
    c.limit = Some(7);
    assert_eq!(ids(c), (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>());
    for n in 1..=5u64 {
        let mut all = Vec::new();
        for k in 0..n {
            let mut c = config(&f.path, InputFormat::Jsonl);
            c.shard = Some(Shard { index: k, count: n });
            let first = ids(c.clone());
            assert_eq!(first, ids(c), "stable across passes");
            all.extend(first);
        }
        all.sort();
        let mut want: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        want.sort();
        assert_eq!(all, want, "shards of {n} are disjoint and cover all rows");
    }
    // Rows beyond the limit are not read at all (a broken line there is no problem).
    let f = file("l.jsonl", b"{\"prompt\":\"a\"}\nnot json\n");
    let mut c = config(&f.path, InputFormat::Jsonl);
    c.limit = Some(1);
    assert_eq!(Input::open(c).unwrap().rows(), 1);
}

#[test]
fn validation_covers_rows_of_other_shards() {
    let text = "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"prompt\":\"x\"}\n";
    for k in 0..3 {
        let err = jsonl(text, |c| c.shard = Some(Shard { index: k, count: 3 })).unwrap_err();
        assert_eq!(problems(&err)[0].0, Some(2));
    }
}

#[test]
fn bom_crlf_blank_lines() {
    let text = "\u{feff}{\"prompt\":\"a\"}\r\n   \r\n\r\n{\"prompt\":\"b\"}\r\n";
    let reqs = jsonl(text, |_| {}).unwrap();
    let got: Vec<(u64, u64)> = reqs.iter().map(|r| (r.row, r.line)).collect();
    assert_eq!(got, vec![(1, 1), (2, 4)]);
    assert_eq!(reqs[1].id, "2");
}

#[test]
fn invalid_utf8_and_long_lines() {
    let mut bytes = b"{\"prompt\":\"\xff\"}\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 12 * 1024 * 1024));
    bytes.extend_from_slice(b"\n{\"prompt\":\"ok\"}\n");
    let err = run_with("u.jsonl", &bytes, InputFormat::Jsonl, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![
            (Some(1), "invalid UTF-8 (at byte 12)".to_owned()),
            (Some(2), "line is longer than 10 MB".to_owned())
        ]
    );
}

#[test]
fn deep_nesting_is_a_problem_not_a_crash() {
    let mut line = "[".repeat(100_000);
    line.push_str(&"]".repeat(100_000));
    let err = jsonl(&line, |_| {}).unwrap_err();
    assert!(problems(&err)[0].1.contains("recursion limit"), "{err}");
    let line = format!(
        "{{\"prompt\":\"a\",\"x\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(jsonl(&line, |_| {}).is_err());
}

#[test]
fn more_than_twenty_problems_are_counted() {
    // 25 different problems (each line's own duplicate id).
    let text: String = (0..25)
        .map(|i| {
            format!("{{\"id\":\"d{i}\",\"prompt\":\"a\"}}\n{{\"id\":\"d{i}\",\"prompt\":\"b\"}}\n")
        })
        .collect();
    let err = jsonl(&text, |_| {}).unwrap_err();
    assert_eq!(err.problems.len(), MAX_PROBLEMS);
    assert_eq!(err.more, 5);
    assert!(err.to_string().ends_with("… and 5 more problems"), "{err}");
    assert_eq!(err.to_string().lines().count(), 21);
}

#[test]
fn the_same_problem_on_many_lines_is_one_entry_with_a_range() {
    let mut text = String::from("{\"prompt\":\"ok\"}\n");
    text.push_str(&"[1]\n".repeat(177));
    text.push_str("{\"prompt\":3}\n[2]\n");
    let err = jsonl(&text, |_| {}).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert_eq!(err.more, 0);
    let shown = err.to_string().replace(&err.path, "in.jsonl");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        vec![
            "in.jsonl:2\u{2013}180: expected a JSON object, found an array (178 lines)",
            "in.jsonl:179: \"prompt\" must be a string, found a number",
        ],
        "{shown}"
    );
}

#[test]
fn no_shape_message() {
    let err = jsonl(r#"{"text":"a"}"#, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err)[0].1,
        "row has no \"prompt\", \"messages\" or \"input\" field; add one or pass --template"
    );
}

#[test]
fn templates() {
    let t = |c: &mut InputConfig| c.template = Some("Q: {{ question }} ({{ prompt }})".into());
    let reqs = jsonl(r#"{"question":"why","prompt":"p"}"#, t).unwrap();
    assert_eq!(reqs[0].body["messages"][0]["content"], "Q: why (p)");
    // Not applied to messages rows.
    let reqs = jsonl(r#"{"messages":[{"role":"user","content":"m"}]}"#, t).unwrap();
    assert_eq!(reqs[0].body["messages"][0]["content"], "m");
    let err = jsonl(
        "{\"prompt\":\"p\"}\n{\"question\":\"q\",\"prompt\":\"p\"}",
        t,
    )
    .unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(
            Some(1),
            "template: undefined variable \"question\"".to_owned()
        )]
    );
    let err = jsonl(r#"{"prompt":"p"}"#, |c| c.template = Some("{{ oops".into())).unwrap_err();
    assert_eq!(err.path, template::TEMPLATE_PATH);
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.problems[0]
            .message
            .starts_with("template: syntax error"),
        "{err}"
    );
    // Globals such as `range` are not row fields.
    let reqs = jsonl(r#"{"n":2}"#, |c| {
        c.template = Some("{% for i in range(n) %}{{ i }}{% endfor %}".into())
    })
    .unwrap();
    assert_eq!(reqs[0].body["messages"][0]["content"], "01");
}

#[test]
fn keep_fields_meta() {
    let line = r#"{"id":"a","prompt":"p","params":{},"topic":"t","n":1}"#;
    let reqs = jsonl(line, |c| c.keep_fields = true).unwrap();
    assert_eq!(reqs[0].meta, Some(obj(json!({"topic":"t","n":1}))));
    let reqs = jsonl(line, |_| {}).unwrap();
    assert_eq!(reqs[0].meta, None);
}

/// The fingerprints of requests are persisted in every output file and compared on resume: if
/// one changed (a serde_json upgrade, `preserve_order` turned on by some dependency, a change in
/// how floats or non-ASCII text are written), every resumed run would send and pay again.
/// These literal values are the fingerprints orbatch has always written.
#[test]
fn fingerprints_are_pinned_to_literal_values() {
    // Keys given out of order, nested objects, floats, big integers, escapes, non-ASCII.
    let body = obj(json!({
        "temperature": 0.7,
        "model": "openai/gpt-4o-mini",
        "top_p": 1e-7,
        "seed": 18446744073709551615u64,
        "max_tokens": 256,
        "provider": {"sort": "price", "order": ["b", "a"], "allow_fallbacks": false},
        "messages": [
            {"role": "system", "content": "Be brief.\tTabs, \"quotes\", \\ and \u{7}."},
            {"role": "user", "content": "Résumé ✓ 日本語 😀 </script>"}
        ],
        "stop": null
    }));
    assert_eq!(
        fingerprint(Endpoint::Chat, &body),
        "a32bbeaa8d2537e602157d6e87a2ed34"
    );
    assert_eq!(
        fingerprint(Endpoint::Responses, &body),
        "6d46166b238c38d5834adf320e56519c"
    );
    // The bytes hashed are exactly these: sorted keys, compact, floats as written, non-ASCII
    // as UTF-8 (not \u escapes), `/` not escaped.
    let bytes = format!("chat\n{}", serde_json::to_string(&body).unwrap());
    assert_eq!(
        bytes,
        r#"chat
{"max_tokens":256,"messages":[{"content":"Be brief.\tTabs, \"quotes\", \\ and \u0007.","role":"system"},{"content":"Résumé ✓ 日本語 😀 </script>","role":"user"}],"model":"openai/gpt-4o-mini","provider":{"allow_fallbacks":false,"order":["b","a"],"sort":"price"},"seed":18446744073709551615,"stop":null,"temperature":0.7,"top_p":1e-7}"#
    );
}

#[test]
fn fingerprint_is_stable_and_sensitive() {
    let a = obj(json!({"model":"m","messages":[{"role":"user","content":"x"}]}));
    let mut b = Map::new();
    b.insert("messages".into(), json!([{"role":"user","content":"x"}]));
    b.insert("model".into(), json!("m"));
    assert_eq!(
        fingerprint(Endpoint::Chat, &a),
        fingerprint(Endpoint::Chat, &b)
    );
    assert_eq!(
        fingerprint(Endpoint::Chat, &a),
        "cadd5895ccd365c4e89185567867bd2d"
    );
    assert_ne!(
        fingerprint(Endpoint::Chat, &a),
        fingerprint(Endpoint::Responses, &a)
    );
    b.insert("temperature".into(), json!(0));
    assert_ne!(
        fingerprint(Endpoint::Chat, &a),
        fingerprint(Endpoint::Chat, &b)
    );
}

#[test]
fn cannot_open() {
    let c = config(
        std::path::Path::new("does/not/exist.jsonl"),
        InputFormat::Jsonl,
    );
    let err = Input::open(c).unwrap_err();
    assert_eq!(err.path, "does/not/exist.jsonl");
    assert!(
        err.to_string()
            .starts_with("does/not/exist.jsonl: cannot open: "),
        "{err}"
    );
}

fn csv_run(
    bytes: &[u8],
    format: InputFormat,
    tweak: impl FnOnce(&mut InputConfig),
) -> Result<Vec<Request>, InputError> {
    run_with("in.csv", bytes, format, tweak).map(|(_, r)| r)
}

#[test]
fn csv_and_tsv_happy_path() {
    let text = "\u{feff}id,prompt,model,params,topic\r\na,\"hello, \"\"you\"\"\",,x,t\r\nb,\"multi\nline\",own,y,u\r\n";
    let reqs = csv_run(text.as_bytes(), InputFormat::Csv, |c| c.keep_fields = true);
    let reqs = reqs.unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].id, "a");
    assert_eq!(reqs[0].line, 2);
    assert_eq!(reqs[1].line, 3);
    assert_eq!(reqs[0].body["messages"][0]["content"], "hello, \"you\"");
    assert_eq!(reqs[1].model, "own");
    assert_eq!(reqs[0].meta, Some(obj(json!({"params":"x","topic":"t"}))));
    // An empty `model` cell means the configured models.
    assert_eq!(reqs[0].model, "m1");

    let tsv = "id\tq\n1\twhat\n2\twhy\n";
    let reqs = csv_run(tsv.as_bytes(), InputFormat::Tsv, |c| {
        c.template = Some("Q={{ q }} id={{ id }}".into())
    })
    .unwrap();
    assert_eq!(reqs[1].body["messages"][0]["content"], "Q=why id=2");
    assert!(csv_run(b"", InputFormat::Csv, |_| {}).unwrap().is_empty());
    assert!(
        csv_run(b"id,prompt\n", InputFormat::Csv, |_| {})
            .unwrap()
            .is_empty()
    );
}

#[test]
fn csv_problems_have_lines() {
    let err = csv_run(
        b"id,prompt\r\n\r\na,x\r\nb\r\nc,y,z\r\n",
        InputFormat::Csv,
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        problems(&err),
        vec![
            (Some(4), "row has 1 fields, the header has 2".to_owned()),
            (Some(5), "row has 3 fields, the header has 2".to_owned()),
        ]
    );
    let err = csv_run(b"id,prompt\na,x\nb,\"open\nc,y\n", InputFormat::Csv, |_| {}).unwrap_err();
    let p = problems(&err);
    assert!(
        p.iter()
            .any(|(l, m)| *l == Some(3) && m.starts_with("unterminated quote")),
        "{err}"
    );
    let err = csv_run(b"id,prompt\na,\xff\n", InputFormat::Csv, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(Some(2), "invalid UTF-8 in column \"prompt\"".to_owned())]
    );
    let err = csv_run(b"id,text\na,x\n", InputFormat::Csv, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(
            Some(2),
            "row has no \"prompt\" column (the header has \"id\", \"text\"); add one or pass \
             --template"
                .to_owned()
        )]
    );
    // A header read as one column: the delimiter is guessed, and the fix named.
    let err = csv_run(b"id;prompt\na;x\nb;y\n", InputFormat::Csv, |_| {}).unwrap_err();
    assert_eq!(
        err.to_string().replace(&err.path, "in.csv"),
        "in.csv:2\u{2013}3: row has no \"prompt\" column (the header has \"id;prompt\"); add one \
         or pass --template; the header looks semicolon-separated: orbatch reads , or tab: save \
         it with commas (2 lines)"
    );
    let err = csv_run(b"id\tprompt\na\tx\n", InputFormat::Csv, |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("the header looks tab-separated: pass --input-format tsv"),
        "{err}"
    );
    let err = csv_run(b"id,id\n", InputFormat::Csv, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(Some(1), "header: duplicate column \"id\"".to_owned())]
    );
}

#[test]
fn csv_long_record_is_capped() {
    let mut bytes = b"id,prompt\na,\"".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 11 * 1024 * 1024));
    bytes.extend_from_slice(b"\"\n");
    let err = csv_run(&bytes, InputFormat::Csv, |_| {}).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![(Some(2), "row is longer than 10 MB".to_owned())]
    );
}

fn stdin_run(
    bytes: &[u8],
    format: InputFormat,
    tweak: impl FnOnce(&mut InputConfig),
) -> Result<(Input, Vec<Request>), InputError> {
    let mut c = config(std::path::Path::new("unused"), format);
    c.source = InputSource::Stdin;
    tweak(&mut c);
    let owned = bytes.to_vec();
    let input = Input::open_with(c, move || Box::new(std::io::Cursor::new(owned)), None)?.0;
    let reqs = input.requests()?.collect::<Result<Vec<_>, _>>()?;
    Ok((input, reqs))
}

#[test]
fn stdin_is_spooled_and_read_twice() {
    let (input, reqs) = stdin_run(
        b"{\"prompt\":\"a\"}\n{\"prompt\":\"b\"}\n",
        InputFormat::Jsonl,
        |_| {},
    )
    .unwrap();
    assert_eq!(input.display_name(), STDIN_NAME);
    assert_eq!(reqs.len(), 2);
    let again: Vec<Request> = input.requests().unwrap().map(Result::unwrap).collect();
    assert_eq!(reqs, again);
    let err = stdin_run(b"id,prompt\nx\n", InputFormat::Csv, |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "<stdin>:2: row has 1 fields, the header has 2"
    );
}

#[test]
fn requests_is_send_and_static() {
    fn check<T: Send + 'static>() {}
    check::<Requests>();
    check::<Input>();
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn check(bytes: &[u8], format: InputFormat) {
        match stdin_run(bytes, format, |c| c.models = vec!["a".into(), "b".into()]) {
            Ok((input, reqs)) => assert_eq!(reqs.len() as u64, input.request_count()),
            Err(err) => {
                assert!(!err.problems.is_empty());
                for p in &err.problems {
                    assert!(p.line.is_some(), "problem without a line: {err}");
                }
            }
        }
    }

    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("\"prompt\":".to_owned()),
            Just("\"messages\":".to_owned()),
            Just("\"input\":".to_owned()),
            Just("\"id\":".to_owned()),
            Just("\"model\":".to_owned()),
            Just("\"params\":".to_owned()),
            Just("\"role\":\"user\",\"content\":\"x\"".to_owned()),
            Just("\"x\"".to_owned()),
            Just("1".to_owned()),
            Just(",".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\"".to_owned()),
            Just("null".to_owned()),
            "[a-z ]{0,3}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            check(&bytes, InputFormat::Jsonl);
            check(&bytes, InputFormat::Csv);
            check(&bytes, InputFormat::Tsv);
        }

        #[test]
        fn jsonish_lines_never_panic(text in jsonish()) {
            check(text.as_bytes(), InputFormat::Jsonl);
            check(text.as_bytes(), InputFormat::Csv);
        }
    }
}

#[test]
fn duplicates_are_reported_in_line_order_among_other_problems() {
    // Many rows, so the duplicate is found by sorting hashes, then located by a second pass.
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!("{{\"id\":\"r{i}\",\"prompt\":\"p\"}}\n"));
    }
    text.push_str(
        "{\"prompt\":\"x\",\"id\":\"r7\"}\nnot json\n{\"prompt\":\"y\",\"id\":\"r1999\"}\n",
    );
    let expect = vec![
        (
            Some(2001),
            "duplicate id \"r7\" (first seen on line 8)".to_owned(),
        ),
        (
            Some(2002),
            "invalid JSON at column 2: expected ident".to_owned(),
        ),
        (
            Some(2003),
            "duplicate id \"r1999\" (first seen on line 2000)".to_owned(),
        ),
    ];
    let err = jsonl(&text, |_| {}).unwrap_err();
    assert_eq!(problems(&err), expect);
    // From stdin, the second pass reads the spool.
    let err = stdin_run(text.as_bytes(), InputFormat::Jsonl, |_| {}).unwrap_err();
    assert_eq!(problems(&err), expect);
    // Under --limit, only the rows within it.
    let err = jsonl(&text, |c| c.limit = Some(2001)).unwrap_err();
    assert_eq!(problems(&err), expect[..1].to_vec());
    assert!(jsonl(&text, |c| c.limit = Some(2000)).is_ok());
}

#[test]
fn answered_rows_are_skipped_without_being_shaped_again() {
    // Rows 1-6 (with a blank line and a row of its own model), two configured models.
    let text = "{\"id\":\"a\",\"prompt\":\"p\"}\n\n{\"id\":\"b\",\"prompt\":\"q\"}\n{\"id\":\"c\",\"prompt\":\"r\",\"model\":\"own\"}\n{\"id\":\"d\",\"prompt\":\"s\"}\n{\"id\":\"e\",\"prompt\":\"t\"}\n{\"id\":\"f\",\"prompt\":\"u\"}\n";
    let f = file("k.jsonl", text.as_bytes());
    let mut c = config(&f.path, InputFormat::Jsonl);
    c.models = vec!["m1".into(), "m2".into()];
    let (input, keys) = Input::open_noting_keys(c).unwrap();
    let all: Vec<Request> = input.requests().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 11);
    // Answered: both requests of a, one of b (so b is not skipped), c, and e with an old
    // fingerprint (not skipped).
    let answered = |r: &Request| {
        matches!(
            (r.id.as_str(), r.model.as_str()),
            ("a", _) | ("b", "m1") | ("c", _)
        )
    };
    let done: std::collections::HashSet<(u64, u64)> = all
        .iter()
        .filter(|r| answered(r))
        .map(|r| {
            let fp = crate::hash::parse_hex128(&r.fingerprint).unwrap() as u64;
            (crate::hash::key64(&r.id, &r.model), fp)
        })
        .chain([
            (crate::hash::key64("e", "m1"), 1),
            (crate::hash::key64("e", "m2"), 2),
        ])
        .collect();
    let skips = keys.resolve(|k, fp| done.contains(&(k, fp)));
    let mut requests = input.requests_skipping(skips).unwrap();
    let mut sent = Vec::new();
    let mut skipped = 0;
    while let Some(r) = requests.next() {
        skipped += requests.take_skipped();
        sent.push(r.unwrap());
    }
    skipped += requests.take_skipped();
    assert_eq!(skipped, 3, "a × 2 models, c");
    let expected: Vec<Request> = all
        .into_iter()
        .filter(|r| r.id != "a" && r.id != "c")
        .collect();
    assert_eq!(
        sent, expected,
        "same requests, rows and lines as an unskipped pass"
    );
    // Without keys (a fresh run), nothing is skipped.
    let skips = RequestKeys::default().resolve(|_, _| true);
    assert_eq!(input.requests_skipping(skips).unwrap().count(), 11);
}

#[test]
fn shard_membership_is_pinned_across_versions() {
    // A sharded job rerun with a newer orbatch must put every id in the same shard, or rows
    // would move between output files and be paid for twice. This pins xxh3-64 of the id
    // (no seed) mod N; change it only with a migration note.
    let f = file(
        "pin.jsonl",
        (0..20)
            .map(|i| format!("{{\"id\":\"row-{i}\",\"prompt\":\"p\"}}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    let mut got = Vec::new();
    for k in 0..4 {
        let mut c = config(&f.path, InputFormat::Jsonl);
        c.shard = Some(Shard { index: k, count: 4 });
        let input = Input::open(c).unwrap();
        let ids: Vec<String> = input.requests().unwrap().map(|r| r.unwrap().id).collect();
        got.push(ids.join(","));
    }
    assert_eq!(
        got,
        [
            "row-12,row-16,row-18,row-19",
            "row-2,row-3,row-10,row-11",
            "row-4,row-5,row-8,row-13",
            "row-0,row-1,row-6,row-7,row-9,row-14,row-15,row-17",
        ]
    );
}
