//! Row → request body: recognising the row's shape (OpenAI Batch line, `messages`, `input`,
//! `prompt`, template), converting between chat and responses shapes, `--system`, params merge,
//! the row's id and model, and `meta`.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::InputConfig;
use super::source::kind;
use super::template::Template;
use crate::endpoint::Endpoint;

/// Keys orbatch sets itself; `params` may not set them.
const FORBIDDEN_PARAMS: [&str; 4] = ["model", "messages", "input", "stream"];

/// Fields with a meaning of their own, never copied into `meta`.
const RESERVED: [&str; 10] = [
    "id",
    "custom_id",
    "model",
    "params",
    "prompt",
    "messages",
    "input",
    "method",
    "url",
    "body",
];

/// The CSV columns with a meaning of their own (a `params` column is just text there).
const CSV_RESERVED: [&str; 4] = ["id", "custom_id", "model", "prompt"];

pub(crate) const NO_MODEL: &str =
    "no model: pass -m MODEL, set \"models\" in the job file, or give the row a \"model\" field";

/// Which model(s) a row goes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowModel {
    /// The row names its model (or an OpenAI Batch body does, with no `-m`): one request.
    Own(String),
    /// One request per configured model.
    Config,
}

/// A row turned into a body (without `model`).
#[derive(Debug, Clone)]
pub(crate) struct Shaped {
    pub endpoint: Endpoint,
    pub model: RowModel,
    pub body: Map<String, Value>,
    pub meta: Option<Map<String, Value>>,
}

/// Row → id/body, with everything from the configuration it needs.
#[derive(Debug)]
pub(crate) struct Shaper {
    pub endpoint: Endpoint,
    pub models: Vec<String>,
    pub system: Option<String>,
    pub id_field: Option<String>,
    pub params: Map<String, Value>,
    pub keep_fields: bool,
    pub template: Option<Template>,
    /// CSV/TSV rows are plain strings: only `prompt` or the template make a message.
    pub csv: bool,
    /// `--schema`: the answer format every body asks for.
    pub schema: Option<std::sync::Arc<crate::schema::Schema>>,
}

/// What is wrong with `params` (the config's or a row's), if anything.
pub(crate) fn check_params(params: &Map<String, Value>) -> Option<String> {
    let key = FORBIDDEN_PARAMS.iter().find(|k| params.contains_key(**k))?;
    Some(match *key {
        "model" => {
            "\"params\" may not set \"model\": give the row a \"model\" field or pass -m".into()
        }
        "stream" => "\"params\" may not set \"stream\": pass --stream instead".into(),
        other => format!("\"params\" may not set \"{other}\": orbatch builds it from the row"),
    })
}

impl Shaper {
    pub(crate) fn new(config: &InputConfig, template: Option<Template>) -> Shaper {
        Shaper {
            endpoint: config.endpoint,
            models: config.models.clone(),
            system: config.system.clone(),
            id_field: config.id_field.clone(),
            params: config.params.clone(),
            keep_fields: config.keep_fields,
            schema: config.schema.clone(),
            template,
            csv: matches!(
                config.format,
                super::InputFormat::Csv | super::InputFormat::Tsv
            ),
        }
    }

