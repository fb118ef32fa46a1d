//! `hx run` flags for the guest environment, in docker's syntax: `--shm-size`, `--ulimit`,
//! `--tmpfs`, `--sysctl`. Each parser takes untrusted command-line text and returns what goes
//! into the spec, or a one-line error naming the flag and the value (`hx run` exits 125).
use super::run::{parse_size, parse_size_in, MAX_MEMORY};
use pv_init::spec::{
    Mount, MountSource, Rlimit, Sysctl, TmpfsOptions, RLIMIT_NAMES, RLIM_UNLIMITED,
};

/// `--shm-size`, `--ulimit` and `--sysctl` of one `hx run`, parsed once before anything is
/// looked up or made, then put into the spec.
pub struct GuestEnv {
    pub shm_size: u64,
    pub rlimits: Vec<Rlimit>,
    pub sysctls: Vec<Sysctl>,
}

impl GuestEnv {
    pub fn parse(
        shm_size: Option<&str>,
        ulimits: &[String],
        sysctls: &[String],
    ) -> anyhow::Result<Self> {
        Ok(GuestEnv {
            shm_size: parse_shm_size(shm_size)?,
            rlimits: rlimits(ulimits)?,
            sysctls: sysctls
                .iter()
                .map(|s| parse_sysctl(s))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

/// docker's default /dev/shm: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// `--shm-size SIZE` (b, k, m, g; 0 or absent: 64m, like docker). At most 1t.
pub fn parse_shm_size(value: Option<&str>) -> anyhow::Result<u64> {
    match value {
        None => Ok(DEFAULT_SHM_SIZE),
        Some(v) => match parse_size_in("--shm-size", v, 0, MAX_MEMORY) {
            Ok(0) => Ok(DEFAULT_SHM_SIZE),
            Ok(b) => Ok(b),
            // Its message quotes the value whole: at most 80 characters of it here.
            Err(super::run::SizeError::Range { min, max, .. }) => Err(anyhow::anyhow!(
                "--shm-size \"{}\": out of range ({min} to {max})",
                short(v)
            )),
            Err(_) => Err(anyhow::anyhow!(
                "--shm-size \"{}\": not a size (b, k, m or g: 64m, 1g)",
                short(v)
            )),
        },
    }
}

/// The limits a container gets without `--ulimit`: those Debian 12's docker.io (20.10.24)
/// gives. Its containers inherit containerd-shim's limits, that is containerd.service's
/// (containerd 1.6.20, Debian's unit: `LimitNOFILE=infinity`, `LimitNPROC=infinity`,
/// `LimitCORE=infinity`; docker.service has `LimitNOFILE=1048576`), and dockerd adds none
/// (no `default-ulimits`). systemd caps an infinite NOFILE at fs.nr_open, which Debian's
/// systemd (built without the nr_open bump) leaves at the kernel's 1048576. So: nofile
/// 1048576:1048576, nproc and core unlimited. Without these the guest's PID 1 defaults
/// (nofile 1024:4096) would show.
pub fn default_rlimits() -> Vec<Rlimit> {
    vec![
        Rlimit {
            name: "nofile".into(),
            soft: 1 << 20,
            hard: 1 << 20,
        },
        Rlimit {
            name: "nproc".into(),
            soft: RLIM_UNLIMITED,
            hard: RLIM_UNLIMITED,
        },
        Rlimit {
            name: "core".into(),
            soft: RLIM_UNLIMITED,
            hard: RLIM_UNLIMITED,
        },
    ]
}

/// Untrusted input for an error message: escaped like `{:?}` (one line, no controls) and cut
/// at 80 characters.
fn short(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 80 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

fn invalid(flag: &str, value: &str, why: impl std::fmt::Display) -> anyhow::Error {
    // docker's wording: `invalid argument "X" for "--ulimit" flag: …`.
    anyhow::anyhow!(
        "invalid argument \"{}\" for \"{flag}\" flag: {why}",
        short(value)
    )
}

/// `--ulimit NAME=SOFT[:HARD]` (go-units' ParseUlimit): docker's names; `-1` (or
/// `unlimited`) for no limit; HARD defaults to SOFT; SOFT must not exceed HARD.
pub fn parse_ulimit(value: &str) -> anyhow::Result<Rlimit> {
    let bad = |why: String| invalid("--ulimit", value, why);
    let (name, limits) = value
        .split_once('=')
        .ok_or_else(|| bad(format!("invalid ulimit argument: {}", short(value))))?;
    if !RLIMIT_NAMES.contains(&name) {
        return Err(bad(format!(
            "invalid ulimit type: {} (one of {})",
            short(name),
            RLIMIT_NAMES.join(", ")
        )));
    }
    let parts: Vec<&str> = limits.split(':').collect();
    if parts.len() > 2 {
        return Err(bad(format!(
            "too many limit value arguments - {}, can only have up to two, `soft[:hard]`",
            short(limits)
        )));
    }
    let number = |s: &str| -> anyhow::Result<u64> {
        match s {
            "-1" | "unlimited" => Ok(RLIM_UNLIMITED),
            _ if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<i64>()
                .ok()
                .map(|n| n as u64)
                .ok_or_else(|| bad(format!("limit {s} out of range (at most {})", i64::MAX))),
            _ => Err(bad(format!(
                "invalid ulimit value \"{}\": a number, -1 or unlimited",
                short(s)
            ))),
        }
    };
    let soft = number(parts[0])?;
    let hard = match parts.get(1) {
        Some(h) => number(h)?,
        None => soft,
    };
    if soft > hard {
        let show = |v: u64| {
            if v == RLIM_UNLIMITED {
                "-1".to_string()
            } else {
                v.to_string()
            }
        };
        return Err(bad(format!(
            "ulimit soft limit must be less than or equal to hard limit: {} > {}",
            show(soft),
            show(hard)
        )));
    }
    Ok(Rlimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// docker's defaults, then the flags (a later one for the same resource wins, like docker's
/// map of ulimits).
pub fn rlimits(flags: &[String]) -> anyhow::Result<Vec<Rlimit>> {
    let mut out = default_rlimits();
    for f in flags {
        let r = parse_ulimit(f)?;
        out.retain(|o| o.name != r.name);
        out.push(r);
    }
    Ok(out)
}

/// The sysctls `docker run --sysctl` accepts (docker CLI's ValidateSysctl): those the
/// container's own namespaces hold. Here every sysctl is the guest's own, but hx keeps
/// docker's list so that a command line means the same on both.
const SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];
const SYSCTL_PREFIXES: [&str; 2] = ["net.", "fs.mqueue."];
const SYSCTL_VALUE_MAX: usize = 4096;

/// `--sysctl KEY=VALUE`.
pub fn parse_sysctl(value: &str) -> anyhow::Result<Sysctl> {
    let not_allowed = || {
        invalid(
            "--sysctl",
            value,
            format!(
                "sysctl '{}' is not allowed (docker's namespaced sysctls only: net.*, fs.mqueue.*, {})",
                short(value),
                SYSCTLS.join(", ")
            ),
        )
    };
    let (key, val) = value
        .split_once('=')
        .ok_or_else(|| invalid("--sysctl", value, "expected KEY=VALUE"))?;
    if !(SYSCTLS.contains(&key) || SYSCTL_PREFIXES.iter().any(|p| key.starts_with(p))) {
        return Err(not_allowed());
    }
    if pv_init::spec::sysctl_path(key).is_none() {
        return Err(invalid(
            "--sysctl",
            value,
            "not a sysctl key (dot-separated names of letters, digits, _ and -)",
        ));
    }
    if val.len() > SYSCTL_VALUE_MAX || val.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(
            "--sysctl",
            value,
            format!(
                "the value must be at most {SYSCTL_VALUE_MAX} bytes without control characters"
            ),
        ));
    }
    Ok(Sysctl {
        key: key.to_string(),
        value: val.to_string(),
    })
}

/// `--tmpfs PATH[:OPTIONS]`: docker mounts it `noexec,nosuid,nodev` unless the options say
/// `exec`, `suid` or `dev`; `size=` (b, k, m, g), `mode=` (octal), `uid=`, `gid=`, `ro`/`rw`.
pub fn parse_tmpfs(value: &str) -> anyhow::Result<Mount> {
    let bad = |why: String| invalid("--tmpfs", value, why);
    let (path, opts) = value.split_once(':').unwrap_or((value, ""));
    let target = clean_target(path).map_err(|w| bad(w.to_string()))?;
    let mut o = TmpfsOptions {
        noexec: true,
        nosuid: true,
        nodev: true,
        ..Default::default()
    };
    let mut readonly = false;
    for opt in opts.split(',').filter(|s| !s.is_empty()) {
        let id = |s: &str| -> anyhow::Result<u32> {
            if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{}: not a number", short(opt))));
            }
            s.parse()
                .map_err(|_| bad(format!("{}: out of range", short(opt))))
        };
        match opt.split_once('=') {
            None => match opt {
                "ro" => readonly = true,
                "rw" => readonly = false,
                "exec" => o.noexec = false,
                "noexec" => o.noexec = true,
                "suid" => o.nosuid = false,
                "nosuid" => o.nosuid = true,
                "dev" => o.nodev = false,
                "nodev" => o.nodev = true,
                _ => return Err(unknown(value, opt)),
            },
            Some(("size", s)) => {
                o.size =
                    Some(parse_size("size", s).map_err(|_| {
                        bad(format!("size={}: not a size (512k, 64m, 1g)", short(s)))
                    })?)
            }
            Some(("mode", m)) => {
                let ok =
                    !m.is_empty() && m.len() <= 6 && m.bytes().all(|b| (b'0'..=b'7').contains(&b));
                match u32::from_str_radix(m, 8) {
                    Ok(n) if ok && n <= 0o7777 => o.mode = Some(n),
                    _ => return Err(bad(format!("mode={}: an octal mode up to 7777", short(m)))),
                }
            }
            Some(("uid", u)) => o.uid = Some(id(u)?),
            Some(("gid", g)) => o.gid = Some(id(g)?),
            Some(_) => return Err(unknown(value, opt)),
        }
    }
    Ok(Mount {
        source: MountSource::Tmpfs {
            size_mb: 0,
            options: o,
        },
        target,
        readonly,
        subpath: None,
        copy_up: false,
    })
}

fn unknown(value: &str, opt: &str) -> anyhow::Error {
    invalid(
        "--tmpfs",
        value,
        format!(
            "unknown option \"{}\" (size=, mode=, uid=, gid=, ro, rw, exec, noexec, suid, nosuid, dev, nodev)",
            short(opt)
        ),
    )
}

/// An absolute container path without `.`/`..` components, `/` itself or odd characters;
/// returned without repeated or trailing slashes.
fn clean_target(path: &str) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("the mount path must be absolute");
    }
    if path.len() > 4096 || path.chars().any(|c| c.is_control()) {
        return Err("the mount path is too long or has control characters");
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err("the mount path must not contain . or .. components");
    }
    if parts.is_empty() {
        return Err("the mount path cannot be /");
    }
    Ok(format!("/{}", parts.join("/")))
}

/// All the `--tmpfs` flags; a path given twice, or also used by a volume, is docker's
/// "Duplicate mount point".
pub fn tmpfs_mounts(flags: &[String], volume_targets: &[String]) -> anyhow::Result<Vec<Mount>> {
    let mut out: Vec<Mount> = Vec::new();
    for f in flags {
        let m = parse_tmpfs(f)?;
        let clash = out.iter().any(|o| o.target == m.target)
            || volume_targets
                .iter()
                .any(|v| clean_target(v).is_ok_and(|v| v == m.target));
        if clash {
            anyhow::bail!(
                "--tmpfs \"{}\": Duplicate mount point: {}",
                short(f),
                short(&m.target)
            );
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hx_engine::lifecycle::sort_mounts;
    use proptest::prelude::*;

    fn err(r: anyhow::Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn shm_size_like_docker() {
        assert_eq!(parse_shm_size(None).unwrap(), 64 << 20);
        assert_eq!(parse_shm_size(Some("0")).unwrap(), 64 << 20);
        assert_eq!(parse_shm_size(Some("128m")).unwrap(), 128 << 20);
        assert_eq!(parse_shm_size(Some("1g")).unwrap(), 1 << 30);
        assert_eq!(parse_shm_size(Some("4096")).unwrap(), 4096);
        assert_eq!(parse_shm_size(Some("512k")).unwrap(), 512 << 10);
        for bad in ["", "m", "-1", "1x", "2t", "99999999999999999999g", "1.5.5m"] {
            assert!(
                err(parse_shm_size(Some(bad))).starts_with("--shm-size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn ulimits_like_docker() {
        let r = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((r.name.as_str(), r.soft, r.hard), ("nofile", 1024, 2048));
        let r = parse_ulimit("nproc=77").unwrap();
        assert_eq!((r.soft, r.hard), (77, 77));
        let r = parse_ulimit("memlock=-1:-1").unwrap();
        assert_eq!((r.soft, r.hard), (RLIM_UNLIMITED, RLIM_UNLIMITED));
        let r = parse_ulimit("core=0:unlimited").unwrap();
        assert_eq!((r.soft, r.hard), (0, RLIM_UNLIMITED));
        let r = parse_ulimit("stack=9223372036854775807").unwrap();
        assert_eq!(r.soft, i64::MAX as u64);
        for (bad, why) in [
            ("nofile", "invalid ulimit argument: nofile"),
            ("as=1", "invalid ulimit type: as"),
            ("NOFILE=1", "invalid ulimit type: NOFILE"),
            ("=1", "invalid ulimit type: "),
            ("nofile=", "invalid ulimit value \"\""),
            (
                "nofile=2:1",
                "must be less than or equal to hard limit: 2 > 1",
            ),
            ("nofile=-1:5", "-1 > 5"),
            ("nofile=1:2:3", "too many limit value arguments - 1:2:3"),
            ("nofile=-2", "invalid ulimit value \"-2\""),
            ("nofile=1k", "invalid ulimit value \"1k\""),
            ("nofile=9223372036854775808", "out of range"),
            ("nofile=99999999999999999999", "out of range"),
            ("nofile=999999999999999999999", "invalid ulimit value"),
            ("nofile=+1", "invalid ulimit value"),
            ("nofile= 1", "invalid ulimit value"),
        ] {
            let e = err(parse_ulimit(bad));
            assert!(
                e.starts_with(&format!("invalid argument {bad:?} for \"--ulimit\" flag: "))
                    && e.contains(why),
                "{bad}: {e}"
            );
        }
        // docker's defaults, each overridable; the last flag for a resource wins.
        let all = rlimits(&["nofile=10".into(), "nofile=20:30".into()]).unwrap();
        let get = |n: &str| all.iter().find(|r| r.name == n).map(|r| (r.soft, r.hard));
        assert_eq!(get("nofile"), Some((20, 30)));
        assert_eq!(get("nproc"), Some((RLIM_UNLIMITED, RLIM_UNLIMITED)));
        assert_eq!(all.iter().filter(|r| r.name == "nofile").count(), 1);
        assert_eq!(
            rlimits(&[])
                .unwrap()
                .iter()
                .find(|r| r.name == "nofile")
                .unwrap()
                .soft,
            1048576
        );
    }

    #[test]
    fn sysctls_like_docker() {
        for ok in [
            "net.core.somaxconn=1024",
            "net.ipv4.ip_local_port_range=1024 65000",
            "kernel.sem=250\t32000\t100\t128",
            "kernel.shm_rmid_forced=1",
            "fs.mqueue.msg_max=20",
            "net.ipv4.conf.eth0.rp_filter=2",
            "net.ipv4.ip_forward=",
        ] {
            let s = parse_sysctl(ok).unwrap();
            assert_eq!(format!("{}={}", s.key, s.value), ok);
        }
        for bad in [
            "kernel.domainname=x",
            "kernel.shm=1",
            "vm.swappiness=1",
            "fs.file-max=1",
            "net=1",
            "=1",
            " net.core.somaxconn=1",
        ] {
            let e = err(parse_sysctl(bad));
            assert!(e.contains(&format!("sysctl '{bad}' is not allowed")), "{e}");
        }
        assert!(err(parse_sysctl("net.core.somaxconn")).contains("expected KEY=VALUE"));
        for bad in [
            "net./../../x=1",
            "net..x=1",
            "net.=1",
            "net.a b=1",
            "net.x=a\nb",
            "net.x=a\0",
        ] {
            assert!(parse_sysctl(bad).is_err(), "{bad:?}");
        }
        assert!(parse_sysctl(&format!("net.x={}", "9".repeat(5000))).is_err());
    }

    #[test]
    fn tmpfs_like_docker() {
        let m = parse_tmpfs("/run").unwrap();
        assert_eq!((m.target.as_str(), m.readonly), ("/run", false));
        let MountSource::Tmpfs { options, .. } = &m.source else {
            panic!()
        };
        assert!(options.noexec && options.nosuid && options.nodev);
        assert_eq!(options.data(0), "");
        let m = parse_tmpfs("/run/x//:size=1m,mode=1770,uid=1000,gid=50,exec,ro").unwrap();
        assert_eq!((m.target.as_str(), m.readonly), ("/run/x", true));
        let MountSource::Tmpfs { options, .. } = &m.source else {
            panic!()
        };
        assert!(!options.noexec && options.nosuid && options.nodev);
        assert_eq!(options.data(0), "size=1048576,mode=1770,uid=1000,gid=50");
        let m = parse_tmpfs("/x:suid,dev,rw").unwrap();
        let MountSource::Tmpfs { options, .. } = &m.source else {
            panic!()
        };
        assert!(options.noexec && !options.nosuid && !options.nodev && !m.readonly);
        for (bad, why) in [
            ("run", "must be absolute"),
            ("", "must be absolute"),
            ("/", "cannot be /"),
            ("//", "cannot be /"),
            ("/a/../b", ". or .."),
            ("/a/./b", ". or .."),
            ("/a\nb", "control characters"),
            ("/a:foo", "unknown option \"foo\""),
            ("/a:nr_inodes=5", "unknown option"),
            ("/a:size=", "not a size"),
            ("/a:size=1%", "not a size"),
            ("/a:size=-1", "not a size"),
            ("/a:mode=8", "octal"),
            ("/a:mode=17777", "octal"),
            ("/a:mode=", "octal"),
            ("/a:uid=-1", "not a number"),
            ("/a:uid=4294967296", "out of range"),
            ("/a:gid=x", "not a number"),
        ] {
            let e = err(parse_tmpfs(bad));
            assert!(
                e.contains("for \"--tmpfs\" flag") && e.contains(why),
                "{bad:?}: {e}"
            );
        }
        let e = err(tmpfs_mounts(&["/data".into()], &["/data/".into()]));
        assert!(e.contains("Duplicate mount point: /data"), "{e}");
        let e = err(tmpfs_mounts(&["/a".into(), "/a:size=1m".into()], &[]));
        assert!(e.contains("Duplicate mount point: /a"), "{e}");
        let mut ms = tmpfs_mounts(&["/a/b/c".into(), "/a".into(), "/z/y".into()], &[]).unwrap();
        sort_mounts(&mut ms);
        let order: Vec<&str> = ms.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(order, ["/a", "/z/y", "/a/b/c"]);
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            // Near-valid text built from the syntax's own pieces.
            prop::collection::vec(
                prop_oneof![
                    Just("=".to_string()),
                    Just(":".to_string()),
                    Just(",".to_string()),
                    Just(".".to_string()),
                    Just("/".to_string()),
                    Just("..".to_string()),
                    Just("-1".to_string()),
                    Just("nofile".to_string()),
                    Just("net".to_string()),
                    Just("kernel.sem".to_string()),
                    Just("size".to_string()),
                    Just("mode".to_string()),
                    Just("uid".to_string()),
                    Just("exec".to_string()),
                    Just("ro".to_string()),
                    Just("unlimited".to_string()),
                    Just("18446744073709551615".to_string()),
                    Just("99999999999999999999999".to_string()),
                    Just("7777".to_string()),
                    Just("1m".to_string()),
                    Just("\n".to_string()),
                    Just("\0".to_string()),
                    Just("é".to_string()),
                    "[0-9]{1,25}",
                ],
                0..12
            )
            .prop_map(|v| v.concat()),
            any::<String>(),
            // Huge.
            (0usize..3).prop_map(
                |i| ["/a".repeat(5000), "9".repeat(100_000), "net.".repeat(3000)][i].clone()
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the text, the parsers return (no panic, no overflow), errors are one line
        /// of bounded length naming the flag, and what they accept is what pv-init can use.
        #[test]
        fn parsers_survive_hostile_input(s in hostile()) {
            for (flag, r) in [
                ("--ulimit", parse_ulimit(&s).map(|r| {
                    assert!(RLIMIT_NAMES.contains(&r.name.as_str()));
                    assert!(r.soft <= r.hard);
                })),
                ("--sysctl", parse_sysctl(&s).map(|c| {
                    assert!(pv_init::spec::sysctl_path(&c.key).is_some());
                    assert!(!c.value.contains(['\n', '\0']));
                })),
                ("--tmpfs", parse_tmpfs(&s).map(|m| {
                    assert!(m.target.starts_with('/') && m.target.len() > 1);
                    assert!(!m.target.split('/').any(|p| p == ".." || p == "."));
                    assert!(!m.target.contains("//") && !m.target.ends_with('/'));
                    let MountSource::Tmpfs { options, .. } = &m.source else { panic!() };
                    assert!(!options.data(0).contains(['\n', '\0', ' ']));
                    assert!(options.mode.unwrap_or(0) <= 0o7777);
                })),
                ("--shm-size", parse_shm_size(Some(&s)).map(|b| {
                    assert!(b > 0 && b <= MAX_MEMORY);
                })),
            ] {
                if let Err(e) = r {
                    let msg = e.to_string();
                    prop_assert!(msg.contains(flag), "{msg}");
                    prop_assert!(!msg.contains('\n') && msg.len() < 600, "{}", msg.len());
                }
            }
        }
    }
}
