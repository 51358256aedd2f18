//! Streamed answers (`stream: true`): fold the SSE events of either endpoint into the same
//! [`Answer`] a plain request gives, or into the failure the stream reported — an error
//! chunk mid-stream, a `response.failed`, or a stream that ended before its end marker.
//! A partial text is never an answer.

use serde_json::Value;

use super::chat::{check_usable, parse_usage};
use super::error::ApiError;
use super::responses;
use super::sse::Event;
use super::{Answer, Billing};
use crate::endpoint::Endpoint;
use crate::retry::Failure;

/// What an event meant for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    More,
    /// The first content of the answer arrived (time to first token).
    FirstContent,
    /// The stream is over (end marker or an error): stop reading.
    End,
}

/// The answer being assembled from a stream.
#[derive(Debug)]
pub struct StreamState {
    endpoint: Endpoint,
    answer: Answer,
    has_content: bool,
    done: bool,
    /// A Responses terminal event carried the whole answer.
    completed: Option<Answer>,
    failure: Option<Failure>,
}

impl StreamState {
    pub fn new(endpoint: Endpoint) -> StreamState {
        StreamState {
            endpoint,
            answer: Answer::default(),
            has_content: false,
            done: false,
            completed: None,
            failure: None,
        }
    }

    /// The generation id seen so far (first chunk / `response.created`).
    pub fn generation_id(&self) -> Option<&str> {
        self.answer.generation_id.as_deref()
    }

