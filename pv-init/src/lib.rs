//! The container spec shared by the toolstack and the guest's PID 1, the config-disk encoding
//! that carries it, and the initramfs that boots pv-init (see docs/guest-protocol.md).
pub mod copy;
pub mod freeze;
pub mod hold;
pub mod host_stop;
pub mod initramfs;
pub mod layer;
pub mod mux;
pub mod spec;
pub mod status;
pub mod vchan;
pub mod warm;
