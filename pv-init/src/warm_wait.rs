//! A warm guest (`hx.warm=1`) stops here, channels open and no disk read yet: a QEMU template
//! until the host restores a copy of it for a container, a Xen pool domain until it is taken;
//! either way the host then sends the go line (pv_init::warm).
use crate::devices::ControlSource;
use crate::InitError;
use pv_init::warm::{Go, CMDLINE_FLAG, MAX_LINE, READY, XEN_READY_NODE, XEN_READY_VALUE};
use std::io::Read;
use std::os::fd::AsRawFd;

pub fn requested() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|w| w == CMDLINE_FLAG)
}

/// Waits for the go line (the control port on QEMU, the control log on Xen), then takes the
/// host's clock and entropy, forgets what the template's boot cached of its placeholder disks
/// and, on Xen, waits for the disks the host hot-plugged.
pub fn wait(control: &mut ControlSource) -> Result<(), InitError> {
    let go = match control {
        ControlSource::File(port) => wait_on_port(port)?,
        ControlSource::Xenstore(client) => wait_on_xenstore(client)?,
    };
    set_wall_clock(go.unix_nanos);
    reseed(&go.entropy);
    forget_disk_caches();
    wait_for_disks(go.disks)
}

fn wait_on_port(port: &std::fs::File) -> Result<Go, InitError> {
    crate::console(READY);
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut byte = [0u8; 1];
    loop {
        // One byte at a time: whatever follows the line is the supervisor's to read.
        match (&*port).read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) if line.len() < MAX_LINE => line.push(byte[0]),
            Ok(1) => return Err(InitError::setup("warm start: go line too long")),
            // No host on the port (the template being saved): wait for one.
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(InitError::setup(format!("warm start: control port: {e}"))),
        }
    }
    Go::parse(&line).ok_or_else(|| InitError::setup("warm start: invalid go line"))
}

/// A Xen pool guest says it waits in its own xenstore directory (the pool's filler pauses it
/// then) and takes the first go line of the control log it already watches.
fn wait_on_xenstore(client: &mut xenstore_wire::Client) -> Result<Go, InitError> {
    let mut marker = xenstore_wire::Client::open_device(xenstore_wire::XENBUS_DEVICE)
        .map_err(|e| InitError::setup(format!("warm start: xenbus: {e}")))?;
    marker
        .write(XEN_READY_NODE, XEN_READY_VALUE.as_bytes())
        .map_err(|e| InitError::setup(format!("warm start: {XEN_READY_NODE}: {e}")))?;
    drop(marker);
    let mut last = 0;
    loop {
        if let Ok(Some(v)) = client.read(crate::devices::XEN_CONTROL_NODE) {
            if v.len() <= MAX_CONTROL_LOG {
                let (lines, top) =
                    pv_init::status::control_log::newer(&String::from_utf8_lossy(&v), last);
                last = top;
                if let Some(go) = lines.iter().find_map(|l| Go::parse(l.as_bytes())) {
                    return Ok(go);
                }
            }
        }
        // The node is read again after every event and at least once a second (a read that
        // failed after the go line's event must not leave the guest waiting for another).
        if client.queued_event().is_some() {
            continue;
        }
        let mut fds = [nix::poll::PollFd::new(
            client.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
        let readable = fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN));
        if readable {
            client
                .next_event()
                .map_err(|e| InitError::setup(format!("warm start: control node: {e}")))?;
        }
    }
}

/// The host's control log is a few numbered lines (pv_init::status::control_log::KEEP).
const MAX_CONTROL_LOG: usize = 4096;
/// How long hot-plugged disks get to appear (blkfront probes them after the host adds them).
const DISK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until `n` Xen disks are in /sys/block (none to wait for when n is 0); blkfront adds
/// a disk once it knows its size.
fn wait_for_disks(n: u32) -> Result<(), InitError> {
    if n == 0 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + DISK_WAIT;
    loop {
        let have: Vec<String> = crate::devices::disk_names()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with("xvd"))
            .collect();
        if have.len() >= n as usize {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(InitError::setup(format!(
                "warm start: {n} disks announced, {} appeared ({have:?})",
                have.len()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Sets the wall clock to the host's (a snapshot's is as old as the snapshot).
pub fn set_wall_clock(unix_nanos: u128) {
    let Ok(secs) = i64::try_from(unix_nanos / 1_000_000_000) else {
        return;
    };
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: (unix_nanos % 1_000_000_000) as i64,
    };
    // SAFETY: a valid timespec; failure leaves the snapshot's clock, nothing worse.
    unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
}

/// Mixes the host's bytes into the pool and reseeds the CRNG now (RNDRESEEDCRNG), so that
/// clones of one snapshot do not share random numbers.
fn reseed(entropy: &[u8; 32]) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/urandom") {
        let _ = std::io::Write::write_all(&mut &f, entropy);
        // _IO('R', 0x07)
        const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
        // SAFETY: an ioctl without an argument on a file we own.
        unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG as _) };
    }
}

/// The kernel's partition scan read the template's placeholder disks: drop those pages so
/// the container's disks (same devices, new backing files) are read afresh.
fn forget_disk_caches() {
    // _IO(0x12, 97)
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    let names = crate::devices::disk_names().unwrap_or_default();
    for name in names.iter().filter(|n| n.starts_with("vd")) {
        if let Ok(f) = std::fs::File::open(format!("/dev/{name}")) {
            // SAFETY: BLKFLSBUF takes no argument; f is an open block device.
            unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF as _, 0) };
        }
    }
}
