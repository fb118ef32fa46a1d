//! A libxl context: create, destroy, list and control domains; domain events.
//!
//! Long operations (create, destroy, shutdown, reboot, pause, unpause, vCPUs) are libxl
//! asynchronous operations: started with an `ao_how` completion callback and awaited through a
//! oneshot channel. The callback runs on the context's event thread (event_loop.rs), which runs
//! libxl's event loop for as long as the context lives. Quick queries (list, info, tty lookups,
//! memory target) are plain synchronous libxl calls on the caller's thread: call them from
//! `spawn_blocking` or accept a short block.
//!
//! Thread safety: libxl contexts are thread-safe (libxl.h, "libxl memory management"), so
//! `Context` is `Send + Sync` and may be shared (e.g. in an `Arc`) by tokio tasks.
use crate::config::{DomainConfig, LibxlConfig};

mod admin;
mod cpupool;
mod devices;
pub(crate) mod saverestore;
use crate::error::XenError;
use crate::event_loop::{self, Owned, QUIT_BYTE};
use crate::events::{self, Dispatch, DomainEvent, ShutdownReason};
use crate::logger::TracingLogger;
use crate::sigchld::SigchldForward;
pub use admin::{CpupoolInfo, Credit2, Trigger, VcpuInfo};
pub use devices::{BlockInfo, NicInfo};
use libxl_sys as sys;
use std::ffi::{c_int, c_void, CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// One libxl context and its event thread.
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: *mut sys::libxl_ctx,
    /// Owned by the event thread, which frees it after the context.
    logger: *const TracingLogger,
    dispatch: Arc<Dispatch>,
    wake_wr: OwnedFd,
    sigchld: Option<SigchldForward>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

// SAFETY: libxl contexts are thread-safe; the logger is only read through a Mutex.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sigchld.take();
        // SAFETY: writing one byte to our own pipe.
        unsafe { libc::write(self.wake_wr.as_raw_fd(), [QUIT_BYTE].as_ptr().cast(), 1) };
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            // On the event thread itself (last handle dropped in a callback) the loop ends on
            // its own after the callback returns.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// A domain as `xl list` / `xl list -l` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DomainInfo {
    pub domid: u32,
    pub name: Option<String>,
    pub uuid: String,
    pub running: bool,
    pub blocked: bool,
    pub paused: bool,
    pub shutdown: bool,
    pub dying: bool,
    pub shutdown_reason: Option<ShutdownReason>,
    pub memory_kb: u64,
    pub max_memory_kb: u64,
    pub vcpus_online: u32,
    pub vcpus_max: u32,
    pub cpu_time_ns: u64,
    pub pvh: bool,
    /// The CPU pool the domain runs in.
    pub cpupool: u32,
    /// The XSM/FLASK security reference (xentop's SSID).
    pub ssidref: u32,
    /// Its XSM/FLASK label (`xl list -v`), None without XSM.
    pub ssid_label: Option<String>,
}

/// The host, as `xl info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostInfo {
    pub xen_version: String,
    pub xen_caps: String,
    pub xen_commandline: String,
    pub virt_caps: Vec<String>,
    pub nr_cpus: u32,
    pub max_cpu_id: u32,
    pub nr_nodes: u32,
    pub cores_per_socket: u32,
    pub threads_per_core: u32,
    pub cpu_mhz: u32,
    pub total_memory_mb: u64,
    pub free_memory_mb: u64,
    pub compiler: String,
    pub compile_date: String,
}

/// 8-4-4-4-12 lowercase hex, as `xl list -v` prints it.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Death and shutdown events of one domain, from `Context::watch_domain`.
pub struct DomainEvents {
    rx: mpsc::UnboundedReceiver<DomainEvent>,
    generator: *mut sys::libxl_evgen_domain_death,
    key: u64,
    inner: Arc<Inner>,
}

// SAFETY: the generator is only passed back to libxl (thread-safe context) on drop.
unsafe impl Send for DomainEvents {}

impl DomainEvents {
    /// The next event; None once the context stopped delivering (after a libxl disaster).
    pub async fn next(&mut self) -> Option<DomainEvent> {
        self.rx.recv().await
    }

    /// `next` for threads outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<DomainEvent> {
        self.rx.blocking_recv()
    }
}

impl Drop for DomainEvents {
    fn drop(&mut self) {
        // SAFETY: the generator came from libxl_evenable_domain_death on this context.
        unsafe { sys::libxl_evdisable_domain_death(self.inner.ctx, self.generator) };
        self.inner.dispatch.unsubscribe(self.key);
    }
}

