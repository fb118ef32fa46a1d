//! `hx attach [--sig-proxy=false] [--detach-keys K] [--no-stdin] CONTAINER`, as `docker attach`:
//! the running container's output from now on (stdout to stdout, stderr to stderr), and hx's
//! stdin to the workload when the container was made with `-i` (on QEMU through the input its
//! log relay holds, engine attach_channel; on Xen into the domain's console), until it stops;
//! then its exit code. With a terminal (`-t`) and input, the detach keys (Ctrl-P Ctrl-Q by
//! default) leave it running. ^C and SIGTERM go to the workload (docker's --sig-proxy) unless
//! turned off; a second ^C detaches. `attach` is the session itself, for `hx start -a` too.
use hx_engine::backend::{self, Backend};
use hx_engine::container::{self, Container, Status};
use hx_engine::output_log::Follower;
use hx_engine::workload_input::{self, Sink};
use pv_init::status::Control;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pass SIGINT and SIGTERM to the workload
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching (default ctrl-p,ctrl-q): comma-separated, each a
    /// single character or ctrl-<a-z, @, [, \, ], ^, _>
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Do not attach stdin
    #[arg(long)]
    pub no_stdin: bool,
    /// Container (name or id)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
}

/// docker's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// How a session attaches.
#[derive(Debug, Clone)]
pub struct Options {
    /// Attach hx's stdin too (when the container was made with `-i`).
    pub stdin: bool,
    /// The detach sequence (`parse_detach_keys`); only read with input on a `-t` container,
    /// as docker's.
    pub detach_keys: Vec<u8>,
    pub sig_proxy: bool,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The container stopped, with this exit code.
    Exited(i32),
    /// hx left it running (detach keys, the end of a non-stdin-once input, a second ^C).
    Detached,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let keys = detach_keys(args.detach_keys.as_deref())?;
    let o = Options {
        stdin: !args.no_stdin,
        detach_keys: keys,
        sig_proxy: args.sig_proxy,
    };
    match attach(&g.root, &args.container, &o).await? {
        Ended::Exited(code) => Ok(code),
        Ended::Detached => Ok(0),
    }
}

/// `--detach-keys` (`hx attach`, `hx run`, `hx start`): docker's default when not given or
/// empty.
pub fn detach_keys(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match arg {
        Some(k) if !k.is_empty() => parse_detach_keys(k),
        _ => parse_detach_keys(DEFAULT_DETACH_KEYS),
    }
}

/// Parses docker's detach keys: comma-separated, each a single character or `ctrl-X` with X
/// one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`.
pub fn parse_detach_keys(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let b = key.as_bytes();
        if b.len() == 1 && b[0].is_ascii() && !b[0].is_ascii_control() {
            out.push(b[0]);
            continue;
        }
        let lower = key.to_ascii_lowercase();
        let code = match lower.strip_prefix("ctrl-").map(str::as_bytes) {
            Some([c @ b'a'..=b'z']) => Some(c - b'a' + 1),
            Some([b'@']) => Some(0),
            Some([c @ (b'[' | b'\\' | b']' | b'^' | b'_')]) => Some(c - b'@'),
            _ => None,
        };
        match code {
            Some(c) => out.push(c),
            None => anyhow::bail!(
                "invalid detach keys {s:?}: {key:?} is neither a single character nor \
                 ctrl-<a-z, @, [, \\, ], ^, _>"
            ),
        }
    }
    Ok(out)
}

/// Watches input for the detach sequence, like docker's escape proxy: bytes that may start it
/// are held back until the sequence is complete (detach) or broken (passed on).
pub struct DetachFilter {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachFilter {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachFilter { keys, matched: 0 }
    }

    /// The bytes to pass on, and whether the sequence was typed (what follows it is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = usize::from(b == self.keys[0]);
            if self.matched == 0 {
                out.push(b);
            } else if self.keys.len() == 1 {
                self.matched = 0;
                return (out, true);
            }
        }
        (out, false)
    }
}

pub enum InputEvent {
    /// The detach keys.
    Detach,
    /// The end of hx's input; `closed`: the workload's stdin with it (stdin-once, no tty);
    /// `tell_guest`: that end still has to reach pv-init as a `stdin-eof` control line (Xen's
    /// console cannot carry it).
    Ended { closed: bool, tell_guest: bool },
}

