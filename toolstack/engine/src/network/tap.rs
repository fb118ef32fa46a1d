//! Tap devices for backends that need one (QEMU). A tap opened here is not persistent: it
//! exists while a process holds its fd, so it vanishes with the VM even after a SIGKILL.
use anyhow::{bail, Context};
use std::os::fd::{AsRawFd, OwnedFd};

/// Creates tap `name` (IFF_VNET_HDR, for virtio-net offloads) and returns its fd.
pub fn open(name: &str) -> anyhow::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= libc::IFNAMSIZ {
        bail!("interface name {name:?} is too long");
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("creating tap {name}"));
    }
    Ok(f.into())
}
