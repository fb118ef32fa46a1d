//! containerd's own client, ctr, against a containerd the test starts (common/containerd.rs:
//! Debian's containerd 1.6) with the hx shim, `containerd-shim-hx-v2`, on its PATH: every
//! task an hx micro-VM. One containerd for every check; six guest boots (12–18 s).
mod common;
use common::containerd::{shim_dir, Containerd, IMAGE, RUNTIME};
use common::term::Terminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Says it runs, then waits (up to 30 s) until its terminal is 33×110 — the test resizes
/// ctr's terminal: ctr's ResizePty to the shim, the keeper's SIGWINCH, the guest's pty —
/// prints the size and exits with `code`.
fn resized_then_exit(code: i32) -> String {
    format!(
        "tty; echo running; for i in $(seq 150); do s=$(stty size); \
         [ \"$s\" = \"33 110\" ] && break; sleep 0.2; done; echo size $s; exit {code}"
    )
}

/// `cmd` on a 30×100 terminal, resized to 33×110 once the process runs: its exit code.
fn resize_check(cmd: std::process::Command, code: i32) {
    let mut t = Terminal::spawn_cmd(cmd, 30, 100);
    t.expect("running");
    t.resize(33, 110);
    t.expect("size 33 110");
    let r = t.wait();
    assert_eq!(r.code, code, "{:?}", r.stdout);
    assert!(r.stdout.contains("/dev/pts/"), "{:?}", r.stdout);
}

