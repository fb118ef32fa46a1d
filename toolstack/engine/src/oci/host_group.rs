//! The host cgroup an OCI caller names for a container (`linux.cgroupsPath`: docker's
//! `/docker/<id>`, or the systemd driver's `slice:prefix:name`). runc puts the container's
//! processes there; hx-runtime puts the container's host processes there — its keeper and,
//! as the keeper's child, the VM's QEMU — so that what reads the group counts the VM's host
//! cost: containerd's runc shim answers `docker stats` from the group of the pid in
//! `--pid-file`, which was the shim's own (every container and containerd itself in it).
//!
//! Only `hx-runtime create` enters it (the shim serves a whole pod from one process). The
//! groups are made in the hierarchies `docker stats` reads (v1: memory, cpu, cpuacct, pids,
//! blkio; or the unified one) and removed by `delete`. Memory limits are not written there:
//! the VM is the container's boundary (a host memory limit of the guest's size would kill
//! QEMU). CPU limits are, as runc's are (host_cgroup.rs, `Container::host_cgroup`).
use std::path::{Path, PathBuf};

/// v1 controllers whose hierarchies get the group.
const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "blkio"];
/// The longest `linux.cgroupsPath` taken.
const MAX_PATH: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("linux.cgroupsPath {shown}: {why}")]
pub struct BadPath {
    shown: String,
    why: &'static str,
}

/// The group's path below each hierarchy's root: an absolute cgroupfs path as it is, or
/// systemd's `slice:prefix:name` as runc's systemd driver lays it out: the slice expanded
/// (`a-b.slice` is `a.slice/a-b.slice`; none is `system.slice`, `-.slice` the root), the unit
/// `prefix-name.scope` under it, or `name` itself when it is a slice. Nothing may climb out.
pub fn relative_path(spec_path: &str) -> Result<PathBuf, BadPath> {
    let bad = |why| BadPath {
        shown: format!("{:?}", crate::sanitize::text(spec_path).to_cow()),
        why,
    };
    if spec_path.len() > MAX_PATH {
        return Err(bad("longer than 1024 bytes"));
    }
    if spec_path.chars().any(|c| c.is_control()) {
        return Err(bad("a control character"));
    }
    let path = if spec_path.starts_with('/') {
        PathBuf::from(spec_path)
    } else {
        let mut parts = spec_path.split(':');
        let (Some(slice), Some(prefix), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("neither an absolute path nor slice:prefix:name"));
        };
        if [slice, prefix, name].iter().any(|p| p.contains('/')) {
            return Err(bad("a slice, prefix or name with a '/'"));
        }
        let mut p = PathBuf::from("/");
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        if slice != "-.slice" {
            let Some(stem) = slice.strip_suffix(".slice") else {
                return Err(bad("a slice not named *.slice"));
            };
            let mut so_far = String::new();
            for part in stem.split('-') {
                if part.is_empty() {
                    return Err(bad("an empty part in the slice's name"));
                }
                if !so_far.is_empty() {
                    so_far.push('-');
                }
                so_far.push_str(part);
                p.push(format!("{so_far}.slice"));
            }
        }
        if name.is_empty() {
            return Err(bad("no name"));
        }
        p.push(if name.ends_with(".slice") {
            name.to_string()
        } else {
            format!("{prefix}-{name}.scope")
        });
        p
    };
    let mut out = PathBuf::new();
    // By the text: `components()` would drop a "." silently.
    for part in path.to_string_lossy().split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(bad("'.' or '..' in it"));
        }
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        return Err(bad("the root group"));
    }
    if out.starts_with(crate::host_cgroup::PARENT) {
        return Err(bad("inside hx's own group of VM CPU limits"));
    }
    Ok(out)
}

/// A group's path for a message: the spec's part of it is the bundle's, so escaped.
fn shown(group: &Path) -> String {
    crate::sanitize::text(&group.to_string_lossy()).to_string()
}

/// The mounts of the hierarchies the group goes in, from /proc/self/mountinfo's text.
pub fn hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some(m) = crate::host_cgroup::Mount::parse(line) else {
            continue;
        };
        match m.fstype {
            "cgroup"
                if m.super_options
                    .split(',')
                    .any(|o| V1_CONTROLLERS.contains(&o))
                    && !v1.contains(&m.point) =>
            {
                v1.push(m.point);
            }
            "cgroup2" if v2.is_none() => v2 = Some(m.point),
            _ => {}
        }
    }
    // A hybrid host's v2 mount holds no controller docker reads: v1's then.
    if v1.is_empty() {
        v2.into_iter().collect()
    } else {
        v1
    }
}

fn host_hierarchies() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| hierarchies(&m))
        .unwrap_or_default()
}

/// Makes the group in every hierarchy (where missing); the `cgroup.procs` files a process
/// writes "0" to to enter it.
pub fn make(relative: &Path) -> anyhow::Result<Vec<std::ffi::CString>> {
    make_in(&host_hierarchies(), relative)
}

/// `make` in the hierarchies mounted at `mounts`. A failure removes the groups this call made
/// before it (not their parents, which the caller's manager owns, as runc leaves them).
fn make_in(mounts: &[PathBuf], relative: &Path) -> anyhow::Result<Vec<std::ffi::CString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut undo = crate::lifecycle::Undo::new();
    let mut procs = Vec::new();
    for mount in mounts {
        let group = mount.join(relative);
        if !group.is_dir() {
            std::fs::create_dir_all(&group)
                .map_err(|e| anyhow::anyhow!("making {}: {e}", shown(&group)))?;
            let made = group.clone();
            undo.push(move || {
                let _ = std::fs::remove_dir(&made);
            });
        }
        enable_controllers(mount, relative);
        let file = group.join("cgroup.procs");
        procs.push(std::ffi::CString::new(file.as_os_str().as_bytes())?);
    }
    undo.commit();
    Ok(procs)
}

