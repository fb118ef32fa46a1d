//! Warm start on Xen (docs/warm-start.md, "Xen: a pool"): a few pre-booted domains per shape
//! (domain type, kernel, pv-init, command line, memory, vCPUs), each paused where pv-init waits
//! for its go line, with no disk and no NIC. `hx run` takes one (`take`), its monitor renames it,
//! hot-plugs the container's disks and vif and sends the go line (monitor.rs); a filler
//! (`hx __xen-warm-fill KEYDIR`, detached, one per shape at a time: `fill`) boots the next.
//!
//! Every domain is always someone's: a pool entry (`<root>/xen-warm/<key>/<domid>.json`), a
//! container (its `hx/id` node, written at the take after the container directory recorded the
//! domid in `xen-warm-domain`), or, while the filler builds it, the filler's (its lock held).
//! A pool domain with none of these (a filler killed mid-build) is destroyed by the next fill
//! of its shape or by `hx system template prune|rm`.
use super::{block_on, carries_id, dom_path, id_node};
use crate::backend::XenType;
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xen_bindings::{Context, DomainConfig, DomainInfo, Xenstore};

const FORMAT: u32 = 1;
/// Pool domains are named `hx-warm-<key>-<n>`.
const NAME_PREFIX: &str = "hx-warm-";
/// How long a pool domain's boot may take (PVH under the lab's nested TCG reaches init late).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// Domains kept per shape unless `[xen] warm_pool` says otherwise, and the most it may say.
const DEFAULT_POOL: u32 = 1;
pub const MAX_POOL: u32 = 8;
/// Free host memory a refill leaves beyond the new domain (Xen's own, ballooning slack).
const MEMORY_MARGIN_MB: u64 = 64;
/// What the container directory records of the domain it took (read by cleanup).
pub const TAKEN_FILE: &str = "xen-warm-domain";
const SHAPE_FILE: &str = "shape.json";
const FILL_LOCK: &str = "fill.lock";
const TAKE_LOCK: &str = "take.lock";
const FAILED_FILE: &str = "failed";
const FILL_LOG: &str = "fill.log";
/// How long a failed build keeps a shape from refilling (a transient failure — a memory race
/// with a cold start, a boot past the deadline on a loaded host — does not turn it off for good).
const FAILED_HOLD: Duration = Duration::from_secs(600);

/// `<root>/xen-warm`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("xen-warm")
}

/// On when `HX_WARM=on` or `[xen] warm = true` (a pool keeps whole domains' memory: an
/// operator's choice, docs/warm-start.md); `HX_WARM=off` wins.
pub fn enabled(root: &Path) -> bool {
    match std::env::var("HX_WARM").as_deref() {
        Ok("off") | Ok("0") => return false,
        Ok("on") | Ok("1") => return true,
        _ => {}
    }
    crate::hostconfig::load(root)
        .map(|c| c.xen.warm.unwrap_or(false))
        .unwrap_or(false)
}

fn pool_size(root: &Path) -> u32 {
    crate::hostconfig::load(root)
        .ok()
        .and_then(|c| c.xen.warm_pool)
        .unwrap_or(DEFAULT_POOL)
        .clamp(1, MAX_POOL)
}

/// What a pool domain is booted from; the key hashes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub xen_type: XenType,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub memory_mb: u64,
    pub cpus: u32,
}

impl Shape {
    /// 16 hex digits over the format, the files' identity (path, size, mtime: a rebuilt kernel
    /// or pv-init makes a new key) and the rest of the shape.
    pub fn key(&self) -> String {
        use sha2::Digest;
        let text = format!(
            "{FORMAT}\n{:?}\n{}\n{}\n{}\n{} {}\n",
            self.xen_type,
            crate::backend::warm::identity(&self.kernel),
            crate::backend::warm::identity(&self.initramfs),
            self.cmdline,
            self.memory_mb,
            self.cpus
        );
        let hash = sha2::Sha256::digest(text.as_bytes());
        hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn name_prefix(key: &str) -> String {
        format!("{NAME_PREFIX}{key}-")
    }

    fn read(keydir: &Path) -> anyhow::Result<Shape> {
        let p = keydir.join(SHAPE_FILE);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
    }
}

/// A pool domain: its domid and uuid (a domid alone may have been reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taken {
    pub domid: u32,
    pub uuid: String,
}

