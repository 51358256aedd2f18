//! OpenRouter's management API (`/keys`, `/keys/{hash}`) with `$OPENROUTER_MANAGEMENT_KEY`:
//! create a key with a credit limit, read one key's state, disable it. A created key is a
//! [`NewKey`], which never shows itself (`Debug` is redacted) and only leaves through
//! [`NewKey::write_to`].

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::{ApiArgs, ManagementArgs};
use crate::client::{ApiKey, Client};
use crate::config::{Job, Key, Target, resolve_target};
use crate::connect::{ClientOptions, Connection};
use crate::exit::{Failure, UsageError};
use crate::mock::MockConfig;
use crate::text::sanitize;

/// Where the management key is read from.
pub const MANAGEMENT_ENV: &str = "OPENROUTER_MANAGEMENT_KEY";

/// Per-request timeout of management calls.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One key as the management API describes it (never the key itself).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ManagedKey {
    pub hash: String,
    pub name: String,
    /// The masked key, e.g. `sk-or-v1-0e6...1c96`.
    pub label: String,
    pub disabled: bool,
    pub limit: Option<f64>,
    pub limit_remaining: Option<f64>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    /// USD OpenRouter charged to this key.
    pub usage: f64,
    /// USD providers charged for BYOK requests made with this key (`None`: not reported).
    pub byok_usage: Option<f64>,
    pub expires_at: Option<String>,
    pub created_at: Option<String>,
}

/// A newly created key. It is never printed: `Debug` shows nothing of it.
pub struct NewKey(String);

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewKey(<redacted>)")
    }
}

impl NewKey {
    /// Write the key and a newline to `out`.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(self.0.as_bytes())?;
        out.write_all(b"\n")
    }

    /// The key, for tests that check it never leaks.
    #[cfg(test)]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Open the API with the management key; its absence is a usage error naming the variable.
pub async fn connect(args: &ManagementArgs) -> Result<Connection, Failure> {
    let target = target(args, &|k| std::env::var(k).ok())?;
    let options = ClientOptions {
        timeout: Some(TIMEOUT),
        ..ClientOptions::default()
    };
    Ok(Connection::open(&target, options, MockConfig::default()).await?)
}

/// The base URL and headers as for every command, with the management key.
fn target(
    args: &ManagementArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, UsageError> {
    let key = env(MANAGEMENT_ENV)
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            UsageError::new(format!(
                "no management key: set ${MANAGEMENT_ENV} to a management key (create one at \
                 https://openrouter.ai/settings/management-keys); an ordinary API key cannot \
                 create, show or disable keys"
            ))
        })?;
    let api = ApiArgs {
        base_url: args.base_url.clone(),
        headers: args.headers.clone(),
        ..ApiArgs::default()
    };
    Ok(
        match resolve_target(&api, &Job::default(), env, Key::Optional)? {
            Target::Remote {
                base_url, headers, ..
            } => Target::Remote {
                base_url,
                key: Some(ApiKey::new(key)),
                headers,
            },
            Target::Mock => Target::Mock,
        },
    )
}

/// `POST /keys`: a key named `name` with credit `limit` (USD), expiring at `expires_at`.
pub async fn create(
    client: &Client,
    name: &str,
    limit: f64,
    expires_at: Option<jiff::Timestamp>,
) -> Result<(ManagedKey, NewKey), Failure> {
    let mut body = json!({ "name": name, "limit": limit });
    if let Some(t) = expires_at {
        body["expires_at"] = json!(t.to_string());
    }
    let mut answer = call(client, Method::POST, "/keys", Some(&body)).await?;
    // Take the key out of the answer first, so nothing below can show it.
    let secret = match answer.get_mut("key").map(Value::take) {
        Some(Value::String(k)) if !k.trim().is_empty() => NewKey(k.trim().to_owned()),
        _ => {
            return Err(Failure::failed(
                "POST /keys: the answer has no key (a key may have been created: list your \
                 keys at https://openrouter.ai/settings/keys and delete it)",
            ));
        }
    };
    let data = parse_data(&answer, "POST /keys")?;
    Ok((data, secret))
}

