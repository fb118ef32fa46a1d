//! `hx export` and `hx commit`, packed in the guest: the container's whole filesystem (its
//! volumes and the kernel's filesystems as empty directories, like docker export), or the
//! writable layer's changes as an OCI layer (overlayfs' whiteouts — character devices 0:0 and
//! directories marked opaque — become `.wh.NAME` and `.wh..wh..opq` entries). Entries are
//! relative paths in name order; symlinks are archived as links, never followed.
use crate::copy::CopyError;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The overlay's upper directory, opened before the switch to the container's root hides it.
static UPPER: OnceLock<OwnedFd> = OnceLock::new();

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// The files pv-init writes into the upper at each start (mounts.rs): docker bind-mounts its
/// own, so its commits never carry them, and neither do hx's.
const GENERATED: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// Keeps a handle on `dir` (the upper directory) for [`upper_diff`]; close-on-exec, so no
/// workload inherits it.
pub fn keep_upper(dir: &Path) -> std::io::Result<()> {
    use nix::fcntl::{open, OFlag};
    let fd = open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(std::io::Error::from)?;
    let _ = UPPER.set(fd);
    Ok(())
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> CopyError + '_ {
    move |e| {
        CopyError::Io(
            what.display().to_string(),
            e.to_string().escape_debug().to_string(),
        )
    }
}

/// The container's filesystem from `/` (docker export).
pub fn export_root(out: impl Write) -> Result<(), CopyError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let skip = mount_points(&mountinfo);
    pack_tree(Path::new("/"), out, Mode::Export { skip: &skip })
}

/// The writable layer's changes, as an OCI layer (docker commit); with `pause`, every process
/// but pv-init stopped meanwhile (docker freezes the container's cgroup), so the layer is one
/// moment's.
pub fn upper_diff(out: impl Write, pause: bool) -> Result<(), CopyError> {
    let fd = UPPER.get().ok_or_else(|| {
        CopyError::Io(
            "the writable layer".into(),
            "not kept at boot (an older pv-init?)".into(),
        )
    })?;
    let root = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let _paused = pause.then(Paused::all);
    pack_tree(&root, out, Mode::Diff)
}

/// The guest's processes stopped with SIGSTOP (pv-init and its threads excepted; kernel threads
/// ignore it), continued when dropped.
struct Paused(Vec<nix::unistd::Pid>);

impl Paused {
    fn all() -> Paused {
        use nix::sys::signal::{kill, Signal};
        let me = std::process::id() as i32;
        let mut stopped = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me || pid == 1 || is_kernel_thread(pid) {
                continue;
            }
            let pid = nix::unistd::Pid::from_raw(pid);
            if kill(pid, Signal::SIGSTOP).is_ok() {
                stopped.push(pid);
            }
        }
        Paused(stopped)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// Kernel threads have no command line.
fn is_kernel_thread(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
}

pub enum Mode<'a> {
    /// Directories in `skip` (absolute, as in mountinfo) are archived without their contents.
    Export { skip: &'a HashSet<PathBuf> },
    /// overlayfs upper: whiteouts become OCI whiteout entries.
    Diff,
}

/// Every mount point but `/`, from /proc/self/mountinfo's fifth field (octal escapes undone).
pub fn mount_points(mountinfo: &str) -> HashSet<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_octal)
        .filter(|p| p != "/")
        .map(PathBuf::from)
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if v <= 255 {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Packs the tree under `root` (its contents; `root` itself is not an entry).
pub fn pack_tree(root: &Path, out: impl Write, mode: Mode) -> Result<(), CopyError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let mut links = HashMap::new();
    walk(
        &mut b,
        root,
        Path::new(""),
        Path::new("/"),
        &mode,
        &mut links,
    )?;
    b.into_inner()
        .map_err(io(root))?
        .flush()
        .map_err(io(root))?;
    Ok(())
}

/// Files with more than one name seen so far, by (device, inode): the next names become
/// hard-link entries (busybox's hundreds of applets are one file).
type Links = HashMap<(u64, u64), PathBuf>;

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    abs: &Path,
    mode: &Mode,
    links: &mut Links,
) -> Result<(), CopyError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let (rel, abs) = (rel.join(&name), abs.join(&name));
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        if let Mode::Diff = mode {
            if GENERATED.iter().any(|g| abs == Path::new(g)) {
                continue;
            }
            if ft.is_char_device() && meta.rdev() == 0 {
                let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                empty_file(b, &rel.with_file_name(wh), &meta).map_err(io(&path))?;
                continue;
            }
        }
        if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &rel, first).map_err(io(&path))?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), rel.clone());
        }
        b.append_path_with_name(&path, &rel).map_err(io(&path))?;
        if !ft.is_dir() {
            continue;
        }
        match mode {
            Mode::Export { skip } if skip.contains(&abs) => {}
            Mode::Diff if is_opaque(&path) => {
                empty_file(b, &rel.join(OPAQUE), &meta).map_err(io(&path))?;
                walk(b, &path, &rel, &abs, mode, links)?;
            }
            _ => walk(b, &path, &rel, &abs, mode, links)?,
        }
    }
    Ok(())
}

fn empty_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    like: &fs::Metadata,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(like.mtime().max(0) as u64);
    b.append_data(&mut h, path, std::io::empty())
}

/// overlayfs marks a directory that hides the lower one's contents with this xattr.
fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut v = [0u8; 4];
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        // SAFETY: both strings are NUL-terminated and `v` is writable for its length.
        let n =
            unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if n == 1 && v[0] == b'y' {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn a_diff_leaves_out_the_files_pv_init_writes_at_start() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        for f in ["hosts", "hostname", "resolv.conf", "motd"] {
            fs::write(d.path().join("etc").join(f), "x\n").unwrap();
        }
        let mut out = Vec::new();
        pack_tree(d.path(), &mut out, Mode::Diff).unwrap();
        assert_eq!(
            entries(&out),
            [
                ("etc".to_string(), tar::EntryType::Directory),
                ("etc/motd".into(), tar::EntryType::Regular),
            ]
        );
    }

    #[test]
    fn export_keeps_mount_points_empty_and_links_unfollowed() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        fs::create_dir_all(d.path().join("data/inside")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", d.path().join("link")).unwrap();
        fs::hard_link(d.path().join("etc/passwd"), d.path().join("etc/passwd2")).unwrap();
        let skip: HashSet<PathBuf> = [PathBuf::from("/data")].into();
        let mut out = Vec::new();
        pack_tree(d.path(), &mut out, Mode::Export { skip: &skip }).unwrap();
        assert_eq!(
            entries(&out),
            [
                ("data".to_string(), tar::EntryType::Directory),
                ("etc".into(), tar::EntryType::Directory),
                ("etc/passwd".into(), tar::EntryType::Regular),
                ("etc/passwd2".into(), tar::EntryType::Link),
                ("link".into(), tar::EntryType::Symlink),
            ]
        );
    }

    #[test]
    fn mountinfo_fields_unescaped() {
        let mi = "22 1 0:21 / / rw - overlay overlay rw\n\
                  23 22 0:5 / /proc rw - proc proc rw\n\
                  24 22 8:2 / /my\\040data rw - ext4 /dev/vdc rw\n";
        let m = mount_points(mi);
        assert!(m.contains(Path::new("/proc")) && m.contains(Path::new("/my data")));
        assert!(!m.contains(Path::new("/")));
    }

    proptest::proptest! {
        #[test]
        fn any_mountinfo_parses(s in "\\PC{0,300}") {
            let _ = mount_points(&s);
        }
    }
}
