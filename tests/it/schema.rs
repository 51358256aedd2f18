//! Real output checked against `schema/record.schema.json`, the documented wire format,
//! with the `jsonschema` crate (every keyword of draft 2020-12, not a hand-picked subset).

use serde_json::Value;

use crate::support::{Env, records};

pub(crate) fn validator() -> jsonschema::Validator {
    let text = include_str!("../../schema/record.schema.json");
    let schema: Value = serde_json::from_str(text).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

/// Every problem of `v` against the schema, as `label at /path: what`.
pub(crate) fn problems(validator: &jsonschema::Validator, v: &Value, label: &str) -> Vec<String> {
    validator
        .iter_errors(v)
        .map(|e| format!("{label} at {}: {e}", e.instance_path()))
        .collect()
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
        // The 500 may have been billed: its record carries failed_cost_bound.
        ("capped", vec!["--max-cost", "1"]),
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
    assert_eq!(all.len(), 16);
    assert!(all.iter().any(|r| r["failed_cost_bound"].is_number()));
    let validator = validator();
    let mut found = Vec::new();
    for (i, r) in all.iter().enumerate() {
        found.extend(problems(
            &validator,
            r,
            &format!("record {i} ({})", r["id"]),
        ));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The checker is not vacuous: a record with a wrong type, an unknown key and a missing
    // field is caught.
    let mut broken = all[0].clone();
    broken["row"] = Value::from("one");
    broken["surprise"] = Value::Null;
    broken["fingerprint"] = Value::Null;
    broken.as_object_mut().unwrap().remove("generation_ids");
    broken["endpoint"] = Value::from("embeddings");
    let found = problems(&validator, &broken, "broken");
    assert_eq!(found.len(), 5, "{found:#?}");
}
