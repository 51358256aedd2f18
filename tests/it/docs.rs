//! Documents as input (a folder, a glob, a file), the context check, and `export --to-dir`.

use std::path::Path;

use orbatch::docs::fixture::pdf_with;
use orbatch::mock::MockConfig;

use crate::support::{Cmd, Env, record, records};

const TEMPLATE: &str = "Summarise: {{ text }}";
const MODEL: &str = "openai/gpt-4o-mini";

/// A folder of every kind, plus what must be skipped.
fn docs(env: &Env) -> std::path::PathBuf {
    let root = env.path("docs");
    let files: [(&str, &[u8]); 8] = [
        ("b.md", b"# B\n\nThe bee text ends with BEE-END.\n"),
        ("a.txt", b"Plain text ending with ALPHA-END."),
        (
            "sub/c.html",
            b"<html><body><h1>C</h1><p>An HTML page ending with CEE-END.</p></body></html>",
        ),
        (".hidden.md", b"hidden HIDDEN-END"),
        ("skipped.md", b"ignored IGNORED-END"),
        (".gitignore", b"skipped.md\n"),
        ("pic.png", b"\x89PNG"),
        ("notes.docx", b"PK"),
    ];
    for (name, body) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(
        root.join("d.pdf"),
        pdf_with(&["A PDF page.", "It ends with PDF-END."]),
    )
    .unwrap();
    root
}

