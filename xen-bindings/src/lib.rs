//! Safe access to libxl and xenstore for the hx toolstack (docs/xen-bindings.md).
//!
//! `DomainConfig` is plain Rust (validated, testable anywhere) and becomes a libxl
//! `libxl_domain_config` only inside `Context::create`. `Context` owns a libxl context;
//! `Xenstore` a libxenstore handle. Both need a Xen dom0 at run time, not at build time.
pub mod config;
pub mod context;
pub mod error;
pub mod xenstore;

pub use config::{Channel, DiskSpec, DomainConfig, DomainType, NicSpec};
pub use context::{Context, DomainInfo};
pub use error::XenError;
pub use xenstore::{Perm, Xenstore};

/// Whether this machine is a Xen dom0 (the toolstack's precondition).
pub fn is_dom0() -> bool {
    std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|s| s.contains("control_d"))
}
