//! Bounds on what an image may make hx read, buffer, write or follow (docs/images.md, "Limits").
//! Every byte of an image is hostile: without these a 4.7 MB layer with a 1 GiB PAX header
//! buffered 1.6 GB, and a 1 MB gzip layer became a 1 GiB tree.

/// Defaults, overridable in the config file's `[limits]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One PAX extended header, GNU long name or GNU long link (Go's archive/tar allows 1 MiB).
    pub max_header_bytes: u64,
    /// One layer's uncompressed tar stream.
    pub max_layer_bytes: u64,
    /// All of an image's uncompressed layers together (and an archive given to `hx load`).
    pub max_image_bytes: u64,
    /// Tar headers in one layer (extension headers included).
    pub max_layer_entries: u64,
    /// A manifest, index, or image config (containerd allows 4 MiB).
    pub max_manifest_bytes: u64,
    /// Indexes followed before an image manifest (an index of indexes is depth 2).
    pub max_index_depth: u32,
}

pub const DEFAULT: Limits = Limits {
    max_header_bytes: 1 << 20,
    max_layer_bytes: 16 << 30,
    max_image_bytes: 32 << 30,
    max_layer_entries: 1_000_000,
    max_manifest_bytes: 4 << 20,
    max_index_depth: 2,
};

impl Default for Limits {
    fn default() -> Self {
        DEFAULT
    }
}
