//! The command a summary tells the user to rerun: the command line as typed, without the
//! flags that would make the rerun pay again for what is answered (`--fresh` truncates the
//! output, so every answered row would be sent again). Every other flag stays: it defines
//! which requests are sent and what they are, so that the rerun retries only the failures.

use clap::CommandFactory;

use crate::cli::Cli;

/// Flags of `run` that the rerun hint drops.
const DROPPED: &[&str] = &["fresh"];

/// The command line as typed, without the program name. `args_os`: `args` panics on an
/// argument that is not UTF-8.
pub fn typed() -> Vec<String> {
    std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// `orbatch ARGS…` for `args` (without the program name), minus the dropped flags.
pub fn hint(args: &[String]) -> String {
    let kept = without_dropped(args);
    crate::text::shell_line(std::iter::once("orbatch".to_owned()).chain(kept))
}

/// `args` without the dropped flags, telling flags from values as clap does: a flag that
/// takes a value keeps the next argument (`--template --fresh` is a template), `--` ends the
/// flags.
fn without_dropped(args: &[String]) -> Vec<String> {
    let cmd = Cli::command();
    // The value-taking flags of the command typed (`run`, `costs`, …).
    let run = args.first().and_then(|sub| cmd.find_subcommand(sub));
    let takes_value = |long: Option<&str>, short: Option<char>| {
        run.into_iter().flat_map(|r| r.get_arguments()).any(|a| {
            a.get_action().takes_values()
                && (long.is_some_and(|l| a.get_long() == Some(l))
                    || short.is_some_and(|s| a.get_short() == Some(s)))
        })
    };
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    let mut flags_over = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if flags_over {
            out.push(a.clone());
            continue;
        }
        if a == "--" {
            flags_over = true;
            out.push(a.clone());
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if DROPPED.contains(&name) {
                continue;
            }
            out.push(a.clone());
            if !inline && takes_value(Some(name), None) && i < args.len() {
                out.push(args[i].clone());
                i += 1;
            }
            continue;
        }
        // `-j 4` takes the next argument; `-j4` and `-qv` do not.
        if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            out.push(a.clone());
            let mut chars = shorts.chars();
            if let (Some(c), None) = (chars.next(), chars.next())
                && takes_value(None, Some(c))
                && i < args.len()
            {
                out.push(args[i].clone());
                i += 1;
            }
            continue;
        }
        out.push(a.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn fresh_is_dropped_and_nothing_else() {
        assert_eq!(
            hint(&strings(&[
                "run",
                "jobs/demo.toml",
                "--mock",
                "--fresh",
                "-j",
                "4"
            ])),
            "orbatch run jobs/demo.toml --mock -j 4"
        );
        // A value that looks like the flag is a value.
        assert_eq!(
            hint(&strings(&[
                "run",
                "--template",
                "--fresh",
                "--fresh",
                "-i",
                "--fresh"
            ])),
            "orbatch run --template --fresh -i --fresh"
        );
        assert_eq!(
            hint(&strings(&["run", "--fresh", "--", "--fresh"])),
            "orbatch run -- --fresh"
        );
    }

    /// Every flag of `run`, with a value where it takes one, survives the hint, in order;
    /// only `--fresh` goes.
    #[test]
    fn every_run_flag_but_fresh_is_kept_with_its_value() {
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let mut args = strings(&["run", "job.toml"]);
        let mut want = args.clone();
        for a in run.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            let flag = format!("--{long}");
            let with_value = a.get_action().takes_values();
            args.push("--fresh".into());
            args.push(flag.clone());
            if long != "fresh" {
                want.push(flag);
            }
            if with_value {
                // A value that is itself a flag name must stay a value.
                args.push("--fresh".into());
                want.push("--fresh".into());
            }
        }
        assert_eq!(without_dropped(&args), want);
        // Short flags too: `-m --fresh` keeps its value; `-q` takes none.
        assert_eq!(
            without_dropped(&strings(&[
                "run", "-m", "--fresh", "-q", "--fresh", "-o", "x"
            ])),
            strings(&["run", "-m", "--fresh", "-q", "-o", "x"])
        );
    }
}
