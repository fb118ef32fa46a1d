//! Warm start on QEMU (docs/warm-start.md): a container's VM is restored from a snapshot of a
//! guest booted up to pv-init's wait, with the same devices (disks, NIC, 9p shares, channels),
//! instead of booting the kernel. microvm's virtio-mmio cannot hot-plug, so a template is made
//! per device shape with placeholder backends (sparse files, empty directories, a throwaway
//! tap), and the restore's command line gives the container's own. Templates live in
//! `<root>/templates/<key>/` (`state`: QEMU's migration stream, `meta.json`); the key covers
//! the kernel, the initramfs (pv-init), QEMU, the accelerator, memory, vCPUs and the device
//! shape, so any change makes a new template. A template is built on first use under a lock;
//! a killed build leaves a `.new-*` directory that the next build (of any template) or `prune`
//! removes.
use super::qemu::{Boot, Qemu};
use super::{qmp, VmSpec};
use crate::network::NicKind;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bumped when what a template's guest holds changes in a way the key does not see.
const FORMAT: u32 = 4;
/// How long a template's boot may take (TCG on a busy host is slow).
const BOOT_DEADLINE: Duration = Duration::from_secs(60);
/// The placeholder disks' size: at least as large as any disk a restore brings (the guest
/// keeps the size it saw at boot; erofs and the config disk read only what they hold).
const PLACEHOLDER_BYTES: u64 = 1 << 40;
/// The MAC of a template's NIC: locally administered, outside hx's `02:42:…` (containers
/// take theirs from the spec after the go line).
pub const TEMPLATE_MAC: &str = "02:68:78:77:00:01";

#[derive(Debug, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub accel: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub disks: usize,
    /// The device shape (`Shape::describe`): disks, NIC, shares, stdin port.
    #[serde(default)]
    pub devices: String,
    pub created: u64,
}

/// `<root>/templates`, or HX_TEMPLATE_DIR (stores that share one kernel and pv-init, such as
/// the test suite's, can share their templates: the key says what each was made from).
pub fn dir(root: &Path) -> PathBuf {
    match std::env::var_os("HX_TEMPLATE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join("templates"),
    }
}

/// The template's guest RAM, next to its `state` (which then holds only the devices' state:
/// migration's x-ignore-shared leaves a shared file-backed RAM out of the stream).
pub fn ram_file(template: &Path) -> PathBuf {
    template.join("ram")
}

/// The id of a warm guest's RAM backend (and so of its RAM block in a migration stream).
pub const RAM_ID: &str = "hx-ram";

pub(super) const IGNORE_SHARED: &str = "x-ignore-shared";

fn set_capability(q: &mut qmp::Qmp, capability: &str) -> anyhow::Result<()> {
    set_capability_to(q, capability, true)
}

pub(super) fn set_capability_to(
    q: &mut qmp::Qmp,
    capability: &str,
    state: bool,
) -> anyhow::Result<()> {
    q.execute_with(
        "migrate-set-capabilities",
        Some(serde_json::json!({
            "capabilities": [{ "capability": capability, "state": state }]
        })),
    )
    .map(drop)
}

/// Whether warm start is on: `[qemu] warm` in the config file (default true), HX_WARM=off.
pub fn enabled(root: &Path) -> bool {
    if std::env::var("HX_WARM").is_ok_and(|v| v == "off" || v == "0") {
        return false;
    }
    crate::hostconfig::load(root)
        .map(|c| c.qemu.warm.unwrap_or(true))
        .unwrap_or(false)
}

/// A pod template's stand-ins for the members exports (empty; pv-init mounts the real ones on
/// a member's first share, after the restore): writable, read-only.
pub(super) const POD_EXPORTS: [&str; 2] = ["members", "members-ro"];

