//! Checkpoint and restore on QEMU (docs/checkpoint.md): a running container's processes,
//! memory, writable layer, address and published port survive `hx checkpoint create` and
//! `hx start --checkpoint`; errors start nothing; a killed restore leaves nothing behind.
//! One container (one warm boot) serves every step. Real kernel, pv-init and QEMU.
mod common;
use common::netns::{NetLab, HOST_IP};
use common::{run_with_timeout, Hx, Run, BUSYBOX};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A web page on port 80, the last line of its input (`-i`) in `/root/got`, and a counter:
/// `/tmp/n` holds the last value, `/count` every value in order (both in the writable layer),
/// stdout each value.
const WORKLOAD: &str =
    "trap 'exit 143' TERM; mkdir -p /w; echo checkpointed > /w/index.html; httpd -p 80 -h /w; \
    exec 3<&0; (while read l <&3; do echo $l > /root/got; done) & \
    i=0; while :; do i=$((i+1)); echo $i > /tmp/n; echo $i >> /count; echo $i; sleep 0.2; done";
const PORT: u16 = 8097;

struct Lab {
    hx: Hx,
    net: NetLab,
}

impl Lab {
    fn cmd(&self, args: &[&str]) -> Command {
        self.net.hx_cmd(&self.hx, args)
    }

