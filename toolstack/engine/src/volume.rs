//! Volumes, the same for every backend (docs/volumes.md).
//!
//! - Named and anonymous volumes are ext4 disk images in the store
//!   (`<root>/volumes/<name>/{volume.json,disk.img}`, sparse): every backend attaches them as
//!   one more disk (QEMU virtio-blk, Xen blkback), so their data outlives containers.
//! - Host directories (`-v /dir:/path`) are shared, not copied: `Share`s, which QEMU serves
//!   over virtio-9p. A Xen backend serves them over Xen's 9pfs transport (a QEMU 9pfs backend
//!   in dom0) or, read-only, as a per-run ext4 snapshot of the directory (`snapshot_dir`).
use crate::backend::Disk;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_SIZE: u64 = 10 << 30;
/// Volumes plus host directories one container may have. QEMU's microvm has 24 virtio-mmio
/// slots and hx itself takes up to five (rootfs, config, channels, NIC, writable layer).
pub const MAX_MOUNTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by container {by}")]
    InUse { name: String, by: String },
    #[error("invalid volume name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, 2-128 characters (host directories need an absolute path)")]
    BadName(String),
    #[error(
        "too many volumes and host directories: {0} (at most {MAX_MOUNTS}, image VOLUMEs included)"
    )]
    TooMany(usize),
}

impl VolumeError {
    pub fn exit_code(&self) -> i32 {
        match self {
            VolumeError::NotFound(_) => 1,
            VolumeError::InUse { .. } => 3,
            VolumeError::BadName(_) | VolumeError::TooMany(_) => 125,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: String,
    /// Capacity of the disk image (it is sparse: the host only pays for what is written).
    pub size: u64,
    /// Made for an image VOLUME, not named by the user (`hx rm -v` and `--rm` remove it).
    #[serde(default)]
    pub anonymous: bool,
}

fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The one way from a volume name to a path: names that are not `valid_name` (`a/b`, `..`,
/// `.rm-x`) never reach a path join.
fn volume_dir(root: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    if !valid_name(name) {
        return Err(VolumeError::BadName(name.into()));
    }
    Ok(volumes_dir(root).join(name))
}

pub fn disk_path(root: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    Ok(volume_dir(root, name)?.join("disk.img"))
}

/// docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 128 characters.
pub fn valid_name(n: &str) -> bool {
    n.len() >= 2
        && n.len() <= 128
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub fn get(root: &Path, name: &str) -> Result<Volume, anyhow::Error> {
    let p = volume_dir(root, name)?.join("volume.json");
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(VolumeError::NotFound(name.into()).into())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

pub fn list(root: &Path) -> Vec<Volume> {
    let mut out: Vec<Volume> = std::fs::read_dir(volumes_dir(root))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| get(root, &e.file_name().to_string_lossy()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Prefix of a volume being made: `.new-<pid>-<start>-`, the creating process, so that
/// `sweep` can tell a dead creator's leftover from work in progress.
fn new_prefix() -> String {
    let pid = std::process::id() as i32;
    let start = crate::backend::process_start(pid).unwrap_or(0);
    format!(".new-{pid}-{start}-")
}

/// Removes what killed processes left in the volumes directory: half-made volumes of dead
/// creators and half-removed ones. Under the store lock (removals hold it).
pub fn sweep(root: &Path) {
    let Ok(rd) = std::fs::read_dir(volumes_dir(root)) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let dead = if let Some(rest) = name.strip_prefix(".new-") {
            let mut it = rest.splitn(3, '-');
            let pid = it.next().and_then(|p| p.parse::<i32>().ok());
            let start = it.next().and_then(|s| s.parse::<u64>().ok());
            !crate::backend::process_alive(pid, start)
        } else {
            name.starts_with(".rm-")
        };
        if dead && e.file_type().is_ok_and(|t| t.is_dir()) {
            tracing::info!("removing {}: left by a killed hx", e.path().display());
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!("removing {}: {err}", e.path().display());
            }
        }
    }
}

/// Creates a volume (an existing one of that name is returned as is, like docker). The disk
/// image is built in a temporary directory and renamed into place: a crash leaves no
/// half-made volume.
pub fn create(
    root: &Path,
    name: Option<&str>,
    size: u64,
    anonymous: bool,
) -> anyhow::Result<Volume> {
    let name = match name {
        Some(n) if !valid_name(n) => return Err(VolumeError::BadName(n.into()).into()),
        Some(n) => n.to_string(),
        None => crate::container::new_id(),
    };
    if let Ok(v) = get(root, &name) {
        return Ok(v);
    }
    if size < 16 << 20 {
        bail!("volume size {size} bytes is too small (at least 16m)");
    }
    let dir = volumes_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&new_prefix())
        .tempdir_in(&dir)?;
    let img = tmp.path().join("disk.img");
    std::fs::File::create(&img)?.set_len(size)?;
    // Sparse and quick: inode tables and the journal are not zeroed here, and the guest mounts
    // with noinit_itable so it does not zero them either.
    let out = std::process::Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0",
        ])
        .arg("-L")
        .arg(&name[..name.len().min(16)])
        .arg(&img)
        .output()
        .context("running mkfs.ext4 (apt-get install e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 for volume {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v = Volume {
        name: name.clone(),
        created: crate::container::now_rfc3339(),
        size,
        anonymous,
    };
    std::fs::write(
        tmp.path().join("volume.json"),
        serde_json::to_vec_pretty(&v)?,
    )?;
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, dir.join(&name)) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Created by someone else meanwhile.
        if let Ok(v) = get(root, &name) {
            return Ok(v);
        }
        return Err(e).with_context(|| format!("creating volume {name}"));
    }
    Ok(v)
}

