//! Applies image layers (tar streams) to a directory, with OCI whiteouts.
//!
//! hx runs as root in dom0, so nothing here trusts the archive: every name is resolved component
//! by component with lstat, no parent may be a symlink, nothing is created outside the target,
//! and `tar`'s own unpack is never used.
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::tarstream::{Entry, TarStream};
use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Applies one layer. `layer` names it in errors (its digest).
pub struct LayerApplier<'a> {
    root: &'a Path,
    layer: String,
    /// Paths this layer created: an opaque marker does not hide them.
    created: HashSet<PathBuf>,
    preserve_owner: bool,
    limits: Limits,
    image_budget: Option<(String, u64)>,
}

/// What applying a layer read: the sha256 of its uncompressed stream (its diff_id) and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub diff_id: Digest,
    pub bytes: u64,
}

impl<'a> LayerApplier<'a> {
    pub fn new(root: &'a Path, layer: &str) -> Self {
        LayerApplier {
            root,
            layer: layer.to_string(),
            created: HashSet::new(),
            preserve_owner: nix::unistd::geteuid().is_root(),
            limits: Limits::default(),
            image_budget: None,
        }
    }

    fn unsafe_entry(&self, entry: &Path, reason: &str) -> Error {
        Error::UnsafeEntry {
            layer: self.layer.clone(),
            entry: entry.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn bad(&self, entry: &Path, reason: impl std::fmt::Display) -> Error {
        Error::BadLayer {
            layer: self.layer.clone(),
            entry: entry.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn io(&self, entry: &Path, e: io::Error) -> Error {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            return Error::NoSpace {
                path: self.root.to_path_buf(),
                need: 0,
                free: 0,
            };
        }
        self.bad(entry, e)
    }

    /// Bounds the layer by `limits` (the defaults otherwise).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also bounds the layer by what is left of its image's budget.
    pub fn with_image_budget(mut self, image: &str, left: u64) -> Self {
        self.image_budget = Some((image.to_string(), left));
        self
    }

    /// Applies the tar stream `reader`; returns its diff_id and length.
    pub fn apply<R: Read>(&mut self, reader: R) -> Result<Applied> {
        let mut stream = TarStream::new(reader, &self.layer, self.limits);
        if let Some((image, left)) = &self.image_budget {
            stream = stream.image_budget(image, *left);
        }
        while let Some(entry) = stream.next_entry()? {
            let raw = PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path));
            self.apply_entry(&raw, &entry, &mut stream)?;
        }
        let (diff_id, bytes) = stream.finish()?;
        Ok(Applied { diff_id, bytes })
    }

    fn apply_entry<R: Read>(
        &mut self,
        raw: &Path,
        entry: &Entry,
        stream: &mut TarStream<R>,
    ) -> Result<()> {
        let Some(rel) = clean_name(raw).map_err(|r| self.unsafe_entry(raw, r))? else {
            return Ok(()); // the root itself ("./")
        };
        let file_name = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let parent = self.ensure_dir_chain(raw, &parent_rel)?;

        if file_name == OPAQUE {
            return self.opaque(raw, &parent_rel, &parent);
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.unsafe_entry(raw, "invalid whiteout name"));
            }
            let target = parent.join(hidden);
            return self.remove_path(raw, &target);
        }

