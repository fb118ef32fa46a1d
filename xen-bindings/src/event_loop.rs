//! The context's event thread: runs libxl's event loop (`libxl_osevent_beforepoll`, poll,
//! `libxl_osevent_afterpoll`), which is where libxl completes asynchronous operations and
//! delivers domain events, and forwards SIGCHLD to libxl.
//!
//! The thread owns the libxl context's teardown: it frees the context after leaving the loop,
//! so the context cannot be freed under a callback that is still running on this thread. It
//! frees it only once `Context` asked (the quit byte): if libxl's loop fails earlier, handles
//! still point at the context, so the thread marks the dispatch stopped (operations in flight
//! fail, event streams end) and waits for the quit byte before freeing anything.
use crate::events::Dispatch;
use crate::logger::TracingLogger;
use crate::sigchld::SIGCHLD_BYTE;
use libxl_sys as sys;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// The byte `Context`'s drop writes to end the loop.
pub(crate) const QUIT_BYTE: u8 = b'q';
/// Longest wait in poll() before libxl's fd set is recomputed.
const MAX_POLL_MS: i32 = 100;

/// What the thread owns and frees in order once the loop ends. Besides `ctx` and `wake_rd`,
/// the fields are only held: libxl points into them until `libxl_ctx_free`.
#[allow(dead_code)]
pub(crate) struct Owned {
    pub ctx: *mut sys::libxl_ctx,
    pub logger: Box<TracingLogger>,
    pub childproc_hooks: Box<sys::libxl_childproc_hooks>,
    pub event_hooks: Box<sys::libxl_event_hooks>,
    pub dispatch: Arc<Dispatch>,
    pub wake_rd: OwnedFd,
}

// SAFETY: libxl contexts are thread-safe (libxl.h, "libxl memory management"); the boxes are
// only read by libxl through that context.
unsafe impl Send for Owned {}

fn now() -> sys::timeval {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    sys::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    }
}

/// Reads the wake pipe dry: (SIGCHLD seen, quit requested).
fn drain(fd: &OwnedFd) -> (bool, bool) {
    let (mut child, mut quit) = (false, false);
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reading into a local buffer from our non-blocking pipe.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return (child, quit);
        }
        child |= buf[..n as usize].contains(&SIGCHLD_BYTE);
        quit |= buf[..n as usize].contains(&QUIT_BYTE);
    }
}

pub(crate) fn run(owned: Owned) {
    let quit = run_loop(&owned);
    owned.dispatch.mark_stopped();
    if !quit && !wait_for_quit(&owned.wake_rd) {
        // Cannot tell when the last handle is gone: leak the context (and what it points to)
        // rather than free it under its users, and let `Context`'s drop join this thread.
        std::mem::forget(owned);
        return;
    }
    // SAFETY: nothing else uses the context any more (Context and every handle holding it are
    // gone); the hooks, logger and dispatch it points to are freed after it.
    unsafe { sys::libxl_ctx_free(owned.ctx) };
    drop(owned);
}

/// Blocks until `Context`'s drop writes the quit byte (SIGCHLD bytes are dropped: with the
/// loop gone, libxl reaps no more children); false if the pipe cannot be waited on.
fn wait_for_quit(wake_rd: &OwnedFd) -> bool {
    loop {
        let mut p = libc::pollfd {
            fd: wake_rd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one initialised pollfd.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::error!(target: "libxl", "event thread: poll: {}", std::io::Error::last_os_error());
            return false;
        }
        if r > 0 && drain(wake_rd).1 {
            return true;
        }
    }
}

/// libxl's event loop until the quit byte (true) or a failure of the loop itself (false).
fn run_loop(owned: &Owned) -> bool {
    let ctx = owned.ctx;
    let mut fds: Vec<sys::pollfd> = vec![
        sys::pollfd {
            fd: -1,
            events: 0,
            revents: 0
        };
        8
    ];
    loop {
        let mut nfds = fds.len() as i32 - 1; // the last slot is the wake pipe's
        let mut timeout: i32 = -1;
        // SAFETY: fds has room for nfds entries; libxl fills them.
        let rc = unsafe {
            sys::libxl_osevent_beforepoll(ctx, &mut nfds, fds.as_mut_ptr(), &mut timeout, now())
        };
        if rc == sys::ERROR_BUFFERFULL {
            fds.resize(
                nfds as usize + 1,
                sys::pollfd {
                    fd: -1,
                    events: 0,
                    revents: 0,
                },
            );
            continue;
        }
        if rc != 0 {
            tracing::error!(target: "libxl", "event loop stopped: libxl_osevent_beforepoll returned {rc}");
            return false;
        }
        let n = nfds as usize;
        fds[n] = sys::pollfd {
            fd: owned.wake_rd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Bounded: libxl does not wake this poller when another thread registers a new fd (the
        // first xenstore watch of a context, as `watch_domain` on a fresh one), so the fd set is
        // recomputed at least this often. Seen in the lab: `hx shutdown -w` never saw the death.
        let timeout = if (0..=MAX_POLL_MS).contains(&timeout) {
            timeout
        } else {
            MAX_POLL_MS
        };
        // SAFETY: n + 1 initialised pollfd entries; sys::pollfd has libc::pollfd's layout.
        let r = unsafe { libc::poll(fds.as_mut_ptr().cast(), (n + 1) as libc::nfds_t, timeout) };
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::error!(target: "libxl", "event loop stopped: poll: {}", std::io::Error::last_os_error());
            return false;
        }
        let (child, quit) = if r > 0 && fds[n].revents != 0 {
            drain(&owned.wake_rd)
        } else {
            (false, false)
        };
        if r < 0 {
            // Interrupted: libxl's fds report nothing this round.
            fds[..n].iter_mut().for_each(|f| f.revents = 0);
        }
        // SAFETY: the entries beforepoll filled in, as modified by poll.
        unsafe { sys::libxl_osevent_afterpoll(ctx, n as i32, fds.as_ptr(), now()) };
        if child {
            // SAFETY: valid context in mainloop SIGCHLD mode; not in a signal handler.
            unsafe { sys::libxl_childproc_sigchld_occurred(ctx) };
        }
        if quit {
            return true;
        }
    }
}
