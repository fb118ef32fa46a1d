//! Images for hx: references, registry pulls, the content-addressed store, layer application
//! and the read-only rootfs images the guests mount.
pub mod apply;
pub mod arrivals;
pub mod auth;
pub mod digest;
pub mod error;
pub mod image;
pub mod limits;
pub mod load;
pub mod login;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod readahead;
pub mod reference;
pub mod rootfs;
pub mod save;
pub mod store;
pub mod tarstream;
pub mod tls;

pub use digest::Digest;
pub use error::{Error, Result};
pub use image::ImageRecord;
pub use limits::Limits;
pub use reference::Reference;
pub use store::Store;