        let dest = parent.join(&file_name);
        let header = &entry.header;
        let kind = header.entry_type();
        let link_name = || {
            entry
                .link
                .as_ref()
                .filter(|l| !l.is_empty())
                .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
        };
        let existing = fs::symlink_metadata(&dest).ok();
        // A directory over an existing directory keeps its contents; anything else replaces.
        if let Some(m) = &existing {
            if !(kind.is_dir() && m.is_dir()) {
                self.remove_path(raw, &dest)?;
            }
        }
        let mode = header.mode().map_err(|e| self.bad(raw, e))? & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&dest).map_err(|e| self.io(raw, e))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| self.io(raw, e))?;
                if let Err(e) = io::copy(&mut stream.data(), &mut f) {
                    return Err(match crate::tarstream::into_error(e) {
                        Ok(limit) => limit,
                        Err(e) => self.io(raw, e),
                    });
                }
            }
            tar::EntryType::Symlink => {
                let target = link_name().ok_or_else(|| self.bad(raw, "symlink without target"))?;
                if escapes(&parent_rel, &target) {
                    return Err(self.unsafe_entry(
                        raw,
                        &format!(
                            "symlink target {:?} points outside the rootfs",
                            target.display().to_string()
                        ),
                    ));
                }
                std::os::unix::fs::symlink(&target, &dest).map_err(|e| self.io(raw, e))?;
            }
            tar::EntryType::Link => {
                let target_raw =
                    link_name().ok_or_else(|| self.bad(raw, "hardlink without target"))?;
                let target_rel = clean_name(&target_raw)
                    .map_err(|r| {
                        self.unsafe_entry(
                            raw,
                            &format!(
                                "hardlink target {:?}: {r}",
                                target_raw.display().to_string()
                            ),
                        )
                    })?
                    .ok_or_else(|| self.unsafe_entry(raw, "hardlink to the root"))?;
                let target_parent =
                    self.existing_dir_chain(raw, target_rel.parent().unwrap_or(Path::new("")))?;
                let target = target_parent.join(target_rel.file_name().unwrap());
                let m = fs::symlink_metadata(&target).map_err(|_| {
                    self.bad(
                        raw,
                        format!(
                            "hardlink target {:?} does not exist",
                            target_rel.display().to_string()
                        ),
                    )
                })?;
                if m.is_dir() {
                    return Err(self.unsafe_entry(raw, "hardlink to a directory"));
                }
                fs::hard_link(&target, &dest).map_err(|e| self.io(raw, e))?;
                self.created.insert(rel.clone());
                return Ok(()); // a hardlink shares the target's metadata
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let dev = match (header.device_major(), header.device_minor()) {
                    (Ok(Some(ma)), Ok(Some(mi))) => libc::makedev(ma, mi),
                    _ => 0,
                };
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let c = cstr(&dest);
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), fmt | 0o600, dev) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EPERM) && !self.preserve_owner {
                        return Ok(()); // unprivileged: device nodes cannot be made; skip like rootless tools
                    }
                    return Err(self.io(raw, e));
                }
            }
            other => return Err(self.bad(raw, format!("unsupported entry type {other:?}"))),
        }
        self.created.insert(rel.clone());
        self.set_metadata(raw, &dest, entry, mode, kind)
    }

    fn set_metadata(
        &self,
        raw: &Path,
        dest: &Path,
        entry: &Entry,
        mode: u32,
        kind: tar::EntryType,
    ) -> Result<()> {
        let header = &entry.header;
        let c = cstr(dest);
        if self.preserve_owner {
            let uid = header.uid().map_err(|e| self.bad(raw, e))? as libc::uid_t;
            let gid = header.gid().map_err(|e| self.bad(raw, e))? as libc::gid_t;
            // SAFETY: valid path; lchown never follows the final symlink.
            if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
                return Err(self.io(raw, io::Error::last_os_error()));
            }
        }
        {
            for (key, v) in &entry.pax {
                let Ok(key) = std::str::from_utf8(key) else {
                    continue;
                };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if kind == tar::EntryType::Symlink
                        && !name.starts_with("trusted.")
                        && !name.starts_with("security.")
                    {
                        continue; // user.* xattrs are not allowed on symlinks
                    }
                    let n = CString::new(name).map_err(|_| self.bad(raw, "xattr name with NUL"))?;
                    // SAFETY: valid C strings and buffer.
                    if unsafe {
                        libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0)
                    } != 0
                    {
                        let e = io::Error::last_os_error();
                        if !matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) {
                            return Err(self.io(raw, e));
                        }
                    }
                }
            }
        }
        if kind != tar::EntryType::Symlink {
            // After chown: chown clears setuid/setgid.
            fs::set_permissions(dest, fs::Permissions::from_mode(mode))
                .map_err(|e| self.io(raw, e))?;
        }
        let mtime = header.mtime().unwrap_or(0) as i64;
        let times = [
            libc::timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        ];
        // SAFETY: valid path and two timespecs.
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        Ok(())
    }

    /// Walks `rel` from the root, creating missing directories; refuses symlinks and non-directories.
    fn ensure_dir_chain(&mut self, raw: &Path, rel: &Path) -> Result<PathBuf> {
        let mut cur = self.root.to_path_buf();
        let mut cur_rel = PathBuf::new();
        for comp in rel.components() {
            cur.push(comp);
            cur_rel.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(
                        raw,
                        &format!(
                            "parent {:?} is a symlink (a write through it would leave the rootfs)",
                            cur_rel.display().to_string()
                        ),
                    ))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(self.bad(
                        raw,
                        format!(
                            "parent {:?} is not a directory",
                            cur_rel.display().to_string()
                        ),
                    ))
                }
                Err(_) => {
                    fs::create_dir(&cur).map_err(|e| self.io(raw, e))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(|e| self.io(raw, e))?;
                }
            }
        }
        Ok(cur)
    }

    /// Like ensure_dir_chain but creates nothing (hardlink targets must exist).
    fn existing_dir_chain(&self, raw: &Path, rel: &Path) -> Result<PathBuf> {
        let mut cur = self.root.to_path_buf();
        for comp in rel.components() {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(raw, "hardlink target goes through a symlink"))
                }
                _ => {
                    return Err(self.bad(
                        raw,
                        format!(
                            "hardlink target directory {:?} does not exist",
                            rel.display().to_string()
                        ),
                    ))
                }
            }
        }
        Ok(cur)
    }

    fn remove_path(&self, raw: &Path, target: &Path) -> Result<()> {
        match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(target).map_err(|e| self.io(raw, e)),
            Ok(_) => fs::remove_file(target).map_err(|e| self.io(raw, e)),
            Err(_) => Ok(()),
        }
    }

    fn opaque(&self, raw: &Path, dir_rel: &Path, dir: &Path) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(|e| self.io(raw, e))? {
            let entry = entry.map_err(|e| self.io(raw, e))?;
            if self.created.contains(&dir_rel.join(entry.file_name())) {
                continue;
            }
            self.remove_path(raw, &entry.path())?;
        }
        Ok(())
    }
}

