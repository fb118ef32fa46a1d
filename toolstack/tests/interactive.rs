//! `hx run -i` and `-t` on the QEMU backend: hx's stdin reaches the workload byte for byte with
//! its end, and with `-it` on a terminal the workload gets a terminal of the same size whose
//! keys (^C included) reach it, like `docker run -it`; its detach keys (`hx run -it`,
//! `hx start -ai`) leave the container running.
mod common;
use common::{run_with_input, term::Terminal, Hx, BUSYBOX};

#[test]
fn stdin_reaches_the_workload_with_its_end() {
    let Some(hx) = Hx::with_busybox() else { return };
    let (code, out, err) = run_with_input(
        &hx,
        &[
            "run",
            "--rm",
            "-i",
            BUSYBOX,
            "sh",
            "-c",
            "read x; echo \"got $x\"; cat; exit 4",
        ],
        b"abc\ndef\n".to_vec(),
    );
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (4, "got abc\ndef\n"),
        "{err}"
    );

    // Binary data, more than any buffer on the way: every byte, then EOF (sha256sum returns).
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let (code, out, err) = run_with_input(&hx, &["run", "--rm", "-i", BUSYBOX, "sha256sum"], data);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out).split_whitespace().next(),
        Some(want.as_str())
    );

    // Without -i the workload's stdin is empty, whatever hx's is.
    let (code, out, _) = run_with_input(
        &hx,
        &["run", "--rm", BUSYBOX, "wc", "-c"],
        b"ignored".to_vec(),
    );
    assert_eq!((code, String::from_utf8_lossy(&out).trim()), (0, "0"));
}

#[test]
fn tty_gives_the_workload_a_terminal_and_it_needs_one_for_input() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&[
        "run",
        "--rm",
        "-t",
        BUSYBOX,
        "sh",
        "-c",
        "tty; test -t 0 && test -t 1 && echo both",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "/dev/pts/0\r\nboth\r\n"),
        "{}",
        r.stderr
    );

    // -it from a pipe: docker's refusal and exit code, not a run waiting for keys.
    let (code, out, err) =
        run_with_input(&hx, &["run", "--rm", "-it", BUSYBOX, "cat"], b"x".to_vec());
    assert_eq!(
        (code, out.as_slice(), err.as_str()),
        (1, &b""[..], "hx: the input device is not a TTY\n")
    );
    assert_eq!(hx.ok(&["ps", "-a", "-q"]).stdout, "", "nothing was created");
}

#[test]
fn it_on_a_terminal_is_interactive_with_size_and_ctrl_c() {
    let Some(hx) = Hx::with_busybox() else { return };
    let mut t = Terminal::spawn(&hx, &["run", "--rm", "-it", BUSYBOX, "sh"], 30, 100);
    t.expect("/ # ");
    t.send(b"stty size; tty; echo $((6*7))\r");
    t.expect("42\r\n");
    // ^C is a byte for the guest's terminal: it interrupts the foreground sleep, not hx.
    t.send(b"sleep 1000\r");
    std::thread::sleep(std::time::Duration::from_secs(2));
    t.send(b"\x03");
    t.send(b"echo after-ctrl-c $?\r");
    t.expect("after-ctrl-c 130");
    t.send(b"exit 5\r");
    let r = t.wait();
    assert_eq!(r.code, 5);
    assert!(
        r.stdout.contains("30 100\r\n/dev/pts/0\r\n42\r\n"),
        "{:?}",
        r.stdout
    );
}

/// docker's detach keys on `hx run -it` and `hx start -ai`: Ctrl-P Ctrl-Q (or
/// `--detach-keys`) leave the container running, exit 0, "read escape sequence"; the shell is
/// the same one when attached again. A bad `--detach-keys` creates nothing.
#[test]
fn run_it_and_start_ai_detach_with_their_keys_and_the_container_runs_on() {
    for args in [
        &["run", "-it", "--detach-keys", "ctrl-1", BUSYBOX, "sh"][..],
        &["start", "-ai", "--detach-keys", "x,", "whatever"],
    ] {
        let hx = Hx::new();
        let r = hx.run(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("hx: invalid detach keys"),
            "{}",
            r.stderr
        );
    }
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&["run", "-it", "--detach-keys", "ctrl-1", BUSYBOX, "sh"]);
    assert_eq!(r.code, 125);
    assert_eq!(hx.ok(&["ps", "-a", "-q"]).stdout, "", "nothing was created");

    // hx run --rm -it.
    let mut t = Terminal::spawn(
        &hx,
        &["run", "--rm", "-it", "--name", "d1", BUSYBOX, "sh"],
        24,
        80,
    );
    t.expect("/ # ");
    t.send(b"MARK=one; echo $((6*7))\r");
    t.expect("42\r\n");
    // ^P alone is input, ^P ^Q detaches; the same shell when attached again, and its end
    // removes the --rm container.
    t.detach_and_reattach(&hx, "d1", "one", 4);
    let t0 = std::time::Instant::now();
    while !hx.ok(&["ps", "-a", "-q"]).stdout.is_empty() {
        assert!(t0.elapsed().as_secs() < 30, "the --rm container stayed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // hx start -ai with keys of its own.
    hx.ok(&["create", "-it", "--name", "d2", BUSYBOX, "sh"]);
    let mut t = Terminal::spawn(
        &hx,
        &["start", "-ai", "--detach-keys", "ctrl-a,x", "d2"],
        24,
        80,
    );
    t.expect("/ # ");
    t.send(b"echo two $((3+4))\r");
    t.expect("two 7\r\n");
    t.detach(b"\x01x", &hx, "d2");
    let v: serde_json::Value = serde_json::from_str(&hx.ok(&["inspect", "d2"]).stdout).unwrap();
    assert_eq!(v[0]["State"]["Running"], true, "{v}");
    hx.ok(&["rm", "-f", "d2"]);
}
