//! A libxl context: create, destroy, list and control domains.
//!
//! libxl calls are synchronous here (`ao_how` NULL): the toolstack runs them on a blocking
//! thread (`tokio::task::spawn_blocking`), which is how hx awaits a domain creation. libxl is
//! told to reap only its own children (`libxl_sigchld_owner_libxl_always_selective_reap`), so it
//! coexists with tokio's child handling.
use crate::config::DomainConfig;
use crate::error::XenError;
use libxl_sys as sys;
use std::ffi::CStr;

/// One libxl context. Not Sync: libxl contexts are used from one thread at a time.
pub struct Context {
    ctx: *mut sys::libxl_ctx,
    logger: *mut sys::xentoollog_logger_stdiostream,
    // Keeps the hooks alive as long as libxl may read them.
    _hooks: Box<sys::libxl_childproc_hooks>,
}

// SAFETY: the context may move between threads; it is never shared (no Sync).
unsafe impl Send for Context {}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DomainInfo {
    pub domid: u32,
    pub name: Option<String>,
    pub running: bool,
    pub blocked: bool,
    pub paused: bool,
    pub shutdown: bool,
    pub dying: bool,
    pub shutdown_reason: Option<u32>,
    pub memory_kb: u64,
    pub max_memory_kb: u64,
    pub vcpus_online: u32,
    pub cpu_time_ns: u64,
    pub pvh: bool,
}

impl Context {
    /// A context logging libxl's warnings and errors to stderr.
    pub fn new() -> Result<Self, XenError> {
        if !crate::is_dom0() {
            return Err(XenError::NotDom0);
        }
        // SAFETY: standard libxl setup sequence; every pointer is checked.
        unsafe {
            let stderr = libc::fdopen(libc::dup(2), c"w".as_ptr());
            let logger = sys::xtl_createlogger_stdiostream(stderr as *mut sys::FILE, sys::XTL_WARN, 0);
            let mut ctx = std::ptr::null_mut();
            let rc = sys::libxl_ctx_alloc(&mut ctx, sys::LIBXL_VERSION as i32, 0, logger as *mut sys::xentoollog_logger);
            if rc != 0 {
                sys::xtl_logger_destroy(logger as *mut sys::xentoollog_logger);
                return Err(XenError::libxl("ctx_alloc", rc));
            }
            let mut hooks: Box<sys::libxl_childproc_hooks> = Box::new(std::mem::zeroed());
            hooks.chldowner = sys::libxl_sigchld_owner_libxl_always_selective_reap;
            sys::libxl_childproc_setmode(ctx, &*hooks, std::ptr::null_mut());
            Ok(Context { ctx, logger, _hooks: hooks })
        }
    }

    fn check(op: &'static str, rc: i32) -> Result<(), XenError> {
        if rc == 0 { Ok(()) } else { Err(XenError::libxl(op, rc)) }
    }

    /// Creates and starts a domain; returns its id.
    pub fn create(&mut self, config: &DomainConfig) -> Result<u32, XenError> {
        let mut cfg = config.to_libxl()?;
        let mut domid = 0u32;
        // SAFETY: valid context and initialised config; synchronous call.
        let rc = unsafe { sys::libxl_domain_create_new(self.ctx, &mut cfg.inner, &mut domid, std::ptr::null(), std::ptr::null()) };
        Self::check("domain_create_new", rc)?;
        Ok(domid)
    }

    pub fn destroy(&mut self, domid: u32) -> Result<(), XenError> {
        // SAFETY: valid context; synchronous.
        Self::check("domain_destroy", unsafe { sys::libxl_domain_destroy(self.ctx, domid, std::ptr::null()) })
    }

    pub fn shutdown(&mut self, domid: u32) -> Result<(), XenError> {
        // SAFETY: valid context; synchronous.
        Self::check("domain_shutdown", unsafe { sys::libxl_domain_shutdown(self.ctx, domid, std::ptr::null()) })
    }

    pub fn reboot(&mut self, domid: u32) -> Result<(), XenError> {
        // SAFETY: valid context; synchronous.
        Self::check("domain_reboot", unsafe { sys::libxl_domain_reboot(self.ctx, domid, std::ptr::null()) })
    }

    pub fn pause(&mut self, domid: u32) -> Result<(), XenError> {
        // SAFETY: valid context; synchronous.
        Self::check("domain_pause", unsafe { sys::libxl_domain_pause(self.ctx, domid, std::ptr::null()) })
    }

    pub fn unpause(&mut self, domid: u32) -> Result<(), XenError> {
        // SAFETY: valid context; synchronous.
        Self::check("domain_unpause", unsafe { sys::libxl_domain_unpause(self.ctx, domid, std::ptr::null()) })
    }

    pub fn set_memory_target_kb(&mut self, domid: u32, kb: u64) -> Result<(), XenError> {
        // SAFETY: valid context.
        Self::check("set_memory_target", unsafe { sys::libxl_set_memory_target(self.ctx, domid, kb as i64, 0, 1) })
    }

    /// Brings vCPUs 0..n online, the rest offline.
    pub fn set_vcpus_online(&mut self, domid: u32, n: u32) -> Result<(), XenError> {
        // SAFETY: bitmap allocated, filled, used and disposed here.
        unsafe {
            let mut map: sys::libxl_bitmap = std::mem::zeroed();
            sys::libxl_bitmap_init(&mut map);
            Self::check("bitmap_alloc", sys::libxl_bitmap_alloc(self.ctx, &mut map, n as i32))?;
            for i in 0..n {
                sys::libxl_bitmap_set(&mut map, i as i32);
            }
            let rc = sys::libxl_set_vcpuonline(self.ctx, domid, &mut map, std::ptr::null());
            sys::libxl_bitmap_dispose(&mut map);
            Self::check("set_vcpuonline", rc)
        }
    }

