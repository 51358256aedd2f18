//! Which option a multiple-choice answer chose: "The answer is (B).", "**B**", "B) Paris",
//! "Answer: b", or just "B". Explicit statements win over a bare letter, the last statement
//! wins over earlier ones ("A is tempting, but the answer is B"), and a letter inside a word
//! ("Based on…") or an article ("a") is never a choice.

use regex::Regex;

use super::spec::Normalize;

/// The patterns for one set of option letters, compiled once per scorer.
#[derive(Debug, Clone)]
pub struct Chooser {
    pub letters: Vec<char>,
    /// In order of how surely they state the choice.
    patterns: Vec<Regex>,
    /// `B) Paris` at the start of a line: the letter and the option's text.
    option_line: Regex,
}

/// What an answer chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub letter: char,
    /// The option's text when the answer gave it (`B) Paris` → `Paris`).
    pub text: Option<String>,
}

impl Chooser {
    /// Patterns for `letters` (upper case ASCII letters).
    pub fn new(letters: Vec<char>) -> Result<Chooser, regex::Error> {
        let upper: String = letters.iter().collect();
        let both: String = letters
            .iter()
            .flat_map(|c| [*c, c.to_ascii_lowercase()])
            .collect();
        let (u, b) = (regex::escape(&upper), regex::escape(&both));
        let patterns = [
            // "answer is (B)", "Answer: b", "correct option is **C**", "final answer: (d)"
            format!(r"(?i)\b(?:answer|option|choice)\b(?:\s+is)?\s*[:\-=]?\s*[(\[*]*\s*([{b}])\b"),
            // "**B**", "(B)", "[B]"
            format!(r"(?:\*\*|\(|\[)\s*([{u}])\s*(?:\*\*|\)|\])"),
            // "B) Paris", "B. Paris", "B: Paris" at the start of a line
            format!(r"(?m)^\s*([{u}])\s*[).:]"),
            // The whole answer is the letter: "B", "b.", " C \n"
            format!(r"^\s*([{b}])\s*[.!]?\s*$"),
        ]
        .iter()
        .map(|p| Regex::new(p))
        .collect::<Result<Vec<_>, _>>()?;
        let option_line = Regex::new(&format!(r"(?m)^\s*[(\[]?([{u}])\s*[).:\]]\s*(\w.*?)\s*$"))?;
        Ok(Chooser {
            letters,
            patterns,
            option_line,
        })
    }

    /// The option `answer` chose, if it says.
    pub fn chosen(&self, answer: &str) -> Option<Choice> {
        let letter = self
            .patterns
            .iter()
            .find_map(|re| last_letter(re, answer))
            .or_else(|| self.lone_letter(answer))?;
        let text = self
            .option_line
            .captures_iter(answer)
            .filter(|c| first_char(c.get(1).map(|m| m.as_str())) == Some(letter))
            .filter_map(|c| c.get(2).map(|m| m.as_str().to_owned()))
            .last();
        Some(Choice { letter, text })
    }

    /// A capital option letter standing alone ("I pick B because …"), if it is the only
    /// option letter that does. The pronoun `I`, and `A` starting a sentence before a
    /// lower-case word ("A cat …"), are words, not choices.
    fn lone_letter(&self, answer: &str) -> Option<char> {
        let mut seen = None;
        let mut rest = answer;
        let mut before: Option<char> = None;
        while let Some(c) = rest.chars().next() {
            let after = &rest[c.len_utf8()..];
            let next = after.chars().next();
            let alone = !before.is_some_and(char::is_alphanumeric)
                && !next.is_some_and(char::is_alphanumeric);
            if alone && self.letters.contains(&c) {
                let next_word = after
                    .trim_start_matches(' ')
                    .split(|ch: char| !ch.is_alphabetic())
                    .next()
                    .unwrap_or("");
                let word_follows = after.starts_with(' ')
                    && next_word.chars().next().is_some_and(char::is_lowercase)
                    && !matches!(next_word, "or" | "and" | "vs" | "versus");
                let article = c == 'A'
                    && word_follows
                    && answer[..answer.len() - rest.len()]
                        .trim_end()
                        .chars()
                        .next_back()
                        .is_none_or(|p| matches!(p, '.' | '!' | '?' | '\n'));
                if c != 'I' && !article {
                    match seen {
                        None => seen = Some(c),
                        Some(s) if s == c => {}
                        Some(_) => return None,
                    }
                }
            }
            before = Some(c);
            rest = after;
        }
        seen
    }

    /// Whether `choice` is the `expected` one: a letter (`B`, `(b)`), else the option's
    /// text, compared ignoring case, punctuation and spacing with what the answer gave after
    /// its letter.
    pub fn matches(&self, choice: &Choice, expected: &str) -> bool {
        let e = expected
            .trim()
            .trim_matches(|ch: char| matches!(ch, '(' | ')' | '[' | ']' | '.' | '*' | ' '));
        let mut chars = e.chars();
        if let (Some(l), None) = (chars.next(), chars.next())
            && self.letters.contains(&l.to_ascii_uppercase())
        {
            return l.to_ascii_uppercase() == choice.letter;
        }
        let loose = Normalize {
            trim: true,
            ignore_case: true,
            collapse_whitespace: true,
            strip_punctuation: true,
        };
        choice
            .text
            .as_deref()
            .is_some_and(|t| loose.apply(t) == loose.apply(expected))
    }
}

fn first_char(s: Option<&str>) -> Option<char> {
    s?.chars().next().map(|c| c.to_ascii_uppercase())
}

/// The letter of the last match of `re` in `text`.
fn last_letter(re: &Regex, text: &str) -> Option<char> {
    re.captures_iter(text)
        .filter_map(|c| first_char(c.get(1).map(|m| m.as_str())))
        .last()
}
