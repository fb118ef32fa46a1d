//! Pods: one guest, several containers (docs/pods.md). The pod's own container is a pause
//! process over an empty root; each member's workload arrives on the exec channel with its
//! disks hot-plugged by the host (QEMU: on the pod's virtio-scsi bus; Xen: blkback vbds). Its
//! root is assembled here, under `/.hx-pod/<id>/root` in the pod's mount namespace, and every
//! process of the member enters it in a mount namespace of its own (the workload by
//! pivot_root, `hx exec` by joining the workload's namespace), so members see neither each
//! other's files nor the pod's.
use crate::InitError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use pv_init::mux::{MemberDisks, MemberStart};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What pv-init starts as the pod's own workload: it only waits to be stopped.
pub const PAUSE_ARG: &str = "--hx-pod-pause";
const BASE: &str = "/.hx-pod";
/// How long a hot-plugged disk may take to appear (the SCSI scan after the hotplug event, or
/// blkfront's connection to blkback).
const DISK_WAIT: Duration = Duration::from_secs(15);

pub struct Member {
    pub root: PathBuf,
    /// The workload's mount namespace, held open so that `hx exec` can join it.
    pub ns: Option<OwnedFd>,
    /// Its PID namespace (the workload is its init), likewise.
    pub pid_ns: Option<OwnedFd>,
    pub user: String,
    pub cwd: String,
    pub env: Vec<String>,
    /// What its workload was given, and every `hx exec` into it by default.
    pub privileges: Privileges,
}

/// A process's capability sets (None: all), no-new-privileges flag and system-call filter.
#[derive(Debug, Clone, Default)]
pub struct Privileges {
    pub capabilities: Option<pv_init::spec::Capabilities>,
    pub no_new_privileges: bool,
    pub seccomp: Option<std::sync::Arc<pv_init::spec::Seccomp>>,
}

/// A running member as `hx exec` enters it.
pub struct Entered {
    pub root: PathBuf,
    /// A dup of its workload's mount namespace.
    pub ns: OwnedFd,
    /// A dup of its PID namespace.
    pub pid_ns: Option<OwnedFd>,
    pub user: String,
    pub cwd: String,
    pub env: Vec<String>,
    pub privileges: Privileges,
}

static MEMBERS: Mutex<Option<HashMap<String, Member>>> = Mutex::new(None);

/// The pod's pause process (run as `/proc/1/exe --hx-pod-pause`): waits for a stop signal,
/// then exits 0.
pub fn pause() -> ! {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    let _ = set.wait();
    std::process::exit(0)
}