    /// The row's id: `--id-field`, else `id`, else `custom_id`, else the row number.
    pub(crate) fn id<'a>(
        &self,
        fields: &'a Map<String, Value>,
        row: u64,
    ) -> Result<Cow<'a, str>, String> {
        let (name, value) = match &self.id_field {
            Some(name) => match fields.get(name) {
                Some(v) => (name.as_str(), v),
                None => return Err(format!("missing id field \"{name}\" (--id-field)")),
            },
            None => match (fields.get("id"), fields.get("custom_id")) {
                (Some(v), _) => ("id", v),
                (None, Some(v)) => ("custom_id", v),
                (None, None) => return Ok(Cow::Owned(row.to_string())),
            },
        };
        match value {
            Value::String(s) if s.is_empty() => Err(format!("\"{name}\" is empty")),
            Value::String(s) => Ok(Cow::Borrowed(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Cow::Owned(n.to_string())),
            other => Err(format!(
                "\"{name}\" must be a string or an integer, found {}",
                describe(other)
            )),
        }
    }

    /// The row's body and models, or every problem found with it.
    pub(crate) fn shape(&self, fields: &Map<String, Value>) -> Result<Shaped, Vec<String>> {
        let mut problems = Vec::new();
        let mut had_model_problem = false;
        let row_model = match fields.get("model") {
            None => None,
            // An empty CSV cell means "no model of its own".
            Some(Value::String(s)) if self.csv && s.is_empty() => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                had_model_problem = true;
                problems.push("\"model\" is empty".to_owned());
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                had_model_problem = true;
                problems.push(format!("\"model\" must be a string, found {}", kind(other)));
                None
            }
        };
        let row_params = if self.csv {
            None
        } else {
            match fields.get("params") {
                None => None,
                Some(Value::Object(p)) => {
                    if let Some(msg) = check_params(p) {
                        problems.push(msg);
                    }
                    Some(p)
                }
                Some(other) => {
                    problems.push(format!(
                        "\"params\" must be an object, found {}",
                        kind(other)
                    ));
                    None
                }
            }
        };

        let built = if !self.csv && fields.contains_key("url") && fields.contains_key("body") {
            self.batch(fields, row_model.as_deref())
        } else {
            self.plain(fields).map(|(endpoint, body)| {
                let model = match &row_model {
                    Some(m) => Some(RowModel::Own(m.clone())),
                    None if !self.models.is_empty() => Some(RowModel::Config),
                    None => None,
                };
                (endpoint, body, model)
            })
        };
        let (endpoint, mut body, model) = match built {
            Ok(x) => x,
            Err(msg) => {
                problems.push(msg);
                return Err(problems);
            }
        };
        let model = match model {
            Some(m) => m,
            None => {
                if !had_model_problem {
                    problems.push(NO_MODEL.to_owned());
                }
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        if let Some(p) = row_params {
            for (k, v) in p {
                body.insert(k.clone(), v.clone());
            }
        }
        if let Some(schema) = &self.schema {
            schema.apply(endpoint, &mut body).map_err(|e| vec![e])?;
        }
        let reserved: &[&str] = if self.csv { &CSV_RESERVED } else { &RESERVED };
        let meta = self.keep_fields.then(|| {
            fields
                .iter()
                .filter(|(k, _)| {
                    !reserved.contains(&k.as_str()) && Some(k.as_str()) != self.id_field.as_deref()
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        Ok(Shaped {
            endpoint,
            model,
            body,
            meta,
        })
    }

    /// An OpenAI Batch line: `body` as-is (config params underneath), `url` → endpoint.
    #[allow(clippy::type_complexity)]
    fn batch(
        &self,
        fields: &Map<String, Value>,
        row_model: Option<&str>,
    ) -> Result<(Endpoint, Map<String, Value>, Option<RowModel>), String> {
        if let Some(method) = fields.get("method")
            && method.as_str().map(|m| m.eq_ignore_ascii_case("POST")) != Some(true)
        {
            return Err(format!(
                "\"method\" must be \"POST\", found {}",
                describe(method)
            ));
        }
        let endpoint = match fields.get("url") {
            Some(Value::String(url)) => Endpoint::parse(url).ok_or_else(|| {
                format!(
                    "unsupported \"url\" \"{url}\": use \"/v1/chat/completions\" or \"/v1/responses\""
                )
            })?,
            Some(other) => return Err(format!("\"url\" must be a string, found {}", kind(other))),
            None => self.endpoint,
        };
        let Some(Value::Object(given)) = fields.get("body") else {
            let found = fields.get("body").map_or("nothing", kind);
            return Err(format!("\"body\" must be an object, found {found}"));
        };
        let needed = match endpoint {
            Endpoint::Chat => "messages",
            Endpoint::Responses => "input",
        };
        if !given.contains_key(needed) {
            return Err(format!(
                "\"body\" has no \"{needed}\" (required by {})",
                endpoint.path()
            ));
        }
        let body_model = match given.get("model") {
            None => None,
            Some(Value::String(m)) if !m.trim().is_empty() => Some(m.clone()),
            Some(other) => {
                return Err(format!(
                    "\"body.model\" must be a non-empty string, found {}",
                    describe(other)
                ));
            }
        };
        let model = match (row_model, self.models.is_empty(), body_model) {
            (Some(m), _, _) => Some(RowModel::Own(m.to_owned())),
            (None, false, _) => Some(RowModel::Config),
            (None, true, Some(m)) => Some(RowModel::Own(m)),
            _ => None,
        };
        let mut body = self.params.clone();
        for (k, v) in given {
            if k != "model" && k != "stream" {
                body.insert(k.clone(), v.clone());
            }
        }
        Ok((endpoint, body, model))
    }

    /// `messages` / `input` / template / `prompt` rows.
    fn plain(&self, fields: &Map<String, Value>) -> Result<(Endpoint, Map<String, Value>), String> {
        let endpoint = self.endpoint;
        let mut body = self.params.clone();
        let system = self.system.as_deref();
        let messages = if self.csv {
            None
        } else {
            fields.get("messages")
        };
        let input = if self.csv { None } else { fields.get("input") };
        if let Some(messages) = messages {
            let list = check_messages(messages)?;
            let has_system = list.iter().any(is_system);
            match endpoint {
                Endpoint::Chat => {
                    let mut out = Vec::with_capacity(list.len() + 1);
                    if let (Some(s), false) = (system, has_system) {
                        out.push(json!({"role": "system", "content": s}));
                    }
                    out.extend(list.iter().cloned());
                    body.insert("messages".into(), Value::Array(out));
                }
                Endpoint::Responses => {
                    let items = list
                        .iter()
                        .enumerate()
                        .map(|(i, m)| message_to_item(i + 1, m))
                        .collect::<Result<Vec<_>, _>>()?;
                    set_instructions(&mut body, system, has_system);
                    body.insert("input".into(), Value::Array(items));
                }
            }
        } else if let Some(input) = input {
            match (endpoint, input) {
                (_, Value::String(s)) if s.trim().is_empty() => {
                    return Err("\"input\" is empty".into());
                }
                (_, Value::Array(a)) if a.is_empty() => return Err("\"input\" is empty".into()),
                (Endpoint::Responses, Value::String(_) | Value::Array(_)) => {
                    let has_system = input.as_array().is_some_and(|a| a.iter().any(is_system));
                    set_instructions(&mut body, system, has_system);
                    body.insert("input".into(), input.clone());
                }
                (Endpoint::Chat, Value::String(s)) => {
                    body.insert("messages".into(), chat_messages(system, s.clone()));
                }
                (Endpoint::Chat, Value::Array(items)) => {
                    let converted = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| item_to_message(i + 1, item))
                        .collect::<Result<Vec<_>, _>>()?;
                    let has_system = converted.iter().any(is_system);
                    let mut out = Vec::with_capacity(converted.len() + 1);
                    if let (Some(s), false) = (system, has_system) {
                        out.push(json!({"role": "system", "content": s}));
                    }
                    out.extend(converted);
                    body.insert("messages".into(), Value::Array(out));
                }
                (_, other) => {
                    return Err(format!(
                        "\"input\" must be a string or an array of items, found {}",
                        kind(other)
                    ));
                }
            }
        } else {
            let text = if let Some(template) = &self.template {
                let text = template.render(fields)?;
                if text.trim().is_empty() {
                    return Err("template rendered an empty message".into());
                }
                Cow::Owned(text)
            } else {
                match fields.get("prompt") {
                    Some(Value::String(s)) if s.trim().is_empty() => {
                        return Err("\"prompt\" is empty".into());
                    }
                    Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
                    Some(other) => {
                        return Err(format!(
                            "\"prompt\" must be a string, found {}",
                            kind(other)
                        ));
                    }
                    None if self.csv => return Err(no_prompt_column(fields)),
                    None => {
                        return Err("row has no \"prompt\", \"messages\" or \"input\" field; add one or pass --template".into());
                    }
                }
            };
            match endpoint {
                Endpoint::Chat => {
                    body.insert("messages".into(), chat_messages(system, text.into_owned()));
                }
                Endpoint::Responses => {
                    set_instructions(&mut body, system, false);
                    body.insert("input".into(), Value::String(text.into_owned()));
                }
            }
        }
        Ok((endpoint, body))
    }
}

/// `"x"` for strings and short values, else the kind.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_owned(),
    }
}

fn chat_messages(system: Option<&str>, user: String) -> Value {
    let mut out = Vec::with_capacity(2);
    if let Some(s) = system {
        out.push(json!({"role": "system", "content": s}));
    }
    out.push(json!({"role": "user", "content": user}));
    Value::Array(out)
}

fn set_instructions(body: &mut Map<String, Value>, system: Option<&str>, has_system: bool) {
    if let (Some(s), false) = (system, has_system) {
        body.insert("instructions".into(), Value::String(s.to_owned()));
    }
}

fn is_system(m: &Value) -> bool {
    m.get("role").and_then(Value::as_str) == Some("system")
}

fn check_messages(v: &Value) -> Result<&Vec<Value>, String> {
    let Value::Array(list) = v else {
        return Err(format!("\"messages\" must be an array, found {}", kind(v)));
    };
    if list.is_empty() {
        return Err("\"messages\" is empty".into());
    }
    for (i, m) in list.iter().enumerate() {
        let n = i + 1;
        let Value::Object(obj) = m else {
            return Err(format!("message {n} must be an object, found {}", kind(m)));
        };
        match obj.get("role") {
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "message {n}: \"role\" must be a string, found {}",
                    kind(other)
                ));
            }
            None => return Err(format!("message {n} has no \"role\"")),
        }
    }
    Ok(list)
}

