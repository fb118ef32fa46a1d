//! A container's mounts: the records in its state (`resolve`, under the store lock), then
//! the disks, shares and file binds that realise them (`acquire`, without it), and their
//! release.
use super::arg::normalize;
use super::ext4::{replay_journal, snapshot_dir};
use super::{
    create, disk_path, valid_name, Source, VolumeArg, VolumeError, DEFAULT_SIZE, MAX_MOUNTS,
};
use crate::backend::Disk;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// The host's own metadata, for read-only shares only (QEMU exports them `readonly=on`:
    /// the guest can make nothing), so that host symlinks read as symlinks, which the mapped
    /// models cannot read (kubelet's ConfigMaps and Secrets are made of them).
    Passthrough,
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
            ShareModel::Passthrough => "passthrough",
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
        let mp = unescape_mountinfo(mp);
        if Path::new(&mp).starts_with(&binds) {
            if let Err(e) = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("unmounting {mp}: {e}");
            }
        }
    }
}

/// A mount point as /proc/*/mountinfo writes it: space, tab, newline and backslash
/// octal-escaped.
pub fn unescape_mountinfo(mp: &str) -> String {
    mp.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
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
    let model = if r.readonly {
        ShareModel::Passthrough
    } else {
        ShareModel::for_path(&p)
    };
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