    fn run(&self, args: &[&str]) -> Run {
        run_with_timeout(self.cmd(args), Duration::from_secs(180))
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "hx {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// The counter's value, read in the container (retried: the shell truncates the file
    /// before it writes the next value).
    fn counter(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.run(&["exec", "c", "cat", "/tmp/n"]);
            if let Ok(n) = r.stdout.trim().parse() {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "no counter: {}{}",
                r.stdout,
                r.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the counter is past `n`; its new value.
    fn counter_past(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.counter();
            if now > n {
                return now;
            }
            assert!(Instant::now() < deadline, "the counter stays at {now}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn status(&self) -> String {
        self.ok(&["ps", "-a", "--format", "{{.Status}}"])
            .stdout
            .trim()
            .to_string()
    }

    fn page(&self) -> String {
        self.net.wait_for_client(
            &format!("http://{HOST_IP}:{PORT}/"),
            Duration::from_secs(90),
        )
    }

    fn nothing_running(&self) {
        assert_eq!(common::qemu_processes_for(self.hx.root()), 0, "QEMU left");
        assert_eq!(self.net.container_links(), Vec::<String>::new(), "tap left");
        assert_eq!(self.net.publish_rules(), Vec::<String>::new(), "rules left");
    }
}

/// `/count` after a restore: every value once, in order, from 1 (the writable layer and the
/// memory are from the same instant: no value lost, none repeated, no restart at 1).
fn assert_counted_in_order(lab: &Lab, at_least: u64) {
    let count = lab.ok(&["exec", "c", "cat", "/count"]).stdout;
    let values: Vec<u64> = count.lines().map(|l| l.parse().unwrap()).collect();
    let expected: Vec<u64> = (1..=values.len() as u64).collect();
    assert_eq!(values, expected, "{count}");
    assert!(values.len() as u64 >= at_least, "{count}");
}

#[test]
fn a_checkpointed_container_resumes_its_processes_files_and_port() {
    let Some(hx) = Hx::with_busybox() else { return };
    let Some(net) = NetLab::new(&hx) else { return };
    let lab = Lab { hx, net };
    let publish = format!("{PORT}:80");
    lab.ok(&[
        "run", "-d", "-i", "--name", "c", "-p", &publish, BUSYBOX, "sh", "-c", WORKLOAD,
    ]);
    assert_eq!(lab.page(), "checkpointed\n");
    lab.ok(&["exec", "c", "sh", "-c", "echo kept > /root/file"]);
    let before = lab.counter_past(3);

    // Saved and stopped, like docker: Exited (137).
    let r = lab.ok(&["checkpoint", "create", "c", "cp1"]);
    assert_eq!(r.stdout, "cp1\n");
    assert!(lab.status().starts_with("Exited (137)"), "{}", lab.status());
    assert_eq!(common::qemu_processes_for(lab.hx.root()), 0);
    assert_eq!(
        lab.ok(&["checkpoint", "ls", "c"]).stdout,
        "CHECKPOINT NAME\ncp1\n"
    );

    // An unknown checkpoint: one line, its own exit code, nothing started.
    let r = lab.run(&["start", "--checkpoint", "nope", "c"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert_eq!(r.stderr, "hx: container c has no checkpoint nope\n");
    assert!(lab.status().starts_with("Exited (137)"));
    lab.nothing_running();

    // Resumed: the counter goes on from where it was, the file, exec and the port are there.
    lab.ok(&["start", "--checkpoint", "cp1", "c"]);
    assert!(lab.status().starts_with("Up"), "{}", lab.status());
    let resumed = lab.counter();
    let follower = lab
        .cmd(&["logs", "-f", "c"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(resumed >= before, "restarted from {resumed}, was {before}");
    lab.counter_past(resumed);
    assert_counted_in_order(&lab, before);
    assert_eq!(lab.ok(&["exec", "c", "cat", "/root/file"]).stdout, "kept\n");
    assert_eq!(lab.page(), "checkpointed\n");
    // The workload's input through the new relay (pv-init reports `started` again on resume).
    let mut attach = lab
        .cmd(&["attach", "c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(attach.stdin.as_mut().unwrap(), b"resumed-input\n").unwrap();
    drop(attach.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.run(&["exec", "c", "cat", "/root/got"]).stdout != "resumed-input\n" {
        assert!(
            Instant::now() < deadline,
            "the input never reached the workload"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = attach.kill();
    let _ = attach.wait();

    // --leave-running: saved, still running.
    lab.ok(&["checkpoint", "create", "--leave-running", "c", "cp2"]);
    assert!(lab.status().starts_with("Up"), "{}", lab.status());
    let running = lab.counter();
    lab.counter_past(running);
    let r = lab.run(&["checkpoint", "create", "c", "cp2"]);
    assert_eq!(r.code, 7, "an existing name: {}", r.stderr);
    lab.ok(&["checkpoint", "rm", "c", "cp1"]);
    assert_eq!(
        lab.ok(&["checkpoint", "ls", "c"]).stdout,
        "CHECKPOINT NAME\ncp2\n"
    );
    assert_eq!(lab.run(&["checkpoint", "rm", "c", "cp1"]).code, 6);

    // A create killed midway leaves no checkpoint, half or whole; the VM at most paused.
    let checkpoints = std::fs::read_dir(lab.hx.root().join("containers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("checkpoints");
    let mut child = lab
        .cmd(&["checkpoint", "create", "--leave-running", "c", "cp3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unfinished = |with: &str| {
        std::fs::read_dir(&checkpoints).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".new-") && e.path().join(with).exists()
        })
    };
    // Its layer copy exists: the VM is paused, its RAM being saved.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !unfinished("upper.img") && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no unfinished checkpoint seen");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lab.status().contains("Paused"), "{}", lab.status());
    assert_eq!(
        lab.ok(&["checkpoint", "ls", "c"]).stdout,
        "CHECKPOINT NAME\ncp2\n"
    );
    assert!(!unfinished(""), "ls sweeps what the killed create left");
    // ... and resumes the VM that create had paused.
    assert!(!lab.status().contains("Paused"), "{}", lab.status());
    lab.counter_past(lab.counter());

    // hx stop of a restored container: the workload's own exit (sh's TERM trap: it is PID 1).
    lab.ok(&["stop", "c"]);
    assert!(lab.status().starts_with("Exited (143)"), "{}", lab.status());
    assert_eq!(lab.ok(&["wait", "c"]).stdout, "143\n");
    lab.nothing_running();
    // `hx logs -f` followed the restored VM's output to its end: the counter once from 1
    // (the first run's lines), then on past the restore, never from 1 again.
    let logs = common::wait_with_timeout(follower, Duration::from_secs(30));
    let values: Vec<u64> = logs.stdout.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(
        values.iter().filter(|v| **v == 1).count(),
        1,
        "{}",
        logs.stdout
    );
    assert!(values.iter().any(|v| *v > resumed), "{}", logs.stdout);

    // A restore killed once its QEMU runs leaves nothing; the next one works.
    let mut child = lab
        .cmd(&["start", "--checkpoint", "cp2", "c"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::qemu_processes_for(lab.hx.root()) == 0 && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no QEMU for the restore");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lab.status().starts_with("Exited"), "{}", lab.status());
    lab.nothing_running();
    lab.ok(&["start", "--checkpoint", "cp2", "c"]);
    assert!(lab.counter() >= running);
    assert_eq!(lab.page(), "checkpointed\n");

    lab.ok(&["rm", "-f", "c"]);
    lab.nothing_running();
}
