//! Resolving flags and job files: precedence, paths, and every hostile value refused with
//! its name.

use super::*;
use crate::cli::Cli;
use clap::Parser;
use proptest::prelude::*;
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

/// `orbatch run -i q.jsonl ARGS…` parsed by clap, then resolved; clap's errors as strings.
fn run_with(extra: &[&str]) -> Result<RunConfig, String> {
    let argv = ["orbatch", "run", "-i", "q.jsonl"].iter().chain(extra);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let crate::cli::Command::Run(a) = cli.command else {
        unreachable!("run parses as run")
    };
    RunConfig::resolve(&a, &key_env).map_err(|e| e.to_string())
}

/// A job file's text resolved (no flags but `-i`).
fn job_with(text: &str) -> Result<RunConfig, String> {
    let job = Job::parse(Path::new("jobs/j.toml"), text).map_err(|e| e.to_string())?;
    RunConfig::from_job(&args("q.jsonl"), &job, &key_env, Key::Required).map_err(|e| e.to_string())
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
    assert_eq!(c.timeout, Duration::from_secs(300));
    assert_eq!(c.input.format, InputFormat::Jsonl);
    assert_eq!(c.key_env, "OPENROUTER_API_KEY");
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
fn the_key_variable_named_is_the_one_used() {
    let mut a = args("q.jsonl");
    a.api.api_key_env = Some("MY_KEY".into());
    let e = RunConfig::resolve(&a, &key_env).unwrap_err().to_string();
    assert!(
        e.contains("set MY_KEY") && !e.contains("OPENROUTER_API_KEY"),
        "{e}"
    );
    let job = Job::parse(Path::new("j.toml"), "api_key_env = \"JOB_KEY\"\n").unwrap();
    let e = RunConfig::from_job(&args("q.jsonl"), &job, &no_env, Key::Required).unwrap_err();
    assert!(e.to_string().contains("set JOB_KEY"), "{e}");
    // The flag wins over the job file, even when it names the default variable.
    a.api.api_key_env = Some("OPENROUTER_API_KEY".into());
    let c = RunConfig::from_job(&a, &job, &key_env, Key::Required).unwrap();
    assert_eq!(c.key_env, "OPENROUTER_API_KEY");
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
    a.concurrency = Some(9);
    a.rps = Some(5.0);
    a.params = vec!["max_tokens=20".into()];
    let c = RunConfig::resolve(&a, &key_env).unwrap();
    assert_eq!(c.input.models, vec!["c/d".to_owned()]);
    assert_eq!(c.concurrency, 9);
    assert_eq!(
        c.rate.unwrap().per_second,
        5.0,
        "--rps beats the file's rpm"
    );
    assert_eq!(c.input.params.get("max_tokens"), Some(&json!(20)));
    assert_eq!(c.input.params.get("temperature"), Some(&json!(0)));
}

#[test]
fn unknown_job_keys_name_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("bad.toml");
    std::fs::write(&job, "input = \"x.jsonl\"\nconcurency = 3\n").unwrap();
    let e = Job::load(&job).unwrap_err().to_string();
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

#[test]
fn hostile_flags_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--timeout", "1e20"],
            "--timeout 1e20: must be a number from 0.001 to 86400",
        ),
        (&["--timeout", "0"], "--timeout 0:"),
        (
            &["-j", "3000000000000000000"],
            "-j/--concurrency 3000000000000000000: must be",
        ),
        (&["-j", "0"], "-j/--concurrency 0:"),
        (&["--rps", "1e-300"], "--rps 1e-300: must be a number from"),
        (&["--rps", "nan"], "--rps NaN:"),
        (&["--rps", "inf"], "--rps inf:"),
        (&["--rpm", "1e300"], "--rpm 1e300:"),
        (
            &["--max-cost", "-1"],
            "--max-cost -1: must be a number from 0 to 1000000 (USD)",
        ),
        (&["--max-cost", "nan"], "--max-cost NaN:"),
        (
            &["--burst", "0"],
            "--burst 0: must be a whole number from 1 to 10000",
        ),
        (&["--burst", "4294967296"], "--burst 4294967296:"),
        (
            &["--max-attempts", "0"],
            "--max-attempts 0: must be a whole number from 1 to 100",
        ),
        (
            &["--max-attempts", "4294967297"],
            "--max-attempts 4294967297:",
        ),
        (&["--shard", "3/2"], "'--shard <K/N>'"),
        (&["-j", "99999999999999999999"], "'--concurrency <N>'"),
        (&["--limit", "-1"], "'--limit <N>'"),
        (&["-j", "-4"], "'--concurrency <N>'"),
    ];
    for (flags, expected) in cases {
        let e = run_with(flags).expect_err(&format!("{flags:?}"));
        assert!(e.contains(expected), "{flags:?}: {e}");
    }
    let c = run_with(&[
        "-j",
        "65536",
        "--rps",
        "1e6",
        "--burst",
        "10000",
        "--timeout",
        "86400",
    ])
    .unwrap();
    assert_eq!((c.concurrency, c.timeout.as_secs()), (65_536, 86_400));
    // What run derives from it cannot overflow.
    assert!(c.concurrency.checked_mul(2).is_some());
}

