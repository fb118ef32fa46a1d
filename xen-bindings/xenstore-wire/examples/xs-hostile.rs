//! A hostile guest workload for the Xen lab (tests/xen-lab/checks/hostile.sh): run inside an hx
//! container, it attacks what dom0 reads from the guest through /dev/xen/xenbus and the console.
//! Built static (`+crt-static`) so it runs in any image.
//!
//! `xs-hostile status|status-escape`: garbage in the status nodes (escape sequences, invalid UTF-8, 4 KiB
//! values, out-of-range and JSON-escaped control characters), a thousand rapid writes, odd
//! node names, writes to nodes the guest must not own, raw frames with unknown types and bad
//! lengths, watch and transaction floods, then nodes until xenstored's quota says no; exits 7.
//! The last status node is left holding `exited 99999` (status) or an init_error whose message
//! is escape sequences and a forged line (status-escape).
//! `xs-hostile console SECS`: escape sequences, invalid UTF-8 and long lines on stdout for SECS
//! seconds; exits 7.
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use xenstore_wire::msg::{nul_strings, Msg, MsgType};
use xenstore_wire::{Client, XENBUS_DEVICE};

const EXIT: i32 = 7;
/// What the last status node is left holding: the final status hx reads.
const OUT_OF_RANGE: &[u8] = br#"{"event":"exited","code":99999}"#;
const ESCAPES: &[u8] = br#"{"event":"init_error","code":126,"message":"\u001b[2J\u001b]0;pwned\u0007\u009b31m evil\nhx: forged line"}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("status") => status(OUT_OF_RANGE),
        Some("status-escape") => status(ESCAPES),
        Some("console") => console(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20)),
        _ => {
            eprintln!("usage: xs-hostile status | status-escape | console SECS");
            std::process::exit(2);
        }
    }
    std::process::exit(EXIT);
}

/// Counts outcomes per attack: (accepted, refused, first refusal).
struct Tally {
    name: &'static str,
    ok: u64,
    refused: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new(name: &'static str) -> Self {
        Tally {
            name,
            ok: 0,
            refused: 0,
            first_error: None,
        }
    }

    fn note<T, E: std::fmt::Display>(&mut self, r: Result<T, E>) -> bool {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => {
                self.refused += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        self.refused == 0
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        // Printed escaped: this line ends up in the lab's output.
        println!(
            "hostile {}: {} accepted, {} refused{}",
            self.name,
            self.ok,
            self.refused,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {})", e.escape_debug()))
                .unwrap_or_default()
        );
    }
}

