//! docker's KEY[=VALUE] lists: `--env-file` and `--label-file` lines (docker/cli
//! pkg/kvfile), `-e` and `-l`/`--label` values (opts.ValidateEnv, opts.ValidateLabel).
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KvError {
    #[error("invalid utf8 bytes at line {0}")]
    Utf8(usize),
    #[error("no variable name on line '{0}'")]
    NoName(String),
    #[error("variable '{0}' contains whitespaces")]
    Whitespace(String),
}

/// What a line without `=` becomes: env files take the host's value (and drop the key when the
/// host has none); label files drop it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Bare {
    FromHost,
    Dropped,
}

/// The lines of a file as docker reads it: a UTF-8 BOM on the first line dropped, leading
/// whitespace trimmed (trailing kept: it is the value's), blank lines and `#` comments
/// skipped, a key with a space or tab refused.
pub fn parse(bytes: &[u8], bare: Bare) -> Result<Vec<String>, KvError> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = match i {
            0 => raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw),
            _ => raw,
        };
        let line = std::str::from_utf8(raw).map_err(|_| KvError::Utf8(i + 1))?;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(KvError::NoName(line.to_string()));
        }
        if key.contains([' ', '\t']) {
            return Err(KvError::Whitespace(key.to_string()));
        }
        match (value, bare) {
            (Some(_), _) => out.push(line.to_string()),
            (None, Bare::FromHost) => out.extend(from_host(key)),
            (None, Bare::Dropped) => {}
        }
    }
    Ok(out)
}

/// A file of `parse`, its errors named like docker's (`invalid env file (PATH): …`, for label
/// files too).
pub fn read(p: &Path, bare: Bare) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(p).with_context(|| format!("open {}", p.display()))?;
    parse(&bytes, bare).map_err(|e| anyhow::anyhow!("invalid env file ({}): {e}", p.display()))
}

/// `-e K=V` as is; `-e K`: the host's K, or nothing when the host has none (docker leaves the
/// variable out of the container then).
pub fn env_arg(e: &str) -> anyhow::Result<Option<String>> {
    let key = e.split('=').next().unwrap_or("");
    if key.is_empty() {
        anyhow::bail!("invalid environment variable: {e}");
    }
    Ok(match e.contains('=') {
        true => Some(e.to_string()),
        false => from_host(key),
    })
}

fn from_host(key: &str) -> Option<String> {
    std::env::var(key).ok().map(|v| format!("{key}={v}"))
}

/// `-l KEY[=VALUE]` (docker's ValidateLabel: a key without spaces; no value is "").
pub fn label_arg(l: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = l.split_once('=').unwrap_or((l, ""));
    let key = key.trim_start_matches([' ', '\t']);
    if key.is_empty() {
        anyhow::bail!("invalid label '{l}': empty name");
    }
    if key.contains([' ', '\t']) {
        anyhow::bail!("label '{key}' contains whitespaces");
    }
    Ok((key.to_string(), value.to_string()))
}

/// `--label-file`s then `-l`s, a later key winning (docker's ReadKVStrings + ConvertKVStringsToMap).
pub fn labels(
    files: &[std::path::PathBuf],
    args: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in files {
        for line in read(f, Bare::Dropped)? {
            let (k, v) = line.split_once('=').unwrap_or((&line, ""));
            out.insert(k.to_string(), v.to_string());
        }
    }
    for l in args {
        let (k, v) = label_arg(l)?;
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn docker_rules() {
        let text = b"\xEF\xBB\xBFA=1\n  # c\n\n\tB= two \r\nHX_KV_TEST_UNSET\nC\n";
        std::env::set_var("C", "see");
        assert_eq!(
            parse(text, Bare::FromHost).unwrap(),
            ["A=1", "B= two ", "C=see"]
        );
        assert_eq!(parse(text, Bare::Dropped).unwrap(), ["A=1", "B= two "]);
        assert_eq!(
            parse(b"MY VAR=1\n", Bare::FromHost),
            Err(KvError::Whitespace("MY VAR".into()))
        );
        assert_eq!(
            parse(b"X =1\n", Bare::FromHost),
            Err(KvError::Whitespace("X ".into()))
        );
        assert_eq!(
            parse(b"=1\n", Bare::FromHost),
            Err(KvError::NoName("=1".into()))
        );
        assert_eq!(parse(b"A=1\n\xff\n", Bare::FromHost), Err(KvError::Utf8(2)));
        assert_eq!(env_arg("HX_KV_TEST_UNSET").unwrap(), None);
        assert_eq!(env_arg("C").unwrap().as_deref(), Some("C=see"));
        assert!(env_arg("=x").is_err());
        assert_eq!(label_arg("a.b=c=d").unwrap(), ("a.b".into(), "c=d".into()));
        assert_eq!(label_arg("flag").unwrap(), ("flag".into(), "".into()));
        assert!(label_arg("=x").is_err());
        assert!(label_arg("a b=1").is_err());
    }

    proptest! {
        /// Any bytes parse or are refused; what is kept is KEY=VALUE with a clean key.
        #[test]
        fn any_file_parses_or_fails_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(lines) = parse(&bytes, Bare::Dropped) {
                for l in lines {
                    let (k, _) = l.split_once('=').expect("a value");
                    prop_assert!(!k.is_empty() && !k.contains([' ', '\t']));
                }
            }
        }

        #[test]
        fn any_label_parses_or_fails_cleanly(s in "\\PC{0,20}") {
            if let Ok((k, _)) = label_arg(&s) {
                prop_assert!(!k.is_empty() && !k.contains([' ', '\t']));
            }
        }
    }
}
