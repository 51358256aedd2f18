//! Real output checked against `schema/record.schema.json`, the documented wire format.
//! The checker covers the keywords the schema uses: type, enum, required,
//! additionalProperties: false, properties, items, minimum, and the fingerprint's pattern.

use serde_json::Value;

use crate::support::{Env, records};

fn schema() -> Value {
    let text = include_str!("../../schema/record.schema.json");
    serde_json::from_str(text).expect("the schema is JSON")
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("schema type {other} not handled by this checker"),
    }
}

/// Every problem of `v` against `s`, as `path: what`.
fn check(v: &Value, s: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(v, t),
            Value::Array(ts) => ts.iter().any(|t| type_ok(v, t.as_str().unwrap())),
            _ => panic!("bad type in schema"),
        };
        if !ok {
            problems.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(v)
    {
        problems.push(format!("{path}: {v} is not one of {allowed:?}"));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        problems.push(format!("{path}: {n} < {min}"));
    }
    if s.get("pattern").and_then(Value::as_str) == Some("^[0-9a-f]{32}$") {
        let t = v.as_str().unwrap_or("");
        if t.len() != 32
            || !t
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            problems.push(format!("{path}: {t:?} is not 32 lowercase hex digits"));
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(item, items, &format!("{path}[{i}]"), problems);
        }
    }
    let Some(obj) = v.as_object() else { return };
    let props = s.get("properties").and_then(Value::as_object);
    for req in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !obj.contains_key(req.as_str().unwrap()) {
            problems.push(format!("{path}: missing {req}"));
        }
    }
    for (k, val) in obj {
        match props.and_then(|p| p.get(k)) {
            Some(sub) => check(val, sub, &format!("{path}.{k}"), problems),
            None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                problems.push(format!("{path}: unexpected key {k}"));
            }
            None => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_record_matches_the_schema() {
    let env = Env::new().await;
    let input = env.write(
        "s.jsonl",
        "{\"id\":\"ok\",\"prompt\":\"fine\",\"tag\":\"x\"}\n\
         {\"id\":\"bad\",\"prompt\":\"[[mock:400]] refused\"}\n\
         {\"id\":\"retried\",\"prompt\":\"[[mock:500*1]] then fine\"}\n\
         {\"id\":\"filtered\",\"prompt\":\"[[mock:content-filter]] no\"}\n",
    );
    let mut all = Vec::new();
    for (name, extra) in [
        ("plain", vec![]),
        ("stream", vec!["--stream"]),
        (
            "responses",
            vec!["--endpoint", "responses", "--stream", "--keep-fields"],
        ),
    ] {
        let out = env.path(&format!("s.{name}.jsonl"));
        env.run()
            .input(&input)
            .args(&[
                "-m",
                "openai/gpt-4o-mini",
                "-q",
                "-o",
                out.to_str().unwrap(),
            ])
            .args(&extra)
            .output()
            .await;
        all.extend(records(&out));
    }
    assert_eq!(all.len(), 12);
    let schema = schema();
    let mut problems = Vec::new();
    for (i, r) in all.iter().enumerate() {
        check(
            r,
            &schema,
            &format!("record {i} ({})", r["id"]),
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The checker is not vacuous: a record with a wrong type, an unknown key and a missing
    // field is caught.
    let mut broken = all[0].clone();
    broken["row"] = Value::from("one");
    broken["surprise"] = Value::Null;
    broken.as_object_mut().unwrap().remove("fingerprint");
    let mut found = Vec::new();
    check(&broken, &schema, "broken", &mut found);
    assert_eq!(found.len(), 3, "{found:?}");
}
