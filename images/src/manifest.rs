//! Manifests and indexes (OCI and Docker v2 schema2), parsed leniently but typed.
use crate::digest::Digest;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

pub const LAYER_TAR: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
];
pub const LAYER_GZIP: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// What the accept header of a manifest request lists.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document: one image, or an index of several.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses a manifest document. `content_type` is the registry's Content-Type (may be empty).
    pub fn parse(what: &str, content_type: &str, bytes: &[u8]) -> Result<Manifest> {
        let bad = |reason: String| Error::Registry {
            registry: what.to_string(),
            detail: format!("invalid manifest: {reason}"),
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let declared = probe
            .media_type
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| {
                Some(
                    content_type
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string(),
                )
                .filter(|m| !m.is_empty())
            });
        let kind = match declared.as_deref() {
            Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => "image",
            Some(OCI_INDEX) | Some(DOCKER_MANIFEST_LIST) => "index",
            Some(other) if other != "application/json" && other != "application/octet-stream" => {
                return Err(Error::UnsupportedMediaType {
                    what: format!("manifest of {what}"),
                    media_type: other.to_string(),
                })
            }
            // No media type: OCI allows it; decide by shape.
            _ if probe.manifests.is_some() => "index",
            _ if probe.layers.is_some() => "image",
            _ => {
                return Err(Error::UnsupportedMediaType {
                    what: format!("manifest of {what}"),
                    media_type: "(none)".into(),
                })
            }
        };
        if probe.schema_version != Some(2) {
            return Err(Error::UnsupportedMediaType {
                what: format!("manifest of {what}"),
                media_type: format!("schemaVersion {:?}", probe.schema_version.unwrap_or(0)),
            });
        }
        match kind {
            "image" => {
                let m: ImageManifest =
                    serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
                for l in &m.layers {
                    layer_compression(&l.media_type).ok_or_else(|| {
                        Error::UnsupportedMediaType {
                            what: format!("layer {} of {what}", l.digest),
                            media_type: l.media_type.clone(),
                        }
                    })?;
                }
                Ok(Manifest::Image(m))
            }
            _ => Ok(Manifest::Index(
                serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?,
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// How a layer of this media type is compressed; None for a media type hx cannot apply.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    if LAYER_TAR.contains(&media_type) {
        Some(Compression::None)
    } else if LAYER_GZIP.contains(&media_type) {
        Some(Compression::Gzip)
    } else {
        None
    }
}

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::InvalidReference {
            reference: s.to_string(),
            reason: "platform must be os/arch[/variant]".into(),
        };
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(PlatformSpec {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(v.to_string()),
                })
            }
            _ => Err(bad()),
        }
    }

    pub fn host() -> Self {
        PlatformSpec {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    pub fn matches(&self, p: &Platform) -> bool {
        self.os == p.os
            && self.architecture == p.architecture
            && (self.variant.is_none() || self.variant == p.variant)
    }

    /// Picks the manifest for this platform from an index.
    pub fn select<'a>(&self, reference: &str, index: &'a ImageIndex) -> Result<&'a Descriptor> {
        index
            .manifests
            .iter()
            .filter(|d| d.media_type != "application/vnd.in-toto+json")
            .find(|d| d.platform.as_ref().is_some_and(|p| self.matches(p)))
            .ok_or_else(|| Error::PlatformNotFound {
                reference: reference.to_string(),
                platform: self.to_string(),
                available: {
                    let v: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .filter(|p| p.os != "unknown")
                        .map(|p| match &p.variant {
                            Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
                            None => format!("{}/{}", p.os, p.architecture),
                        })
                        .collect();
                    if v.is_empty() {
                        "none".into()
                    } else {
                        v.join(", ")
                    }
                },
            })
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
