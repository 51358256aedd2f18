//! A job file (`jobs/*.toml`), read once into typed values: the same names as the flags,
//! plus `[params]`. Names with a closed set of values (`endpoint`, `input_format`, `shard`)
//! are checked by serde as the file is read; numbers are read as TOML gives them (any
//! integer, any float) and range-checked by the resolve step, which names the key and file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::cli::InputFormatArg;
use crate::endpoint::Endpoint;
use crate::exit::UsageError;
use crate::job::Shard;

/// The settings of a job file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub input: Option<String>,
    pub input_format: Option<InputFormatArg>,
    pub output: Option<PathBuf>,
    pub models: Option<Vec<String>>,
    pub endpoint: Option<Endpoint>,
    pub template: Option<String>,
    pub template_file: Option<PathBuf>,
    pub system: Option<String>,
    pub id_field: Option<String>,
    pub concurrency: Option<i64>,
    pub rps: Option<f64>,
    pub rpm: Option<f64>,
    pub burst: Option<i64>,
    pub max_attempts: Option<i64>,
    pub timeout: Option<f64>,
    pub stream: Option<bool>,
    /// `truncated = "ok" | "error"`, as `--truncated`.
    pub truncated: Option<crate::cli::TruncatedArg>,
    pub max_cost: Option<f64>,
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "shard")]
    pub shard: Option<Shard>,
    pub retry_errors: Option<bool>,
    /// `lane = "sync" | "batch" | "auto"`, as `--lane` (with `fallback`, `wait`, `batch_path`).
    pub lane: Option<crate::batch::Lane>,
    pub fallback: Option<crate::batch::Fallback>,
    /// A duration as `--wait` takes it (`"90s"`, `"2h"`).
    pub wait: Option<String>,
    pub batch_path: Option<String>,
    pub keep_fields: Option<bool>,
    /// As `--hidden`: a folder input also reads hidden and `.gitignore`d files.
    pub hidden: Option<bool>,
    /// As `--chunk-tokens`, `--chunk-overlap`, `--reduce-template`, `--reduce-template-file`.
    pub chunk_tokens: Option<i64>,
    pub chunk_overlap: Option<i64>,
    pub reduce_template: Option<String>,
    pub reduce_template_file: Option<PathBuf>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// A file holding the API key (relative to the job file's folder).
    pub api_key_file: Option<PathBuf>,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
    /// Merged into every request body.
    pub params: Option<Map<String, Value>>,
    /// `schema = "x.schema.json"`, as `--schema` (with `schema_name`, `reask`,
    /// `lenient_json`).
    pub schema: Option<PathBuf>,
    pub schema_name: Option<String>,
    pub reask: Option<i64>,
    pub lenient_json: Option<bool>,
    /// How `orbatch score` (and `run`, as it goes) scores the answers.
    pub score: Option<ScoreTable>,
    /// Extra request headers, as `-H` (`[headers]` with `Name = "value"`).
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// The job file's `[score]` table: the same names as `orbatch score`'s flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreTable {
    /// The input field with each row's expected answer.
    pub expected: String,
    /// `KIND[:OPTS]`, as `--scorer` (default `exact`).
    pub scorer: Option<String>,
    /// The input field naming a row's own scorer.
    pub scorer_field: Option<String>,
    /// The judge scorer's model, as `--judge-model`.
    pub judge_model: Option<String>,
    /// The judge's rubric file (relative to the job file), as `--judge-template`.
    pub judge_template: Option<PathBuf>,
}

/// A job file and where it is.
#[derive(Debug, Default)]
pub struct Job {
    pub path: PathBuf,
    pub file: JobFile,
}

impl Job {
    /// Read and parse a job file; errors name the file and the offending key.
    pub fn load(path: &Path) -> Result<Job, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!("{}: cannot read the job file: {e}", path.display()))
        })?;
        Job::parse(path, &text)
    }

    /// Parse the text of the job file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Job, UsageError> {
        let file = toml::from_str(text).map_err(|e| {
            UsageError::new(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        Ok(Job {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The folder that relative paths in the file resolve against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// A path written in the file, relative to its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() || self.dir().as_os_str().is_empty() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }
}

fn shard<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Shard>, D::Error> {
    let text = String::deserialize(d)?;
    super::parse_shard(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> String {
        Job::parse(Path::new("jobs/bad.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn closed_sets_are_checked_as_the_file_is_read() {
        let e = parse("endpoint = \"chta\"\n");
        assert!(
            e.starts_with("jobs/bad.toml: ") && e.contains("endpoint"),
            "{e}"
        );
        assert!(e.contains("chat") && e.contains("responses"), "{e}");
        let e = parse("input_format = \"xml\"\n");
        assert!(e.contains("input_format") && e.contains("jsonl"), "{e}");
        let e = parse("shard = \"3/2\"\n");
        assert!(e.contains("shard") && e.contains("expected K/N"), "{e}");
        let e = parse("concurency = 3\n");
        assert!(e.contains("concurency"), "{e}");
        let job = Job::parse(
            Path::new("j.toml"),
            "shard = \"1/4\"\nendpoint = \"responses\"\ninput_format = \"ndjson\"\n",
        )
        .unwrap();
        assert_eq!(job.file.shard, Some(Shard { index: 1, count: 4 }));
        assert_eq!(job.file.endpoint, Some(Endpoint::Responses));
        assert_eq!(job.file.input_format, Some(InputFormatArg::Jsonl));
    }
}