/// Removes a volume; callers check that no container uses it.
pub fn remove(root: &Path, name: &str) -> anyhow::Result<()> {
    get(root, name)?;
    let d = volume_dir(root, name)?;
    // Renamed away first so that a crash midway never leaves a half-removed volume visible
    // (`sweep` finishes the job).
    let gone = volumes_dir(root).join(format!(".rm-{name}"));
    std::fs::rename(&d, &gone).with_context(|| format!("removing {}", d.display()))?;
    std::fs::remove_dir_all(&gone).with_context(|| format!("removing {}", gone.display()))
}

/// Bytes the volume's disk image really occupies on the host.
pub fn used_bytes(root: &Path, name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    disk_path(root, name)
        .ok()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

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
fn normalize(p: &str) -> String {
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

/// What a container has mounted, kept in its state (in-use checks, `hx rm -v`, inspect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `bind` (host path) or `volume` (named or anonymous).
    pub kind: String,
    /// Host path or volume name.
    pub source: String,
    pub target: String,
    pub readonly: bool,
    #[serde(default)]
    pub anonymous: bool,
}

/// A host directory given to the guest by a backend, under a 9p mount tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub path: PathBuf,
    pub readonly: bool,
    pub model: ShareModel,
}

/// Where QEMU's 9p server keeps the owners, modes, device nodes and symlinks the guest gives
/// its files. Both keep them off the host: a file the guest makes is a plain file or
/// directory of QEMU's user, mode 0600/0700, so the guest can plant no setuid file, device
/// node or symlink in a host directory (`none` let it, when hx is root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareModel {
    /// In `user.virtfs.*` extended attributes: invisible, but the directory's filesystem must
    /// take user xattrs (ext4, xfs, btrfs; tmpfs only from Linux 6.6; not ramfs).
    #[default]
    MappedXattr,
    /// In `.virtfs_metadata` directories inside the share: for filesystems without user
    /// xattrs (a ramfs dom0, tmpfs before 6.6, some network filesystems).
    MappedFile,
}