/// Why a restore cannot give this VM its devices, if it cannot: QEMU's user-mode network
/// keeps its forwards in the migrated slirp state, a disk larger than the template's
/// placeholders would keep the capacity the guest saw at boot, a namespace's further
/// interfaces are taps `start` makes in it (rare: CRI gives one).
pub fn unfit(spec: &VmSpec) -> Option<&'static str> {
    if !spec.extra_nics.is_empty() {
        return Some("several network interfaces");
    }
    if let Some(NicKind::User { .. }) = spec.nic.as_ref().map(|n| &n.kind) {
        return Some("QEMU's user-mode network");
    }
    let small = |d: &super::Disk| {
        std::fs::metadata(&d.path).is_ok_and(|m| m.is_file() && m.len() <= PLACEHOLDER_BYTES)
    };
    if !spec.disks.iter().all(small) {
        return Some("a disk larger than a template's");
    }
    None
}

/// What the guest sees of its devices, in QEMU's creation order: a template serves only VMs
/// of its own shape (the migration stream holds the devices' state, not their backends).
pub struct Shape {
    readonly: Vec<bool>,
    nic: bool,
    shares: Vec<(String, bool, &'static str)>,
    stdin: bool,
    /// A pod's VM: its members' SCSI bus and their two 9p exports (qemu_pod.rs).
    pod: bool,
}

impl Shape {
    pub fn of(spec: &VmSpec) -> Self {
        Shape {
            readonly: spec.disks.iter().map(|d| d.readonly).collect(),
            nic: spec.nic.is_some(),
            shares: spec
                .shares
                .iter()
                .map(|s| (s.tag.clone(), s.readonly, s.model.as_qemu()))
                .collect(),
            stdin: spec.stdin,
            pod: spec.hotplug_bus,
        }
    }

    /// `ro,ro,rw +net +9p:2 +stdin`: for `hx system template ls`.
    pub fn describe(&self) -> String {
        let disks: Vec<&str> = self
            .readonly
            .iter()
            .map(|&ro| if ro { "ro" } else { "rw" })
            .collect();
        let mut out = disks.join(",");
        if self.nic {
            out.push_str("+net");
        }
        if !self.shares.is_empty() {
            out.push_str(&format!("+9p:{}", self.shares.len()));
        }
        if self.stdin {
            out.push_str("+stdin");
        }
        if self.pod {
            out.push_str("+pod");
        }
        out
    }