fn entries(keydir: &Path) -> Vec<(PathBuf, Taken)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(keydir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if stem.parse::<u32>().is_err() {
            continue;
        }
        match std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Taken>(&b).ok())
        {
            Some(t) => out.push((p, t)),
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    out.sort_by_key(|(_, t)| t.domid);
    out
}

fn lock(keydir: &Path, name: &str, wait: bool) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(keydir.join(name))
        .ok()?;
    let how = if wait {
        nix::fcntl::FlockArg::LockExclusive
    } else {
        nix::fcntl::FlockArg::LockExclusiveNonblock
    };
    nix::fcntl::Flock::lock(f, how).ok()
}

fn warm_node(domid: u32) -> String {
    format!("{}/{}", dom_path(domid), pv_init::warm::XEN_READY_NODE)
}

/// Domain `t`'s state if it is still a pool domain nobody took: same uuid, named as the pool
/// names its domains, no container's id.
fn unclaimed(ctx: &Context, xs: &Xenstore, key: &str, t: &Taken) -> Option<DomainInfo> {
    let i = ctx.info(t.domid).ok()?;
    let ours = i.uuid == t.uuid
        && i.name
            .as_deref()
            .is_some_and(|n| n.starts_with(&Shape::name_prefix(key)))
        && carries_id(xs, t.domid, "");
    ours.then_some(i)
}

/// Whether domain `t` is still the pool's and waiting: unclaimed, paused, not shut down, and
/// pv-init said it waits.
fn is_waiting(ctx: &Context, xs: &Xenstore, key: &str, t: &Taken) -> bool {
    unclaimed(ctx, xs, key, t).is_some_and(|i| i.paused && !i.shutdown && !i.dying)
        && xs
            .read_untrusted(&warm_node(t.domid))
            .ok()
            .flatten()
            .as_deref()
            == Some(pv_init::warm::XEN_READY_VALUE)
}

/// Destroys domain `t` if it is still a pool domain nobody took.
fn destroy_unclaimed(ctx: &Context, xs: &Xenstore, key: &str, t: &Taken) {
    if unclaimed(ctx, xs, key, t).is_some() {
        if let Err(e) = block_on(ctx.destroy(t.domid)) {
            tracing::warn!("warm pool: destroying domain {}: {e}", t.domid);
        }
    }
}

/// Takes a waiting domain of `shape` for container `id`, whose directory is `container_dir`:
/// recorded there first, then marked with the container's id, then out of the pool. None when
/// the pool has none (the caller boots cold and asks for a refill).
pub fn take(root: &Path, shape: &Shape, container_dir: &Path, id: &str) -> Option<Taken> {
    let key = shape.key();
    let keydir = dir(root).join(&key);
    if !keydir.is_dir() {
        return None;
    }
    let _lock = lock(&keydir, TAKE_LOCK, true)?;
    let ctx = Context::new().ok()?;
    let xs = Xenstore::open().ok()?;
    for (path, t) in entries(&keydir) {
        if !is_waiting(&ctx, &xs, &key, &t) {
            tracing::info!("warm pool: domain {} is not waiting any more", t.domid);
            destroy_unclaimed(&ctx, &xs, &key, &t);
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let record = serde_json::to_vec(&t).ok()?;
        if write_synced(&container_dir.join(TAKEN_FILE), &record).is_err() {
            return None;
        }
        if xs.write(&id_node(t.domid), id.as_bytes()).is_err() {
            let _ = std::fs::remove_file(container_dir.join(TAKEN_FILE));
            return None;
        }
        let _ = std::fs::remove_file(&path);
        return Some(t);
    }
    None
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The domain a container took from the pool, if it is still that container's.
pub fn taken_domain(ctx: &Context, xs: &Xenstore, container_dir: &Path, id: &str) -> Option<u32> {
    let bytes = std::fs::read(container_dir.join(TAKEN_FILE)).ok()?;
    let t: Taken = serde_json::from_slice(&bytes).ok()?;
    let i = ctx.info(t.domid).ok()?;
    (i.uuid == t.uuid && carries_id(xs, t.domid, id)).then_some(t.domid)
}

/// A build of this shape failed less than FAILED_HOLD ago.
fn failed_recently(keydir: &Path) -> bool {
    std::fs::metadata(keydir.join(FAILED_FILE))
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e < FAILED_HOLD))
}