fn ids(out: &Path) -> Vec<String> {
    let mut ids: Vec<String> = records(out)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_is_a_row_per_file_hidden_and_ignored_skipped() {
    let env = Env::new().await;
    let root = docs(&env);
    let out = env.path("out.jsonl");
    let done = env
        .run()
        .input(&root)
        .args(&["-m", MODEL, "--template", TEMPLATE, "-o"])
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(0);
    assert_eq!(ids(&out), ["a.txt", "b.md", "d.pdf", "sub/c.html"]);
    let rs = records(&out);
    // Each text reached the model (the mock echoes the prompt's last words).
    for (id, end) in [
        ("a.txt", "ALPHA-END"),
        ("b.md", "BEE-END"),
        ("d.pdf", "PDF-END"),
        ("sub/c.html", "CEE-END"),
    ] {
        let output = record(&rs, id)["output"].as_str().unwrap().to_owned();
        assert!(output.contains(end), "{id}: {output}");
    }
    assert!(
        done.stderr
            .contains("skipped 2 files orbatch does not read (1 .docx, 1 .png)"),
        "{}",
        done.stderr
    );
    // A rerun sends nothing; --hidden reads the hidden and ignored files too.
    let again = env
        .run()
        .input(&root)
        .args(&["-m", MODEL, "--template", TEMPLATE, "-o"])
        .arg(out.to_str().unwrap())
        .arg("--hidden")
        .output()
        .await;
    again.code(0);
    assert_eq!(
        ids(&out),
        [
            ".hidden.md",
            "a.txt",
            "b.md",
            "d.pdf",
            "skipped.md",
            "sub/c.html"
        ]
    );
    assert_eq!(env.stats().requests, 6, "answered files are not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_or_a_file_selects_and_the_default_output_is_beside_the_folder() {
    let env = Env::new().await;
    let root = docs(&env);
    let glob = format!("{}/**/*.{{md,html}}", root.display());
    env.run()
        .args(&["-i", &glob, "-m", MODEL, "--template", TEMPLATE])
        .output()
        .await
        .code(0);
    assert_eq!(ids(&env.path("docs.out.jsonl")), ["b.md", "sub/c.html"]);
    // A glob naming a kind orbatch cannot read is refused, as is that file by name.
    for arg in [
        format!("{}/*.docx", root.display()),
        root.join("notes.docx").display().to_string(),
    ] {
        let done = env
            .run()
            .args(&["-i", &arg, "-m", MODEL, "--template", TEMPLATE])
            .output()
            .await;
        done.code(2);
        assert!(done.stderr.contains(".docx"), "{}", done.stderr);
    }
    // Without a template, say what to write and which fields there are.
    let done = env.run().input(&root).args(&["-m", MODEL]).output().await;
    done.code(2);
    assert!(
        done.stderr.contains("needs a template")
            && done.stderr.contains("{{ text }}")
            && done.stderr.contains("stem, ext, bytes, text"),
        "{}",
        done.stderr
    );
    // Templates that read what chunked rows or reduce rows do not have are refused up front.
    for (flags, says) in [
        (
            vec!["--template", "{{ text }}", "--chunk-tokens", "100"],
            "not {{ text }}",
        ),
        (
            vec![
                "--template",
                "{{ chunk }}",
                "--chunk-tokens",
                "100",
                "--reduce-template",
                "{{ text }}",
            ],
            "--reduce-template reads {{ text }}",
        ),
        (
            vec![
                "--template",
                "{{ chunk }}",
                "--reduce-template",
                "{{ chunks }}",
            ],
            "need --chunk-tokens",
        ),
    ] {
        let done = env
            .run()
            .input(&root)
            .args(&["-m", MODEL])
            .args(&flags)
            .output()
            .await;
        done.code(2);
        assert!(done.stderr.contains(says), "{says}: {}", done.stderr);
    }
    // A folder with nothing to read says so.
    let empty = env.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let done = env
        .run()
        .input(&empty)
        .args(&["-m", MODEL, "--template", TEMPLATE])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("no documents to read"),
        "{}",
        done.stderr
    );
    assert_eq!(env.stats().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_files_are_input_problems_naming_the_file() {
    let env = Env::new().await;
    let root = env.path("bad");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("ok.md"), "fine").unwrap();
    std::fs::write(root.join("latin1.txt"), b"caf\xe9\n").unwrap();
    std::fs::write(root.join("scan.pdf"), pdf_with(&[])).unwrap();
    std::fs::write(root.join("empty.md"), "  \n").unwrap();
    let done = env
        .run()
        .input(&root)
        .args(&["-m", MODEL, "--template", TEMPLATE])
        .output()
        .await;
    done.code(2);
    let shown = |name: &str| root.join(name).display().to_string();
    for expected in [
        format!("{}: the file has no text", shown("empty.md")),
        format!(
            "{}: invalid UTF-8 at byte 4 (line 1); save the file as UTF-8",
            shown("latin1.txt")
        ),
        format!("{}: the PDF has no text to extract", shown("scan.pdf")),
    ] {
        assert!(
            done.stderr.contains(&expected),
            "{expected}\n{}",
            done.stderr
        );
    }
    assert_eq!(env.stats().requests, 0, "nothing was sent");
}

/// The mock publishes a 300-token context: the long file does not fit and is refused by
/// `run` (nothing sent), listed by `plan`; a model with no known context is not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_longer_than_the_context_are_listed_by_plan_and_refused_by_run() {
    let env = Env::with(MockConfig {
        context_length: Some(300),
        ..MockConfig::default()
    })
    .await;
    let root = env.path("ctx");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("short.md"), "A short text.").unwrap();
    std::fs::write(root.join("long.md"), "word ".repeat(400)).unwrap();
    let args = ["-m", MODEL, "--template", TEMPLATE, "-p", "max_tokens=50"];
    let done = env.run().input(&root).args(&args).output().await;
    done.code(2);
    let long = root.join("long.md").display().to_string();
    assert!(
        done.stderr.contains(&format!(
            "{long} → {MODEL}: ~507 prompt tokens + 50 for the answer > its context of 300"
        )),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("1 request does not fit its model's context")
            && done.stderr.contains("--chunk-tokens"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("short.md"), "{}", done.stderr);
    assert_eq!(env.stats().requests, 0, "nothing was sent");
    let plan = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .input(&root)
        .args(&args)
        .output()
        .await;
    plan.code(0);
    assert!(
        plan.stdout.contains("Too long for the context")
            && plan.stdout.contains(&format!("{long} → {MODEL}")),
        "{}",
        plan.stdout
    );
    // A bound over the context fails even a short prompt; a shorter bound fits.
    let short = root.join("short.md");
    let done = env
        .run()
        .input(&short)
        .args(&["-m", MODEL, "--template", TEMPLATE, "-p", "max_tokens=400"])
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("+ 400 for the answer"),
        "{}",
        done.stderr
    );
    env.run()
        .input(&short)
        .args(&["-m", MODEL, "--template", TEMPLATE, "-p", "max_tokens=200"])
        .output()
        .await
        .code(0);
    assert_eq!(env.stats().requests, 1);
}

