//! SIGCHLD → libxl, for `libxl_sigchld_owner_mainloop` (docs/xen-bindings.md, "Child processes").
//!
//! libxl forks hotplug scripts (and, for channels, a QEMU). In mainloop mode it never touches
//! SIGCHLD; the application tells it when SIGCHLD arrived and libxl reaps only its own children
//! by pid. The signal handler (chained through signal-hook-registry, like tokio's own) only
//! writes a byte to the context's wake pipe: the event thread makes the libxl call, which must
//! not happen inside a signal handler.
use std::os::fd::RawFd;

/// The byte the handler writes; the event thread answers with
/// `libxl_childproc_sigchld_occurred`.
pub(crate) const SIGCHLD_BYTE: u8 = b'c';

pub(crate) struct SigchldForward(signal_hook_registry::SigId);

impl SigchldForward {
    /// `wake_fd` must be a non-blocking pipe that outlives this registration.
    pub(crate) fn install(wake_fd: RawFd) -> std::io::Result<Self> {
        let action = move || {
            // SAFETY: write(2) is async-signal-safe; a full pipe already holds a wake-up.
            unsafe { libc::write(wake_fd, [SIGCHLD_BYTE].as_ptr().cast(), 1) };
        };
        // SAFETY: the action only calls write(2), which is async-signal-safe.
        let id = unsafe { signal_hook_registry::register(libc::SIGCHLD, action) }?;
        Ok(SigchldForward(id))
    }
}

impl Drop for SigchldForward {
    fn drop(&mut self) {
        signal_hook_registry::unregister(self.0);
    }
}
