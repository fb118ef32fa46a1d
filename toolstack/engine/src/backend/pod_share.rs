//! A pod member's host directories and files, given to the pod's running VM (docs/pods.md).
//! No 9p device can be hot-added to QEMU, so the pod's VM has one from boot, the members
//! export (`<pod dir>/members`), and each member's paths are bound under `<id>/<tag>` in it.
//! The binds live in the VM process's own mount namespace (`private_mounts`), never in the
//! host's: they vanish with the VM however it ends, nothing on the host can leak, and removing
//! the pod's directory cannot reach into a volume through them. A bind is made by cloning the
//! source in the host's namespace (open_tree) and attaching the clone in the VM's (move_mount),
//! so it needs no mount propagation between the two.
use crate::container::Container;
use crate::process::Tracked;
use anyhow::{bail, Context};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pod::MemberFiles;

const EXPORT: &str = "members";
const EXPORT_RO: &str = "members-ro";
// linux/mount.h, linux/fcntl.h.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: u64 = 1;

/// The members export of the pod VM whose container directory is `pod_dir`.
pub fn members_export(pod_dir: &Path) -> PathBuf {
    pod_dir.join(EXPORT)
}

/// Its read-only members export (`pv_init::mux::MEMBERS_RO_SHARE_TAG`): `:ro` shares.
pub fn members_export_ro(pod_dir: &Path) -> PathBuf {
    pod_dir.join(EXPORT_RO)
}

/// Makes the exports and starts the VM process `cmd` in a mount namespace of its own (a slave
/// of the host's: the host's mounts still reach it). `seal_ro`: the read-only export is a
/// read-only bind of itself in that namespace, for a 9p server that cannot export read-only
/// (Xen's): what the guest sees there, the export's own directory included, it cannot change,
/// while the host still makes `<id>/<tag>` in it through its own namespace.
pub fn private_mounts(cmd: &mut Command, pod_dir: &Path, seal_ro: bool) -> anyhow::Result<()> {
    for export in [members_export(pod_dir), members_export_ro(pod_dir)] {
        std::fs::create_dir_all(&export)
            .with_context(|| format!("creating {}", export.display()))?;
    }
    let ro = cstr(&members_export_ro(pod_dir))?;
    // SAFETY: unshare and mount only, between fork and exec, on a string made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ) != 0
            {
                return fail();
            }
            if seal_ro
                && (libc::mount(
                    ro.as_ptr(),
                    ro.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                    || libc::mount(
                        std::ptr::null(),
                        ro.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND
                            | libc::MS_REMOUNT
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV,
                        std::ptr::null(),
                    ) != 0)
            {
                return fail();
            }
            Ok(())
        });
    }
    Ok(())
}

/// The running VM of `pod`, checked to be in a mount namespace of its own.
fn vm_of(pod: &Container) -> anyhow::Result<(Tracked, std::fs::File)> {
    let vm = pod
        .vm_process()
        .filter(|p| p.is_alive())
        .ok_or_else(|| anyhow::anyhow!("pod {}: its VM is not running", pod.name))?;
    let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", vm.pid))
        .with_context(|| format!("pod {}: its VM's mount namespace", pod.name))?;
    if !vm.is_alive() {
        bail!("pod {}: its VM is not running", pod.name);
    }
    let ours = std::fs::metadata("/proc/self/ns/mnt")?;
    let theirs = ns.metadata()?;
    use std::os::unix::fs::MetadataExt;
    if (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()) {
        bail!(
            "pod {}: its VM shares the host's mount namespace (started by an older hx): restart the pod (hx pod stop, hx pod start) to give its members host directories",
            pod.name
        );
    }
    Ok((vm, ns))
}

fn cstr(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("{} has a NUL", p.display()))
}

