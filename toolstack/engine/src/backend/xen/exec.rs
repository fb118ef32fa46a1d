//! The exec channel of a Xen container, in its monitor: the same broker as QEMU's log relay
//! (exec_channel::broker, on `exec.sock`) over one end of a socketpair, and a thread that
//! connects to the guest's vchan (pv_init::vchan: pv-init is the server, the monitor maps its
//! pages through gntdev) and copies between the two. The rendezvous in xenstore is the guest's
//! and hostile: two plain decimal numbers within bounds; the ring layout is checked by
//! Connected::connect, the indices by every read and write (docs/guest-protocol.md).
use pv_init::vchan::{self, Connected};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xen_bindings::xenstore::parse_untrusted_u64;
use xen_bindings::Xenstore;

pub fn rendezvous_dir(domid: u32) -> String {
    format!("/local/domain/{domid}/{}", vchan::XS_DIR)
}

/// The guest's rendezvous (control page grant, event channel port), once both are there and
/// valid; None while missing; Err if present but not what the protocol allows.
pub fn read_rendezvous(xs: &Xenstore, domid: u32) -> anyhow::Result<Option<(u32, u32)>> {
    let dir = rendezvous_dir(domid);
    let read = |node: &str, max: u64| -> anyhow::Result<Option<u32>> {
        let path = format!("{dir}/{node}");
        match xs.read_untrusted(&path)? {
            None => Ok(None),
            Some(v) => {
                let n = parse_untrusted_u64(&path, &v, max)?;
                anyhow::ensure!(n != 0, "{path}: 0 is not valid");
                Ok(Some(n as u32))
            }
        }
    };
    // ring-ref is written last by pv-init.
    let Some(gref) = read("ring-ref", vchan::MAX_GREF)? else {
        return Ok(None);
    };
    let Some(port) = read("event-channel", vchan::MAX_PORT)? else {
        return Ok(None);
    };
    Ok(Some((gref, port)))
}

/// The running channel: stopping it unmaps the guest's pages (before the domain is
/// destroyed, or it would linger as a zombie holding them).
pub struct ExecChannel {
    stop: Arc<AtomicBool>,
    stop_w: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long the monitor waits for a guest that publishes no rendezvous (an older pv-init, a
/// kernel without gntalloc) before it stops looking; exec then says the channel did not
/// come up.
const RENDEZVOUS_WAIT: Duration = Duration::from_secs(120);

impl ExecChannel {
    pub fn start(domid: u32, dir: &Path) -> anyhow::Result<ExecChannel> {
        let (broker_end, ours) = UnixStream::pair()?;
        crate::exec_channel::broker::serve(OwnedFd::from(broker_end), dir)?;
        let (stop_r, stop_w) = nix::unistd::pipe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("exec-vchan".into())
            .spawn(move || {
                let why = run(domid, &ours, &flag, stop_r);
                tracing::info!("domain {domid}: exec channel ended: {why}");
            })?;
        Ok(ExecChannel {
            stop,
            stop_w: Some(stop_w),
            thread: Some(thread),
        })
    }

    /// Ends the bridge and unmaps the guest's pages (waits at most a few seconds).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stop_w.take();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn run(domid: u32, ours: &UnixStream, stop: &AtomicBool, stop_r: OwnedFd) -> String {
    let xs = match Xenstore::open() {
        Ok(xs) => xs,
        Err(e) => return format!("xenstore: {e}"),
    };
    let t = Instant::now();
    let (gref, port) = loop {
        if stop.load(Ordering::SeqCst) {
            return "stopped before the guest published its channel".into();
        }
        match read_rendezvous(&xs, domid) {
            Ok(Some(r)) => break r,
            Ok(None) if t.elapsed() < RENDEZVOUS_WAIT => {}
            Ok(None) => return "the guest published no exec channel".into(),
            Err(e) => return format!("the guest's rendezvous is invalid: {e:#}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(xs);
    let mut conn = match Connected::connect(domid, gref, port) {
        Ok(c) => c,
        Err(e) => return format!("connecting to the guest's vchan: {e}"),
    };
    tracing::info!(
        "domain {domid}: exec channel connected after {:?}",
        t.elapsed()
    );
    let why = match vchan::bridge(&mut conn, ours, Some(stop_r.as_fd())) {
        Ok(why) => why.to_string(),
        Err(e) => format!("{e}"),
    };
    // The guest's own word on why, if it left one (untrusted: bounded, escaped).
    let guest = Xenstore::open()
        .ok()
        .and_then(|xs| {
            xs.read_untrusted(&format!("{}/closed", rendezvous_dir(domid)))
                .ok()
        })
        .flatten()
        .map(|g| crate::sanitize::line(&g).to_string());
    match guest {
        Some(g) => format!("{why} (guest: {g})"),
        None => why,
    }
    // conn drops here: cli_live = 0, pages unmapped; `ours` closes with the caller, and the
    // broker tells its clients the container stopped.
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendezvous is the guest's: anything but two plain, bounded, non-zero decimals is
    /// refused, and a missing node is "not yet".
    #[test]
    fn rendezvous_values_from_the_guest_are_checked() {
        let store = crate::backend::xen::FakeStore::start();
        let xs = &store.xs;
        let dir = rendezvous_dir(5);
        let put = |n: &str, v: &str| store.put(&dir, n, v.as_bytes());
        assert!(read_rendezvous(xs, 5).unwrap().is_none());
        put("event-channel", "7");
        assert!(read_rendezvous(xs, 5).unwrap().is_none());
        put("ring-ref", "8");
        assert_eq!(read_rendezvous(xs, 5).unwrap(), Some((8, 7)));
        for bad in [
            "0",
            "-1",
            " 8",
            "08",
            "8\n",
            "99999999999",
            "16777216",
            "\x1b[2J",
            "",
        ] {
            put("ring-ref", bad);
            assert!(read_rendezvous(xs, 5).is_err(), "{bad:?}");
        }
        put("ring-ref", "8");
        put("event-channel", "131072");
        assert!(read_rendezvous(xs, 5).is_err());
    }
}