fn status(last: &[u8]) {
    let mut c = Client::open_device(XENBUS_DEVICE).unwrap_or_else(|e| {
        println!("hostile: {e}");
        std::process::exit(1)
    });
    let dir = "data/hx/status";
    let garbage: Vec<(u32, Vec<u8>)> = vec![
        (2, b"\x1b[2J\x1b]0;pwned\x07\x1b[31mRED".to_vec()),
        (3, b"\xff\xfe\xfd\xc0\x80".to_vec()),
        // As long as a request may be: path, NUL and value fill the 4096-byte payload.
        (4, vec![b'A'; 4096 - "data/hx/status/4".len() - 1]),
        (5, br#"{"event":"init_error","code":126,"message":"\u001b[2J\u001b]0;pwned\u0007 evil\nhx: forged line"}"#.to_vec()),
        (6, br#"{"event":"signaled","signal":2147483647}"#.to_vec()),
        (7, br#"{"event":"exited","code":-1}"#.to_vec()),
        (8, br#"{"event":"exited","code":3,"event":"exited","code":4}"#.to_vec()),
        (9, br#"{"event":"exited","code":256,"extra":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}"#.to_vec()),
        (10, format!("{}{}", "[".repeat(2000), "]".repeat(2000)).into_bytes()),
        (11, b"{\"event\":\"exited\",\"code\":0}\x00trailing".to_vec()),
        (12, br#"{"event":"started","pid":-5,"uptime_ms":18446744073709551615}"#.to_vec()),
        (13, br#"{"event":"exited","code":1e400}"#.to_vec()),
        (14, br#"{"event":"exited","code":99999}"#.to_vec()),
        (15, last.to_vec()),
    ];
    {
        let mut t = Tally::new("garbage status nodes");
        for (i, v) in &garbage {
            t.note(c.write(&format!("{dir}/{i}"), v));
        }
    }
    {
        // Node names hx must not take for indexes, and long ones.
        let mut t = Tally::new("odd node names");
        for name in [
            "99999999999999999999999",
            "007",
            "1x",
            "-1",
            "16",
            "4294967296",
            "_",
            "@x",
        ] {
            t.note(c.write(
                &format!("{dir}/{name}"),
                b"{\"event\":\"exited\",\"code\":5}",
            ));
        }
        t.note(c.write(&format!("{dir}/{}", "n".repeat(1900)), b"x"));
    }
    {
        let mut t = Tally::new("rapid writes");
        let start = Instant::now();
        for n in 0..1000u32 {
            let v = if n % 2 == 0 {
                format!("{{\"event\":\"started\",\"pid\":{n},\"uptime_ms\":1}}").into_bytes()
            } else {
                vec![0x1b; (n as usize * 7) % 4000]
            };
            t.note(c.write(&format!("{dir}/{}", n % 16), &v));
        }
        println!("hostile rapid writes: {:?} for 1000", start.elapsed());
        // What stays in the last node: the final status hx will read.
        t.note(c.write(&format!("{dir}/15"), last));
    }
    {
        // Nodes dom0 owns: xenstored must refuse them all.
        let mut t = Tally::new("writes outside data/ (must all be refused)");
        for p in [
            "hx/control",
            "hx/id",
            "name",
            "/local/domain/0/hx",
            "/local/domain/0/data/x",
            "/vm/x",
            "/libxl/x",
            "/tool/x",
        ] {
            t.note(c.write(p, b"signal 9\n"));
        }
    }
    raw_frames();
    {
        let mut t = Tally::new("watches");
        for n in 0..200 {
            if !t.note(c.watch(&format!("data/hx/w{n}"), &format!("{}{n}", "t".repeat(200)))) {
                break;
            }
        }
        for n in 0..200 {
            let _ = c.write(&format!("data/hx/w{}", n % 50), b"fire");
        }
    }
    transactions();
    {
        // New nodes until xenstored's per-domain quota refuses.
        let mut t = Tally::new("nodes until the quota");
        for n in 0..5000 {
            if !t.note(c.write(&format!("data/junk/{n}"), &vec![b'j'; 1024])) {
                break;
            }
        }
    }
    std::io::stdout().flush().ok();
}

/// Frames straight to the xenbus device: unknown types, missing NULs, non-UTF-8 paths, lengths
/// beyond the limit (the guest kernel refuses those itself), a header with no payload.
fn raw_frames() {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(XENBUS_DEVICE)
    else {
        println!("hostile raw frames: cannot open {XENBUS_DEVICE}");
        return;
    };
    let mut t = Tally::new("raw frames sent (replies drained)");
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for kind in [0u32, 8, 9, 17, 18, 19, 20, 21, 22, 99, 0xffff_ffff] {
        frames.push(frame(kind, 1, b"data/hx\0"));
    }
    frames.push(frame(MsgType::Read as u32, 2, b"data/hx/status/0"));
    frames.push(frame(MsgType::Write as u32, 3, b"data/hx/\xff\xfe\0v"));
    frames.push(frame(MsgType::Write as u32, 4, b"data/hx/a b\0v"));
    frames.push(frame(MsgType::Directory as u32, 5, b"\0\0\0\0"));
    frames.push(frame(MsgType::GetPerms as u32, 6, &[0xff; 300]));
    frames.push(frame(MsgType::SetPerms as u32, 7, b"data/hx\0b0\0"));
    frames.push(frame(
        MsgType::SetPerms as u32,
        8,
        b"data/hx\0n0\0r999999999999\0",
    ));
    frames.push(frame(
        MsgType::GetDomainPath as u32,
        9,
        b"99999999999999999999\0",
    ));
    frames.push(frame(MsgType::Write as u32, 10, &vec![b'a'; 4096]));
    let mut huge = frame(MsgType::Write as u32, 11, b"data/x\0");
    huge[12..16].copy_from_slice(&5000u32.to_ne_bytes());
    frames.push(huge);
    let mut liar = frame(MsgType::Read as u32, 12, b"data/x\0");
    liar[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
    frames.push(liar);
    for fr in frames {
        t.note(f.write(&fr));
        drain(&mut f);
    }
}

fn frame(kind: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [kind, req_id, 0, payload.len() as u32] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Reads whatever replies arrive within 300 ms.
fn drain(f: &mut std::fs::File) {
    let mut buf = [0u8; 8192];
    loop {
        let mut pfd = [libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(pfd.as_mut_ptr(), 1, 300) } <= 0 {
            return;
        }
        if f.read(&mut buf).unwrap_or(0) == 0 {
            return;
        }
    }
}

/// Transactions opened and never ended, until xenstored refuses more.
fn transactions() {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(XENBUS_DEVICE)
    else {
        return;
    };
    let mut t = Tally::new("open transactions");
    for n in 0..50u32 {
        let start = Msg {
            kind: MsgType::TransactionStart,
            req_id: 100 + n,
            tx_id: 0,
            payload: nul_strings(&[b""]),
        };
        if let Err(e) = start.write_to(&mut f) {
            t.note(Err::<(), _>(e));
            break;
        }
        match Msg::read_from(&mut f) {
            Ok(Some(m)) if m.kind == MsgType::TransactionStart => t.note(Ok::<(), String>(())),
            Ok(Some(m)) => t.note(Err::<(), _>(
                String::from_utf8_lossy(&m.payload).into_owned(),
            )),
            Ok(None) => t.note(Err::<(), _>("closed".to_string())),
            Err(e) => t.note(Err::<(), _>(e.to_string())),
        };
    }
}

fn console(secs: u64) {
    let out = std::io::stdout();
    let mut out = out.lock();
    let end = Instant::now() + Duration::from_secs(secs);
    let long = "L".repeat(64 * 1024);
    let mut bytes = 0u64;
    let mut n = 0u64;
    while Instant::now() < end {
        let chunk: Vec<u8> = match n % 4 {
            0 => format!("\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[?1049h line {n}\r\n").into_bytes(),
            1 => b"\xff\xfe\xc0\x80\xed\xa0\x80 invalid utf-8\n".to_vec(),
            2 => long.clone().into_bytes(),
            _ => b"\x1bP+q\x1b\\\x9b6n\x1b[6n\x05\n".to_vec(),
        };
        if out.write_all(&chunk).is_err() {
            break;
        }
        bytes += chunk.len() as u64;
        n += 1;
    }
    let _ = writeln!(out, "\nhostile console: {bytes} bytes in {n} writes");
    let _ = out.flush();
}
