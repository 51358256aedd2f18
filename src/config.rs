//! Resolving what the user asked for — flags, then the job file, then defaults — into one
//! validated [`RunConfig`]. All cross-flag rules live here; nothing downstream sees clap or
//! raw strings.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cli::{ApiArgs, DEFAULT_KEY_ENV, EndpointArg, InputFormatArg, RunArgs};
use crate::client::ApiKey;
use crate::endpoint::Endpoint;
use crate::exit::UsageError;
use crate::job::{InputConfig, InputFormat, InputSource, Shard};
use crate::limit::Rate;

/// The public OpenRouter API.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
pub const DEFAULT_CONCURRENCY: usize = 32;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
pub const DEFAULT_TIMEOUT_SECS: f64 = 300.0;

/// A job file (`jobs/*.toml`): the same names as the flags, plus `[params]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub input: Option<String>,
    pub input_format: Option<String>,
    pub output: Option<PathBuf>,
    pub models: Option<Vec<String>>,
    pub endpoint: Option<String>,
    pub template: Option<String>,
    pub template_file: Option<PathBuf>,
    pub system: Option<String>,
    pub id_field: Option<String>,
    pub concurrency: Option<usize>,
    pub rps: Option<f64>,
    pub rpm: Option<f64>,
    pub burst: Option<u32>,
    pub max_attempts: Option<u32>,
    pub timeout: Option<f64>,
    pub stream: Option<bool>,
    pub max_cost: Option<f64>,
    pub limit: Option<u64>,
    pub shard: Option<String>,
    pub retry_errors: Option<bool>,
    pub keep_fields: Option<bool>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
    /// Merged into every request body.
    pub params: Option<Map<String, Value>>,
}

impl JobFile {
    /// Read and parse a job file; errors name the file and the offending key.
    pub fn load(path: &Path) -> Result<JobFile, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!("{}: cannot read the job file: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            UsageError::new(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })
    }
}

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The built-in mock server, started in-process (`--mock`).
    Mock,
    /// A real API.
    /// A real API. `key` is `None` only for commands that work without one (the catalogue
    /// is public); `run` always has one.
    Remote {
        base_url: String,
        key: Option<ApiKey>,
    },
}

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: InputConfig,
    pub output: PathBuf,
    pub concurrency: usize,
    pub rate: Option<Rate>,
    pub max_attempts: u32,
    pub timeout: Duration,
    /// Use SSE streaming.
    pub stream: bool,
    /// `--max-cost` in USD.
    pub max_cost: Option<f64>,
    pub retry_errors: bool,
    pub fresh: bool,
    pub target: Target,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
    pub quiet: bool,
}

