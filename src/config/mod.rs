//! Resolving what the user asked for — flags, then the job file, then defaults — into one
//! validated [`RunConfig`]. Two stages, as ripgrep's low and high args: [`given`] holds each
//! setting with where it came from, then small phases here turn them into checked values, so
//! every error names the flag, or the job-file key and the file. All cross-flag rules live
//! here; nothing downstream sees clap or raw strings.

pub mod given;
mod headers;
pub mod job_file;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cli::{ApiArgs, DEFAULT_KEY_ENV, InputFormatArg, RunArgs};
use crate::client::ApiKey;
use crate::endpoint::Endpoint;
use crate::exit::UsageError;
use crate::job::{InputConfig, InputFormat, InputSource, Shard};
use crate::limit::Rate;

use given::{Given, Origin, pick};
pub use job_file::Job;

/// The public OpenRouter API.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
pub const DEFAULT_CONCURRENCY: usize = 32;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
pub const DEFAULT_TIMEOUT_SECS: f64 = 300.0;

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The built-in mock server, started in-process (`--mock`).
    Mock,
    /// A real API. `key` is `None` only for commands that work without one (the catalogue
    /// is public); `run` always has one. `headers`: `-H` and the job's `[headers]`.
    Remote {
        base_url: String,
        key: Option<ApiKey>,
        headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    },
}

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: InputConfig,
    pub output: PathBuf,
    /// 1 to [`given::MAX_CONCURRENCY`].
    pub concurrency: usize,
    pub rate: Option<Rate>,
    /// 1 to [`given::MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Within [`given::TIMEOUT_SECS`].
    pub timeout: Duration,
    /// Use SSE streaming.
    pub stream: bool,
    /// `--truncated error`: an answer cut at max_tokens is an error record.
    pub truncated_error: bool,
    /// `--schema` with `--reask` and `--lenient-json`: how answers are checked.
    pub structured: Option<std::sync::Arc<crate::schema::Structured>>,
    /// `--max-cost` in USD, 0 to [`given::MAX_COST_USD`].
    pub max_cost: Option<f64>,
    pub retry_errors: bool,
    pub fresh: bool,
    pub target: Target,
    /// The environment variable the key is read from (for messages).
    pub key_env: String,
    /// Where the key was read from, for messages: `$VAR` or `the key file FILE`.
    pub key_source: String,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
    pub quiet: bool,
    /// The job file's `[score]` table, checked (a bad scorer is refused before anything is
    /// sent); with `--mock`, the mock answers its expected values (the evaluation demo).
    pub score: Option<ScoreSettings>,
    /// The reduce template of a chunked document input (`--reduce-template`).
    pub reduce_template: Option<String>,
    /// `--lane` and the batch lane's settings.
    pub batch: crate::batch::Settings,
}

/// How answers are scored: from `orbatch score`'s flags or the job file's `[score]` table.
#[derive(Debug, Clone)]
pub struct ScoreSettings {
    pub expected: String,
    pub scorer: std::sync::Arc<crate::score::Scorer>,
    pub scorer_field: Option<String>,
    /// The judge scorer's model and rubric.
    pub judge: crate::score::judge::JudgeOptions,
}

impl ScoreSettings {
    /// The `[score]` table of `job`, checked; errors name the key and the file.
    pub fn from_job(job: &Job) -> Result<Option<ScoreSettings>, UsageError> {
        let Some(t) = &job.file.score else {
            return Ok(None);
        };
        let at = |key: &str, value: &str, problem: &str| {
            UsageError::new(format!(
                "{key} = {value:?} in {} [score]: {problem}",
                job.path.display()
            ))
        };
        if t.expected.trim().is_empty() {
            return Err(at(
                "expected",
                &t.expected,
                "name the input field with the answers",
            ));
        }
        let spec = t.scorer.as_deref().unwrap_or("exact");
        let scorer =
            crate::score::Scorer::parse(spec).map_err(|e| at("scorer", spec, &e.message))?;
        Ok(Some(ScoreSettings {
            expected: t.expected.clone(),
            scorer: std::sync::Arc::new(scorer),
            scorer_field: t.scorer_field.clone(),
            judge: crate::score::judge::JudgeOptions {
                model: t.judge_model.clone(),
                rubric: match &t.judge_template {
                    Some(f) => read_judge_rubric(&job.resolve(f))?,
                    None => crate::score::judge::DEFAULT_RUBRIC.to_owned(),
                },
            },
        }))
    }
}

