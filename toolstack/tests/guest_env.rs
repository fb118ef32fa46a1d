//! The guest environment against docker's (issue 14), end to end on QEMU with the official
//! busybox image: /dev/shm and `--shm-size`, resource limits and `--ulimit`, /etc/hosts with the
//! hostname and `--name`, `--tmpfs`, `--sysctl`, numeric `--user`, no injected locale. Each VM
//! prints several facts; the assertions are on what a user of the container sees.
mod common;
use common::netns::NetLab;
use common::{run_with_timeout, Hx, BUSYBOX};
use std::time::Duration;

const DOCKER_HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// The output's sections, split at `---` lines.
fn sections(out: &str) -> Vec<Vec<&str>> {
    out.split("---\n").map(|s| s.lines().collect()).collect()
}

/// Without flags: docker's defaults (64m /dev/shm; nofile 1048576, nproc and core unlimited as
/// Debian 12's docker.io gives), docker's /etc/hosts with the short-id hostname and the --name,
/// a numeric --user that the image's passwd lacks, and no locale from hx's environment.
#[test]
fn defaults_hosts_numeric_user_and_no_locale() {
    let Some(hx) = Hx::with_busybox() else { return };
    let mut cmd = hx.cmd(&[
        "run",
        "--rm",
        "--name",
        "web",
        "--add-host",
        "db:10.1.2.3",
        "--user",
        "1234",
        BUSYBOX,
        "sh",
        "-c",
        "df -k /dev/shm | tail -n 1; ulimit -n; ulimit -Hn; ulimit -u; ulimit -c; echo ---; \
         cat /etc/hosts; echo ---; hostname; hostname -i; hostname -f; id; echo HOME=$HOME; \
         env | grep -E '^(LANG|LANGUAGE|LC_[A-Z]+)=' ; echo ---; \
         wget -T 2 http://web:9/ 2>&1 | head -n 1; touch /tmp/mine && stat -c '%u %g' /tmp/mine",
    ]);
    cmd.env("LANG", "de_DE.UTF-8").env("LC_ALL", "de_DE.UTF-8");
    let r = run_with_timeout(cmd, Duration::from_secs(180));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = sections(&r.stdout);
    assert_eq!(s.len(), 4, "{}", r.stdout);
    let shm: Vec<&str> = s[0][0].split_whitespace().collect();
    assert_eq!((shm[1], shm[5]), ("65536", "/dev/shm"), "{}", s[0][0]);
    assert_eq!(
        s[0][1..],
        ["1048576", "1048576", "unlimited", "unlimited"],
        "nofile soft and hard, nproc, core"
    );

    let hostname = s[2][0];
    assert!(
        hostname.len() == 12 && hostname.bytes().all(|b| b.is_ascii_hexdigit()),
        "docker's default hostname is the short id: {hostname}"
    );
    let hosts = s[1].join("\n") + "\n";
    assert_eq!(
        hosts,
        format!("{DOCKER_HOSTS_HEAD}10.1.2.3\tdb\n127.0.1.1\t{hostname} web\n")
    );
    assert_eq!(
        s[2][1..],
        [
            "127.0.1.1",
            hostname,
            "uid=1234 gid=0(root) groups=0(root)",
            "HOME=/"
        ],
        "hostname -i, hostname -f, id, HOME; and no LANG/LC_* (docker sets none): {}",
        r.stdout
    );
    assert_eq!(
        s[3],
        ["Connecting to web:9 (127.0.1.1:9)", "1234 0"],
        "the --name resolves to the container's own address; files are the user's"
    );
}

