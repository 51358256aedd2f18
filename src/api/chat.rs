//! `/chat/completions` answers: a 200 body → an [`Answer`] or the failure hidden inside it.

use serde_json::Value;

use super::error::ApiError;
use super::{Answer, Billing};
use crate::output::record::{ErrorKind, Usage};
use crate::retry::Failure;

/// Parse a non-streaming chat completion body (HTTP 200).
pub fn parse_body(bytes: &[u8]) -> Result<Answer, Failure> {
    // A plain answer is read without building a `Value` tree; anything else is decided here.
    if let Some(answer) = super::fast::chat(bytes) {
        return Ok(answer);
    }
    parse_value(&super::parse_json(bytes)?)
}

/// Parse a chat completion already decoded as JSON.
pub fn parse_value(body: &Value) -> Result<Answer, Failure> {
    if !body.is_object() {
        return Err(Failure::Invalid("response is not a JSON object".into()));
    }
    // A 200 whose body is only an error envelope (FACTS §7.4 case 2).
    if let Some(error) = ApiError::from_envelope(body) {
        return Err(Failure::InBody {
            error: Box::new(error),
        });
    }
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| Failure::Invalid("response has no choices".into()))?;
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // An error inside the choice (case 1), possibly with partial content: a failed attempt.
    if let Some(err) = choice.get("error").filter(|e| !e.is_null()) {
        return Err(Failure::InBody {
            error: Box::new(ApiError::from_error_value(err)),
        });
    }
    if finish_reason.as_deref() == Some("error") {
        return Err(Failure::InBody {
            error: Box::new(ApiError {
                message: "the provider ended the answer with finish_reason \"error\"".into(),
                ..ApiError::default()
            }),
        });
    }
    let output = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    check_usable(&output, finish_reason.as_deref())?;
    Ok(Answer {
        output,
        finish_reason,
        generation_id: str_field(body, "id"),
        provider: str_field(body, "provider"),
        model: str_field(body, "model"),
        usage: body.get("usage").map(parse_usage),
        billing: body
            .get("usage")
            .map(Billing::from_usage)
            .unwrap_or_default(),
        service_tier: str_field(body, "service_tier"),
    })
}

/// Decide whether a well-formed answer is a usable result (FACTS §7.4 case 5).
pub fn check_usable(output: &str, finish_reason: Option<&str>) -> Result<(), Failure> {
    if !output.trim().is_empty() {
        return Ok(());
    }
    match finish_reason {
        Some("content_filter") => Err(Failure::Unusable {
            kind: ErrorKind::ContentFilter,
            retry: false,
            message: "the answer was withheld by a content filter".into(),
        }),
        Some("length") => Err(Failure::Unusable {
            kind: ErrorKind::Truncated,
            retry: false,
            message: "the model used its whole token budget (often on reasoning) and returned \
                      no text; raise max_tokens"
                .into(),
        }),
        // Tool calls legitimately come without text.
        Some("tool_calls") => Ok(()),
        // Empty text with no reason: a cold start or a provider hiccup; docs say retry.
        None | Some("") => Err(Failure::Unusable {
            kind: ErrorKind::ProviderError,
            retry: true,
            message: "the provider returned an empty answer with no finish reason".into(),
        }),
        Some(_) => Ok(()),
    }
}

/// Message content as text: a string, or the text of an array of parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