/// A judge rubric file's text; an unreadable file or a template that does not compile is a
/// usage error naming it.
pub fn read_judge_rubric(path: &Path) -> Result<String, UsageError> {
    let text = read_template(path)?;
    minijinja::Environment::new()
        .template_from_str(&text)
        .map_err(|e| {
            UsageError::new(format!(
                "{}: the judge rubric does not compile: {e}",
                path.display()
            ))
        })?;
    Ok(text)
}

/// Whether a command needs the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Required,
    /// Go on without one (public endpoints such as `/models`).
    Optional,
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
        let job = match &args.job {
            Some(path) => Job::load(path)?,
            None => Job::default(),
        };
        RunConfig::from_job(args, &job, env, key)
    }

    /// Resolve the flags against a job file already read (`Job::default()` for none).
    pub fn from_job(
        args: &RunArgs,
        job: &Job,
        env: &dyn Fn(&str) -> Option<String>,
        key: Key,
    ) -> Result<RunConfig, UsageError> {
        let s = Sources { args, job };
        // A bad [score] table is refused before anything is sent (`orbatch score` reads the
        // same table).
        let score = ScoreSettings::from_job(job)?;
        let mut input = s.input()?;
        let structured = s.structured(input.schema.clone())?;
        let output = s.output(&input.source)?;
        let reduce_template = s.chunking(&mut input)?;
        let pace = s.pace()?;
        let key_env = s.key_env();
        let key_source = key_source(&args.api, job);
        Ok(RunConfig {
            output,
            concurrency: pace.concurrency,
            rate: pace.rate,
            max_attempts: pace.max_attempts,
            timeout: pace.timeout,
            stream: args.stream || job.file.stream.unwrap_or(false),
            truncated_error: args.truncated.or(job.file.truncated)
                == Some(crate::cli::TruncatedArg::Error),
            max_cost: s.max_cost()?,
            structured,
            retry_errors: s.retry_errors(),
            fresh: args.fresh,
            target: resolve_target(&args.api, job, env, key)?,
            key_env,
            key_source,
            app_url: args.app_url.clone().or(job.file.app_url.clone()),
            app_title: args.app_title.clone().or(job.file.app_title.clone()),
            quiet: args.verbosity.quiet,
            score,
            batch: s.batch()?,
            input,
            reduce_template,
        })
    }
}

/// How fast and how hard requests go.
struct Pace {
    concurrency: usize,
    rate: Option<Rate>,
    max_attempts: u32,
    timeout: Duration,
}

/// The low stage: the flags and the job file, side by side.
struct Sources<'a> {
    args: &'a RunArgs,
    job: &'a Job,
}

