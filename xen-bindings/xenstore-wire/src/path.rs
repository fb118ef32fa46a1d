//! Xenstore paths and permissions, and strict parsing of values guests write.
use crate::error::Error;

pub const ABS_PATH_MAX: usize = 3072;
pub const REL_PATH_MAX: usize = 2048;
/// Largest value hx accepts from a guest-writable node, and most entries it lists.
pub const MAX_VALUE: usize = 4096;
pub const MAX_ENTRIES: usize = 1024;

/// xenstored's rules (valid_chars, is_valid_nodename): `[A-Za-z0-9_@/-]`, no empty component,
/// no trailing slash; absolute paths up to 3072 bytes, relative (to the caller's
/// /local/domain/N) up to 2048. `@`-prefixed special paths (`@releaseDomain`) are for watches.
pub fn check_path(path: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::InvalidPath {
            path: path.to_string(),
            reason: why.to_string(),
        })
    };
    if path.starts_with('@') {
        return if matches!(path, "@introduceDomain" | "@releaseDomain") {
            Ok(())
        } else {
            bad("unknown special path")
        };
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.is_empty() || path.len() > max {
        return bad(&format!("length must be 1..{max}"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-/_@".contains(&b))
    {
        return bad("only [A-Za-z0-9_@/-] allowed");
    }
    if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        return bad("empty component");
    }
    Ok(())
}

/// One permission entry. The first entry of a node's list names its owner (who may always
/// read and write) and the access of every domain not listed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: u32,
    pub read: bool,
    pub write: bool,
}

impl Perm {
    pub fn none(domid: u32) -> Self {
        Perm {
            domid,
            read: false,
            write: false,
        }
    }

    pub fn read(domid: u32) -> Self {
        Perm {
            domid,
            read: true,
            write: false,
        }
    }

    pub fn both(domid: u32) -> Self {
        Perm {
            domid,
            read: true,
            write: true,
        }
    }

    /// xenstore's notation: `n0`, `r5`, `w5`, `b5`.
    pub fn parse(s: &str) -> Option<Perm> {
        let mut chars = s.chars();
        let flag = chars.next()?;
        let id = chars.as_str();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let domid = id.parse().ok()?;
        let (read, write) = match flag {
            'n' => (false, false),
            'r' => (true, false),
            'w' => (false, true),
            'b' => (true, true),
            _ => return None,
        };
        Some(Perm { domid, read, write })
    }
}

impl std::fmt::Display for Perm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = match (self.read, self.write) {
            (false, false) => 'n',
            (true, false) => 'r',
            (false, true) => 'w',
            (true, true) => 'b',
        };
        write!(f, "{flag}{}", self.domid)
    }
}

/// A value a guest wrote: bounded, UTF-8, no control characters but tab and newline.
pub fn check_untrusted(path: &str, bytes: &[u8]) -> Result<String, Error> {
    let bad = |reason: String| Error::Untrusted {
        path: path.to_string(),
        reason,
    };
    if bytes.len() > MAX_VALUE {
        return Err(bad(format!("{} bytes, at most {MAX_VALUE}", bytes.len())));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("control characters".into()));
    }
    Ok(s.to_string())
}

/// A guest-written decimal number: digits only (no sign, spaces or leading zeros), in range.
pub fn parse_untrusted_u64(path: &str, value: &str, max: u64) -> Result<u64, Error> {
    let bad = |reason: String| Error::Untrusted {
        path: path.to_string(),
        reason,
    };
    let ok_digits = !value.is_empty()
        && value.len() <= 20
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    if !ok_digits {
        return Err(bad(format!(
            "{:?} is not a plain decimal number",
            truncate(value)
        )));
    }
    let n: u64 = value.parse().map_err(|_| bad("out of range".into()))?;
    if n > max {
        return Err(bad(format!("{n} exceeds {max}")));
    }
    Ok(n)
}

/// A guest-written word that must be one of `allowed`.
pub fn parse_untrusted_choice<'a>(
    path: &str,
    value: &str,
    allowed: &[&'a str],
) -> Result<&'a str, Error> {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .ok_or_else(|| Error::Untrusted {
            path: path.to_string(),
            reason: format!("{:?} is not one of {allowed:?}", truncate(value)),
        })
}

/// Guest text quoted in an error message, cut short.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_and_print_like_xenstore() {
        assert_eq!(Perm::parse("n0"), Some(Perm::none(0)));
        assert_eq!(Perm::parse("b12"), Some(Perm::both(12)));
        assert_eq!(
            Perm::parse("w3"),
            Some(Perm {
                domid: 3,
                read: false,
                write: true
            })
        );
        for bad in ["x5", "r", "rfoo", "r-1", "r+1", "", "r99999999999"] {
            assert_eq!(Perm::parse(bad), None, "{bad}");
        }
        for p in ["n0", "r5", "w7", "b65535"] {
            assert_eq!(Perm::parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn paths_follow_xenstored_rules() {
        for ok in [
            "/local/domain/0/hx",
            "/",
            "device/console/1",
            "@releaseDomain",
            "/vm/a-b_c@d",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a//b", "/a/", "/a b", "/a.b", "@other", "/a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&format!("/{}", "a".repeat(ABS_PATH_MAX))).is_err());
        assert!(check_path(&"a".repeat(REL_PATH_MAX + 1)).is_err());
        assert_eq!(
            check_path("/a.b").unwrap_err().to_string(),
            "xenstore path \"/a.b\": only [A-Za-z0-9_@/-] allowed"
        );
    }

    #[test]
    fn guest_values_are_bounded_and_strict() {
        assert_eq!(check_untrusted("/p", b"exited 3\n").unwrap(), "exited 3\n");
        assert_eq!(
            check_untrusted("/p", &vec![b'a'; MAX_VALUE + 1])
                .unwrap_err()
                .to_string(),
            "xenstore /p: value from the guest rejected: 4097 bytes, at most 4096"
        );
        assert!(check_untrusted("/p", b"\xff\xfe").is_err());
        assert!(check_untrusted("/p", b"ok\x1b[2J").is_err());
    }

    #[test]
    fn guest_numbers_and_words_are_parsed_strictly() {
        assert_eq!(parse_untrusted_u64("/p", "0", 10).unwrap(), 0);
        assert_eq!(parse_untrusted_u64("/p", "255", 255).unwrap(), 255);
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "01",
            "0x10",
            "256",
            "99999999999999999999999",
        ] {
            assert!(parse_untrusted_u64("/p", bad, 255).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_untrusted_choice("/p", "ready", &["starting", "ready"]).unwrap(),
            "ready"
        );
        assert!(parse_untrusted_choice("/p", "Ready", &["starting", "ready"]).is_err());
    }
}
