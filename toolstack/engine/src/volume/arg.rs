//! `-v` in docker's syntax: a host path, a named volume or an anonymous one, and a target.
use super::{valid_name, VolumeError};
use std::path::PathBuf;

/// `-v` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Host(PathBuf),
    Named(String),
    Anonymous,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeArg {
    pub source: Source,
    pub target: String,
    pub readonly: bool,
}

/// `/host/path:/target[:ro|rw]`, `name:/target[:ro|rw]`, `/target` (anonymous).
pub fn parse_arg(s: &str) -> anyhow::Result<VolumeArg> {
    let bad = |why: &str| anyhow::anyhow!("invalid volume -v {s:?}: {why}");
    let parts: Vec<&str> = s.split(':').collect();
    let (src, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [t, m] if *m == "ro" || *m == "rw" => ("", *t, *m),
        [a, b] => (*a, *b, ""),
        [a, b, m] => (*a, *b, *m),
        _ => return Err(bad("use /host/dir:/path[:ro], NAME:/path[:ro] or /path")),
    };
    let readonly = match mode {
        "" | "rw" => false,
        "ro" => true,
        m => return Err(bad(&format!("mode {m:?}: ro or rw"))),
    };
    if !target.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let target = normalize(target);
    if target == "/" {
        return Err(bad("cannot mount over the container's root"));
    }
    let source = if src.is_empty() {
        Source::Anonymous
    } else if src.starts_with('/') {
        Source::Host(PathBuf::from(src))
    } else if valid_name(src) {
        Source::Named(src.to_string())
    } else {
        return Err(VolumeError::BadName(src.into()).into());
    };
    Ok(VolumeArg {
        source,
        target,
        readonly,
    })
}

/// `/a//b/../c/` → `/a/c` (lexically: the path is inside the container, not on the host).
pub(super) fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}