    fn key_text(&self) -> String {
        format!(
            "{:?}|{}|{:?}|{}|{}",
            self.readonly, self.nic, self.shares, self.stdin, self.pod
        )
    }
}

/// A file's identity for a key: path, size, mtime (a rebuilt file makes a new key).
pub(crate) fn identity(p: &Path) -> String {
    let m = std::fs::metadata(p).ok();
    let mtime = m
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    format!("{}|{:?}|{:?}", p.display(), m.map(|m| m.len()), mtime)
}

/// `qemu_binary`: its resolved path, whose identity (size, mtime) is in the key, so an
/// upgraded QEMU makes new templates.
pub fn key(qemu_binary: &Path, spec: &VmSpec, accel: &str) -> String {
    use sha2::Digest;
    let text = format!(
        "{FORMAT}\n{}\n{}\n{}\n{accel}\n{} {}\n{}\n",
        identity(spec.kernel),
        // Named by its content's hash (assets.rs): the same in every store.
        spec.initramfs
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        identity(qemu_binary),
        spec.memory_mb,
        spec.cpus,
        Shape::of(spec).key_text()
    );
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
}

/// The snapshot for `spec`, made now if there is none.
pub fn ensure(q: &Qemu, root: &Path, spec: &VmSpec, accel: &str) -> anyhow::Result<PathBuf> {
    let key = key(q.resolved_binary(), spec, accel);
    let dir = dir(root);
    let state = dir.join(&key).join("state");
    let ready = || state.is_file() && ram_file(&dir.join(&key)).is_file();
    if ready() {
        return Ok(state);
    }
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{key}.lock")))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the template")?;
    if ready() {
        return Ok(state);
    }
    // A key whose build failed once boots cold from then on (`prune` and `rm --all` forget it).
    let failed = dir.join(format!("{key}.failed"));
    if failed.is_file() {
        bail!(
            "template {key} could not be built before ({})",
            failed.display()
        );
    }
    // An init that does not know `hx.warm=1` (another build, a test's) would never wait.
    if !speaks_warm(spec.initramfs) {
        bail!("the guest's init does not support warm start");
    }
    // A killed build of any key (a kernel or pv-init since replaced: its key never comes
    // again) goes at the next build; ours under the lock we hold.
    sweep_unfinished(&dir, Some(&key));
    let t = Instant::now();
    let new = dir.join(format!(".new-{key}-{}", std::process::id()));
    let built = build(q, spec, accel, &new).and_then(|()| {
        let meta = Meta {
            key: key.clone(),
            kernel: spec.kernel.to_path_buf(),
            initramfs: spec.initramfs.to_path_buf(),
            accel: accel.into(),
            memory_mb: spec.memory_mb,
            cpus: spec.cpus,
            disks: spec.disks.len(),
            devices: Shape::of(spec).describe(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        std::fs::write(new.join("meta.json"), serde_json::to_vec(&meta)?)?;
        for i in 0..spec.disks.len() {
            let _ = std::fs::remove_file(new.join(format!("placeholder{i}")));
        }
        for i in 0..spec.shares.len() {
            let _ = std::fs::remove_dir(new.join(format!("share{i}")));
        }
        for export in POD_EXPORTS {
            let _ = std::fs::remove_dir(new.join(export));
        }
        for scratch in ["console.log", "control.in", "control.out", "qemu.log"] {
            let _ = std::fs::remove_file(new.join(scratch));
        }
        let _ = std::fs::remove_file(new.join(qmp::SOCKET));
        std::fs::rename(&new, dir.join(&key))?;
        Ok(())
    });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&new);
        let _ = std::fs::write(&failed, format!("{e:#}\n"));
        return Err(e.context("building the warm-start template"));
    }
    tracing::info!("warm start: template {key} built in {:?}", t.elapsed());
    Ok(state)
}

