//! CPU pool management (`xl cpupool-create|destroy|rename|cpu-add|cpu-remove|migrate`): quick
//! synchronous libxl calls, like the queries in admin.rs.
use super::{Bitmap, Context};
use crate::cpuset::CpuSet;
use crate::error::XenError;
use libxl_sys as sys;
use std::ffi::{c_int, CString};

impl Context {
    /// The CPUs no pool has (`libxl_get_freecpus`).
    pub fn free_cpus(&self) -> Result<CpuSet, XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: a bitmap initialised here, filled by libxl, disposed on drop.
        unsafe {
            let mut map = Bitmap(std::mem::zeroed());
            sys::libxl_bitmap_init(&mut map.0);
            self.check(
                "get_freecpus",
                mark,
                sys::libxl_get_freecpus(self.ctx(), &mut map.0),
            )?;
            Ok(CpuSet::from_map(super::admin::bitmap_bytes(&map.0)))
        }
    }

    /// The CPUs of NUMA node `node` (`libxl_get_cpu_topology`): `node:N` in xl's CPU lists.
    pub fn node_cpus(&self, node: u32) -> Result<CpuSet, XenError> {
        let mark = self.inner.logger().mark();
        let mut n: c_int = 0;
        // SAFETY: n entries, freed with libxl_cputopology_list_free.
        unsafe {
            let list = sys::libxl_get_cpu_topology(self.ctx(), &mut n);
            if list.is_null() {
                return Err(self.inner.error("get_cpu_topology", sys::ERROR_FAIL, mark));
            }
            let cpus = (0..n.max(0) as u32)
                .filter(|&i| (*list.add(i as usize)).node == node)
                .collect();
            sys::libxl_cputopology_list_free(list, n);
            Ok(CpuSet(cpus))
        }
    }

    /// Makes pool `name` with scheduler `sched` (None: the host's default, as xl) on `cpus`,
    /// which must be free; returns its id.
    pub fn cpupool_create(
        &self,
        name: &str,
        sched: Option<&str>,
        cpus: &CpuSet,
    ) -> Result<u32, XenError> {
        let cname = c_string("pool name", name)?;
        let sched = self.scheduler_of(sched)?;
        let map = self.cpu_bitmap(cpus)?;
        let mark = self.inner.logger().mark();
        let mut poolid = sys::LIBXL_CPUPOOL_POOLID_ANY;
        // SAFETY: valid context, name and bitmap (read, not kept: passed by value as libxl
        // declares it); a fresh uuid.
        let rc = unsafe {
            let mut uuid: sys::libxl_uuid = std::mem::zeroed();
            sys::libxl_uuid_generate(&mut uuid);
            sys::libxl_cpupool_create(
                self.ctx(),
                cname.as_ptr(),
                sched,
                map.0,
                &mut uuid,
                &mut poolid,
            )
        };
        self.check("cpupool_create", mark, rc)?;
        Ok(poolid)
    }

    /// The name of the scheduler new pools get by default (`xl cpupool-create` without sched).
    pub fn default_scheduler(&self) -> Result<String, XenError> {
        let s = self.scheduler_of(None)?;
        // SAFETY: libxl returns a static string or NULL.
        let p = unsafe { sys::libxl_scheduler_to_string(s) };
        Ok(if p.is_null() {
            "unknown".into()
        } else {
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// libxl's scheduler for `name`, or the host's default.
    fn scheduler_of(&self, name: Option<&str>) -> Result<sys::libxl_scheduler, XenError> {
        match name {
            Some(n) => {
                let c = c_string("scheduler", n)?;
                let mut s: sys::libxl_scheduler = 0;
                // SAFETY: a C string and a place for the value.
                let rc = unsafe { sys::libxl_scheduler_from_string(c.as_ptr(), &mut s) };
                if rc != 0 || s == sys::LIBXL_SCHEDULER_UNKNOWN {
                    return Err(XenError::InvalidConfig(format!("Unknown scheduler {n:?}")));
                }
                Ok(s)
            }
            None => {
                let mark = self.inner.logger().mark();
                // SAFETY: valid context.
                let s = unsafe { sys::libxl_get_scheduler(self.ctx()) };
                if s < 0 {
                    return Err(self.inner.error("get_scheduler", s, mark));
                }
                Ok(s as sys::libxl_scheduler)
            }
        }
    }

    /// Destroys pool `poolid` (libxl refuses while it has domains or CPUs it cannot free).
    pub fn cpupool_destroy(&self, poolid: u32) -> Result<(), XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: valid context.
        self.check("cpupool_destroy", mark, unsafe {
            sys::libxl_cpupool_destroy(self.ctx(), poolid)
        })
    }

    pub fn cpupool_rename(&self, poolid: u32, name: &str) -> Result<(), XenError> {
        let cname = c_string("pool name", name)?;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context and name.
        self.check("cpupool_rename", mark, unsafe {
            sys::libxl_cpupool_rename(self.ctx(), cname.as_ptr(), poolid)
        })
    }

    /// Moves `cpus` into pool `poolid` (they must be free).
    pub fn cpupool_cpu_add(&self, poolid: u32, cpus: &CpuSet) -> Result<(), XenError> {
        let map = self.cpu_bitmap(cpus)?;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context and bitmap.
        self.check("cpupool_cpuadd_cpumap", mark, unsafe {
            sys::libxl_cpupool_cpuadd_cpumap(self.ctx(), poolid, &map.0)
        })
    }

    /// Takes `cpus` out of pool `poolid`: they become free.
    pub fn cpupool_cpu_remove(&self, poolid: u32, cpus: &CpuSet) -> Result<(), XenError> {
        let map = self.cpu_bitmap(cpus)?;
        let mark = self.inner.logger().mark();
        // SAFETY: valid context and bitmap.
        self.check("cpupool_cpuremove_cpumap", mark, unsafe {
            sys::libxl_cpupool_cpuremove_cpumap(self.ctx(), poolid, &map.0)
        })
    }

    /// Moves domain `domid` into pool `poolid`.
    pub fn cpupool_move_domain(&self, poolid: u32, domid: u32) -> Result<(), XenError> {
        let mark = self.inner.logger().mark();
        // SAFETY: valid context.
        self.check("cpupool_movedomain", mark, unsafe {
            sys::libxl_cpupool_movedomain(self.ctx(), poolid, domid)
        })
    }
}

fn c_string(what: &str, s: &str) -> Result<CString, XenError> {
    if s.is_empty() || s.len() > 255 {
        return Err(XenError::InvalidConfig(format!(
            "{what} {s:?}: 1 to 255 bytes"
        )));
    }
    CString::new(s).map_err(|_| XenError::InvalidConfig(format!("{what} {s:?}: contains NUL")))
}
