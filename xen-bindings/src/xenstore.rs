//! A xenstore client over libxenstore (LGPL, from libxen-dev): hx's own nodes (container spec,
//! exit status, readiness). Values written by guests are untrusted: reads are bounded and
//! parsed strictly.
use crate::error::XenError;
use libxl_sys as sys;
use std::ffi::{CStr, CString};

/// Largest value hx reads from a guest-writable node, and most entries listed.
pub const MAX_VALUE: usize = 4096;
pub const MAX_ENTRIES: usize = 1024;

pub struct Xenstore {
    h: *mut sys::xs_handle,
}

// SAFETY: libxenstore handles are thread-safe (they lock internally); we don't share them anyway.
unsafe impl Send for Xenstore {}

/// A permission entry: the first one is the owner and the default for everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: u32,
    pub read: bool,
    pub write: bool,
}

impl Perm {
    /// xenstore-chmod's notation: `n0`, `r5`, `w5`, `b5`.
    pub fn parse(s: &str) -> Option<Perm> {
        let (flag, id) = s.split_at(s.char_indices().nth(1).map(|(i, _)| i)?);
        let domid = id.parse().ok()?;
        let (read, write) = match flag {
            "n" => (false, false),
            "r" => (true, false),
            "w" => (false, true),
            "b" => (true, true),
            _ => return None,
        };
        Some(Perm { domid, read, write })
    }

    fn raw(&self) -> sys::xs_permissions {
        let mut p = sys::XS_PERM_NONE;
        if self.read {
            p |= sys::XS_PERM_READ;
        }
        if self.write {
            p |= sys::XS_PERM_WRITE;
        }
        sys::xs_permissions { id: self.domid, perms: p }
    }
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn cpath(path: &str) -> Result<CString, XenError> {
    if !path.starts_with('/') || path.len() > 3072 || path.contains("//") {
        return Err(XenError::InvalidConfig(format!("xenstore path {path:?}")));
    }
    CString::new(path).map_err(|_| XenError::InvalidConfig(format!("xenstore path {path:?} contains NUL")))
}

/// A value a guest wrote: bounded, UTF-8, no control characters but tab/newline.
pub fn check_untrusted(path: &str, bytes: &[u8]) -> Result<String, XenError> {
    let bad = |reason: &str| XenError::Untrusted { path: path.to_string(), reason: reason.to_string() };
    if bytes.len() > MAX_VALUE {
        return Err(bad("too long"));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("control characters"));
    }
    Ok(s.to_string())
}

impl Xenstore {
    pub fn open() -> Result<Self, XenError> {
        // SAFETY: xs_open returns NULL or a handle we own.
        let h = unsafe { sys::xs_open(0) };
        if h.is_null() {
            return Err(XenError::Xenstore { op: "open", path: String::new(), source: errno() });
        }
        Ok(Xenstore { h })
    }

    pub fn read(&self, tx: u32, path: &str) -> Result<Option<Vec<u8>>, XenError> {
        let c = cpath(path)?;
        let mut len = 0u32;
        // SAFETY: returns malloc'd bytes of len, or NULL with errno.
        unsafe {
            let p = sys::xs_read(self.h, tx, c.as_ptr(), &mut len);
            if p.is_null() {
                let e = errno();
                return if e.raw_os_error() == Some(libc::ENOENT) { Ok(None) } else { Err(XenError::Xenstore { op: "read", path: path.into(), source: e }) };
            }
            let v = std::slice::from_raw_parts(p as *const u8, len as usize).to_vec();
            libc::free(p);
            Ok(Some(v))
        }
    }

    /// Reads a node a guest may write, with the bounds and checks of `check_untrusted`.
    pub fn read_untrusted(&self, path: &str) -> Result<Option<String>, XenError> {
        self.read(0, path)?.map(|b| check_untrusted(path, &b)).transpose()
    }

    pub fn write(&self, tx: u32, path: &str, value: &[u8]) -> Result<(), XenError> {
        let c = cpath(path)?;
        // SAFETY: valid handle, path and buffer.
        if unsafe { sys::xs_write(self.h, tx, c.as_ptr(), value.as_ptr().cast(), value.len() as u32) } {
            Ok(())
        } else {
            Err(XenError::Xenstore { op: "write", path: path.into(), source: errno() })
        }
    }

    pub fn mkdir(&self, tx: u32, path: &str) -> Result<(), XenError> {
        let c = cpath(path)?;
        // SAFETY: valid handle and path.
        if unsafe { sys::xs_mkdir(self.h, tx, c.as_ptr()) } { Ok(()) } else { Err(XenError::Xenstore { op: "mkdir", path: path.into(), source: errno() }) }
    }

    pub fn rm(&self, tx: u32, path: &str) -> Result<(), XenError> {
        let c = cpath(path)?;
        // SAFETY: valid handle and path.
        if unsafe { sys::xs_rm(self.h, tx, c.as_ptr()) } || errno().raw_os_error() == Some(libc::ENOENT) {
            Ok(())
        } else {
            Err(XenError::Xenstore { op: "rm", path: path.into(), source: errno() })
        }
    }