/// Whether the initramfs's init is a pv-init that waits when booted with `hx.warm=1`: it
/// carries the line it prints then (the initramfs is an uncompressed cpio).
fn speaks_warm(initramfs: &Path) -> bool {
    let Ok(bytes) = std::fs::read(initramfs) else {
        return false;
    };
    let needle = pv_init::warm::READY.as_bytes();
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// Boots the template guest in `new`, waits for pv-init's cue, saves it to `new/state`.
fn build(q: &Qemu, spec: &VmSpec, accel: &str, new: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(new)?;
    // One file per disk: QEMU locks each image, and a writable one must be its own.
    let mut placeholders = Vec::new();
    for i in 0..spec.disks.len() {
        let p = new.join(format!("placeholder{i}"));
        std::fs::File::create(&p)?.set_len(PLACEHOLDER_BYTES)?;
        placeholders.push(p);
    }
    let mut share_dirs = Vec::new();
    for i in 0..spec.shares.len() {
        let p = new.join(format!("share{i}"));
        std::fs::create_dir(&p)?;
        share_dirs.push(p);
    }
    if spec.hotplug_bus {
        for export in POD_EXPORTS {
            std::fs::create_dir(new.join(export))?;
        }
    }
    // A NIC of the restore's kind (a tap: the same offloads get negotiated), plugged into
    // nothing; it vanishes with the template's QEMU.
    let tap = match spec.nic {
        Some(_) => Some(crate::network::tap::open(&format!(
            "hxw{}",
            std::process::id()
        ))?),
        None => None,
    };
    for fifo in ["control.in", "control.out"] {
        nix::unistd::mkfifo(
            &new.join(fifo),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )?;
    }
    let qmp_listener = qmp::listen(new)?;
    // Same number of channel slots as a container's (console, channels, exec): the device
    // set must match the restore's exactly.
    let slots = vec![-1; 1 + super::qemu::CHANNELS.len() + 1 + usize::from(spec.stdin)];
    let boot = Boot::Template {
        dir: new,
        placeholders: &placeholders,
        share_dirs: &share_dirs,
    };
    let tap_fd = tap.as_ref().map(|f| f.as_raw_fd());
    let mut cmd = q.command(spec, accel, tap_fd, &[], &slots, &boot);
    cmd.arg("-chardev").arg(format!(
        "socket,id=qmp,fd={},server=on,wait=off",
        qmp_listener.as_raw_fd()
    ));
    cmd.args(["-mon", "chardev=qmp,mode=control"]);
    let log = std::fs::File::create(new.join("qemu.log"))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let fd = qmp_listener.as_raw_fd();
    let tap_fd = tap_fd.unwrap_or(-1);
    let builder = std::process::id() as libc::pid_t;
    // Dies with the hx that builds it: a killed build leaves no VM (and no tap) behind. An hx
    // killed before the child's prctl sent no signal: the child sees another parent and stops.
    // SAFETY: prctl, getppid and fcntl are async-signal-safe; nothing else runs before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != builder {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0
                || (tap_fd >= 0 && libc::fcntl(tap_fd, libc::F_SETFD, 0) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting QEMU for the template")?;
    drop(tap);
    let saved = save_when_ready(new, &mut child);
    if saved.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    saved
}

fn save_when_ready(new: &Path, child: &mut std::process::Child) -> anyhow::Result<()> {
    let t = Instant::now();
    let console = new.join("console.log");
    loop {
        let text = std::fs::read(&console).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(pv_init::warm::READY) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the template guest ended before pv-init waited ({status})");
        }
        if t.elapsed() > BOOT_DEADLINE {
            bail!("the template guest did not reach pv-init's wait in {BOOT_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut q = qmp::Qmp::connect(new)?;
    q.execute("stop")?;
    set_capability(&mut q, IGNORE_SHARED)?;
    let uri = format!("file:{}", new.join("state").display());
    q.execute_with("migrate", Some(serde_json::json!({ "uri": uri })))?;
    q.wait_migration(Duration::from_secs(60))?;
    let _ = q.execute("quit");
    Ok(())
}

/// After QEMU started with `-incoming defer` and the template's RAM mapped copy-on-write:
/// loads the devices' state from `state` (x-ignore-shared, as it was saved), waits for it,
/// resumes the guest and sends pv-init its go line (the host's clock, fresh entropy) on the control channel.
pub fn resume(dir: &Path, state: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut q = qmp::Qmp::connect(dir)?;
    set_capability(&mut q, IGNORE_SHARED)?;
    q.execute_with(
        "migrate-incoming",
        Some(serde_json::json!({ "uri": format!("file:{}", state.display()) })),
    )?;
    q.wait_migration(Duration::from_secs(60))
        .context("restoring the warm-start template")?;
    tracing::info!(
        "warm start: snapshot loaded {:?} after QEMU's start",
        t.elapsed()
    );
    q.execute("cont")?;
    let go = pv_init::warm::Go::fresh(0)?;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join("control.in");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p)
        .with_context(|| format!("control channel {}", p.display()))?;
    std::io::Write::write_all(&mut f, go.line().as_bytes())?;
    Ok(())
}

/// Removes `.new-*` directories no build holds: their key's lock is free, or is `held`, the
/// key whose lock the caller holds.
fn sweep_unfinished(dir: &Path, held: Option<&str>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(".new-") else {
            continue;
        };
        let Some((k, _pid)) = rest.rsplit_once('-') else {
            continue;
        };
        if held == Some(k) {
            let _ = std::fs::remove_dir_all(e.path());
            continue;
        }
        // Only when nobody builds it: its lock can be taken.
        let Ok(lock) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{k}.lock")))
        else {
            continue;
        };
        if let Ok(_free) =
            nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes the markers of failed builds, so that the next run tries again.
pub fn forget_failures(root: &Path) {
    let Ok(rd) = std::fs::read_dir(dir(root)) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().ends_with(".failed") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A stored template and whether it can still be used (its kernel and initramfs unchanged).
pub struct Listed {
    pub meta: Meta,
    pub bytes: u64,
    pub stale: bool,
}

/// QEMU's templates and Xen's warm pools, newest first.
pub fn list(root: &Path) -> Vec<Listed> {
    let mut out = templates(root);
    out.extend(super::xen::warm::list(root).into_iter().map(|p| {
        let shape = p.shape.as_ref();
        Listed {
            meta: Meta {
                key: p.key.clone(),
                kernel: shape.map(|s| s.kernel.clone()).unwrap_or_default(),
                initramfs: shape.map(|s| s.initramfs.clone()).unwrap_or_default(),
                accel: match shape.map(|s| s.xen_type) {
                    Some(super::XenType::Pv) => "xen-pv".into(),
                    Some(super::XenType::Pvh) => "xen-pvh".into(),
                    None => "xen".into(),
                },
                memory_mb: shape.map_or(0, |s| s.memory_mb),
                cpus: shape.map_or(0, |s| s.cpus),
                disks: 0,
                devices: match &p.failed {
                    Some(_) => format!("pool:{},failed", p.domains),
                    None => format!("pool:{}", p.domains),
                },
                created: p.created,
            },
            // What the pool's paused domains hold of the host's memory.
            bytes: (p.domains as u64 * shape.map_or(0, |s| s.memory_mb)) << 20,
            stale: p.stale,
        }
    }));
    newest_first(&mut out);
    out
}

/// QEMU's templates, newest first.
fn templates(root: &Path) -> Vec<Listed> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir(root)).into_iter().flatten();
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') || !p.is_dir() {
            continue;
        }
        let Some(meta) = std::fs::read(p.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        else {
            continue;
        };
        // The RAM file is sparse: what its blocks take.
        use std::os::unix::fs::MetadataExt;
        let bytes = std::fs::metadata(p.join("state"))
            .map(|m| m.len())
            .unwrap_or(0)
            + std::fs::metadata(ram_file(&p))
                .map(|m| m.blocks() * 512)
                .unwrap_or(0);
        // The key records the files' identity; a changed or missing one makes it unusable.
        let stale = !meta.kernel.is_file() || !meta.initramfs.is_file();
        out.push(Listed { meta, bytes, stale });
    }
    newest_first(&mut out);
    out
}

fn newest_first(out: &mut [Listed]) {
    out.sort_by(|a, b| {
        b.meta
            .created
            .cmp(&a.meta.created)
            .then(a.meta.key.cmp(&b.meta.key))
    });
}

/// A key from the command line: hex digits only (so never a path).
pub(crate) fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("template {key:?}: not a template key (hex digits, see hx system template ls)");
    }
    Ok(())
}