/// A chat message → a responses input item.
fn message_to_item(n: usize, m: &Value) -> Result<Value, String> {
    let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
    if role == "tool" || m.get("tool_calls").is_some() {
        return Err(format!(
            "message {n} is a tool call or result, which orbatch cannot convert for /responses; use --endpoint chat"
        ));
    }
    let content = match m.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => {
            let text_type = if role == "assistant" {
                "output_text"
            } else {
                "input_text"
            };
            let converted = parts
                .iter()
                .map(|p| chat_part_to_responses(n, p, text_type))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(converted)
        }
        Some(other) => {
            return Err(format!(
                "message {n}: \"content\" must be a string or an array of parts, found {}",
                kind(other)
            ));
        }
        None => return Err(format!("message {n} has no \"content\"")),
    };
    Ok(json!({"type": "message", "role": role, "content": content}))
}

fn chat_part_to_responses(n: usize, part: &Value, text_type: &str) -> Result<Value, String> {
    let ty = part.get("type").and_then(Value::as_str).unwrap_or_default();
    match ty {
        "text" => match part.get("text") {
            Some(Value::String(t)) => Ok(json!({"type": text_type, "text": t})),
            _ => Err(format!("message {n}: a text part has no \"text\" string")),
        },
        "image_url" => {
            let image = part.get("image_url");
            let url = image
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(Value::as_str);
            let Some(url) = url else {
                return Err(format!("message {n}: an image_url part has no url"));
            };
            let mut out = json!({"type": "input_image", "image_url": url});
            if let (Some(detail), Some(obj)) = (
                image.and_then(|i| i.get("detail")).cloned(),
                out.as_object_mut(),
            ) {
                obj.insert("detail".into(), detail);
            }
            Ok(out)
        }
        other => Err(format!(
            "message {n}: a content part of type \"{other}\" cannot be converted for /responses; use --endpoint chat"
        )),
    }
}

