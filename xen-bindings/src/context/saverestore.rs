//! Domain configs as libxl's own JSON (`xl list -l`, `xl create -n`) and save/restore (`xl save`,
//! `xl restore`): libxl_retrieve_domain_configuration, libxl_domain_config_{to,from}_json,
//! libxl_domain_suspend/resume and libxl_domain_create_restore. The save file's header is
//! crate::savefile's; libxl writes and reads the stream after it on the same fd.
use super::{Context, Creating};
use crate::config::LibxlConfig;
use crate::error::XenError;
use crate::xlcfg::ShutdownAction;
use libxl_sys as sys;
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};

/// libxl's malloc'd JSON text as a String (freed here); None for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string from malloc.
unsafe fn take_json(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    // SAFETY: malloc'd by libxl (strdup), ours now.
    unsafe { libc::free(p.cast()) };
    Some(s)
}

fn action_from_libxl(a: sys::libxl_action_on_shutdown) -> Option<ShutdownAction> {
    Some(match a {
        sys::LIBXL_ACTION_ON_SHUTDOWN_DESTROY => ShutdownAction::Destroy,
        sys::LIBXL_ACTION_ON_SHUTDOWN_RESTART => ShutdownAction::Restart,
        sys::LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME => ShutdownAction::RenameRestart,
        sys::LIBXL_ACTION_ON_SHUTDOWN_PRESERVE => ShutdownAction::Preserve,
        sys::LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_DESTROY => ShutdownAction::CoredumpDestroy,
        sys::LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_RESTART => ShutdownAction::CoredumpRestart,
        sys::LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET => ShutdownAction::SoftReset,
        _ => return None,
    })
}

impl LibxlConfig {
    /// The domain's name (c_info.name), if set.
    pub fn name(&self) -> Option<String> {
        let p = self.inner.c_info.name;
        // SAFETY: NULL or a C string libxl (or we) stored.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// The domain id asked for at creation (c_info.domid): 0 for any, as `xl save` stores it
    /// unless -D.
    pub fn set_requested_domid(&mut self, domid: u32) {
        self.inner.c_info.domid = domid;
    }

    /// on_poweroff, on_reboot and on_crash; None where the config leaves libxl's default (which
    /// is destroy).
    pub fn actions(&self) -> [Option<ShutdownAction>; 3] {
        let c = &self.inner;
        [c.on_poweroff, c.on_reboot, c.on_crash].map(action_from_libxl)
    }

    /// The nodes libxl writes under the domain's xenstore path at creation (c_info.xsdata).
    pub fn xsdata(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let list = self.inner.c_info.xsdata;
        if list.is_null() {
            return out;
        }
        // SAFETY: a NULL-terminated array of key, value, key, value ... C strings; libxl's
        // JSON parser stores a NULL value for JSON null.
        unsafe {
            let mut i = 0;
            while !(*list.add(i)).is_null() {
                let k = CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned();
                let v = *list.add(i + 1);
                let v = if v.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(v).to_string_lossy().into_owned()
                };
                out.push((k, v));
                i += 2;
            }
        }
        out
    }

    /// Adds (or replaces) an xsdata node: written by libxl in the transaction that creates the
    /// domain, so the domain is never without it.
    pub fn set_xsdata(&mut self, key: &str, value: &str) -> Result<(), XenError> {
        let mut pairs: Vec<(String, String)> = self
            .xsdata()
            .into_iter()
            .filter(|(k, _)| k != key)
            .collect();
        pairs.push((key.to_string(), value.to_string()));
        let list = crate::config::calloc::<*mut c_char>(pairs.len() * 2 + 1);
        for (i, (k, v)) in pairs.iter().enumerate() {
            let (k, v) = match (
                crate::config::libxl_str("xsdata key", k),
                crate::config::libxl_str("xsdata value", v),
            ) {
                (Ok(k), Ok(v)) => (k, v),
                (k, v) => {
                    let mut l = list;
                    // SAFETY: the partial list is NULL-terminated (calloc'd) and ours.
                    unsafe {
                        for p in [k.ok(), v.ok()].into_iter().flatten() {
                            libc::free(p.cast());
                        }
                        sys::libxl_key_value_list_dispose(&mut l);
                    }
                    return Err(XenError::InvalidConfig(format!("xsdata {key:?}")));
                }
            };
            // SAFETY: 2*len+1 slots.
            unsafe {
                *list.add(2 * i) = k;
                *list.add(2 * i + 1) = v;
            }
        }
        // SAFETY: the old list is libxl's (malloc'd), replaced by ours.
        unsafe { sys::libxl_key_value_list_dispose(&mut self.inner.c_info.xsdata) };
        self.inner.c_info.xsdata = list;
        Ok(())
    }
}

/// A restore in flight: what libxl reads until it completes.
struct Restoring {
    creating: Creating,
    params: sys::libxl_domain_restore_params,
    _fd: OwnedFd,
}

// SAFETY: params holds only a NULL string pointer (colo_proxy_script, unused); libxl reads it
// from the event thread.
unsafe impl Send for Restoring {}

impl Drop for Restoring {
    fn drop(&mut self) {
        // SAFETY: initialised by libxl_domain_restore_params_init.
        unsafe { sys::libxl_domain_restore_params_dispose(&mut self.params) }
    }
}