/// A share tag or file name from a member's plan: one plain path component.
fn plain(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// Binds member `m`'s shares into the export. On failure what was bound stays for `unbind`.
pub fn bind(pod: &Container, pod_dir: &Path, m: &MemberFiles) -> anyhow::Result<()> {
    if m.shares.is_empty() {
        return Ok(());
    }
    let (_vm, ns) = vm_of(pod)?;
    for s in &m.shares {
        let export = if s.readonly {
            members_export_ro(pod_dir)
        } else {
            members_export(pod_dir)
        };
        let base = export.join(&m.id);
        if !plain(&s.tag) || s.file.as_deref().is_some_and(|f| !plain(f)) {
            bail!("pod member {}: bad share {:?}", m.id, s.tag);
        }
        let dir = base.join(&s.tag);
        // The export is the guest's to write, but its mapped security model stores what the
        // guest makes as plain files and directories: no symlink to follow here.
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (src, dst) = match &s.file {
            Some(f) => {
                let dst = dir.join(f);
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&dst)
                    .with_context(|| format!("creating {}", dst.display()))?;
                (s.path.join(f), dst)
            }
            None => (s.path.clone(), dir),
        };
        attach(&ns, &src, &dst, s.readonly).with_context(|| {
            format!(
                "giving {} to pod member {} (at {})",
                src.display(),
                m.id,
                dst.display()
            )
        })?;
    }
    Ok(())
}

/// Clones `src` (recursively, read-only throughout when `readonly`) in our namespace and
/// attaches the clone on `dst` in namespace `ns`: in a child, as setns needs a single thread.
fn attach(ns: &std::fs::File, src: &Path, dst: &Path, readonly: bool) -> anyhow::Result<()> {
    let (src, dst) = (cstr(src)?, cstr(dst)?);
    let ns = ns.as_raw_fd();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: raw syscalls only, between fork and exec, on buffers made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            let tree = libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                src.as_ptr(),
                OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
            );
            if tree < 0 {
                return fail();
            }
            // struct mount_attr: attr_set, attr_clr, propagation, userns_fd. The clone of a
            // shared host mount would join its peer group: a read-only one becomes private (a
            // mount the host makes under the source later, with its own flags, must not appear
            // in a read-only export), a writable one a slave (it still sees the host's new
            // mounts), and neither passes its unmounts (unbind) back to the host's mounts.
            let attr: [u64; 4] = if readonly {
                [MOUNT_ATTR_RDONLY, 0, libc::MS_PRIVATE, 0]
            } else {
                [0, 0, libc::MS_SLAVE, 0]
            };
            if libc::syscall(
                libc::SYS_mount_setattr,
                tree,
                c"".as_ptr(),
                libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            ) != 0
            {
                return fail();
            }
            if libc::setns(ns, libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            if libc::syscall(
                libc::SYS_move_mount,
                tree,
                c"".as_ptr(),
                libc::AT_FDCWD,
                dst.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ) != 0
            {
                return fail();
            }
            Ok(())
        });
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("/bin/true exited {status}");
    }
    Ok(())
}

/// Unmounts member `id`'s binds in the pod VM's namespace and removes its directory of the
/// export. Best effort; nothing to do when the VM is gone (its namespace went with it).
pub fn unbind(pod: &Container, pod_dir: &Path, id: &str) {
    for export in [members_export(pod_dir), members_export_ro(pod_dir)] {
        unbind_in(pod, &export.join(id), id);
    }
}

fn unbind_in(pod: &Container, base: &Path, id: &str) {
    if !plain(id) || !base.exists() {
        return;
    }
    let Ok((vm, ns)) = vm_of(pod) else {
        if !pod.vm_alive() {
            let _ = std::fs::remove_dir_all(base);
        }
        return;
    };
    let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", vm.pid)).unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(crate::volume::unescape_mountinfo(mp)))
        .filter(|mp| mp.starts_with(base))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let Ok(points) = points
        .iter()
        .map(|p| cstr(p))
        .collect::<anyhow::Result<Vec<_>>>()
    else {
        return;
    };
    if !points.is_empty() {
        let ns = ns.as_raw_fd();
        let mut cmd = Command::new("/bin/true");
        // SAFETY: setns and umount2 only, between fork and exec, on buffers made before it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns, libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for p in &points {
                    libc::umount2(p.as_ptr(), libc::MNT_DETACH);
                }
                Ok(())
            });
        }
        if let Err(e) = cmd.status() {
            tracing::warn!("unmounting pod member {id}'s volumes: {e}");
            return;
        }
    }
    // Only empty directories and placeholder files are left on the host's side.
    let _ = std::fs::remove_dir_all(base);
}
