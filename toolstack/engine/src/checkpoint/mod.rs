//! docker's checkpoints (docs/checkpoint.md): `hx checkpoint create|ls|rm` and
//! `hx start --checkpoint`. A running container's VM is saved by its backend
//! (`Backend::checkpoint`: devices and all of its memory) into
//! `<container>/checkpoints/NAME/`, with a copy of the writable layer taken while the VM is
//! paused (the saved memory holds the guest's view of that filesystem: a restore onto a disk
//! that changed since would corrupt it), so a restore always starts from exactly that pair.
//! A checkpoint is made in `.new-NAME-PID-START` and renamed into place: a killed create
//! leaves no half checkpoint, and the next create or ls removes what it left.
pub mod sparse;

use crate::backend;
use crate::container::{self, Container, Status};
use crate::runtime;
use crate::HxError;
use anyhow::Context;
use hx_images::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The checkpoints' directory in the container's.
pub const DIR: &str = "checkpoints";
const META: &str = "checkpoint.json";
/// The writable layer's copy in a checkpoint, and its name in the container directory.
const LAYER: &str = "upper.img";
/// What the container's VM last booted from (written by each start; read by `create`).
pub const BOOT_FILE: &str = "boot.json";
/// Held by a create, in the container directory.
const LOCK: &str = "checkpoint.lock";
/// In a create's `.new-*` directory while the VM is paused by that create (not by a user):
/// whoever sweeps the directory of a killed create resumes the VM.
const PAUSED_BY_CREATE: &str = "paused-by-create";
/// Where a restore's copy of the layer is made before it replaces the container's.
const RESTORING_LAYER: &str = ".upper.img.restoring";

/// The files a VM booted from: a restore needs the very same (the saved memory has the kernel
/// running, pv-init's code, the root filesystem's contents cached).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub rootfs: PathBuf,
}

impl BootFiles {
    /// Each file's path, size and modification time.
    fn identity(&self) -> Vec<String> {
        [&self.kernel, &self.initramfs, &self.rootfs]
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok();
                let mtime = m
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!(
                    "{}|{:?}|{:?}",
                    p.display(),
                    m.map(|m| m.len()),
                    mtime.map(|d| d.as_nanos())
                )
            })
            .collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    pub created: String,
    pub backend: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub boot: BootFiles,
    identity: Vec<String>,
    /// The guest's address: its NIC is configured in the saved memory.
    pub ip: Option<std::net::Ipv4Addr>,
    /// Whether the checkpoint holds a copy of the writable layer (containers without one keep
    /// it in guest memory).
    pub layer: bool,
}

/// A checkpoint on disk.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub meta: Meta,
}

fn all_dir(root: &Path, c: &Container) -> PathBuf {
    container::dir(root, &c.id).join(DIR)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if container::valid_name(name) {
        Ok(())
    } else {
        anyhow::bail!(
            "invalid checkpoint name {:?}: letters, digits, '_', '.', '-' (first a letter or digit), at most 63",
            crate::sanitize::text(name).to_cow()
        )
    }
}

/// Checkpoint `name` of container `c`.
pub fn open(root: &Path, c: &Container, name: &str) -> anyhow::Result<Checkpoint> {
    check_name(name)?;
    let dir = all_dir(root, c).join(name);
    let bytes = match std::fs::read(dir.join(META)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HxError::NoSuchCheckpoint(c.name.clone(), name.to_string()).into())
        }
        Err(e) => return Err(e).with_context(|| format!("checkpoint {name}")),
    };
    let meta: Meta = serde_json::from_slice(&bytes)
        .with_context(|| format!("checkpoint {name}: {} is damaged", META))?;
    Ok(Checkpoint { dir, meta })
}

