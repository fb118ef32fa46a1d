//! `hx cp`: a path as a tar stream and back, with docker cp's placement rules. Used on both
//! sides (pv-init packs and unpacks inside the container, hx on the host), so unpacking treats
//! the stream as hostile: every entry under one top-level name, no absolute or `..` paths, no
//! write through a symlink (tar's `unpack_in` checks each parent), no device nodes, fifos or
//! hard links, no setuid/setgid bits, at most MAX_ENTRIES entries and MAX_BYTES of content.
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

pub const MAX_ENTRIES: u64 = 1_000_000;
pub const MAX_BYTES: u64 = 64 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("could not find the file {0}")]
    NotFound(String),
    /// The error's text escaped: tar's own messages quote names from the stream.
    #[error("{0}: {1}")]
    Io(String, String),
    #[error("archive entry {0:?}: {1}")]
    BadEntry(String, &'static str),
    #[error("archive: more than {MAX_ENTRIES} entries or {MAX_BYTES} bytes")]
    TooBig,
    #[error("destination {0}: {1}")]
    Destination(String, &'static str),
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> CopyError + '_ {
    move |e| {
        CopyError::Io(
            what.display().to_string(),
            e.to_string().escape_debug().to_string(),
        )
    }
}

/// Writes `src` as a tar stream: one top-level entry named after `src` (its contents only, as
/// `.`, when `src` ends in `/.`). Symlinks are archived as links, never followed.
pub fn pack(src: &str, out: impl Write) -> Result<(), CopyError> {
    let contents_only = src.ends_with("/.");
    let path = Path::new(src);
    let meta = fs::symlink_metadata(path).map_err(|_| CopyError::NotFound(src.to_string()))?;
    let name: PathBuf = if contents_only {
        PathBuf::from(".")
    } else {
        PathBuf::from(
            path.file_name()
                .unwrap_or_else(|| std::ffi::OsStr::new(".")),
        )
    };
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(&name, path).map_err(io(path))?;
    } else {
        b.append_path_with_name(path, &name).map_err(io(path))?;
    }
    b.into_inner()
        .map_err(io(path))?
        .flush()
        .map_err(io(path))?;
    Ok(())
}

/// Unpacks a `pack` stream to `dest` the way docker cp places things: into `dest` when it is
/// a directory (the top-level entry keeps its name; `.` spreads the contents), else as `dest`
/// itself (its parent must exist). Returns the number of entries skipped (special files).
pub fn unpack(input: impl Read, dest: &Path) -> Result<u64, CopyError> {
    let dest_is_dir = fs::metadata(dest).is_ok_and(|m| m.is_dir());
    let parent = if dest_is_dir {
        dest.to_path_buf()
    } else {
        let p = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !fs::metadata(p).is_ok_and(|m| m.is_dir()) {
            return Err(CopyError::Destination(
                dest.display().to_string(),
                "its parent directory does not exist",
            ));
        }
        p.to_path_buf()
    };
    // Unpacked beside the destination first: a broken stream leaves nothing half-placed.
    let staging = tempfile::Builder::new()
        .prefix(".hx-cp-")
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let mut archive = tar::Archive::new(input);
    let mut top: Option<std::ffi::OsString> = None;
    let (mut entries, mut bytes, mut skipped) = (0u64, 0u64, 0u64);
    let mut modes: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries().map_err(io(dest))? {
        let mut entry = entry.map_err(io(dest))?;
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > MAX_ENTRIES || bytes > MAX_BYTES {
            return Err(CopyError::TooBig);
        }
        let path = entry.path().map_err(io(dest))?.into_owned();
        let shown = path.display().to_string();
        let mut comps = path
            .components()
            .filter(|c| !matches!(c, Component::CurDir));
        let first = match comps.next() {
            Some(Component::Normal(n)) => n.to_os_string(),
            None if top.is_none() || top.as_deref() == Some(std::ffi::OsStr::new(".")) => {
                std::ffi::OsString::from(".")
            }
            _ => return Err(CopyError::BadEntry(shown, "not a relative path")),
        };
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(CopyError::BadEntry(shown, "not a relative path"));
        }
        match &top {
            None => top = Some(first),
            Some(t) if *t == first || t == "." => {}
            Some(_) => return Err(CopyError::BadEntry(shown, "outside the copied path")),
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            skipped += 1;
            continue;
        }
        let mode = entry.header().mode().map_err(io(dest))? & 0o777;
        entry.set_preserve_permissions(false);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        if !entry.unpack_in(staging.path()).map_err(io(dest))? {
            return Err(CopyError::BadEntry(shown, "outside the copied path"));
        }
        if !kind.is_symlink() {
            modes.push((staging.path().join(&path), mode));
        }
    }
    // Modes last and deepest first: a read-only directory must not stop its own children.
    modes.sort_by_key(|m| std::cmp::Reverse(m.0.components().count()));
    for (p, mode) in &modes {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(*mode)).map_err(io(p))?;
    }
    let Some(top) = top else {
        return Err(CopyError::BadEntry(String::new(), "empty archive"));
    };
    place(staging.path(), &top, dest, dest_is_dir)?;
    Ok(skipped)
}

/// Moves what was unpacked in `staging` to its place.
fn place(
    staging: &Path,
    top: &std::ffi::OsStr,
    dest: &Path,
    dest_is_dir: bool,
) -> Result<(), CopyError> {
    let move_into = |from: &Path, to: &Path| -> Result<(), CopyError> {
        if fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) && from.is_dir() {
            // Merging into an existing directory, as docker does.
            for e in fs::read_dir(from).map_err(io(from))? {
                let e = e.map_err(io(from))?;
                move_one(&e.path(), &to.join(e.file_name()))?;
            }
            Ok(())
        } else {
            move_one(from, to)
        }
    };
    if top == "." {
        if !dest_is_dir {
            fs::create_dir(dest).map_err(io(dest))?;
        }
        return move_into(staging, dest);
    }
    let from = staging.join(top);
    if dest_is_dir {
        move_into(&from, &dest.join(top))
    } else {
        move_into(&from, dest)
    }
}

fn move_one(from: &Path, to: &Path) -> Result<(), CopyError> {
    let from_dir = fs::symlink_metadata(from).is_ok_and(|m| m.is_dir());
    match fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() && from_dir => {
            for e in fs::read_dir(from).map_err(io(from))? {
                let e = e.map_err(io(from))?;
                move_one(&e.path(), &to.join(e.file_name()))?;
            }
            return Ok(());
        }
        Ok(m) if m.is_dir() => {
            return Err(CopyError::Destination(
                to.display().to_string(),
                "cannot overwrite a directory with a non-directory",
            ))
        }
        Ok(_) if from_dir => {
            return Err(CopyError::Destination(
                to.display().to_string(),
                "cannot overwrite a non-directory with a directory",
            ))
        }
        _ => {}
    }
    fs::rename(from, to).map_err(io(to))
}
