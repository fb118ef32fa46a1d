//! The rest of xl's administration calls: vCPUs and their affinity, credit2 parameters, static
//! maximum memory, CPU pools, sysrq, debug keys, hypervisor parameters, triggers, core dumps,
//! start times, and creating a domain from an xl.cfg model. Mostly quick synchronous libxl
//! calls, like the queries in context.rs.
use super::{Bitmap, Context, Creating};
use crate::cpuset::CpuSet;
use crate::error::XenError;
use crate::xlcfg::XlDomain;
use libxl_sys as sys;
use std::ffi::{c_int, CStr};

/// An `xl trigger` event, by libxl's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger(sys::libxl_trigger);

impl Trigger {
    /// `nmi`, `reset`, `init`, `power`, `sleep` or `s3resume` (libxl's string table).
    pub fn parse(name: &str) -> Option<Trigger> {
        let c = std::ffi::CString::new(name).ok()?;
        let mut t: sys::libxl_trigger = 0;
        // SAFETY: a C string and a place for the value.
        let rc = unsafe { sys::libxl_trigger_from_string(c.as_ptr(), &mut t) };
        (rc == 0 && t != sys::LIBXL_TRIGGER_UNKNOWN).then_some(Trigger(t))
    }
}

/// One vCPU, as `xl vcpu-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuInfo {
    pub vcpu: u32,
    pub cpu: u32,
    pub online: bool,
    pub blocked: bool,
    pub running: bool,
    pub time_ns: u64,
    pub hard: CpuSet,
    pub soft: CpuSet,
}

/// One CPU pool, as `xl cpupool-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpupoolInfo {
    pub poolid: u32,
    pub name: String,
    pub scheduler: String,
    pub domains: u32,
    pub cpus: CpuSet,
}

/// A domain's credit2 parameters (`xl sched-credit2 -d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit2 {
    pub weight: i32,
    pub cap: i32,
}

pub(super) fn bitmap_bytes(b: &sys::libxl_bitmap) -> &[u8] {
    if b.map.is_null() {
        return &[];
    }
    // SAFETY: libxl's bitmap: `size` bytes at `map`.
    unsafe { std::slice::from_raw_parts(b.map, b.size as usize) }
}

