//! A pod member's device cgroup: the cgroup v1 `devices` controller (its only hierarchy; the
//! other controllers are cgroup v2's, cgroup.rs), mounted once at `/dev/.hx-devices`, with one
//! group per confined member holding docker's default rules — the harmless character devices
//! and the member's own terminals may be opened, any node may be made (`mknod`), nothing else
//! opened. Mounts keep a confined member's nodes inert (`nodev`), but a member that holds
//! CAP_SYS_ADMIN can mount a filesystem of its own without it; its group still keeps it from
//! the pod VM's block devices, where the other members' roots, layers and volumes are.
//!
//! As under runc, this is no boundary against CAP_SYS_ADMIN itself (it can mount the hierarchy
//! and move out of its group): the pod's VM is the boundary; this gives a member what a docker
//! container with the same capabilities gets. The BPF form cgroup v2 uses would cost every VM
//! the kernel's BPF subsystem (kernel/hyper.config).
use nix::mount::{mount, MsFlags};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const BASE: &str = "/dev/.hx-devices";

/// runc's and docker's default device rules, in `devices.allow`'s syntax.
pub const ALLOWED: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

#[derive(Debug, Clone, thiserror::Error)]
pub enum FilterError {
    /// The kernel has no devices controller (a hyper kernel from before it).
    #[error(
        "the guest kernel has no devices cgroup (a hyper kernel from before it: reinstall hx's)"
    )]
    Unsupported,
    #[error("{0}")]
    Setup(String),
}

fn base() -> Result<&'static Path, FilterError> {
    static READY: OnceLock<Result<(), FilterError>> = OnceLock::new();
    READY
        .get_or_init(|| {
            fs::create_dir_all(BASE)
                .map_err(|e| FilterError::Setup(format!("mkdir {BASE}: {e}")))?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
            mount(Some("cgroup"), BASE, Some("cgroup"), flags, Some("devices")).map_err(|e| {
                match e {
                    // No such controller (ENOENT) or no cgroup v1 at all (ENODEV).
                    nix::errno::Errno::ENOENT | nix::errno::Errno::ENODEV => {
                        FilterError::Unsupported
                    }
                    e => FilterError::Setup(format!("mount the devices cgroup on {BASE}: {e}")),
                }
            })
        })
        .clone()
        .map(|()| Path::new(BASE))
}

fn dir(id: &str) -> PathBuf {
    Path::new(BASE).join(id)
}

fn write(file: &Path, value: &str) -> Result<(), FilterError> {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| FilterError::Setup(format!("{} = {value}: {e}", file.display())))
}

/// Makes member `id`'s group (deny all, then docker's list) unless it is there already, and
/// returns its `cgroup.procs`, which each of the member's processes writes itself into before
/// exec (process.rs).
pub fn create(id: &str) -> Result<OwnedFd, FilterError> {
    let g = base()?.join(id);
    match fs::create_dir(&g) {
        Ok(()) => {
            write(&g.join("devices.deny"), "a")?;
            for rule in ALLOWED {
                write(&g.join("devices.allow"), rule)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(FilterError::Setup(format!("mkdir {}: {e}", g.display()))),
    }
    procs(id).ok_or_else(|| FilterError::Setup(format!("{}: cgroup.procs", g.display())))
}

/// The member's `cgroup.procs`, for `hx exec` into it; None for a member without a group (a
/// privileged one).
pub fn procs(id: &str) -> Option<OwnedFd> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir(id).join("cgroup.procs"))
        .map(OwnedFd::from)
        .ok()
}

/// Removes the member's group once its processes are gone (cgroup.rs kills them).
pub fn remove(id: &str) {
    crate::cgroup::remove_when_empty(&dir(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules as the kernel's devices.allow parses them: TYPE MAJOR:MINOR ACCESS.
    #[test]
    fn rules_are_dockers_and_well_formed() {
        for rule in ALLOWED {
            let f: Vec<&str> = rule.split(' ').collect();
            assert_eq!(f.len(), 3, "{rule}");
            assert!(matches!(f[0], "c" | "b"), "{rule}");
            let (major, minor) = f[1].split_once(':').unwrap();
            for n in [major, minor] {
                assert!(n == "*" || n.parse::<u32>().is_ok(), "{rule}");
            }
            assert!(f[2].chars().all(|c| "rwm".contains(c)), "{rule}");
        }
        // Block devices: mknod only. No char device but docker's: not /dev/mem (1:1), not fuse.
        assert!(!ALLOWED
            .iter()
            .any(|r| r.starts_with('b') && r.contains('r')));
        assert!(!ALLOWED
            .iter()
            .any(|r| r.starts_with("c 1:1 ") || r.starts_with("c 10:229")));
    }
}