/// The flags: --shm-size, --ulimit, --tmpfs with its options, --sysctl, and --user UID:GID.
#[test]
fn flags_shape_the_guest() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&[
        "run",
        "--rm",
        "--user",
        "1234:5678",
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=4096:8192",
        "--ulimit",
        "nproc=77",
        "--ulimit",
        "core=0",
        "--ulimit",
        "memlock=-1",
        "--ulimit",
        "stack=8388608:-1",
        "--tmpfs",
        "/run/cache:size=1m,mode=1770,uid=1234",
        "--tmpfs",
        "/scratch:exec",
        "--tmpfs",
        "/ro:ro",
        "--sysctl",
        "net.core.somaxconn=1234",
        "--sysctl",
        "kernel.shmmax=123456789",
        "--sysctl",
        "kernel.sem=250\t32000\t100\t129",
        "--sysctl",
        "fs.mqueue.msg_max=33",
        BUSYBOX,
        "sh",
        "-c",
        "df -k /dev/shm /run/cache | tail -n 2; echo ---; \
         ulimit -n; ulimit -Hn; ulimit -u; ulimit -c; ulimit -l; ulimit -s; ulimit -Hs; echo ---; \
         stat -c '%n %a %u %g' /run/cache /scratch /ro; \
         for m in /run/cache /scratch /ro; do grep \" $m tmpfs \" /proc/mounts | cut -d' ' -f4 | cut -d, -f1-4; done; \
         echo ---; \
         printf '#!/bin/sh\\necho ran\\n' > /scratch/x; chmod +x /scratch/x; /scratch/x; \
         cp /scratch/x /run/cache/x; /run/cache/x 2>/dev/null; echo noexec=$?; \
         touch /ro/f 2>/dev/null; echo ro=$?; echo ---; \
         id; echo HOME=$HOME; echo ---; \
         cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmax /proc/sys/kernel/sem \
             /proc/sys/fs/mqueue/msg_max",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = sections(&r.stdout);
    assert_eq!(s.len(), 6, "{}", r.stdout);
    let size = |line: &str| line.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        (size(s[0][0]).as_str(), size(s[0][1]).as_str()),
        ("131072", "1024"),
        "--shm-size 128m, --tmpfs size=1m: {:?}",
        s[0]
    );
    assert_eq!(
        s[1],
        ["4096", "8192", "77", "0", "unlimited", "8192", "unlimited"],
        "nofile soft/hard, nproc, core, memlock, stack soft/hard (KiB in ulimit -s)"
    );
    assert_eq!(
        s[2],
        [
            "/run/cache 1770 1234 0",
            "/scratch 1777 0 0",
            "/ro 1777 0 0",
            // docker's tmpfs defaults are noexec,nosuid,nodev; exec and ro as asked.
            "rw,nosuid,nodev,noexec",
            "rw,nosuid,nodev,relatime",
            "ro,nosuid,nodev,noexec",
        ]
    );
    assert_eq!(s[3], ["ran", "noexec=126", "ro=1"]);
    assert_eq!(s[4], ["uid=1234 gid=5678 groups=5678", "HOME=/"]);
    assert_eq!(s[5], ["1234", "123456789", "250\t32000\t100\t129", "33"]);
}

/// A value or limit the guest kernel refuses is an error at start naming it (125, like a
/// failed docker start); nothing of the workload runs.
#[test]
fn what_the_guest_kernel_refuses_fails_the_start_naming_it() {
    let Some(hx) = Hx::with_busybox() else { return };
    for (flag, value, want) in [
        (
            "--sysctl",
            "net.core.somaxconn=lots",
            "hx: sysctl net.core.somaxconn=\"lots\": the guest kernel refused the value: invalid argument",
        ),
        (
            "--sysctl",
            "net.ipv4.no_such_key=1",
            "hx: sysctl net.ipv4.no_such_key: the guest kernel has no such key",
        ),
        (
            "--ulimit",
            "nofile=2000000",
            // Above the guest's fs.nr_open (1048576), as on a docker host.
            "hx: setting ulimit nofile=2000000:2000000: operation not permitted",
        ),
    ] {
        let r = hx.run(&["run", "--rm", flag, value, BUSYBOX, "echo", "ran"]);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.trim()),
            (125, "", want),
            "{flag} {value}"
        );
    }
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}