    fn info_from(&self, d: &sys::libxl_dominfo) -> DomainInfo {
        // SAFETY: libxl returns a malloc'd name or NULL.
        let name = unsafe {
            let p = sys::libxl_domid_to_name(self.ctx, d.domid);
            if p.is_null() {
                None
            } else {
                let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                libc::free(p.cast());
                Some(s)
            }
        };
        DomainInfo {
            domid: d.domid,
            name,
            running: d.running,
            blocked: d.blocked,
            paused: d.paused,
            shutdown: d.shutdown,
            dying: d.dying,
            shutdown_reason: d.shutdown.then_some(d.shutdown_reason as u32),
            memory_kb: d.current_memkb,
            max_memory_kb: d.max_memkb,
            vcpus_online: d.vcpu_online,
            cpu_time_ns: d.cpu_time,
            pvh: d.domain_type == sys::LIBXL_DOMAIN_TYPE_PVH,
        }
    }

    /// All domains, as `xl list` shows them.
    pub fn list(&mut self) -> Result<Vec<DomainInfo>, XenError> {
        let mut n = 0;
        // SAFETY: libxl returns an array of n entries freed with libxl_dominfo_list_free.
        unsafe {
            let list = sys::libxl_list_domain(self.ctx, &mut n);
            if list.is_null() {
                return Err(XenError::libxl("list_domain", sys::ERROR_FAIL));
            }
            let out = (0..n as usize).map(|i| self.info_from(&*list.add(i))).collect();
            sys::libxl_dominfo_list_free(list, n);
            Ok(out)
        }
    }

    pub fn info(&mut self, domid: u32) -> Result<DomainInfo, XenError> {
        // SAFETY: info initialised, filled by libxl, disposed.
        unsafe {
            let mut d: sys::libxl_dominfo = std::mem::zeroed();
            sys::libxl_dominfo_init(&mut d);
            let rc = sys::libxl_domain_info(self.ctx, &mut d, domid);
            let r = if rc == 0 { Ok(self.info_from(&d)) } else { Err(XenError::libxl("domain_info", rc)) };
            sys::libxl_dominfo_dispose(&mut d);
            r
        }
    }

    pub fn domid_by_name(&mut self, name: &str) -> Result<u32, XenError> {
        let c = std::ffi::CString::new(name).map_err(|_| XenError::InvalidConfig("name contains NUL".into()))?;
        let mut domid = 0u32;
        // SAFETY: valid context and C string.
        Self::check("name_to_domid", unsafe { sys::libxl_name_to_domid(self.ctx, c.as_ptr(), &mut domid) })?;
        Ok(domid)
    }

    /// The pty of a domain's console (`num` 0) or of its PV console channel `num`.
    pub fn console_tty(&mut self, domid: u32, num: i32) -> Result<String, XenError> {
        let mut path = std::ptr::null_mut();
        // SAFETY: libxl returns a malloc'd path.
        unsafe {
            Self::check("console_get_tty", sys::libxl_console_get_tty(self.ctx, domid, num, sys::LIBXL_CONSOLE_TYPE_PV, &mut path))?;
            let s = CStr::from_ptr(path).to_string_lossy().into_owned();
            libc::free(path.cast());
            Ok(s)
        }
    }

    /// Blocks until the domain dies (or is destroyed); returns its last info if still known.
    pub fn wait_for_death(&mut self, domid: u32) -> Result<(), XenError> {
        // SAFETY: event generator enabled, one event waited for and freed, generator disabled.
        unsafe {
            let mut gen = std::ptr::null_mut();
            Self::check("evenable_domain_death", sys::libxl_evenable_domain_death(self.ctx, domid, 0, &mut gen))?;
            loop {
                let mut ev = std::ptr::null_mut();
                let rc = sys::libxl_event_wait(self.ctx, &mut ev, u64::MAX, None, std::ptr::null_mut());
                if rc != 0 {
                    sys::libxl_evdisable_domain_death(self.ctx, gen);
                    return Err(XenError::libxl("event_wait", rc));
                }
                let kind = (*ev).type_;
                let done = (*ev).domid == domid && (kind == sys::LIBXL_EVENT_TYPE_DOMAIN_DEATH || kind == sys::LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN);
                sys::libxl_event_free(self.ctx, ev);
                if done {
                    sys::libxl_evdisable_domain_death(self.ctx, gen);
                    return Ok(());
                }
            }
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: allocated in new(); freed once.
        unsafe {
            sys::libxl_ctx_free(self.ctx);
            sys::xtl_logger_destroy(self.logger as *mut sys::xentoollog_logger);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_start_outside_dom0() {
        if crate::is_dom0() {
            return; // the lab exercises the real thing
        }
        assert!(matches!(Context::new(), Err(XenError::NotDom0)));
    }

    /// Lists domains, dom0 first: `cargo test -p xen-bindings -- --ignored` inside a dom0.
    #[test]
    #[ignore = "needs a Xen dom0 (tests/xen-lab)"]
    fn lists_dom0_in_a_dom0() {
        let mut ctx = Context::new().unwrap();
        let list = ctx.list().unwrap();
        assert_eq!(list[0].domid, 0);
        assert_eq!(ctx.domid_by_name("Domain-0").unwrap(), 0);
    }
}
