//! hx-engine: everything hx does to containers apart from reading a command line. The `hx` CLI
//! (toolstack/src) links it, as will the containerd shim and the OCI runtime front end.
//! Backends (Xen, QEMU), container records and their state, networks, volumes, logs, the exec
//! channel and the helper processes (`log_relay`, `backend::xen::monitor`) that the hx binary
//! runs as hidden subcommands.
#[macro_use]
pub mod output;
pub mod assets;
pub mod attach_channel;
pub mod backend;
pub mod capabilities;
pub mod checkpoint;
pub mod container;
mod error;
pub mod exec_channel;
pub mod host_cgroup;
pub mod hostconfig;
pub mod input_copy;
pub mod kvfile;
pub mod lifecycle;
pub mod limits;
pub mod log_relay;
pub mod logfile;
pub mod network;
pub mod oci;
pub mod offline;
pub mod ops;
pub mod output_log;
pub mod pod;
pub mod process;
pub mod restart;
pub mod runtime;
pub mod sanitize;
pub mod seccomp;
pub mod short_path;
pub mod volume;
pub mod workload_input;

pub use error::{one_line, HxError};