/// Flags docker refuses are refused before anything is looked up or made: exit 125, one line
/// naming the flag and the value (no image here: the refusal comes before the lookup).
#[test]
fn bad_flags_are_125_before_anything_happens() {
    let hx = Hx::new();
    for (args, want) in [
        (
            &["--sysctl", "kernel.domainname=x"][..],
            "invalid argument \"kernel.domainname=x\" for \"--sysctl\" flag: sysctl 'kernel.domainname=x' is not allowed",
        ),
        (&["--sysctl", "vm.swappiness=1"], "sysctl 'vm.swappiness=1' is not allowed"),
        (&["--sysctl", "net.core.somaxconn"], "expected KEY=VALUE"),
        (&["--sysctl", "net.x/../../y=1"], "not a sysctl key"),
        (
            &["--ulimit", "nofile=2048:1024"],
            "invalid argument \"nofile=2048:1024\" for \"--ulimit\" flag: ulimit soft limit must be less than or equal to hard limit: 2048 > 1024",
        ),
        (&["--ulimit", "files=1"], "invalid ulimit type: files"),
        (&["--ulimit", "nofile=1:2:3"], "too many limit value arguments"),
        (&["--ulimit", "nofile=lots"], "invalid ulimit value \"lots\""),
        (&["--tmpfs", "run"], "\"run\" for \"--tmpfs\" flag: the mount path must be absolute"),
        (&["--tmpfs", "/run:size=big"], "size=big: not a size"),
        (&["--tmpfs", "/run:nosuchopt"], "unknown option \"nosuchopt\""),
        (&["--tmpfs", "/run", "--tmpfs", "/run/"], "Duplicate mount point: /run"),
        (&["-v", "/data", "--tmpfs", "/data"], "Duplicate mount point: /data"),
        (&["--shm-size", "big"], "--shm-size \"big\": not a size"),
        (&["--shm-size", "2t"], "--shm-size \"2t\": out of range"),
        (&["--cap-add", "net_foo"], "unknown capability: \"CAP_NET_FOO\""),
        (&["--cap-drop", "ALL", "--cap-drop", "SYS_WHATEVER"], "\"CAP_SYS_WHATEVER\""),
        (
            &["--security-opt", "seccomp=/no/such/profile.json"],
            "--security-opt seccomp=/no/such/profile.json: No such file or directory",
        ),
        (&["--pids-limit", "-5"], "--pids-limit -5: must be -1 (no limit) or 1..=4194304"),
        (&["--security-opt", "apparmor=docker-default"], "--security-opt \"apparmor=docker-default\""),
        (&["--pid", "host"], "--pid host: only container:NAME"),
        (&["--pid", "container:web"], "--pid container:web: a container's PID namespace is inside its own VM"),
    ] {
        let mut argv = vec!["run", "--rm"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&[BUSYBOX, "true"]);
        let r = hx.run(&argv);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("hx: ") && r.stderr.contains(want),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    }
    // A profile hx cannot apply is refused the same way, naming the file and the fault.
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscals\": []}",
            "unknown field `syscals`",
        ),
        (
            "{\"defaultAction\": \"SCMP_ACT_NOTIFY\"}",
            "SCMP_ACT_NOTIFY",
        ),
        ("not json", "expected ident"),
    ] {
        let path = dir.path().join("profile.json");
        std::fs::write(&path, text).unwrap();
        let opt = format!("seccomp={}", path.display());
        let r = hx.run(&["run", "--rm", "--security-opt", &opt, BUSYBOX, "true"]);
        assert_eq!(r.code, 125, "{text}: {}", r.stderr);
        assert!(
            r.stderr
                .starts_with(&format!("hx: --security-opt {opt}: seccomp profile: "))
                && r.stderr.contains(want)
                && r.stderr.lines().count() == 1,
            "{text}: {}",
            r.stderr
        );
    }
    assert!(hx
        .store_files()
        .iter()
        .all(|f| !f.starts_with("containers/")));
}

