//! `hx logs`: a container's stdout and stderr.
use crate::cli::run::Tail;
use crate::container;
use std::io::Write;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Follow the output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each stream
    #[arg(short = 'n', long)]
    pub tail: Option<usize>,
    /// Container name or id
    pub container: String,
}

fn tail_lines(bytes: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    let end = if bytes.ends_with(b"\n") {
        bytes.len() - 1
    } else {
        bytes.len()
    };
    for i in (0..end).rev() {
        if bytes[i] == b'\n' {
            count += 1;
            if count == n {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let c = container::find(&g.root, &args.container)?;
    let dir = container::dir(&g.root, &c.id);
    let mut streams = Vec::new();
    for (name, is_err) in [("stdout.log", false), ("stderr.log", true)] {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).unwrap_or_default();
        let shown = match args.tail {
            Some(n) => tail_lines(&bytes, n),
            None => &bytes[..],
        };
        if is_err {
            std::io::stderr().write_all(shown)?;
        } else {
            std::io::stdout().write_all(shown)?;
        }
        if args.follow && p.exists() {
            let mut t = Tail::open(&p, false)?;
            if (t.pos_hint() as usize) < bytes.len() {
                t.set_pos(bytes.len() as u64);
            }
            streams.push((t, is_err));
        }
    }
    std::io::stdout().flush()?;
    if args.follow {
        let be = crate::backend::for_container(&c, &g.root)?;
        loop {
            let running = be.is_running(&c);
            for (t, is_err) in streams.iter_mut() {
                if *is_err {
                    t.pump(&mut std::io::stderr())?;
                } else {
                    t.pump(&mut std::io::stdout())?;
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