impl Sources<'_> {
    /// The flag's value if given, else the job file's, with where it came from.
    fn pick<T>(
        &self,
        flag: Option<T>,
        name: &'static str,
        job: Option<T>,
        key: &'static str,
    ) -> Option<Given<T>> {
        pick(flag, name, job, key, &self.job.path)
    }

    /// A whole-number setting from a flag (`u64`) or the file (any TOML integer).
    fn whole(
        &self,
        flag: Option<u64>,
        name: &'static str,
        job: Option<i64>,
        key: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, UsageError> {
        self.pick(flag.map(i128::from), name, job.map(i128::from), key)
            .map(|g| given::whole(&g, range))
            .transpose()
    }

    /// What to send: rows, models, endpoint, template, parameters, selection.
    fn input(&self) -> Result<InputConfig, UsageError> {
        let (args, job) = (self.args, &self.job.file);
        let (source, format) = self.source()?;
        Ok(InputConfig {
            source,
            format,
            models: self.models()?,
            endpoint: args
                .endpoint
                .map(Endpoint::from)
                .or(job.endpoint)
                .unwrap_or_default(),
            template: self.template()?,
            system: args.system.clone().or(job.system.clone()),
            id_field: args.id_field.clone().or(job.id_field.clone()),
            params: self.params()?,
            keep_fields: args.keep_fields || job.keep_fields.unwrap_or(false),
            schema: self.schema()?,
            limit: self.whole(args.limit, "--limit", job.limit, "limit", 0..=u64::MAX)?,
            shard: args.shard.or(job.shard),
            hidden: args.hidden || job.hidden.unwrap_or(false),
            context: None,
            chunk: None,
            reduce_from: None,
        })
        .and_then(|input| documents_need_a_template(input, &self.job.path))
    }

    /// `--chunk-tokens`, `--chunk-overlap` and the reduce template: for document inputs only;
    /// a reduce needs chunks, and its template is compiled now.
    fn chunking(&self, input: &mut InputConfig) -> Result<Option<String>, UsageError> {
        let (args, job) = (self.args, &self.job.file);
        let tokens = self.whole(
            args.chunk_tokens,
            "--chunk-tokens",
            job.chunk_tokens,
            "chunk_tokens",
            1..=u64::from(u32::MAX),
        )?;
        let overlap = self.whole(
            args.chunk_overlap,
            "--chunk-overlap",
            job.chunk_overlap,
            "chunk_overlap",
            0..=u64::from(u32::MAX),
        )?;
        let reduce = match (
            &args.reduce_template,
            &args.reduce_template_file,
            &job.reduce_template,
            &job.reduce_template_file,
        ) {
            (Some(t), _, _, _) => Some(t.clone()),
            (None, Some(f), _, _) => Some(read_template(f)?),
            (None, None, Some(t), _) => Some(t.clone()),
            (None, None, None, Some(f)) => Some(read_template(&self.job.resolve(f))?),
            _ => None,
        };
        let Some(tokens) = tokens else {
            if overlap.is_some() || reduce.is_some() {
                return Err(UsageError::new(
                    "--chunk-overlap and --reduce-template need --chunk-tokens N (documents are \
                     split into chunks of N tokens, then reduced)",
                ));
            }
            return Ok(None);
        };
        if input.format != InputFormat::Documents {
            return Err(UsageError::new(format!(
                "--chunk-tokens: {} is not a folder, glob or file of documents; chunking \
                 splits documents (.md, .txt, .html, .pdf)",
                input.display_name()
            )));
        }
        input.chunk = Some(
            crate::docs::Chunking::new(tokens, overlap.unwrap_or(0)).map_err(UsageError::new)?,
        );
        // A long document's rows have its part, not its text; a reduce row has the chunk
        // answers: a template that reads what its rows do not have is refused now, not after
        // the chunks were paid for.
        if let Some(t) = &input.template
            && crate::job::template_vars(t).is_ok_and(|vars| vars.iter().any(|v| v == "text"))
        {
            return Err(UsageError::new(
                "with --chunk-tokens, the rows of a long document have {{ chunk }} (its part, \
                 or the whole text when it fits), not {{ text }}: use {{ chunk }} in the template",
            ));
        }
        if let Some(t) = &reduce {
            let vars = crate::job::template_vars(t).map_err(|e| {
                UsageError::new(e.to_string().replacen("--template", "--reduce-template", 1))
            })?;
            if let Some(v) = vars
                .iter()
                .find(|v| !crate::docs::REDUCE_FIELDS.contains(&v.as_str()))
            {
                return Err(UsageError::new(format!(
                    "--reduce-template reads {{{{ {v} }}}}, which a reduce does not have; it has {}",
                    crate::docs::REDUCE_FIELDS.join(", ")
                )));
            }
        }
        Ok(reduce)
    }

    /// Where rows come from and how they are written.
    fn source(&self) -> Result<(InputSource, InputFormat), UsageError> {
        let job = self.job;
        let arg = match (&self.args.input, &job.file.input) {
            (Some(i), _) => i.clone(),
            (None, Some(i)) if i == "-" => i.clone(),
            (None, Some(i)) => job.resolve(Path::new(i)).to_string_lossy().into_owned(),
            (None, None) => {
                return Err(UsageError::new(
                    "no input: pass --input PATH (or a job file with input = \"…\")",
                ));
            }
        };
        let format = self
            .args
            .input_format
            .or(job.file.input_format)
            .map(InputFormat::from);
        input_source(&arg, format)
    }

    fn output(&self, source: &InputSource) -> Result<PathBuf, UsageError> {
        Ok(match (&self.args.output, &self.job.file.output) {
            (Some(o), _) => o.clone(),
            (None, Some(o)) => self.job.resolve(o),
            (None, None) => match source {
                InputSource::Path(p) if self.source()?.1 == InputFormat::Documents => {
                    crate::docs::default_output(&p.to_string_lossy())
                }
                InputSource::Path(p) => default_output(p),
                InputSource::Stdin => {
                    return Err(UsageError::new(
                        "reading rows from stdin: pass --output PATH",
                    ));
                }
            },
        })
    }

    fn models(&self) -> Result<Vec<String>, UsageError> {
        let flags = (!self.args.models.is_empty()).then(|| self.args.models.clone());
        let Some(models) = self.pick(flags, "-m/--model", self.job.file.models.clone(), "models")
        else {
            return Ok(Vec::new());
        };
        if let Some(empty) = models.value.iter().find(|m| m.trim().is_empty()) {
            return Err(models.error(format!("{empty:?}"), "a model id is empty"));
        }
        Ok(models.value)
    }

    /// Any flag's template beats any job file's; a file's is read now.
    fn template(&self) -> Result<Option<String>, UsageError> {
        let (args, job) = (self.args, &self.job.file);
        Ok(
            match (
                &args.template,
                &args.template_file,
                &job.template,
                &job.template_file,
            ) {
                (Some(t), _, _, _) => Some(t.clone()),
                (None, Some(f), _, _) => Some(read_template(f)?),
                (None, None, Some(t), _) => Some(t.clone()),
                (None, None, None, Some(f)) => Some(read_template(&self.job.resolve(f))?),
                _ => None,
            },
        )
    }

    /// The job file's `[params]`, then each `--param` over them.
    fn params(&self) -> Result<Map<String, Value>, UsageError> {
        let mut params = self.job.file.params.clone().unwrap_or_default();
        for p in &self.args.params {
            let (k, v) = parse_param(p)?;
            params.insert(k, v);
        }
        Ok(params)
    }

    fn pace(&self) -> Result<Pace, UsageError> {
        let (args, job) = (self.args, &self.job.file);
        let concurrency = self
            .whole(
                args.concurrency,
                "-j/--concurrency",
                job.concurrency,
                "concurrency",
                1..=given::MAX_CONCURRENCY,
            )?
            .map_or(DEFAULT_CONCURRENCY, |n| n as usize);
        let max_attempts = self
            .whole(
                args.max_attempts,
                "--max-attempts",
                job.max_attempts,
                "max_attempts",
                1..=given::MAX_ATTEMPTS,
            )?
            .map_or(DEFAULT_MAX_ATTEMPTS, |n| n as u32);
        let timeout = self
            .pick(args.timeout, "--timeout", job.timeout, "timeout")
            .unwrap_or(Given::new(DEFAULT_TIMEOUT_SECS, Origin::Default));
        Ok(Pace {
            concurrency,
            rate: self.rate()?,
            max_attempts,
            timeout: given::seconds(&timeout)?,
        })
    }

    /// `--rps` or `--rpm` (clap keeps them apart; the job file may set one), and `--burst`.
    fn rate(&self) -> Result<Option<Rate>, UsageError> {
        let (args, job) = (self.args, &self.job.file);
        if args.rps.is_none() && args.rpm.is_none() && job.rps.is_some() && job.rpm.is_some() {
            return Err(UsageError::new(format!(
                "{}: sets both rps and rpm; keep one",
                self.job.path.display()
            )));
        }
        let burst = self
            .whole(
                args.burst,
                "--burst",
                job.burst,
                "burst",
                1..=given::MAX_BURST,
            )?
            .and_then(|b| std::num::NonZeroU32::new(b as u32))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let rps = self.pick(
            args.rps,
            "--rps",
            job.rps.filter(|_| args.rpm.is_none()),
            "rps",
        );
        let rpm = self.pick(
            args.rpm,
            "--rpm",
            job.rpm.filter(|_| args.rps.is_none()),
            "rpm",
        );
        let per_second = match (rps, rpm) {
            (Some(r), _) => Some(given::number(&r, given::RPS, "requests per second")?),
            (None, Some(r)) => Some(given::number(&r, given::RPM, "requests per minute")? / 60.0),
            (None, None) => None,
        };
        Ok(per_second.map(|per_second| Rate { per_second, burst }))
    }

    /// `--lane`, `--fallback`, `--wait`, `--batch-path` (job `lane`, `fallback`, `wait`,
    /// `batch_path`). The batch lane does not yet check `--schema` answers, nor hold to
    /// `--max-cost` when rows also go live: those are refused rather than ignored.
    fn batch(&self) -> Result<crate::batch::Settings, UsageError> {
        use crate::batch::{Lane, Settings};
        let file = &self.job.file;
        let lane = self.args.lane.or(file.lane).unwrap_or_default();
        let wait = match (self.args.wait, &file.wait) {
            (Some(w), _) => Some(w),
            (None, Some(text)) => Some(crate::costs::parse_duration(text).map_err(|e| {
                UsageError::new(format!(
                    "wait = {text:?} in {}: {e}",
                    self.job.path.display()
                ))
            })?),
            (None, None) => None,
        };
        if lane != Lane::Sync {
            let lane_given = if self.args.lane.is_some() {
                "--lane".to_owned()
            } else {
                format!("lane in {}", self.job.path.display())
            };
            let fallback = self.args.fallback.or(file.fallback).unwrap_or_default();
            let mixed = lane == Lane::Auto || fallback == crate::batch::Fallback::Sync;
            if mixed && self.args.max_cost.or(file.max_cost).is_some() {
                return Err(UsageError::new(format!(
                    "{lane_given}: --max-cost holds with --lane batch alone, not yet with \
                     --lane auto or --fallback sync (rows in both lanes); drop one of them"
                )));
            }
            if self.args.schema.is_some() || file.schema.is_some() {
                return Err(UsageError::new(format!(
                    "{lane_given}: the batch lane does not check --schema answers yet; use \
                     --lane sync for structured output"
                )));
            }
        }
        Ok(Settings {
            lane,
            fallback: self.args.fallback.or(file.fallback).unwrap_or_default(),
            wait,
            path: self
                .args
                .batch_path
                .clone()
                .or(file.batch_path.clone())
                .unwrap_or_else(|| crate::batch::DEFAULT_PATH.to_owned()),
        })
    }

    fn max_cost(&self) -> Result<Option<f64>, UsageError> {
        self.pick(
            self.args.max_cost,
            "--max-cost",
            self.job.file.max_cost,
            "max_cost",
        )
        .map(|g| given::number(&g, 0.0..=given::MAX_COST_USD, "USD"))
        .transpose()
    }

    /// `--schema FILE` (job `schema`, with `schema_name`), read and checked now: a file that
    /// is not JSON or not a JSON Schema is refused before anything is sent.
    fn schema(&self) -> Result<Option<std::sync::Arc<crate::schema::Schema>>, UsageError> {
        let (args, job) = (self.args, &self.job.file);
        let path = match (&args.schema, &job.schema) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => self.job.resolve(p),
            (None, None) => {
                let flags = args.reask.is_some() || args.lenient_json || args.schema_name.is_some();
                let keys =
                    job.reask.is_some() || job.lenient_json.is_some() || job.schema_name.is_some();
                if flags || keys {
                    return Err(UsageError::new(
                        "--reask, --lenient-json and --schema-name (reask, lenient_json, \
                         schema_name in a job file) need a schema: pass --schema FILE.json",
                    ));
                }
                return Ok(None);
            }
        };
        let name = args.schema_name.as_deref().or(job.schema_name.as_deref());
        let schema = crate::schema::Schema::load(&path, name)?;
        for key in ["response_format", "text"] {
            if self.params_set(key) {
                return Err(UsageError::new(format!(
                    "--param {key} (or [params] {key}) and --schema both set the answer                      format; keep the schema and drop the parameter"
                )));
            }
        }
        Ok(Some(std::sync::Arc::new(schema)))
    }

    /// Whether `-p` or the job's `[params]` set `key`.
    fn params_set(&self, key: &str) -> bool {
        let in_job = self
            .job
            .file
            .params
            .as_ref()
            .is_some_and(|p| p.contains_key(key));
        let in_flags = self
            .args
            .params
            .iter()
            .any(|p| p.split_once('=').is_some_and(|(k, _)| k.trim() == key));
        in_job || in_flags
    }

    /// `--reask N` and `--lenient-json` around the schema.
    fn structured(
        &self,
        schema: Option<std::sync::Arc<crate::schema::Schema>>,
    ) -> Result<Option<std::sync::Arc<crate::schema::Structured>>, UsageError> {
        let Some(schema) = schema else {
            return Ok(None);
        };
        let (args, job) = (self.args, &self.job.file);
        let reask = self
            .whole(
                args.reask,
                "--reask",
                job.reask,
                "reask",
                0..=crate::schema::MAX_REASK,
            )?
            .unwrap_or(1) as u32;
        Ok(Some(std::sync::Arc::new(crate::schema::Structured {
            schema,
            reask,
            lenient: args.lenient_json || job.lenient_json.unwrap_or(false),
        })))
    }

    fn retry_errors(&self) -> bool {
        if self.args.no_retry_errors {
            false
        } else if self.args.retry_errors {
            true
        } else {
            self.job.file.retry_errors.unwrap_or(true)
        }
    }

    fn key_env(&self) -> String {
        key_env(&self.args.api, self.job.file.api_key_env.as_deref()).to_owned()
    }
}