/// On a network the hostname and the --name are the container's own address, and a net.*
/// sysctl applies to its interface.
#[test]
fn on_a_network_the_name_is_the_containers_address() {
    let hx = Hx::new();
    if !hx.has_guest() {
        return;
    }
    let Some(lab) = NetLab::new(&hx) else { return };
    hx.load_busybox();
    let r = lab.hx_ok(
        &hx,
        &[
            "run",
            "--rm",
            "--name",
            "web",
            "--sysctl",
            "net.ipv4.conf.eth0.rp_filter=2",
            BUSYBOX,
            "sh",
            "-c",
            "ip -o -4 addr show eth0 | awk '{print $4}' | cut -d/ -f1; hostname; hostname -i; \
             tail -n 1 /etc/hosts; wget -T 2 http://web:9/ 2>&1 | head -n 1; \
             cat /proc/sys/net/ipv4/conf/eth0/rp_filter",
        ],
    );
    let l: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(l.len(), 6, "{}", r.stdout);
    let (ip, hostname) = (l[0], l[1]);
    assert!(ip.starts_with("10.88."), "{ip}");
    assert_eq!(
        l[2..],
        [
            ip.to_string(),
            format!("{ip}\t{hostname} web"),
            format!("Connecting to web:9 ({ip}:9)"),
            "2".to_string()
        ]
    );
}

/// A --tmpfs at an image VOLUME's path takes its place (docker's rule): no anonymous volume is
/// made and the path is an empty tmpfs.
#[test]
fn tmpfs_replaces_an_image_volume() {
    let Some(hx) = Hx::with_busybox() else { return };
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox")).unwrap();
    for l in ["sh", "ls", "grep", "cut"] {
        std::os::unix::fs::symlink("busybox", tree.path().join("bin").join(l)).unwrap();
    }
    std::fs::create_dir_all(tree.path().join("seed")).unwrap();
    std::fs::write(tree.path().join("seed/from-image"), "seeded\n").unwrap();
    hx.ok(&[
        "import",
        tree.path().to_str().unwrap(),
        "vol-image:1",
        "--change",
        "VOLUME /seed",
        "--change",
        "ENV PATH=/bin",
    ]);
    let r = hx.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/seed",
        "vol-image:1",
        "sh",
        "-c",
        "grep ' /seed ' /proc/mounts | cut -d' ' -f1,3; ls -A /seed; echo end",
    ]);
    assert_eq!(r.stdout, "tmpfs tmpfs\nend\n");
    assert_eq!(hx.ok(&["volume", "ls", "-q"]).stdout, "");
}

/// The capability lines of /proc/self/status: (CapInh, CapPrm, CapEff, CapBnd, CapAmb) and
/// NoNewPrivs, as a process in the guest sees them.
fn cap_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(":\t"))
        .filter(|(k, _)| k.starts_with("Cap") || *k == "NoNewPrivs")
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const STATUS: &str = "grep -E '^(Cap|NoNewPrivs)' /proc/self/status";