impl ShareModel {
    /// The model `path`'s filesystem can hold: asks for an attribute that is never there,
    /// so the answer is "no such attribute" where user xattrs work and "not supported" where
    /// they do not, without writing anything into the user's directory.
    pub fn for_path(path: &Path) -> ShareModel {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return ShareModel::MappedXattr;
        };
        let name = c"user.virtfs.uid";
        // SAFETY: both strings are NUL-terminated; a zero-size buffer asks for the length only.
        let r = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP) {
            tracing::info!(path = %path.display(), "no user xattrs here: 9p metadata in .virtfs_metadata");
            ShareModel::MappedFile
        } else {
            ShareModel::MappedXattr
        }
    }

    /// QEMU's `security_model` value.
    pub fn as_qemu(self) -> &'static str {
        match self {
            ShareModel::MappedXattr => "mapped-xattr",
            ShareModel::MappedFile => "mapped-file",
        }
    }
}

/// How a backend gives the guest a host directory.
#[derive(Debug, Clone, Copy)]
pub enum HostDirs<'a> {
    /// Live over 9p, `:ro` ones too (QEMU's virtio-9p exports read-only). Single files are
    /// bound into private directories under `into` (the container's directory).
    Share { into: &'a Path },
    /// `:ro` directories become ext4 snapshots taken at start, written into `into` (the
    /// container's directory): Xen's 9pfs backend cannot export read-only, and a read-only
    /// mount the guest made could be remounted by the guest. Read-write ones are shared live
    /// over 9p when `share_rw` (Xen with QEMU in dom0), refused otherwise.
    Snapshot { into: &'a Path, share_rw: bool },
}

/// Everything a run needs for its volumes.
#[derive(Default)]
pub struct Plan {
    pub disks: Vec<Disk>,
    pub shares: Vec<Share>,
    pub mounts: Vec<pv_init::spec::Mount>,
}

/// Resolves `-v` arguments and the image's VOLUMEs into records of what the container will
/// mount, acquiring nothing: anonymous volumes get their names here, so that the container's
/// state can list them before they exist. Missing host directories are made (like docker).
/// `busy(name)` names an active container that has the volume attached, if any: an ext4
/// image must not be mounted by two guests at once.
pub fn resolve(
    args: &[VolumeArg],
    image_volumes: &[String],
    busy: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<MountRecord>> {
    let mut all: Vec<VolumeArg> = args.to_vec();
    for v in image_volumes {
        let t = normalize(v);
        if t != "/" && !all.iter().any(|a| a.target == t) {
            all.push(VolumeArg {
                source: Source::Anonymous,
                target: t,
                readonly: false,
            });
        }
    }
    if all.len() > MAX_MOUNTS {
        return Err(VolumeError::TooMany(all.len()).into());
    }
    let mut records = Vec::new();
    for (i, a) in all.iter().enumerate() {
        if all[..i].iter().any(|b| b.target == a.target) {
            bail!("duplicate mount point {}", a.target);
        }
        let (kind, source, anonymous) = match &a.source {
            Source::Host(p) => {
                if !p.exists() {
                    std::fs::create_dir_all(p)
                        .with_context(|| format!("creating host directory {}", p.display()))?;
                }
                let p = std::fs::canonicalize(p)
                    .with_context(|| format!("host path {}", p.display()))?;
                ("bind", p.display().to_string(), false)
            }
            Source::Named(n) => {
                if !valid_name(n) {
                    return Err(VolumeError::BadName(n.clone()).into());
                }
                if let Some(by) = busy(n) {
                    bail!("volume {n} is attached to running container {by} (an ext4 volume can be mounted by one VM at a time)");
                }
                ("volume", n.clone(), false)
            }
            Source::Anonymous => ("volume", crate::container::new_id(), true),
        };
        records.push(MountRecord {
            kind: kind.into(),
            source,
            target: a.target.clone(),
            readonly: a.readonly,
            anonymous,
        });
    }
    Ok(records)
}

/// Acquires what `resolve` listed: makes missing volumes (mkfs: slow, so callers do this
/// without the store lock), binds single files, takes snapshots. Nothing is undone here on
/// failure: callers record `records` in the container's state first, and the one undo
/// (`runtime::discard`) releases what they name, whoever runs it.
pub fn acquire(
    root: &Path,
    records: &[MountRecord],
    first_disk: u32,
    dirs: HostDirs,
) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    for r in records {
        if r.kind == "bind" {
            add_host_path(r, first_disk, dirs, &mut plan)?;
            continue;
        }
        let vol = create(root, Some(&r.source), DEFAULT_SIZE, r.anonymous)?;
        let path = disk_path(root, &vol.name)?;
        let disk = first_disk + plan.disks.len() as u32;
        if r.readonly {
            replay_journal(&path)?;
        }
        plan.disks.push(Disk {
            path,
            readonly: r.readonly,
            durable: !r.readonly,
        });
        plan.mounts.push(pv_init::spec::Mount {
            source: pv_init::spec::MountSource::Disk {
                disk,
                fstype: "ext4".into(),
            },
            target: r.target.clone(),
            readonly: r.readonly,
            subpath: None,
            copy_up: !r.readonly,
        });
    }
    Ok(plan)
}

/// A single host file goes to the guest as a private directory `<into>/binds/N` holding only a
/// bind mount of it: sharing the file's own directory would hand the guest its siblings too
/// (`-v /etc/hosts:/etc/hosts` would expose all of /etc).
fn bind_file(file: &Path, into: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let d = into.join("binds").join(n.to_string());
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let at = d.join(file.file_name().unwrap_or_default());
    std::fs::File::create(&at).with_context(|| format!("creating {}", at.display()))?;
    use nix::mount::{mount, MsFlags};
    mount(Some(file), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| match e {
        nix::errno::Errno::EPERM => anyhow::anyhow!(
            "-v {}: sharing a single file needs root (hx binds it into a private directory); share its directory instead",
            file.display()
        ),
        e => anyhow::anyhow!("binding {} for the guest: {e}", file.display()),
    })?;
    Ok(d)
}

/// Unmounts the file binds `bind_file` made for a container (the container directory
/// `dir`); before its directory is removed, and safe to call when there are none.
pub fn release_binds(dir: &Path) {
    let binds = dir.join("binds");
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in info.lines() {
        // Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = mp
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\");
        if Path::new(&mp).starts_with(&binds) {
            if let Err(e) = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("unmounting {mp}: {e}");
            }
        }
    }
}