impl RunConfig {
    /// Flags win over the job file, the job file over defaults. `env` reads environment
    /// variables (a parameter so tests need not touch the process environment).
    pub fn resolve(
        args: &RunArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RunConfig, UsageError> {
        RunConfig::resolve_with(args, env, Key::Required)
    }

    /// As [`RunConfig::resolve`], saying whether a missing key is an error (`plan` can do
    /// without one).
    pub fn resolve_with(
        args: &RunArgs,
        env: &dyn Fn(&str) -> Option<String>,
        key: Key,
    ) -> Result<RunConfig, UsageError> {
        let (job, base_dir) = match &args.job {
            Some(path) => (
                JobFile::load(path)?,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ),
            None => (JobFile::default(), PathBuf::new()),
        };
        // Paths from the job file are relative to its folder; paths from flags to the cwd.
        let in_job = |p: &Path| {
            if p.is_absolute() || base_dir.as_os_str().is_empty() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };

        let input_arg: String = match (&args.input, &job.input) {
            (Some(i), _) => i.clone(),
            (None, Some(i)) if i == "-" => i.clone(),
            (None, Some(i)) => in_job(Path::new(i)).to_string_lossy().into_owned(),
            (None, None) => {
                return Err(UsageError::new(
                    "no input: pass --input PATH (or a job file with input = \"…\")",
                ));
            }
        };
        let format_name = args
            .input_format
            .map(|f| match f {
                InputFormatArg::Jsonl => "jsonl",
                InputFormatArg::Csv => "csv",
                InputFormatArg::Tsv => "tsv",
            })
            .map(str::to_owned)
            .or(job.input_format.clone());
        let (source, format) = input_source(&input_arg, format_name.as_deref())?;

        let output = match (&args.output, &job.output) {
            (Some(o), _) => o.clone(),
            (None, Some(o)) => in_job(o),
            (None, None) => match &source {
                InputSource::Path(p) => default_output(p),
                InputSource::Stdin => {
                    return Err(UsageError::new(
                        "reading rows from stdin: pass --output PATH",
                    ));
                }
            },
        };

        let models = if args.models.is_empty() {
            job.models.clone().unwrap_or_default()
        } else {
            args.models.clone()
        };
        if models.iter().any(|m| m.trim().is_empty()) {
            return Err(UsageError::new("a model id is empty"));
        }

        let endpoint = match (args.endpoint, &job.endpoint) {
            (Some(EndpointArg::Chat), _) => Endpoint::Chat,
            (Some(EndpointArg::Responses), _) => Endpoint::Responses,
            (None, Some(e)) => match e.as_str() {
                "chat" => Endpoint::Chat,
                "responses" => Endpoint::Responses,
                other => {
                    return Err(UsageError::new(format!(
                        "endpoint = {other:?} in the job file: use \"chat\" or \"responses\""
                    )));
                }
            },
            (None, None) => Endpoint::Chat,
        };

        let template = match (
            &args.template,
            &args.template_file,
            &job.template,
            &job.template_file,
        ) {
            (Some(t), _, _, _) => Some(t.clone()),
            (None, Some(f), _, _) => Some(read_template(f)?),
            (None, None, Some(t), _) => Some(t.clone()),
            (None, None, None, Some(f)) => Some(read_template(&in_job(f))?),
            _ => None,
        };

        let mut params = job.params.clone().unwrap_or_default();
        for p in &args.params {
            let (k, v) = parse_param(p)?;
            params.insert(k, v);
        }

        let shard = match args.shard.as_ref().or(job.shard.as_ref()) {
            Some(s) => Some(parse_shard(s)?),
            None => None,
        };

        let concurrency = match args.concurrency {
            Some(n) => n.get(),
            None => match job.concurrency {
                Some(0) => return Err(UsageError::new("concurrency must be at least 1")),
                Some(n) => n,
                None => DEFAULT_CONCURRENCY,
            },
        };

        let burst = match args.burst {
            Some(b) => b,
            None => match job.burst {
                Some(b) => {
                    NonZeroU32::new(b).ok_or_else(|| UsageError::new("burst must be at least 1"))?
                }
                None => NonZeroU32::MIN,
            },
        };
        let per_second = match (args.rps, args.rpm) {
            (Some(r), _) => Some(positive(r, "--rps")?),
            (None, Some(r)) => Some(positive(r, "--rpm")? / 60.0),
            (None, None) => match (job.rps, job.rpm) {
                (Some(_), Some(_)) => {
                    return Err(UsageError::new(
                        "the job file sets both rps and rpm; keep one",
                    ));
                }
                (Some(r), None) => Some(positive(r, "rps")?),
                (None, Some(r)) => Some(positive(r, "rpm")? / 60.0),
                (None, None) => None,
            },
        };
        let rate = per_second.map(|per_second| Rate { per_second, burst });

        let max_attempts = match args.max_attempts {
            Some(n) => n.get(),
            None => match job.max_attempts {
                Some(0) => return Err(UsageError::new("max_attempts must be at least 1")),
                Some(n) => n,
                None => DEFAULT_MAX_ATTEMPTS,
            },
        };
        let timeout = positive(
            args.timeout.or(job.timeout).unwrap_or(DEFAULT_TIMEOUT_SECS),
            "--timeout",
        )?;

        let max_cost = match args.max_cost.or(job.max_cost) {
            Some(c) if c.is_finite() && c >= 0.0 => Some(c),
            Some(c) => {
                return Err(UsageError::new(format!(
                    "--max-cost must be a number of USD ≥ 0, got {c}"
                )));
            }
            None => None,
        };

        let retry_errors = if args.no_retry_errors {
            false
        } else if args.retry_errors {
            true
        } else {
            job.retry_errors.unwrap_or(true)
        };

        let target = resolve_target(
            &args.api,
            job.base_url.as_deref(),
            job.api_key_env.as_deref(),
            env,
            key,
        )?;

        Ok(RunConfig {
            input: InputConfig {
                source,
                format,
                models,
                endpoint,
                template,
                system: args.system.clone().or(job.system.clone()),
                id_field: args.id_field.clone().or(job.id_field.clone()),
                params,
                keep_fields: args.keep_fields || job.keep_fields.unwrap_or(false),
                limit: args.limit.or(job.limit),
                shard,
            },
            output,
            concurrency,
            rate,
            max_attempts,
            timeout: Duration::from_secs_f64(timeout),
            stream: args.stream || job.stream.unwrap_or(false),
            max_cost,
            retry_errors,
            fresh: args.fresh,
            target,
            app_url: args.app_url.clone().or(job.app_url.clone()),
            app_title: args.app_title.clone().or(job.app_title.clone()),
            quiet: args.verbosity.quiet,
        })
    }
}

/// Whether a command needs the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Required,
    /// Go on without one (public endpoints such as `/models`).
    Optional,
}

