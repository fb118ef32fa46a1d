//! Safe access to libxl and xenstore for the hx toolstack (docs/xen-bindings.md).
//!
//! `DomainConfig` is plain Rust (validated, testable anywhere) and becomes a libxl
//! `libxl_domain_config` only inside `Context::create`. `Context` owns a libxl context and the
//! thread running its event loop; `Xenstore` speaks the xenstore wire protocol itself. Both need
//! a Xen dom0 at run time, not at build time.
pub mod config;
pub mod context;
pub mod cpuset;
pub mod error;
mod event_loop;
pub mod events;
mod logger;
pub mod savefile;
mod sigchld;
pub mod xenstore;
pub mod xlcfg;

pub use config::{
    Channel, ChannelConnection, CrashAction, DiskSpec, DomainConfig, DomainType, NicSpec, P9Spec,
};
pub use context::{
    BlockInfo, Context, CpupoolInfo, Credit2, DomainEvents, DomainInfo, HostInfo, NicInfo, Trigger,
    VcpuInfo,
};
pub use cpuset::CpuSet;
pub use error::XenError;
pub use events::{DomainEvent, ShutdownReason};
pub use xenstore::{Perm, Xenstore};
pub use xlcfg::{PoolCpus, XlCpupool, XlDomain};

/// Whether this machine is a Xen dom0 (the toolstack's precondition).
pub fn is_dom0() -> bool {
    std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|s| s.contains("control_d"))
}