#[test]
fn hostile_job_values_are_refused_naming_the_key_and_file() {
    let cases = [
        (
            "concurrency = -4",
            "concurrency = -4 in jobs/j.toml: must be a whole number from 1 to 65536",
        ),
        (
            "concurrency = 3000000000000000000",
            "concurrency = 3000000000000000000 in jobs/j.toml",
        ),
        ("timeout = 1e20", "timeout = 1e20 in jobs/j.toml"),
        ("timeout = nan", "timeout = NaN in jobs/j.toml"),
        ("rps = 1e-300", "rps = 1e-300 in jobs/j.toml"),
        ("rpm = -1", "rpm = -1 in jobs/j.toml"),
        ("burst = 0", "burst = 0 in jobs/j.toml"),
        ("max_attempts = 0", "max_attempts = 0 in jobs/j.toml"),
        ("max_cost = -1", "max_cost = -1 in jobs/j.toml"),
        ("limit = -1", "limit = -1 in jobs/j.toml"),
        ("rps = 1\nrpm = 60", "jobs/j.toml: sets both rps and rpm"),
        ("shard = \"3/2\"", "jobs/j.toml: "),
        ("concurrency = \"many\"", "jobs/j.toml: "),
        (
            "base_url = \"ftp://x\"",
            "base_url = \"ftp://x\" in jobs/j.toml",
        ),
    ];
    for (text, expected) in cases {
        let e = job_with(text).expect_err(text);
        assert!(e.contains(expected), "{text}: {e}");
    }
    let c = job_with("concurrency = 65536\nrps = 0.5\nburst = 3\nmax_attempts = 100").unwrap();
    assert_eq!(c.concurrency, 65_536);
    assert_eq!(c.max_attempts, 100);
    let rate = c.rate.unwrap();
    assert_eq!((rate.per_second, rate.burst.get()), (0.5, 3));
}

/// Every flag that takes a value, for the property test.
const VALUE_FLAGS: [&str; 20] = [
    "--input-format",
    "-o",
    "-m",
    "--endpoint",
    "--template",
    "--system",
    "--id-field",
    "-p",
    "-j",
    "--rps",
    "--rpm",
    "--burst",
    "--max-attempts",
    "--timeout",
    "--max-cost",
    "--limit",
    "--shard",
    "--base-url",
    "--api-key-env",
    "--app-title",
];

/// Every job-file key, for the property test.
const JOB_KEYS: [&str; 29] = [
    "input",
    "input_format",
    "output",
    "models",
    "endpoint",
    "template",
    "system",
    "id_field",
    "concurrency",
    "rps",
    "rpm",
    "burst",
    "max_attempts",
    "timeout",
    "stream",
    "max_cost",
    "limit",
    "shard",
    "retry_errors",
    "keep_fields",
    "hidden",
    "chunk_tokens",
    "chunk_overlap",
    "reduce_template",
    "reduce_template_file",
    "base_url",
    "api_key_env",
    "app_url",
    "app_title",
];

/// Keys whose values the resolve step range-checks.
const NUMERIC_KEYS: [&str; 7] = [
    "concurrency",
    "rps",
    "rpm",
    "burst",
    "max_attempts",
    "timeout",
    "max_cost",
];

/// A value as a user might type it: anything, or a number of any size.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-+]?[0-9]{0,25}(\\.[0-9]{0,5})?([eE][-+]?[0-9]{1,3})?",
        any::<f64>().prop_map(|x| x.to_string()),
        any::<i64>().prop_map(|x| x.to_string()),
        any::<u64>().prop_map(|x| x.to_string()),
        "[0-9]{1,20}/[0-9]{1,20}",
        Just("nan".to_owned()),
        Just("-inf".to_owned()),
    ]
}

/// A valid config must be one run can use without overflow or panic.
fn usable(c: &RunConfig) {
    assert!((1..=given::MAX_CONCURRENCY as usize).contains(&c.concurrency));
    assert!(c.concurrency.checked_mul(4).is_some());
    assert!((1..=given::MAX_ATTEMPTS as u32).contains(&c.max_attempts));
    assert!(c.timeout >= Duration::from_millis(1) && c.timeout <= Duration::from_secs(86_400));
    if let Some(r) = c.rate {
        assert!(r.per_second.is_finite() && r.per_second > 0.0);
        assert!(Duration::try_from_secs_f64(1.0 / r.per_second).is_ok());
        assert!(u64::from(r.burst.get()) <= given::MAX_BURST);
    }
    if let Some(m) = c.max_cost {
        assert!(m.is_finite() && m >= 0.0);
    }
}