/// Removes template `key` (a QEMU template or a Xen pool); false if there is none.
pub fn remove(root: &Path, key: &str) -> anyhow::Result<bool> {
    check_key(key)?;
    let p = dir(root).join(key);
    if !p.is_dir() {
        return super::xen::warm::remove(root, key);
    }
    // Running restores keep reading the unlinked state file; new ones rebuild.
    let gone = dir(root).join(format!(".rm-{key}-{}", std::process::id()));
    std::fs::rename(&p, &gone)?;
    std::fs::remove_dir_all(&gone)?;
    let _ = std::fs::remove_file(dir(root).join(format!("{key}.lock")));
    Ok(true)
}

/// Removes stale templates, every template but the newest of each shape (memory, vCPUs,
/// accelerator, devices), and unfinished builds. The keys removed.
pub fn prune(root: &Path) -> anyhow::Result<Vec<String>> {
    sweep_unfinished(&dir(root), None);
    forget_failures(root);
    let mut seen = std::collections::HashSet::new();
    let mut removed = super::xen::warm::prune(root)?;
    for t in templates(root) {
        let shape = (
            t.meta.memory_mb,
            t.meta.cpus,
            t.meta.accel.clone(),
            t.meta.disks,
            t.meta.devices.clone(),
        );
        if t.stale || !seen.insert(shape) {
            remove(root, &t.meta.key)?;
            removed.push(t.meta.key);
        }
    }
    Ok(removed)
}