/// On the unified hierarchy, the counters `docker stats` reads exist in a group only where its
/// parents hand down their controllers. Best effort, as each level allows (a level with
/// processes of its own cannot hand them down).
fn enable_controllers(mount: &Path, relative: &Path) {
    let control = mount.join("cgroup.subtree_control");
    if !control.exists() {
        return;
    }
    let mut level = mount.to_path_buf();
    let parents = relative.parent().into_iter().flat_map(|p| p.components());
    for step in std::iter::once(None).chain(parents.map(Some)) {
        if let Some(c) = step {
            level.push(c);
        }
        for controller in ["+memory", "+pids", "+cpu", "+io"] {
            let _ = std::fs::write(level.join("cgroup.subtree_control"), controller);
        }
    }
}

/// Removes the group in every hierarchy once its processes are gone (a keeper or QEMU killed a
/// moment ago holds it until reaped); a group not there is fine.
pub fn remove(relative: &Path) -> anyhow::Result<()> {
    for mount in host_hierarchies() {
        let group = mount.join(relative);
        crate::host_cgroup::remove_group(&group, std::time::Duration::from_secs(5))
            .map_err(|e| anyhow::anyhow!("removing {}: {e}", shown(&group)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Component;

    #[test]
    fn docker_and_systemd_paths_become_groups_below_the_root() {
        let ok = |s: &str| relative_path(s).unwrap();
        assert_eq!(ok("/docker/abc"), PathBuf::from("docker/abc"));
        assert_eq!(
            ok("system.slice:docker:abc"),
            PathBuf::from("system.slice/docker-abc.scope")
        );
        assert_eq!(
            ok("kubepods-besteffort-pod1.slice:cri-containerd:x"),
            PathBuf::from(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-x.scope"
            )
        );
        // As runc: no slice is system.slice, `-.slice` the root; an empty prefix still
        // leads with its dash; a name that is a slice is the unit itself.
        assert_eq!(
            ok(":docker:abc"),
            PathBuf::from("system.slice/docker-abc.scope")
        );
        assert_eq!(ok("-.slice:docker:abc"), PathBuf::from("docker-abc.scope"));
        assert_eq!(ok("a.slice::abc"), PathBuf::from("a.slice/-abc.scope"));
        assert_eq!(
            ok("a-b.slice:p:a-b-c.slice"),
            PathBuf::from("a.slice/a-b.slice/a-b-c.slice")
        );
        for bad in [
            "/",
            "/docker/../../etc",
            "/docker/./x",
            "docker/abc",
            "a.slice:p",
            "a.slice:p:n:x",
            "a:p:n",
            "a--b.slice:p:n",
            "a.slice:p/q:n",
            "a.slice:p:",
            "/docker/a\nb",
            "/hx",
            "/hx/abc",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?} was taken");
        }
        assert_eq!(
            relative_path("/x/../y").unwrap_err().to_string(),
            "linux.cgroupsPath \"/x/../y\": '.' or '..' in it"
        );
    }

    #[test]
    fn v1_hierarchies_docker_reads_else_the_unified_one() {
        const HYBRID: &str = "\
30 24 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
31 24 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 24 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 24 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 24 0:31 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
36 24 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        assert_eq!(
            hierarchies(HYBRID),
            ["memory", "cpu,cpuacct", "pids"]
                .iter()
                .map(|m| Path::new("/sys/fs/cgroup").join(m))
                .collect::<Vec<_>>()
        );
        const UNIFIED: &str = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(hierarchies(UNIFIED), [PathBuf::from("/sys/fs/cgroup")]);
        assert!(hierarchies("").is_empty());
    }

    #[test]
    fn a_failed_make_takes_back_the_groups_it_made() {
        let t = tempfile::tempdir().unwrap();
        let (memory, cpu, pids) = (
            t.path().join("memory"),
            t.path().join("cpu"),
            t.path().join("pids"),
        );
        for m in [&memory, &cpu] {
            std::fs::create_dir(m).unwrap();
        }
        // A third "hierarchy" that is a file: its group cannot be made.
        std::fs::write(&pids, "").unwrap();
        // cpu had the group before (another container's, say): it stays.
        std::fs::create_dir_all(cpu.join("docker/abc")).unwrap();
        let mounts = [memory.clone(), cpu.clone(), pids.clone()];
        let err = make_in(&mounts, Path::new("docker/abc")).unwrap_err();
        assert!(err.to_string().starts_with("making "), "{err}");
        assert!(
            !memory.join("docker/abc").exists(),
            "the group it made is left"
        );
        assert!(
            memory.join("docker").is_dir(),
            "its parent is the manager's"
        );
        assert!(
            cpu.join("docker/abc").is_dir(),
            "a group it did not make was removed"
        );

        let ok = make_in(&mounts[..2], Path::new("docker/abc")).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok[0]
            .to_str()
            .unwrap()
            .ends_with("memory/docker/abc/cgroup.procs"));
    }

    proptest! {
        #[test]
        fn any_cgroups_path_stays_below_the_root(s in "\\PC{0,80}") {
            if let Ok(p) = relative_path(&s) {
                prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert!(!p.as_os_str().is_empty());
            }
        }
    }
}