impl Checkpoint {
    /// Refuses a restore whose kernel, initramfs or root filesystem is no longer what the
    /// saved VM runs (a reinstalled kernel, a new pv-init, a rebuilt image).
    pub fn check_boot_files(&self) -> anyhow::Result<()> {
        let now = self.meta.boot.identity();
        for ((before, after), what) in self.meta.identity.iter().zip(&now).zip([
            "guest kernel",
            "initramfs (pv-init)",
            "root filesystem",
        ]) {
            if before != after {
                anyhow::bail!(
                    "checkpoint {}: its {what} changed or is gone since it was made ({})",
                    self.meta.name,
                    before.split('|').next().unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Makes the container's writable layer (`layer`) the checkpoint's copy, whole or not at
    /// all (a copy beside it, then a rename).
    pub fn restore_layer(&self, layer: &Path) -> anyhow::Result<()> {
        if !self.meta.layer {
            return Ok(());
        }
        let dir = layer.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(RESTORING_LAYER);
        let _ = std::fs::remove_file(&tmp);
        let copied = sparse::copy(&self.dir.join(LAYER), &tmp)
            .and_then(|()| Ok(std::fs::rename(&tmp, layer)?));
        if copied.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        copied.with_context(|| {
            format!(
                "checkpoint {}: restoring the writable layer",
                self.meta.name
            )
        })
    }
}

/// Removes what a killed restore left of its layer copy in the container directory `dir`.
pub fn forget_partial_restore(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(RESTORING_LAYER));
}

/// The container's checkpoints, oldest first.
pub fn list(root: &Path, c: &Container) -> anyhow::Result<Vec<Meta>> {
    let dir = all_dir(root, c);
    if sweep_unfinished(&dir) {
        resume_after_killed_create(root, c);
    }
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        if let Ok(ck) = open(root, c, &name) {
            out.push(ck.meta);
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// `hx checkpoint rm`.
pub fn remove(root: &Path, c: &Container, name: &str) -> anyhow::Result<()> {
    let ck = open(root, c, name)?;
    let gone = all_dir(root, c).join(format!(".rm-{name}-{}", std::process::id()));
    std::fs::rename(&ck.dir, &gone)?;
    std::fs::remove_dir_all(&gone)?;
    Ok(())
}

/// `hx checkpoint create [--leave-running] C NAME`: saves the running container `key` as
/// checkpoint `name`; then stops it (docker: `Exited (137)`, stopped by hand so its restart
/// policy leaves it) unless `leave_running`.
pub fn create(root: &Path, key: &str, name: &str, leave_running: bool) -> anyhow::Result<()> {
    check_name(name)?;
    let c = {
        let _lock = Store::open(root)?.lock()?;
        runtime::reconcile(root)?;
        container::find(root, key)?
    };
    let be = backend::for_container(&c, root)?;
    if !be.can_checkpoint() {
        anyhow::bail!(
            "container {}: the {} backend cannot checkpoint",
            c.name,
            be.name()
        );
    }
    if c.status != Status::Running || !be.is_running(&c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    let cdir = container::dir(root, &c.id);
    // One create at a time per container (a start needs it stopped, a create running).
    let _one = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cdir.join(LOCK))
        .map_err(anyhow::Error::from)
        .and_then(|f| {
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
                anyhow::anyhow!("container {} is being checkpointed by another hx", c.name)
            })
        })?;
    let boot: BootFiles = std::fs::read(cdir.join(BOOT_FILE))
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .with_context(|| {
            format!(
                "container {}: no record of what its VM booted from: restart it first",
                c.name
            )
        })?;
    let all = all_dir(root, &c);
    std::fs::create_dir_all(&all)?;
    if sweep_unfinished(&all) && be.is_paused(&c, &cdir) {
        be.unpause(&c, &cdir)?;
    }
    let target = all.join(name);
    if target.exists() {
        return Err(HxError::CheckpointExists(c.name.clone(), name.to_string()).into());
    }
    let me = crate::process::Tracked::current()
        .ok_or_else(|| anyhow::anyhow!("cannot read this process's start time"))?;
    let tmp = all.join(format!(".new-{name}-{}-{}", me.pid, me.start));
    std::fs::create_dir(&tmp)?;
    let layer = cdir.join(LAYER);
    let has_layer = crate::lifecycle::request_of(root, &c)?.upper_size.is_some() && layer.is_file();
    let was_paused = be.is_paused(&c, &cdir);
    if !was_paused {
        std::fs::write(tmp.join(PAUSED_BY_CREATE), b"")?;
    }
    let saved = be
        .checkpoint(&c, &cdir, &tmp, &mut || {
            if has_layer {
                sparse::copy(&layer, &tmp.join(LAYER))?;
            }
            Ok(())
        })
        .and_then(|()| {
            let meta = Meta {
                name: name.to_string(),
                created: container::now_rfc3339(),
                backend: c.backend.clone(),
                memory_mb: c.memory_mb,
                cpus: c.cpus,
                identity: boot.identity(),
                boot,
                ip: c.network.as_ref().and_then(|n| n.ip),
                layer: has_layer,
            };
            hx_images::store::write_atomic(&tmp.join(META), &serde_json::to_vec_pretty(&meta)?)?;
            let _ = std::fs::remove_file(tmp.join(PAUSED_BY_CREATE));
            std::fs::rename(&tmp, &target)?;
            if let Ok(d) = std::fs::File::open(&all) {
                let _ = d.sync_all();
            }
            Ok(())
        });
    if let Err(e) = saved {
        let _ = std::fs::remove_dir_all(&tmp);
        // Only what this create paused (a refusal may come before anything was).
        if !was_paused && be.is_paused(&c, &cdir) {
            let _ = be.unpause(&c, &cdir);
        }
        return Err(e.context(format!("checkpoint {name} of container {}", c.name)));
    }
    if leave_running {
        if !was_paused {
            be.unpause(&c, &cdir)?;
        }
        return Ok(());
    }
    runtime::mark_stopped_by_user(root, &c.id)?;
    crate::ops::record_killed(&cdir)?;
    be.kill(&c)?;
    let _lock = Store::open(root)?.lock()?;
    if let Ok(c) = container::load(root, &c.id) {
        runtime::settle(root, c, be.as_ref())?;
    }
    Ok(())
}

/// A create was killed while it had the VM paused: resumed, if it still is.
fn resume_after_killed_create(root: &Path, c: &Container) {
    let Ok(be) = backend::for_container(c, root) else {
        return;
    };
    let dir = container::dir(root, &c.id);
    if c.status == Status::Running && be.is_paused(c, &dir) {
        if let Err(e) = be.unpause(c, &dir) {
            tracing::warn!("resuming {} after a killed checkpoint: {e:#}", c.name);
        }
    }
}

/// Removes `.new-*` directories whose create is gone (by pid and start time), and `.rm-*`
/// ones a killed rm left. True if one of those creates had paused the VM.
fn sweep_unfinished(dir: &Path) -> bool {
    let mut paused = false;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return paused;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let stale = if let Some(rest) = name.strip_prefix(".new-") {
            let mut tail = rest.rsplitn(3, '-');
            let start = tail.next().and_then(|s| s.parse().ok());
            let pid = tail.next().and_then(|s| s.parse().ok());
            !crate::process::Tracked::new(pid, start).is_some_and(|p| p.is_alive())
        } else if let Some(rest) = name.strip_prefix(".rm-") {
            let pid = rest.rsplit('-').next().and_then(|s| s.parse::<i32>().ok());
            pid.is_none_or(|p| crate::process::start_time(p).is_none())
        } else {
            false
        };
        if stale {
            paused |= e.path().join(PAUSED_BY_CREATE).exists();
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    paused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_checkpoints_of_dead_creators_are_swept_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let me = crate::process::Tracked::current().unwrap();
        let live = d.path().join(format!(".new-a-b-{}-{}", me.pid, me.start));
        let dead = d
            .path()
            .join(format!(".new-a-b-{}-{}", me.pid, me.start + 1));
        let odd = d.path().join(".new-x");
        let kept = d.path().join("cp1");
        for p in [&live, &dead, &odd, &kept] {
            std::fs::create_dir(p).unwrap();
        }
        assert!(!sweep_unfinished(d.path()));
        assert!(live.exists() && kept.exists());
        assert!(!dead.exists() && !odd.exists());
        // A dead create that had paused the VM says so; a live one's marker is not its business.
        std::fs::write(live.join(PAUSED_BY_CREATE), b"").unwrap();
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(PAUSED_BY_CREATE), b"").unwrap();
        assert!(sweep_unfinished(d.path()));
        assert!(live.exists() && !dead.exists());
    }

    #[test]
    fn a_damaged_or_hostile_meta_is_refused() {
        for bad in [&b"{}"[..], b"not json", b"{\"name\":1}"] {
            assert!(serde_json::from_slice::<Meta>(bad).is_err());
        }
    }
}
