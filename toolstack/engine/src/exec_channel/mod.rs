//! The exec channel between hx and a running container's pv-init (pv_init::mux; docs/guest-protocol.md
//! "Exec channel"): the broker that owns it on the host, and the client side of one session.
pub mod broker;
pub mod client;
