//! A host cgroup for a VM's process, for the CPU cap and weight a hypervisor that is just a
//! host process (QEMU) cannot set itself: `<cpu controller>/hx/<container id>`, as docker's
//! cgroupfs driver makes `docker/<id>`. cgroup v2 (`cpu.max`, `cpu.weight`) or, where the cpu
//! controller is still on a v1 hierarchy, v1's (`cpu.cfs_quota_us`, `cpu.shares`).
//!
//! A group exists only for a container that asked for a limit (at its VM's start, or when
//! `hx update` first gives it one) and goes with the VM's cleanup.
use crate::limits::CpuLimits;
use std::path::{Path, PathBuf};

/// Under the cpu controller's mount: one directory per container holding a limit.
pub const PARENT: &str = "hx";
/// CFS's period for the quota (docker's and runc's default).
const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy's mount, whose root offers the cpu controller.
    V2(PathBuf),
    /// The v1 hierarchy the cpu controller is mounted on.
    V1(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy with the cpu controller on this host (/proc/self/mountinfo)")]
    NoCpuController,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host's cpu controller, found once per process.
pub fn host() -> Result<&'static Hierarchy, CgroupError> {
    static HOST: std::sync::OnceLock<Option<Hierarchy>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        find_cpu_hierarchy(&mountinfo, |p| {
            std::fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default()
        })
    })
    .as_ref()
    .ok_or(CgroupError::NoCpuController)
}

/// The v1 hierarchy with `cpu` among its controllers, else a v2 mount whose root lists `cpu`
/// in `cgroup.controllers` (read through `controllers`). A controller is on one hierarchy
/// only: a hybrid host's v2 mount then has no cpu.
pub fn find_cpu_hierarchy(
    mountinfo: &str,
    controllers: impl Fn(&Path) -> String,
) -> Option<Hierarchy> {
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some(m) = Mount::parse(line) else {
            continue;
        };
        match m.fstype {
            "cgroup" if m.super_options.split(',').any(|o| o == "cpu") => {
                return Some(Hierarchy::V1(m.point));
            }
            "cgroup2"
                if v2.is_none() && controllers(&m.point).split_whitespace().any(|c| c == "cpu") =>
            {
                v2 = Some(Hierarchy::V2(m.point));
            }
            _ => {}
        }
    }
    v2
}

/// The fields of one /proc/self/mountinfo line that matter here.
pub(crate) struct Mount<'a> {
    pub(crate) point: PathBuf,
    pub(crate) fstype: &'a str,
    pub(crate) super_options: &'a str,
}

