//! `hx run` end to end on the QEMU backend with the official busybox image: real kernel, real
//! pv-init, real QEMU (TCG here).
mod common;
use common::{qemu_processes_for, Hx, BUSYBOX};
use std::time::{Duration, Instant};

#[test]
fn echo_prints_and_exit_codes_pass_through() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&["run", "--rm", BUSYBOX, "echo", "hello"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "hello\n"),
        "stderr: {}",
        r.stderr
    );

    let r = hx.run(&[
        "run",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");

    // (--init: a PID 1 cannot kill itself, SIGKILL from its own namespace is ignored.)
    let r = hx.run(&["run", "--rm", "--init", BUSYBOX, "sh", "-c", "kill -9 $$"]);
    assert_eq!(r.code, 137, "a SIGKILLed workload is 128+9: {}", r.stderr);
}

#[test]
fn a_workload_past_its_memory_is_oom_killed_and_inspect_says_so() {
    let Some(hx) = Hx::with_busybox() else { return };
    // busybox's tail keeps all it reads: the guest kernel's OOM killer ends it.
    let r = hx.run(&[
        "run",
        "--name",
        "hog",
        "-m",
        "64m",
        BUSYBOX,
        "sh",
        "-c",
        "exec tail < /dev/zero",
    ]);
    assert_eq!(r.code, 137, "{}", r.stderr);
    let state = "{{.State.ExitCode}} {{.State.OOMKilled}}";
    let st = hx.run(&["inspect", "-f", state, "hog"]);
    assert_eq!(st.stdout.trim(), "137 true", "{}", st.stderr);
    // A SIGKILL from elsewhere is not an OOM kill.
    let r = hx.run(&[
        "run",
        "--name",
        "killed",
        "--init",
        BUSYBOX,
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert_eq!(r.code, 137, "{}", r.stderr);
    let st = hx.run(&["inspect", "-f", state, "killed"]);
    assert_eq!(st.stdout.trim(), "137 false", "{}", st.stderr);
    hx.run(&["rm", "hog", "killed"]);
}

#[test]
fn env_cwd_user_and_hostname() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "-w",
        "/work/dir",
        "-u",
        "nobody",
        "--hostname",
        "box1",
        BUSYBOX,
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; id -u; id -g; hostname; echo $HOME; echo $PATH",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[..5],
        ["hi there", "/work/dir", "65534", "65534", "box1"]
    );
    assert!(
        lines[6].contains("/bin"),
        "PATH from the image: {}",
        lines[6]
    );
}

#[test]
fn init_errors_are_126_and_127_like_docker() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&["run", "--rm", BUSYBOX, "no-such-command"]);
    assert_eq!(r.code, 127);
    assert!(
        r.stderr.contains("executable file not found in $PATH"),
        "{}",
        r.stderr
    );
    let r = hx.run(&["run", "--rm", BUSYBOX, "/etc/passwd"]);
    assert_eq!(r.code, 126);
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    let r = hx.run(&["run", "--rm", "-u", "ghost", BUSYBOX, "true"]);
    assert_eq!(r.code, 126);
    assert!(
        r.stderr.contains("unable to find user ghost"),
        "{}",
        r.stderr
    );
}

