//! Table-driven tests of every scorer: (spec, answer, expected) → passed, extracted.

use super::*;

/// `(answer, expected, passed, extracted)` rows for one spec.
fn table(spec: &str, rows: &[(&str, &str, bool, Option<&str>)]) {
    let scorer = Scorer::parse(spec).unwrap_or_else(|e| panic!("{e}"));
    for (answer, expected, passed, extracted) in rows {
        let s = scorer.score(answer, expected);
        assert_eq!(
            (s.passed, s.extracted.as_deref()),
            (*passed, *extracted),
            "{spec}: answer {answer:?}, expected {expected:?}"
        );
        assert_eq!(s.score, if *passed { 1.0 } else { 0.0 });
    }
}

#[test]
fn exact() {
    table(
        "exact",
        &[
            ("Paris", "Paris", true, Some("Paris")),
            (" Paris\n", "Paris", true, Some("Paris")),
            ("paris", "Paris", false, Some("paris")),
            ("Paris.", "Paris", false, Some("Paris.")),
            ("", "Paris", false, Some("")),
        ],
    );
    table(
        "exact:ignore_case,strip_punctuation,collapse_whitespace",
        &[
            (
                "  new   YORK city.",
                "New York City",
                true,
                Some("new york city"),
            ),
            ("paris!", "Paris", true, Some("paris")),
        ],
    );
    table(
        "exact:trim=false",
        &[(" Paris", "Paris", false, Some(" Paris"))],
    );
    table(
        "exact:i,punct",
        &[("PARIS?!", "paris", true, Some("paris"))],
    );
}

#[test]
fn contains() {
    table(
        "contains:ignore_case",
        &[
            ("The capital is PARIS.", "paris", true, Some("paris")),
            ("The capital is Lyon.", "paris", false, None),
            ("anything", "", false, None),
        ],
    );
}

#[test]
fn regex() {
    table(
        r"regex:(?i)answer:\s*(\w+)",
        &[
            ("Reasoning… Answer: Paris", "Paris", true, Some("Paris")),
            ("answer: lyon", "Paris", false, Some("lyon")),
            ("no conclusion", "Paris", false, None),
        ],
    );
    // A named group wins; no group: the whole match; a comma in the pattern is kept.
    table(
        r"regex:(?P<x>\d+),(?P<answer>\d+)",
        &[("1,2", "2", true, Some("2"))],
    );
    table(r"regex:\d{2,3}", &[("year 123", "123", true, Some("123"))]);
}

#[test]
fn number() {
    table(
        "number",
        &[
            (
                "The total is 1,234.5 dollars",
                "1234.5",
                true,
                Some("1,234.5"),
            ),
            ("It costs $12.", "12", true, Some("$12")),
            ("Growth: 12%", "12%", true, Some("12%")),
            ("-3e2", "-300", true, Some("-3e2")),
            ("\u{2212}4 degrees", "-4", true, Some("\u{2212}4")),
            ("about .5", "0.5", true, Some(".5")),
            // The last number by default: reasoning first, conclusion last.
            ("2 apples and 3 pears make 5", "5", true, Some("5")),
            // Hyphens are not signs; digits in words are not numbers.
            ("pages 2-3", "3", true, Some("3")),
            ("COVID-19 cases: 7", "7", true, Some("7")),
            ("GPT4 says 10", "10", true, Some("10")),
            ("12.0", "12", true, Some("12.0")),
            ("12.01", "12", false, Some("12.01")),
            ("no number", "12", false, None),
            ("12", "twelve", false, Some("12")),
        ],
    );
    table(
        "number:pick=first",
        &[("5, then 2 and 3", "5", true, Some("5"))],
    );
    table(
        "number:rel=0.01",
        &[
            ("99.5", "100", true, Some("99.5")),
            ("98", "100", false, Some("98")),
        ],
    );
    table(
        "number:abs=0.5",
        &[
            ("3.4", "3", true, Some("3.4")),
            ("3.6", "3", false, Some("3.6")),
        ],
    );
}

#[test]
fn choice() {
    table(
        "choice",
        &[
            ("The answer is (B).", "B", true, Some("B")),
            ("**C**", "C", true, Some("C")),
            ("B) Paris", "B", true, Some("B) Paris")),
            ("B) Paris", "Paris", true, Some("B) Paris")),
            ("B) Paris", "Lyon", false, Some("B) Paris")),
            ("Answer: d", "D", true, Some("D")),
            ("b", "(B)", true, Some("B")),
            ("A looks right, but the answer is C", "C", true, Some("C")),
            ("I pick B because it fits", "B", true, Some("B")),
            // An article and a letter inside a word are not choices.
            ("Based on a reading, none", "A", false, None),
            // Two lone letters: no conclusion.
            ("A or B", "A", false, None),
            ("(A) is wrong.\nFinal answer: (D)", "D", true, Some("D")),
        ],
    );
    table(
        "choice:letters=ABCD",
        &[
            ("E) Other", "E", false, None),
            ("The answer is e", "E", false, None),
        ],
    );
}

