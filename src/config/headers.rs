//! `-H/--header 'Name: value'` (repeatable) and the job file's `[headers]` table: extra
//! request headers for proxies and gateways (LiteLLM keys, Helicone, Portkey, test servers'
//! fault headers). `Authorization` is refused (the key comes from the environment only), and
//! every value is marked sensitive so that it never shows in logs or `Debug`.

use reqwest::header::{HeaderName, HeaderValue};

use super::Job;
use crate::exit::UsageError;

/// Headers orbatch sets itself, which a user header may not replace.
const RESERVED: [&str; 3] = ["authorization", "content-type", "content-length"];

/// The extra headers: the job file's first, then the flags' (a flag wins for the same name).
pub fn parse(flags: &[String], job: &Job) -> Result<Vec<(HeaderName, HeaderValue)>, UsageError> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut put = |h: (HeaderName, HeaderValue)| {
        out.retain(|(n, _)| *n != h.0);
        out.push(h);
    };
    if let Some(table) = &job.file.headers {
        for (name, value) in table {
            let from = format!("headers.{name} in {}", job.path.display());
            put(one(name, value, &from)?);
        }
    }
    for flag in flags {
        let (name, value) = flag.split_once(':').ok_or_else(|| {
            UsageError::new(format!(
                "--header {flag:?}: expected 'Name: value', e.g. -H 'X-Api-Key: abc'"
            ))
        })?;
        put(one(name, value, "--header")?);
    }
    Ok(out)
}

fn one(name: &str, value: &str, from: &str) -> Result<(HeaderName, HeaderValue), UsageError> {
    let name = name.trim();
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| UsageError::new(format!("{from}: {name:?} is not a valid header name")))?;
    if RESERVED.contains(&parsed.as_str()) {
        return Err(UsageError::new(format!(
            "{from}: orbatch sets {name} itself (the API key comes from the environment: \
             --api-key-env)"
        )));
    }
    let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
        // The value is not quoted: it may be a secret.
        UsageError::new(format!(
            "{from}: the value of {name} cannot be sent as a header (control characters?)"
        ))
    })?;
    value.set_sensitive(true);
    Ok((parsed, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_and_the_job_file_give_sensitive_headers() {
        let job = Job::parse(
            std::path::Path::new("j.toml"),
            "[headers]\nX-Team = \"a\"\nX-Trace = \"job\"\n",
        )
        .unwrap();
        let h = parse(&flags(&["X-Trace: flag", "x-api-key:  s3cret "]), &job).unwrap();
        let shown: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            shown,
            [
                ("x-team".to_owned(), "a".to_owned()),
                ("x-trace".to_owned(), "flag".to_owned()),
                ("x-api-key".to_owned(), "s3cret".to_owned())
            ]
        );
        assert!(h.iter().all(|(_, v)| v.is_sensitive()));
        assert!(!format!("{h:?}").contains("s3cret"));
    }

    #[test]
    fn authorization_and_bad_headers_are_refused_without_showing_the_value() {
        let none = Job::default();
        for (flag, says) in [
            (
                "Authorization: Bearer sk-secret",
                "orbatch sets Authorization itself",
            ),
            ("authorization:x", "orbatch sets authorization itself"),
            ("no colon", "expected 'Name: value'"),
            ("Bad Name: x", "is not a valid header name"),
            ("X-Bad: a\u{7}secret", "cannot be sent as a header"),
        ] {
            let e = parse(&flags(&[flag]), &none).unwrap_err().to_string();
            assert!(e.contains(says), "{flag}: {e}");
            assert!(!e.contains("secret") || says.contains("secret"), "{e}");
        }
        let job = Job::parse(
            std::path::Path::new("j.toml"),
            "[headers]\nAuthorization = \"Bearer x\"\n",
        )
        .unwrap();
        let e = parse(&[], &job).unwrap_err().to_string();
        assert!(e.starts_with("headers.Authorization in j.toml:"), "{e}");
    }
}
