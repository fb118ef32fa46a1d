//! The container spec shared by the toolstack and the guest's PID 1, and the
//! config-disk encoding that carries it (see docs/guest-protocol.md).
pub mod spec;
pub mod status;