/// A libxl asynchronous operation in flight: what it must keep alive, and whom to tell.
struct AoState<T> {
    done: oneshot::Sender<(c_int, T)>,
    keep: T,
    // Keeps the context (and its event thread) alive until the operation completes.
    _inner: Arc<Inner>,
}

unsafe extern "C" fn ao_done<T>(_ctx: *mut sys::libxl_ctx, rc: c_int, user: *mut c_void) {
    // SAFETY: user is the AoState leaked by start_ao; libxl completes an operation once.
    let state = unsafe { Box::from_raw(user as *mut AoState<T>) };
    let AoState { done, keep, _inner } = *state;
    let _ = done.send((rc, keep));
}

struct AoWait<T> {
    op: &'static str,
    mark: u64,
    rx: oneshot::Receiver<(c_int, T)>,
    inner: Arc<Inner>,
}

impl<T> AoWait<T> {
    async fn finish(self) -> Result<T, XenError> {
        let stopped = self.inner.dispatch.stopped();
        let outcome = tokio::select! {
            biased;
            r = self.rx => r,
            () = stopped => return Err(XenError::libxl_with(
                self.op,
                sys::ERROR_FAIL,
                Some("libxl's event loop stopped before the operation completed".into()),
            )),
        };
        match outcome {
            Ok((0, keep)) => Ok(keep),
            Ok((rc, _)) => Err(self.inner.error(self.op, rc, self.mark)),
            Err(_) => Err(XenError::libxl_with(
                self.op,
                sys::ERROR_FAIL,
                Some("operation abandoned by libxl".into()),
            )),
        }
    }
}

/// A libxl bitmap, disposed on drop.
struct Bitmap(sys::libxl_bitmap);
// SAFETY: plain malloc'd memory.
unsafe impl Send for Bitmap {}
impl Drop for Bitmap {
    fn drop(&mut self) {
        // SAFETY: initialised by libxl_bitmap_init.
        unsafe { sys::libxl_bitmap_dispose(&mut self.0) }
    }
}

struct Creating {
    cfg: LibxlConfig,
    domid: u32,
}

impl Inner {
    fn logger(&self) -> &TracingLogger {
        // SAFETY: the event thread frees the logger only after this Inner is gone.
        unsafe { &*self.logger }
    }

    fn error(&self, op: &'static str, rc: c_int, mark: u64) -> XenError {
        XenError::libxl_with(op, rc, self.logger().error_since(mark))
    }
}

impl Context {
    /// A context on this dom0, logging through `tracing` (target `libxl`).
    pub fn new() -> Result<Self, XenError> {
        if !crate::is_dom0() {
            return Err(XenError::NotDom0);
        }
        Self::alloc()
    }

