//! `hx logs`: a container's stdout and stderr, in the order they arrived (output_log.rs).
use hx_engine::container;
use hx_engine::logfile::{self, Tail};
use hx_engine::output_log::{self, Follower, Record, Stream};
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Follow the output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(short = 'n', long)]
    pub tail: Option<usize>,
    /// Prefix each line with the time it arrived (RFC 3339, nanoseconds)
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines from this time on (e.g. 2026-12-03T22:40:00Z, 10m, Unix seconds)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines up to this time (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Container name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let now = output_log::now_nanos();
    let mut window = (i64::MIN, i64::MAX);
    for (flag, value, at) in [
        ("since", &args.since, &mut window.0),
        ("until", &args.until, &mut window.1),
    ] {
        if let Some(v) = value {
            match super::logtime::parse(v, now) {
                Ok(t) => *at = t,
                Err(e) => {
                    errln!("hx: invalid value for {flag:?}: {e}");
                    return Ok(1);
                }
            }
        }
    }
    let c = container::find(&g.root, &args.container)?;
    let dir = container::dir(&g.root, &c.id);
    let files = output_log::files(&dir);
    if files.is_empty() && (dir.join("stdout.log").exists() || dir.join("stderr.log").exists()) {
        if args.timestamps || args.since.is_some() || args.until.is_some() {
            errln!(
                "hx: {}: its output was recorded without times (Xen's console, or an older hx): --timestamps, --since and --until cannot be used",
                c.name
            );
            return Ok(1);
        }
        return raw(g, &c, &dir, &args).await;
    }
    let mut printer = Printer::new(args.timestamps, window);
    let start = output_log::tail_start(&files, args.tail)?;
    let newest = output_log::read_records(&files, start, &mut |r| printer.print(r))?;
    printer.flush()?;
    if args.follow && !files.is_empty() {
        let be = hx_engine::backend::for_container(&c, &g.root)?;
        let mut follower = Follower::open(&dir, false)?;
        if let Follower::Framed { tail, .. } = &mut follower {
            if tail.pos_hint() > newest {
                tail.set_pos(newest);
            }
        }
        loop {
            let running = be.is_running(&c);
            // docker ends a follow at --until: nothing later can be shown.
            let past_until = output_log::now_nanos() > window.1;
            follower.pump_records(&mut |r| printer.print(r))?;
            printer.flush()?;
            if !running || past_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(0)
}

/// Writes records to stdout/stderr: the workload's bytes as they are into a pipe or file, made
/// safe (sanitize.rs) on a terminal, where a guest's escape sequences would drive the user's
/// terminal; with `-t` each line starts with its arrival time.
struct Printer {
    timestamps: bool,
    window: (i64, i64),
    /// Per stream: whether the next record starts a line.
    at_line_start: [bool; 2],
    terminal: [bool; 2],
    out: std::io::BufWriter<std::io::Stdout>,
    err: std::io::Stderr,
}

impl Printer {
    fn new(timestamps: bool, window: (i64, i64)) -> Self {
        Printer {
            timestamps,
            window,
            at_line_start: [true, true],
            terminal: [
                std::io::stdout().is_terminal(),
                std::io::stderr().is_terminal(),
            ],
            out: std::io::BufWriter::with_capacity(64 << 10, std::io::stdout()),
            err: std::io::stderr(),
        }
    }

    fn print(&mut self, r: &Record) -> std::io::Result<()> {
        if r.time < self.window.0 || r.time > self.window.1 {
            return Ok(());
        }
        let i = r.stream as usize;
        let w: &mut dyn Write = match r.stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => {
                // Kept in order with stdout when both go to the same place.
                self.out.flush()?;
                &mut self.err
            }
        };
        if self.timestamps && self.at_line_start[i] {
            write!(w, "{} ", output_log::format_time(r.time))?;
        }
        self.at_line_start[i] = r.payload.ends_with(b"\n");
        if self.terminal[i] {
            let text = String::from_utf8_lossy(r.payload);
            w.write_all(hx_engine::sanitize::text(&text).to_cow().as_bytes())
        } else {
            w.write_all(r.payload)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

/// Containers with raw stdout.log/stderr.log (Xen, or output kept by an older hx): stdout,
/// then stderr.
async fn raw(
    g: &super::Globals,
    c: &container::Container,
    dir: &std::path::Path,
    args: &Args,
) -> anyhow::Result<i32> {
    let mut streams = Vec::new();
    for (name, is_err) in [("stdout.log", false), ("stderr.log", true)] {
        let p = dir.join(name);
        // Read from the end for -n and copied in chunks otherwise: memory does not grow with
        // the log.
        let shown = if is_err {
            logfile::copy_tail(&p, args.tail, &mut SafeOnTerminal(std::io::stderr()))?
        } else {
            logfile::copy_tail(&p, args.tail, &mut SafeOnTerminal(std::io::stdout()))?
        };
        if args.follow && p.exists() {
            let mut t = Tail::open(&p, false)?;
            if t.pos_hint() > shown {
                t.set_pos(shown);
            }
            streams.push((t, is_err));
        }
    }
    std::io::stdout().flush()?;
    if args.follow {
        let be = hx_engine::backend::for_container(c, &g.root)?;
        loop {
            let running = be.is_running(c);
            for (t, is_err) in streams.iter_mut() {
                if *is_err {
                    t.pump(&mut SafeOnTerminal(std::io::stderr()))?;
                } else {
                    t.pump(&mut SafeOnTerminal(std::io::stdout()))?;
                }
            }
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(0)
}

/// A writer that escapes what it is given when it is a terminal.
struct SafeOnTerminal<W: Write + IsTerminal>(W);

impl<W: Write + IsTerminal> Write for SafeOnTerminal<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.is_terminal() {
            let text = String::from_utf8_lossy(buf);
            self.0
                .write_all(hx_engine::sanitize::text(&text).to_cow().as_bytes())?;
        } else {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
