//! `hx run -i` and `-t` on the QEMU backend: hx's stdin reaches the workload byte for byte with
//! its end, and with `-it` on a terminal the workload gets a terminal of the same size whose
//! keys (^C included) reach it, like `docker run -it`.
mod common;
use common::{Hx, BUSYBOX};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs hx with `input` on its stdin; returns (exit code, stdout, stderr).
fn run_with_input(hx: &Hx, args: &[&str], input: Vec<u8>) -> (i32, Vec<u8>, String) {
    let mut child = hx
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let r = common::wait_with_timeout(child, Duration::from_secs(180));
    writer.join().unwrap();
    (r.code, r.stdout.into_bytes(), r.stderr)
}

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
fn tty_gives_the_workload_a_terminal_and_detached_stdin_is_refused() {
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

    let r = hx.run(&["run", "-d", "-i", BUSYBOX, "cat"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.starts_with("hx: -i needs an attached run"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1);
    assert_eq!(hx.ok(&["ps", "-a", "-q"]).stdout, "", "nothing was created");

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
    let ws = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let slave = || Stdio::from(pty.slave.as_fd().try_clone_to_owned().unwrap());
    let child = hx
        .cmd(&["run", "--rm", "-it", BUSYBOX, "sh"])
        .stdin(slave())
        .stdout(slave())
        .stderr(slave())
        .spawn()
        .unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once hx and the terminal are gone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut expect = |needle: &str| {
        let t0 = Instant::now();
        while !seen.contains(needle) {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "waited for {needle:?}, terminal shows {seen:?}"
            );
            if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push_str(&String::from_utf8_lossy(&b));
            }
        }
    };
    expect("/ # ");
    master
        .write_all(b"stty size; tty; echo $((6*7))\r")
        .unwrap();
    expect("42\r\n");
    // ^C is a byte for the guest's terminal: it interrupts the foreground sleep, not hx.
    master.write_all(b"sleep 1000\r").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    master.write_all(b"\x03").unwrap();
    master.write_all(b"echo after-ctrl-c $?\r").unwrap();
    expect("after-ctrl-c 130");
    master.write_all(b"exit 5\r").unwrap();
    let r = common::wait_with_timeout(child, Duration::from_secs(120));
    assert_eq!(r.code, 5);
    assert!(seen.contains("30 100\r\n/dev/pts/0\r\n42\r\n"), "{seen:?}");
}
