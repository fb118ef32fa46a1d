//! `hx vncviewer [-a] DOMAIN`: a VNC viewer on a domain's VNC server (its `vfb` or HVM display),
//! as `xl vncviewer`: libxl finds the server's address in xenstore and runs `$VNCVIEWER`, else
//! `vncviewer`, in place of hx. `hx create -V`/`-A` and `hx domain restore -V`/`-A` start one
//! (`spawn`) once the domain is up.
use super::domain;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pass the domain's VNC password to the viewer on its standard input (-autopass)
    #[arg(short = 'a', long = "autopass")]
    pub autopass: bool,
    /// Domain (name or id)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
}

/// How long a viewer started with a new domain waits for its VNC server (xl's child sleeps a
/// second and tries once; QEMU may take longer under load).
const SERVER_WAIT: Duration = Duration::from_secs(10);

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    let xs = xen_bindings::Xenstore::open()?;
    let port = format!("/local/domain/{id}/console/vnc-port");
    let deadline = Instant::now() + SERVER_WAIT;
    while xs.read(&port).ok().flatten().is_none() {
        if Instant::now() > deadline {
            return Err(super::Fixed::wrap(
                1,
                anyhow::anyhow!("domain {id} has no VNC server (no vnc-port in xenstore: give it vfb = ['vnc=1'])"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = ctx.vncviewer_exec(id, args.autopass);
    Err(super::Fixed::wrap(
        1,
        anyhow::anyhow!("Unable to execute vncviewer: {e}"),
    ))
}

/// Starts `hx vncviewer [-a] DOMID` beside us, as xl's create and restore do for `-V`/`-A`: not
/// waited for (it outlives hx), its output on ours.
pub fn spawn(domid: u32, autopass: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("vncviewer");
    if autopass {
        cmd.arg("-a");
    }
    cmd.arg(domid.to_string())
        .stdin(std::process::Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting the VNC viewer: {e}"))?;
    std::mem::forget(child);
    Ok(())
}