/// Removes a container's directory, releasing its file binds first.
pub fn remove_container_dir(dir: &Path) -> std::io::Result<()> {
    release_binds(dir);
    std::fs::remove_dir_all(dir)
}

/// A host directory or file: shared live over 9p, or as a snapshot disk.
fn add_host_path(
    r: &MountRecord,
    first_disk: u32,
    dirs: HostDirs,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let p = PathBuf::from(&r.source);
    let into = match dirs {
        HostDirs::Snapshot { into, share_rw } if r.readonly || !share_rw => {
            return add_snapshot(r, &p, into, first_disk, plan);
        }
        HostDirs::Snapshot { into, .. } | HostDirs::Share { into } => into,
    };
    let (share_path, subpath) = if p.is_dir() {
        (p.clone(), None)
    } else {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        (bind_file(&p, into, plan.shares.len())?, name)
    };
    let tag = format!("hxfs{}", plan.shares.len());
    let model = ShareModel::for_path(&p);
    plan.shares.push(Share {
        tag: tag.clone(),
        path: share_path,
        readonly: r.readonly,
        model,
    });
    plan.mounts.push(pv_init::spec::Mount {
        source: pv_init::spec::MountSource::Share { tag },
        target: r.target.clone(),
        readonly: r.readonly,
        subpath,
        copy_up: false,
    });
    Ok(())
}

