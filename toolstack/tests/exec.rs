//! `hx exec` on the default backend of the machine the tests run on (QEMU here): processes in
//! a running container over its exec channel, with docker's exit codes, environment, user and
//! working directory, input and output byte for byte, many sessions at once, a terminal with
//! its size, resizes and ^C, and the container's end ending every session.
mod common;
use common::{run_with_input, term::Terminal, Hx, BUSYBOX};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn start(hx: &Hx, name: &str, cmd: &[&str]) {
    start_with(hx, name, &[], cmd)
}

fn start_with(hx: &Hx, name: &str, flags: &[&str], cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
    args.push("-e");
    args.push("FROM_IMAGE_RUN=kept");
    args.extend_from_slice(flags);
    args.push(BUSYBOX);
    args.extend_from_slice(cmd);
    hx.ok(&args);
}

#[test]
fn exec_runs_processes_in_a_running_container_like_docker() {
    let Some(hx) = Hx::with_busybox() else { return };
    start(&hx, "ex", &["sleep", "1000"]);
    // The first exec waits for the guest to be up; output and exit code are the process's.
    let r = hx.run(&["exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    assert_eq!(hx.ok(&["exec", "ex", "true"]).stdout, "");

    let r = hx.run(&["exec", "ex", "/no/such"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "hx: exec: \"/no/such\": stat /no/such: no such file or directory\n"
    );
    let r = hx.run(&["exec", "ex", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr.contains("executable file not found in $PATH"),
        "{}",
        r.stderr
    );
    let r = hx.run(&["exec", "ex", "/etc/passwd"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (126, "hx: exec: \"/etc/passwd\": permission denied\n")
    );
    let r = hx.run(&["exec", "-w", "/nowhere", "ex", "true"]);
    assert_eq!(r.code, 126, "{}", r.stderr);
    assert!(r.stderr.contains("/nowhere"), "{}", r.stderr);

    // The container's environment, merged with -e (a later value wins; `-e K` without a value
    // on the host leaves K out), the user (ids not in passwd too) and the working directory.
    let r = hx
        .cmd(&[
            "exec", "-e", "A=1", "-e", "FROM_IMAGE_RUN=over", "-e", "HX_TEST_UNSET_VAR", "-e",
            "HX_TEST_SET_VAR", "-u", "1234:5678", "-w", "/tmp", "ex", "sh", "-c",
            "echo $A $FROM_IMAGE_RUN ${HX_TEST_UNSET_VAR-unset} $HX_TEST_SET_VAR $(id -u):$(id -g) $(pwd) $HOME",
        ])
        .env("HX_TEST_SET_VAR", "from-host")
        .env_remove("HX_TEST_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "1 over unset from-host 1234:5678 /tmp /\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // Docker's namespace defaults, as a non-root process sees them.
    assert_eq!(
        hx.ok(&[
            "exec",
            "-u",
            "1000",
            "ex",
            "cat",
            "/proc/sys/net/ipv4/ping_group_range",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        ])
        .stdout,
        "0\t2147483647\n0\n"
    );
    assert_eq!(
        hx.ok(&[
            "exec",
            "ex",
            "sh",
            "-c",
            "echo $FROM_IMAGE_RUN $(id -un) $HOME"
        ])
        .stdout,
        "kept root /root\n"
    );

    // Input byte for byte with its end, and output of every byte value, beyond one window.
    let input: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (code, out, err) = run_with_input(&hx, &["exec", "-i", "ex", "cat"], input.clone());
    assert_eq!(code, 0, "{err}");
    assert!(out == input, "cat gave back {} bytes", out.len());

    // Eight sessions at once, each with its own streams and exit code.
    let children: Vec<_> = (1..=8)
        .map(|i| {
            let script = format!("sleep 1; echo out{i}; echo err{i} >&2; exit {i}");
            hx.cmd(&["exec", "ex", "sh", "-c", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in (1..=8).zip(children) {
        let r = common::wait_with_timeout(child, Duration::from_secs(120));
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (
                i,
                format!("out{i}\n").as_str(),
                format!("err{i}\n").as_str()
            )
        );
    }

    // -d: started, left running, its exit does not stop the container.
    let r = hx.ok(&["exec", "-d", "ex", "sh", "-c", "echo done > /tmp/detached"]);
    assert_eq!(r.stdout, "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while hx.run(&["exec", "ex", "cat", "/tmp/detached"]).stdout != "done\n" {
        assert!(
            Instant::now() < deadline,
            "the detached process left no file"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(hx.ok(&["ps"]).stdout.contains("ex"));

    // cp both ways: a tree with modes and a symlink, and tar streams on stdin/stdout.
    let host = tempfile::tempdir().unwrap();
    let tree = host.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::write(tree.join("sub/secret"), "s3cret").unwrap();
    std::os::unix::fs::symlink("run.sh", tree.join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&tree.join("run.sh"), 0o750);
    mode(&tree.join("sub/secret"), 0o600);
    mode(&tree.join("sub"), 0o710);
    let r = hx.run(&["cp", tree.to_str().unwrap(), "ex:/tmp"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        hx.ok(&["exec", "ex", "sh", "-c", "/tmp/tree/link; stat -c '%a %n' /tmp/tree/run.sh /tmp/tree/sub /tmp/tree/sub/secret; readlink /tmp/tree/link"]).stdout,
        "ran\n750 /tmp/tree/run.sh\n710 /tmp/tree/sub\n600 /tmp/tree/sub/secret\nrun.sh\n"
    );
    let back = host.path().join("back");
    hx.ok(&["cp", "ex:/tmp/tree", back.to_str().unwrap()]);
    let meta = |p: &str| {
        std::fs::symlink_metadata(back.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (meta("run.sh"), meta("sub"), meta("sub/secret")),
        (0o750, 0o710, 0o600)
    );
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap(),
        std::path::Path::new("run.sh")
    );
    assert_eq!(
        std::fs::read_to_string(back.join("sub/secret")).unwrap(),
        "s3cret"
    );
    let out = hx.cmd(&["cp", "ex:/etc/hostname", "-"]).output().unwrap();
    let names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["hostname"]);
    let mut stream = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    stream
        .append_data(&mut h, "from-stdin", &b"abc"[..])
        .unwrap();
    let (code, _, err) = run_with_input(&hx, &["cp", "-", "ex:/tmp"], stream.into_inner().unwrap());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        hx.ok(&["exec", "ex", "cat", "/tmp/from-stdin"]).stdout,
        "abc"
    );
    let r = hx.run(&["cp", "ex:/no/such", host.path().to_str().unwrap()]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "hx: could not find the file /no/such\n")
    );

    // rename: the running container answers to its new name only; names stay unique.
    assert_eq!(hx.ok(&["rename", "ex", "ex2"]).stdout, "");
    assert_eq!(
        hx.ok(&["exec", "ex2", "echo", "renamed"]).stdout,
        "renamed\n"
    );
    let r = hx.run(&["exec", "ex", "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    start(&hx, "other", &["sleep", "1000"]);
    let r = hx.run(&["rename", "ex2", "other"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("other") && r.stderr.contains("in use"),
        "{}",
        r.stderr
    );
    let r = hx.run(&["rename", "ex2", "bad/name"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    hx.ok(&["rm", "-f", "other"]);
    hx.ok(&["rename", "ex2", "ex"]);
    let names = hx.ok(&["ps", "--json"]).stdout;
    let names: serde_json::Value = serde_json::from_str(&names).unwrap();
    assert_eq!(names[0]["name"], "ex", "{names}");

    // top: the container's processes (not pv-init), docker's columns.
    let top = hx.ok(&["top", "ex"]).stdout;
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let main = rows
        .iter()
        .find(|r| r[7..] == ["sleep", "1000"])
        .unwrap_or_else(|| panic!("no workload in\n{top}"));
    assert_eq!((main[0], main[2], main[5]), ("root", "1", "?"), "{top}");
    assert!(!rows.iter().any(|r| r[1] == "1"), "pv-init listed:\n{top}");
    // stats: what the guest sees, once; a busy exec shows as CPU.
    hx.ok(&["exec", "-d", "ex", "sh", "-c", "while :; do :; done"]);
    let stats = hx.ok(&["stats", "--no-stream", "--json", "ex"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let s = &v[0];
    assert_eq!(s["name"], "ex", "{stats}");
    let mem = s["mem_used"].as_u64().unwrap();
    let limit = s["mem_limit"].as_u64().unwrap();
    assert!(mem > 1 << 20 && limit > 64 << 20 && mem < limit, "{stats}");
    assert!(s["cpu_percent"].as_f64().unwrap() > 20.0, "{stats}");
    assert!(s["pids"].as_u64().unwrap() >= 2, "{stats}");
    assert!(s["block_read"].as_u64().unwrap() > 0, "{stats}");
    let table = hx.ok(&["stats", "--no-stream"]).stdout;
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(table.contains(" ex "), "{table}");

    // The main process's end ends every session (docker's 137), and then exec is refused.
    let long = hx
        .cmd(&["exec", "ex", "sleep", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The serial console on QEMU: followed until the VM ends.
    let console = hx
        .cmd(&["console", "ex"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    hx.ok(&["kill", "ex"]);
    let c = common::wait_with_timeout(console, Duration::from_secs(60));
    assert_eq!(c.code, 0, "{}", c.stderr);
    // From the log's first line (the firmware's banner, or with qboot as bios-microvm.bin the
    // kernel's first word) to the VM's end.
    let v: serde_json::Value = serde_json::from_str(&hx.ok(&["inspect", "ex"]).stdout).unwrap();
    let log = std::fs::read_to_string(v[0]["Files"]["Console"].as_str().unwrap()).unwrap();
    // A guest restored from a warm template starts its log with an empty line.
    let first = log
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        !first.is_empty()
            && c.stdout.trim_start().starts_with(first)
            && c.stdout.contains("Power down"),
        "{first:?} {}",
        c.stdout
    );
    let r = common::wait_with_timeout(long, Duration::from_secs(60));
    // Killed with the workload (its SIGKILL reported), or cut off with the VM.
    assert_eq!(r.code, 137, "{}", r.stderr);
    assert!(
        ["", "hx: container ex stopped during the exec\n"].contains(&r.stderr.as_str()),
        "{}",
        r.stderr
    );
    hx.ok(&["wait", "ex"]);
    let r = hx.run(&["exec", "ex", "true"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (125, "hx: container ex is not running\n")
    );
    for cmd in [&["top", "ex"][..], &["stats", "--no-stream", "ex"]] {
        let r = hx.run(cmd);
        assert_ne!(r.code, 0);
        assert_eq!(r.stderr, "hx: container ex is not running\n");
    }
    let r = hx.run(&["exec", "nosuch", "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
    hx.ok(&["rm", "ex"]);
}

#[test]
fn exec_it_gives_a_terminal_of_hx_size_with_resize_and_ctrl_c() {
    let Some(hx) = Hx::with_busybox() else { return };
    start(&hx, "tty", &["sleep", "1000"]);
    hx.ok(&["exec", "tty", "true"]);
    let mut t = Terminal::spawn(&hx, &["exec", "-it", "tty", "sh"], 30, 100);
    t.expect("# ");
    t.send(b"stty size; tty; echo $((6*7))\r");
    t.expect("42\r\n");
    t.expect("30 100\r\n/dev/pts/");
    t.resize_seen(50, 160);
    t.send(b"sleep 1000\r");
    std::thread::sleep(Duration::from_secs(2));
    t.send(b"\x03");
    t.send(b"echo after-ctrl-c $?\r");
    t.expect("after-ctrl-c 130");
    t.send(b"exit 5\r");
    let r = t.wait();
    assert_eq!(r.code, 5);
    // The container runs on.
    assert_eq!(hx.ok(&["exec", "tty", "echo", "still"]).stdout, "still\n");
    hx.ok(&["rm", "-f", "tty"]);
}

#[test]
fn attach_follows_output_until_the_end_and_proxies_signals() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "att",
        "--network",
        "none",
        BUSYBOX,
        "sh",
        "-c",
        "sleep 3; for i in 1 2 3; do echo tick$i; echo err$i >&2; sleep 1; done; exit 7",
    ]);
    let r = common::run_with_timeout(hx.cmd(&["attach", "att"]), Duration::from_secs(120));
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stdout.ends_with("tick3\n"), "{}", r.stdout);
    assert!(r.stderr.ends_with("err3\n"), "{}", r.stderr);
    let r = hx.run(&["attach", "att"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (125, "hx: container att is not running\n")
    );

    // ^C to hx attach is the workload's SIGINT (docker's --sig-proxy).
    start(
        &hx,
        "sig",
        &[
            "sh",
            "-c",
            "trap 'echo got-int; exit 3' INT; while :; do sleep 1; done",
        ],
    );
    hx.ok(&["exec", "sig", "true"]);
    let child = hx
        .cmd(&["attach", "sig"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let r = common::wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (3, "got-int\n"),
        "{}",
        r.stderr
    );
    hx.ok(&["rm", "att", "sig"]);
}

/// The entry names of a tar archive.
fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// `hx commit` (the writable layer as a new image: new files, deletions as whiteouts, a
/// directory replaced as opaque, `-c`/`-a`/`-m` in its config) and `hx export` (the whole
/// filesystem, /proc and /sys empty) of a running container, which keeps running; then cp,
/// commit and export of the same container stopped.
#[test]
fn commit_and_export_a_running_container() {
    let Some(hx) = Hx::with_busybox() else { return };
    let script = "echo hi > /root/new; rm /bin/vi; rm -rf /etc/network; mkdir /etc/network; \
                  echo x > /etc/network/only; echo ready; sleep 1000";
    start(&hx, "cm", &["sh", "-c", script]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hx.ok(&["logs", "cm"]).stdout.contains("ready") {
        assert!(Instant::now() < deadline, "the workload never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = hx.ok(&[
        "commit",
        "-a",
        "Jane <jane@example.com>",
        "-m",
        "a snapshot",
        "-c",
        "CMD [\"cat\", \"/root/new\"]",
        "cm",
        "mine:1",
    ]);
    assert!(
        r.stdout.starts_with("sha256:") && r.stdout.len() == 72,
        "{}",
        r.stdout
    );
    assert_eq!(
        hx.ok(&["images", "-q", "--no-trunc", "-f", "reference=mine:1"])
            .stdout,
        r.stdout
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&hx.ok(&["image", "inspect", "mine:1"]).stdout).unwrap();
    let last = cfg[0]["Config"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["author"], &last["comment"]),
        (
            &serde_json::json!("Jane <jane@example.com>"),
            &serde_json::json!("a snapshot")
        )
    );
    // Paused for the commit, running again after it.
    assert_eq!(hx.ok(&["exec", "cm", "cat", "/root/new"]).stdout, "hi\n");
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none", "mine:1"];
        a.extend_from_slice(args);
        hx.ok(&a).stdout
    };
    assert_eq!(run(&[]), "hi\n");
    assert_eq!(
        run(&["sh", "-c", "ls /etc/network; test -e /bin/vi || echo no vi"]),
        "only\nno vi\n"
    );

    let out = hx.cmd(&["export", "cm"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = tar_names(&out.stdout);
    for want in ["root/new", "etc/network/only", "bin/sh", "proc", "sys"] {
        assert!(names.iter().any(|n| n == want), "{want} not in the export");
    }
    assert!(!names
        .iter()
        .any(|n| n == "bin/vi" || n.starts_with("proc/") || n.starts_with("sys/")));
    let file = hx.root().join("cm.tar");
    hx.ok(&["export", "-o", file.to_str().unwrap(), "cm"]);
    assert_eq!(std::fs::read(&file).unwrap().len(), out.stdout.len());

    // A commit killed mid-stream: no image, no scratch file, the workload not left stopped.
    hx.ok(&[
        "exec",
        "cm",
        "dd",
        "if=/dev/zero",
        "of=/root/big",
        "bs=1M",
        "count=48",
    ]);
    let mut killed = hx.cmd(&["commit", "cm", "big:1"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let stopped = "grep -l 'State:.*T (stopped)' /proc/[0-9]*/status; true";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = hx.ok(&["exec", "cm", "sh", "-c", stopped]).stdout;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still stopped: {left}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let images = hx.ok(&["images", "-q", "-f", "reference=big:1"]).stdout;
    assert!(images.is_empty(), "{images}");
    let scratch: Vec<_> = std::fs::read_dir(hx.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
    hx.ok(&["exec", "cm", "rm", "/root/big"]);

    // Stopped: cp, commit and export go through an offline VM of its disks, which leaves the
    // container as it was (docker's work on stopped containers).
    hx.ok(&["exec", "cm", "sh", "-c", "echo late > /root/late"]);
    hx.ok(&["stop", "-t", "0", "cm"]);
    let id = hx.ok(&["inspect", "-f", "{{.Id}}", "cm"]).stdout;
    let state = |hx: &Hx| {
        let f = "{{.State.Status}} {{.State.ExitCode}} {{.State.FinishedAt}}";
        hx.ok(&["inspect", "-f", f, "cm"]).stdout
    };
    let before = state(&hx);
    assert!(before.starts_with("exited "), "{before}");
    let r = hx.ok(&["commit", "cm", "mine:2"]);
    assert!(r.stdout.starts_with("sha256:"), "{}", r.stdout);
    assert_eq!(
        hx.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "mine:2",
            "cat",
            "/root/late",
            "/root/new"
        ])
        .stdout,
        "late\nhi\n"
    );
    let local = hx.root().join("in.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    hx.ok(&["cp", local.to_str().unwrap(), "cm:/root/in.txt"]);
    let out = hx.cmd(&["cp", "cm:/root/in.txt", "-"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = String::new();
    for e in tar::Archive::new(out.stdout.as_slice()).entries().unwrap() {
        std::io::Read::read_to_string(&mut e.unwrap(), &mut got).unwrap();
    }
    assert_eq!(got, "copied in\n");
    let out = hx.cmd(&["export", "cm"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = tar_names(&out.stdout);
    assert!(names.iter().any(|n| n == "root/in.txt"), "{names:?}");
    assert_eq!(state(&hx), before);
    assert!(!hx
        .root()
        .join("containers")
        .join(id.trim())
        .join("offline")
        .exists());
    hx.ok(&["rm", "cm"]);
}

/// What Xen's shutdown request makes the guest kernel run (pv-init's poweroff_cmd, itself as a
/// helper: docs/guest-protocol.md), started here by hand since QEMU sends no such request:
/// the workload gets SIGTERM like `hx stop` (143), and one that ignores it SIGKILL after 10 s
/// (137). `--init`: pv-init is /proc/1 there (else the workload is, in its own namespace).
#[test]
fn host_poweroff_helper_stops_the_workload_like_hx_stop() {
    let Some(hx) = Hx::with_busybox() else { return };
    start_with(&hx, "pw", &["--init"], &["sleep", "1000"]);
    assert_eq!(
        hx.ok(&["exec", "pw", "cat", "/proc/sys/kernel/poweroff_cmd"])
            .stdout,
        "/proc/1/exe --hx-host-poweroff\n"
    );
    // (--privileged: the kernel runs its helpers with every capability; following /proc/1/exe
    // takes pv-init's.)
    hx.run(&[
        "exec",
        "--privileged",
        "pw",
        "/proc/1/exe",
        "--hx-host-poweroff",
    ]);
    assert_eq!(hx.ok(&["wait", "pw"]).stdout, "143\n");

    start_with(
        &hx,
        "pw2",
        &["--init"],
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
    );
    hx.ok(&["exec", "pw2", "true"]);
    let t0 = Instant::now();
    hx.run(&[
        "exec",
        "--privileged",
        "pw2",
        "/proc/1/exe",
        "--hx-host-poweroff",
    ]);
    assert_eq!(hx.ok(&["wait", "pw2"]).stdout, "137\n");
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(40)).contains(&took),
        "SIGKILL after {took:?}, not the 10 s grace"
    );
}

/// As with docker, the command is PID 1 of a PID namespace of its own, with its own /proc
/// (/proc/sys read-only unless --privileged); an exec joins it there; a stop signal it has
/// no handler for is ignored, so SIGKILL ends it at the deadline (137). `--init` puts pv-init
/// above it, as docker-init: the command is not PID 1 and dies of the signal (143).
#[test]
fn the_workload_is_pid_1_of_its_own_namespace_unless_init() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&["run", "--pod", "p", "--init", BUSYBOX, "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("--init with --pod"), "{}", r.stderr);
    let probe = "echo pid=$$ one=$(tr '\\0' ' ' < /proc/1/cmdline); \
                 (echo hx > /proc/sys/kernel/domainname) 2>/dev/null && echo proc-sys=rw || echo proc-sys=ro; \
                 awk '$2 == \"/sys\" { split($4, o, \",\"); print \"sys=\" o[1] }' /proc/mounts; \
                 ls /sys/firmware | wc -l";
    let probed = |flag: &str| {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(Some(flag).filter(|f| !f.is_empty()));
        args.extend_from_slice(&[BUSYBOX, "sh", "-c", probe]);
        let r = hx.run(&args);
        assert_eq!(r.code, 0, "{flag}: {}", r.stderr);
        r.stdout
    };
    // docker's confinement: /proc/sys and /sys read-only, /sys/firmware masked (empty).
    assert_eq!(
        probed(""),
        format!("pid=1 one=sh -c {probe}\nproc-sys=ro\nsys=ro\n0\n")
    );
    let privileged = probed("--privileged");
    let privileged: Vec<&str> = privileged.lines().skip(1).collect();
    assert_eq!(privileged[..2], ["proc-sys=rw", "sys=rw"]);
    let under_init = probed("--init");
    assert!(
        !under_init.starts_with("pid=1 ") && under_init.ends_with("proc-sys=ro\nsys=ro\n0\n"),
        "--init: {under_init}"
    );

    start(&hx, "p1", &["sleep", "1000"]);
    start_with(&hx, "p2", &["--init"], &["sleep", "1000"]);
    let seen = hx
        .ok(&[
            "exec",
            "p1",
            "sh",
            "-c",
            "tr '\\0' ' ' < /proc/1/cmdline; echo; ps -o pid,comm",
        ])
        .stdout;
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("sleep 1000 "), "exec into p1: {seen}");
    let listed: Vec<Vec<&str>> = lines
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        listed.contains(&vec!["1", "sleep"]) && !listed.iter().any(|p| p[1] == "init"),
        "exec into p1 sees its namespace's processes only: {seen}"
    );
    let init = |name: &str| {
        let v: serde_json::Value = serde_json::from_str(&hx.ok(&["inspect", name]).stdout).unwrap();
        v[0]["HostConfig"]["Init"].clone()
    };
    assert_eq!(
        (init("p1"), init("p2")),
        (serde_json::Value::Null, serde_json::json!(true))
    );

    let t0 = Instant::now();
    hx.ok(&["stop", "-t", "2", "p1", "p2"]);
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(hx.ok(&["wait", "p1"]).stdout, "137\n");
    assert_eq!(hx.ok(&["wait", "p2"]).stdout, "143\n");
    hx.ok(&["rm", "p1", "p2"]);
}
