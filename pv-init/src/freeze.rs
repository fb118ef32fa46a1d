//! `hx volume snapshot`: the filesystem of a volume frozen in the guest (FIFREEZE: writes
//! flushed to the disk, new ones held) while the host copies the volume's disk, thawed when
//! the host is done (the end of its input), gone, or after MAX_HOLD.
use crate::copy::CopyError;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// A guest whose host vanished mid-copy does not stay frozen longer than this.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// The filesystem mounted at a path, frozen until this is dropped.
pub struct Frozen(std::fs::File);

pub fn freeze(mount_point: &Path) -> Result<Frozen, CopyError> {
    let err = |e: String| CopyError::Io(mount_point.display().to_string(), e);
    let f = std::fs::File::open(mount_point).map_err(|e| err(e.to_string()))?;
    let mut arg: libc::c_int = 0;
    // SAFETY: FIFREEZE takes an int it does not read; `f` is an open descriptor.
    unsafe { fifreeze(f.as_raw_fd(), &mut arg) }.map_err(|e| err(format!("freeze: {e}")))?;
    Ok(Frozen(f))
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let mut arg: libc::c_int = 0;
        // SAFETY: as above.
        let _ = unsafe { fithaw(self.0.as_raw_fd(), &mut arg) };
    }
}
