//! Mounts: the initramfs basics, then the container's root (image + overlay) and switch into it.
use crate::devices::Disks;
use crate::InitError;
use nix::mount::{mount, MsFlags};
use pv_init::spec::{ContainerSpec, Mount, MountSource, Upper};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

fn mnt(
    src: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    mkdir(target)?;
    mount(Some(src), target, Some(fstype), flags, data)
        .map_err(|e| InitError::setup(format!("mount {fstype} {src} on {target}: {e}")))
}

fn mkdir(p: &str) -> Result<(), InitError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| InitError::setup(format!("mkdir {p}: {e}")))
}

pub fn early() -> Result<(), InitError> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mnt(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    mnt("proc", "/proc", "proc", nosuid, None)?;
    mnt("sysfs", "/sys", "sysfs", nosuid, None)?;
    Ok(())
}

pub fn assemble_root(spec: &ContainerSpec, disks: &Disks) -> Result<(), InitError> {
    let rootfs = disks.path(spec.rootfs.disk)?.to_string_lossy().to_string();
    mnt(
        &rootfs,
        "/lower",
        &spec.rootfs.fstype,
        MsFlags::MS_RDONLY,
        None,
    )?;
    match &spec.upper {
        Upper::Tmpfs { size_mb } => {
            let opts = if *size_mb > 0 {
                format!("mode=0755,size={size_mb}m")
            } else {
                "mode=0755".into()
            };
            mnt("tmpfs", "/rw", "tmpfs", MsFlags::empty(), Some(&opts))?;
        }
        Upper::Disk { disk, fstype } => {
            let dev = disks.path(*disk)?.to_string_lossy().to_string();
            mnt(&dev, "/rw", fstype, MsFlags::empty(), None)?;
        }
    }
    mkdir("/rw/upper")?;
    mkdir("/rw/work")?;
    // `hx commit` reads the upper directory after switch_root has hidden /rw.
    pv_init::layer::keep_upper(Path::new("/rw/upper"))
        .map_err(|e| InitError::setup(format!("open /rw/upper: {e}")))?;
    mnt(
        "overlay",
        "/newroot",
        "overlay",
        MsFlags::empty(),
        Some("lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work"),
    )?;

    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (d, dst) in [
        ("/dev", "/newroot/dev"),
        ("/proc", "/newroot/proc"),
        ("/sys", "/newroot/sys"),
    ] {
        mkdir(dst)?;
        mount(Some(d), dst, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| InitError::setup(format!("move {d}: {e}")))?;
    }
    mnt(
        "devpts",
        "/newroot/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    // `--shm-size`; docker's default is 64 MiB.
    let shm = format!("mode=1777,size={}", spec.shm_size.unwrap_or(64 << 20));
    mnt("shm", "/newroot/dev/shm", "tmpfs", nosuid, Some(&shm))?;
    let _ = fs::remove_file("/newroot/dev/ptmx");
    let links = [
        ("pts/ptmx", "/newroot/dev/ptmx"),
        ("/proc/self/fd", "/newroot/dev/fd"),
        ("/proc/self/fd/0", "/newroot/dev/stdin"),
        ("/proc/self/fd/1", "/newroot/dev/stdout"),
        ("/proc/self/fd/2", "/newroot/dev/stderr"),
    ];
    for (target, link) in links {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        volume(i, m, disks)?;
    }
    write_etc(spec)?;
    relay_resolv_conf(spec)?;
    if spec.read_only {
        // Only the overlay itself: the mounts on top of it keep their own flags.
        mount(
            None::<&str>,
            "/newroot",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| InitError::setup(format!("remount / read-only: {e}")))?;
    }
    switch_root()
}

/// One spec mount. Plain volumes are mounted straight onto their target; a single file, or a
/// fresh volume that first receives the image's files, goes through /vol/N in the initramfs
/// (out of the container's sight once the root is switched).
fn volume(i: usize, m: &Mount, disks: &Disks) -> Result<(), InitError> {
    let target = format!("/newroot{}", m.target);
    let ro = if m.readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let staged = m.subpath.is_some() || m.copy_up;
    let at = if staged {
        format!("/vol/{i}")
    } else {
        target.clone()
    };
    let flags = if staged && m.copy_up {
        MsFlags::empty()
    } else {
        ro
    };
    match &m.source {
        MountSource::Disk { disk, fstype } => {
            // /dev has been moved into the new root by now.
            let dev = format!("/newroot{}", disks.path(*disk)?.display());
            let opts = (fstype == "ext4").then_some("noinit_itable");
            mnt(&dev, &at, fstype, flags, opts)?;
        }
        MountSource::Tmpfs { size_mb, options } => {
            let flags = tmpfs_flags(options, flags);
            mnt("tmpfs", &at, "tmpfs", flags, Some(&options.data(*size_mb)))?;
        }
        MountSource::Share { tag } => mount_9p(tag, &at, flags)?,
    }
    if !staged {
        return Ok(());
    }
    if m.copy_up && is_empty_volume(&at) {
        // Docker's volumes are empty directories: an entrypoint that initialises its data
        // directory only when it is empty (databases) must not find ext4's lost+found there.
        // e2fsck makes it again if it ever needs one.
        let _ = fs::remove_dir(format!("{at}/lost+found"));
        if fs::symlink_metadata(&target).is_ok_and(|t| t.is_dir()) {
            copy_tree(std::path::Path::new(&target), std::path::Path::new(&at)).map_err(|e| {
                InitError::setup(format!("copying {} into its volume: {e}", m.target))
            })?;
        }
    }
    let source = match &m.subpath {
        Some(sub) => format!("{at}/{sub}"),
        None => at.clone(),
    };
    let is_dir = fs::metadata(&source)
        .map_err(|e| InitError::setup(format!("volume source {source}: {e}")))?
        .is_dir();
    if is_dir {
        mkdir(&target)?;
    } else if fs::symlink_metadata(&target).is_err() {
        if let Some(parent) = std::path::Path::new(&target).parent() {
            mkdir(&parent.to_string_lossy())?;
        }
        fs::write(&target, b"").map_err(|e| InitError::setup(format!("creating {target}: {e}")))?;
    }
    let bind = |flags: MsFlags| {
        mount(
            Some(source.as_str()),
            target.as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| InitError::setup(format!("bind {source} on {target}: {e}")))
    };
    if m.subpath.is_none() {
        // Moved rather than bound: nothing stays mounted out of sight, so release_volumes can
        // unmount the volume cleanly at power-off.
        return bind(MsFlags::MS_MOVE);
    }
    bind(MsFlags::MS_BIND)?;
    if m.readonly {
        bind(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// Unmounts the disk volumes before power-off (the workload is gone by then), so their ext4
/// journals are clean for the next container, which may attach them read-only.
pub fn release_volumes() {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in table.lines().rev() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[2] != "ext4" {
            continue;
        }
        let path = f[1].replace("\\040", " ");
        if nix::mount::umount2(path.as_str(), nix::mount::MntFlags::empty()).is_err() {
            let _ = mount(
                None::<&str>,
                path.as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
}

/// 9p over virtio (QEMU) or over Xen's PV transport. Xen's 9pfs frontend connects through
/// xenbus after boot, so the mount is retried briefly there.
pub(crate) fn mount_9p(tag: &str, at: &str, flags: MsFlags) -> Result<(), InitError> {
    let xen = crate::devices::Backend::detect() == crate::devices::Backend::Xen;
    let opts = format!(
        "trans={},version=9p2000.L",
        if xen { "xen" } else { "virtio" }
    );
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(if xen { 10 } else { 0 });
    loop {
        let r = mnt(tag, at, "9p", flags, Some(&opts));
        if r.is_ok() || std::time::Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `--tmpfs PATH:OPTIONS`' noexec, nosuid and nodev, added to `flags`.
pub(crate) fn tmpfs_flags(options: &pv_init::spec::TmpfsOptions, mut flags: MsFlags) -> MsFlags {
    for (on, f) in [
        (options.noexec, MsFlags::MS_NOEXEC),
        (options.nosuid, MsFlags::MS_NOSUID),
        (options.nodev, MsFlags::MS_NODEV),
    ] {
        if on {
            flags |= f;
        }
    }
    flags
}

/// A volume is fresh when it holds nothing but ext4's lost+found.
pub(crate) fn is_empty_volume(p: &str) -> bool {
    fs::read_dir(p).is_ok_and(|rd| rd.flatten().all(|e| e.file_name() == "lost+found"))
}

/// Copies a tree with owners, modes and symlinks (docker's volume copy-up).
pub(crate) fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::symlink_metadata(from)?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let m = fs::symlink_metadata(&src)?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&dst)?;
            copy_tree(&src, &dst)?;
            continue;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
    }
    Ok(())
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, written into the overlay (docker bind-mounts
/// its own; the image's files are never touched either way). One a mount of the spec covers
/// (`-v FILE:/etc/hosts`, the OCI runtime's bind of docker's file) is the mount's: never
/// written through.
fn write_etc(spec: &ContainerSpec) -> Result<(), InitError> {
    mkdir("/newroot/etc")?;
    let bound = |p: &str| {
        spec.mounts
            .iter()
            .any(|m| p.strip_prefix("/newroot") == Some(m.target.as_str()))
    };
    let w = |p: &str, s: String| {
        if bound(p) {
            return Ok(());
        }
        fs::write(p, s).map_err(|e| InitError::setup(format!("{p}: {e}")))
    };
    w("/newroot/etc/hostname", format!("{}\n", spec.hostname))?;
    // Docker's file (libnetwork's etchosts): the defaults, the --add-host lines, then the
    // container's own address with its hostname (and here its name, which docker's embedded
    // DNS resolves on a user network; hx has no such server).
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    let mut names = vec![spec.hostname.as_str()];
    for a in &spec.aliases {
        if !names.contains(&a.as_str()) {
            names.push(a);
        }
    }
    let names = names.join(" ");
    let extra = spec.network.iter().flat_map(|n| &n.hosts);
    for h in extra.chain(&spec.extra_hosts) {
        hosts.push_str(h);
        hosts.push('\n');
    }
    match &spec.network {
        Some(n) => {
            let ip = n.address.split('/').next().unwrap_or("127.0.1.1");
            hosts.push_str(&format!("{ip}\t{names}\n"));
            if let Some((ip6, _)) = n.address6.as_deref().and_then(pv_init::spec::parse_cidr6) {
                hosts.push_str(&format!("{ip6}\t{names}\n"));
            }
            let mut resolv: String = n.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
            if !n.dns_search.is_empty() {
                resolv.push_str(&format!("search {}\n", n.dns_search.join(" ")));
            }
            if !n.dns_options.is_empty() {
                resolv.push_str(&format!("options {}\n", n.dns_options.join(" ")));
            }
            w("/newroot/etc/resolv.conf", resolv)?;
        }
        None => hosts.push_str(&format!("127.0.1.1\t{names}\n")),
    }
    w("/newroot/etc/hosts", hosts)?;
    nix::unistd::sethostname(&spec.hostname)
        .map_err(|e| InitError::setup(format!("sethostname: {e}")))?;
    Ok(())
}

/// Under a DNS relay (the spec's `dns_relay`): a resolv.conf — docker's, bound from the host,
/// or the image's — naming the server the guest cannot reach (127.0.0.11) is replaced by a
/// copy naming the relay, bound over it from the initramfs (the host's file is never written).
fn relay_resolv_conf(spec: &ContainerSpec) -> Result<(), InitError> {
    let Some(relay) = spec.network.as_ref().and_then(|n| n.dns_relay.as_ref()) else {
        return Ok(());
    };
    let path = "/newroot/etc/resolv.conf";
    let mut text = String::new();
    let read = fs::File::open(path).and_then(|f| {
        use std::io::Read;
        f.take(RESOLV_MAX).read_to_string(&mut text)
    });
    if read.is_err() {
        return Ok(());
    }
    let Some(relayed) = pv_init::spec::resolv_via_relay(&text, &relay.replaces, &relay.server)
    else {
        return Ok(());
    };
    let copy = "/hx-resolv.conf";
    fs::write(copy, relayed).map_err(|e| InitError::setup(format!("{copy}: {e}")))?;
    mount(
        Some(copy),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| InitError::setup(format!("bind {copy} on /etc/resolv.conf: {e}")))
}

/// resolv.conf is a few lines; a longer one is cut (its first 64 KiB are kept).
const RESOLV_MAX: u64 = 64 << 10;

/// The initramfs root cannot be pivot_root'ed away: move the new root over `/` and chroot
/// into it (what switch_root does).
fn switch_root() -> Result<(), InitError> {
    let err = |what: &str, e: nix::Error| InitError::setup(format!("switch root: {what}: {e}"));
    nix::unistd::chdir("/newroot").map_err(|e| err("chdir", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| err("move", e))?;
    nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}
