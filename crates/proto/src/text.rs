//! Untrusted text in human-readable output.
//!
//! Strings that an attacker chooses (a payload's broker URL that reaches an audit reason, an
//! image annotation that `inspect` shows, a registry's error body, a tag name) must not reach
//! a terminal raw: an escape sequence could erase or forge the lines around it, retitle the
//! window or, on some terminals, write to the clipboard. Every human-readable rendering of such
//! text goes through [`Untrusted`] (or [`escape`]); machine-readable output (`--json`) stays
//! exact, since JSON escapes control characters itself.
//!
//! Escaped, in Rust's notation: `\n`, `\r`, `\t`; every other control character (C0, DEL, C1,
//! which includes the 8-bit CSI) as `\u{..}`; and the invisible format characters that reorder
//! or hide text (bidirectional overrides and isolates, zero-width characters, line and paragraph
//! separators, the BOM). A backslash is left as it is: text that is already escaped (a grid DN
//! from `layercrypt_ocicrypt::keys::grid`, whose `\x2F` must read exactly as the broker matches
//! it) stays the same, at the price that a literal `\u{1b}` in untrusted text looks like an
//! escaped one (harmless: it is printable either way).
//! Written by hand: the few crates that strip ANSI sequences remove them (losing evidence
//! an admin reading an audit log needs) and do not cover bidi controls.

use std::borrow::Cow;
use std::fmt;

/// True for a character that is escaped.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}'                  // Arabic letter mark
            | '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'   // line/paragraph separators, LRE..RLO
            | '\u{2060}'..='\u{2069}'   // word joiner, invisible operators, LRI..PDI
            | '\u{FEFF}'                // byte order mark
        )
}

fn write_escaped(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(needs_escape) {
        f.write_str(&rest[..at])?;
        let c = rest[at..]
            .chars()
            .next()
            .expect("find returned a char boundary");
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    f.write_str(rest)
}

/// Displays untrusted text with control and invisible format characters escaped.
///
/// ```
/// use layercrypt_proto::text::Untrusted;
/// assert_eq!(Untrusted("ok\x1b[2K").to_string(), "ok\\u{1b}[2K");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug of a str already escapes control characters, but not bidi controls.
        f.write_str("\"")?;
        write_escaped(f, self.0)?;
        f.write_str("\"")
    }
}

/// `text` with control and invisible format characters escaped (borrowed when there are none).
pub fn escape(text: &str) -> Cow<'_, str> {
    if text.contains(needs_escape) {
        Cow::Owned(Untrusted(text).to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// Bytes from an untrusted source (an HTTP error body, a process's stderr) as escaped text:
/// invalid UTF-8 becomes U+FFFD, and at most `max_chars` characters are kept, with `…` after
/// a cut.
pub fn escape_bytes(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut cut: String = text.chars().take(max_chars).collect();
    let truncated = cut.len() < text.len();
    cut = escape(&cut).into_owned();
    if truncated {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        for s in ["", "https://broker.example.org", "Jane Doé 日本", "a/b=c+d"] {
            assert!(matches!(escape(s), Cow::Borrowed(t) if t == s), "{s}");
        }
    }

    #[test]
    fn terminal_controls_are_escaped() {
        let cases = [
            ("\x1b[2K\rallow", "\\u{1b}[2K\\rallow"),
            ("a\nb\tc", "a\\nb\\tc"),
            ("\u{9b}31m", "\\u{9b}31m"), // 8-bit CSI (C1)
            ("\x7f", "\\u{7f}"),
            ("\x07\x00", "\\u{7}\\u{0}"),
            ("\u{202e}gpj.exe", "\\u{202e}gpj.exe"),
            ("a\u{200b}b\u{feff}", "a\\u{200b}b\\u{feff}"),
            ("x\u{2028}y", "x\\u{2028}y"),
            // Backslashes stay: an escaped grid DN reads as the broker matches it.
            (
                "/O=EGI Foundation\\x2FCN=Jane",
                "/O=EGI Foundation\\x2FCN=Jane",
            ),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape(raw), shown, "{raw:?}");
            assert_eq!(Untrusted(raw).to_string(), shown);
        }
        assert_eq!(format!("{:?}", Untrusted("\u{202e}")), "\"\\u{202e}\"");
    }

    #[test]
    fn escaped_output_has_no_control_or_format_characters() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let shown = escape(&all);
        assert!(!shown.chars().any(needs_escape));
    }

    #[test]
    fn bytes_are_bounded_and_escaped() {
        assert_eq!(escape_bytes(b"ab\x1bc", 10), "ab\\u{1b}c");
        assert_eq!(escape_bytes(b"abcdef", 3), "abc…");
        assert_eq!(escape_bytes(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}
