//! The fast path for the answers that come back by the thousand: a plain, usable chat
//! completion is read straight into borrowed, typed fields instead of a `serde_json::Value`
//! tree (a third of the CPU a request cost). It only ever says "this is the answer" or "not
//! mine": anything it does not cover exactly (an error envelope, an error or `finish_reason:
//! "error"` in the choice, content parts, an answer that is not usable, a field of another
//! type, a key given twice, an array where an object belongs) returns `None`, and the lenient `Value` parser
//! ([`chat::parse_value`](super::chat::parse_value)) decides. Both give the same answer for
//! every body the fast path takes; the tests hold them to it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::chat::check_usable;
use super::{Answer, Billing};
use crate::output::record::Usage;

/// A usable chat answer, or `None` when the lenient parser must decide.
pub fn chat(bytes: &[u8]) -> Option<Answer> {
    // One UTF-8 check of the whole body, as the lenient parser checks every string (also the
    // ones skipped here unread); parsing a `str` then checks no string again.
    let text = std::str::from_utf8(bytes).ok()?;
    let body: Body = serde_json::from_str(text).ok()?;
    if body.error.flatten().is_some() {
        return None;
    }
    let choice = body.choices.flatten()?.0?;
    if choice.error.flatten().is_some() {
        return None;
    }
    let finish_reason = choice.finish_reason.flatten().map(Text::owned);
    if finish_reason.as_deref() == Some("error") {
        return None;
    }
    let output = choice
        .message
        .flatten()
        .and_then(|m| m.content.flatten())
        .map(Text::owned)
        .unwrap_or_default();
    check_usable(&output, finish_reason.as_deref()).ok()?;
    let usage = match body.usage {
        None => None,
        // `"usage": null` reads as all zeros in the lenient parser: left to it.
        Some(None) => return None,
        Some(Some(u)) => Some(u),
    };
    let billing = usage.as_ref().map(TypedUsage::billing).unwrap_or_default();
    let owned = |s: Option<Option<Text<'_>>>| s.flatten().map(Text::owned);
    Some(Answer {
        output,
        finish_reason,
        generation_id: owned(body.id),
        provider: owned(body.provider),
        model: owned(body.model),
        usage: usage.map(TypedUsage::into_usage),
        billing,
        service_tier: owned(body.service_tier),
    })
}

// Every field is `Option<Option<T>>`: the outer `Some` says the key was there (a second one
// fails the parse), the inner one is the value (`null` → `None`).

#[derive(Default)]
struct Body<'a> {
    error: Option<Option<IgnoredAny>>,
    id: Option<Option<Text<'a>>>,
    provider: Option<Option<Text<'a>>>,
    model: Option<Option<Text<'a>>>,
    service_tier: Option<Option<Text<'a>>>,
    choices: Option<Option<First<Choice<'a>>>>,
    usage: Option<Option<TypedUsage>>,
}

#[derive(Default)]
struct Choice<'a> {
    error: Option<Option<IgnoredAny>>,
    finish_reason: Option<Option<Text<'a>>>,
    message: Option<Option<Message<'a>>>,
}

#[derive(Default)]
struct Message<'a> {
    content: Option<Option<Text<'a>>>,
}

/// `usage` under either endpoint's names, read the way `chat::parse_usage` reads it.
#[derive(Default)]
struct TypedUsage {
    prompt_tokens: Option<Option<u64>>,
    input_tokens: Option<Option<u64>>,
    completion_tokens: Option<Option<u64>>,
    output_tokens: Option<Option<u64>>,
    total_tokens: Option<Option<u64>>,
    completion_tokens_details: Option<Option<Details>>,
    output_tokens_details: Option<Option<Details>>,
    prompt_tokens_details: Option<Option<Details>>,
    input_tokens_details: Option<Option<Details>>,
    cost: Option<Option<f64>>,
    is_byok: Option<Option<bool>>,
    cost_details: Option<Option<CostDetails>>,
}

#[derive(Default)]
struct CostDetails {
    upstream_inference_cost: Option<Option<f64>>,
}

#[derive(Default)]
struct Details {
    reasoning_tokens: Option<Option<u64>>,
    cached_tokens: Option<Option<u64>>,
}

impl TypedUsage {
    fn billing(&self) -> Billing {
        Billing {
            is_byok: self.is_byok.flatten(),
            upstream_cost: self
                .cost_details
                .as_ref()
                .and_then(Option::as_ref)
                .and_then(|d| d.upstream_inference_cost.flatten()),
        }
    }

