//! Per-prompt fault directives: `[[mock:SPEC]]` inside a prompt makes the mock misbehave in a
//! deterministic way for that (model, prompt), which is what integration tests rely on.
//!
//! Grammar: `[[mock:FAULT[*N][ retry-after=S]]]`. Several directives apply in order: with
//! `[[mock:429*1]][[mock:500*1]]` attempt 1 is a 429, attempt 2 a 500, attempt 3 succeeds. A
//! directive without `*N` applies to every remaining attempt. Unknown faults are ignored.

use super::faults::Fault;

/// One parsed `[[mock:…]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub fault: Fault,
    /// Number of attempts it covers; `None` = all remaining attempts.
    pub times: Option<u64>,
    pub retry_after: Option<u64>,
}

/// Every valid directive in `prompt`, in order of appearance.
pub fn parse_all(prompt: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("[[mock:") {
        let after = &rest[start + "[[mock:".len()..];
        let Some(end) = after.find("]]") else { break };
        if let Some(d) = parse_one(&after[..end]) {
            out.push(d);
        }
        rest = &after[end + 2..];
    }
    out
}

fn parse_one(spec: &str) -> Option<Directive> {
    let mut words = spec.split_whitespace();
    let head = words.next()?;
    let (fault_name, times) = match head.split_once('*') {
        Some((name, n)) => (name, Some(n.parse::<u64>().ok()?)),
        None => (head, None),
    };
    let fault = Fault::from_name(fault_name)?;
    let mut retry_after = None;
    for word in words {
        if let Some(v) = word.strip_prefix("retry-after=") {
            retry_after = Some(v.parse::<u64>().ok()?);
        }
    }
    Some(Directive {
        fault,
        times,
        retry_after,
    })
}

/// The directive that governs 1-based `attempt`, if any.
pub fn select(directives: &[Directive], attempt: u64) -> Option<&Directive> {
    let mut covered = 0u64;
    for d in directives {
        match d.times {
            None => return Some(d),
            Some(n) => {
                covered = covered.saturating_add(n);
                if attempt <= covered {
                    return Some(d);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sequence_and_selects_by_attempt() {
        let ds = parse_all("hi [[mock:429*1 retry-after=1]] and [[mock:500*1]] [[mock:bogus]]");
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].fault, Fault::Status(429));
        assert_eq!(ds[0].retry_after, Some(1));
        assert_eq!(
            select(&ds, 1).map(|d| d.fault.clone()),
            Some(Fault::Status(429))
        );
        assert_eq!(
            select(&ds, 2).map(|d| d.fault.clone()),
            Some(Fault::Status(500))
        );
        assert_eq!(select(&ds, 3), None);
    }

    #[test]
    fn unbounded_directive_applies_forever() {
        let ds = parse_all("[[mock:drop]]");
        assert_eq!(select(&ds, 99).map(|d| d.fault.clone()), Some(Fault::Drop));
        assert!(parse_all("[[mock:429*x]] [[mock:").is_empty());
    }
}