/// A host directory (or file) as a read-only ext4 snapshot disk.
fn add_snapshot(
    a: &MountRecord,
    p: &Path,
    into: &Path,
    first_disk: u32,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    if !a.readonly {
        bail!(
            "-v {}:{}: no 9p backend to share a host directory read-write (on Xen: install qemu-system-xen in dom0); add :ro for a copy taken at start, or use a named volume",
            p.display(),
            a.target
        );
    }
    std::fs::create_dir_all(into)?;
    let disk = first_disk + plan.disks.len() as u32;
    let img = into.join(format!("snapshot-{disk}.img"));
    let subpath = if p.is_dir() {
        snapshot_dir(p, &img)?;
        None
    } else {
        let tmp = tempfile::tempdir_in(into)?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        std::fs::copy(p, tmp.path().join(&name))
            .with_context(|| format!("copying {}", p.display()))?;
        snapshot_dir(tmp.path(), &img)?;
        Some(name)
    };
    plan.disks.push(Disk {
        path: img,
        readonly: true,
        durable: false,
    });
    plan.mounts.push(pv_init::spec::Mount {
        source: pv_init::spec::MountSource::Disk {
            disk,
            fstype: "ext4".into(),
        },
        target: a.target.clone(),
        readonly: true,
        subpath,
        copy_up: false,
    });
    Ok(())
}

/// A read-only disk cannot have its journal replayed by the guest; a VM that was killed leaves
/// one to replay, so the host does it first (no VM has the volume attached: see `busy`).
///
/// The image was written by a guest: it is hostile input to a dom0 tool running as root. So
/// e2fsck runs only when the superblock says a replay is needed (a clean unmount needs none),
/// only for the journal (`-E journal_only`, not a full check), and bounded: 30 s of wall
/// time, 512 MiB of address space, no file growth, no core dump. Bounds stop a hang or a
/// memory blow-up; they do not make a memory-safety bug in e2fsck harmless (docs/volumes.md).
fn replay_journal(img: &Path) -> anyhow::Result<()> {
    if !needs_recovery(img)? {
        return Ok(());
    }
    let size = std::fs::metadata(img)?.len();
    let out = run_bounded(
        std::process::Command::new("e2fsck")
            .args(["-p", "-E", "journal_only"])
            .arg(img),
        std::time::Duration::from_secs(30),
        512 << 20,
        size,
    )
    .context("running e2fsck (apt-get install e2fsprogs)")?;
    // 0: clean, 1: the journal was replayed.
    if !matches!(out.0, Some(0) | Some(1)) {
        let first = out
            .1
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        bail!(
            "volume {} needs repair (e2fsck: {})",
            img.display(),
            first.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

/// The ext4 superblock's "needs recovery" flag (EXT3_FEATURE_INCOMPAT_RECOVER).
fn needs_recovery(img: &Path) -> anyhow::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(img).with_context(|| format!("opening {}", img.display()))?;
    let mut sb = [0u8; 0x64];
    f.seek(SeekFrom::Start(1024))?;
    f.read_exact(&mut sb)
        .with_context(|| format!("reading the superblock of {}", img.display()))?;
    if sb[0x38..0x3a] != [0x53, 0xef] {
        bail!("volume {} is not an ext4 image", img.display());
    }
    let incompat = u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]);
    Ok(incompat & 0x4 != 0)
}

