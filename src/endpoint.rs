//! Which OpenRouter inference endpoint a request goes to.

use serde::{Deserialize, Serialize};

/// `/chat/completions` or `/responses` (SPEC §1 `--endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    #[default]
    Chat,
    Responses,
}

impl Endpoint {
    /// The name used on the command line, in job files and in output records.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Responses => "responses",
        }
    }

    /// The path below the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Responses => "/responses",
        }
    }

    /// Parse `chat` / `responses` (also accepts the OpenAI Batch `url` forms).
    pub fn parse(s: &str) -> Option<Endpoint> {
        match s.trim().trim_end_matches('/') {
            "chat" | "/v1/chat/completions" | "/chat/completions" | "chat/completions" => {
                Some(Endpoint::Chat)
            }
            "responses" | "/v1/responses" | "/responses" => Some(Endpoint::Responses),
            _ => None,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
