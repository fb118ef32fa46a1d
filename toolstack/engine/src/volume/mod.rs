//! Volumes, the same for every backend (docs/volumes.md).
//!
//! - Named and anonymous volumes are ext4 disk images in the store
//!   (`<root>/volumes/<name>/{volume.json,disk.img}`, sparse): every backend attaches them as
//!   one more disk (QEMU virtio-blk, Xen blkback), so their data outlives containers.
//! - Host directories (`-v /dir:/path`) are shared, not copied: `Share`s, which QEMU serves
//!   over virtio-9p. A Xen backend serves them over Xen's 9pfs transport (a QEMU 9pfs backend
//!   in dom0) or, read-only, as a per-run ext4 snapshot of the directory (`snapshot_dir`).
mod arg;
mod ext4;
mod mounts;

use anyhow::{bail, Context};
pub use arg::{parse_arg, Source, VolumeArg};
pub use ext4::snapshot_dir;
pub use mounts::{
    acquire, release_binds, remove_container_dir, resolve, unescape_mountinfo, HostDirs,
    MountRecord, Plan, Share, ShareModel,
};
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
    /// `hx volume create --label`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `hx volume snapshot`: the volume this one is a point-in-time copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_of: Option<String>,
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
    // What a killed create or snapshot left goes before anyone looks.
    sweep(root);
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
    let me = crate::process::Tracked::current();
    let pid = std::process::id();
    let start = me.map_or(0, |p| p.start);
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
            !crate::process::Tracked::new(pid, start).is_some_and(|p| p.is_alive())
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
    make(root, name, size, anonymous, Default::default())
}

/// A named volume with labels (`hx volume create --label`); an existing one is kept as it is.
pub fn create_labelled(
    root: &Path,
    name: Option<&str>,
    size: u64,
    labels: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Volume> {
    make(root, name, size, false, labels)
}

fn make(
    root: &Path,
    name: Option<&str>,
    size: u64,
    anonymous: bool,
    labels: std::collections::BTreeMap<String, String>,
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
        labels,
        snapshot_of: None,
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

/// A new volume `name` holding a copy of `source`'s disk (`hx volume snapshot` with
/// `snapshot_of`, `hx volume create --from-snapshot` without): the caller makes the copy
/// consistent (the guest's filesystem frozen, or no container writing). Sparse, and a reflink
/// where the host's filesystem has them (coreutils' cp).
pub fn copy_of(
    root: &Path,
    source: &str,
    name: &str,
    snapshot_of: Option<&str>,
) -> anyhow::Result<Volume> {
    let src = get(root, source)?;
    let dest = volume_dir(root, name)?;
    if dest.exists() {
        bail!("volume {name} already exists");
    }
    let tmp = tempfile::Builder::new()
        .prefix(&new_prefix())
        .tempdir_in(volumes_dir(root))?;
    let out = std::process::Command::new("cp")
        .args(["--sparse=always", "--reflink=auto", "--"])
        .arg(disk_path(root, source)?)
        .arg(tmp.path().join("disk.img"))
        .output()
        .context("running cp")?;
    if !out.status.success() {
        bail!(
            "copying volume {source}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v = Volume {
        name: name.to_string(),
        created: crate::container::now_rfc3339(),
        size: src.size,
        anonymous: false,
        labels: Default::default(),
        snapshot_of: snapshot_of.map(str::to_string),
    };
    std::fs::write(
        tmp.path().join("volume.json"),
        serde_json::to_vec_pretty(&v)?,
    )?;
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, &dest) {
        let _ = std::fs::remove_dir_all(&kept);
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
/// Removes the anonymous volumes a container made (`hx rm -v`, `--rm`, a failed start).
pub fn remove_anonymous(root: &Path, records: &[MountRecord]) {
    for r in records.iter().filter(|r| r.anonymous) {
        if let Err(e) = remove(root, &r.source) {
            tracing::warn!("removing anonymous volume {}: {e:#}", r.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ext4::{needs_recovery, replay_journal, run_bounded};
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
        let live = format!(".new-{me}-{}-abc", crate::process::start_time(me).unwrap());
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