/// A catalogue without context lengths, or no catalogue at all: the check is skipped (and
/// said to be), and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_known_context_the_check_is_skipped_and_said_to_be() {
    for (config, said) in [
        (
            MockConfig {
                context_length: Some(0),
                ..MockConfig::default()
            },
            false,
        ),
        (
            MockConfig {
                without: vec!["models".into()],
                ..MockConfig::default()
            },
            true,
        ),
    ] {
        let env = Env::with(config).await;
        let doc = env.write("long.md", &"word ".repeat(400));
        let done = env
            .run()
            .input(&doc)
            .args(&["-m", MODEL, "--template", TEMPLATE, "-p", "max_tokens=50"])
            .output()
            .await;
        done.code(0);
        assert_eq!(
            done.stderr.contains("the context check was skipped"),
            said,
            "{}",
            done.stderr
        );
    }
}

fn export_to(out: &Path, dir: &Path) -> Cmd {
    Cmd::new(&[
        "export",
        out.to_str().unwrap(),
        "--to-dir",
        dir.to_str().unwrap(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_dir_writes_a_file_per_answer_and_rewrites_only_what_changed() {
    let env = Env::new().await;
    let root = docs(&env);
    let out = env.path("out.jsonl");
    env.run()
        .input(&root)
        .args(&[
            "-m",
            MODEL,
            "-m",
            "m/b:nitro",
            "--template",
            TEMPLATE,
            "-q",
            "-o",
        ])
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    let dir = env.path("summaries");
    // A dry run lists and writes nothing.
    let dry = export_to(&out, &dir).arg("--dry-run").output().await;
    dry.code(0);
    assert!(
        dry.stdout.contains(&format!(
            "new       {}",
            dir.join("a.openai-gpt-4o-mini.md").display()
        )),
        "{}",
        dry.stdout
    );
    assert_eq!(dry.stdout.lines().count(), 9, "8 answers and the index");
    assert!(!dir.exists(), "a dry run writes nothing");
    let done = export_to(&out, &dir).output().await;
    done.code(0);
    assert!(
        done.stderr.contains("wrote 8 files and index.csv") && done.stderr.contains("8 new"),
        "{}",
        done.stderr
    );
    let rs = records(&out);
    let answer = |id: &str, model: &str| {
        rs.iter()
            .find(|r| r["id"] == id && r["model"] == model)
            .and_then(|r| r["output"].as_str())
            .unwrap()
            .to_owned()
    };
    let file = dir.join("c.m-b-nitro.md");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        answer("sub/c.html", "m/b:nitro") + "\n"
    );
    let index = std::fs::read_to_string(dir.join("index.csv")).unwrap();
    let mut lines = index.lines();
    assert_eq!(lines.next(), Some("id,model,file,tokens,spend"));
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&first[..3], ["a.txt", "m/b:nitro", "a.m-b-nitro.md"]);
    assert!(first[3].parse::<u64>().unwrap() > 0 && first[4].parse::<f64>().is_ok());
    // Again: nothing changed; an edited file is put back, and only it.
    std::fs::write(&file, "edited").unwrap();
    let again = export_to(&out, &dir).output().await;
    again.code(0);
    assert!(
        again.stderr.contains("0 new, 1 changed, 7 unchanged"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        answer("sub/c.html", "m/b:nitro") + "\n"
    );
    // Names that keep folders.
    let nested = env.path("nested");
    export_to(&out, &nested)
        .args(&["--name", "{{ id_stem }}/{{ model_slug }}.txt"])
        .output()
        .await
        .code(0);
    assert!(nested.join("sub/c/openai-gpt-4o-mini.txt").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_dir_refuses_names_outside_the_folder_or_on_one_file() {
    let env = Env::new().await;
    let input = env.write(
        "q.jsonl",
        "{\"id\":\"../evil\",\"prompt\":\"one\"}\n\
         {\"id\":\"a/x.md\",\"prompt\":\"two\"}\n\
         {\"id\":\"b/x.md\",\"prompt\":\"three\"}\n",
    );
    let out = env.path("q.out.jsonl");
    env.run()
        .input(&input)
        .args(&["-m", MODEL, "-q"])
        .output()
        .await
        .code(0);
    let dir = env.path("x");
    let done = export_to(&out, &dir).output().await;
    done.code(2);
    assert!(
        done.stderr.contains("id \"../evil\"")
            && done.stderr.contains("outside --to-dir")
            && done
                .stderr
                .contains("would both be x.openai-gpt-4o-mini.md")
            && done.stderr.contains("id_stem"),
        "{}",
        done.stderr
    );
    assert!(!dir.exists(), "nothing is written when a name is refused");
    for name in [
        "../{{ stem }}.md",
        "/tmp/{{ stem }}.md",
        "{{ dir }}/../../{{ stem }}",
    ] {
        let done = export_to(&out, &dir).args(&["--name", name]).output().await;
        done.code(2);
        assert!(
            done.stderr.contains("outside --to-dir"),
            "{name}: {}",
            done.stderr
        );
    }
    assert!(!dir.exists());
    assert!(!env.path("evil.openai-gpt-4o-mini.md").exists());
}

/// Six paragraphs of about 80 characters: a few chunks of 40 tokens (160 characters).
fn long_text(marker: &str) -> String {
    (1..=6)
        .map(|i| {
            format!(
                "Paragraph {i} talks about topic {i} at some length, so that it fills a line{}.",
                if i == 6 { marker } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

const CHUNKED: [&str; 8] = [
    "--chunk-tokens",
    "40",
    "--chunk-overlap",
    "4",
    "--template",
    "Part {{ chunk_index }} of {{ chunk_count }}: {{ chunk }}",
    "--reduce-template",
    "Combine: {% for c in chunks %}[{{ loop.index }}] {{ c }} {% endfor %}",
];

fn chunked_run(env: &Env, root: &Path, out: &Path) -> Cmd {
    env.run()
        .input(root)
        .args(&["-m", MODEL, "-m", "m/b", "--keep-fields", "-o"])
        .arg(out.to_str().unwrap())
        .args(&CHUNKED)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_document_is_chunked_then_reduced_in_order_and_resumes_across_stages() {
    let env = Env::new().await;
    let root = env.path("long");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("long.md"), long_text("")).unwrap();
    std::fs::write(root.join("short.md"), "A short one.").unwrap();
    let out = env.path("long.out.jsonl");
    chunked_run(&env, &root, &out).output().await.code(0);
    let rs = records(&out);
    let chunks: Vec<&serde_json::Value> = rs
        .iter()
        .filter(|r| r["model"] == MODEL && r["stage"] == "map")
        .collect();
    let k = chunks.len();
    assert!(k >= 3, "{rs:#?}");
    let mut ids: Vec<&str> = chunks.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    let expected: Vec<String> = (1..=k).map(|i| format!("long.md#{i}")).collect();
    assert_eq!(ids, expected);
    for model in [MODEL, "m/b"] {
        let reduce = rs
            .iter()
            .find(|r| r["id"] == "long.md" && r["model"] == model)
            .unwrap();
        assert_eq!(reduce["stage"], "reduce");
        assert_eq!(reduce["parts"], serde_json::json!(expected));
        // The chunk answers, in chunk order, went into the reduce request.
        let answers: Vec<&serde_json::Value> = expected
            .iter()
            .map(|id| {
                &rs.iter()
                    .find(|r| r["id"] == id.as_str() && r["model"] == model)
                    .unwrap()["output"]
            })
            .collect();
        assert_eq!(reduce["meta"]["chunks"], serde_json::json!(answers));
    }
    let short = rs.iter().find(|r| r["id"] == "short.md").unwrap();
    assert!(short.get("stage").is_none(), "{short}");
    // Chunk and reduce records are records of the documented format.
    let validator = crate::schema::validator();
    let found: Vec<String> = rs
        .iter()
        .flat_map(|r| crate::schema::problems(&validator, r, r["id"].as_str().unwrap()))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
    let sent = env.stats().requests;
    assert_eq!(
        sent,
        2 * (k as u64 + 2),
        "chunks, the short one and a reduce per model"
    );

    // A crash before one reduce was recorded: a rerun sends that reduce only.
    let text = std::fs::read_to_string(&out).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !(l.contains("\"stage\":\"reduce\"") && l.contains("\"model\":\"m/b\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&out, kept).unwrap();
    chunked_run(&env, &root, &out).output().await.code(0);
    assert_eq!(env.stats().requests, sent + 1);
    // Nothing left: nothing sent.
    chunked_run(&env, &root, &out).output().await.code(0);
    assert_eq!(env.stats().requests, sent + 1);
    // A changed last paragraph re-sends the last chunk and the reduce, for each model.
    std::fs::write(root.join("long.md"), long_text(" CHANGED")).unwrap();
    chunked_run(&env, &root, &out).output().await.code(0);
    assert_eq!(env.stats().requests, sent + 1 + 4);
    let rs = records(&out);
    let last = rs
        .iter()
        .rev()
        .find(|r| r["id"] == "long.md" && r["model"] == MODEL)
        .unwrap();
    assert!(
        last["meta"]["chunks"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("CHANGED"),
        "{last}"
    );

    // Files out: one per document and model, the reduce for the long one, no chunks.
    let dir = env.path("long-out");
    export_to(&out, &dir).output().await.code(0);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "index.csv",
            "long.m-b.md",
            "long.openai-gpt-4o-mini.md",
            "short.m-b.md",
            "short.openai-gpt-4o-mini.md"
        ]
    );
    // The document's spend in the index is both stages', every record of them.
    let index = std::fs::read_to_string(dir.join("index.csv")).unwrap();
    let line = index
        .lines()
        .find(|l| l.starts_with(&format!("long.md,{MODEL},")))
        .unwrap();
    let spend: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
    let expected: f64 = records(&out)
        .iter()
        .filter(|r| r["model"] == MODEL && r["id"].as_str().unwrap().starts_with("long.md"))
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();
    assert!(
        (spend - expected).abs() < 1e-12,
        "{spend} vs {expected}: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reduce_until_every_chunk_is_answered_and_plan_counts_both_stages() {
    let env = Env::new().await;
    let root = env.path("fail");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("long.md"), long_text(" [[mock:400]]")).unwrap();
    let out = env.path("fail.out.jsonl");
    let plan = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .input(&root)
        .args(&["-m", MODEL])
        .args(&CHUNKED)
        .output()
        .await;
    plan.code(0);
    assert!(
        plan.stdout.contains("Of these, 1 reduce requests"),
        "{}",
        plan.stdout
    );
    env.run()
        .input(&root)
        .args(&["-m", MODEL, "-o"])
        .arg(out.to_str().unwrap())
        .args(&CHUNKED)
        .output()
        .await
        .code(1);
    let rs = records(&out);
    assert!(rs.iter().all(|r| r["stage"] == "map"), "no reduce: {rs:#?}");
    assert!(rs.iter().any(|r| r["status"] == "error"));
    // Chunking also makes a long document fit a small context.
    let small = Env::with(MockConfig {
        context_length: Some(300),
        ..MockConfig::default()
    })
    .await;
    let doc = small.write("big.md", &"word ".repeat(400));
    let args = ["-m", MODEL, "-p", "max_tokens=50"];
    let whole = small
        .run()
        .input(&doc)
        .args(&args)
        .args(&["--template", TEMPLATE])
        .output()
        .await;
    whole.code(2);
    assert!(whole.stderr.contains("does not fit"), "{}", whole.stderr);
    small
        .run()
        .input(&doc)
        .args(&args)
        .args(&["--template", "{{ chunk }}", "--chunk-tokens", "200"])
        .output()
        .await
        .code(0);
    assert_eq!(small.stats().requests, 3, "three chunks of 200 tokens");
}

/// The text of the demo's PDF, `jobs/docs/recycling.pdf` (written by
/// `ORBATCH_WRITE_FIXTURES=1 cargo test --test it docs::the_demo`).
const DEMO_PDF: [&str; 6] = [
    "Recycling paper saves energy and water.",
    "Used paper is soaked and pulped, cleaned of ink and glue,",
    "then pressed and dried into new sheets.",
    "Each pass shortens the fibres, so paper can be recycled",
    "only five to seven times before it is too weak to use;",
    "fresh pulp is added to keep the new paper strong.",
];

/// `jobs/summarize.toml` over `jobs/docs/` with `--mock`: a folder in, the long document
/// chunked and reduced, a file out per document and model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_summarises_a_folder_into_files() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pdf = repo.join("jobs/docs/recycling.pdf");
    if std::env::var_os("ORBATCH_WRITE_FIXTURES").is_some() {
        std::fs::write(&pdf, pdf_with(&DEMO_PDF)).unwrap();
    }
    assert_eq!(
        std::fs::read(&pdf).unwrap(),
        pdf_with(&DEMO_PDF),
        "the committed PDF is the generator's"
    );
    let env = Env::new().await;
    let jobs = env.path("jobs");
    std::fs::create_dir_all(jobs.join("docs")).unwrap();
    std::fs::copy(
        repo.join("jobs/summarize.toml"),
        jobs.join("summarize.toml"),
    )
    .unwrap();
    for e in std::fs::read_dir(repo.join("jobs/docs")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), jobs.join("docs").join(e.file_name())).unwrap();
    }
    let done = Cmd::new(&[
        "run",
        jobs.join("summarize.toml").to_str().unwrap(),
        "--mock",
    ])
    .output()
    .await;
    done.code(0);
    let out = jobs.join("summarize.out.jsonl");
    let rs = records(&out);
    let reduced: Vec<&serde_json::Value> = rs.iter().filter(|r| r["stage"] == "reduce").collect();
    assert_eq!(
        reduced.len(),
        2,
        "the long document, for each model: {rs:#?}"
    );
    assert!(reduced.iter().all(|r| r["id"] == "lighthouses.md"));
    assert!(reduced[0]["parts"].as_array().unwrap().len() >= 3);
    let dir = jobs.join("summaries");
    export_to(&out, &dir).output().await.code(0);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        5 * 2 + 1,
        "five documents × two models, and the index"
    );
    assert!(dir.join("recycling.openai-gpt-4o-mini.md").is_file());
}

/// A document's chunks and its reduce are in one shard (decided by the document's id); the
/// shards together are the whole job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_holds_every_chunk_of_its_documents() {
    let env = Env::new().await;
    let root = env.path("sharded");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..6 {
        std::fs::write(root.join(format!("doc{i}.md")), long_text(&format!(" {i}"))).unwrap();
    }
    let mut documents = Vec::new();
    for k in 0..2 {
        let out = env.path(&format!("shard{k}.jsonl"));
        env.run()
            .input(&root)
            .args(&["-m", MODEL, "--shard", &format!("{k}/2"), "-o"])
            .arg(out.to_str().unwrap())
            .args(&CHUNKED)
            .output()
            .await
            .code(0);
        let rs = records(&out);
        let mut docs: Vec<String> = rs
            .iter()
            .filter(|r| r["stage"] == "reduce")
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        // Every chunk of a document of this shard, and of no other.
        for r in &rs {
            let id = r["id"].as_str().unwrap();
            let document = id.split('#').next().unwrap();
            assert!(
                docs.iter().any(|d| d == document),
                "{id} without its reduce"
            );
        }
        documents.append(&mut docs);
    }
    documents.sort();
    let all: Vec<String> = (0..6).map(|i| format!("doc{i}.md")).collect();
    assert_eq!(documents, all);
}
