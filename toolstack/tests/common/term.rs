//! hx on a terminal of its own, as in a shell: a pty of a given size that is hx's stdin,
//! stdout, stderr and controlling terminal (a resize reaches hx as SIGWINCH), and what the
//! terminal shows.
use super::{Hx, Run};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Terminal {
    master: std::fs::File,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Everything the terminal showed so far.
    pub seen: String,
    child: Child,
}

impl Terminal {
    /// `hx ARGS` on a new terminal of `rows` × `cols`.
    pub fn spawn(hx: &Hx, args: &[&str], rows: u16, cols: u16) -> Terminal {
        Terminal::spawn_cmd(hx.cmd(args), rows, cols)
    }

    /// `cmd` (hx, or a shell pipeline around it) on a new terminal of `rows` × `cols`.
    pub fn spawn_cmd(mut cmd: std::process::Command, rows: u16, cols: u16) -> Terminal {
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let slave = || Stdio::from(pty.slave.as_fd().try_clone_to_owned().unwrap());
        cmd.stdin(slave()).stdout(slave()).stderr(slave());
        // SAFETY: setsid and TIOCSCTTY on fd 0 (the slave) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
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
        Terminal {
            master,
            rx,
            seen: String::new(),
            child,
        }
    }

    /// Waits (up to 2 minutes) until the terminal has shown `needle`.
    pub fn expect(&mut self, needle: &str) {
        let t0 = Instant::now();
        while !self.seen.contains(needle) {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "waited for {needle:?}, terminal shows {:?}",
                self.seen
            );
            if let Ok(b) = self.rx.recv_timeout(Duration::from_millis(100)) {
                self.seen.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// Resizes the terminal.
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }

    /// Resizes the terminal and checks that the shell on it sees the new size (`stty size`),
    /// a second later: the resize has to travel from hx's SIGWINCH to the guest's pty.
    pub fn resize_seen(&mut self, rows: u16, cols: u16) {
        self.resize(rows, cols);
        std::thread::sleep(Duration::from_secs(1));
        self.send(b"stty size\r");
        self.expect(&format!("{rows} {cols}\r\n"));
    }

    /// Types the detach `keys`: hx leaves with exit 0 and docker's "read escape sequence",
    /// and container `name` runs on.
    pub fn detach(mut self, keys: &[u8], hx: &Hx, name: &str) {
        self.send(keys);
        let r = self.wait();
        assert_eq!(r.code, 0, "{:?}", r.stdout);
        assert!(r.stdout.contains("read escape sequence"), "{:?}", r.stdout);
        assert_eq!(hx.ok(&["exec", name, "echo", "up"]).stdout, "up\n");
    }

    /// On a shell that set `MARK=<mark>`: a lone ^P is passed on (hx stays), ^P ^Q detaches
    /// (`detach`); attached again it is the same shell (its MARK), whose `exit <code>` ends
    /// that attach with the code.
    pub fn detach_and_reattach(mut self, hx: &Hx, name: &str, mark: &str, code: i32) {
        self.send(b"\x10");
        std::thread::sleep(Duration::from_millis(500));
        assert!(self.running(), "a lone ^P detached: {:?}", self.seen);
        self.send(b"\x15echo still $((1+1))\r");
        self.expect("still 2\r\n");
        self.detach(b"\x10\x11", hx, name);
        let mut t = Terminal::spawn(hx, &["attach", name], 24, 80);
        t.send(b"echo mark=$MARK\r");
        t.expect(&format!("mark={mark}\r\n"));
        t.send(format!("exit {code}\r").as_bytes());
        let r = t.wait();
        assert_eq!(r.code, code, "{:?}", r.stdout);
        assert!(!r.stdout.contains("read escape sequence"), "{:?}", r.stdout);
    }

    /// Whether hx is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (up to 2 minutes) for hx to exit; its exit code, and everything the terminal
    /// showed in `stdout`.
    pub fn wait(mut self) -> Run {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                panic!("hx did not exit; terminal shows {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // What hx wrote last, until the terminal is gone (EIO) or quiet.
        while let Ok(b) = self.rx.recv_timeout(Duration::from_millis(300)) {
            self.seen.push_str(&String::from_utf8_lossy(&b));
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.seen,
            stderr: String::new(),
        }
    }
}
