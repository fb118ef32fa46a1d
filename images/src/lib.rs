//! Images for hx: references, registry pulls, the content-addressed store, layer application
//! and the read-only rootfs images the guests mount.