    /// Fold one event in.
    pub fn on_event(&mut self, ev: &Event) -> Step {
        if self.done || self.failure.is_some() {
            return Step::End;
        }
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Step::End;
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.failure = Some(Failure::Invalid(format!(
                    "a stream event is not JSON ({e})"
                )));
                return Step::End;
            }
        };
        let had_content = self.has_content;
        match self.endpoint {
            Endpoint::Chat => self.on_chat_chunk(&value),
            Endpoint::Responses => self.on_responses_event(&value),
        }
        if self.failure.is_some() || self.done {
            Step::End
        } else if self.has_content && !had_content {
            Step::FirstContent
        } else {
            Step::More
        }
    }

    fn on_chat_chunk(&mut self, chunk: &Value) {
        self.note_identity(chunk);
        // A mid-stream error: a top-level `error` next to the usual fields (FACTS §3).
        if let Some(error) = ApiError::from_envelope(chunk) {
            self.failure = Some(Failure::InBody {
                error: Box::new(error),
            });
            return;
        }
        if let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        {
            if let Some(text) = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
                && !text.is_empty()
            {
                self.answer.output.push_str(text);
                self.has_content = true;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                if reason == "error" {
                    let error = choice
                        .get("error")
                        .map(ApiError::from_error_value)
                        .unwrap_or_else(|| ApiError {
                            message: "the provider ended the stream with finish_reason \"error\""
                                .into(),
                            ..ApiError::default()
                        });
                    self.failure = Some(Failure::InBody {
                        error: Box::new(error),
                    });
                    return;
                }
                self.answer.finish_reason = Some(reason.to_owned());
            }
        }
        // Usage comes once, in the last chunk (which may repeat the finish reason).
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.answer.usage = Some(parse_usage(u));
            self.answer.billing = Billing::from_usage(u);
        }
    }

    fn on_responses_event(&mut self, ev: &Value) {
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(resp) = ev.get("response") {
            self.note_identity(resp);
        }
        match kind {
            "response.output_text.delta" => {
                if let Some(d) = ev.get("delta").and_then(Value::as_str)
                    && !d.is_empty()
                {
                    self.answer.output.push_str(d);
                    self.has_content = true;
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let resp = ev.get("response").cloned().unwrap_or(Value::Null);
                match responses::parse_value(&resp) {
                    Ok(mut a) => {
                        if a.output.is_empty() {
                            a.output = std::mem::take(&mut self.answer.output);
                        }
                        self.completed = Some(a);
                        self.done = true;
                    }
                    Err(f) => self.failure = Some(f),
                }
            }
            "error" | "response.error" => {
                let error = ev
                    .get("error")
                    .map(ApiError::from_error_value)
                    .unwrap_or_else(|| ApiError {
                        code: ev.get("code").filter(|c| !c.is_null()).cloned(),
                        message: ev
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("the stream reported an error")
                            .to_owned(),
                        ..ApiError::default()
                    });
                self.failure = Some(Failure::InBody {
                    error: Box::new(error),
                });
            }
            _ => {}
        }
    }

    fn note_identity(&mut self, v: &Value) {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        if self.answer.generation_id.is_none() {
            self.answer.generation_id = s("id");
        }
        if self.answer.provider.is_none() {
            self.answer.provider = s("provider");
        }
        if self.answer.model.is_none() {
            self.answer.model = s("model");
        }
        if self.answer.service_tier.is_none() {
            self.answer.service_tier = s("service_tier");
        }
    }

    /// The stream is over (or broke off): the answer, or why there is none.
    pub fn finish(self) -> Result<Answer, Failure> {
        if let Some(f) = self.failure {
            return Err(f);
        }
        match self.endpoint {
            Endpoint::Chat => {
                // Usage arrives just before [DONE]; with usage the answer is complete even
                // if the marker itself was lost.
                if !self.done && self.answer.usage.is_none() {
                    return Err(Failure::Truncated(format!(
                        "the stream ended without [DONE] after {} characters",
                        self.answer.output.chars().count()
                    )));
                }
                // Every complete answer ends with a finish reason. A stream that says [DONE]
                // without one was cut short by the server (llama.cpp's server does this to a
                // stream when another request interrupts it): not an answer.
                if self.answer.finish_reason.is_none() {
                    return Err(Failure::CutShort(format!(
                        "it ended with [DONE] but without a finish reason after {} characters",
                        self.answer.output.chars().count()
                    )));
                }
                check_usable(&self.answer.output, self.answer.finish_reason.as_deref())?;
                Ok(self.answer)
            }
            Endpoint::Responses => match self.completed {
                Some(mut a) => {
                    if a.generation_id.is_none() {
                        a.generation_id = self.answer.generation_id;
                    }
                    Ok(a)
                }
                None => Err(Failure::Truncated(format!(
                    "the stream ended without response.completed after {} characters",
                    self.answer.output.chars().count()
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sse::Parser;
    use crate::retry::{Action, classify};

    fn run(endpoint: Endpoint, text: &str) -> (Result<Answer, Failure>, Vec<Step>) {
        let mut p = Parser::new();
        let mut events = Vec::new();
        p.feed(text.as_bytes(), &mut events).unwrap();
        let mut s = StreamState::new(endpoint);
        let steps = events.iter().map(|e| s.on_event(e)).collect();
        (s.finish(), steps)
    }

    const CHAT: &str = ": OPENROUTER PROCESSING\n\n\
        data: {\"id\":\"gen-9\",\"provider\":\"OpenAI\",\"model\":\"openai/gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"gen-9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"gen-9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"gen-9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"id\":\"gen-9\",\"service_tier\":\"priority\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7,\"cost\":0.0001,\"is_byok\":true,\"cost_details\":{\"upstream_inference_cost\":0.002}}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn chat_stream_with_the_repeated_finish_chunk() {
        let (a, steps) = run(Endpoint::Chat, CHAT);
        let a = a.unwrap();
        assert_eq!(a.output, "Hello");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(a.generation_id.as_deref(), Some("gen-9"));
        assert_eq!(a.provider.as_deref(), Some("OpenAI"));
        assert_eq!(a.usage.unwrap().cost, Some(0.0001));
        assert_eq!(a.billing.is_byok, Some(true));
        assert_eq!(a.billing.upstream_cost, Some(0.002));
        assert_eq!(a.service_tier.as_deref(), Some("priority"));
        assert_eq!(
            steps.iter().filter(|s| **s == Step::FirstContent).count(),
            1
        );
        assert_eq!(steps.last(), Some(&Step::End));
    }

    #[test]
    fn chat_stream_cut_off_is_truncated_and_keeps_the_id() {
        let cut = CHAT
            .split(
                "data: {\"id\":\"gen-9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}",
            )
            .next()
            .unwrap();
        let mut p = Parser::new();
        let mut events = Vec::new();
        p.feed(cut.as_bytes(), &mut events).unwrap();
        let mut s = StreamState::new(Endpoint::Chat);
        for e in &events {
            s.on_event(e);
        }
        assert_eq!(s.generation_id(), Some("gen-9"));
        let f = s.finish().unwrap_err();
        assert!(matches!(f, Failure::Truncated(_)));
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
    }

    /// What llama.cpp's server (llama-cpp-python 0.3) sent for a stream that a second request
    /// interrupted, byte for byte but the id: content deltas, then `[DONE]`, with no finish
    /// chunk and no usage. Accepted as an answer, it was a cut-off text recorded as ok.
    #[test]
    fn a_stream_that_says_done_without_a_finish_reason_was_cut_short() {
        let chunk = |delta: &str, finish: &str| {
            format!(
                "data: {{\"id\": \"chatcmpl-2adb1b05\", \"model\": \"openai/gpt-4o-mini\", \
                 \"created\": 1796118341, \"object\": \"chat.completion.chunk\", \"choices\": \
                 [{{\"index\": 0, \"delta\": {delta}, \"logprobs\": null, \"finish_reason\": \
                 {finish}}}]}}\r\n\r\n"
            )
        };
        let head = chunk("{\"role\": \"assistant\"}", "null")
            + &chunk("{\"content\": \"The bakery\"}", "null")
            + &chunk("{\"content\": \" now\"}", "null");
        let (a, _) = run(Endpoint::Chat, &(head.clone() + "data: [DONE]\r\n\r\n"));
        let f = a.unwrap_err();
        assert!(
            matches!(&f, Failure::CutShort(m) if m.contains("without a finish reason")),
            "{f:?}"
        );
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
        // The same stream with its finish chunk (as the server ends an uninterrupted one):
        // an answer, although this server sends no usage.
        let whole = head + &chunk("{}", "\"length\"") + "data: [DONE]\r\n\r\n";
        let a = run(Endpoint::Chat, &whole).0.unwrap();
        assert_eq!(a.output, "The bakery now");
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        assert_eq!(a.usage, None);
    }

    #[test]
    fn chat_mid_stream_errors_both_shapes() {
        let with_choice = "data: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n\
            data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"error\":{\"code\":429,\"message\":\"Rate limit exceeded\",\"metadata\":{\"error_type\":\"rate_limit_exceeded\"}},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n";
        let (r, _) = run(Endpoint::Chat, with_choice);
        let f = r.unwrap_err();
        assert!(matches!(f, Failure::InBody { .. }));
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
        let empty_choices = "data: {\"id\":\"gen-2\",\"provider\":\"Stealth\",\"error\":{\"code\":502,\"message\":\"x\",\"metadata\":{\"error_type\":\"provider_unavailable\"}},\"choices\":[]}\n\n";
        assert!(matches!(
            run(Endpoint::Chat, empty_choices).0,
            Err(Failure::InBody { .. })
        ));
        let string_code = "data: {\"error\":{\"code\":\"server_error\",\"message\":\"x\"}}\n\n";
        assert!(matches!(
            run(Endpoint::Chat, string_code).0,
            Err(Failure::InBody { .. })
        ));
    }

    const RESPONSES: &str = ": \n\n\
        data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"gen-5\",\"status\":\"in_progress\",\"model\":\"m\",\"output\":[]}}\n\n\
        data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hel\",\"item_id\":\"i\",\"output_index\":0,\"content_index\":0}\n\n\
        data: {\"type\":\"response.output_text.delta\",\"delta\":\"lo\",\"item_id\":\"i\",\"output_index\":0,\"content_index\":0}\n\n\
        data: {\"type\":\"response.output_text.done\",\"text\":\"Hello\"}\n\n\
        data: {\"type\":\"response.completed\",\"response\":{\"id\":\"gen-5\",\"status\":\"completed\",\"model\":\"m\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\"}]}],\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7,\"cost\":0.0001}}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn responses_stream_completes() {
        let (a, steps) = run(Endpoint::Responses, RESPONSES);
        let a = a.unwrap();
        assert_eq!(a.output, "Hello");
        assert_eq!(a.generation_id.as_deref(), Some("gen-5"));
        assert_eq!(a.usage.unwrap().completion_tokens, 2);
        assert!(steps.contains(&Step::FirstContent));
    }

    #[test]
    fn responses_stream_failures() {
        let cut = RESPONSES
            .split("data: {\"type\":\"response.completed\"")
            .next()
            .unwrap();
        assert!(matches!(
            run(Endpoint::Responses, cut).0,
            Err(Failure::Truncated(_))
        ));
        let failed = "data: {\"type\":\"response.failed\",\"response\":{\"id\":\"gen-6\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"x\"},\"error_type\":\"provider_unavailable\"}}\n\n";
        let f = run(Endpoint::Responses, failed).0.unwrap_err();
        assert!(matches!(classify(&f).action, Action::Retry { .. }));
        let error = "data: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"sequence_number\":3}\n\n";
        assert!(matches!(
            run(Endpoint::Responses, error).0,
            Err(Failure::InBody { .. })
        ));
    }

    #[test]
    fn a_garbage_event_is_invalid() {
        assert!(matches!(
            run(Endpoint::Chat, "data: {nope\n\n").0,
            Err(Failure::Invalid(_))
        ));
    }
}