    fn alloc() -> Result<Self, XenError> {
        let mut pipe = [0 as c_int; 2];
        // SAFETY: pipe2 fills two fds on success.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(XenError::Setup(format!(
                "wake pipe: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: fresh fds we own.
        let (wake_rd, wake_wr) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let mut logger = TracingLogger::new();
        let mut ctx = std::ptr::null_mut();
        // SAFETY: the logger outlives the context (freed by the event thread after it).
        let rc = unsafe {
            sys::libxl_ctx_alloc(&mut ctx, sys::LIBXL_VERSION as c_int, 0, logger.as_xtl())
        };
        if rc != 0 {
            return Err(XenError::libxl_with("ctx_alloc", rc, logger.error_since(0)));
        }
        let childproc_hooks = Box::new(sys::libxl_childproc_hooks {
            chldowner: sys::libxl_sigchld_owner_mainloop,
            fork_replacement: None,
            reaped_callback: None,
        });
        let dispatch = Arc::new(Dispatch::default());
        dispatch
            .ctx
            .store(ctx, std::sync::atomic::Ordering::Release);
        let event_hooks = Box::new(sys::libxl_event_hooks {
            event_occurs_mask: u64::MAX,
            event_occurs: Some(events::event_occurs),
            disaster: Some(events::disaster),
        });
        // SAFETY: fresh context, nothing else running on it yet; hooks and dispatch outlive it.
        unsafe {
            sys::libxl_childproc_setmode(ctx, &*childproc_hooks, std::ptr::null_mut());
            sys::libxl_event_register_callbacks(
                ctx,
                &*event_hooks,
                Arc::as_ptr(&dispatch) as *mut c_void,
            );
        }
        let sigchld = match SigchldForward::install(wake_wr.as_raw_fd()) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: the context never left this function.
                unsafe { sys::libxl_ctx_free(ctx) };
                return Err(XenError::Setup(format!("SIGCHLD handler: {e}")));
            }
        };
        let logger_ptr: *const TracingLogger = &*logger;
        let owned = Owned {
            ctx,
            logger,
            childproc_hooks,
            event_hooks,
            dispatch: dispatch.clone(),
            wake_rd,
        };
        let thread = std::thread::Builder::new()
            .name("libxl-events".into())
            .spawn(move || event_loop::run(owned));
        let thread = match thread {
            Ok(t) => t,
            // The closure (and the context inside it) is leaked here: spawn failing means the
            // process is out of threads, and freeing a context needs none of them.
            Err(e) => return Err(XenError::Setup(format!("event thread: {e}"))),
        };
        let inner = Inner {
            ctx,
            logger: logger_ptr,
            dispatch,
            wake_wr,
            sigchld: Some(sigchld),
            thread: Mutex::new(Some(thread)),
        };
        Ok(Context {
            inner: Arc::new(inner),
        })
    }

    fn ctx(&self) -> *mut sys::libxl_ctx {
        self.inner.ctx
    }

    fn check(&self, op: &'static str, mark: u64, rc: c_int) -> Result<(), XenError> {
        if rc == 0 {
            Ok(())
        } else {
            Err(self.inner.error(op, rc, mark))
        }
    }

    /// Starts an asynchronous operation; `start` gets the context, a pointer to `keep` (alive
    /// until completion) and the ao_how to pass to libxl.
    fn start_ao<T: Send + 'static>(
        &self,
        op: &'static str,
        keep: T,
        start: impl FnOnce(*mut sys::libxl_ctx, *mut T, *const sys::libxl_asyncop_how) -> c_int,
    ) -> Result<AoWait<T>, XenError> {
        let (tx, rx) = oneshot::channel();
        let mark = self.inner.logger().mark();
        let state = Box::into_raw(Box::new(AoState {
            done: tx,
            keep,
            _inner: self.inner.clone(),
        }));
        let how = sys::libxl_asyncop_how {
            callback: Some(ao_done::<T>),
            u: sys::libxl_asyncop_how__bindgen_ty_1 {
                for_callback: state.cast(),
            },
        };
        // SAFETY: state stays allocated until ao_done; only its address is used from here on,
        // since the callback may already run (on the event thread) before start returns.
        let rc = start(self.ctx(), unsafe { &raw mut (*state).keep }, &how);
        if rc != 0 {
            // Not started: libxl will not call back, so the state is still ours.
            // SAFETY: from Box::into_raw above, not handed to anyone.
            drop(unsafe { Box::from_raw(state) });
            return Err(self.inner.error(op, rc, mark));
        }
        Ok(AoWait {
            op,
            mark,
            rx,
            inner: self.inner.clone(),
        })
    }

    /// Creates a domain and its devices; resolves to its domid once it is built. Like
    /// `xl create -p`, the domain is left paused: `unpause` starts it, which gives the caller a
    /// moment to set up xenstore nodes or a console reader before the guest runs.
    pub async fn create(&self, config: &DomainConfig) -> Result<u32, XenError> {
        self.create_libxl(config.to_libxl()?).await
    }

    fn domid_op(
        &self,
        op: &'static str,
        domid: u32,
        f: unsafe extern "C" fn(*mut sys::libxl_ctx, u32, *const sys::libxl_asyncop_how) -> c_int,
    ) -> Result<AoWait<()>, XenError> {
        // SAFETY: f is one of libxl's (ctx, domid, ao_how) operations.
        self.start_ao(op, (), |ctx, _, how| unsafe { f(ctx, domid, how) })
    }

    /// Destroys the domain at once (`xl destroy`).
    pub async fn destroy(&self, domid: u32) -> Result<(), XenError> {
        self.domid_op("domain_destroy", domid, sys::libxl_domain_destroy)?
            .finish()
            .await
    }

    /// Asks the guest to power off (PV shutdown protocol); returns once the request is written.
    /// Watch for `DomainEvent::Shutdown` to know it did.
    pub async fn shutdown(&self, domid: u32) -> Result<(), XenError> {
        self.domid_op("domain_shutdown", domid, sys::libxl_domain_shutdown)?
            .finish()
            .await
    }

    pub async fn reboot(&self, domid: u32) -> Result<(), XenError> {
        self.domid_op("domain_reboot", domid, sys::libxl_domain_reboot)?
            .finish()
            .await
    }

    pub async fn pause(&self, domid: u32) -> Result<(), XenError> {
        self.domid_op("domain_pause", domid, sys::libxl_domain_pause)?
            .finish()
            .await
    }

    pub async fn unpause(&self, domid: u32) -> Result<(), XenError> {
        self.domid_op("domain_unpause", domid, sys::libxl_domain_unpause)?
            .finish()
            .await
    }

    /// Brings vCPUs 0..n online and the rest offline (`xl vcpu-set`).
    pub async fn set_vcpus_online(&self, domid: u32, n: u32) -> Result<(), XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: a zeroed bitmap initialised, allocated and filled for libxl.
        let map = unsafe {
            let mut map = Bitmap(std::mem::zeroed());
            sys::libxl_bitmap_init(&mut map.0);
            self.check(
                "bitmap_alloc",
                mark,
                sys::libxl_bitmap_alloc(self.ctx(), &mut map.0, n as c_int),
            )?;
            for i in 0..n {
                sys::libxl_bitmap_set(&mut map.0, i as c_int);
            }
            map
        };
        let wait = self.start_ao("set_vcpuonline", map, |ctx, map, how| {
            // SAFETY: the bitmap lives until the completion callback.
            unsafe { sys::libxl_set_vcpuonline(ctx, domid, &raw mut (*map).0, how) }
        })?;
        wait.finish().await.map(drop)
    }

    /// Sets the balloon target (`xl mem-set`), in KiB.
    pub fn set_memory_target_kb(&self, domid: u32, kb: u64) -> Result<(), XenError> {
        let target = i64::try_from(kb)
            .map_err(|_| XenError::InvalidConfig(format!("memory target {kb} KiB")))?;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context; absolute target, enforced.
        self.check("set_memory_target", mark, unsafe {
            sys::libxl_set_memory_target(self.ctx(), domid, target, 0, 1)
        })
    }

    fn info_from(&self, d: &sys::libxl_dominfo) -> DomainInfo {
        // SAFETY: libxl returns a malloc'd name or NULL.
        let name = unsafe {
            let p = sys::libxl_domid_to_name(self.ctx(), d.domid);
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
            uuid: format_uuid(&d.uuid.uuid),
            running: d.running,
            blocked: d.blocked,
            paused: d.paused,
            shutdown: d.shutdown,
            dying: d.dying,
            shutdown_reason: d
                .shutdown
                .then(|| ShutdownReason::from_libxl(d.shutdown_reason)),
            memory_kb: d.current_memkb,
            max_memory_kb: d.max_memkb,
            vcpus_online: d.vcpu_online,
            vcpus_max: d.vcpu_max_id + 1,
            cpu_time_ns: d.cpu_time,
            pvh: d.domain_type == sys::LIBXL_DOMAIN_TYPE_PVH,
            cpupool: d.cpupool,
            ssidref: d.ssidref,
            // SAFETY: NULL or a C string in the dominfo.
            ssid_label: (!d.ssid_label.is_null()).then(|| {
                unsafe { CStr::from_ptr(d.ssid_label) }
                    .to_string_lossy()
                    .into_owned()
            }),
        }
    }

    /// All domains, dom0 first (`xl list`).
    pub fn list(&self) -> Result<Vec<DomainInfo>, XenError> {
        let mut n: c_int = 0;
        let mark = self.inner.logger().mark();
        // SAFETY: libxl returns an array of n entries, freed with libxl_dominfo_list_free.
        unsafe {
            let list = sys::libxl_list_domain(self.ctx(), &mut n);
            if list.is_null() {
                return Err(self.inner.error("list_domain", sys::ERROR_FAIL, mark));
            }
            let out = (0..n as usize)
                .map(|i| self.info_from(&*list.add(i)))
                .collect();
            sys::libxl_dominfo_list_free(list, n);
            Ok(out)
        }
    }

    /// One domain (`xl list DOMID`); `ERROR_DOMAIN_NOTFOUND` if it does not exist.
    pub fn info(&self, domid: u32) -> Result<DomainInfo, XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: info initialised, filled by libxl, disposed.
        unsafe {
            let mut d: sys::libxl_dominfo = std::mem::zeroed();
            sys::libxl_dominfo_init(&mut d);
            let rc = sys::libxl_domain_info(self.ctx(), &mut d, domid);
            let r = if rc == 0 {
                Ok(self.info_from(&d))
            } else {
                Err(self.inner.error("domain_info", rc, mark))
            };
            sys::libxl_dominfo_dispose(&mut d);
            r
        }
    }

    pub fn domid_by_name(&self, name: &str) -> Result<u32, XenError> {
        let c = CString::new(name)
            .map_err(|_| XenError::InvalidConfig(format!("domain name {name:?} contains NUL")))?;
        let mut domid = 0u32;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context and C string.
        self.check("name_to_domid", mark, unsafe {
            sys::libxl_name_to_domid(self.ctx(), c.as_ptr(), &mut domid)
        })?;
        Ok(domid)
    }

    fn tty(&self, domid: u32, cons_num: c_int) -> Result<String, XenError> {
        let mut path = std::ptr::null_mut();
        let mark = self.inner.logger().mark();
        // SAFETY: libxl returns a malloc'd path on success.
        unsafe {
            let rc = sys::libxl_console_get_tty(
                self.ctx(),
                domid,
                cons_num,
                sys::LIBXL_CONSOLE_TYPE_PV,
                &mut path,
            );
            self.check("console_get_tty", mark, rc)?;
            let s = CStr::from_ptr(path).to_string_lossy().into_owned();
            libc::free(path.cast());
            Ok(s)
        }
    }

    /// The host: Xen version, CPUs, memory (`xl info`).
    pub fn host_info(&self) -> Result<HostInfo, XenError> {
        let mark = self.inner.logger().mark();
        let text = |p: *const std::ffi::c_char| {
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: physinfo initialised, filled and disposed; version info is owned by the context.
        unsafe {
            let mut p: sys::libxl_physinfo = std::mem::zeroed();
            sys::libxl_physinfo_init(&mut p);
            let rc = sys::libxl_get_physinfo(self.ctx(), &mut p);
            if rc != 0 {
                sys::libxl_physinfo_dispose(&mut p);
                return Err(self.inner.error("get_physinfo", rc, mark));
            }
            let v = sys::libxl_get_version_info(self.ctx());
            if v.is_null() {
                sys::libxl_physinfo_dispose(&mut p);
                return Err(self.inner.error("get_version_info", sys::ERROR_FAIL, mark));
            }
            let v = &*v;
            let mut caps = Vec::new();
            for (on, name) in [
                (p.cap_pv, "pv"),
                (p.cap_hvm, "hvm"),
                (p.cap_hap, "hap"),
                (p.cap_shadow, "shadow"),
                (p.cap_hvm_directio, "hvm_directio"),
            ] {
                if on {
                    caps.push(name.to_string());
                }
            }
            let page_kb = 4u64;
            let info = HostInfo {
                xen_version: format!(
                    "{}.{}{}",
                    v.xen_version_major,
                    v.xen_version_minor,
                    text(v.xen_version_extra)
                ),
                xen_caps: text(v.capabilities),
                xen_commandline: text(v.commandline),
                virt_caps: caps,
                nr_cpus: p.nr_cpus,
                max_cpu_id: p.max_cpu_id,
                nr_nodes: p.nr_nodes,
                cores_per_socket: p.cores_per_socket,
                threads_per_core: p.threads_per_core,
                cpu_mhz: p.cpu_khz / 1000,
                total_memory_mb: p.total_pages * page_kb / 1024,
                free_memory_mb: p.free_pages * page_kb / 1024,
                compiler: text(v.compiler),
                compile_date: text(v.compile_date),
            };
            sys::libxl_physinfo_dispose(&mut p);
            Ok(info)
        }
    }

    /// The hypervisor's console ring (`xl dmesg`); `clear` empties it after reading.
    pub fn dmesg(&self, clear: bool) -> Result<String, XenError> {
        let mark = self.inner.logger().mark();
        let mut out = String::new();
        // SAFETY: reader from read_start, lines valid until the next call, reader finished once.
        unsafe {
            let cr = sys::libxl_xen_console_read_start(self.ctx(), clear as c_int);
            if cr.is_null() {
                return Err(self
                    .inner
                    .error("xen_console_read_start", sys::ERROR_FAIL, mark));
            }
            loop {
                let mut line = std::ptr::null_mut();
                let rc = sys::libxl_xen_console_read_line(self.ctx(), cr, &mut line);
                if rc > 0 && !line.is_null() {
                    out.push_str(&CStr::from_ptr(line).to_string_lossy());
                } else {
                    sys::libxl_xen_console_read_finish(self.ctx(), cr);
                    if rc < 0 {
                        return Err(self.inner.error("xen_console_read_line", rc, mark));
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Replaces this process with xenconsole attached to the domain's console (`xl console`);
    /// returns only on failure. Ctrl-] leaves the console.
    pub fn console_exec(&self, domid: u32) -> XenError {
        let mark = self.inner.logger().mark();
        // SAFETY: valid context; on success the call does not return.
        let rc = unsafe {
            sys::libxl_console_exec(self.ctx(), domid, 0, sys::LIBXL_CONSOLE_TYPE_PV, -1)
        };
        self.inner.error("console_exec", rc, mark)
    }

    /// The pty of the domain's console (hvc0), served by xenconsoled.
    pub fn console_tty(&self, domid: u32) -> Result<String, XenError> {
        self.tty(domid, 0)
    }

    /// The pty of PV channel `index` (its position in `DomainConfig::channels`), for channels
    /// with `ChannelConnection::Pty`. libxl numbers channels as consoles 1, 2, ...
    pub fn channel_tty(&self, domid: u32, index: usize) -> Result<String, XenError> {
        self.tty(domid, channel_console_number(index))
    }

    /// Death and shutdown events of `domid` from now on (`libxl_evenable_domain_death`).
    pub fn watch_domain(&self, domid: u32) -> Result<DomainEvents, XenError> {
        let (key, rx) = self.inner.dispatch.subscribe();
        let mut generator = std::ptr::null_mut();
        let mark = self.inner.logger().mark();
        // SAFETY: valid context; key routes the events to rx.
        let rc =
            unsafe { sys::libxl_evenable_domain_death(self.ctx(), domid, key, &mut generator) };
        if rc != 0 {
            self.inner.dispatch.unsubscribe(key);
            return Err(self.inner.error("evenable_domain_death", rc, mark));
        }
        Ok(DomainEvents {
            rx,
            generator,
            key,
            inner: self.inner.clone(),
        })
    }

    /// Waits until `domid` is gone; returns why it shut down, if it did before dying.
    pub async fn wait_for_death(&self, domid: u32) -> Result<Option<ShutdownReason>, XenError> {
        let mut events = self.watch_domain(domid)?;
        let mut reason = None;
        while let Some(e) = events.next().await {
            match e {
                DomainEvent::Shutdown { reason: r, .. } => reason = Some(r),
                DomainEvent::Death { .. } => return Ok(reason),
            }
        }
        Err(XenError::libxl_with(
            "evenable_domain_death",
            sys::ERROR_FAIL,
            Some("libxl stopped delivering events".into()),
        ))
    }
}

/// libxl maps channel i to PV console i + 1 (console 0 is the domain's own).
pub fn channel_console_number(index: usize) -> c_int {
    index as c_int + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_libxls_names() {
        for name in ["nmi", "reset", "init", "power", "sleep", "s3resume"] {
            assert!(Trigger::parse(name).is_some(), "{name}");
        }
        for name in ["", "NMI?", "unknown", "nmi\0", "bogus"] {
            assert!(Trigger::parse(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn refuses_to_start_outside_dom0() {
        if crate::is_dom0() {
            return; // the lab exercises the real thing
        }
        assert!(matches!(Context::new(), Err(XenError::NotDom0)));
    }

    /// Without a hypervisor, libxl's own context allocation fails: the error names the call and
    /// carries libxl's code and the message it logged (through the tracing logger).
    #[test]
    fn ctx_alloc_without_xen_reports_libxl_code_and_message() {
        if crate::is_dom0() {
            return;
        }
        let e = Context::alloc()
            .err()
            .expect("libxl cannot open xenctrl without Xen");
        eprintln!("{e}");
        match &e {
            XenError::Libxl {
                op, code, message, ..
            } => {
                assert_eq!(*op, "ctx_alloc");
                assert!(*code < 0);
                assert!(message.is_some(), "libxl logged why: {e}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn uuids_print_like_xl() {
        let b = [
            0x5a, 0x1b, 0x2c, 0x3d, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xff,
        ];
        assert_eq!(format_uuid(&b), "5a1b2c3d-0001-0203-0405-060708090aff");
    }

    #[test]
    fn channels_are_consoles_from_one() {
        assert_eq!(channel_console_number(0), 1);
        assert_eq!(channel_console_number(3), 4);
    }
}
