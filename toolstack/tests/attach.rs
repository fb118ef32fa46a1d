//! `hx attach` with input, like `docker attach`: `hx run -d -i`/`-dit` containers whose stdin
//! stays open while nobody is attached (the log relay holds it), input from any number of
//! attaches in turn, detach keys (Ctrl-P Ctrl-Q, `--detach-keys`) that leave the container
//! running, the end of an attach's input that only detaches (or closes the workload's stdin
//! of a stdin-once container), and the workload's exit code.
mod common;
use common::{run_with_input, term::Terminal, Hx, BUSYBOX};
use std::time::{Duration, Instant};

/// docker's input settings of container `name` (`hx inspect`'s Config): OpenStdin, StdinOnce.
fn stdin_config(hx: &Hx, name: &str) -> (bool, bool) {
    let v: serde_json::Value = serde_json::from_str(&hx.ok(&["inspect", name]).stdout).unwrap();
    let c = &v[0]["Config"];
    (
        c["OpenStdin"].as_bool().unwrap(),
        c["StdinOnce"].as_bool().unwrap(),
    )
}

/// Waits until `hx logs NAME` shows `needle`; the logs.
fn logs_show(hx: &Hx, name: &str, needle: &str) -> String {
    let t0 = Instant::now();
    loop {
        let logs = hx.ok(&["logs", name]).stdout;
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "waited for {needle:?} in the logs of {name}: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dit_attach_takes_input_detaches_with_ctrl_p_ctrl_q_and_reattaches() {
    let Some(hx) = Hx::with_busybox() else { return };
    // From no terminal at all: -dit needs none (docker's check is for attached runs).
    let r = hx.ok(&["run", "-dit", "--name", "sh1", BUSYBOX, "sh"]);
    assert_eq!(r.stdout.trim().len(), 64, "{}", r.stdout);
    hx.ok(&["exec", "sh1", "true"]);

    let mut t = Terminal::spawn(&hx, &["attach", "sh1"], 30, 100);
    std::thread::sleep(Duration::from_millis(500));
    // Input reaches the shell, output comes back, and the terminal has hx's size.
    t.send(b"MARK=first; stty size; echo $((6*7))\r");
    t.expect("30 100\r\n42\r\n");
    // ^P alone, then something else, is passed on (the shell sees ^P, then the line); ^P ^Q
    // detaches, the container runs on, its shell too; its exit code ends the next attach.
    t.detach_and_reattach(&hx, "sh1", "first", 3);
    assert_eq!(
        hx.run(&["attach", "sh1"]).stderr,
        "hx: container sh1 is not running\n"
    );
    hx.ok(&["rm", "sh1"]);
}

#[test]
fn di_keeps_stdin_open_and_the_end_of_an_attach_input_only_detaches() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "rd",
        BUSYBOX,
        "sh",
        "-c",
        "echo ready; while read l; do echo \"got $l\"; done; echo eof; sleep 1000",
    ]);
    hx.ok(&["exec", "rd", "true"]);
    logs_show(&hx, "rd", "ready\n");
    // docker's run -d -i: open, not stdin-once.
    assert_eq!(stdin_config(&hx, "rd"), (true, false));

    let (code, _, err) = run_with_input(&hx, &["attach", "rd"], b"one\ntwo\n".to_vec());
    assert_eq!(code, 0, "{err}");
    logs_show(&hx, "rd", "got two\n");
    // A second client, same process: its stdin was never closed.
    let (code, _, err) = run_with_input(&hx, &["attach", "rd"], b"three\n".to_vec());
    assert_eq!(code, 0, "{err}");
    let logs = logs_show(&hx, "rd", "got three\n");
    assert_eq!(logs, "ready\ngot one\ngot two\ngot three\n");
    assert_eq!(hx.ok(&["exec", "rd", "echo", "up"]).stdout, "up\n");
    // Without -t there are no detach keys: ^P ^Q are input like any other byte.
    let (code, _, err) = run_with_input(&hx, &["attach", "rd"], b"a\x10\x11b\n".to_vec());
    assert_eq!(code, 0, "{err}");
    logs_show(&hx, "rd", "got a\x10\x11b\n");
    // --no-stdin: output only; the input stays the workload's own.
    let mut child = hx
        .cmd(&["attach", "--no-stdin", "rd"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.try_wait().unwrap().is_none(), "--no-stdin ended");
    let (code, _, err) = run_with_input(&hx, &["attach", "rd"], b"four\n".to_vec());
    assert_eq!(code, 0, "{err}");
    logs_show(&hx, "rd", "got four\n");
    hx.ok(&["rm", "-f", "rd"]);
    let r = common::wait_with_timeout(child, Duration::from_secs(60));
    assert!(r.stdout.contains("got four\n"), "{}", r.stdout);
    assert!(!r.stdout.contains("eof"), "{}", r.stdout);
}

