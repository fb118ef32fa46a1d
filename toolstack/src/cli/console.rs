//! `hx console DOMAIN`: attach to a domain's console, as `xl console` (Ctrl-] leaves). For an
//! hx container the console pty belongs to its monitor (two readers would split the output
//! between them), so hx follows the container's console log instead until the domain ends.
use super::domain;
use crate::cli::run::Tail;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name or id)
    pub domain: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    let xs = xen_bindings::Xenstore::open()?;
    if let Some(cid) = domain::hx_container(&xs, id) {
        let dir = crate::container::dir(&g.root, &cid);
        let log = dir.join("console.log");
        if log.is_file() {
            let mut t = Tail::open(&log, true)?;
            loop {
                t.pump(&mut std::io::stdout())?;
                if ctx.info(id).is_err() {
                    t.pump(&mut std::io::stdout())?;
                    return Ok(0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(ctx.console_exec(id).into())
}