fn scheduler_name(s: sys::libxl_scheduler) -> String {
    // SAFETY: libxl returns a static string or NULL.
    let p = unsafe { sys::libxl_scheduler_to_string(s) };
    if p.is_null() {
        "unknown".into()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Context {
    /// Creates the domain an xl.cfg describes, left paused (unpause to start it), like `create`.
    pub async fn create_xl(&self, d: &XlDomain) -> Result<u32, XenError> {
        self.create_libxl(d.to_libxl()?).await
    }

    pub(super) async fn create_libxl(
        &self,
        cfg: crate::config::LibxlConfig,
    ) -> Result<u32, XenError> {
        let keep = Creating {
            cfg,
            domid: u32::MAX,
        };
        let wait = self.start_ao("domain_create_new", keep, |ctx, keep, how| {
            // SAFETY: keep (config and domid slot) lives until the completion callback.
            unsafe {
                sys::libxl_domain_create_new(
                    ctx,
                    &raw mut (*keep).cfg.inner,
                    &raw mut (*keep).domid,
                    how,
                    std::ptr::null(),
                )
            }
        })?;
        Ok(wait.finish().await?.domid)
    }

    /// The vCPUs of `domid` (`xl vcpu-list`).
    pub fn vcpus(&self, domid: u32) -> Result<Vec<VcpuInfo>, XenError> {
        let mark = self.inner.logger().mark();
        let (mut n, mut nr_cpus): (c_int, c_int) = (0, 0);
        // SAFETY: libxl returns n entries, freed with libxl_vcpuinfo_list_free.
        unsafe {
            let list = sys::libxl_list_vcpu(self.ctx(), domid, &mut n, &mut nr_cpus);
            if list.is_null() {
                return Err(self.inner.error("list_vcpu", sys::ERROR_FAIL, mark));
            }
            let out = (0..n as usize)
                .map(|i| {
                    let v = &*list.add(i);
                    VcpuInfo {
                        vcpu: v.vcpuid,
                        cpu: v.cpu,
                        online: v.online,
                        blocked: v.blocked,
                        running: v.running,
                        time_ns: v.vcpu_time,
                        hard: CpuSet::from_map(bitmap_bytes(&v.cpumap)),
                        soft: CpuSet::from_map(bitmap_bytes(&v.cpumap_soft)),
                    }
                })
                .collect();
            sys::libxl_vcpuinfo_list_free(list, n);
            Ok(out)
        }
    }

    pub(super) fn cpu_bitmap(&self, set: &CpuSet) -> Result<Bitmap, XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: a bitmap initialised, sized for the host's CPUs by libxl, filled, freed on drop.
        unsafe {
            let mut map = Bitmap(std::mem::zeroed());
            sys::libxl_bitmap_init(&mut map.0);
            self.check(
                "cpu_bitmap_alloc",
                mark,
                sys::libxl_cpu_bitmap_alloc(self.ctx(), &mut map.0, 0),
            )?;
            let bytes = set.to_map(map.0.size as usize)?;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.0.map, bytes.len());
            Ok(map)
        }
    }

    /// Pins vCPU `vcpu` (every vCPU when None) to `hard` and/or `soft` CPUs (`xl vcpu-pin`);
    /// None leaves that affinity as it is.
    pub fn set_vcpu_affinity(
        &self,
        domid: u32,
        vcpu: Option<u32>,
        hard: Option<&CpuSet>,
        soft: Option<&CpuSet>,
    ) -> Result<(), XenError> {
        let hard = hard.map(|s| self.cpu_bitmap(s)).transpose()?;
        let soft = soft.map(|s| self.cpu_bitmap(s)).transpose()?;
        let ptr = |b: &Option<Bitmap>| b.as_ref().map_or(std::ptr::null(), |b| &b.0 as *const _);
        let mark = self.inner.logger().mark();
        // SAFETY: valid context; bitmaps alive for the call (or NULL: leave alone).
        let rc = unsafe {
            match vcpu {
                Some(v) => {
                    sys::libxl_set_vcpuaffinity(self.ctx(), domid, v, ptr(&hard), ptr(&soft))
                }
                None => {
                    let n = self.info(domid)?.vcpus_max;
                    sys::libxl_set_vcpuaffinity_all(self.ctx(), domid, n, ptr(&hard), ptr(&soft))
                }
            }
        };
        self.check("set_vcpuaffinity", mark, rc)
    }

    fn sched_params(&self, domid: u32) -> Result<sys::libxl_domain_sched_params, XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: params initialised and filled by libxl (no pointers inside to dispose).
        unsafe {
            let mut p: sys::libxl_domain_sched_params = std::mem::zeroed();
            sys::libxl_domain_sched_params_init(&mut p);
            let rc = sys::libxl_domain_sched_params_get(self.ctx(), domid, &mut p);
            self.check("domain_sched_params_get", mark, rc)?;
            Ok(p)
        }
    }

    /// The domain's credit2 weight and cap; an error naming the scheduler if it is not credit2.
    pub fn credit2(&self, domid: u32) -> Result<Credit2, XenError> {
        let p = self.sched_params(domid)?;
        if p.sched != sys::LIBXL_SCHEDULER_CREDIT2 {
            return Err(XenError::libxl_with(
                "domain_sched_params_get",
                sys::ERROR_INVAL,
                Some(format!(
                    "domain {domid} is scheduled by {}, not credit2",
                    scheduler_name(p.sched)
                )),
            ));
        }
        Ok(Credit2 {
            weight: p.weight,
            cap: p.cap,
        })
    }

    /// Sets the credit2 weight and/or cap (`xl sched-credit2 -d D -w W -c C`).
    pub fn set_credit2(
        &self,
        domid: u32,
        weight: Option<i32>,
        cap: Option<i32>,
    ) -> Result<(), XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: params initialised; unset fields keep libxl's "default" (leave alone) values.
        unsafe {
            let mut p: sys::libxl_domain_sched_params = std::mem::zeroed();
            sys::libxl_domain_sched_params_init(&mut p);
            p.sched = sys::LIBXL_SCHEDULER_CREDIT2;
            if let Some(w) = weight {
                p.weight = w;
            }
            if let Some(c) = cap {
                p.cap = c;
            }
            let rc = sys::libxl_domain_sched_params_set(self.ctx(), domid, &p);
            self.check("domain_sched_params_set", mark, rc)
        }
    }

    /// The credit2 rate limit of CPU pool `poolid`, in microseconds.
    pub fn credit2_ratelimit_us(&self, poolid: u32) -> Result<i32, XenError> {
        let mark = self.inner.logger().mark();
        let mut p = sys::libxl_sched_credit2_params { ratelimit_us: 0 };
        // SAFETY: valid context and out struct.
        self.check("sched_credit2_params_get", mark, unsafe {
            sys::libxl_sched_credit2_params_get(self.ctx(), poolid, &mut p)
        })?;
        Ok(p.ratelimit_us)
    }

    /// Sets the static maximum memory (`xl mem-max`), in KiB.
    pub fn set_max_memory_kb(&self, domid: u32, kb: u64) -> Result<(), XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: valid context.
        self.check("domain_setmaxmem", mark, unsafe {
            sys::libxl_domain_setmaxmem(self.ctx(), domid, kb)
        })
    }

    /// The CPU pools (`xl cpupool-list`).
    pub fn cpupools(&self) -> Result<Vec<CpupoolInfo>, XenError> {
        let mark = self.inner.logger().mark();
        let mut n: c_int = 0;
        // SAFETY: n entries, freed with libxl_cpupoolinfo_list_free.
        unsafe {
            let list = sys::libxl_list_cpupool(self.ctx(), &mut n);
            if list.is_null() {
                return Err(self.inner.error("list_cpupool", sys::ERROR_FAIL, mark));
            }
            let out = (0..n as usize)
                .map(|i| {
                    let p = &*list.add(i);
                    CpupoolInfo {
                        poolid: p.poolid,
                        name: if p.pool_name.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(p.pool_name).to_string_lossy().into_owned()
                        },
                        scheduler: scheduler_name(p.sched),
                        domains: p.n_dom,
                        cpus: CpuSet::from_map(bitmap_bytes(&p.cpumap)),
                    }
                })
                .collect();
            sys::libxl_cpupoolinfo_list_free(list, n);
            Ok(out)
        }
    }

    /// Sends a magic SysRq key to the guest (`xl sysrq`).
    pub fn send_sysrq(&self, domid: u32, key: u8) -> Result<(), XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: valid context.
        self.check("send_sysrq", mark, unsafe {
            sys::libxl_send_sysrq(self.ctx(), domid, key as std::ffi::c_char)
        })
    }

    /// Sends debug keys to the hypervisor (`xl debug-keys`): each runs its handler, whose output
    /// goes to the hypervisor's message ring (`xl dmesg`).
    pub fn send_debug_keys(&self, keys: &str) -> Result<(), XenError> {
        self.hypervisor_call("send_debug_keys", keys, sys::libxl_send_debug_keys)
    }

    /// Sets hypervisor parameters at run time (`xl set-parameters`, e.g. `loglvl=all`).
    pub fn set_parameters(&self, params: &str) -> Result<(), XenError> {
        self.hypervisor_call("set_parameters", params, sys::libxl_set_parameters)
    }

    /// One of libxl's (ctx, string) calls to the hypervisor.
    fn hypervisor_call(
        &self,
        op: &'static str,
        arg: &str,
        f: unsafe extern "C" fn(*mut sys::libxl_ctx, *mut std::ffi::c_char) -> c_int,
    ) -> Result<(), XenError> {
        let arg = std::ffi::CString::new(arg)
            .map_err(|_| XenError::InvalidConfig(format!("{op}: a NUL byte in {arg:?}")))?;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context and C string (libxl only reads it, despite the mutable type).
        self.check(op, mark, unsafe { f(self.ctx(), arg.as_ptr().cast_mut()) })
    }

    /// Writes the domain's memory and vCPU state to `path` as an ELF core file (`xl
    /// dump-core`); the domain runs on.
    pub async fn core_dump(&self, domid: u32, path: &std::path::Path) -> Result<(), XenError> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| XenError::InvalidConfig("core file name contains a NUL byte".into()))?;
        // SAFETY: the name is kept alive with the operation (`keep`) until libxl calls back.
        self.start_ao("domain_core_dump", path, |ctx, keep, how| unsafe {
            sys::libxl_domain_core_dump(ctx, domid, (*keep).as_ptr(), how)
        })?
        .finish()
        .await
        .map(drop)
    }

    /// Sends trigger `trigger` to vCPU `vcpu` of the domain (`xl trigger`).
    pub async fn send_trigger(
        &self,
        domid: u32,
        trigger: Trigger,
        vcpu: u32,
    ) -> Result<(), XenError> {
        // SAFETY: valid context; libxl's (ctx, domid, trigger, vcpu, ao_how) operation.
        self.start_ao("send_trigger", (), |ctx, _, how| unsafe {
            sys::libxl_send_trigger(ctx, domid, trigger.0, vcpu, how)
        })?
        .finish()
        .await
    }

    /// Renames a domain (`xl rename`), whatever its name was.
    pub fn rename(&self, domid: u32, new_name: &str) -> Result<(), XenError> {
        let name = std::ffi::CString::new(new_name)
            .map_err(|_| XenError::InvalidConfig("domain name contains a NUL byte".into()))?;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context and C string; a NULL old name matches any.
        self.check("domain_rename", mark, unsafe {
            sys::libxl_domain_rename(self.ctx(), domid, std::ptr::null(), name.as_ptr())
        })
    }

    /// When the domain was started (seconds since the epoch, from its xenstore record), if known.
    pub fn start_time(&self, domid: u32) -> Option<u64> {
        // SAFETY: valid context; libxl answers (uint32_t)-1 when it cannot tell.
        let t = unsafe { sys::libxl_vm_get_start_time(self.ctx(), domid) };
        (t != u32::MAX).then_some(t as u64)
    }

    /// How many physical CPUs a bitmap covers here (xl prints affinities over this many).
    pub fn host_cpus(&self) -> Result<u32, XenError> {
        Ok(self.host_info()?.max_cpu_id + 1)
    }
}
