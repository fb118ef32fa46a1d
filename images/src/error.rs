//! Errors of the image half of hx, each with a distinct process exit code (docs/cli.md).
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0} not found in the local store")]
    ImageNotFound(String),
    #[error("{reference}: manifest unknown (tag or digest not found in {registry})")]
    ManifestNotFound { reference: String, registry: String },
    #[error("{registry}: unauthorized: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("{registry}: unreachable: {detail}")]
    RegistryUnreachable { registry: String, detail: String },
    #[error("{registry}: {detail}")]
    Registry { registry: String, detail: String },
    #[error("blob {digest}: digest mismatch (got {actual})")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest}: truncated ({got} of {want} bytes)")]
    TruncatedBlob { digest: String, got: u64, want: u64 },
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("no manifest for platform {platform} in {reference} (available: {available})")]
    PlatformNotFound {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("layer {layer}: unsafe entry {entry:?}: {reason}")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    BadLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("not enough space in {path}: need {need} bytes, {free} free")]
    NoSpace { path: PathBuf, need: u64, free: u64 },
    #[error("{path}: invalid image archive: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("image {image} is in use by container {container}")]
    ImageInUse { image: String, container: String },
    #[error("{reference} is ambiguous: matches {matches}")]
    Ambiguous { reference: String, matches: String },
    #[error("rootfs build failed ({tool}): {detail}")]
    RootfsBuild { tool: String, detail: String },
    #[error("store {path}: {detail}")]
    Store { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("layer {layer}: entry {entry:?}: {kind} of {size} bytes exceeds the limit of {limit} bytes (limits.max_header_bytes)")]
    HeaderTooLarge {
        layer: String,
        entry: String,
        kind: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("layer {layer}: more than {limit} uncompressed bytes (limits.max_layer_bytes)")]
    LayerTooLarge { layer: String, limit: u64 },
    #[error("image {image}: more than {limit} uncompressed bytes in its layers (limits.max_image_bytes); stopped in layer {layer}")]
    ImageTooLarge {
        image: String,
        layer: String,
        limit: u64,
    },
    #[error("layer {layer}: more than {limit} entries (limits.max_layer_entries)")]
    TooManyEntries { layer: String, limit: u64 },
    #[error("layer {index} ({layer}): uncompressed digest {actual} does not match the image config's diff_id {expected}")]
    DiffIdMismatch {
        layer: String,
        index: usize,
        expected: String,
        actual: String,
    },
    #[error("image {image}: {layers} layers but {diff_ids} diff_ids in its config")]
    LayerCountMismatch {
        image: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("{what}: more than {limit} bytes (limits.max_manifest_bytes)")]
    ManifestTooLarge { what: String, limit: u64 },
    #[error("{reference}: indexes nested deeper than {limit} (limits.max_index_depth)")]
    IndexTooDeep { reference: String, limit: u32 },
}

impl Error {
    /// The process exit code for this error: distinct per kind, documented in docs/cli.md.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidReference { .. } => 10,
            Error::ImageNotFound(_) => 11,
            Error::ManifestNotFound { .. } => 12,
            Error::Unauthorized { .. } => 13,
            Error::RegistryUnreachable { .. } => 14,
            Error::Registry { .. } => 15,
            Error::DigestMismatch { .. } => 16,
            Error::TruncatedBlob { .. } => 17,
            Error::UnsupportedMediaType { .. } => 18,
            Error::PlatformNotFound { .. } => 19,
            Error::UnsafeEntry { .. } => 20,
            Error::BadLayer { .. } => 21,
            Error::NoSpace { .. } => 22,
            Error::InvalidArchive { .. } => 23,
            Error::ImageInUse { .. } => 24,
            Error::Ambiguous { .. } => 25,
            Error::RootfsBuild { .. } => 26,
            Error::Store { .. } => 27,
            Error::Io { .. } => 28,
            Error::HeaderTooLarge { .. } => 29,
            Error::LayerTooLarge { .. } => 30,
            Error::ImageTooLarge { .. } => 31,
            Error::TooManyEntries { .. } => 32,
            Error::DiffIdMismatch { .. } | Error::LayerCountMismatch { .. } => 33,
            Error::ManifestTooLarge { .. } => 34,
            Error::IndexTooDeep { .. } => 35,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            let path = path.into();
            return Error::NoSpace {
                path,
                need: 0,
                free: 0,
            };
        }
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