#[test]
fn detach_keys_can_be_chosen_and_bad_ones_are_refused() {
    for bad in ["foo", "ctrl-1", "ctrl-", "a,,b"] {
        let hx = Hx::new();
        let r = hx.run(&["attach", "--detach-keys", bad, "whatever"]);
        assert_eq!(r.code, 125, "{bad}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("hx: invalid detach keys"),
            "{bad}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["run", "-dit", "--name", "k", BUSYBOX, "sh"]);
    hx.ok(&["exec", "k", "true"]);
    let mut t = Terminal::spawn(&hx, &["attach", "--detach-keys", "ctrl-a,x", "k"], 24, 80);
    t.send(b"echo one $((2+3))\r");
    t.expect("one 5\r\n");
    // docker's default keys are plain input now.
    t.send(b"\x10\x11");
    std::thread::sleep(Duration::from_secs(1));
    assert!(t.running(), "^P ^Q detached: {:?}", t.seen);
    t.send(b"\x15echo two $((3+4))\r");
    t.expect("two 7\r\n");
    t.detach(b"\x01x", &hx, "k");
    // ctrl-\ alone.
    let mut t = Terminal::spawn(&hx, &["attach", "--detach-keys", "ctrl-\\", "k"], 24, 80);
    t.send(b"echo three $((4+5))\r");
    t.expect("three 9\r\n");
    t.detach(b"\x1c", &hx, "k");
    hx.ok(&["rm", "-f", "k"]);
}

/// docker's StdinOnce, kept in the record: a container made by `hx create -i` takes the end
/// of its first attached client's input as its own, whether that client is `hx start -ai` or
/// an `hx attach` after a plain `hx start`.
#[test]
fn a_create_i_container_is_stdin_once_for_start_ai_and_for_attach() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&[
        "create",
        "-i",
        "--name",
        "ci",
        BUSYBOX,
        "sh",
        "-c",
        "cat; echo done",
    ]);
    assert_eq!(stdin_config(&hx, "ci"), (true, true));
    // docker start -ai: the end of hx's input is the workload's.
    let (code, out, err) = run_with_input(&hx, &["start", "-a", "-i", "ci"], b"x\n".to_vec());
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (0, "x\ndone\n"),
        "{err}"
    );
    // Started without -i, then attached with piped input: its end closes the workload's
    // stdin too (cat ends), and the attach ends with the container, exit 0.
    hx.ok(&["start", "ci"]);
    hx.ok(&["exec", "ci", "true"]);
    let (code, out, err) = run_with_input(&hx, &["attach", "ci"], b"y\n".to_vec());
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (0, "y\ndone\n"),
        "{err}"
    );
    let logs = logs_show(&hx, "ci", "done\ny\ndone\n");
    assert_eq!(logs, "x\ndone\ny\ndone\n");
    let v: serde_json::Value = serde_json::from_str(&hx.ok(&["inspect", "ci"]).stdout).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited", "{v}");
    assert_eq!(v[0]["State"]["ExitCode"], 0, "{v}");
    // Without -i there is no input to speak of.
    hx.ok(&["create", "--name", "plain", BUSYBOX, "true"]);
    assert_eq!(stdin_config(&hx, "plain"), (false, false));
    hx.ok(&["rm", "-f", "ci", "plain"]);
}

/// `hx console` of a QEMU container started with `-i` is its workload's terminal, keys
/// included (as a Xen console is): the input reaches the shell, the output comes back, exit 0
/// when the container ends; `hx wait` then has the shell's code. Without `-i` it stays the
/// serial console (tests/exec.rs).
#[test]
fn console_of_an_i_container_on_qemu_takes_keys() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["run", "-d", "-i", "--name", "ci", BUSYBOX, "sh"]);
    hx.ok(&["exec", "ci", "true"]);
    let (code, out, err) =
        run_with_input(&hx, &["console", "ci"], b"echo $((6*7))\nexit 3\n".to_vec());
    assert_eq!(code, 0, "{err}");
    // The end of the input leaves the console (as `hx attach`'s does): what it printed before
    // is the start of the shell's output, all of which is in the logs.
    assert!(
        "42\n".starts_with(&*String::from_utf8_lossy(&out)),
        "{out:?} {err}"
    );
    assert_eq!(hx.ok(&["wait", "ci"]).stdout, "3\n");
    assert_eq!(hx.ok(&["logs", "ci"]).stdout, "42\n");
}
