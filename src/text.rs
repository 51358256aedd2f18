//! Text for people: server-supplied text made safe to show (no terminal control sequences,
//! bounded length), and money in one format everywhere.

/// The longest error message kept from a server, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// Replace control characters (ANSI escapes, carriage returns, bells…) with spaces, collapse
/// runs of whitespace and cut the text to `MAX_MESSAGE_CHARS` characters.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS + 3));
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        if count == MAX_MESSAGE_CHARS {
            out.push('…');
            return out;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Money as `$0.001234`: 6 decimals, more for tiny amounts so they do not show as zero.
pub fn usd(usd: f64) -> String {
    let sign = if usd < 0.0 { "-" } else { "" };
    let abs = usd.abs();
    let decimals = if abs == 0.0 || abs >= 1e-6 {
        6
    } else {
        // Two significant digits, at most picodollars.
        ((-abs.log10()).floor() as usize + 2).min(12)
    };
    format!("{sign}${abs:.decimals$}")
}

/// A sum of costs that may be incomplete: `$0.001234`; `≥ $0.001234` when `unknown` items
/// had no cost (a lower bound); `—` when none had one (unknown is not $0).
pub fn spend(known: Option<f64>, unknown: u64) -> String {
    match (known, unknown) {
        (None, _) => "\u{2014}".to_owned(),
        (Some(x), 0) => usd(x),
        (Some(x), _) => format!("\u{2265} {}", usd(x)),
    }
}

/// Text safe for a terminal, line structure kept: control characters other than newlines
/// become `?` (for messages that quote user input, such as a duplicate id).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

/// A command line as one string a user can paste back into a POSIX shell: arguments with
/// anything but plain characters are single-quoted, control characters become `?`.
pub fn shell_line<I: IntoIterator<Item = S>, S: AsRef<str>>(args: I) -> String {
    let quote = |a: &str| -> String {
        let a: String = a
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+-,".contains(c));
        if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    args.into_iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_and_bounds_length() {
        assert_eq!(sanitize("a\x1b[31mred\x1b[0m\r\nb"), "a [31mred [0m b");
        assert_eq!(sanitize("  x  "), "x");
        let long = "y".repeat(2000);
        assert_eq!(sanitize(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn money_has_six_decimals_and_more_for_tiny_amounts() {
        assert_eq!(usd(0.0), "$0.000000");
        assert_eq!(usd(0.001234), "$0.001234");
        assert_eq!(usd(12.5), "$12.500000");
        assert_eq!(usd(0.00000031), "$0.00000031");
        assert_eq!(usd(-0.0005), "-$0.000500");
    }

    #[test]
    fn shell_lines_quote_what_needs_it() {
        assert_eq!(
            shell_line(["orbatch", "run", "-m", "a/b"]),
            "orbatch run -m a/b"
        );
        assert_eq!(
            shell_line(["--template", "Hi {{ x }}"]),
            "--template 'Hi {{ x }}'"
        );
        assert_eq!(shell_line(["it's"]), "'it'\\''s'");
        assert_eq!(shell_line(["a\u{1b}[2J", ""]), "'a?[2J' ''");
    }

    #[test]
    fn printable_keeps_lines_and_drops_escapes() {
        assert_eq!(printable("a\u{1b}[2J\nb\tc"), "a?[2J\nb?c");
    }
}