/// Decide where API calls go: the in-process mock, or a base URL with a key from the
/// environment. Flag beats environment beats job file beats default.
pub fn resolve_target(
    api: &ApiArgs,
    job_base_url: Option<&str>,
    job_key_env: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    need: Key,
) -> Result<Target, UsageError> {
    if api.mock {
        return Ok(Target::Mock);
    }
    let key_env = job_key_env
        .filter(|_| api.api_key_env == DEFAULT_KEY_ENV)
        .unwrap_or(&api.api_key_env);
    let key = env(key_env)
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .map(ApiKey::new);
    if key.is_none() && need == Key::Required {
        return Err(UsageError::new(format!(
            "no API key: set {key_env} (create one at https://openrouter.ai/keys), or pass \
             --mock to try orbatch against the built-in mock server"
        )));
    }
    let base_url = api
        .base_url
        .clone()
        .or_else(|| env("OPENROUTER_BASE_URL").filter(|u| !u.trim().is_empty()))
        .or(job_base_url.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(UsageError::new(format!(
            "--base-url {base_url:?}: expected an http:// or https:// URL"
        )));
    }
    Ok(Target::Remote { base_url, key })
}

fn input_source(arg: &str, format: Option<&str>) -> Result<(InputSource, InputFormat), UsageError> {
    let parse = |f: &str| match f {
        "jsonl" | "ndjson" => Ok(InputFormat::Jsonl),
        "csv" => Ok(InputFormat::Csv),
        "tsv" => Ok(InputFormat::Tsv),
        other => Err(UsageError::new(format!(
            "input format {other:?}: use jsonl, csv or tsv"
        ))),
    };
    if arg == "-" {
        let f = format.ok_or_else(|| {
            UsageError::new("reading rows from stdin: pass --input-format jsonl|csv|tsv")
        })?;
        return Ok((InputSource::Stdin, parse(f)?));
    }
    let path = PathBuf::from(arg);
    let format = match format {
        Some(f) => parse(f)?,
        None => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            match ext.as_str() {
                "jsonl" | "ndjson" => InputFormat::Jsonl,
                "csv" => InputFormat::Csv,
                "tsv" | "tab" => InputFormat::Tsv,
                _ => {
                    return Err(UsageError::new(format!(
                        "{arg}: cannot tell the format from the extension; pass --input-format \
                         jsonl|csv|tsv"
                    )));
                }
            }
        }
    };
    Ok((InputSource::Path(path), format))
}

/// `data/q.jsonl` → `data/q.out.jsonl`.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "orbatch".to_owned());
    input.with_file_name(format!("{stem}.out.jsonl"))
}

fn read_template(path: &Path) -> Result<String, UsageError> {
    std::fs::read_to_string(path).map_err(|e| {
        UsageError::new(format!(
            "{}: cannot read the template file: {e}",
            path.display()
        ))
    })
}