impl<'a> Mount<'a> {
    /// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`
    pub(crate) fn parse(line: &'a str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next()?;
        let super_options = right.next()?;
        Some(Mount {
            point: PathBuf::from(unescape(point)?),
            fstype,
            super_options,
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let digits = b.get(i + 1..i + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            out.push(u8::from_str_radix(text, 8).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Hierarchy {
    /// The group of container `id` (a store's hex id: no path separators).
    pub fn group(&self, id: &str) -> PathBuf {
        self.mount().join(PARENT).join(id)
    }

    fn mount(&self) -> &Path {
        match self {
            Hierarchy::V2(p) | Hierarchy::V1(p) => p,
        }
    }

    /// What the group's files say for `cpu`: (file, value) in the order they are written.
    pub fn settings(&self, cpu: &CpuLimits) -> Vec<(&'static str, String)> {
        let shares = cpu.shares;
        let quota = (cpu.cap_pct > 0).then(|| u64::from(cpu.cap_pct) * PERIOD_US / 100);
        match self {
            Hierarchy::V2(_) => vec![
                (
                    "cpu.max",
                    match quota {
                        Some(q) => format!("{q} {PERIOD_US}"),
                        None => format!("max {PERIOD_US}"),
                    },
                ),
                (
                    "cpu.weight",
                    shares
                        .map_or(100, pv_init::mux::MemberLimits::weight_of_shares)
                        .to_string(),
                ),
            ],
            Hierarchy::V1(_) => vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                (
                    "cpu.cfs_quota_us",
                    quota.map_or_else(|| "-1".to_string(), |q| q.to_string()),
                ),
                ("cpu.shares", shares.unwrap_or(1024).to_string()),
            ],
        }
    }

    /// Puts `cpu` on the VM process `pid` of container `id`. With `own_group` (a path below
    /// the root its creator made and runs the VM in: hx-runtime's `cgroupsPath`) the limits
    /// are written there and the process stays, so docker still finds it in its group;
    /// otherwise hx's group of the container is made if needed, limited, and `pid` (all its
    /// threads) moved into it.
    pub fn apply(
        &self,
        id: &str,
        own_group: Option<&Path>,
        cpu: &CpuLimits,
        pid: i32,
    ) -> Result<(), CgroupError> {
        let group = match own_group {
            Some(relative) => self.mount().join(relative),
            None => self.ensure(id)?,
        };
        for (file, value) in self.settings(cpu) {
            let path = group.join(file);
            std::fs::write(&path, value).map_err(io(&path))?;
        }
        if own_group.is_some() {
            return Ok(());
        }
        let procs = group.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io(&procs))
    }

    fn ensure(&self, id: &str) -> Result<PathBuf, CgroupError> {
        let parent = self.mount().join(PARENT);
        if let Hierarchy::V2(root) = self {
            // The cpu controller must be enabled for the children of each level down.
            enable_cpu(root)?;
            make_dir(&parent)?;
            enable_cpu(&parent)?;
        } else {
            make_dir(&parent)?;
        }
        let group = parent.join(id);
        make_dir(&group)?;
        Ok(group)
    }

    /// Removes container `id`'s group (its process gone); none there is not an error. A
    /// process killed a moment ago holds its group until its parent has reaped it (EBUSY).
    pub fn remove(&self, id: &str) -> Result<(), CgroupError> {
        let group = self.group(id);
        remove_group(&group, std::time::Duration::from_secs(3)).map_err(io(&group))
    }
}

/// Removes a cgroup directory; one not there is fine. A process killed a moment ago holds its
/// group until its parent has reaped it: EBUSY is retried for up to `reap_wait`.
pub(crate) fn remove_group(group: &Path, reap_wait: std::time::Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + reap_wait;
    loop {
        match std::fs::remove_dir(group) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn make_dir(p: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(p) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(p)(e)),
        _ => Ok(()),
    }
}

fn enable_cpu(dir: &Path) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&control).map_err(io(&control))?;
    if on.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    std::fs::write(&control, "+cpu").map_err(io(&control))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "\
22 1 0:21 / /sys rw - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn finds_the_v1_cpu_controller_before_an_empty_v2_mount() {
        let h = find_cpu_hierarchy(HYBRID, |_| "cpu io memory".into());
        assert_eq!(h, Some(Hierarchy::V1("/sys/fs/cgroup/cpu,cpuacct".into())));
        // cpuacct alone is not cpu.
        let only_acct = HYBRID.replace("rw,cpu,cpuacct", "rw,cpuacct");
        assert_eq!(find_cpu_hierarchy(&only_acct, |_| String::new()), None);
    }

    #[test]
    fn finds_a_v2_root_only_when_it_offers_cpu() {
        let h = find_cpu_hierarchy(UNIFIED, |_| "cpuset cpu io memory pids".into());
        assert_eq!(h, Some(Hierarchy::V2("/sys/fs/cgroup".into())));
        assert_eq!(find_cpu_hierarchy(UNIFIED, |_| "memory pids".into()), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let line = "32 31 0:29 / /mnt/a\\040b rw - cgroup cgroup rw,cpu";
        let h = find_cpu_hierarchy(line, |_| String::new());
        assert_eq!(h, Some(Hierarchy::V1("/mnt/a b".into())));
        assert_eq!(unescape("bad\\04"), None);
    }

    #[test]
    fn settings_follow_docker_and_runc() {
        let half = CpuLimits {
            cap_pct: 50,
            shares: Some(512),
        };
        let v1 = Hierarchy::V1("/c".into());
        assert_eq!(
            v1.settings(&half),
            [
                ("cpu.cfs_period_us", "100000".to_string()),
                ("cpu.cfs_quota_us", "50000".into()),
                ("cpu.shares", "512".into()),
            ]
        );
        assert_eq!(
            v1.settings(&CpuLimits::default())[1..],
            [
                ("cpu.cfs_quota_us", "-1".to_string()),
                ("cpu.shares", "1024".into())
            ]
        );
        let v2 = Hierarchy::V2("/c".into());
        assert_eq!(
            v2.settings(&half),
            [
                ("cpu.max", "50000 100000".to_string()),
                ("cpu.weight", "20".into())
            ]
        );
        assert_eq!(
            v2.settings(&CpuLimits::default()),
            [
                ("cpu.max", "max 100000".to_string()),
                ("cpu.weight", "100".into())
            ]
        );
        // 1.5 CPUs; runc's weights at the ends of the shares' range.
        let more = CpuLimits {
            cap_pct: 150,
            shares: None,
        };
        assert_eq!(v2.settings(&more)[0].1, "150000 100000");
        let weight = |shares| {
            v2.settings(&CpuLimits {
                cap_pct: 0,
                shares: Some(shares),
            })[1]
                .1
                .clone()
        };
        assert_eq!(
            (weight(2), weight(1024), weight(262_144)),
            ("1".into(), "39".into(), "10000".to_string())
        );
        // v1 takes docker's shares as they are, the smallest too.
        let least = CpuLimits {
            cap_pct: 0,
            shares: Some(2),
        };
        assert_eq!(v1.settings(&least)[2].1, "2");
        assert_eq!(v1.group("ab12"), Path::new("/c/hx/ab12"));
    }

    proptest! {
        #[test]
        fn any_mountinfo_parses_without_panicking(text in "\\PC{0,400}") {
            let _ = find_cpu_hierarchy(&text, |_| "cpu".into());
        }

        #[test]
        fn cgroup_lines_with_any_point_parse(point in "/[a-z\\\\0-7 ]{0,30}") {
            let line = format!("1 2 0:3 / {point} rw - cgroup cgroup rw,cpu");
            let _ = find_cpu_hierarchy(&line, |_| String::new());
        }
    }
}