/// The variable holding the key: `--api-key-env`, else the job file's `api_key_env`, else
/// `OPENROUTER_API_KEY`.
fn key_env<'a>(api: &'a ApiArgs, job_key_env: Option<&'a str>) -> &'a str {
    api.api_key_env
        .as_deref()
        .or(job_key_env)
        .unwrap_or(DEFAULT_KEY_ENV)
}

/// The key file asked for: `--api-key-file`, else the job file's `api_key_file` (relative to
/// the job file's folder), with how to name it in messages.
fn key_file(api: &ApiArgs, job: &Job) -> Option<(PathBuf, String)> {
    if let Some(p) = &api.api_key_file {
        return Some((p.clone(), "--api-key-file".to_owned()));
    }
    // `--api-key-env` wins over the job file's key file, as a flag wins over the file.
    if api.api_key_env.is_some() {
        return None;
    }
    let p = job.file.api_key_file.as_ref()?;
    Some((
        job.resolve(p),
        format!("api_key_file in {}", job.path.display()),
    ))
}

/// Where the key comes from, for messages: `$VAR` or `the key file FILE`.
pub fn key_source(api: &ApiArgs, job: &Job) -> String {
    match key_file(api, job) {
        Some((path, _)) => format!("the key file {}", path.display()),
        None => format!("${}", key_env(api, job.file.api_key_env.as_deref())),
    }
}