pub(super) fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Read a `usage` object of either endpoint (chat or responses names) into [`Usage`].
pub fn parse_usage(u: &Value) -> Usage {
    let n = |path: &[&str]| -> Option<u64> {
        let mut v = u;
        for key in path {
            v = v.get(key)?;
        }
        v.as_u64()
    };
    let prompt = n(&["prompt_tokens"])
        .or_else(|| n(&["input_tokens"]))
        .unwrap_or(0);
    let completion = n(&["completion_tokens"])
        .or_else(|| n(&["output_tokens"]))
        .unwrap_or(0);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: n(&["total_tokens"]).unwrap_or(prompt + completion),
        reasoning_tokens: n(&["completion_tokens_details", "reasoning_tokens"])
            .or_else(|| n(&["output_tokens_details", "reasoning_tokens"]))
            .unwrap_or(0),
        cached_tokens: n(&["prompt_tokens_details", "cached_tokens"])
            .or_else(|| n(&["input_tokens_details", "cached_tokens"]))
            .unwrap_or(0),
        cost: u.get("cost").and_then(Value::as_f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{Action, classify};
    use serde_json::json;

    #[test]
    fn parses_the_captured_openrouter_answer() {
        let body = json!({"id":"gen-1779358422-abc","object":"chat.completion","created":1779358422,
            "model":"openai/gpt-4o-mini","provider":"Azure","system_fingerprint":"fp_eb37e061ec",
            "choices":[{"index":0,"logprobs":null,"finish_reason":"stop","native_finish_reason":"stop",
              "message":{"role":"assistant","content":"Hello there","refusal":null,"reasoning":null}}],
            "usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19,"cost":0.00000735,
              "is_byok":false,"prompt_tokens_details":{"cached_tokens":3,"cache_write_tokens":0},
              "completion_tokens_details":{"reasoning_tokens":2}}});
        let a = parse_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(a.output, "Hello there");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(a.generation_id.as_deref(), Some("gen-1779358422-abc"));
        assert_eq!(a.provider.as_deref(), Some("Azure"));
        let u = a.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (9, 10, 19)
        );
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (3, 2));
        assert_eq!(u.cost, Some(0.00000735));
        assert_eq!(a.billing.is_byok, Some(false));
        assert_eq!(a.service_tier, None);
    }

    /// BYOK (FACTS §2.2): `cost` is OpenRouter's fee, the provider's charge is in
    /// `cost_details`; both parsers (the fast one and the lenient one) read it.
    #[test]
    fn reads_byok_the_upstream_cost_and_the_tier() {
        let body = json!({"id":"gen-1","model":"m","service_tier":"flex",
            "choices":[{"message":{"content":"Hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19,"cost":0.00005,
              "is_byok":true,"cost_details":{"upstream_inference_cost":0.001}}});
        let fast = parse_body(body.to_string().as_bytes()).unwrap();
        let lenient = parse_value(&body).unwrap();
        for a in [fast, lenient] {
            assert_eq!(a.billing.is_byok, Some(true));
            assert_eq!(a.billing.upstream_cost, Some(0.001));
            assert_eq!(a.service_tier.as_deref(), Some("flex"));
        }
    }

    #[test]
    fn tolerates_leading_whitespace_and_missing_optional_fields() {
        let a = parse_body(
            b"\n\n {\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}",
        )
        .unwrap();
        assert_eq!(a.output, "x");
        assert_eq!(a.usage, None);
    }

    #[test]
    fn errors_inside_a_200_are_failures() {
        let only_error = json!({"error":{"code":502,"message":"Provider returned error",
            "metadata":{"error_type":"provider_unavailable"}},"user_id":"u"});
        assert!(matches!(
            parse_value(&only_error),
            Err(Failure::InBody { .. })
        ));
        let choice_error = json!({"id":"gen-1","choices":[{"finish_reason":"error",
            "message":{"content":"partial"},"error":{"code":502,"message":"boom",
            "metadata":{"error_type":"provider_unavailable"}}}]});
        let f = parse_value(&choice_error).unwrap_err();
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
        let bare = json!({"choices":[{"finish_reason":"error","message":{"content":"partial"}}]});
        assert!(matches!(parse_value(&bare), Err(Failure::InBody { .. })));
    }

    #[test]
    fn empty_or_broken_bodies_are_invalid() {
        assert!(matches!(parse_body(b""), Err(Failure::Invalid(_))));
        assert!(matches!(
            parse_body(b"<html>502</html>"),
            Err(Failure::Invalid(_))
        ));
        assert!(matches!(
            parse_body(b"{\"id\":\"x\"}"),
            Err(Failure::Invalid(_))
        ));
        assert!(matches!(parse_body(b"[1]"), Err(Failure::Invalid(_))));
    }

    #[test]
    fn empty_answers_are_classified() {
        let f =
            parse_value(&json!({"choices":[{"finish_reason":"length","message":{"content":""}}]}))
                .unwrap_err();
        assert_eq!(classify(&f).kind, ErrorKind::Truncated);
        assert_eq!(classify(&f).action, Action::GiveUp);
        let f = parse_value(
            &json!({"choices":[{"finish_reason":"content_filter","message":{"content":null}}]}),
        )
        .unwrap_err();
        assert_eq!(classify(&f).kind, ErrorKind::ContentFilter);
        let f = parse_value(&json!({"choices":[{"finish_reason":null,"message":{"content":""}}]}))
            .unwrap_err();
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
    }

    #[test]
    fn content_parts_are_joined() {
        assert_eq!(
            content_text(
                &json!([{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}])
            ),
            "ab"
        );
    }
}
