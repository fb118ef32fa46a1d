//! The xenstore wire protocol (xen/include/public/io/xs_wire.h) in plain Rust: message framing,
//! xenstored's path and permission rules, strict parsing of guest-written values, and a small
//! blocking client. No libxl and no C, so the static guest init (pv-init) can use it as well as
//! the toolstack (xen-bindings wraps it in a multi-threaded client). docs/xen-bindings.md says
//! why hx speaks the protocol itself.
mod client;
mod error;
pub mod msg;
mod path;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use client::{parse_watch_event, Client, WatchEvent, XENBUS_DEVICE};
pub use error::Error;
pub use msg::{Msg, MsgType, HEADER_LEN, PAYLOAD_MAX};
pub use path::{
    check_path, check_untrusted, parse_untrusted_choice, parse_untrusted_u64, Perm, ABS_PATH_MAX,
    MAX_ENTRIES, MAX_VALUE, REL_PATH_MAX,
};
