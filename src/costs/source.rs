//! What `orbatch costs` needs from an output file: every generation id of every attempt
//! (failed ones cost money too), deduplicated in file order, and the inline `usage.cost`
//! total to compare the `/generation` total with. The output is only read, never repaired:
//! a run may still be appending to it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use crate::exit::UsageError;
use crate::output::record::byok_part;

/// The ids and inline costs of one output file.
#[derive(Debug, Default)]
pub struct OutputIds {
    /// Distinct generation ids, in the order they first appear.
    pub ids: Vec<String>,
    /// Every record's inline spend (`usage.cost`, plus the provider's charge for BYOK), in
    /// file order.
    pub inline_costs: Vec<f64>,
    pub records: u64,
    /// Messages for the user (unreadable lines).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    generation_ids: Vec<String>,
    #[serde(default)]
    generation_id: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    is_byok: Option<bool>,
    #[serde(default)]
    upstream_cost: Option<f64>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    cost: Option<f64>,
}

/// Read `out`. A missing or unreadable file is a usage error (exit 2).
pub fn read(out: &Path) -> Result<OutputIds, UsageError> {
    let shown = out.display();
    let file = File::open(out).map_err(|e| {
        UsageError::new(format!(
            "{shown}: cannot read the output file: {e} (pass the OUT.jsonl that `orbatch run` wrote)"
        ))
    })?;
    let mut reader = BufReader::new(file);
    let mut result = OutputIds::default();
    let mut seen = HashSet::new();
    let mut bad = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| UsageError::new(format!("{shown}: cannot read the output file: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(text) {
            Ok(r) => result.note(r, &mut seen),
            // A run still writing (or killed while writing) its last line.
            Err(_) if buf.last() != Some(&b'\n') => result.warnings.push(format!(
                "{shown}:{line_no}: the last line is incomplete (a run still writing?); ignored"
            )),
            Err(_) => bad.push(line_no),
        }
    }
    if let Some(&first) = bad.first() {
        result.warnings.push(format!(
            "{shown}:{first}: {} line(s) are not orbatch records; ignored",
            bad.len()
        ));
    }
    Ok(result)
}

impl OutputIds {
    fn note(&mut self, r: Record, seen: &mut HashSet<String>) {
        self.records += 1;
        // As `Record::inline_cost` counts it: OpenRouter's charge, plus the provider's for BYOK.
        if let Some(cost) = r.usage.and_then(|u| u.cost) {
            self.inline_costs
                .push(cost + byok_part(r.is_byok, r.upstream_cost));
        }
        for id in r.generation_ids.into_iter().chain(r.generation_id) {
            if !id.is_empty() && seen.insert(id.clone()) {
                self.ids.push(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_every_attempt_deduplicated_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.jsonl");
        let lines = [
            r#"{"id":"a","generation_id":"g2","generation_ids":["g1","g2"],"usage":{"cost":0.5}}"#,
            r#"{"id":"b","generation_id":null,"generation_ids":[],"usage":null}"#,
            "garbage",
            r#"{"id":"a","generation_id":"g3","generation_ids":["g2","g3"],"usage":{"cost":0.25}}"#,
            r#"{"id":"c","generation_ids":["g4"#,
        ];
        std::fs::write(&out, lines.join("\n")).unwrap();
        let got = read(&out).unwrap();
        assert_eq!(got.ids, ["g1", "g2", "g3"]);
        assert_eq!(got.inline_costs, [0.5, 0.25]);
        assert_eq!(got.records, 3);
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(read(&dir.path().join("missing.jsonl")).is_err());
    }
}