/// Runs a tool on untrusted input with a wall-clock limit and resource limits; returns its
/// exit code (None: killed) and the first 4 KiB of its output.
fn run_bounded(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
    address_space: u64,
    file_size: u64,
) -> anyhow::Result<(Option<i32>, String)> {
    use std::io::{Read, Seek};
    use std::os::unix::process::CommandExt;
    let mut log = tempfile::tempfile()?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: u64| {
                let l = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                if libc::setrlimit(res, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, address_space)?;
            set(libc::RLIMIT_FSIZE, file_size)?;
            set(libc::RLIMIT_CORE, 0)?;
            set(libc::RLIMIT_CPU, limit.as_secs().max(1))?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{:?} took longer than {limit:?}: killed", cmd.get_program());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut text = Vec::new();
    log.rewind()?;
    log.take(4096).read_to_end(&mut text)?;
    Ok((status.code(), String::from_utf8_lossy(&text).into_owned()))
}

/// Removes the anonymous volumes a container made (`hx rm -v`, `--rm`, a failed start).
pub fn remove_anonymous(root: &Path, records: &[MountRecord]) {
    for r in records.iter().filter(|r| r.anonymous) {
        if let Err(e) = remove(root, &r.source) {
            tracing::warn!("removing anonymous volume {}: {e:#}", r.source);
        }
    }
}

/// A read-only ext4 snapshot of a host directory, for backends that cannot share a directory
/// live (Xen without a 9pfs backend in dom0): the guest sees the directory as it was at start.
pub fn snapshot_dir(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let size = (hx_images::rootfs::tree_size(dir) * 5 / 4 + (16 << 20)).div_ceil(4096) * 4096;
    hx_images::rootfs::make_ext4(Some(dir), out, size)
        .with_context(|| format!("snapshotting {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        root: &Path,
        args: &[VolumeArg],
        image_volumes: &[String],
        first_disk: u32,
        busy: &dyn Fn(&str) -> Option<String>,
        dirs: HostDirs,
    ) -> anyhow::Result<Plan> {
        acquire(root, &resolve(args, image_volumes, busy)?, first_disk, dirs)
    }

    #[test]
    fn names_never_reach_a_path_join_unvalidated() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(
            victim.join("volume.json"),
            r#"{"name":"x","created":"","size":1}"#,
        )
        .unwrap();
        for bad in [
            "../victim",
            "a/../../victim",
            "..",
            ".",
            "/abs",
            ".rm-x",
            "x\n",
            "",
            "a",
        ] {
            assert!(
                matches!(
                    get(d.path(), bad)
                        .unwrap_err()
                        .downcast_ref::<VolumeError>(),
                    Some(VolumeError::BadName(_))
                ),
                "{bad:?}"
            );
            assert!(remove(d.path(), bad).is_err(), "{bad:?}");
            assert!(disk_path(d.path(), bad).is_err(), "{bad:?}");
            assert!(
                create(d.path(), Some(bad), 64 << 20, false).is_err(),
                "{bad:?}"
            );
        }
        assert!(victim.join("volume.json").exists());
    }

    #[test]
    fn too_many_image_volumes_are_refused_before_any_is_made() {
        let many: Vec<String> = (0..=MAX_MOUNTS).map(|i| format!("/v{i}")).collect();
        let e = resolve(&[], &many, &|_| None).unwrap_err();
        assert!(e.to_string().contains("too many volumes"), "{e}");
        assert_eq!(
            resolve(&[], &many[..MAX_MOUNTS], &|_| None).unwrap().len(),
            MAX_MOUNTS
        );
    }

    #[test]
    fn sweep_removes_what_dead_processes_left_and_keeps_live_work() {
        let d = tempfile::tempdir().unwrap();
        let vols = d.path().join("volumes");
        let me = std::process::id() as i32;
        let live = format!(
            ".new-{me}-{}-abc",
            crate::backend::process_start(me).unwrap()
        );
        for n in [live.as_str(), ".new-999999999-1-abc", ".rm-data", "kept"] {
            std::fs::create_dir_all(vols.join(n)).unwrap();
        }
        sweep(d.path());
        let mut left: Vec<String> = std::fs::read_dir(&vols)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        left.sort();
        assert_eq!(left, [live.as_str(), "kept"]);
    }

    #[test]
    fn journal_replay_runs_only_when_needed_and_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), Some("clean"), 64 << 20, false).unwrap();
        let img = disk_path(d.path(), "clean").unwrap();
        assert!(!needs_recovery(&img).unwrap());
        replay_journal(&img).unwrap();
        // A guest-written image claiming a journal to replay, whose journal is garbage.
        let bad = d.path().join("bad.img");
        std::fs::copy(&img, &bad).unwrap();
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
            f.seek(SeekFrom::Start(1024 + 0x60)).unwrap();
            let mut sb = [0u8; 4];
            sb.copy_from_slice(&std::fs::read(&img).unwrap()[1024 + 0x60..1024 + 0x64]);
            let v = u32::from_le_bytes(sb) | 0x4;
            f.write_all(&v.to_le_bytes()).unwrap();
        }
        assert!(needs_recovery(&bad).unwrap());
        let _ = replay_journal(&bad);
        let not_ext4 = d.path().join("zero.img");
        std::fs::write(&not_ext4, vec![0u8; 4096]).unwrap();
        assert!(replay_journal(&not_ext4)
            .unwrap_err()
            .to_string()
            .contains("not an ext4 image"));
        // The bounds: wall time and address space.
        let t = std::time::Instant::now();
        let e = run_bounded(
            std::process::Command::new("sleep").arg("30"),
            std::time::Duration::from_millis(300),
            64 << 20,
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        let (code, out) = run_bounded(
            std::process::Command::new("dd").args([
                "if=/dev/zero",
                "of=/dev/null",
                "bs=600M",
                "count=1",
            ]),
            std::time::Duration::from_secs(10),
            512 << 20,
            0,
        )
        .unwrap();
        assert_ne!(code, Some(0), "dd got 600M under a 512M limit: {out}");
    }

    #[test]
    fn parses_docker_forms() {
        let a = parse_arg("/srv/www:/usr/share/nginx/html:ro").unwrap();
        assert_eq!(
            a,
            VolumeArg {
                source: Source::Host("/srv/www".into()),
                target: "/usr/share/nginx/html".into(),
                readonly: true
            }
        );
        assert_eq!(
            parse_arg("data:/var/lib/x").unwrap().source,
            Source::Named("data".into())
        );
        assert_eq!(
            parse_arg("/cache").unwrap(),
            VolumeArg {
                source: Source::Anonymous,
                target: "/cache".into(),
                readonly: false
            }
        );
        assert!(parse_arg("/cache:ro").unwrap().readonly);
        assert_eq!(parse_arg("/a//b/../c/").unwrap().target, "/a/c");
        for bad in [
            "rel/dir:/x",
            "data:x",
            "/h:/c:rx",
            "/h:/",
            "a:b:c:d",
            "-x:/y",
        ] {
            assert!(parse_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_and_remove_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let v = create(d.path(), Some("data"), 64 << 20, false).unwrap();
        assert!(disk_path(d.path(), "data").unwrap().is_file());
        assert_eq!(
            create(d.path(), Some("data"), 32 << 20, false)
                .unwrap()
                .size,
            v.size
        );
        assert_eq!(list(d.path()).len(), 1);
        remove(d.path(), "data").unwrap();
        assert!(list(d.path()).is_empty());
        assert_eq!(
            std::fs::read_dir(d.path().join("volumes")).unwrap().count(),
            0
        );
        assert!(get(d.path(), "data")
            .unwrap_err()
            .to_string()
            .contains("no such volume: data"));
        assert!(create(d.path(), Some("a/b"), 64 << 20, false).is_err());
    }

    #[test]
    fn snapshots_for_backends_without_9p() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("index.html"), "hi").unwrap();
        let into = d.path().join("c1");
        let ro = parse_arg(&format!("{}:/www:ro", host.path().display())).unwrap();
        let p = plan(
            d.path(),
            &[ro],
            &[],
            2,
            &|_| None,
            HostDirs::Snapshot {
                into: &into,
                share_rw: false,
            },
        )
        .unwrap();
        assert!(p.shares.is_empty());
        assert_eq!(p.disks.len(), 1);
        assert!(p.disks[0].readonly && p.disks[0].path.starts_with(&into));
        let rw = parse_arg(&format!("{}:/www", host.path().display())).unwrap();
        let e = plan(
            d.path(),
            &[rw],
            &[],
            2,
            &|_| None,
            HostDirs::Snapshot {
                into: &into,
                share_rw: false,
            },
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("add :ro"), "{e}");
    }

    #[test]
    fn xen_with_9pfs_shares_read_write_dirs_and_snapshots_read_only_ones() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let into = d.path().join("c1");
        let rw = parse_arg(&format!("{}:/data", host.path().display())).unwrap();
        let ro = parse_arg(&format!("{}:/www:ro", host.path().display())).unwrap();
        let p = plan(
            d.path(),
            &[rw, ro],
            &[],
            2,
            &|_| None,
            HostDirs::Snapshot {
                into: &into,
                share_rw: true,
            },
        )
        .unwrap();
        assert_eq!(p.shares.len(), 1);
        assert!(!p.shares[0].readonly);
        assert_eq!(
            p.shares[0].path,
            std::fs::canonicalize(host.path()).unwrap()
        );
        assert_eq!(p.disks.len(), 1);
        assert!(p.disks[0].readonly && p.disks[0].path.starts_with(&into));
        let targets: Vec<_> = p
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.readonly))
            .collect();
        assert_eq!(targets, [("/data", false), ("/www", true)]);
    }

    #[test]
    fn plan_orders_disks_and_adds_image_volumes() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let args = vec![
            parse_arg(&format!("{}:/www:ro", host.path().display())).unwrap(),
            parse_arg("data:/data").unwrap(),
        ];
        let p = plan(
            d.path(),
            &args,
            &["/data".into(), "/cache".into()],
            2,
            &|_| None,
            HostDirs::Share { into: d.path() },
        )
        .unwrap();
        assert_eq!(p.shares.len(), 1);
        assert_eq!(p.disks.len(), 2);
        let records = resolve(&args, &["/data".into(), "/cache".into()], &|_| None).unwrap();
        assert_eq!(
            records
                .iter()
                .map(|r| (r.target.as_str(), r.anonymous))
                .collect::<Vec<_>>(),
            vec![("/www", false), ("/data", false), ("/cache", true)]
        );
        assert!(matches!(
            p.mounts[2].source,
            pv_init::spec::MountSource::Disk { disk: 3, .. }
        ));
        let e = plan(
            d.path(),
            &[parse_arg("data:/d").unwrap()],
            &[],
            2,
            &|_| Some("web".into()),
            HostDirs::Share { into: d.path() },
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("running container web"), "{e}");
        assert!(plan(
            d.path(),
            &[parse_arg("data:/d").unwrap(), parse_arg("/d").unwrap()],
            &[],
            2,
            &|_| None,
            HostDirs::Share { into: d.path() },
        )
        .is_err());
    }

    #[test]
    fn shares_keep_metadata_in_xattrs_where_the_filesystem_takes_them_and_in_files_elsewhere() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(ShareModel::for_path(d.path()), ShareModel::MappedXattr);
        assert_eq!(ShareModel::MappedXattr.as_qemu(), "mapped-xattr");
        // ramfs takes no xattrs at all (a ramfs dom0 is the Xen lab's): CI runs as root.
        assert_eq!(
            nix::unistd::geteuid().as_raw(),
            0,
            "this test mounts a ramfs: run it as root"
        );
        let m = d.path().join("ramfs");
        std::fs::create_dir(&m).unwrap();
        nix::mount::mount(
            Some("ramfs"),
            &m,
            Some("ramfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::create_dir(m.join("dir")).unwrap();
        let models = (
            ShareModel::for_path(&m),
            ShareModel::for_path(&m.join("dir")),
        );
        nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert_eq!(models, (ShareModel::MappedFile, ShareModel::MappedFile));
        assert_eq!(ShareModel::MappedFile.as_qemu(), "mapped-file");
    }
}