    pub fn directory(&self, tx: u32, path: &str) -> Result<Vec<String>, XenError> {
        let c = cpath(path)?;
        let mut n = 0u32;
        // SAFETY: returns one malloc'd block holding n C strings.
        unsafe {
            let p = sys::xs_directory(self.h, tx, c.as_ptr(), &mut n);
            if p.is_null() {
                return Err(XenError::Xenstore { op: "directory", path: path.into(), source: errno() });
            }
            let out = (0..(n as usize).min(MAX_ENTRIES)).map(|i| CStr::from_ptr(*p.add(i)).to_string_lossy().into_owned()).collect();
            libc::free(p.cast());
            Ok(out)
        }
    }

    pub fn set_perms(&self, tx: u32, path: &str, perms: &[Perm]) -> Result<(), XenError> {
        let c = cpath(path)?;
        let mut raw: Vec<sys::xs_permissions> = perms.iter().map(Perm::raw).collect();
        // SAFETY: valid handle, path and permission array.
        if unsafe { sys::xs_set_permissions(self.h, tx, c.as_ptr(), raw.as_mut_ptr(), raw.len() as u32) } {
            Ok(())
        } else {
            Err(XenError::Xenstore { op: "set_permissions", path: path.into(), source: errno() })
        }
    }

    /// Runs `f` in a transaction, retrying when another writer got in the way (EAGAIN).
    pub fn transaction<T>(&self, mut f: impl FnMut(u32) -> Result<T, XenError>) -> Result<T, XenError> {
        for _ in 0..32 {
            // SAFETY: valid handle.
            let tx = unsafe { sys::xs_transaction_start(self.h) };
            if tx == 0 {
                return Err(XenError::Xenstore { op: "transaction_start", path: String::new(), source: errno() });
            }
            match f(tx) {
                Ok(v) => {
                    // SAFETY: ends the transaction we started.
                    if unsafe { sys::xs_transaction_end(self.h, tx, false) } {
                        return Ok(v);
                    }
                    if errno().raw_os_error() != Some(libc::EAGAIN) {
                        return Err(XenError::Xenstore { op: "transaction_end", path: String::new(), source: errno() });
                    }
                }
                Err(e) => {
                    // SAFETY: aborts the transaction we started.
                    unsafe { sys::xs_transaction_end(self.h, tx, true) };
                    return Err(e);
                }
            }
        }
        Err(XenError::Xenstore { op: "transaction", path: String::new(), source: std::io::Error::from_raw_os_error(libc::EAGAIN) })
    }

    pub fn watch(&self, path: &str, token: &str) -> Result<(), XenError> {
        let c = cpath(path)?;
        let t = CString::new(token).map_err(|_| XenError::InvalidConfig("token contains NUL".into()))?;
        // SAFETY: valid handle and strings.
        if unsafe { sys::xs_watch(self.h, c.as_ptr(), t.as_ptr()) } { Ok(()) } else { Err(XenError::Xenstore { op: "watch", path: path.into(), source: errno() }) }
    }

    /// Blocks for the next watch event: (path, token).
    pub fn read_watch(&self) -> Result<(String, String), XenError> {
        let mut n = 0u32;
        // SAFETY: returns a malloc'd vector of n strings (path, token).
        unsafe {
            let p = sys::xs_read_watch(self.h, &mut n);
            if p.is_null() || n < 2 {
                return Err(XenError::Xenstore { op: "read_watch", path: String::new(), source: errno() });
            }
            let path = CStr::from_ptr(*p /* XS_WATCH_PATH */).to_string_lossy().into_owned();
            let token = CStr::from_ptr(*p.add(1) /* XS_WATCH_TOKEN */).to_string_lossy().into_owned();
            libc::free(p.cast());
            Ok((path, token))
        }
    }
}

impl Drop for Xenstore {
    fn drop(&mut self) {
        // SAFETY: handle from xs_open, closed once.
        unsafe { sys::xs_close(self.h) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_like_xenstore_chmod() {
        assert_eq!(Perm::parse("n0"), Some(Perm { domid: 0, read: false, write: false }));
        assert_eq!(Perm::parse("b12"), Some(Perm { domid: 12, read: true, write: true }));
        assert_eq!(Perm::parse("r5").unwrap().raw().perms, sys::XS_PERM_READ);
        assert_eq!(Perm::parse("x5"), None);
        assert_eq!(Perm::parse("r"), None);
        assert_eq!(Perm::parse("rfoo"), None);
    }

    #[test]
    fn guest_values_are_bounded_and_strict() {
        assert_eq!(check_untrusted("/p", b"exited 3").unwrap(), "exited 3");
        assert!(check_untrusted("/p", &vec![b'a'; MAX_VALUE + 1]).is_err());
        assert!(check_untrusted("/p", b"\xff\xfe").is_err());
        assert!(check_untrusted("/p", b"ok\x1b[2J").is_err());
    }

    #[test]
    fn paths_are_checked() {
        assert!(cpath("relative").is_err());
        assert!(cpath("/a//b").is_err());
        assert!(cpath("/local/domain/0/hx").is_ok());
    }

    #[test]
    fn open_fails_cleanly_without_xenstored() {
        if crate::is_dom0() {
            return;
        }
        let e = Xenstore::open().err().expect("no xenstored here");
        assert!(e.to_string().starts_with("xenstore open"), "{e}");
    }
}