#[test]
fn hx_errors_are_125_and_leave_nothing() {
    let hx = Hx::new();
    let r = hx.run(&["run", "--rm", "no-such-image-here:1"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().count(),
        2,
        "one 'Unable to find' line and one error line: {}",
        r.stderr
    );
    // With the image there, so the refusal is the flag's and not the missing image's.
    hx.load_busybox();
    let r = hx.run(&["run", "--memory", "lots", BUSYBOX, "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("hx: --memory \"lots\": not a size") && r.stderr.lines().count() == 1,
        "one line naming the flag and its value: {}",
        r.stderr
    );
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}

#[test]
fn detached_logs_follow_and_stop() {
    let Some(hx) = Hx::with_busybox() else { return };
    let id = hx.ok(&["run", "-d", "--name", "ticker", BUSYBOX, "sh", "-c", "trap 'echo got TERM; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]).stdout;
    assert_eq!(id.trim().len(), 64);
    let ps = hx.ok(&["ps", "--json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&ps).unwrap();
    assert_eq!(v[0]["name"], "ticker");
    assert_eq!(v[0]["status"], "running");

    // logs -f follows until the container stops.
    let follower = {
        let mut c = hx.cmd(&["logs", "-f", "ticker"]);
        c.stdout(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hx.ok(&["logs", "ticker"]).stdout.contains("tick 2") {
        assert!(Instant::now() < deadline, "no ticks");
        std::thread::sleep(Duration::from_millis(200));
    }
    hx.ok(&["stop", "-t", "20", "ticker"]);
    let followed = common::wait_with_timeout(follower, Duration::from_secs(60)).stdout;
    assert!(
        followed.contains("tick 2") && followed.trim_end().ends_with("got TERM"),
        "logs -f: {followed}"
    );

    let ps = hx.ok(&["ps", "-a", "--json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&ps).unwrap();
    assert_eq!(v[0]["status"], "exited");
    assert_eq!(v[0]["exit_code"], 0);
    assert_eq!(hx.ok(&["wait", "ticker"]).stdout.trim(), "0");
    assert_eq!(
        hx.run(&["logs", "--tail", "1", "ticker"]).stdout,
        "got TERM\n"
    );
    hx.ok(&["rm", "ticker"]);
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
    assert_eq!(hx.run(&["logs", "ticker"]).code, 1);
}

#[test]
fn kill_sends_signals() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["run", "-d", "--name", "sleeper", BUSYBOX, "sleep", "1000"]);
    hx.ok(&["kill", "sleeper"]);
    assert_eq!(hx.ok(&["wait", "sleeper"]).stdout.trim(), "137");
    let r = hx.run(&["rm", "nonexistent"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no such container: nonexistent"));
    hx.ok(&["rm", "sleeper"]);
}

#[test]
fn rm_flag_removes_everything() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["run", "--rm", BUSYBOX, "true"]);
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
    let left: Vec<_> = std::fs::read_dir(hx.root().join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "container files left behind");
    assert_eq!(qemu_processes_for(hx.root()), 0);
}

#[test]
fn five_containers_at_once() {
    let Some(hx) = Hx::with_busybox() else { return };
    let children: Vec<_> = (0..5)
        .map(|i| {
            let mut c = hx.cmd(&[
                "run",
                "--rm",
                BUSYBOX,
                "sh",
                "-c",
                &format!("echo container-{i}"),
            ]);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = common::wait_with_timeout(c, Duration::from_secs(120));
        assert_eq!(
            (out.code, out.stdout),
            (0, format!("container-{i}\n")),
            "{}",
            out.stderr
        );
    }
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}

#[test]
fn sigkill_of_hx_then_ps_and_rm_clean_up() {
    let Some(hx) = Hx::with_busybox() else { return };
    let mut child = hx
        .cmd(&["run", "--name", "orphan", BUSYBOX, "sleep", "1000"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hx.ok(&["ps"]).stdout.contains("orphan") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        hx.ok(&["ps"]).stdout.contains("Up"),
        "the VM outlives its client, like a docker container"
    );
    assert_eq!(
        hx.run(&["rm", "orphan"]).code,
        1,
        "rm without -f refuses a running container"
    );
    hx.ok(&["rm", "-f", "orphan"]);
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
    assert_eq!(qemu_processes_for(hx.root()), 0, "no orphan QEMU");
    let left: Vec<_> = std::fs::read_dir(hx.root().join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty());
}

#[test]
fn guest_kernel_panic_is_reported() {
    let Some(hx) = Hx::with_busybox() else { return };
    // (--privileged: /proc/sysrq-trigger is read-only in a container's /proc, as with docker.)
    let r = hx.run(&[
        "run",
        "--rm",
        "--privileged",
        BUSYBOX,
        "sh",
        "-c",
        "echo c > /proc/sysrq-trigger",
    ]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("guest kernel panicked"), "{}", r.stderr);
}

#[test]
fn the_image_is_never_modified() {
    let Some(hx) = Hx::with_busybox() else { return };
    let rootfs = std::fs::read_dir(hx.root().join("rootfs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let before = std::fs::read(&rootfs).unwrap();
    let r = hx.run(&[
        "run",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "rm /bin/ls && echo new > /etc/added && cat /etc/added",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "new\n"), "{}", r.stderr);
    let r = hx.run(&[
        "run",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "test -e /bin/ls && test ! -e /etc/added && echo pristine",
    ]);
    assert_eq!(r.stdout, "pristine\n");
    assert!(
        std::fs::read(&rootfs).unwrap() == before,
        "rootfs image changed"
    );
}

#[test]
fn writable_layer_on_a_disk() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&[
        "run",
        "--rm",
        "--disk-size",
        "64m",
        BUSYBOX,
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1M count=20 2>/dev/null && ls -l /big | awk '{print $5}'",
    ]);
    assert_eq!((r.code, r.stdout.trim()), (0, "20971520"), "{}", r.stderr);
}

#[test]
fn signals_to_hx_run_reach_the_workload() {
    let Some(hx) = Hx::with_busybox() else { return };
    // The workload is PID 1 of its namespace: a signal it has no handler for is ignored, so
    // it says "up" once its traps are set.
    let trapping = "trap 'exit 143' TERM; trap 'exit 130' INT; echo up; while :; do sleep 1; done";
    for (name, sig, code) in [("term", libc::SIGTERM, 143), ("int", libc::SIGINT, 130)] {
        let mut child = hx
            .cmd(&["run", "--rm", "--name", name, BUSYBOX, "sh", "-c", trapping])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut up = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut up,
        )
        .unwrap();
        assert_eq!(up, "up\n", "{name}: the workload never started");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = common::wait_with_timeout(child, Duration::from_secs(60));
        assert_eq!(
            out.code, code,
            "{name}: the workload dies of the forwarded signal: {}",
            out.stderr
        );
    }
    assert!(hx.ok(&["ps", "-a", "-q"]).stdout.is_empty());
}

#[test]
fn stop_sends_the_images_stopsignal_or_the_flags() {
    let Some(hx) = Hx::with_busybox() else { return };
    // An image whose STOPSIGNAL is USR1, made from the busybox one (hx import --change).
    let tree = tempfile::tempdir().unwrap();
    let trap = "trap 'echo got USR1; exit 3' USR1; trap 'echo got USR2; exit 4' USR2; trap 'echo got TERM; exit 5' TERM; echo up; while :; do sleep 0.1; done";
    let export = tree.path().join("rootfs.tar");
    let r = hx.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/out", tree.path().display()),
        BUSYBOX,
        "sh",
        "-c",
        "cd / && tar -cf /out/rootfs.tar $(ls -d bin etc lib lib64 usr 2>/dev/null)",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    hx.ok(&[
        "import",
        export.to_str().unwrap(),
        "stopper",
        "--change",
        "STOPSIGNAL SIGUSR1",
        "--change",
        "CMD [\"sh\"]",
    ]);
    let bad = hx.run(&[
        "import",
        export.to_str().unwrap(),
        "bad",
        "--change",
        "STOPSIGNAL SIGNOPE",
    ]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("STOPSIGNAL"), "{}", bad.stderr);

    let wait_up = |name: &str| {
        for _ in 0..300 {
            if hx.ok(&["logs", name]).stdout.contains("up") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{name} never started");
    };
    /// (name, run flags, stop flags, exit code, line in the logs)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a str, &'a str);
    let cases: [Case; 4] = [
        ("img", &[], &[], "3", "got USR1"),
        ("flag", &["--stop-signal", "USR2"], &[], "4", "got USR2"),
        ("cli", &[], &["-s", "TERM"], "5", "got TERM"),
        ("plain", &[], &[], "5", "got TERM"),
    ];
    for (name, run_flags, stop_flags, code, line) in cases {
        let image = if name == "plain" { BUSYBOX } else { "stopper" };
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(run_flags);
        args.extend_from_slice(&[image, "sh", "-c", trap]);
        hx.ok(&args);
        wait_up(name);
        let mut stop = vec!["stop", "-t", "30"];
        stop.extend_from_slice(stop_flags);
        stop.push(name);
        hx.ok(&stop);
        assert_eq!(hx.ok(&["wait", name]).stdout.trim(), code, "{name}");
        assert!(
            hx.ok(&["logs", name]).stdout.contains(line),
            "{name}: {}",
            hx.ok(&["logs", name]).stdout
        );
        hx.ok(&["rm", name]);
    }
    let r = hx.run(&["run", "--stop-signal", "NOPE", BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("--stop-signal") && r.stderr.contains("NOPE"),
        "{}",
        r.stderr
    );
}
