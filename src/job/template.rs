//! `--template`: a minijinja template over the row's fields, compiled once, rendered with
//! strict undefined checking so that a missing column is a problem, not an empty string.

use std::collections::{BTreeMap, HashSet};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as MjValue};
use serde_json::{Map, Value};

use super::problems::InputError;

const NAME: &str = "template";

/// The display name used for problems with the template itself.
pub const TEMPLATE_PATH: &str = "--template";

pub(crate) struct Template {
    env: Environment<'static>,
    /// Top-level variables the template reads (minus globals such as `range`), sorted.
    vars: Vec<String>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("vars", &self.vars)
            .finish()
    }
}

impl Template {
    /// Compiles `source`; a syntax error is an [`InputError`] about `--template`.
    pub(crate) fn compile(source: &str) -> Result<Template, InputError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let err = |e: minijinja::Error| {
            InputError::one(
                TEMPLATE_PATH,
                e.line().map(|l| l as u64),
                format!("template: {}", describe(&e)),
            )
        };
        env.add_template_owned(NAME, source.to_owned())
            .map_err(err)?;
        let globals: HashSet<&str> = env.globals().map(|(name, _)| name).collect();
        let mut vars: Vec<String> = env
            .get_template(NAME)
            .map_err(err)?
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !globals.contains(v.as_str()))
            .collect();
        vars.sort();
        Ok(Template { env, vars })
    }

    /// The top-level variables the template reads, sorted.
    pub(crate) fn vars(&self) -> &[String] {
        &self.vars
    }

    /// Renders the template with the row's fields as its context.
    pub(crate) fn render(&self, fields: &Map<String, Value>) -> Result<String, String> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| format!("template: {}", describe(&e)))?;
        let ctx: BTreeMap<String, MjValue> = fields
            .iter()
            .map(|(k, v)| (k.clone(), to_minijinja(v)))
            .collect();
        template.render(ctx).map_err(|e| {
            if e.kind() == ErrorKind::UndefinedError
                && let Some(missing) = self.vars.iter().find(|v| !fields.contains_key(*v))
            {
                return format!("template: undefined variable \"{missing}\"");
            }
            format!("template: {}", describe(&e))
        })
    }
}

/// minijinja's message without its `(in template:LINE)` suffix.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn to_minijinja(v: &Value) -> MjValue {
    match v {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MjValue::from(i)
            } else if let Some(u) = n.as_u64() {
                MjValue::from(u)
            } else {
                MjValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MjValue::from(s.as_str()),
        Value::Array(items) => items.iter().map(to_minijinja).collect(),
        Value::Object(map) => MjValue::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_minijinja(v)))
                .collect::<BTreeMap<String, MjValue>>(),
        ),
    }
}