/// Attaches to the running container `name` until it stops or hx detaches.
pub async fn attach(root: &Path, name: &str, o: &Options) -> anyhow::Result<Ended> {
    let c = container::find(root, name)?;
    let be = backend::for_container(&c, root)?;
    if c.status != Status::Running || !be.is_running(&c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    let dir = container::dir(root, &c.id);
    let spec = std::fs::read(dir.join("spec.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<pv_init::spec::ContainerSpec>(&b).ok());
    let (has_stdin, tty) = spec.map_or((false, false), |s| (s.stdin, s.tty.is_some()));
    let mut output = Follower::open(&dir, false)?;
    let want_input = o.stdin && has_stdin;
    let resize = |be: &dyn Backend| {
        if let Some(size) = super::interactive::terminal_size() {
            let line = Control::Resize {
                rows: size.rows,
                cols: size.cols,
            };
            let _ = be.send_control(&c, &dir, &line.to_line());
        }
    };
    // The workload's terminal takes this one's size (before any input can ask for it).
    if tty && want_input {
        resize(be.as_ref());
    }
    let mut input = if want_input {
        forward_input(&c, &dir, be.as_ref(), &o.detach_keys, tty)?
    } else {
        None
    };
    let mut raw = if input.is_some() && tty {
        super::interactive::RawTerminal::enable()
    } else {
        None
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut winch = signal(SignalKind::window_change())?;
    let mut interrupts = 0;
    loop {
        let any = output.pump(&mut std::io::stdout(), &mut std::io::stderr())?;
        if !be.is_running(&c) {
            break;
        }
        match input.as_ref().map(|rx| rx.try_recv()) {
            Some(Ok(InputEvent::Detach)) => {
                drop(raw.take());
                // docker's words, on stderr.
                errln!("read escape sequence");
                return Ok(Ended::Detached);
            }
            Some(Ok(InputEvent::Ended { closed: false, .. })) => return Ok(Ended::Detached),
            Some(Ok(InputEvent::Ended {
                closed: true,
                tell_guest,
            })) => {
                if tell_guest {
                    let _ = be.send_control(&c, &dir, &Control::StdinEof.to_line());
                }
                input = None
            }
            Some(Err(mpsc::TryRecvError::Disconnected)) => input = None,
            _ => {}
        }
        let delay = if any { 5 } else { 25 };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
            _ = winch.recv(), if tty => resize(be.as_ref()),
            _ = sigint.recv() => {
                interrupts += 1;
                if !o.sig_proxy || interrupts > 1 {
                    // Detached: the container runs on.
                    return Ok(Ended::Detached);
                }
                let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGINT).to_line());
            }
            _ = sigterm.recv() => {
                if !o.sig_proxy {
                    return Ok(Ended::Detached);
                }
                let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGTERM).to_line());
            }
        }
    }
    output.pump(&mut std::io::stdout(), &mut std::io::stderr())?;
    drop(raw);
    let code = hx_engine::runtime::exit_code_after_stop(root, &c, be.as_ref())?;
    Ok(Ended::Exited(code))
}

/// hx's stdin to the workload on a thread (None: its stdin is closed already, output only),
/// through the engine's workload_input (QEMU: the log relay's input; Xen: the domain's
/// console, only once pv-init reported the workload started). `detach_keys` are watched for on
/// a terminal (`tty`) only, as docker's. The end of hx's input is the workload's when the
/// container is stdin-once and has no terminal (docker's rule); otherwise it only ends this
/// client's turn.
pub fn forward_input(
    c: &Container,
    dir: &Path,
    be: &dyn Backend,
    detach_keys: &[u8],
    tty: bool,
) -> anyhow::Result<Option<mpsc::Receiver<InputEvent>>> {
    let Some((mut sink, stdin_once)) = workload_input::open(c, dir, be)? else {
        return Ok(None);
    };
    let closes = stdin_once && !tty;
    let keys = if tty {
        detach_keys.to_vec()
    } else {
        Vec::new()
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if !sink.wait_ready() {
            return;
        }
        let mut filter = DetachFilter::new(keys);
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let (pass, detach) = filter.feed(&buf[..n]);
            let sent = sink.send(&pass);
            if detach {
                // Dropping the connection without an end of input: the stdin stays open.
                let _ = tx.send(InputEvent::Detach);
                return;
            }
            if sent.is_err() {
                // The container is going away: its end shows in the output loop.
                return;
            }
        }
        let event = match sink {
            Sink::Relay(i) if closes => InputEvent::Ended {
                closed: i.end().is_ok(),
                tell_guest: false,
            },
            Sink::Console { .. } if closes => InputEvent::Ended {
                closed: true,
                tell_guest: true,
            },
            _ => InputEvent::Ended {
                closed: false,
                tell_guest: false,
            },
        };
        let _ = tx.send(event);
    });
    Ok(Some(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS).unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), [1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-\\").unwrap(), [28]);
        assert_eq!(
            parse_detach_keys("ctrl-@,ctrl-[,ctrl-],ctrl-^,ctrl-_,CTRL-Z").unwrap(),
            [0, 27, 29, 30, 31, 26]
        );
        for bad in [
            "", "ctrl-", "ctrl-1", "ctrl-aa", "foo", "a,,b", "ctrl-é", "é",
        ] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_filter_holds_a_started_sequence_and_passes_broken_ones() {
        let mut f = DetachFilter::new(vec![16, 17]);
        assert_eq!(f.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(f.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(f.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(f.feed(b"\x11rest"), (Vec::new(), true));
        let mut f = DetachFilter::new(vec![28]);
        assert_eq!(f.feed(b"x\x1cy"), (b"x".to_vec(), true));
        let mut f = DetachFilter::new(vec![1, b'x']);
        assert_eq!(f.feed(b"\x01"), (Vec::new(), false));
        assert_eq!(f.feed(b"\x01x"), (b"\x01".to_vec(), true));
        let mut f = DetachFilter::new(Vec::new());
        assert_eq!(f.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
