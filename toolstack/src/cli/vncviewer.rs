//! `hx vncviewer [-a] DOMAIN`: a VNC viewer on a domain's VNC server (its `vfb` or HVM display),
//! as `xl vncviewer`: the server's address from xenstore, then `$VNCVIEWER`, else `vncviewer`,
//! in place of hx with `HOST:DISPLAY` (and `-autopass`, the password on its stdin). libxl's
//! `vncviewer_exec` does the same, but reads the nodes itself after any check hx could make,
//! and they are in the guest's writable console directory: hx reads each once, checks it and
//! runs the viewer on what it checked. `hx create -V`/`-A` and `hx domain restore -V`/`-A`
//! start one (`spawn`) once the domain is up.
use super::domain;
use std::io::Write;
use std::os::unix::process::CommandExt;
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
    // The console directory is the guest's to write, and what is read there goes on a root
    // viewer's command line: only a port number and an address-like host go on.
    let listen = xs.read(&node("vnc-listen")).ok().flatten();
    let Some(target) = viewer_target(&port, listen.as_deref()) else {
        return Err(super::Fixed::wrap(
            1,
            anyhow::anyhow!("domain {id}: its VNC address in xenstore is not a plain host and port: refusing to start a viewer on it"),
        ));
    };
    let password = if args.autopass {
        xs.read(&node("vnc-pass")).ok().flatten()
    } else {
        None
    };
    let viewer = std::env::var_os("VNCVIEWER").unwrap_or_else(|| "vncviewer".into());
    let mut cmd = std::process::Command::new(&viewer);
    cmd.arg(&target);
    if let Some(pass) = password {
        // As libxl: -autopass, the password on the viewer's stdin (xenstore bounds a value
        // far below a pipe's buffer, so the write cannot block).
        let (r, mut w) = std::io::pipe()?;
        w.write_all(&pass)?;
        drop(w);
        cmd.arg("-autopass").stdin(r);
    }
    let e = cmd.exec();
    Err(super::Fixed::wrap(
        1,
        anyhow::anyhow!(
            "Unable to execute vncviewer ({}): {e}",
            std::path::Path::new(&viewer).display()
        ),
    ))
}

/// The viewer's `HOST:DISPLAY` (libxl's form: the port less 5900; no listen node: localhost)
/// from the port and listen address read in the guest-writable console directory, if they are
/// a port number of 5900 and up and a host name or address no viewer could take for an option.
fn viewer_target(port: &[u8], listen: Option<&[u8]>) -> Option<String> {
    let port = std::str::from_utf8(port)
        .ok()?
        .parse::<u16>()
        .ok()
        .filter(|p| *p >= 5900)?;
    let host = match listen {
        None => "localhost",
        Some(l) => std::str::from_utf8(l).ok().filter(|l| {
            !l.is_empty()
                && l.len() <= 255
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })?,
    };
    Some(format!("{host}:{}", port - 5900))
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
        use super::viewer_target;
        let ok = |p: &[u8], l: Option<&[u8]>| viewer_target(p, l).unwrap();
        assert_eq!(ok(b"5907", Some(b"127.0.0.1")), "127.0.0.1:7");
        assert_eq!(ok(b"5900", None), "localhost:0");
        assert_eq!(ok(b"5901", Some(b"[::1]")), "[::1]:1");
        assert_eq!(ok(b"5901", Some(b"dom0.example")), "dom0.example:1");
        for (port, listen) in [
            (&b"5899"[..], Some(&b"127.0.0.1"[..])),
            (b"59a", None),
            (b"70000", None),
            (b"5901", Some(b"-via")),
            (b"5901", Some(b"a b")),
            (b"5901", Some(b"")),
            (b"5901", Some(b"x;y")),
        ] {
            assert!(viewer_target(port, listen).is_none(), "{port:?} {listen:?}");
        }
    }
}