    fn into_usage(self) -> Usage {
        let n = |v: Option<Option<u64>>| v.flatten();
        let detail = |d: &Option<Option<Details>>, pick: fn(&Details) -> Option<u64>| {
            d.as_ref().and_then(Option::as_ref).and_then(pick)
        };
        let reasoning = |d: &Details| d.reasoning_tokens.flatten();
        let cached = |d: &Details| d.cached_tokens.flatten();
        let prompt = n(self.prompt_tokens).or(n(self.input_tokens)).unwrap_or(0);
        let completion = n(self.completion_tokens)
            .or(n(self.output_tokens))
            .unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: n(self.total_tokens).unwrap_or(prompt + completion),
            reasoning_tokens: detail(&self.completion_tokens_details, reasoning)
                .or_else(|| detail(&self.output_tokens_details, reasoning))
                .unwrap_or(0),
            cached_tokens: detail(&self.prompt_tokens_details, cached)
                .or_else(|| detail(&self.input_tokens_details, cached))
                .unwrap_or(0),
            cost: self.cost.flatten(),
        }
    }
}

/// Read the next value into `slot`; a key seen before fails the parse.
fn once<'de, A, T>(slot: &mut Option<T>, map: &mut A) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::custom("duplicate key"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// `Deserialize` for a struct from a `"key" => field` table: a JSON object only (serde's
/// derive would also take an array), unknown keys skipped, a key given twice an error.
macro_rules! object {
    ($ty:ty, $value:ty { $($key:literal => $field:ident),* $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;
                impl<'v> Visitor<'v> for ObjectVisitor {
                    type Value = $value;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: MapAccess<'v>>(self, mut map: A) -> Result<$value, A::Error> {
                        let mut out = <$value>::default();
                        while let Some(key) = map.next_key::<Text<'v>>()? {
                            match &*key.0 {
                                $($key => once(&mut out.$field, &mut map)?,)*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(ObjectVisitor)
            }
        }
    };
}

object!(Body<'de>, Body<'v> {
    "error" => error,
    "id" => id,
    "provider" => provider,
    "model" => model,
    "service_tier" => service_tier,
    "choices" => choices,
    "usage" => usage,
});
object!(Choice<'de>, Choice<'v> {
    "error" => error,
    "finish_reason" => finish_reason,
    "message" => message,
});
object!(Message<'de>, Message<'v> { "content" => content });
object!(TypedUsage, TypedUsage {
    "prompt_tokens" => prompt_tokens,
    "input_tokens" => input_tokens,
    "completion_tokens" => completion_tokens,
    "output_tokens" => output_tokens,
    "total_tokens" => total_tokens,
    "completion_tokens_details" => completion_tokens_details,
    "output_tokens_details" => output_tokens_details,
    "prompt_tokens_details" => prompt_tokens_details,
    "input_tokens_details" => input_tokens_details,
    "cost" => cost,
    "is_byok" => is_byok,
    "cost_details" => cost_details,
});
object!(CostDetails, CostDetails {
    "upstream_inference_cost" => upstream_inference_cost,
});
object!(Details, Details {
    "reasoning_tokens" => reasoning_tokens,
    "cached_tokens" => cached_tokens,
});

/// A string, borrowed from the input unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    fn owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'v> Visitor<'v> for TextVisitor {
            type Value = Text<'v>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'v str) -> Result<Text<'v>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'v>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'v>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// The first element of an array (`None` when it is empty); the others are skipped unread.
