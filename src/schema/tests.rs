use serde_json::{Value, json};

use super::*;
use crate::output::record::Usage;

fn person() -> Schema {
    Schema::new(
        "person".into(),
        json!({"type": "object", "required": ["name", "age"], "additionalProperties": false,
               "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}),
    )
    .unwrap()
}

fn errors(c: Checked) -> Vec<String> {
    match c {
        Checked::Invalid { errors } => errors,
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn valid_answers_are_parsed() {
    let c = person().check(" {\"name\": \"Ada\", \"age\": 36}\n", false);
    assert_eq!(
        c,
        Checked::Valid {
            value: json!({"name": "Ada", "age": 36}),
            stripped: false
        }
    );
}

#[test]
fn invalid_answers_say_what_is_wrong() {
    let e = errors(person().check("{\"name\": \"Ada\"}", false));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("at /: ") && e[0].contains("\"age\""),
        "{e:?}"
    );
    let e = errors(person().check("{\"name\": 3, \"age\": \"x\", \"z\": 1}", false));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("at /name: ")), "{e:?}");
    let e = errors(person().check("{\"name\": \"Ada\", \"age\": 3", false));
    assert!(e[0].starts_with("the answer is not JSON"), "{e:?}");
}

#[test]
fn lenient_strips_one_fence_or_prose_and_says_so() {
    let fenced = "```json\n{\"name\": \"Ada\", \"age\": 36}\n```";
    let prose = "Sure! Here it is:\n{\"name\": \"Ada\", \"age\": 36}\nAnything else?";
    for text in [fenced, prose] {
        let e = errors(person().check(text, false));
        assert!(e[0].contains("--lenient-json"), "{e:?}");
        assert_eq!(
            person().check(text, true),
            Checked::Valid {
                value: json!({"name": "Ada", "age": 36}),
                stripped: true
            },
            "{text}"
        );
    }
    // Two JSON values in the prose: which one is meant is not clear.
    let two = "first {\"name\": \"A\", \"age\": 1} then {\"name\": \"B\", \"age\": 2}";
    assert!(matches!(person().check(two, true), Checked::Invalid { .. }));
    // A valid answer is not stripped, so the record does not say lenient.
    assert!(matches!(
        person().check("{\"name\": \"A\", \"age\": 1}", true),
        Checked::Valid {
            stripped: false,
            ..
        }
    ));
}

#[test]
fn bad_schemas_are_refused() {
    for bad in [
        json!([1]),
        json!({"type": "objekt"}),
        json!({"properties": {"a": {"minimum": "x"}}}),
        json!({"$ref": "https://example.com/elsewhere.json"}),
        json!({"$schema": "https://example.com/a-meta-schema", "type": "object"}),
    ] {
        assert!(Schema::new("x".into(), bad.clone()).is_err(), "{bad}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.schema.json");
    std::fs::write(&path, "{\"type\": \"object\",\n ]").unwrap();
    let e = Schema::load(&path, None).unwrap_err().to_string();
    assert!(
        e.contains("bad.schema.json:2:") && e.contains("not valid JSON"),
        "{e}"
    );
    std::fs::write(&path, "{\"type\": \"object\"}").unwrap();
    assert_eq!(Schema::load(&path, None).unwrap().name(), "bad");
    let e = Schema::load(&path, Some("no spaces"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema_name"), "{e}");
}

#[test]
fn bodies_ask_for_the_schema_on_both_endpoints() {
    let s = person();
    let mut chat = serde_json::Map::new();
    s.apply(Endpoint::Chat, &mut chat).unwrap();
    assert_eq!(chat["response_format"]["type"], "json_schema");
    assert_eq!(chat["response_format"]["json_schema"]["name"], "person");
    assert_eq!(chat["response_format"]["json_schema"]["strict"], true);
    assert_eq!(chat["provider"], json!({"require_parameters": true}));
    let mut resp = serde_json::Map::new();
    resp.insert("text".into(), json!({"verbosity": "low"}));
    resp.insert(
        "provider".into(),
        json!({"sort": "price", "require_parameters": false}),
    );
    s.apply(Endpoint::Responses, &mut resp).unwrap();
    assert_eq!(resp["text"]["verbosity"], "low");
    assert_eq!(resp["text"]["format"]["name"], "person");
    assert_eq!(resp["text"]["format"]["schema"]["required"][0], "name");
    // The user's own choice stands; a missing key is added.
    assert_eq!(resp["provider"]["require_parameters"], false);
    let mut sorted = serde_json::Map::new();
    sorted.insert("provider".into(), json!({"sort": "price"}));
    s.apply(Endpoint::Chat, &mut sorted).unwrap();
    assert_eq!(
        sorted["provider"],
        json!({"sort": "price", "require_parameters": true})
    );
    let mut clash = serde_json::Map::new();
    clash.insert("response_format".into(), json!({"type": "json_object"}));
    assert!(s.apply(Endpoint::Chat, &mut clash).is_err());
}

fn answer(text: &str, cost: f64) -> crate::api::Answer {
    crate::api::Answer {
        output: text.into(),
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cost: Some(cost),
            ..Usage::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_reask_quotes_the_errors_after_the_answer() {
    let structured = std::sync::Arc::new(Structured {
        schema: std::sync::Arc::new(person()),
        reask: 1,
        lenient: false,
    });
    let mut asks = Asks::new(Some(structured));
    let mut body = serde_json::Map::new();
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": "who?"}]),
    );
    assert!(matches!(
        asks.review(
            Endpoint::Chat,
            &mut body,
            answer("{\"name\": \"Ada\"}", 0.5)
        ),
        Reviewed::Reask
    ));
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "{\"name\": \"Ada\"}"})
    );
    let turn = messages[2]["content"].as_str().unwrap();
    assert!(turn.contains("\"age\" is a required property"), "{turn}");
    // Still invalid: no re-ask left.
    let Reviewed::Invalid(_, error) = asks.review(Endpoint::Chat, &mut body, answer("nope", 0.25))
    else {
        panic!("expected invalid");
    };
    assert_eq!(error.kind, crate::output::record::ErrorKind::InvalidOutput);
    assert!(
        error.message.contains("after 1 re-ask"),
        "{}",
        error.message
    );

    // Responses: a string input becomes items.
    let mut body = serde_json::Map::new();
    body.insert("input".into(), Value::String("who?".into()));
    reask::Asks::new(Some(std::sync::Arc::new(Structured {
        schema: std::sync::Arc::new(person()),
        reask: 2,
        lenient: false,
    })))
    .review(Endpoint::Responses, &mut body, answer("[]", 0.0));
    let items = body["input"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["content"], "who?");
    assert_eq!(items[1]["role"], "assistant");
}

#[test]
fn usage_is_summed_over_answered_attempts() {
    let a = Usage {
        prompt_tokens: 1,
        completion_tokens: 2,
        total_tokens: 3,
        reasoning_tokens: 0,
        cached_tokens: 1,
        cost: Some(0.5),
    };
    let b = Usage {
        cost: None,
        ..a.clone()
    };
    let sum = reask::add(Some(&a), &b);
    assert_eq!(
        (sum.prompt_tokens, sum.total_tokens, sum.cached_tokens),
        (2, 6, 2)
    );
    assert_eq!(sum.cost, Some(0.5));
    assert_eq!(reask::add(Some(&b), &b).cost, None);
    assert_eq!(reask::add(None, &a), a);
}

#[test]
fn an_unsent_reask_leaves_its_usage_to_settle() {
    let mut asks = Asks::new(Some(std::sync::Arc::new(Structured {
        schema: std::sync::Arc::new(person()),
        reask: 1,
        lenient: false,
    })));
    let mut body = serde_json::Map::new();
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": "who?"}]),
    );
    asks.review(Endpoint::Chat, &mut body, answer("{}", 0.5));
    assert_eq!(asks.reasks(), 1);
    let (unsent, error) = asks.unsent_reask().unwrap();
    assert_eq!((unsent.output.as_str(), unsent.usage), ("{}", None));
    assert!(error.message.contains("before the re-ask was sent"));
    assert_eq!(asks.reasks(), 0);
    assert!(asks.unsent_reask().is_none());
}
