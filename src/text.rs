//! Making server-supplied text safe to show: no terminal control sequences, bounded length.

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
}
