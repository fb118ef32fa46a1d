//! What the store knows about one image.
use crate::digest::Digest;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LayerRef {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    /// The config digest: docker's image id.
    pub id: Digest,
    pub manifest_digest: Digest,
    /// Normalised references pointing at this image, e.g. `docker.io/library/busybox:1.38.0`.
    pub names: Vec<String>,
    pub layers: Vec<LayerRef>,
    pub config: oci_spec::image::ImageConfiguration,
    /// Sum of the layer blob sizes.
    pub size: u64,
    pub created: Option<String>,
}

impl ImageRecord {
    /// `repository` and `tag` columns as `hx images` shows them (docker's familiar form).
    pub fn display_names(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .filter_map(|n| crate::reference::Reference::parse(n).ok())
            .map(|r| {
                let familiar = r.familiar();
                let repo = familiar.split('@').next().unwrap_or("").to_string();
                let (repo, tag) = match (repo.rfind(':'), repo.rfind('/')) {
                    (Some(c), slash) if slash.is_none_or(|s| c > s) => {
                        (repo[..c].to_string(), repo[c + 1..].to_string())
                    }
                    _ => (repo, "<none>".to_string()),
                };
                (repo, tag)
            })
            .collect()
    }
}