#[test]
fn json() {
    table(
        "json:/answer",
        &[
            (r#"{"answer": 42}"#, "42", true, Some("42")),
            (r#"{"answer": 42.0}"#, "42", true, Some("42.0")),
            (r#"{"answer": "Paris"}"#, "Paris", true, Some("Paris")),
            (r#"{"answer": "Paris"}"#, "\"Paris\"", true, Some("Paris")),
            (
                "```json\n{\"answer\": true}\n```",
                "true",
                true,
                Some("true"),
            ),
            (r#"{"answer": [1, 2]}"#, "[1,2.0]", true, Some("[1,2]")),
            (r#"{"other": 1}"#, "1", false, None),
            ("not json", "1", false, None),
        ],
    );
    table(
        "json",
        &[(r#"{"a":1}"#, r#"{"a":1}"#, true, Some(r#"{"a":1}"#))],
    );
    table(
        "json:/items/1/name",
        &[(
            r#"{"items":[{"name":"x"},{"name":"y"}]}"#,
            "y",
            true,
            Some("y"),
        )],
    );
}

#[test]
fn bad_specs_say_what_would_do() {
    for (spec, says) in [
        ("fuzzy", "unknown scorer \"fuzzy\""),
        ("regex", "give the pattern"),
        ("regex:(unclosed", "does not compile"),
        ("number:rel=-1", "tolerance ≥ 0"),
        ("number:rel=nan", "tolerance ≥ 0"),
        ("number:pick=middle", "pick=first or pick=last"),
        ("number:tol=1", "unknown option \"tol\""),
        ("exact:fold", "unknown option \"fold\""),
        ("exact:trim=maybe", "trim=true or trim=false"),
        ("choice:letters=", "give the option letters"),
        ("choice:letters=A1", "give the option letters"),
        ("json:answer", "not a JSON pointer"),
    ] {
        let e = Scorer::parse(spec).unwrap_err();
        assert!(e.to_string().contains(says), "{spec}: {e}");
        assert!(
            e.to_string().starts_with(&format!("--scorer {spec:?}")),
            "{e}"
        );
    }
}

mod props {
    use proptest::prelude::*;

    use super::*;

    static SCORERS: std::sync::LazyLock<Vec<Scorer>> = std::sync::LazyLock::new(|| {
        [
            "exact",
            "contains:i",
            r"regex:(\w+)",
            "number:rel=0.1",
            "choice",
            "json:/a",
        ]
        .iter()
        .map(|s| Scorer::parse(s).unwrap())
        .collect()
    });

    proptest! {
        /// Every scorer takes any text without panicking, and scores it 0 or 1.
        #[test]
        fn any_text_scores_without_panic(answer in "\\PC{0,80}", expected in "\\PC{0,20}") {
            for scorer in SCORERS.iter() {
                let s = scorer.score(&answer, &expected);
                prop_assert!(s.score == 0.0 || s.score == 1.0);
            }
        }

        /// A number written back as the answer is read as itself.
        #[test]
        fn numbers_round_trip(x in -1e12f64..1e12) {
            let text = format!("the result is {x}");
            let s = Scorer::parse("number").unwrap().score(&text, &x.to_string());
            prop_assert!(s.passed, "{text}");
        }
    }
}

mod job {
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::{Map, Value};

    use crate::endpoint::Endpoint;
    use crate::job::{InputConfig, InputFormat, InputSource};
    use crate::output::record::{ErrorKind, Record};
    use crate::report::tests::{failed, ok};
    use crate::score::Scorer;
    use crate::score::job::{ModelTally, ScoreJob, ScoreLine, score};

    fn input(path: &Path) -> InputConfig {
        InputConfig {
            source: InputSource::Path(path.to_owned()),
            format: InputFormat::Csv,
            models: vec![],
            endpoint: Endpoint::Chat,
            template: None,
            system: None,
            id_field: None,
            params: Map::new(),
            keep_fields: false,
            schema: None,
            limit: None,
            shard: None,
            hidden: false,
            context: None,
            chunk: None,
            reduce_from: None,
        }
    }

    fn answer(id: &str, model: &str, text: &str) -> Record {
        let mut r = ok(id, model, 0.001, 10);
        r.output = Some(text.to_owned());
        r
    }

    fn write_records(path: &Path, records: &[Record]) {
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(path, text).unwrap();
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn records_are_joined_to_rows_by_id_and_the_last_record_counts() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("q.csv");
        std::fs::write(
            &csv,
            "id,prompt,answer,kind\n\
             q1,Capital of France?,Paris,\n\
             q2,2+2?,4,number\n\
             q3,Pick one,B,choice\n\
             q4,No key,,\n",
        )
        .unwrap();
        let out = dir.path().join("q.out.jsonl");
        write_records(
            &out,
            &[
                answer("q1", "m/a", "Paris"),
                answer("q1", "m/b", "Lyon"),
                answer("q2", "m/a", "It is 4."),
                // m/b failed q2 first, then a rerun answered it: the last record counts.
                failed("q2", "m/b", ErrorKind::Transient, 2),
                answer("q2", "m/b", "5"),
                answer("q3", "m/a", "The answer is (B)."),
                failed("q3", "m/b", ErrorKind::Timeout, 1),
                answer("q4", "m/a", "whatever"),
                answer("zz", "m/a", "not a row"),
            ],
        );
        let job = ScoreJob {
            judge: Default::default(),
            outputs: vec![out.clone()],
            input: input(&csv),
            expected: "answer".into(),
            scorer: Arc::new(Scorer::parse("exact").unwrap()),
            scorer_field: Some("kind".into()),
        };
        let summary = score(&job).unwrap();
        let dest = dir.path().join("q.out.scores.jsonl");
        assert_eq!(summary.written, vec![dest.clone()]);
        let got = lines(&dest);
        let want = [
            ScoreLine {
                id: "q1".into(),
                model: "m/a".into(),
                scorer: "exact",
                score: 1.0,
                passed: true,
                extracted: Some("Paris".into()),
                expected: "Paris".into(),
            },
            ScoreLine {
                id: "q1".into(),
                model: "m/b".into(),
                scorer: "exact",
                score: 0.0,
                passed: false,
                extracted: Some("Lyon".into()),
                expected: "Paris".into(),
            },
            ScoreLine {
                id: "q2".into(),
                model: "m/a".into(),
                scorer: "number",
                score: 1.0,
                passed: true,
                extracted: Some("4".into()),
                expected: "4".into(),
            },
            ScoreLine {
                id: "q2".into(),
                model: "m/b".into(),
                scorer: "number",
                score: 0.0,
                passed: false,
                extracted: Some("5".into()),
                expected: "4".into(),
            },
            ScoreLine {
                id: "q3".into(),
                model: "m/a".into(),
                scorer: "choice",
                score: 1.0,
                passed: true,
                extracted: Some("B".into()),
                expected: "B".into(),
            },
        ];
        let want: Vec<Value> = want
            .iter()
            .map(|l| serde_json::to_value(l).unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            summary.per_model["m/a"],
            ModelTally {
                scored: 3,
                passed: 3,
                unanswered: 0,
                no_expected: 1,
                not_in_input: 1,
                unjudged: 0,
            }
        );
        assert_eq!(
            summary.per_model["m/b"],
            ModelTally {
                scored: 2,
                passed: 0,
                unanswered: 1,
                no_expected: 0,
                not_in_input: 0,
                unjudged: 0,
            }
        );
        assert_eq!(summary.per_model["m/a"].accuracy(), Some(1.0));
        assert!(
            summary
                .warnings
                .iter()
                .any(|w| w.contains("1 records have an id that is not a row")),
            "{:?}",
            summary.warnings
        );

        // Rerun with another scorer: the file is replaced, not appended to.
        let job = ScoreJob {
            judge: Default::default(),
            scorer: Arc::new(Scorer::parse("contains:i").unwrap()),
            scorer_field: None,
            ..job
        };
        score(&job).unwrap();
        let got = lines(&dest);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|l| l["scorer"] == "contains"));
    }

    #[test]
    fn a_bad_scorer_in_a_row_names_the_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("q.csv");
        std::fs::write(&csv, "id,prompt,answer,kind\nq1,x,1,fuzzy\nq2,y,2,exact\n").unwrap();
        let out = dir.path().join("q.out.jsonl");
        write_records(&out, &[answer("q1", "m", "1")]);
        let job = ScoreJob {
            judge: Default::default(),
            outputs: vec![out],
            input: input(&csv),
            expected: "answer".into(),
            scorer: Arc::new(Scorer::parse("exact").unwrap()),
            scorer_field: Some("kind".into()),
        };
        let e = score(&job).unwrap_err().to_string();
        assert!(
            e.ends_with("q.csv:2: scorer field \"kind\": unknown scorer \"fuzzy\"; use exact, contains, regex, number, choice, json or judge"),
            "{e}"
        );
        assert!(!dir.path().join("q.out.scores.jsonl").exists());
        // Many rows with the same bad scorer: one problem with a line range, as for input.
        let text: String = std::iter::once("id,prompt,answer,kind\n".to_owned())
            .chain((0..30).map(|i| format!("r{i},x,1,fuzzy\n")))
            .collect();
        std::fs::write(&csv, text).unwrap();
        let e = score(&job).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.contains(":2\u{2013}31: scorer field \"kind\"") && e.ends_with("(30 lines)"),
            "{e}"
        );
    }
}