/// docker's capabilities: a root workload gets docker's 14 (CapBnd 00000000a80425fb, no
/// CAP_SYS_ADMIN, so no mount), another user none after its exec, `hx exec` the workload's,
/// `hx exec --privileged` all; `--cap-drop ALL --cap-add NET_ADMIN` and
/// `--security-opt no-new-privileges` give exactly that; `--privileged` can mount.
#[test]
fn capabilities_are_dockers_and_the_flags_change_them() {
    let Some(hx) = Hx::with_busybox() else { return };
    let docker = "00000000a80425fb";
    // (Unconfined: `exec --privileged` below mounts, which docker's seccomp profile, like
    // docker's, keeps from any exec into a container made without CAP_SYS_ADMIN.)
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "caps",
        "--security-opt",
        "seccomp=unconfined",
        BUSYBOX,
        "sleep",
        "600",
    ]);
    let r = hx.run(&["exec", "caps", "sh", "-c", STATUS]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        cap_lines(&r.stdout),
        pairs(&[
            ("CapInh", "0000000000000000"),
            ("CapPrm", docker),
            ("CapEff", docker),
            ("CapBnd", docker),
            ("CapAmb", "0000000000000000"),
            ("NoNewPrivs", "0"),
        ])
    );
    let r = hx.run(&["exec", "caps", "mount", "-t", "tmpfs", "none", "/tmp"]);
    assert_ne!(r.code, 0, "mount without CAP_SYS_ADMIN: {}", r.stdout);
    assert!(
        r.stderr.contains("denied") || r.stderr.contains("not permitted"),
        "{}",
        r.stderr
    );
    let r = hx.run(&["exec", "-u", "1000", "caps", "sh", "-c", STATUS]);
    let got = cap_lines(&r.stdout);
    assert!(
        got.contains(&("CapEff".into(), "0000000000000000".into())),
        "{got:?}"
    );
    assert!(got.contains(&("CapBnd".into(), docker.into())), "{got:?}");
    let r = hx.run(&[
        "exec",
        "--privileged",
        "caps",
        "sh",
        "-c",
        "cat /proc/sys/kernel/cap_last_cap; grep CapEff /proc/self/status; \
         mount -t tmpfs none /tmp && echo mounted",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let last: u32 = r.stdout.lines().next().unwrap().trim().parse().unwrap();
    assert_eq!(
        r.stdout.lines().skip(1).collect::<Vec<_>>(),
        [
            format!("CapEff:\t{:016x}", (1u64 << (last + 1)) - 1).as_str(),
            "mounted"
        ]
    );
    hx.ok(&["rm", "-f", "caps"]);

    let r = hx.run(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "net_admin",
        "--security-opt",
        "no-new-privileges",
        BUSYBOX,
        "sh",
        "-c",
        &format!("{STATUS}; ip link set lo mtu 1400 && echo mtu; chown 1 /tmp || echo no-chown"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let net_admin = "0000000000001000";
    assert_eq!(
        cap_lines(&r.stdout),
        pairs(&[
            ("CapInh", "0000000000000000"),
            ("CapPrm", net_admin),
            ("CapEff", net_admin),
            ("CapBnd", net_admin),
            ("CapAmb", "0000000000000000"),
            ("NoNewPrivs", "1"),
        ])
    );
    assert!(r.stdout.contains("mtu\nno-chown\n"), "{}", r.stdout);
    let r = hx.run(&[
        "run",
        "--rm",
        "--privileged",
        BUSYBOX,
        "sh",
        "-c",
        "mount -t tmpfs none /tmp && echo mounted",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "mounted\n"),
        "{}",
        r.stderr
    );
}

/// `Seccomp:` (0 none, 2 a filter) and whether syslog(2) is let through (`dmesg`: any user may
/// read the log of this kernel; docker's profile allows it only with CAP_SYSLOG).
const SECCOMP_PROBE: &str = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
     dmesg >/dev/null 2>&1 && echo syslog || echo no-syslog";

/// docker's seccomp profile by default, for the workload and every exec (`exec --privileged`
/// too: the container's filter, as runc applies it); it follows the capabilities
/// (`--cap-add SYSLOG` lets syslog through); `seccomp=unconfined` and `--privileged` lift it;
/// `seccomp=FILE` applies that profile (mkdir denied with EACCES); with no-new-privileges too.
#[test]
fn seccomp_is_dockers_profile_and_the_options_change_it() {
    let Some(hx) = Hx::with_busybox() else { return };
    let run = |flags: &[&str]| {
        let mut argv = vec!["run", "--rm"];
        argv.extend_from_slice(flags);
        argv.extend_from_slice(&[BUSYBOX, "sh", "-c", SECCOMP_PROBE]);
        let r = hx.run(&argv);
        assert_eq!(r.code, 0, "{flags:?}: {}", r.stderr);
        r.stdout
    };
    let filtered = "NoNewPrivs:\t0\nSeccomp:\t2\nno-syslog\n";
    assert_eq!(run(&[]), filtered);
    assert_eq!(
        run(&["--cap-add", "SYSLOG"]),
        "NoNewPrivs:\t0\nSeccomp:\t2\nsyslog\n"
    );
    assert_eq!(
        run(&["--security-opt", "no-new-privileges"]),
        "NoNewPrivs:\t1\nSeccomp:\t2\nno-syslog\n"
    );
    let open = "NoNewPrivs:\t0\nSeccomp:\t0\nsyslog\n";
    assert_eq!(run(&["--security-opt", "seccomp=unconfined"]), open);
    assert_eq!(run(&["--privileged"]), open);

    hx.ok(&["run", "-d", "--name", "sc", BUSYBOX, "sleep", "600"]);
    for exec in [&["exec", "sc"][..], &["exec", "--privileged", "sc"]] {
        let mut argv = exec.to_vec();
        argv.extend_from_slice(&["sh", "-c", SECCOMP_PROBE]);
        assert_eq!(hx.ok(&argv).stdout, filtered, "{exec:?}");
    }
    let inspect = hx.ok(&["inspect", "-f", "{{json .HostConfig.SecurityOpt}}", "sc"]);
    assert_eq!(inspect.stdout.trim(), "[]");
    hx.ok(&["rm", "-f", "sc"]);

    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let r = hx.run(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        BUSYBOX,
        "sh",
        "-c",
        "touch /tmp/f && echo touched; mkdir /tmp/d",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stdout, "touched\n");
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    let r = hx.ok(&[
        "create",
        "--name",
        "un",
        "--security-opt",
        "seccomp=unconfined",
        BUSYBOX,
    ]);
    assert!(!r.stdout.is_empty());
    let inspect = hx.ok(&["inspect", "-f", "{{json .HostConfig.SecurityOpt}}", "un"]);
    assert_eq!(inspect.stdout.trim(), "[\"seccomp=unconfined\"]");
}

/// Eight background sleeps and a wait: "done" when every fork succeeded.
const FORK8: &str = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done";

/// `--pids-limit`: the container's processes (its workload and its execs) share one bound, a
/// fork past it fails (docker's EAGAIN); -1 is none; `hx inspect` shows it.
#[test]
fn pids_limit_bounds_the_containers_processes() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        BUSYBOX,
        "sh",
        "-c",
        FORK8,
    ]);
    assert!(r.stderr.contains("can't fork"), "{}{}", r.stdout, r.stderr);
    let r = hx.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "-1",
        BUSYBOX,
        "sh",
        "-c",
        FORK8,
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "done\n"), "{}", r.stderr);
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "pl",
        "--pids-limit",
        "3",
        BUSYBOX,
        "sleep",
        "600",
    ]);
    // The workload (sleep) is one; an exec's shell two, its first child three, the fourth
    // process is refused.
    let r = hx.run(&[
        "exec",
        "pl",
        "sh",
        "-c",
        "sleep 1 & sleep 1 & wait; echo done",
    ]);
    assert!(r.stderr.contains("can't fork"), "{}{}", r.stdout, r.stderr);
    let inspect = hx.ok(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", "pl"]);
    assert_eq!(inspect.stdout.trim(), "3");
    // `hx update --pids-limit` raises it in place (docker update's flag), -1 lifts it.
    hx.ok(&["update", "--pids-limit", "10", "pl"]);
    let r = hx.run(&[
        "exec",
        "pl",
        "sh",
        "-c",
        "sleep 1 & sleep 1 & wait; echo done",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "done\n"), "{}", r.stderr);
    hx.ok(&["update", "--pids-limit", "-1", "pl"]);
    let inspect = hx.ok(&["inspect", "-f", "{{json .HostConfig.PidsLimit}}", "pl"]);
    assert_eq!(inspect.stdout.trim(), "null");
    // The group is pv-init's, not a file of the container's root (its writable layer, what
    // commit and export take).
    let root = hx.ok(&["exec", "pl", "ls", "-a", "/"]).stdout;
    assert!(!root.contains("hx-cgroup"), "{root}");
}