/// Read an API key from `path` (named by `origin` in errors): the file's text, trimmed. An
/// unreadable or empty file is an error; a file others may read gets a warning.
pub fn read_key_file(path: &Path, origin: &str) -> Result<ApiKey, UsageError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError::new(format!(
            "{shown} ({origin}): cannot read the key file: {e}; write the key into it              (`orbatch key create --out {shown}` does)"
        ))
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(UsageError::new(format!(
            "{shown} ({origin}): the key file is empty; write the API key into it              (`orbatch key create --out FILE` does)"
        )));
    }
    if key.contains(['\n', '\r']) {
        return Err(UsageError::new(format!(
            "{shown} ({origin}): the key file holds more than one line; it must hold only              the API key"
        )));
    }
    warn_if_shared(path);
    Ok(ApiKey::new(key))
}

/// A key file that the group or others can read gets a warning (not an error: the owner
/// may mean it), with the command that fixes it.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the key file {} can be read by others (mode {mode:04o}); `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path) {}

/// Decide where API calls go: the in-process mock, or a base URL with a key from the
/// environment. Flag beats environment beats job file (`Job::default()` for none) beats
/// default.
pub fn resolve_target(
    api: &ApiArgs,
    job: &Job,
    env: &dyn Fn(&str) -> Option<String>,
    need: Key,
) -> Result<Target, UsageError> {
    if api.mock {
        return Ok(Target::Mock);
    }
    let key_env = key_env(api, job.file.api_key_env.as_deref());
    let key = match key_file(api, job) {
        Some((path, origin)) => Some(read_key_file(&path, &origin)?),
        None => env(key_env)
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(ApiKey::new),
    };
    if key.is_none() && need == Key::Required {
        return Err(UsageError::new(format!(
            "no API key: set {key_env} (create one at https://openrouter.ai/keys), or pass \
             --mock to try orbatch against the built-in mock server"
        )));
    }
    let base_url = match (
        &api.base_url,
        env("OPENROUTER_BASE_URL").filter(|u| !u.trim().is_empty()),
    ) {
        (Some(u), _) => Given::new(u.clone(), Origin::Flag("--base-url")),
        (None, Some(u)) => Given::new(u, Origin::Env("OPENROUTER_BASE_URL")),
        (None, None) => pick(None, "", job.file.base_url.clone(), "base_url", &job.path)
            .unwrap_or(Given::new(DEFAULT_BASE_URL.to_owned(), Origin::Default)),
    };
    if !(base_url.value.starts_with("http://") || base_url.value.starts_with("https://")) {
        return Err(base_url.error(
            format!("{:?}", base_url.value),
            "expected an http:// or https:// URL",
        ));
    }
    if base_url.value.contains(['?', '#']) {
        return Err(base_url.error(
            format!("{:?}", base_url.value),
            "the API root takes no query string or fragment (paths such as /chat/completions \
             are added to it)",
        ));
    }
    Ok(Target::Remote {
        base_url: base_url.value,
        key,
        headers: headers::parse(&api.headers, job)?,
    })
}