proptest! {
    #[test]
    fn any_flag_value_is_a_clear_error_or_a_usable_config(
        i in 0..VALUE_FLAGS.len(),
        value in hostile(),
    ) {
        let flag = VALUE_FLAGS[i];
        let mut argv: Vec<String> =
            ["orbatch", "run", "-i", "q.jsonl", "--mock"].map(str::to_owned).to_vec();
        if flag.starts_with("--") {
            argv.push(format!("{flag}={value}"));
        } else {
            argv.extend([flag.to_owned(), value.clone()]);
        }
        // clap's own errors name the flag (`invalid value 'x' for '--rps <X>'`).
        if let Ok(cli) = Cli::try_parse_from(&argv) {
            let crate::cli::Command::Run(a) = cli.command else { unreachable!() };
            match RunConfig::resolve(&a, &no_env) {
                Ok(c) => usable(&c),
                Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
            }
        }
    }

    #[test]
    fn any_job_value_is_a_clear_error_or_a_usable_config(
        i in 0..JOB_KEYS.len(),
        value in hostile(),
        quoted in any::<bool>(),
    ) {
        let key = JOB_KEYS[i];
        let text = if quoted {
            format!("{key} = {}\n", toml::Value::String(value.clone()))
        } else {
            format!("{key} = {value}\n")
        };
        match Job::parse(Path::new("jobs/p.toml"), &text) {
            Err(e) => prop_assert!(e.to_string().starts_with("jobs/p.toml: "), "{e}"),
            Ok(job) => {
                let mut a = args("q.jsonl");
                a.api.mock = true;
                match RunConfig::from_job(&a, &job, &no_env, Key::Required) {
                    Ok(c) => usable(&c),
                    Err(e) => {
                        let e = e.to_string();
                        prop_assert!(!e.trim().is_empty());
                        if NUMERIC_KEYS.contains(&key) {
                            prop_assert!(e.contains(&format!("{key} = ")), "{e}");
                            prop_assert!(e.contains(" in jobs/p.toml: "), "{e}");
                        }
                    }
                }
            }
        }
    }
}

/// The key a target carries, for tests only (`ApiKey` shows nothing).
fn key_of(c: &RunConfig) -> Option<String> {
    match &c.target {
        Target::Remote { key, .. } => key.as_ref().map(|k| k.expose_for_test().to_owned()),
        Target::Mock => None,
    }
}

#[test]
fn a_key_file_replaces_the_environment_and_names_itself_when_bad() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.key");
    std::fs::write(&file, "  sk-or-v1-fromfile \n").unwrap();
    let mut a = args("q.jsonl");
    a.api.api_key_file = Some(file.clone());
    let c = RunConfig::resolve(&a, &key_env).unwrap();
    assert_eq!(
        key_of(&c).as_deref(),
        Some("sk-or-v1-fromfile"),
        "trimmed, env ignored"
    );
    assert_eq!(c.key_source, format!("the key file {}", file.display()));

    std::fs::write(&file, "\n").unwrap();
    let e = RunConfig::resolve(&a, &key_env).unwrap_err().to_string();
    assert!(
        e.contains("job.key") && e.contains("is empty") && e.contains("--api-key-file"),
        "{e}"
    );
    a.api.api_key_file = Some(dir.path().join("missing.key"));
    let e = RunConfig::resolve(&a, &key_env).unwrap_err().to_string();
    assert!(
        e.contains("missing.key") && e.contains("cannot read"),
        "{e}"
    );

    // The job file's key, relative to its folder.
    std::fs::write(&file, "sk-or-v1-job\n").unwrap();
    let job_path = dir.path().join("j.toml");
    let job = Job::parse(&job_path, "api_key_file = \"job.key\"\n").unwrap();
    let c = RunConfig::from_job(&args("q.jsonl"), &job, &no_env, Key::Required).unwrap();
    assert_eq!(key_of(&c).as_deref(), Some("sk-or-v1-job"));
    // `--api-key-env` on the command line wins over the job file's key file.
    let mut a = args("q.jsonl");
    a.api.api_key_env = Some("OPENROUTER_API_KEY".into());
    let c = RunConfig::from_job(&a, &job, &key_env, Key::Required).unwrap();
    assert_eq!(key_of(&c).as_deref(), Some("sk-test"));
    assert_eq!(c.key_source, "$OPENROUTER_API_KEY");
}
