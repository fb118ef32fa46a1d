//! A template guest (`hx.warm=1`) stops here, channels open and no disk read yet, until the
//! host restores a copy of it for a container and sends the go line (pv_init::warm).
use crate::devices::ControlSource;
use crate::InitError;
use pv_init::warm::{Go, CMDLINE_FLAG, MAX_LINE, READY};
use std::io::Read;
use std::os::fd::AsRawFd;

pub fn requested() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|w| w == CMDLINE_FLAG)
}

/// Waits for the go line on the control port, then takes the host's clock and entropy and
/// forgets what the template's boot cached of its placeholder disks.
pub fn wait(control: &ControlSource) -> Result<(), InitError> {
    let ControlSource::File(port) = control else {
        return Err(InitError::setup("warm start needs the hx.control port"));
    };
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
    let go = Go::parse(&line).ok_or_else(|| InitError::setup("warm start: invalid go line"))?;
    set_wall_clock(go.unix_nanos);
    reseed(&go.entropy);
    forget_disk_caches();
    Ok(())
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
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("vd") {
            continue;
        }
        if let Ok(f) = std::fs::File::open(format!("/dev/{name}")) {
            // SAFETY: BLKFLSBUF takes no argument; f is an open block device.
            unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF as _, 0) };
        }
    }
}