struct First<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FirstVisitor<T>(PhantomData<T>);
        impl<'v, T: Deserialize<'v>> Visitor<'v> for FirstVisitor<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'v>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(FirstVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::chat;
    use proptest::prelude::*;

    /// Whatever the fast path answers, the lenient parser answers the same.
    fn agrees(body: &str) -> bool {
        let fast = chat(body.as_bytes());
        if let Some(answer) = &fast {
            let slow = serde_json::from_str(body)
                .map_err(|e| e.to_string())
                .and_then(|v| chat::parse_value(&v).map_err(|f| format!("{f:?}")));
            assert_eq!(slow.as_ref(), Ok(answer), "{body}");
        }
        fast.is_some()
    }

    const MOCK: &str = r#"{"id":"gen-1-abc","object":"chat.completion","created":1779358422,
        "model":"openai/gpt-4o-mini","provider":"OpenAI","system_fingerprint":"fp_mock",
        "service_tier":null,"choices":[{"index":0,"logprobs":null,"finish_reason":"stop",
        "native_finish_reason":"stop","message":{"role":"assistant","content":"Hello there",
        "refusal":null,"reasoning":null}}],"usage":{"prompt_tokens":9,"completion_tokens":10,
        "total_tokens":19,"cost":0.00000735,"is_byok":false,"prompt_tokens_details":
        {"cached_tokens":3,"cache_write_tokens":0},"completion_tokens_details":
        {"reasoning_tokens":2,"image_tokens":0}}}"#;

    #[test]
    fn plain_answers_take_the_fast_path_and_agree() {
        assert!(agrees(MOCK));
        assert!(agrees(
            r#" {"choices":[{"message":{"content":"caf\u00e9 \"x\""},"finish_reason":"stop"},7]}"#
        ));
        assert!(agrees(
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"input_tokens":4,"output_tokens":5,"output_tokens_details":{"reasoning_tokens":1},"input_tokens_details":{"cached_tokens":2},"cost":3}}"#
        ));
        assert!(agrees(
            r#"{"choices":[{"finish_reason":"stop","message":{"content":""}}]}"#
        ));
        assert!(agrees(
            r#"{"error":null,"choices":[{"error":null,"message":{"content":"x"},"finish_reason":"length"}],"usage":{}}"#
        ));
    }

    #[test]
    fn invalid_utf8_anywhere_is_left_to_the_lenient_parser() {
        let body = b"{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"other\":\"\xff\"}";
        assert_eq!(chat(body), None);
        assert!(matches!(
            chat::parse_body(body),
            Err(crate::retry::Failure::Invalid(_))
        ));
    }

    #[test]
    fn everything_unusual_is_left_to_the_lenient_parser() {
        for body in [
            "",
            "  ",
            "[1]",
            r#"[{"message":{"content":"x"}}]"#,
            r#"{"choices":[]}"#,
            r#"{"choices":[[null,"stop",{"content":"x"}]]}"#,
            r#"{"choices":[{"message":{"content":"x"}}]} trailing"#,
            r#"{"error":{"code":502,"message":"boom"},"choices":[{"message":{"content":"x"}}]}"#,
            r#"{"choices":[{"error":{"message":"boom"},"message":{"content":"x"}}]}"#,
            r#"{"choices":[{"finish_reason":"error","message":{"content":"x"}}]}"#,
            r#"{"choices":[{"finish_reason":"length","message":{"content":" "}}]}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":5}"#,
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"x"}]}}]}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":null}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1.5}}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":-1}}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"id":7}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"model":"a","model":"b"}"#,
            r#"{"choices":[{"message":{"content":"x"},"message":null}]}"#,
        ] {
            assert!(!agrees(body), "{body}");
        }
    }

    /// `"key":value` for one of `values` (weighted; `""` leaves the key out).
    fn field(
        key: &'static str,
        values: &'static [(u32, &'static str)],
    ) -> impl Strategy<Value = Option<String>> {
        let options: Vec<(u32, BoxedStrategy<Option<String>>)> = values
            .iter()
            .map(|&(w, v)| {
                let kv = (!v.is_empty()).then(|| format!("\"{key}\":{v}"));
                (w, Just(kv).boxed())
            })
            .collect();
        prop::strategy::Union::new_weighted(options)
    }

    /// An object of the fields present, sometimes with the first one repeated at the end.
    fn object(fields: Vec<BoxedStrategy<Option<String>>>) -> impl Strategy<Value = String> {
        (fields, prop::bool::weighted(0.05)).prop_map(|(fields, repeat)| {
            let mut present: Vec<String> = fields.into_iter().flatten().collect();
            if repeat && let Some(first) = present.first().cloned() {
                present.push(first);
            }
            format!("{{{}}}", present.join(","))
        })
    }

    // Mostly the usual values, sometimes one of a type or range the fast path leaves alone.
    const TOKENS: &[(u32, &str)] = &[
        (20, ""),
        (60, "7"),
        (2, "0"),
        (1, "2.0"),
        (1, "-1"),
        (1, "null"),
        (1, "\"3\""),
        (1, "18446744073709551616"),
    ];
    const TEXT: &[(u32, &str)] = &[
        (10, ""),
        (30, "\"x\""),
        (1, "null"),
        (1, "7"),
        (2, "\"a\\u00e9\""),
    ];
    const ERROR: &[(u32, &str)] = &[
        (40, ""),
        (2, "null"),
        (1, "{\"message\":\"boom\"}"),
        (1, "\"e\""),
    ];

    fn details(key: &'static str) -> BoxedStrategy<Option<String>> {
        let inner = object(vec![
            field("reasoning_tokens", TOKENS).boxed(),
            field("cached_tokens", TOKENS).boxed(),
        ]);
        (inner, 0..20u8)
            .prop_map(move |(o, k)| match k {
                0..=5 => None,
                6 => Some(format!("\"{key}\":null")),
                7 => Some(format!("\"{key}\":4")),
                _ => Some(format!("\"{key}\":{o}")),
            })
            .boxed()
    }

    fn usage() -> impl Strategy<Value = String> {
        let mut fields: Vec<BoxedStrategy<Option<String>>> = [
            "prompt_tokens",
            "input_tokens",
            "completion_tokens",
            "output_tokens",
            "total_tokens",
        ]
        .into_iter()
        .map(|k| field(k, TOKENS).boxed())
        .collect();
        fields.extend(
            [
                "completion_tokens_details",
                "output_tokens_details",
                "prompt_tokens_details",
                "input_tokens_details",
            ]
            .map(details),
        );
        fields.push(
            field(
                "cost",
                &[
                    (10, ""),
                    (30, "0.00000735"),
                    (2, "3"),
                    (2, "1e-3"),
                    (1, "null"),
                    (1, "\"1\""),
                ],
            )
            .boxed(),
        );
        fields.push(
            field(
                "is_byok",
                &[(10, ""), (20, "false"), (5, "true"), (1, "null"), (1, "1")],
            )
            .boxed(),
        );
        let cost_details = object(vec![
            field(
                "upstream_inference_cost",
                &[(5, ""), (20, "0.5"), (1, "null"), (1, "\"2\"")],
            )
            .boxed(),
            field("upstream_inference_prompt_cost", &[(5, ""), (5, "0.1")]).boxed(),
        ]);
        fields.push(
            (cost_details, 0..10u8)
                .prop_map(|(d, k)| match k {
                    0..=2 => None,
                    3 => Some("\"cost_details\":null".to_owned()),
                    4 => Some("\"cost_details\":[]".to_owned()),
                    _ => Some(format!("\"cost_details\":{d}")),
                })
                .boxed(),
        );
        object(fields)
    }

    fn body() -> impl Strategy<Value = String> {
        let message = object(vec![
            field(
                "content",
                &[
                    (2, ""),
                    (30, "\"hello\""),
                    (1, "\"\""),
                    (1, "\" \""),
                    (1, "\"q\\\"uote\\n\""),
                    (1, "null"),
                    (1, "[{\"text\":\"t\"}]"),
                    (1, "7"),
                ],
            )
            .boxed(),
            field("role", &[(1, ""), (1, "\"assistant\"")]).boxed(),
        ]);
        let choice = (message, 0..20u8).prop_flat_map(|(m, k)| {
            let message = match k {
                0 => None,
                1 => Some("\"message\":null".to_owned()),
                2 => Some("\"message\":\"m\"".to_owned()),
                _ => Some(format!("\"message\":{m}")),
            };
            object(vec![
                Just(message).boxed(),
                field(
                    "finish_reason",
                    &[
                        (5, ""),
                        (30, "\"stop\""),
                        (1, "\"length\""),
                        (1, "\"error\""),
                        (1, "\"content_filter\""),
                        (1, "\"tool_calls\""),
                        (1, "\"\""),
                        (1, "null"),
                        (1, "3"),
                    ],
                )
                .boxed(),
                field("error", ERROR).boxed(),
            ])
        });
        (choice, usage(), 0..20u8, 0..20u8).prop_flat_map(|(c, u, kc, ku)| {
            let choices = match kc {
                0 => None,
                1 => Some("\"choices\":[]".to_owned()),
                2 => Some("\"choices\":null".to_owned()),
                3 => Some(format!("\"choices\":{c}")),
                4 => Some(format!("\"choices\":[{c},5]")),
                5 => Some(format!("\"choices\":[{c},{c}]")),
                _ => Some(format!("\"choices\":[{c}]")),
            };
            let usage = match ku {
                0..=2 => None,
                3 => Some("\"usage\":null".to_owned()),
                _ => Some(format!("\"usage\":{u}")),
            };
            object(vec![
                Just(choices).boxed(),
                Just(usage).boxed(),
                field("id", TEXT).boxed(),
                field("provider", TEXT).boxed(),
                field("model", TEXT).boxed(),
                field("service_tier", TEXT).boxed(),
                field("error", ERROR).boxed(),
                field("object", &[(1, ""), (1, "\"chat.completion\"")]).boxed(),
            ])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn the_fast_path_never_disagrees(body in body()) {
            agrees(&body);
        }
    }
}
