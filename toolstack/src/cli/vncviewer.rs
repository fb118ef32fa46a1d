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
    let node = |n: &str| format!("/local/domain/{id}/console/{n}");
    let deadline = Instant::now() + SERVER_WAIT;
    let port = loop {
        if let Some(p) = xs.read(&node("vnc-port")).ok().flatten() {
            break p;
        }
        if Instant::now() > deadline {
            return Err(super::Fixed::wrap(
                1,
                anyhow::anyhow!("domain {id} has no VNC server (no vnc-port in xenstore: give it vfb = ['vnc=1'])"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The console directory is the guest's to write, and libxl puts what it reads there on a
    // root viewer's command line: only a port number and an address-like host go on.
    let listen = xs.read(&node("vnc-listen")).ok().flatten();
    if !plausible(&port, listen.as_deref()) {
        return Err(super::Fixed::wrap(
            1,
            anyhow::anyhow!("domain {id}: its VNC address in xenstore is not a plain host and port: refusing to start a viewer on it"),
        ));
    }
    let e = ctx.vncviewer_exec(id, args.autopass);
    Err(super::Fixed::wrap(
        1,
        anyhow::anyhow!("Unable to execute vncviewer: {e}"),
    ))
}

/// Whether the VNC port and listen address read from the guest-writable console directory are
/// a port number (5900 and up, as libxl subtracts 5900) and a host name or address that no
/// viewer could take for an option.
fn plausible(port: &[u8], listen: Option<&[u8]>) -> bool {
    let port_ok = std::str::from_utf8(port)
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .is_some_and(|p| p >= 5900);
    let listen_ok = listen.is_none_or(|l| {
        !l.is_empty()
            && l.len() <= 255
            && l[0] != b'-'
            && l.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(b))
    });
    port_ok && listen_ok
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
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting the VNC viewer: {e}"))?;
    // Reaped if hx stays (create -F); otherwise init takes it over when hx exits.
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_vnc_addresses_reach_a_viewer() {
        use super::plausible;
        assert!(plausible(b"5907", Some(b"127.0.0.1")));
        assert!(plausible(b"5900", None));
        assert!(plausible(b"5901", Some(b"[::1]")));
        assert!(plausible(b"5901", Some(b"dom0.example")));
        for (port, listen) in [
            (&b"5899"[..], Some(&b"127.0.0.1"[..])),
            (b"59a", None),
            (b"70000", None),
            (b"5901", Some(b"-via")),
            (b"5901", Some(b"a b")),
            (b"5901", Some(b"")),
            (b"5901", Some(b"x;y")),
        ] {
            assert!(!plausible(port, listen), "{port:?} {listen:?}");
        }
    }
}