/// `KEY=VALUE`: VALUE as JSON if it parses, else as a string.
pub fn parse_param(p: &str) -> Result<(String, Value), UsageError> {
    let (k, v) = p.split_once('=').ok_or_else(|| {
        UsageError::new(format!(
            "--param {p:?}: expected KEY=VALUE, e.g. temperature=0"
        ))
    })?;
    let k = k.trim();
    if k.is_empty() {
        return Err(UsageError::new(format!("--param {p:?}: the key is empty")));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// `K/N` with `N ≥ 1` and `K < N`.
pub fn parse_shard(s: &str) -> Result<Shard, UsageError> {
    let bad = || {
        UsageError::new(format!(
            "--shard {s:?}: expected K/N with 0 ≤ K < N, e.g. 0/4"
        ))
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let index: u64 = k.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

fn positive(x: f64, name: &str) -> Result<f64, UsageError> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(UsageError::new(format!(
            "{name} must be a positive number, got {x}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn key_env(k: &str) -> Option<String> {
        (k == "OPENROUTER_API_KEY").then(|| "sk-test".to_owned())
    }

    fn args(input: &str) -> RunArgs {
        RunArgs {
            input: Some(input.into()),
            ..RunArgs::default()
        }
    }

    #[test]
    fn params_parse_as_json_else_string() {
        assert_eq!(
            parse_param("temperature=0").unwrap(),
            ("temperature".into(), json!(0))
        );
        assert_eq!(
            parse_param("provider={\"sort\":\"price\"}").unwrap().1,
            json!({"sort":"price"})
        );
        assert_eq!(parse_param("stop=END").unwrap().1, json!("END"));
        assert_eq!(parse_param("x=a=b").unwrap().1, json!("a=b"));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=1").is_err());
    }

    #[test]
    fn shards_are_checked() {
        assert_eq!(parse_shard("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1/0", "x/2", "1", "-1/3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_output_path() {
        let c = RunConfig::resolve(&args("data/q.jsonl"), &key_env).unwrap();
        assert_eq!(c.output, PathBuf::from("data/q.out.jsonl"));
        assert_eq!(c.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(c.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(c.input.format, InputFormat::Jsonl);
        assert!(c.retry_errors);
        assert!(
            matches!(c.target, Target::Remote { ref base_url, .. } if base_url == DEFAULT_BASE_URL)
        );
    }

    #[test]
    fn a_missing_key_is_a_usage_error_unless_mock() {
        let e = RunConfig::resolve(&args("q.jsonl"), &no_env).unwrap_err();
        assert!(e.to_string().contains("OPENROUTER_API_KEY"), "{e}");
        let mut a = args("q.jsonl");
        a.api.mock = true;
        assert!(RunConfig::resolve(&a, &no_env).is_ok());
    }

    #[test]
    fn job_file_values_yield_to_flags_and_resolve_paths() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.toml");
        std::fs::write(
            &job,
            "input = \"rows.csv\"\nmodels = [\"a/b\"]\nconcurrency = 4\nrpm = 120\n[params]\ntemperature = 0\nmax_tokens = 10\n",
        )
        .unwrap();
        let mut a = RunArgs {
            job: Some(job.clone()),
            ..RunArgs::default()
        };
        let c = RunConfig::resolve(&a, &key_env).unwrap();
        assert_eq!(
            c.input.source,
            InputSource::Path(dir.path().join("rows.csv"))
        );
        assert_eq!(c.input.format, InputFormat::Csv);
        assert_eq!(c.output, dir.path().join("rows.out.jsonl"));
        assert_eq!(c.input.models, vec!["a/b".to_owned()]);
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.rate.unwrap().per_second, 2.0);
        assert_eq!(c.input.params.get("max_tokens"), Some(&json!(10)));
        a.models = vec!["c/d".into()];
        a.concurrency = std::num::NonZeroUsize::new(9);
        a.params = vec!["max_tokens=20".into()];
        let c = RunConfig::resolve(&a, &key_env).unwrap();
        assert_eq!(c.input.models, vec!["c/d".to_owned()]);
        assert_eq!(c.concurrency, 9);
        assert_eq!(c.input.params.get("max_tokens"), Some(&json!(20)));
        assert_eq!(c.input.params.get("temperature"), Some(&json!(0)));
    }

    #[test]
    fn unknown_job_keys_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("bad.toml");
        std::fs::write(&job, "input = \"x.jsonl\"\nconcurency = 3\n").unwrap();
        let e = JobFile::load(&job).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("concurency"), "{e}");
    }

    #[test]
    fn stdin_needs_a_format_and_an_output() {
        let e = RunConfig::resolve(&args("-"), &key_env).unwrap_err();
        assert!(e.to_string().contains("--input-format"), "{e}");
        let mut a = args("-");
        a.input_format = Some(InputFormatArg::Jsonl);
        let e = RunConfig::resolve(&a, &key_env).unwrap_err();
        assert!(e.to_string().contains("--output"), "{e}");
        a.output = Some("o.jsonl".into());
        assert_eq!(
            RunConfig::resolve(&a, &key_env).unwrap().input.source,
            InputSource::Stdin
        );
    }
}
