//! A document's text: `.md`/`.markdown`/`.txt` as they are (UTF-8), `.html`/`.htm` as
//! readable text (`html2text`), `.pdf` as extracted text (`pdf-extract`). What cannot give a
//! usable text (invalid UTF-8, a scanned PDF with no text layer) is a problem naming the
//! file, never an empty prompt.

use std::io::Read;
use std::path::Path;

use super::select::ext_of;

/// Longest file read, in bytes (a PDF holds far more bytes than text).
pub(crate) const MAX_FILE: u64 = 64 * 1024 * 1024;

/// Longest text kept, in bytes, as for a row of JSONL.
pub(crate) const MAX_TEXT: usize = crate::job::MAX_ROW_BYTES;

/// Width HTML is laid out to: wide enough that a paragraph stays one line.
const HTML_WIDTH: usize = 100_000;

/// The file's size and text, or what is wrong with it.
pub(crate) fn read(path: &Path) -> Result<(u64, String), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size > MAX_FILE {
        return Err(format!(
            "the file is {} MB, more than the {} MB orbatch reads",
            size >> 20,
            MAX_FILE >> 20
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    let text = match ext_of(path).as_deref() {
        Some("html" | "htm") => html(&bytes)?,
        Some("pdf") => pdf(&bytes)?,
        _ => utf8(bytes)?,
    };
    if text.len() > MAX_TEXT {
        return Err(format!(
            "its text is {} MB, more than the {} MB of a row",
            text.len() >> 20,
            MAX_TEXT >> 20
        ));
    }
    if text.trim().is_empty() {
        return Err("the file has no text".into());
    }
    Ok((size, text))
}

/// A text file: UTF-8 (a BOM is dropped, CRLF kept as written).
fn utf8(mut bytes: Vec<u8>) -> Result<String, String> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!(
            "invalid UTF-8 at byte {} (line {line}); save the file as UTF-8",
            at + 1
        )
    })
}

/// HTML as readable text, Markdown-like (`# Heading`, `* item`, `[link text]`, no URLs, no
/// scripts or styles), one line per paragraph.
fn html(bytes: &[u8]) -> Result<String, String> {
    let text = html2text::config::plain_no_decorate()
        .allow_width_overflow()
        .string_from_read(bytes, HTML_WIDTH)
        .map_err(|e| format!("cannot read the HTML: {e}"))?;
    // Lines laid out to the width carry its trailing spaces.
    Ok(text
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// A PDF's text layer. `pdf-extract` panics on some malformed files: that is a problem with
/// the file, not a crash.
fn pdf(bytes: &[u8]) -> Result<String, String> {
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    let text = match extracted {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(format!("cannot read the PDF: {e}")),
        Err(_) => return Err("cannot read the PDF (it looks damaged)".into()),
    };
    if text.trim().is_empty() {
        return Err(
            "the PDF has no text to extract (a scanned document?); run OCR on it first, or \
             leave it out"
                .into(),
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::fixture::pdf_with;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_each_kind_and_refuses_what_has_no_text() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (size, text) = read(&write(d, "a.md", b"\xEF\xBB\xBF# Title\n\nBody.\n")).unwrap();
        assert_eq!((size, text.as_str()), (18, "# Title\n\nBody.\n"));
        let e = read(&write(d, "bad.txt", b"ok\nno \xFF here")).unwrap_err();
        assert!(e.contains("invalid UTF-8 at byte 7 (line 2)"), "{e}");
        let (_, text) = read(&write(
            d,
            "p.html",
            b"<html><head><title>T</title><style>p{}</style></head><body><h1>Head</h1>\
              <p>First <a href=\"https://x.example\">link</a> para.</p><p>Second.</p></body></html>",
        ))
        .unwrap();
        // Markdown-like: a heading marked, a link's text kept, its URL left out.
        assert!(text.contains("# Head"), "{text}");
        assert!(text.contains("First [link] para."), "{text}");
        assert!(text.contains("Second."), "{text}");
        assert!(!text.contains('<') && !text.contains("x.example"), "{text}");
        let (_, text) = read(&write(
            d,
            "p.pdf",
            &pdf_with(&["Hello from a PDF.", "Second line."]),
        ))
        .unwrap();
        assert!(text.contains("Hello from a PDF."), "{text:?}");
        assert!(text.contains("Second line."), "{text:?}");
        let e = read(&write(d, "scan.pdf", &pdf_with(&[]))).unwrap_err();
        assert!(e.contains("no text to extract"), "{e}");
        let e = read(&write(d, "junk.pdf", b"%PDF-1.4 not really")).unwrap_err();
        assert!(e.contains("cannot read the PDF"), "{e}");
        let e = read(&write(d, "empty.txt", b"  \n")).unwrap_err();
        assert!(e.contains("no text"), "{e}");
    }
}