fn run_args<'a>(before: &[&'a str], id: &'a str, after: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--runtime", RUNTIME];
    v.extend_from_slice(before);
    v.push(IMAGE);
    v.push(id);
    v.extend_from_slice(after);
    v
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ctr task ls`: the task's PID and STATUS.
fn task(c: &Containerd, id: &str) -> Option<(u32, String)> {
    let out = c.ctr_ok(&["task", "ls"]).stdout;
    out.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| (f[1].parse().unwrap(), f[2].to_string()))
    })
}

/// Nothing of the shim's containers left: no VM or shim process, no mount beyond
/// containerd's own, no engine or OCI record.
fn assert_nothing_left(c: &Containerd, mounts_before: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.processes().is_empty() {
        let left: Vec<String> = c
            .processes()
            .iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            })
            .collect();
        assert!(Instant::now() < deadline, "processes left: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.mounts(), mounts_before, "mounts left");
    for sub in ["oci", "containers"] {
        let d = c.hx_root.join(sub);
        let left: Vec<_> = std::fs::read_dir(&d)
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{}: {left:?}", d.display());
    }
}

#[test]
fn ctr_runs_tasks_as_vms() {
    let Some((kernel, init)) = common::guest_assets() else {
        return;
    };
    let Some(c) = Containerd::start(&shim_dir(), &kernel, &init) else {
        return;
    };
    let t_all = Instant::now();
    c.import_busybox();
    let mounts = c.mounts();
    // Every event containerd forwards, to check the shim's below.
    let mut events = c
        .ctr_cmd(&["events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Output and exit codes.
    let t0 = Instant::now();
    let r = c.ctr(&run_args(&["--rm"], "echo", &["echo", "hi"]));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "hi\n"),
        "{}\n{}",
        r.stderr,
        c.log_tail()
    );
    eprintln!("ctr run --rm echo hi: {:?}", t0.elapsed());

    // The spec's env, cwd and mounts (user: see the exec below); stderr apart; a non-zero
    // exit code.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("file"), "from-host\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/m,options=rbind:ro",
        host.path().display()
    );
    let r = c.ctr(&run_args(
        &[
            "--rm", "--env", "FOO=bar", "--cwd", "/tmp", "--mount", &mount,
        ],
        "spec",
        &[
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; cat /m/file; echo oops >&2; exit 3",
        ],
    ));
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "bar\n/tmp\n0\nfrom-host\n", "oops\n"),
        "{}",
        c.log_tail()
    );

    // A command that is not there: 127, the guest's reason on stderr.
    let r = c.ctr(&run_args(&["--rm"], "nocmd", &["no-such-command"]));
    assert_eq!(r.code, 127, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no-such-command"), "{}", r.stderr);
    // A spec hx cannot run: Create fails naming the culprit, and leaves nothing.
    let r = c.ctr(&run_args(
        &["--rm", "--mount", "type=nfs,src=h:/x,dst=/n,options=ro"],
        "badmount",
        &["true"],
    ));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("mount of type \"nfs\" at /n is not supported"),
        "{}",
        r.stderr
    );
    assert_nothing_left(&c, &mounts);

    detached_task(&c);
    assert_nothing_left(&c, &mounts);
    terminated_in_the_foreground(&c);
    terminal(&c);
    assert_nothing_left(&c, &mounts);
    events.kill().unwrap();
    let seen = String::from_utf8_lossy(&events.wait_with_output().unwrap().stdout).to_string();
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(seen.contains(topic), "no {topic} event in {seen}");
    }
    // The detached task's exit, from the shim: its pid and 137.
    assert!(
        seen.lines().any(|l| l.contains("/tasks/exit")
            && l.contains("\"container_id\":\"bg\"")
            && l.contains("\"exit_status\":137")),
        "{seen}"
    );
    eprintln!("containerd checks: {:?}", t_all.elapsed());
}

/// `ctr run -d`, then exec (plain and with a terminal), ps, pause/resume, kill -9, delete.
fn detached_task(c: &Containerd) {
    let id = "bg";
    c.ctr_ok(&run_args(
        &["-d"],
        id,
        &["sh", "-c", "while :; do sleep 1; done"],
    ));
    wait_until("the task to run", Duration::from_secs(60), || {
        task(c, id).is_some_and(|(_, s)| s == "RUNNING")
    });
    let (pid, _) = task(c, id).unwrap();

    let r = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (5, "in-exec\n"),
        "{}",
        r.stderr
    );

    let script = resized_then_exit(6);
    resize_check(
        c.ctr_cmd(&[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "e2",
            id,
            "sh",
            "-c",
            &script,
        ]),
        6,
    );

    // The task's process (the keeper) is among its pids.
    let ps = c.ctr_ok(&["task", "ps", id]).stdout;
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{pid} not in {ps}"
    );

    // Metrics are the guest's: its memory in use within its total, its CPU time, its tasks.
    let metrics = c.ctr_ok(&["task", "metrics", id]).stdout;
    let value = |key: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(key)).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    let (used, limit) = (
        value("memory.usage_in_bytes"),
        value("memory.limit_in_bytes"),
    );
    assert!(
        used > 1 << 20 && used < limit && limit > 64 << 20 && limit <= 128 << 20,
        "{metrics}"
    );
    assert!(value("cpuacct.usage") > 0, "{metrics}");
    assert!(value("pids.current") >= 2, "{metrics}");

    c.ctr_ok(&["task", "pause", id]);
    assert_eq!(task(c, id).unwrap().1, "PAUSED");
    c.ctr_ok(&["task", "resume", id]);
    assert_eq!(task(c, id).unwrap().1, "RUNNING");
    let r = c.ctr(&["task", "exec", "--exec-id", "e3", id, "echo", "resumed"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "resumed\n"),
        "{}",
        r.stderr
    );

    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    wait_until("the task to stop", Duration::from_secs(30), || {
        task(c, id).is_some_and(|(_, s)| s == "STOPPED")
    });
    let r = c.ctr(&["task", "delete", id]);
    assert!(
        r.stderr.contains("exit code 137"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    c.ctr_ok(&["container", "rm", id]);
}

/// A foreground `ctr run` ends with 143 when `ctr task kill` sends TERM (to a workload with a
/// handler: a PID 1 without one ignores it, as under runc).
fn terminated_in_the_foreground(c: &Containerd) {
    let id = "fg";
    let mut child = c
        .ctr_cmd(&run_args(
            &["--rm"],
            id,
            &[
                "sh",
                "-c",
                "trap 'exit 143' TERM; echo up; while :; do sleep 1; done",
            ],
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its trap is set once it says so (a TERM before that would be ignored).
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut up = String::new();
    std::io::BufRead::read_line(&mut out, &mut up).unwrap();
    assert_eq!(up, "up\n", "{}", c.log_tail());
    c.ctr_ok(&["task", "kill", id]);
    let r = common::wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(r.code, 143, "{}{}", r.stdout, r.stderr);
}

/// `ctr run -t`: a pty in the guest, resized with ctr's terminal; the exit code.
fn terminal(c: &Containerd) {
    let script = resized_then_exit(4);
    resize_check(
        c.ctr_cmd(&run_args(&["--rm", "-t"], "tty", &["sh", "-c", &script])),
        4,
    );
}
