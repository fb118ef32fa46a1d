//! `process.terminal`: like runc, the runtime makes a pty and sends its master to the caller's
//! `--console-socket` (SCM_RIGHTS); the keeper gets the slave as its stdio and controlling
//! terminal, in raw mode (the guest has its own pty: the host side only carries bytes).
use anyhow::Context;
use pv_init::spec::TtySize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Where the master of a terminal process's pty goes.
#[derive(Clone, Copy)]
pub enum ConsoleTo<'a> {
    /// runc's `--console-socket` (hx-runtime under containerd's runc shim, podman's conmon).
    Socket(&'a Path),
    /// Back to the caller, which relays it itself (the containerd shim: its fifos).
    Caller,
}

impl ConsoleTo<'_> {
    /// Hands `pty`'s master on: None once sent, the master for `Caller`.
    pub fn deliver(self, pty: &Pty) -> anyhow::Result<Option<OwnedFd>> {
        match self {
            ConsoleTo::Socket(sock) => {
                send_master(sock, &pty.master, &pty.slave_name)?;
                Ok(None)
            }
            ConsoleTo::Caller => Ok(Some(pty.master.try_clone()?)),
        }
    }
}

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_name: String,
}

pub fn open(size: TtySize) -> anyhow::Result<Pty> {
    let ws = nix::pty::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let p = nix::pty::openpty(Some(&ws), None).context("opening a pty")?;
    let mut t = nix::sys::termios::tcgetattr(&p.slave)?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&p.slave, nix::sys::termios::SetArg::TCSANOW, &t)?;
    let slave_name = std::fs::read_link(format!("/proc/self/fd/{}", p.slave.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/dev/ptmx".into());
    Ok(Pty {
        master: p.master,
        slave: p.slave,
        slave_name,
    })
}

/// Sends `master` over the unix socket at `socket`, its name as the message (runc's
/// `utils.SendFile`, what containerd's and conmon's console receivers expect).
pub fn send_master(socket: &Path, master: &OwnedFd, name: &str) -> anyhow::Result<()> {
    let s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to the console socket {}", socket.display()))?;
    let fd = master.as_raw_fd();
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header with one int (CMSG_SPACE above).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
    }
    // SAFETY: a valid socket and the message built above.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error())
            .context("sending the pty to the console socket");
    }
    Ok(())
}
