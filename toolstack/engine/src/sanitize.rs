//! Text that reaches a terminal through hx's own output. Strings from guests (status messages,
//! console lines) and images (CMD, `created`, labels) are hostile: an escape sequence in them
//! could retitle, clear or rewrite the user's terminal, and a bidi override could make a line
//! read differently from what it says. hx's output sinks (`outln!`, `errln!` in output.rs) pass
//! every line through [`Escaped`], so no call site has to remember which of its fields are
//! untrusted. `hx logs` escapes the workload's output the same way when it writes to a terminal
//! (into a pipe or file the bytes go as they are, for scripts); an attached `hx run` and
//! `hx console` pass it through untouched, like docker does (a `-t` workload draws its own
//! screen).
//!
//! Escapes: C0 controls as `\x1b` (`\n`, `\r`, `\t` by name), DEL, C1 controls (U+0080..U+009F,
//! which some terminals take as 8-bit CSI/OSC) and bidi/line-separator formatting characters as
//! `\u009b`, `\u202e`. The `\uXXXX` form is also a valid JSON escape, so the same pass keeps
//! `--json` output (where serde already escaped everything below U+0020) parseable and
//! equal in meaning.
use std::fmt::{self, Write};

/// `s` made safe for a terminal; with `keep_newlines` line feeds and tabs stay (multi-line
/// output such as pretty JSON or xl's tables), without them the result is one line.
pub struct Escaped<'a> {
    s: &'a str,
    keep_newlines: bool,
}

/// One line: newlines are escaped too (table cells, error lines).
pub fn line(s: &str) -> Escaped<'_> {
    Escaped {
        s,
        keep_newlines: false,
    }
}

/// A block of lines: newlines and tabs stay, every other control is escaped.
pub fn text(s: &str) -> Escaped<'_> {
    Escaped {
        s,
        keep_newlines: true,
    }
}

/// Unicode formatting characters that reorder or break displayed text (trojan-source style):
/// bidi embeddings, overrides, isolates and marks, and the line/paragraph separators.
fn is_bidi_or_separator(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

fn needs_escape(c: char, keep_newlines: bool) -> bool {
    if c == '\n' || c == '\t' {
        return !keep_newlines;
    }
    c.is_control() || is_bidi_or_separator(c)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.s;
        while let Some((i, c)) = rest
            .char_indices()
            .find(|&(_, c)| needs_escape(c, self.keep_newlines))
        {
            f.write_str(&rest[..i])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if (c as u32) < 0x20 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{:04x}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl<'a> Escaped<'a> {
    /// Whether nothing needs escaping (the common case: no allocation by callers).
    pub fn is_clean(&self) -> bool {
        !self.s.chars().any(|c| needs_escape(c, self.keep_newlines))
    }

    pub fn to_cow(&self) -> std::borrow::Cow<'a, str> {
        if self.is_clean() {
            std::borrow::Cow::Borrowed(self.s)
        } else {
            let mut out = String::with_capacity(self.s.len() + 16);
            let _ = write!(out, "{self}");
            std::borrow::Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_visibly_and_plain_text_is_untouched() {
        assert_eq!(
            line("nginx -g daemon off;").to_string(),
            "nginx -g daemon off;"
        );
        assert_eq!(line("héllo wörld ✓ 日本").to_string(), "héllo wörld ✓ 日本");
        assert_eq!(
            line("\x1b[2J\x1b]0;pwned\x07").to_string(),
            "\\x1b[2J\\x1b]0;pwned\\x07"
        );
        assert_eq!(line("a\rb\tc\nd\0").to_string(), "a\\rb\\tc\\nd\\x00");
        assert_eq!(text("a\nb\r\tc").to_string(), "a\nb\\r\tc");
        // DEL, C1 (8-bit CSI U+009B, NEL U+0085), bidi override and isolate, line separator.
        assert_eq!(
            line("\x7f\u{9b}31m\u{85}").to_string(),
            "\\u007f\\u009b31m\\u0085"
        );
        assert_eq!(
            line("abc\u{202e}txt.exe\u{2066}\u{2028}").to_string(),
            "abc\\u202etxt.exe\\u2066\\u2028"
        );
        assert!(line("plain").is_clean());
        assert!(matches!(
            line("plain").to_cow(),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(!text("\u{9b}").is_clean());
    }

    #[test]
    fn escaped_json_stays_valid_json_with_the_same_value() {
        let hostile = "cmd \u{1b}[31m \u{9b}2J \u{202e} \u{7f} \"q\" \\ é";
        let json = serde_json::to_string_pretty(&serde_json::json!({ "Cmd": [hostile] })).unwrap();
        let safe = text(&json).to_string();
        assert!(
            safe.chars().all(|c| c == '\n' || !needs_escape(c, true)),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["Cmd"][0], hostile);
    }

    #[test]
    fn every_char_is_either_kept_or_escaped_to_printable_ascii() {
        for cp in (0u32..0x3000).chain([0xfeff, 0x10ffff]) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let s = c.to_string();
            let out = line(&s).to_string();
            if needs_escape(c, false) {
                assert!(
                    out.starts_with('\\') && out.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{cp:#x}: {out}"
                );
            } else {
                assert_eq!(out, s);
            }
        }
    }
}
