//! `/responses` answers (OpenAI Responses format, FACTS §4.2): a 200 body → an [`Answer`]
//! or the failure it reports (`status: failed`, `incomplete` without text, an error envelope).

use serde_json::Value;

use super::chat::{check_usable, parse_usage, str_field};
use super::error::ApiError;
use super::{Answer, Billing};
use crate::retry::Failure;

/// Parse a non-streaming Responses body (HTTP 200).
pub fn parse_body(bytes: &[u8]) -> Result<Answer, Failure> {
    parse_value(&super::parse_json(bytes)?)
}

/// Parse a Responses object (also the `response` of a streamed `response.completed` event).
pub fn parse_value(body: &Value) -> Result<Answer, Failure> {
    if !body.is_object() {
        return Err(Failure::Invalid("response is not a JSON object".into()));
    }
    let status = body.get("status").and_then(Value::as_str);
    if let Some(error) = ApiError::from_envelope(body) {
        return Err(Failure::InBody {
            error: Box::new(error),
        });
    }
    if status == Some("failed") || status == Some("cancelled") {
        return Err(Failure::InBody {
            error: Box::new(ApiError {
                message: format!(
                    "the response ended with status \"{}\"",
                    status.unwrap_or("")
                ),
                ..ApiError::default()
            }),
        });
    }
    let output = output_text(body);
    // `incomplete` maps onto the chat vocabulary: max tokens → "length".
    let finish_reason = match status {
        Some("completed") => Some("stop".to_owned()),
        Some("incomplete") => Some(
            match body
                .get("incomplete_details")
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
            {
                Some("max_output_tokens") | None => "length".to_owned(),
                Some(other) => other.to_owned(),
            },
        ),
        Some(other) => Some(other.to_owned()),
        None if body.get("output").is_none() => {
            return Err(Failure::Invalid("response has no output".into()));
        }
        None => None,
    };
    check_usable(&output, finish_reason.as_deref())?;
    Ok(Answer {
        output,
        finish_reason,
        generation_id: body.get("id").and_then(Value::as_str).map(str::to_owned),
        provider: body
            .get("provider")
            .and_then(Value::as_str)
            .map(str::to_owned),
        model: body.get("model").and_then(Value::as_str).map(str::to_owned),
        usage: body.get("usage").map(parse_usage),
        billing: body
            .get("usage")
            .map(Billing::from_usage)
            .unwrap_or_default(),
        service_tier: str_field(body, "service_tier"),
    })
}

/// The answer text: `output_text` parts of `message` items, in order; the convenience
/// `output_text` string only when there are no items.
pub fn output_text(body: &Value) -> String {
    let Some(items) = body.get("output").and_then(Value::as_array) else {
        return body
            .get("output_text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
    };
    let mut text = String::new();
    for item in items {
        if item.get("type").and_then(Value::as_str) != Some("message") {
            continue;
        }
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if part.get("type").and_then(Value::as_str) == Some("output_text") {
                text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{Action, classify};
    use serde_json::json;

    #[test]
    fn parses_a_completed_response() {
        let body = json!({"id":"gen-1787612977-3B6P","object":"response","status":"completed",
            "model":"openai/gpt-4o-mini","output":[
              {"type":"reasoning","id":"r1","summary":[]},
              {"type":"message","id":"m1","role":"assistant","status":"completed",
               "content":[{"type":"output_text","text":"Hel","annotations":[]},
                          {"type":"output_text","text":"lo","annotations":[]}]}],
            "usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":1},
              "output_tokens":3,"output_tokens_details":{"reasoning_tokens":2},
              "total_tokens":10,"cost":0.00001,"is_byok":true,
              "cost_details":{"upstream_inference_cost":0.0002}},"service_tier":"flex"});
        let a = parse_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(a.billing.is_byok, Some(true));
        assert_eq!(a.billing.upstream_cost, Some(0.0002));
        assert_eq!(a.service_tier.as_deref(), Some("flex"));
        assert_eq!(a.output, "Hello");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(a.generation_id.as_deref(), Some("gen-1787612977-3B6P"));
        let u = a.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (7, 3, 10)
        );
        assert_eq!(
            (u.cached_tokens, u.reasoning_tokens, u.cost),
            (1, 2, Some(0.00001))
        );
    }

    #[test]
    fn incomplete_and_failed() {
        let inc = json!({"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},
            "output":[{"type":"message","content":[{"type":"output_text","text":"partial"}]}]});
        assert_eq!(
            parse_value(&inc).unwrap().finish_reason.as_deref(),
            Some("length")
        );
        let failed = json!({"status":"failed","error":{"code":"server_error","message":"x"},
            "error_type":"provider_unavailable","output":[]});
        let f = parse_value(&failed).unwrap_err();
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
        let auth = json!({"status":"failed","error":{"code":"server_error","message":"x"},
            "error_type":"authentication"});
        assert_eq!(
            classify(&parse_value(&auth).unwrap_err()).action,
            Action::StopRun
        );
    }
}
