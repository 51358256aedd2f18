//! Numbers in free text, as `number` reads them: `1,234.5`, `$12`, `12%`, `-3e2`, `−4`
//! (Unicode minus), `.5`; a `-` right after a letter or digit (`2-3`, `COVID-19`) is not a
//! sign.

use std::sync::LazyLock;

use regex::Regex;

use super::NumberPick;

/// One number found in a text, and the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found<'a> {
    pub value: f64,
    pub text: &'a str,
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    // sign? currency? (thousands-grouped | plain | .fraction) fraction? exponent? percent?
    Regex::new(
        r"[-+\u{2212}]?[$€£¥]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?%?",
    )
    .unwrap_or_else(|e| unreachable!("the number pattern compiles: {e}"))
});

/// Every number of `text`, in order.
pub fn all(text: &str) -> impl Iterator<Item = Found<'_>> {
    NUMBER.find_iter(text).filter_map(move |m| {
        let mut s = m.as_str();
        let mut start = m.start();
        // A sign glued to a word or number before it is a hyphen or a minus between terms.
        let before = text[..start].chars().next_back();
        if s.starts_with(['-', '+', '\u{2212}']) && before.is_some_and(char::is_alphanumeric) {
            let sign = s.chars().next().map_or(1, char::len_utf8);
            s = &s[sign..];
            start += sign;
        }
        // Digits glued to letters before them (`v2`, `x86`) are part of a word.
        if before.is_some_and(|c| c.is_alphabetic()) && start == m.start() {
            return None;
        }
        parse(s).map(|value| Found { value, text: s })
    })
}

/// The first or last number of `text`.
pub fn pick(text: &str, which: NumberPick) -> Option<Found<'_>> {
    match which {
        NumberPick::First => all(text).next(),
        NumberPick::Last => all(text).last(),
    }
}

/// The value of one match: without currency, thousands separators or `%`.
fn parse(s: &str) -> Option<f64> {
    let negative = s.starts_with(['-', '\u{2212}']);
    let digits: String = s
        .chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        .skip_while(|c| matches!(c, '+' | '-'))
        .collect();
    let v: f64 = digits.parse().ok()?;
    v.is_finite().then_some(if negative { -v } else { v })
}

/// Whether `got` is within `abs` or `rel × |want|` of `want` (both 0: equal).
pub fn close(got: f64, want: f64, abs: f64, rel: f64) -> bool {
    (got - want).abs() <= abs.max(rel * want.abs())
}
