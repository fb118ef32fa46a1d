//! `hx logs`: a container's stdout and stderr.
use hx_engine::container;
use hx_engine::logfile::{self, Tail};
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

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let c = container::find(&g.root, &args.container)?;
    let dir = container::dir(&g.root, &c.id);
    let mut streams = Vec::new();
    for (name, is_err) in [("stdout.log", false), ("stderr.log", true)] {
        let p = dir.join(name);
        // Read from the end for -n and copied in chunks otherwise: memory does not grow with
        // the log. The raw bytes, like docker: no escaping of the workload's own output.
        let shown = if is_err {
            logfile::copy_tail(&p, args.tail, &mut std::io::stderr())?
        } else {
            logfile::copy_tail(&p, args.tail, &mut std::io::stdout())?
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
        let be = hx_engine::backend::for_container(&c, &g.root)?;
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
