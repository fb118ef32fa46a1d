//! Mounts: the initramfs basics, then the container's root (image + overlay) and switch into it.
use crate::devices::Disks;
use crate::InitError;
use nix::mount::{mount, MsFlags};
use pv_init::spec::{ContainerSpec, MountSource, Upper};
use std::fs;
use std::os::unix::fs::DirBuilderExt;

fn mnt(src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<(), InitError> {
    mkdir(target)?;
    mount(Some(src), target, Some(fstype), flags, data).map_err(|e| InitError::setup(format!("mount {fstype} {src} on {target}: {e}")))
}

fn mkdir(p: &str) -> Result<(), InitError> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(p).map_err(|e| InitError::setup(format!("mkdir {p}: {e}")))
}

pub fn early() -> Result<(), InitError> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mnt("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755"))?;
    mnt("proc", "/proc", "proc", nosuid, None)?;
    mnt("sysfs", "/sys", "sysfs", nosuid, None)?;
    Ok(())
}

pub fn assemble_root(spec: &ContainerSpec, disks: &Disks) -> Result<(), InitError> {
    let rootfs = disks.path(spec.rootfs.disk)?.to_string_lossy().to_string();
    mnt(&rootfs, "/lower", &spec.rootfs.fstype, MsFlags::MS_RDONLY, None)?;
    match &spec.upper {
        Upper::Tmpfs { size_mb } => {
            let opts = if *size_mb > 0 { format!("mode=0755,size={size_mb}m") } else { "mode=0755".into() };
            mnt("tmpfs", "/rw", "tmpfs", MsFlags::empty(), Some(&opts))?;
        }
        Upper::Disk { disk, fstype } => {
            let dev = disks.path(*disk)?.to_string_lossy().to_string();
            mnt(&dev, "/rw", fstype, MsFlags::empty(), None)?;
        }
    }
    mkdir("/rw/upper")?;
    mkdir("/rw/work")?;
    mnt("overlay", "/newroot", "overlay", MsFlags::empty(), Some("lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work"))?;

    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (d, dst) in [("/dev", "/newroot/dev"), ("/proc", "/newroot/proc"), ("/sys", "/newroot/sys")] {
        mkdir(dst)?;
        mount(Some(d), dst, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| InitError::setup(format!("move {d}: {e}")))?;
    }
    mnt("devpts", "/newroot/dev/pts", "devpts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=0620,gid=5"))?;
    mnt("shm", "/newroot/dev/shm", "tmpfs", nosuid, Some("mode=1777,size=65536k"))?;
    let _ = fs::remove_file("/newroot/dev/ptmx");
    let links = [("pts/ptmx", "/newroot/dev/ptmx"), ("/proc/self/fd", "/newroot/dev/fd"), ("/proc/self/fd/0", "/newroot/dev/stdin"), ("/proc/self/fd/1", "/newroot/dev/stdout"), ("/proc/self/fd/2", "/newroot/dev/stderr")];
    for (target, link) in links {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    for m in &spec.mounts {
        let target = format!("/newroot{}", m.target);
        let ro = if m.readonly { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        match &m.source {
            MountSource::Disk { disk, fstype } => {
                let dev = disks.path(*disk)?.to_string_lossy().to_string();
                mnt(&dev, &target, fstype, ro, None)?;
            }
            MountSource::Tmpfs { size_mb } => {
                let opts = if *size_mb > 0 { format!("size={size_mb}m") } else { String::new() };
                mnt("tmpfs", &target, "tmpfs", ro, Some(&opts))?;
            }
        }
    }
    write_etc(spec)?;
    switch_root()
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, written into the overlay (docker bind-mounts
/// its own; the image's files are never touched either way).
fn write_etc(spec: &ContainerSpec) -> Result<(), InitError> {
    mkdir("/newroot/etc")?;
    let w = |p: &str, s: String| fs::write(p, s).map_err(|e| InitError::setup(format!("{p}: {e}")));
    w("/newroot/etc/hostname", format!("{}\n", spec.hostname))?;
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match &spec.network {
        Some(n) => {
            let ip = n.address.split('/').next().unwrap_or("127.0.1.1");
            hosts.push_str(&format!("{ip}\t{}\n", spec.hostname));
            for h in &n.hosts {
                hosts.push_str(h);
                hosts.push('\n');
            }
            let resolv: String = n.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
            w("/newroot/etc/resolv.conf", resolv)?;
        }
        None => hosts.push_str(&format!("127.0.1.1\t{}\n", spec.hostname)),
    }
    w("/newroot/etc/hosts", hosts)?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| InitError::setup(format!("sethostname: {e}")))?;
    Ok(())
}

/// The initramfs root cannot be pivot_root'ed away: move the new root over `/` and chroot
/// into it (what switch_root does).
fn switch_root() -> Result<(), InitError> {
    let err = |what: &str, e: nix::Error| InitError::setup(format!("switch root: {what}: {e}"));
    nix::unistd::chdir("/newroot").map_err(|e| err("chdir", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| err("move", e))?;
    nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}