impl Context {
    /// libxl's JSON of a config, as `xl create -n` prints it (yajl's beautified form).
    pub fn config_json(&self, cfg: &mut LibxlConfig) -> Result<String, XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: a valid context and an initialised config; the result is malloc'd.
        let p = unsafe { sys::libxl_domain_config_to_json(self.ctx(), &mut cfg.inner) };
        // SAFETY: NULL or libxl's strdup.
        unsafe { take_json(p) }.ok_or_else(|| {
            self.inner
                .error("domain_config_to_json", sys::ERROR_FAIL, mark)
        })
    }

    /// Creates a domain from a libxl config (a restored domain's, made again on reboot), left
    /// paused like `create`.
    pub async fn create_config(&self, cfg: LibxlConfig) -> Result<u32, XenError> {
        self.create_libxl(cfg).await
    }

    /// A config from libxl's JSON (a save file's: hostile, bounded by the caller), parsed by libxl.
    pub fn config_from_json(&self, json: &str) -> Result<LibxlConfig, XenError> {
        let text = CString::new(json)
            .map_err(|_| XenError::InvalidConfig("the config JSON contains NUL".into()))?;
        let mut cfg = LibxlConfig::new();
        let mark = self.inner.logger().mark();
        // SAFETY: valid context, initialised config, NUL-terminated text.
        let rc = unsafe {
            sys::libxl_domain_config_from_json(self.ctx(), &mut cfg.inner, text.as_ptr())
        };
        self.check("domain_config_from_json", mark, rc)?;
        Ok(cfg)
    }

    /// What libxl knows of a running domain's config (`xl list -l`, what `xl save` stores).
    pub async fn retrieve_config(&self, domid: u32) -> Result<LibxlConfig, XenError> {
        let wait = self.start_ao(
            "retrieve_domain_configuration",
            LibxlConfig::new(),
            |ctx, cfg, how| {
                // SAFETY: the config lives until the completion callback.
                unsafe {
                    sys::libxl_retrieve_domain_configuration(ctx, domid, &raw mut (*cfg).inner, how)
                }
            },
        )?;
        wait.finish().await
    }

    /// Suspends the domain and writes libxl's stream to `fd` (after the caller's header). The
    /// domain is left suspended (shut down, reason suspend): `resume` it or destroy it.
    pub async fn suspend(&self, domid: u32, fd: OwnedFd) -> Result<(), XenError> {
        let raw = fd.as_raw_fd();
        let wait = self.start_ao("domain_suspend", fd, |ctx, _, how| {
            // SAFETY: the fd stays open until the completion callback.
            unsafe { sys::libxl_domain_suspend(ctx, domid, raw, 0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// Resumes a suspended domain where it stopped (suspend_cancel, as `xl save -c`).
    pub async fn resume(&self, domid: u32) -> Result<(), XenError> {
        let wait = self.start_ao("domain_resume", (), |ctx, _, how| {
            // SAFETY: plain arguments.
            unsafe { sys::libxl_domain_resume(ctx, domid, 1, how) }
        })?;
        wait.finish().await
    }

    /// Creates a domain from `cfg` and the v2 libxl stream that `fd` is positioned at; the
    /// domain is left paused, like `create`.
    pub async fn create_restore(&self, cfg: LibxlConfig, fd: OwnedFd) -> Result<u32, XenError> {
        // SAFETY: zeroed then initialised, as libxl requires.
        let mut params: sys::libxl_domain_restore_params = unsafe { std::mem::zeroed() };
        unsafe { sys::libxl_domain_restore_params_init(&mut params) };
        params.stream_version = 2;
        params.checkpointed_stream = sys::LIBXL_CHECKPOINTED_STREAM_NONE as c_int;
        let raw = fd.as_raw_fd();
        let keep = Restoring {
            creating: Creating {
                cfg,
                domid: u32::MAX,
            },
            params,
            _fd: fd,
        };
        let wait = self.start_ao("domain_create_restore", keep, |ctx, keep, how| {
            // SAFETY: config, domid slot, params and fd live until the completion callback.
            unsafe {
                sys::libxl_domain_create_restore(
                    ctx,
                    &raw mut (*keep).creating.cfg.inner,
                    &raw mut (*keep).creating.domid,
                    raw,
                    -1,
                    &raw const (*keep).params,
                    how,
                    std::ptr::null(),
                )
            }
        })?;
        Ok(wait.finish().await?.creating.domid)
    }
}

/// libxl's JSON of a config without a context, for tests on machines without Xen: libxl uses
/// the context only to log a generator failure, which a config from libxl's init and
/// libxlutil's parsers does not produce.
#[cfg(test)]
pub(crate) fn config_json_for_test(cfg: &mut LibxlConfig) -> String {
    // SAFETY: see above; the result is malloc'd.
    unsafe {
        take_json(sys::libxl_domain_config_to_json(
            std::ptr::null_mut(),
            &mut cfg.inner,
        ))
    }
    .expect("libxl_domain_config_to_json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsdata_is_set_and_read_back() {
        let mut cfg = LibxlConfig::new();
        assert!(cfg.xsdata().is_empty());
        cfg.set_xsdata("hx/restoring", "1").unwrap();
        cfg.set_xsdata("a", "b").unwrap();
        cfg.set_xsdata("hx/restoring", "2").unwrap();
        assert_eq!(
            cfg.xsdata(),
            vec![
                ("a".into(), "b".into()),
                ("hx/restoring".into(), "2".into())
            ]
        );
        assert!(cfg.set_xsdata("x\0", "y").is_err());
        assert_eq!(cfg.xsdata().len(), 2);
        let json = config_json_for_test(&mut cfg);
        assert!(json.contains("\"hx/restoring\": \"2\""), "{json}");
    }
}