/// `GET /keys/{hash}`.
pub async fn show(client: &Client, hash: &str) -> Result<ManagedKey, Failure> {
    let path = key_path(hash)?;
    let answer = call(client, Method::GET, &path, None).await?;
    parse_data(&answer, &format!("GET {path}"))
}

/// `PATCH /keys/{hash}` with `disabled: true`.
pub async fn disable(client: &Client, hash: &str) -> Result<ManagedKey, Failure> {
    let path = key_path(hash)?;
    let body = json!({ "disabled": true });
    let answer = call(client, Method::PATCH, &path, Some(&body)).await?;
    parse_data(&answer, &format!("PATCH {path}"))
}

/// `/keys/HASH`, refusing what is not a hash (it goes into a URL path).
fn key_path(hash: &str) -> Result<String, UsageError> {
    let hash = hash.trim();
    if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(UsageError::new(format!(
            "{:?} is not a key hash: pass the hash `orbatch key create` printed (letters and \
             digits only)",
            sanitize(hash)
        )));
    }
    Ok(format!("/keys/{hash}"))
}

fn parse_data(answer: &Value, what: &str) -> Result<ManagedKey, Failure> {
    let data = answer
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| Failure::failed(format!("{what}: the answer has no data object")))?;
    ManagedKey::deserialize(data)
        .map_err(|e| Failure::failed(format!("{what}: unexpected answer: {e}")))
}

/// One management call that must answer 2xx; the body as JSON.
async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let resp = client
        .call(method.clone(), path, body)
        .await
        .map_err(|f| Failure::failed(format!("{method} {path}: {}", crate::retry::describe(&f))))?;
    if (200..300).contains(&resp.status) {
        return Ok(resp.body);
    }
    let message = resp
        .error()
        .map(|e| sanitize(&e.message))
        .unwrap_or_default();
    let what = format!("{method} {path}: HTTP {} {message}", resp.status);
    let what = what.trim_end();
    Err(match resp.status {
        401 | 403 => Failure::Refused(format!(
            "{what}: this needs a management key; set ${MANAGEMENT_ENV} to one (an ordinary \
             API key cannot manage keys: https://openrouter.ai/settings/management-keys)"
        )),
        404 if path != "/keys" => Failure::failed(format!(
            "{what}: no key has this hash; pass the hash `orbatch key create` printed"
        )),
        404 | 405 => Failure::failed(format!(
            "{what}: this server has no management API (is --base-url OpenRouter's, ending \
             in /api/v1?)"
        )),
        _ => Failure::failed(what),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashes_go_into_the_path() {
        assert_eq!(key_path(" ab12 ").ok().as_deref(), Some("/keys/ab12"));
        for bad in ["", "../key", "a/b", "a?b", "a b"] {
            assert!(key_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_new_key_does_not_show_itself() {
        let k = NewKey("sk-or-v1-secret".into());
        assert!(!format!("{k:?}").contains("secret"));
        let mut out = Vec::new();
        k.write_to(&mut out).ok();
        assert_eq!(out, b"sk-or-v1-secret\n");
        assert_eq!(k.expose(), "sk-or-v1-secret");
    }

    #[test]
    fn no_management_key_is_an_error_naming_the_variable() {
        let args = ManagementArgs::default();
        let msg = target(&args, &|_| None).err().map(|e| e.to_string());
        assert!(
            msg.as_deref().is_some_and(|m| m.contains(MANAGEMENT_ENV)),
            "{msg:?}"
        );
        // An ordinary key in the environment is not taken for one.
        let ordinary = |k: &str| (k == "OPENROUTER_API_KEY").then(|| "sk-or-v1-x".to_owned());
        assert!(target(&args, &ordinary).is_err());
    }
}