/// Starts a filler for `shape` in the background (no-op if one runs: it holds the fill lock).
pub fn spawn_fill(root: &Path, shape: &Shape) -> anyhow::Result<()> {
    let keydir = dir(root).join(shape.key());
    std::fs::create_dir_all(&keydir)?;
    if failed_recently(&keydir) {
        return Ok(());
    }
    let tmp = keydir.join(format!(".{SHAPE_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(shape)?)?;
    std::fs::rename(&tmp, keydir.join(SHAPE_FILE))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(keydir.join(FILL_LOG))?;
    let exe = std::env::current_exe().context("locating the hx binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__xen-warm-fill")
        .arg(&keydir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if std::env::var_os("HX_LOG").is_none() {
        cmd.env("HX_LOG", "info");
    }
    crate::process::spawn_detached(&mut cmd)?;
    Ok(())
}

/// The filler's body: under the shape's fill lock, destroys the shape's orphans and the pools
/// of shapes whose kernel or pv-init changed, then boots domains until the pool is full, the
/// host's free memory would drop below the margin, or a build fails (then `failed` keeps the
/// reason and no filler tries again until `prune` or `rm`).
pub fn fill(keydir: &Path) -> anyhow::Result<i32> {
    let Some(_lock) = lock(keydir, FILL_LOCK, false) else {
        return Ok(0);
    };
    let key = keydir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let shape = Shape::read(keydir)?;
    if shape.key() != key {
        bail!("{}: its kernel or pv-init changed", keydir.display());
    }
    let root = keydir
        .parent()
        .and_then(Path::parent)
        .context("the pool directory has no store above it")?;
    let ctx = Context::new()?;
    let xs = Xenstore::open()?;
    // A filler killed between writing an entry and renaming it into place.
    for e in std::fs::read_dir(keydir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && name.ends_with(".json") && !name.starts_with(".shape") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    sweep_orphans(&ctx, &xs, root, keydir, &key);
    remove_stale_pools(root, &key);
    let want = pool_size(root) as usize;
    while entries(keydir).len() < want {
        if failed_recently(keydir) {
            break;
        }
        let free = ctx.host_info()?.free_memory_mb;
        if free < shape.memory_mb + MEMORY_MARGIN_MB {
            tracing::info!(
                "warm pool: {free} MiB free, a {} MiB domain would leave less than {MEMORY_MARGIN_MB}: not refilling",
                shape.memory_mb
            );
            break;
        }
        let t0 = Instant::now();
        match block_on(build(&ctx, &xs, &shape, &key)) {
            Ok(t) => {
                let tmp = keydir.join(format!(".{}.json", t.domid));
                std::fs::write(&tmp, serde_json::to_vec(&t)?)?;
                std::fs::rename(&tmp, keydir.join(format!("{}.json", t.domid)))?;
                tracing::info!(
                    "warm pool {key}: domain {} waiting after {:?}",
                    t.domid,
                    t0.elapsed()
                );
            }
            Err(e) => {
                let msg = crate::one_line(&e);
                tracing::error!("warm pool {key}: {msg}");
                let _ = std::fs::write(keydir.join(FAILED_FILE), format!("{msg}\n"));
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// Boots one pool domain to pv-init's wait and pauses it; destroys it on any failure.
async fn build(ctx: &Context, xs: &Xenstore, shape: &Shape, key: &str) -> anyhow::Result<Taken> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let name = format!("{}{stamp}", Shape::name_prefix(key));
    let cfg = match shape.xen_type {
        XenType::Pvh => DomainConfig::pvh(&name, &shape.kernel),
        XenType::Pv => DomainConfig::pv(&name, &shape.kernel),
    }
    .ramdisk(&shape.initramfs)
    .cmdline(format!("{} {}", shape.cmdline, pv_init::warm::CMDLINE_FLAG))
    .memory_mb(shape.memory_mb)
    .vcpus(shape.cpus)
    // Empty until a container takes the domain: the node exists with the guest's read-only
    // permission libxl gives it, so the take only writes a value.
    .xenstore_node("hx/id", "")
    .xenstore_node("hx/control", "");
    let domid = ctx
        .create(&cfg)
        .await
        .with_context(|| format!("creating pool domain {name}"))?;
    let r = async {
        let uuid = ctx.info(domid)?.uuid;
        ctx.unpause(domid).await?;
        let deadline = Instant::now() + BOOT_DEADLINE;
        loop {
            let v = xs.read_untrusted(&warm_node(domid)).ok().flatten();
            if v.as_deref() == Some(pv_init::warm::XEN_READY_VALUE) {
                break;
            }
            let i = ctx.info(domid)?;
            if i.shutdown || i.dying {
                bail!("pool domain {name} shut down before pv-init waited (see `xl dmesg` and its console)");
            }
            if Instant::now() > deadline {
                bail!("pool domain {name}: pv-init did not wait within {BOOT_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ctx.pause(domid).await?;
        anyhow::Ok(Taken { domid, uuid })
    }
    .await;
    if r.is_err() {
        let _ = ctx.destroy(domid).await;
    }
    r
}

/// Destroys `key`'s domains that no entry holds and no container took (a filler killed
/// mid-build) or whose container no longer exists (its removal failed to destroy a domain
/// taken but not yet renamed), and entries whose domain is gone. Only under the fill lock.
fn sweep_orphans(ctx: &Context, xs: &Xenstore, root: &Path, keydir: &Path, key: &str) {
    let held = entries(keydir);
    for (path, t) in &held {
        if ctx.info(t.domid).map(|i| i.uuid != t.uuid).unwrap_or(true) {
            let _ = std::fs::remove_file(path);
        }
    }
    let Ok(all) = ctx.list() else {
        return;
    };
    for d in all {
        if !d
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(&Shape::name_prefix(key)))
        {
            continue;
        }
        if held
            .iter()
            .any(|(_, t)| t.domid == d.domid && t.uuid == d.uuid)
        {
            continue;
        }
        let t = Taken {
            domid: d.domid,
            uuid: d.uuid.clone(),
        };
        let owner = xs
            .read(&id_node(d.domid))
            .ok()
            .flatten()
            .unwrap_or_default();
        let owner = String::from_utf8_lossy(&owner).to_string();
        let container_gone = !owner.is_empty()
            && owner.bytes().all(|b| b.is_ascii_hexdigit())
            && !crate::container::dir(root, &owner).exists();
        if container_gone {
            tracing::info!(
                "warm pool {key}: destroying domain {} of a removed container",
                d.domid
            );
            if let Err(e) = block_on(ctx.destroy(d.domid)) {
                tracing::warn!("warm pool: destroying domain {}: {e}", d.domid);
            }
            continue;
        }
        tracing::info!("warm pool {key}: destroying orphan domain {}", d.domid);
        destroy_unclaimed(ctx, xs, key, &t);
    }
}

/// Removes the pools whose shape no longer has the key it was filed under (a rebuilt kernel
/// or pv-init) or whose files are gone: their domains could never be taken again.
fn remove_stale_pools(root: &Path, keep: &str) {
    for p in list(root) {
        if p.key != keep && p.stale {
            if let Err(e) = remove(root, &p.key) {
                tracing::warn!("warm pool {}: {}", p.key, crate::one_line(&e));
            }
        }
    }
}

/// One shape's pool, for `hx system template ls`.
pub struct Pool {
    pub key: String,
    pub shape: Option<Shape>,
    pub domains: usize,
    pub failed: Option<String>,
    pub stale: bool,
    pub created: u64,
}

pub fn list(root: &Path) -> Vec<Pool> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir(root)) else {
        return out;
    };
    for e in rd.flatten() {
        let keydir = e.path();
        let key = e.file_name().to_string_lossy().to_string();
        if !keydir.is_dir() || key.starts_with('.') {
            continue;
        }
        let shape = Shape::read(&keydir).ok();
        let stale = shape.as_ref().is_none_or(|s| s.key() != key);
        let created = std::fs::metadata(keydir.join(SHAPE_FILE))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let failed = std::fs::read_to_string(keydir.join(FAILED_FILE))
            .ok()
            .map(|s| crate::sanitize::line(s.trim()).to_string());
        out.push(Pool {
            domains: entries(&keydir).len(),
            key,
            shape,
            failed,
            stale,
            created,
        });
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then(a.key.cmp(&b.key)));
    out
}

/// Destroys pool `key`'s domains (those nobody took) and removes its directory; false if
/// there is no such pool.
pub fn remove(root: &Path, key: &str) -> anyhow::Result<bool> {
    crate::backend::warm::check_key(key)?;
    let keydir = dir(root).join(key);
    if !keydir.is_dir() {
        return Ok(false);
    }
    // A running filler is waited for: what it builds would otherwise outlive the pool.
    let _fill = lock(&keydir, FILL_LOCK, true);
    let _take = lock(&keydir, TAKE_LOCK, true);
    if crate::backend::is_xen_dom0() {
        let ctx = Context::new()?;
        let xs = Xenstore::open()?;
        for (_, t) in entries(&keydir) {
            destroy_unclaimed(&ctx, &xs, key, &t);
        }
        // And what a killed filler left.
        sweep_orphans(&ctx, &xs, root, &keydir, key);
    }
    let gone = dir(root).join(format!(".rm-{key}-{}", std::process::id()));
    std::fs::rename(&keydir, &gone)?;
    std::fs::remove_dir_all(&gone)?;
    Ok(true)
}

/// Removes stale pools and forgets failed builds (the next `hx run` refills); the keys removed.
pub fn prune(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for p in list(root) {
        let _ = std::fs::remove_file(dir(root).join(&p.key).join(FAILED_FILE));
        if p.stale {
            remove(root, &p.key)?;
            removed.push(p.key);
        } else if crate::backend::is_xen_dom0() {
            let keydir = dir(root).join(&p.key);
            if let Some(_fill) = lock(&keydir, FILL_LOCK, false) {
                let ctx = Context::new()?;
                let xs = Xenstore::open()?;
                sweep_orphans(&ctx, &xs, root, &keydir, &p.key);
            }
        }
    }
    // What an `rm` killed after its rename left.
    for e in std::fs::read_dir(dir(root)).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".rm-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(dir: &Path) -> Shape {
        let kernel = dir.join("vmlinux");
        let initramfs = dir.join("initramfs-abc.cpio");
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initramfs, b"i").unwrap();
        Shape {
            xen_type: XenType::Pvh,
            kernel,
            initramfs,
            cmdline: "console=hvc0".into(),
            memory_mb: 128,
            cpus: 1,
        }
    }

    #[test]
    fn the_key_changes_with_every_part_of_the_shape() {
        let d = tempfile::tempdir().unwrap();
        let s = shape(d.path());
        let k = s.key();
        assert_eq!(k.len(), 16);
        assert_eq!(k, s.key());
        for other in [
            Shape {
                xen_type: XenType::Pv,
                ..s.clone()
            },
            Shape {
                memory_mb: 256,
                ..s.clone()
            },
            Shape {
                cpus: 2,
                ..s.clone()
            },
            Shape {
                cmdline: "console=hvc0 x".into(),
                ..s.clone()
            },
        ] {
            assert_ne!(other.key(), k);
        }
        // A rebuilt pv-init (same name, new size) is a new key.
        std::fs::write(&s.initramfs, b"ii").unwrap();
        assert_ne!(s.key(), k);
    }

    #[test]
    fn a_pool_whose_files_changed_lists_as_stale() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        let s = shape(d.path());
        let keydir = dir(&root).join(s.key());
        std::fs::create_dir_all(&keydir).unwrap();
        std::fs::write(keydir.join(SHAPE_FILE), serde_json::to_vec(&s).unwrap()).unwrap();
        std::fs::write(keydir.join("7.json"), br#"{"domid":7,"uuid":"u"}"#).unwrap();
        std::fs::write(keydir.join("8.json"), b"junk").unwrap();
        let l = list(&root);
        assert_eq!(l.len(), 1);
        assert!(!l[0].stale);
        assert_eq!(l[0].domains, 1, "the junk entry is dropped");
        std::fs::write(&s.kernel, b"new kernel").unwrap();
        assert!(list(&root)[0].stale);
        assert!(!keydir.join("8.json").exists());
    }

    #[test]
    fn keys_are_checked_before_anything_is_removed() {
        let d = tempfile::tempdir().unwrap();
        assert!(remove(d.path(), "../x").is_err());
        assert!(!remove(d.path(), "abcd").unwrap());
    }
}