/// Normalises an archive name to a relative path of normal components.
/// `Ok(None)` is the root itself; `Err` names why the entry is unsafe.
pub fn clean_name(raw: &Path) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.as_os_str().as_bytes().contains(&0) {
        return Err("name contains NUL");
    }
    let mut out = PathBuf::new();
    for comp in raw.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("name contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute name"),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Whether a relative symlink target, resolved lexically from `dir` (relative to the root),
/// climbs above the root. Absolute targets resolve inside the guest's root: fine.
fn escapes(dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = dir.components().count() as i64;
    for comp in target.components() {
        match comp {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths from the archive have no NUL")
}

/// Opens a layer blob as a tar stream, decompressing by media type.
pub fn open_layer(path: &Path, media_type: &str) -> Result<Box<dyn Read>> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let f = io::BufReader::with_capacity(1 << 20, f);
    match crate::manifest::layer_compression(media_type) {
        Some(crate::manifest::Compression::None) => Ok(Box::new(f)),
        Some(crate::manifest::Compression::Gzip) => {
            Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
        }
        None => Err(Error::UnsupportedMediaType {
            what: format!("layer {}", path.display()),
            media_type: media_type.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(
            clean_name(Path::new("./a/b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(clean_name(Path::new("./")).unwrap(), None);
        assert!(clean_name(Path::new("../x")).is_err());
        assert!(clean_name(Path::new("a/../../x")).is_err());
        assert!(clean_name(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn symlink_escape() {
        assert!(!escapes(Path::new("bin"), Path::new("busybox")));
        assert!(!escapes(Path::new("usr/bin"), Path::new("../lib/x")));
        assert!(!escapes(Path::new("a"), Path::new("/etc/passwd")));
        assert!(escapes(Path::new(""), Path::new("../etc")));
        assert!(escapes(Path::new("a/b"), Path::new("../../../etc")));
    }
}
