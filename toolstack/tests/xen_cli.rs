//! The Xen side of the CLI as far as it runs without Xen: every admin command names the missing
//! dom0 in one line with exit 3, prefixes resolve as documented (docs/cli.md), `hx run` on the
//! xen backend fails cleanly (125) without leaving a container behind, and the config file is
//! checked. On a real dom0 these checks are skipped; the lab (tests/xen-lab) covers that side.
mod common;
use common::Hx;

fn on_dom0() -> bool {
    let yes =
        std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|s| s.contains("control_d"));
    if yes {
        eprintln!("SKIP: this is a Xen dom0; tests/xen-lab covers the admin commands");
    }
    yes
}

/// The command was recognised and refused for the missing dom0 like xl: exit 3, one line, nothing
/// on stdout. A clap usage error (exit 2, "unexpected argument", usage lines) fails this.
fn assert_refused_outside_dom0(argv: &[&str], r: &common::Run) {
    assert_eq!(r.code, 3, "hx {argv:?}: {}", r.stderr);
    assert_eq!(r.stdout, "", "hx {argv:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "hx {argv:?}: {}", r.stderr);
    assert!(
        lines[0].starts_with("hx: not a Xen dom0: /proc/xen/capabilities"),
        "hx {argv:?}: {}",
        r.stderr
    );
}

const ADMIN: &[&[&str]] = &[
    &["list"],
    &["list", "--json"],
    &["list", "Domain-0"],
    &["list", "-l"],
    &["list", "-v", "web"],
    &["config", "web"],
    &["domain", "save", "web", "/tmp/web.save"],
    &[
        "domain",
        "save",
        "-c",
        "-p",
        "web",
        "/tmp/web.save",
        "web.cfg",
    ],
    &["domain", "restore", "/tmp/web.save"],
    &["domain", "restore", "-p", "-e", "web.cfg", "/tmp/web.save"],
    &["info"],
    &["info", "--json"],
    &["dmesg"],
    &["dmesg", "-c"],
    &["destroy", "web"],
    &["shutdown", "-w", "web"],
    &["reboot", "7"],
    &["pause", "web"],
    &["unpause", "web"],
    &["console", "web"],
    &["vncviewer", "-a", "web"],
    &["debug-keys", "h"],
    &["set-parameters", "loglvl=all"],
    &["dump-core", "web", "/tmp/web.core"],
    &["trigger", "web", "nmi", "0"],
    &["mem-set", "web", "256m"],
    &["vcpu-set", "web", "2"],
    &["domid", "web"],
    &["domname", "7"],
    &["shutdown", "-a"],
    &["mem-max", "web", "512m"],
    &["uptime"],
    &["uptime", "-s", "web", "0"],
    &["vcpu-list"],
    &["vcpu-list", "web"],
    &["vcpu-pin", "web", "all", "0-1,^1", "-"],
    &["sched-credit2"],
    &["sched-credit2", "-d", "web", "-w", "512", "-c", "50"],
    &["cpupool-list", "-c"],
    &["cpupool-create", "name=\"p1\"", "cpus=\"1\""],
    &["cpupool-destroy", "p1"],
    &["cpupool-rename", "p1", "p2"],
    &["cpupool-cpu-add", "p1", "1"],
    &["cpupool-cpu-remove", "Pool-0", "node:0"],
    &["cpupool-migrate", "web", "p1"],
    &["sysrq", "web", "h"],
    &["top", "-b", "-d", "1", "-i", "3"],
    &[
        "block-attach",
        "web",
        "format=raw,vdev=xvdz,access=rw,target=/x.img",
    ],
    &["block-detach", "web", "xvdz"],
    &["block-list", "web", "7"],
    &[
        "network-attach",
        "web",
        "bridge=hx0",
        "mac=00:16:3e:00:00:01",
    ],
    &["network-detach", "web", "1"],
    &["network-list", "web"],
];

#[test]
fn admin_commands_outside_dom0_say_so_in_one_line_with_exit_3() {
    if on_dom0() {
        return;
    }
    let hx = Hx::new();
    for args in ADMIN {
        assert_refused_outside_dom0(args, &hx.run(args));
    }
}

#[test]
fn unambiguous_prefixes_run_the_command_and_ambiguous_ones_are_usage_errors() {
    if on_dom0() {
        return;
    }
    let hx = Hx::new();
    // Each documented prefix reaches its command (which then reports the missing dom0).
    for (prefix, args) in [
        ("li", &[][..]),
        ("inf", &[]),
        ("dm", &[]),
        ("de", &["1"]),
        ("sh", &["1"]),
        ("reb", &["1"]),
        ("pa", &["1"]),
        ("unp", &["1"]),
        ("con", &["1"]),
        ("conf", &["1"]),
        ("mem-s", &["1", "256m"]),
        ("mem-m", &["1", "256m"]),
        ("vcpu-s", &["1", "1"]),
        ("vcpu-l", &[]),
        ("vcpu-p", &["1", "0", "1"]),
        ("up", &[]),
        ("sysr", &["1", "h"]),
        ("sc", &[]),
        ("cpupool-l", &[]),
        ("cpupool-m", &["1", "Pool-0"]),
        ("cpupool-cpu-a", &["Pool-0", "1"]),
        ("domi", &["x"]),
        ("domn", &["1"]),
    ] {
        let mut argv = vec![prefix];
        argv.extend_from_slice(args);
        assert_refused_outside_dom0(&argv, &hx.run(&argv));
    }
    for ambiguous in [
        "p",
        "d",
        "l",
        "r",
        "s",
        "i",
        "dom",
        "c",
        "m",
        "vc",
        "u",
        "sy",
        "cpu",
        "cpupool-c",
    ] {
        let r = hx.run(&[ambiguous]);
        assert_eq!(r.code, 2, "hx {ambiguous}: {}", r.stderr);
        assert!(
            r.stderr.contains("unrecognized subcommand"),
            "hx {ambiguous}: {}",
            r.stderr
        );
    }
    // Container commands keep their short forms.
    let r = hx.run(&["ps"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn help_lists_the_admin_commands_and_hides_the_monitor() {
    let hx = Hx::new();
    let r = hx.ok(&["--help"]);
    for c in [
        "list",
        "info",
        "dmesg",
        "destroy",
        "shutdown",
        "reboot",
        "pause",
        "unpause",
        "console",
        "vncviewer",
        "debug-keys",
        "set-parameters",
        "dump-core",
        "trigger",
        "mem-set",
        "vcpu-set",
        "domid",
        "domname",
        "mem-max",
        "uptime",
        "vcpu-list",
        "vcpu-pin",
        "sched-credit2",
        "cpupool-list",
        "cpupool-create",
        "cpupool-destroy",
        "cpupool-rename",
        "cpupool-cpu-add",
        "cpupool-cpu-remove",
        "cpupool-migrate",
        "sysrq",
        "config",
        "domain",
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} "))),
            "{c} missing from:\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.contains("__xen-monitor"));
    assert!(!r.stdout.contains("__xl-monitor"));
    let r = hx.ok(&["run", "--help"]);
    assert!(r.stdout.contains("--type <pvh|pv>"), "{}", r.stdout);
}

#[test]
fn run_on_the_xen_backend_outside_dom0_fails_cleanly() {
    if on_dom0() {
        return;
    }
    let hx = Hx::new();
    hx.load_busybox();
    let r = hx.run(&[
        "run",
        "--backend",
        "xen",
        "--name",
        "x1",
        common::BUSYBOX,
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("hx: not a Xen dom0: /proc/xen/capabilities"),
        "{}",
        r.stderr
    );
    let ps = hx.ok(&["ps", "-a", "-q"]);
    assert_eq!(ps.stdout, "", "nothing left behind");
}

#[test]
fn type_is_for_xen_and_the_config_file_is_checked() {
    let hx = Hx::new();
    hx.load_busybox();
    let r = hx.run(&[
        "run",
        "--backend",
        "qemu",
        "--type",
        "pv",
        common::BUSYBOX,
        "true",
    ]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("--type applies to the xen backend only"),
        "{}",
        r.stderr
    );

    std::fs::write(hx.root().join("config.toml"), "[xen]\ntype = \"hvm\"\n").unwrap();
    let r = hx.run(&["run", "--backend", "qemu", common::BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("config.toml") && r.stderr.contains("\"hvm\""),
        "{}",
        r.stderr
    );

    std::fs::write(hx.root().join("config.toml"), "[xen]\nflavour = \"pv\"\n").unwrap();
    let r = hx.run(&["run", "--backend", "qemu", common::BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("unknown field `flavour`"), "{}", r.stderr);
    assert_eq!(hx.ok(&["ps", "-a", "-q"]).stdout, "");
}

/// Bad input to the admin commands is refused before libxl is asked, exit 1 like xl, one line.
#[test]
fn bad_admin_arguments_are_exit_1_before_the_dom0_check() {
    let hx = Hx::new();
    for argv in [
        &["vcpu-pin", "web", "x", "1"][..],
        &["sysrq", "web", "hh"],
        &["mem-max", "web", "lots"],
        &["shutdown"],
        &["shutdown", "-a", "web"],
        &["block-attach", "web", "target=/x.img,bogus=1"],
        &["network-attach", "web", "colour=blue"],
    ] {
        let r = hx.run(argv);
        assert_eq!(r.code, 1, "hx {argv:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "hx {argv:?}: {}", r.stderr);
    }
    let r = hx.run(&["sched-credit2", "-d", "web", "-w", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `hx create FILE.cfg` is xl's create: the file is parsed (libxlutil) before the dom0 check, so
/// a bad one is exit 1 naming the culprit anywhere; a good one then needs a dom0 (exit 3).
/// `hx create IMAGE` stays docker's.
#[test]
fn create_from_an_xl_cfg_file() {
    let hx = Hx::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.cfg");
    std::fs::write(
        &cfg,
        "name = \"web\"\ntype = \"pvh\"\nkernel = \"/k\"\nmemory = 64\n\
         disk = [ 'format=raw, vdev=xvda, access=rw, target=/d.img' ]\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let r = hx.run(&["create", "-q", cfg]);
    if !on_dom0() {
        assert_refused_outside_dom0(&["create", cfg], &r);
    }
    for (extra, culprit) in [
        ("pci=['01:00.0']", "\"pci\" is not supported"),
        ("type=\"xen\"", "type \"xen\""),
        ("disk=['/x,raw,xvda,bogus']", "disk"),
        ("vif=['colour=blue']", "unsupported parameter \"colour\""),
        ("memory=\"lots\"", "memory"),
    ] {
        let r = hx.run(&["create", "-q", cfg, extra]);
        assert_eq!(r.code, 1, "{extra}: {}", r.stderr);
        assert!(r.stderr.contains(culprit), "{extra}: {}", r.stderr);
        assert_eq!(r.stdout, "");
    }
    let r = hx.run(&["create", cfg]);
    assert!(
        r.stderr
            .starts_with(&format!("Parsing config from {cfg}\n")),
        "{}",
        r.stderr
    );
    // xl's other create flags take the xl form too; -n (dry run) needs libxl for its JSON, as
    // xl does, so it ends at the dom0 check here; a bad file is still exit 1 before that.
    for flags in [
        &["-n"][..],
        &["-q", "-n"],
        &["-nq"],
        &["-F"],
        &["-e"],
        &["-d", "-q"],
        &["-i"],
    ] {
        let mut argv = vec!["create"];
        argv.extend_from_slice(flags);
        argv.push(cfg);
        let r = hx.run(&argv);
        if !on_dom0() {
            assert_eq!(r.code, 3, "{argv:?}: {}", r.stderr);
        }
        argv.push("pci=['01:00.0']");
        let r = hx.run(&argv);
        assert_eq!(r.code, 1, "{argv:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("\"pci\" is not supported"),
            "{argv:?}: {}",
            r.stderr
        );
    }
    let r = hx.run(&["create", "/nonexistent/x.cfg"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent/x.cfg"), "{}", r.stderr);
    let r = hx.run(&["create", cfg, "other.cfg"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // docker's create: an image name, not a file (it fails on the missing image, exit 125).
    let r = hx.run(&["create", "--pull", "never", "no-such-image-here"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(!r.stderr.contains("Parsing config"), "{}", r.stderr);
}
