//! Devices on running domains (`xl block-attach/-detach/-list`, `network-attach/-detach/-list`):
//! attach and detach are libxl asynchronous operations; the lists are synchronous queries.
use super::Context;
use crate::error::XenError;
use crate::xlcfg::{Disk, Nic};
use libxl_sys as sys;
use std::ffi::{c_int, CStr, CString};

/// One vbd, as `xl block-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub devid: i32,
    pub backend_id: u32,
    pub frontend_id: u32,
    pub state: i32,
    pub evtch: i32,
    pub rref: i32,
    pub backend: String,
}

/// One vif, as `xl network-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicInfo {
    pub devid: i32,
    pub backend_id: u32,
    pub mac: [u8; 6],
    pub state: i32,
    pub evtch: i32,
    pub rref_tx: i32,
    pub rref_rx: i32,
    pub backend: String,
}

/// Longest xenstore path (XENSTORE_ABS_PATH_MAX); longer values are cut there.
const XS_PATH_MAX: usize = 3072;

/// A xenstore value libxl read for us (a backend path), as one line of printable ASCII: a
/// guest can write its own frontend nodes, so nothing here reaches a terminal raw. Bytes
/// outside `!`..`~` become `\xNN`; at most XS_PATH_MAX bytes are read.
pub(crate) fn xs_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().min(XS_PATH_MAX));
    for &b in bytes.iter().take(XS_PATH_MAX) {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn text(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated C string owned by the struct it came from, read before the
        // struct is disposed.
        xs_text(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

impl Context {
    /// Adds a disk to a running domain (`xl block-attach`).
    pub async fn disk_attach(&self, domid: u32, disk: Disk) -> Result<(), XenError> {
        let wait = self.start_ao("device_disk_add", disk, |ctx, d, how| {
            // SAFETY: the disk lives until the completion callback.
            unsafe { sys::libxl_device_disk_add(ctx, domid, &raw mut (*d).0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// The attached disk the guest knows as `vdev`, as libxl describes it.
    fn disk_of_vdev(&self, domid: u32, vdev: &str) -> Result<Disk, XenError> {
        let c = CString::new(vdev)
            .map_err(|_| XenError::InvalidConfig(format!("vdev {vdev:?} contains NUL")))?;
        let mut disk = Disk::new();
        // SAFETY: valid context, C string and initialised disk.
        let rc =
            unsafe { sys::libxl_vdev_to_device_disk(self.ctx(), domid, c.as_ptr(), &mut disk.0) };
        if rc != 0 {
            return Err(XenError::libxl_with(
                "vdev_to_device_disk",
                sys::ERROR_NOTFOUND,
                Some(format!("Device {vdev} not connected")),
            ));
        }
        Ok(disk)
    }

    /// Removes the disk the guest knows as `vdev` (`xl block-detach`: the guest is asked to let
    /// go of it first).
    pub async fn disk_detach(&self, domid: u32, vdev: &str) -> Result<(), XenError> {
        let disk = self.disk_of_vdev(domid, vdev)?;
        let wait = self.start_ao("device_disk_safe_remove", disk, |ctx, d, how| {
            // SAFETY: the disk lives until the completion callback.
            unsafe { sys::libxl_device_disk_safe_remove(ctx, domid, &raw mut (*d).0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// Removes the disk the guest knows as `vdev` (`xl block-detach --force`'s way: the guest is
    /// asked to let go first; after libxl's timeout the backend goes regardless).
    pub async fn disk_remove(&self, domid: u32, vdev: &str) -> Result<(), XenError> {
        let disk = self.disk_of_vdev(domid, vdev)?;
        let wait = self.start_ao("device_disk_remove", disk, |ctx, d, how| {
            // SAFETY: the disk lives until the completion callback.
            unsafe { sys::libxl_device_disk_remove(ctx, domid, &raw mut (*d).0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// The domain's vbds (`xl block-list`).
    pub fn disks(&self, domid: u32) -> Result<Vec<BlockInfo>, XenError> {
        let mut n: c_int = 0;
        let mut out = Vec::new();
        // SAFETY: n disks from libxl, each queried and its info disposed, the list freed.
        unsafe {
            let list = sys::libxl_device_disk_list(self.ctx(), domid, &mut n);
            if list.is_null() {
                return Ok(out);
            }
            for i in 0..n as usize {
                let mut info: sys::libxl_diskinfo = std::mem::zeroed();
                sys::libxl_diskinfo_init(&mut info);
                // Disposed only after a success, as xl does: on some failures libxl 4.17 has
                // already freed `backend` without clearing it (libxl_disk.c, getinfo's `out:`),
                // and a dispose would free it twice.
                if sys::libxl_device_disk_getinfo(self.ctx(), domid, list.add(i), &mut info) == 0 {
                    out.push(BlockInfo {
                        devid: info.devid,
                        backend_id: info.backend_id,
                        frontend_id: info.frontend_id,
                        state: info.state,
                        evtch: info.evtch,
                        rref: info.rref,
                        backend: text(info.backend),
                    });
                    sys::libxl_diskinfo_dispose(&mut info);
                }
            }
            sys::libxl_device_disk_list_free(list, n);
        }
        Ok(out)
    }

    /// Adds a vif to a running domain (`xl network-attach`).
    pub async fn nic_attach(&self, domid: u32, nic: Nic) -> Result<(), XenError> {
        let wait = self.start_ao("device_nic_add", nic, |ctx, n, how| {
            // SAFETY: the nic lives until the completion callback.
            unsafe { sys::libxl_device_nic_add(ctx, domid, &raw mut (*n).0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// Removes the vif with this devid or MAC (`xl network-detach`).
    pub async fn nic_detach(&self, domid: u32, which: &str) -> Result<(), XenError> {
        // SAFETY: init on zeroed memory; libxl fills it.
        let mut nic = unsafe {
            let mut n: sys::libxl_device_nic = std::mem::zeroed();
            sys::libxl_device_nic_init(&mut n);
            Nic(n)
        };
        let rc = if which.contains(':') {
            let c = CString::new(which)
                .map_err(|_| XenError::InvalidConfig(format!("{which:?} contains NUL")))?;
            // SAFETY: valid context, C string, initialised nic.
            unsafe { sys::libxl_mac_to_device_nic(self.ctx(), domid, c.as_ptr(), &mut nic.0) }
        } else {
            let devid: c_int = which
                .parse()
                .map_err(|_| XenError::InvalidConfig(format!("Unknown device {which}.")))?;
            // SAFETY: as above.
            unsafe { sys::libxl_devid_to_device_nic(self.ctx(), domid, devid, &mut nic.0) }
        };
        if rc != 0 {
            return Err(XenError::libxl_with(
                "devid_to_device_nic",
                sys::ERROR_NOTFOUND,
                Some(format!("Unknown device {which}.")),
            ));
        }
        let wait = self.start_ao("device_nic_remove", nic, |ctx, n, how| {
            // SAFETY: the nic lives until the completion callback.
            unsafe { sys::libxl_device_nic_remove(ctx, domid, &raw mut (*n).0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// The domain's vifs (`xl network-list`).
    pub fn nics(&self, domid: u32) -> Result<Vec<NicInfo>, XenError> {
        let mut n: c_int = 0;
        let mut out = Vec::new();
        // SAFETY: as `disks`.
        unsafe {
            let list = sys::libxl_device_nic_list(self.ctx(), domid, &mut n);
            if list.is_null() {
                return Ok(out);
            }
            for i in 0..n as usize {
                let mut info: sys::libxl_nicinfo = std::mem::zeroed();
                sys::libxl_nicinfo_init(&mut info);
                if sys::libxl_device_nic_getinfo(self.ctx(), domid, list.add(i), &mut info) == 0 {
                    out.push(NicInfo {
                        devid: info.devid,
                        backend_id: info.backend_id,
                        mac: (*list.add(i)).mac,
                        state: info.state,
                        evtch: info.evtch,
                        rref_tx: info.rref_tx,
                        rref_rx: info.rref_rx,
                        backend: text(info.backend),
                    });
                }
                sys::libxl_nicinfo_dispose(&mut info);
            }
            sys::libxl_device_nic_list_free(list, n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backend_paths_pass_and_the_rest_is_escaped() {
        let p = "/local/domain/0/backend/vbd/4/268441856";
        assert_eq!(xs_text(p.as_bytes()), p);
        // A freed or hostile value: raw high bytes, an escape sequence, a line break.
        assert_eq!(xs_text(b"\xe3gh^\xc8"), "\\xe3gh^\\xc8");
        assert_eq!(xs_text(b"a\x1b[2Jb\nc d"), "a\\x1b[2Jb\\x0ac\\x20d");
        assert_eq!(
            xs_text(b"a\\b"),
            "a\\x5cb",
            "a backslash cannot fake an escape"
        );
        assert_eq!(xs_text(&[b'a'; 5000]).len(), XS_PATH_MAX);
    }

    proptest! {
        /// Whatever libxl hands back: one line of printable ASCII, bounded, and a printable
        /// path without backslashes comes out unchanged.
        #[test]
        fn any_bytes_are_one_printable_line(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let t = xs_text(&bytes);
            prop_assert!(t.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert!(t.len() <= 4 * XS_PATH_MAX);
            if bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\') {
                prop_assert_eq!(t.as_bytes(), &bytes[..]);
            }
        }
    }
}