impl From<InputFormatArg> for InputFormat {
    fn from(f: InputFormatArg) -> InputFormat {
        match f {
            InputFormatArg::Jsonl => InputFormat::Jsonl,
            InputFormatArg::Csv => InputFormat::Csv,
            InputFormatArg::Tsv => InputFormat::Tsv,
        }
    }
}

impl From<crate::cli::EndpointArg> for Endpoint {
    fn from(e: crate::cli::EndpointArg) -> Endpoint {
        match e {
            crate::cli::EndpointArg::Chat => Endpoint::Chat,
            crate::cli::EndpointArg::Responses => Endpoint::Responses,
        }
    }
}

pub(crate) fn input_source(
    arg: &str,
    format: Option<InputFormat>,
) -> Result<(InputSource, InputFormat), UsageError> {
    if arg == "-" {
        let f = format.ok_or_else(|| {
            UsageError::new("reading rows from stdin: pass --input-format jsonl|csv|tsv")
        })?;
        return Ok((InputSource::Stdin, f));
    }
    let path = PathBuf::from(arg);
    let format = match format {
        Some(f) => f,
        None if crate::docs::is_documents(arg) => InputFormat::Documents,
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
                    if !path.exists() {
                        return Err(UsageError::new(format!("{arg}: no such file or folder")));
                    }
                    return Err(UsageError::new(format!(
                        "{arg}: cannot tell the format from the extension; pass --input-format \
                         jsonl|csv|tsv (or give a folder, a glob or a .md, .txt, .html or .pdf \
                         file of documents)"
                    )));
                }
            }
        }
    };
    Ok((InputSource::Path(path), format))
}

/// Documents have no `prompt`: the template says what to ask of each one.
fn documents_need_a_template(input: InputConfig, job: &Path) -> Result<InputConfig, UsageError> {
    if input.format != InputFormat::Documents || input.template.is_some() {
        return Ok(input);
    }
    let from = if job.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" (or template = \"…\" in {})", job.display())
    };
    Err(UsageError::new(format!(
        "{}: a folder of documents needs a template saying what to ask of each: pass \
         --template 'Summarise in three sentences: {{{{ text }}}}'{from}; its fields are {}",
        input.display_name(),
        crate::docs::FIELDS
    )))
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

/// `K/N` with `N ≥ 1` and `K < N` (`--shard` and `shard` in a job file; the caller names
/// which).
pub fn parse_shard(s: &str) -> Result<Shard, UsageError> {
    let bad = || UsageError::new("expected K/N with 0 ≤ K < N, e.g. 0/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let index: u64 = k.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}
