//! Images for hx: references, registry pulls, the content-addressed store, layer application
//! and the read-only rootfs images the guests mount.
pub mod digest;
pub mod error;
pub mod reference;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