/// A responses input item → a chat message (text parts joined with newlines).
fn item_to_message(n: usize, item: &Value) -> Result<Value, String> {
    let Value::Object(obj) = item else {
        return Err(format!(
            "input item {n} must be an object, found {}",
            kind(item)
        ));
    };
    match obj.get("type").and_then(Value::as_str) {
        None | Some("message") => {}
        Some(other) => {
            return Err(format!(
                "input item {n} has type \"{other}\", which has no chat equivalent; use --endpoint responses"
            ));
        }
    }
    let Some(role) = obj.get("role").and_then(Value::as_str) else {
        return Err(format!("input item {n} has no \"role\" string"));
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                let ty = part.get("type").and_then(Value::as_str).unwrap_or_default();
                match (ty, part.get("text")) {
                    ("input_text" | "output_text" | "text", Some(Value::String(t))) => {
                        texts.push(t.as_str());
                    }
                    _ => {
                        return Err(format!(
                            "input item {n}: a content part of type \"{ty}\" has no chat equivalent; use --endpoint responses"
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        _ => return Err(format!("input item {n} has no \"content\" string or parts")),
    };
    Ok(json!({"role": role, "content": content}))
}

/// The problem of a CSV/TSV row without a `prompt` column: which columns there are, and a
/// guess at the delimiter when the header was read as one column.
fn no_prompt_column(fields: &Map<String, Value>) -> String {
    const SHOWN: usize = 12;
    let mut names: Vec<String> = fields
        .keys()
        .take(SHOWN)
        .map(|k| format!("{k:?}"))
        .collect();
    if fields.len() > SHOWN {
        names.push(format!("… {} more", fields.len() - SHOWN));
    }
    let mut msg = format!(
        "row has no \"prompt\" column (the header has {}); add one or pass --template",
        names.join(", ")
    );
    // One column whose name holds another delimiter: the file is not separated the way it
    // was read.
    if let (1, Some(name)) = (fields.len(), fields.keys().next()) {
        let hint = [
            ('\t', "tab", "pass --input-format tsv"),
            (',', "comma", "pass --input-format csv"),
            (
                ';',
                "semicolon",
                "orbatch reads , or tab: save it with commas",
            ),
            ('|', "pipe", "orbatch reads , or tab: save it with commas"),
        ]
        .into_iter()
        .find(|(c, _, _)| name.contains(*c));
        if let Some((_, what, fix)) = hint {
            msg.push_str(&format!("; the header looks {what}-separated: {fix}"));
        }
    }
    msg
}