/// The block device of a member's disk `disk` (0 the image, 1 the layer), waited for.
fn member_disk(disks: MemberDisks, disk: u32) -> Result<PathBuf, InitError> {
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        if let Some(path) = find_member_disk(disks, disk) {
            return Ok(path);
        }
        if Instant::now() > deadline {
            let at = match disks {
                MemberDisks::Scsi { target } => format!("SCSI {target}:{disk}"),
                MemberDisks::Xen { slot } => format!(
                    "vbd-{}",
                    pv_init::mux::xen_vbd_number(pv_init::mux::xen_member_disk_index(slot, disk))
                ),
            };
            return Err(InitError::setup(format!(
                "pod member disk {at} did not appear"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/dev/<name>` of the disk, once the kernel has it: on SCSI the device whose address ends in
/// `:0:T:LUN`; on Xen the block device of xenbus device `vbd-<number>` (blkfront connected).
fn find_member_disk(disks: MemberDisks, disk: u32) -> Option<PathBuf> {
    let first_block = |dev: &Path| {
        std::fs::read_dir(dev.join("block"))
            .ok()
            .and_then(|mut b| b.next())
            .and_then(|b| b.ok())
            .map(|b| b.file_name().to_string_lossy().to_string())
    };
    let name = match disks {
        MemberDisks::Scsi { target } => {
            let suffix = format!(":0:{target}:{disk}");
            // A previous member's device at the same address may still be going ("deleting"):
            // its /dev node answers ENXIO.
            let running = |dev: &Path| {
                std::fs::read_to_string(dev.join("state")).is_ok_and(|s| s.trim() == "running")
            };
            std::fs::read_dir("/sys/bus/scsi/devices")
                .ok()?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .filter(|e| running(&e.path()))
                .find_map(|e| first_block(&e.path()))?
        }
        MemberDisks::Xen { slot } => {
            let number =
                pv_init::mux::xen_vbd_number(pv_init::mux::xen_member_disk_index(slot, disk));
            first_block(Path::new(&format!("/sys/bus/xen/devices/vbd-{number}")))?
        }
    };
    let path = PathBuf::from(format!("/dev/{name}"));
    path.exists().then_some(path)
}

fn mnt(
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    std::fs::create_dir_all(target)
        .map_err(|e| InitError::setup(format!("mkdir {}: {e}", target.display())))?;
    mount(Some(src), target, fstype, flags, data)
        .map_err(|e| InitError::setup(format!("mount {src} on {}: {e}", target.display())))
}

/// Mounts member disk `disk` (its LUN) on `target`. A hot-plugged disk's /dev node can
/// appear before the disk opens (ENXIO while the SCSI scan finishes): retried until
/// DISK_WAIT.
fn mount_member_disk(
    disks: MemberDisks,
    disk: u32,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    std::fs::create_dir_all(target)
        .map_err(|e| InitError::setup(format!("mkdir {}: {e}", target.display())))?;
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        let dev = member_disk(disks, disk)?;
        match mount(Some(&dev), target, Some(fstype), flags, data) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::ENXIO | nix::errno::Errno::ENODEV)
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                return Err(InitError::setup(format!(
                    "mount {} on {}: {e}",
                    dev.display(),
                    target.display()
                )))
            }
        }
    }
}

/// Mounts the member's image, its writable layer and the overlay of both; gives it the pod's
/// /dev and its /etc/hosts, /etc/hostname and /etc/resolv.conf. Returns the root.
pub fn assemble(m: &MemberStart, confined: bool) -> Result<PathBuf, InitError> {
    let base = Path::new(BASE).join(&m.id);
    if base.join("root").exists() && is_mountpoint(&base.join("root")) {
        return Err(InitError::setup(format!(
            "pod member {} is already running",
            m.id
        )));
    }
    mount_member_disk(
        m.disks,
        0,
        &base.join("lower"),
        &m.rootfs_type,
        MsFlags::MS_RDONLY,
        None,
    )?;
    if m.upper_disk {
        mount_member_disk(m.disks, 1, &base.join("rw"), "ext4", MsFlags::empty(), None)?;
    } else {
        mnt(
            "tmpfs",
            &base.join("rw"),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        )?;
    }
    for d in ["rw/upper", "rw/work"] {
        std::fs::create_dir_all(base.join(d))
            .map_err(|e| InitError::setup(format!("mkdir {d}: {e}")))?;
    }
    let root = base.join("root");
    let opts = format!(
        "lowerdir={0}/lower,upperdir={0}/rw/upper,workdir={0}/rw/work",
        base.display()
    );
    // Confined, a device node it makes (CAP_MKNOD is docker's) opens nothing: only /dev's
    // own nodes do.
    let nodev = if confined {
        MsFlags::MS_NODEV
    } else {
        MsFlags::empty()
    };
    mnt("overlay", &root, Some("overlay"), nodev, Some(&opts))?;
    // What pv-init mounts or writes at these paths of the image is resolved in pv-init's own
    // namespace: an image's symlink there (`/dev -> /dev`) would lead it onto the pod VM's.
    for d in ["dev", "proc", "sys", "etc"] {
        own_dir(&root, d)?;
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    if confined {
        member_dev(&root.join("dev"))?;
    } else {
        // --privileged: the pod VM's devices, as docker gives the host's.
        mnt(
            "/dev",
            &root.join("dev"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
    }
    // Its own /proc (made by own_dir above) is mounted by its workload, the init of its PID
    // namespace, which also makes its copy of this /sys read-only unless privileged
    // (process::Enter::NewRoot, confine_proc_and_sys: a single container's gets the same).
    mnt("sysfs", &root.join("sys"), Some("sysfs"), nosuid, None)?;
    // Its own cgroup as /sys/fs/cgroup, read-only (what docker's private cgroup namespace
    // shows): runtimes that size themselves from memory.max and cpu.max (the JVM, Go's
    // automaxprocs) see the member's limits, not the pod VM's.
    let cg = root.join("sys/fs/cgroup");
    let group = crate::cgroup::dir(&m.id);
    if cg.is_dir() && group.is_dir() {
        mount(
            Some(&group),
            &cg,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .and_then(|()| {
            mount(
                None::<&str>,
                &cg,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid,
                None::<&str>,
            )
        })
        .map_err(|e| InitError::setup(format!("binding its cgroup: {e}")))?;
    }
    let etc = root.join("etc");
    for f in ["hosts", "hostname", "resolv.conf"] {
        if let Ok(b) = std::fs::read(Path::new("/etc").join(f)) {
            let _ = std::fs::remove_file(etc.join(f));
            std::fs::write(etc.join(f), b)
                .map_err(|e| InitError::setup(format!("writing /etc/{f}: {e}")))?;
        }
    }
    // Shallower targets first (as containerd sorts a spec's mounts), whichever way each
    // arrives, so a file or tmpfs under a copied directory is not hidden by it.
    enum Item<'a> {
        Mount(&'a pv_init::spec::Mount),
        File(usize, &'a pv_init::mux::MemberFile),
        Tree(usize, &'a pv_init::mux::MemberTree),
    }
    let mut items: Vec<(usize, Item)> = m
        .mounts
        .iter()
        .map(|v| (depth(&v.target), Item::Mount(v)))
        .chain(
            m.files
                .iter()
                .enumerate()
                .map(|(i, f)| (depth(&f.target), Item::File(i, f))),
        )
        .chain(
            m.trees
                .iter()
                .enumerate()
                .map(|(i, t)| (depth(&t.target), Item::Tree(i, t))),
        )
        .collect();
    items.sort_by_key(|(d, _)| *d);
    for (_, item) in items {
        match item {
            Item::Mount(v) => member_mount(m, &base, &root, v, nodev)?,
            Item::File(i, f) => member_file(&base, &root, i, f)?,
            Item::Tree(i, t) => member_tree(&base, &root, i, t)?,
        }
    }
    Ok(root)
}

/// `root/name` as a directory of the member's own (made when missing); a symlink or anything
/// else there is refused, naming it.
fn own_dir(root: &Path, name: &str) -> Result<(), InitError> {
    let p = root.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(InitError::setup(format!(
            "the image's /{name} is not a directory (a symlink?): a pod member needs its own"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&p).map_err(|e| InitError::setup(format!("mkdir /{name}: {e}")))
        }
        Err(e) => Err(InitError::setup(format!("/{name}: {e}"))),
    }
}

/// A confined member's /dev, docker's: a small tmpfs with the harmless character devices, a
/// devpts instance of its own (the other members' terminals are not there to open: root's
/// CAP_DAC_OVERRIDE would otherwise read and type into them) and /dev/shm (shared, like a
/// Kubernetes pod's IPC) — not the pod VM's disks, where the other members' roots and layers
/// are.
fn member_dev(dev: &Path) -> Result<(), InitError> {
    mnt(
        "tmpfs",
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,size=65536k"),
    )?;
    let made = |what: &str, e: std::io::Error| InitError::setup(format!("/dev/{what}: {e}"));
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        std::fs::File::create(dev.join(node)).map_err(|e| made(node, e))?;
        mount(
            Some(&Path::new("/dev").join(node)),
            &dev.join(node),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| made(node, e.into()))?;
    }
    std::fs::create_dir(dev.join("pts")).map_err(|e| made("pts", e))?;
    mnt(
        "devpts",
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    for dir in ["shm", "mqueue"] {
        if !Path::new("/dev").join(dir).is_dir() {
            continue;
        }
        std::fs::create_dir(dev.join(dir)).map_err(|e| made(dir, e))?;
        mnt(
            &format!("/dev/{dir}"),
            &dev.join(dir),
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link)).map_err(|e| made(link, e))?;
    }
    Ok(())
}

/// How many components a target path has.
fn depth(target: &str) -> usize {
    target
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .count()
}

/// A read-only host directory copied in by the host (`MemberTree`, checked by the request's
/// parse: every parent made before what it holds, so nothing is written through a link): made
/// aside, then bound read-only onto its target.
fn member_tree(
    base: &Path,
    root: &Path,
    i: usize,
    t: &pv_init::mux::MemberTree,
) -> Result<(), InitError> {
    use pv_init::mux::TreeEntry;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let bad = |what: &str| InitError::setup(format!("pod member directory {}: {what}", t.target));
    pv_init::mux::check_tree(&t.entries).map_err(|e| bad(&e))?;
    let top = base.join("trees").join(i.to_string());
    std::fs::create_dir_all(&top).map_err(|e| bad(&e.to_string()))?;
    for e in &t.entries {
        let at = top.join(e.path());
        let made = match e {
            TreeEntry::Dir { .. } => std::fs::DirBuilder::new().mode(0o700).create(&at),
            TreeEntry::File { base64, .. } => {
                let bytes =
                    pv_init::mux::decode_file(base64).ok_or_else(|| bad("a file is not base64"))?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&at)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
            }
            TreeEntry::Symlink { to, .. } => std::os::unix::fs::symlink(to, &at),
        };
        made.map_err(|err| bad(&format!("{}: {err}", e.path())))?;
    }
    // The host's permission bits (a ConfigMap's defaultMode, a key's 0600) once all is made.
    use std::os::unix::fs::PermissionsExt;
    for e in &t.entries {
        let mode = match e {
            TreeEntry::Dir { mode, .. } | TreeEntry::File { mode, .. } => *mode & 0o777,
            TreeEntry::Symlink { .. } => continue,
        };
        std::fs::set_permissions(top.join(e.path()), std::fs::Permissions::from_mode(mode))
            .map_err(|err| bad(&format!("{}: {err}", e.path())))?;
    }
    bind_onto(root, &top, &t.target, true, true).map_err(|e| bad(&e))
}

/// A host file copied in by the host (`MemberFile`): written aside, out of the member's
/// sight, and bound onto its target like a host file share.
fn member_file(
    base: &Path,
    root: &Path,
    i: usize,
    f: &pv_init::mux::MemberFile,
) -> Result<(), InitError> {
    let bad = |what: &str| InitError::setup(format!("pod member file {}: {what}", f.target));
    let bytes = f.bytes().ok_or_else(|| bad("not base64 or too long"))?;
    let dir = base.join("files");
    std::fs::create_dir_all(&dir).map_err(|e| bad(&e.to_string()))?;
    let aside = dir.join(i.to_string());
    std::fs::write(&aside, bytes).map_err(|e| bad(&e.to_string()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(f.mode & 0o777))
        .map_err(|e| bad(&e.to_string()))?;
    bind_onto(root, &aside, &f.target, false, f.readonly).map_err(|e| bad(&e))
}

/// Where the pod's members exports are mounted (in the pod's namespace, out of members'
/// sight): the writable one and the read-only one (`MEMBERS_RO_SHARE_TAG`).
const MEMBERS_AT: &str = "/.hx-members";
const MEMBERS_RO_AT: &str = "/.hx-members-ro";

/// The members export for `readonly` shares or the others, mounted on first use.
fn members_export(readonly: bool) -> Result<&'static Path, InitError> {
    static MOUNTED: Mutex<[bool; 2]> = Mutex::new([false; 2]);
    let mut mounted = MOUNTED.lock().unwrap_or_else(|e| e.into_inner());
    let (tag, at, flags) = if readonly {
        (
            pv_init::mux::MEMBERS_RO_SHARE_TAG,
            MEMBERS_RO_AT,
            MsFlags::MS_RDONLY,
        )
    } else {
        (
            pv_init::mux::MEMBERS_SHARE_TAG,
            MEMBERS_AT,
            MsFlags::empty(),
        )
    };
    if !mounted[usize::from(readonly)] {
        crate::mounts::mount_9p(tag, at, flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
        mounted[usize::from(readonly)] = true;
    }
    Ok(Path::new(at))
}

/// One of a member's volumes, onto `target` resolved inside its root: a host directory or file
/// the host bound into the members export (`<id>/<tag>`), or a tmpfs.
/// `nodev`: a confined member's tmpfs mounts are `nodev` whatever their options say (where
/// it may make device nodes, none opens).
fn member_mount(
    m: &MemberStart,
    base: &Path,
    root: &Path,
    v: &pv_init::spec::Mount,
    nodev: MsFlags,
) -> Result<(), InitError> {
    use pv_init::spec::MountSource;
    let id = &m.id;
    let bad = |what: &str| InitError::setup(format!("pod member volume {}: {what}", v.target));
    let ro = if v.readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    match &v.source {
        MountSource::Share { tag } => {
            let plain = |s: &str| {
                !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
            };
            if !plain(tag) || v.subpath.as_deref().is_some_and(|s| !plain(s)) {
                return Err(bad("not a plain share name"));
            }
            let mut source = members_export(v.readonly)?.join(id).join(tag);
            if let Some(sub) = &v.subpath {
                source.push(sub);
            }
            // The export is the pod's own (the guest can write it): no symlink is followed.
            let meta = std::fs::symlink_metadata(&source)
                .map_err(|e| bad(&format!("{}: {e}", source.display())))?;
            if meta.file_type().is_symlink() {
                return Err(bad("its source is a symlink"));
            }
            bind_onto(root, &source, &v.target, meta.is_dir(), v.readonly).map_err(|e| bad(&e))?;
        }
        MountSource::Tmpfs { size_mb, options } => {
            let flags = crate::mounts::tmpfs_flags(options, ro) | nodev;
            let at = open_in_root(root, &v.target, true).map_err(|e| bad(&e))?;
            mount(
                Some("tmpfs"),
                format!("/proc/self/fd/{}", at.as_raw_fd()).as_str(),
                Some("tmpfs"),
                flags,
                Some(options.data(*size_mb).as_str()),
            )
            .map_err(|e| bad(&format!("tmpfs: {e}")))?;
        }
        MountSource::Disk { disk, fstype } => {
            // A volume disk at LUN `disk`: mounted aside first, where a fresh one receives
            // what the image has at the target (docker's copy-up), then bound onto it.
            if *disk < 2 || fstype != "ext4" {
                return Err(bad("not a volume disk"));
            }
            let aside = base.join("vol").join(disk.to_string());
            let flags = if v.copy_up { MsFlags::empty() } else { ro };
            mount_member_disk(
                m.disks,
                *disk,
                &aside,
                "ext4",
                flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("noinit_itable"),
            )?;
            let aside_s = aside.to_string_lossy().to_string();
            if v.copy_up && crate::mounts::is_empty_volume(&aside_s) {
                let _ = std::fs::remove_dir(aside.join("lost+found"));
                let at = open_in_root(root, &v.target, true).map_err(|e| bad(&e))?;
                // The target's path as resolved (no symlink left in it; nothing of the member
                // runs yet to change it).
                let real = std::fs::read_link(format!("/proc/self/fd/{}", at.as_raw_fd()))
                    .map_err(|e| bad(&e.to_string()))?;
                crate::mounts::copy_tree(&real, &aside)
                    .map_err(|e| bad(&format!("copying the image's files into the volume: {e}")))?;
            }
            bind_onto(root, &aside, &v.target, true, v.readonly).map_err(|e| bad(&e))?;
        }
    }
    Ok(())
}

/// Binds `source` onto `target` inside the member's root (resolved there: `open_in_root`),
/// read-only when asked.
fn bind_onto(
    root: &Path,
    source: &Path,
    target: &str,
    dir: bool,
    readonly: bool,
) -> Result<(), String> {
    let at = open_in_root(root, target, dir)?;
    mount(
        Some(source),
        format!("/proc/self/fd/{}", at.as_raw_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind: {e}"))?;
    if readonly {
        // The new mount's root, reopened: a remount needs the mount point itself.
        let top = open_in_root(root, target, dir)?;
        mount(
            None::<&str>,
            format!("/proc/self/fd/{}", top.as_raw_fd()).as_str(),
            None::<&str>,
            // A bind remount sets every flag anew: keep the export's nosuid and nodev.
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| format!("read-only: {e}"))?;
    }
    Ok(())
}

/// `target` (absolute, inside the member's root) opened as an O_PATH descriptor, resolved
/// as if `root` were `/` (RESOLVE_IN_ROOT: the image's symlinks cannot lead out of it, to
/// the pod's or another member's files); missing directories are made, and a missing last
/// component too (a directory, or an empty file when `dir` is false).
pub fn open_in_root(root: &Path, target: &str, dir: bool) -> Result<OwnedFd, String> {
    let comps: Vec<&str> = target
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.is_empty() || comps.contains(&"..") {
        return Err("not a path below /".into());
    }
    let root_fd = nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", root.display()))?;
    let open = |rel: &str| {
        openat2_in_root(
            &root_fd,
            rel,
            libc::O_PATH | libc::O_CLOEXEC,
            libc::RESOLVE_NO_MAGICLINKS,
        )
    };
    for n in 1..=comps.len() {
        let rel = comps[..n].join("/");
        match open(&rel) {
            Ok(fd) if n == comps.len() => return Ok(fd),
            Ok(_) => continue,
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(format!("{rel}: {e}")),
        }
        let parent = if n == 1 {
            root_fd.try_clone().map_err(|e| e.to_string())?
        } else {
            open(&comps[..n - 1].join("/")).map_err(|e| format!("{rel}: {e}"))?
        };
        let name = comps[n - 1];
        let made = if n < comps.len() || dir {
            nix::sys::stat::mkdirat(
                &parent,
                name,
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            )
        } else {
            nix::fcntl::openat(
                &parent,
                name,
                nix::fcntl::OFlag::O_CREAT
                    | nix::fcntl::OFlag::O_EXCL
                    | nix::fcntl::OFlag::O_WRONLY
                    | nix::fcntl::OFlag::O_NOFOLLOW
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        };
        match made {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("making {rel}: {e}")),
        }
        match open(&rel) {
            Ok(fd) if n == comps.len() => return Ok(fd),
            Ok(_) => {}
            Err(e) => return Err(format!("{rel}: {e}")),
        }
    }
    Err("not a path below /".into())
}

/// openat2(2) of `rel` below `root_fd` as if it were `/` (RESOLVE_IN_ROOT, with `resolve`'s
/// further bounds): no link the tree holds leads out of it.
pub(crate) fn openat2_in_root(
    root_fd: &OwnedFd,
    rel: &str,
    flags: libc::c_int,
    resolve: u64,
) -> Result<OwnedFd, nix::errno::Errno> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(rel).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: open_how is plain integers; all-zero is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | resolve;
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an open_how of the size
    // passed; the result is a new descriptor owned here.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: a descriptor just returned by openat2, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pty pair from the devpts instance at `root`/dev/pts (a confined member's own), so that its
/// workload's or exec's terminal is the member's, as runc allocates a container's console
/// inside it. None when there is no such instance (not a member: the VM's /dev/ptmx is used).
/// The master is opened without following any link, and must be the ptmx device (5:2); the
/// slave comes from the master itself (TIOCGPTPEER), never by a name.
pub fn member_pty(root: &Path) -> Result<Option<nix::pty::OpenptyResult>, InitError> {
    use std::os::fd::FromRawFd;
    let fail = |what: &str, e: nix::errno::Errno| {
        InitError::setup(format!("the member's terminal: {what}: {e}"))
    };
    let root_fd = match nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return Err(fail("its root", e)),
    };
    let master = match openat2_in_root(
        &root_fd,
        "dev/pts/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(fail("dev/pts/ptmx", e)),
    };
    let st = nix::sys::stat::fstat(&master).map_err(|e| fail("dev/pts/ptmx", e))?;
    let is_ptmx = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == 5
        && libc::minor(st.st_rdev) == 2;
    if !is_ptmx {
        return Err(InitError::setup(
            "the member's terminal: dev/pts/ptmx is not the ptmx device".to_string(),
        ));
    }
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_RDWR),
    )
    .map_err(|e| fail("ptmx flags", e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new descriptor (owned below).
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(fail("unlockpt", nix::errno::Errno::last()));
        }
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(fail("TIOCGPTPEER", nix::errno::Errno::last()));
    }
    Ok(Some(nix::pty::OpenptyResult {
        master,
        // SAFETY: a descriptor just returned by TIOCGPTPEER, owned from here on.
        slave: unsafe { OwnedFd::from_raw_fd(slave) },
    }))
}

fn is_mountpoint(p: &Path) -> bool {
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

pub fn register(id: &str, member: Member) {
    MEMBERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(id.to_string(), member);
}

/// The member as `hx exec` enters it.
pub fn lookup(id: &str) -> Result<Entered, InitError> {
    let members = MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
    let m = members
        .as_ref()
        .and_then(|m| m.get(id))
        .ok_or_else(|| InitError::setup(format!("no running pod member {id}")))?;
    let ns =
        m.ns.as_ref()
            .ok_or_else(|| InitError::setup(format!("pod member {id} has no namespace")))?
            .try_clone()
            .map_err(|e| InitError::setup(format!("namespace: {e}")))?;
    Ok(Entered {
        root: m.root.clone(),
        ns,
        pid_ns: m.pid_ns.as_ref().and_then(|fd| fd.try_clone().ok()),
        user: m.user.clone(),
        cwd: m.cwd.clone(),
        env: m.env.clone(),
        privileges: m.privileges.clone(),
    })
}

/// The namespace (`mnt`, `pid`) of `pid`, once it has entered it (after its exec).
pub fn namespace_of(pid: i32, kind: &str) -> Option<OwnedFd> {
    std::fs::File::open(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(OwnedFd::from)
}

/// The member's workload has ended: kill what else runs in its namespace, flush and unmount
/// its disks (the host unplugs them once the session's end is reported).
pub fn teardown(id: &str) {
    let member = MEMBERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|m| m.remove(id));
    if let Some(ns) = member.as_ref().and_then(|m| m.ns.as_ref()) {
        kill_namespace(ns);
    }
    drop(member);
    let base = Path::new(BASE).join(id);
    nix::unistd::sync();
    for d in ["root", "rw", "lower"] {
        let _ = umount2(&base.join(d), MntFlags::MNT_DETACH);
    }
    // After the root (its /sys/fs/cgroup is a bind of the group).
    crate::cgroup::remove(id);
    crate::device_filter::remove(id);
    // Volumes last, each cleanly where it can be (its journal clean for the next container).
    if let Ok(vols) = std::fs::read_dir(base.join("vol")) {
        for v in vols.flatten() {
            if umount2(&v.path(), MntFlags::empty()).is_err() {
                let _ = umount2(&v.path(), MntFlags::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// SIGKILL to every process whose mount namespace is `ns`; waits (at most 2 s) for them to go.
fn kill_namespace(ns: &OwnedFd) {
    let Ok(me) = nix::sys::stat::fstat(ns) else {
        return;
    };
    let in_ns = || -> Vec<i32> {
        let mut pids = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                if let Ok(st) = std::fs::metadata(format!("/proc/{pid}/ns/mnt")) {
                    if st.dev() == me.st_dev && st.ino() == me.st_ino {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = in_ns();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::open_in_root;
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;

    fn resolved(fd: &std::os::fd::OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn a_target_is_made_and_resolved_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // The image's symlinks: absolute, relative and climbing, all meant to lead out.
        std::os::unix::fs::symlink(outside.path(), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etclink")).unwrap();

        let d = open_in_root(&root, "/data/sub", true).unwrap();
        assert_eq!(resolved(&d), root.join("data/sub"));
        assert!(root.join("data/sub").is_dir());
        let f = open_in_root(&root, "/etc/app.conf", false).unwrap();
        assert_eq!(resolved(&f), root.join("etc/app.conf"));
        assert!(root.join("etc/app.conf").is_file());

        // Absolute: it means <root>/<outside>, which is not there: refused, nothing made.
        assert!(open_in_root(&root, "/abs/x", true).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let inside = root.join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        let a = open_in_root(&root, "/abs/x", true).unwrap();
        assert_eq!(resolved(&a), inside.join("x"));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let u = open_in_root(&root, "/up/y", true).unwrap();
        assert_eq!(resolved(&u), root.join("y"));
        let e = open_in_root(&root, "/etclink/z", false).unwrap();
        assert_eq!(resolved(&e), root.join("etc/z"));

        assert!(open_in_root(&root, "/", true).is_err());
        assert!(open_in_root(&root, "/a/../b", true).is_err());
        // An existing file where a directory is wanted on the way: an error, no change.
        assert!(open_in_root(&root, "/etc/app.conf/x", true).is_err());
    }
}
