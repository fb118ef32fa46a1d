//! `hx push`: an image of the store to a registry, through oci-client, with the manifest bytes
//! it was stored with (so its digest is the same there).
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::pull::{insecure_list, map_err, oci_ref};
use crate::reference::Reference;
use crate::store::Store;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use std::io::Read;

/// Bytes read from a blob file per chunk sent.
const CHUNK: usize = 4 << 20;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub insecure_registries: Vec<String>,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Pushed,
    AlreadyExists,
}

pub struct Pushed {
    pub digest: Digest,
    pub size: usize,
}

/// Pushes the image named `reference` (a name it has in the store). `report` hears of each
/// layer as it is done.
pub async fn push(
    store: &Store,
    reference: &Reference,
    opts: &PushOptions,
    report: &mut dyn FnMut(&Digest, BlobOutcome),
) -> Result<Pushed> {
    let image = store.find_image(&reference.to_string())?;
    let manifest_bytes = store.read_blob(&image.manifest_digest)?;
    let manifest = store.image_manifest(&image.manifest_digest)?;
    crate::tls::init();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure_list(
            &crate::pull::PullOptions {
                insecure_registries: opts.insecure_registries.clone(),
                ..Default::default()
            },
            &reference.registry,
        )),
        connect_timeout: Some(std::time::Duration::from_secs(15)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    });
    let auth = match crate::auth::credentials(&reference.registry) {
        Some((u, p)) => RegistryAuth::Basic(u, p),
        None => RegistryAuth::Anonymous,
    };
    let target = oci_ref(reference, None);
    client
        .auth(&target, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| map_err(reference, "authentication", e))?;
    for desc in manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
    {
        let outcome = push_blob(&client, store, reference, &target, desc).await?;
        if desc.digest != manifest.config.digest {
            report(&desc.digest, outcome);
        }
    }
    let content_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    let header = content_type
        .parse()
        .map_err(|_| Error::UnsupportedMediaType {
            what: format!("manifest of {reference}"),
            media_type: content_type.clone(),
        })?;
    let size = manifest_bytes.len();
    client
        .push_manifest_raw(&target, manifest_bytes, header)
        .await
        .map_err(|e| map_err(reference, "manifest", e))?;
    Ok(Pushed {
        digest: image.manifest_digest,
        size,
    })
}

async fn push_blob(
    client: &Client,
    store: &Store,
    reference: &Reference,
    target: &oci_client::Reference,
    desc: &Descriptor,
) -> Result<BlobOutcome> {
    let what = format!("blob {}", desc.digest);
    if client
        .blob_exists(target, desc.digest.as_str())
        .await
        .map_err(|e| map_err(reference, &what, e))?
    {
        return Ok(BlobOutcome::AlreadyExists);
    }
    let path = store.blob_path(&desc.digest);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    // Read as the upload goes, a chunk at a time: memory does not grow with the layer.
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Some((Err(e.into()), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Ok(bytes::Bytes::from(buf)), Some(file)))
    });
    client
        .push_blob_stream(target, chunks, desc.digest.as_str(), Some(desc.size))
        .await
        .map_err(|e| map_err(reference, &what, e))?;
    Ok(BlobOutcome::Pushed)
}
