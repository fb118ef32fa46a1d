//! `hx pull`: manifests and layers from a registry into the store, through oci-client.
use crate::arrivals::{Arrivals, ReleaseOnDrop};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::manifest::{Descriptor, Manifest, PlatformSpec, ACCEPTED_MANIFESTS};
use crate::reference::Reference;
use crate::store::{free_space, Store};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use std::io::IsTerminal;
use std::sync::Arc;

/// Layers fetched at once, like docker.
const CONCURRENT_LAYERS: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Platform to pick from an index; default linux/amd64.
    pub platform: Option<PlatformSpec>,
    /// Registries to reach over plain HTTP besides localhost/127.0.0.0/8/::1.
    pub insecure_registries: Vec<String>,
    /// Progress bars (on a terminal) or lines (otherwise) on stderr.
    pub progress: bool,
}

/// localhost, 127.0.0.0/8 and ::1, with or without a port: reached over plain HTTP.
pub fn is_local(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                registry
            }
        })
        .unwrap_or(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

pub(crate) fn insecure_list(opts: &PullOptions, registry: &str) -> Vec<String> {
    let mut v: Vec<String> = opts.insecure_registries.clone();
    if let Ok(env) = std::env::var("HX_INSECURE_REGISTRIES") {
        v.extend(
            env.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    if is_local(registry) {
        v.push(registry.to_string());
    }
    v
}

pub(crate) fn oci_ref(r: &Reference, digest: Option<&Digest>) -> oci_client::Reference {
    match (digest.or(r.digest.as_ref()), &r.tag) {
        (Some(d), _) => oci_client::Reference::with_digest(
            r.registry.clone(),
            r.repository.clone(),
            d.to_string(),
        ),
        (None, Some(t)) => {
            oci_client::Reference::with_tag(r.registry.clone(), r.repository.clone(), t.clone())
        }
        (None, None) => oci_client::Reference::with_tag(
            r.registry.clone(),
            r.repository.clone(),
            "latest".into(),
        ),
    }
}

/// Maps oci-client's errors to ours, so each failure has its own exit code.
pub(crate) fn map_err(r: &Reference, what: &str, e: OciDistributionError) -> Error {
    let registry = r.registry.clone();
    match e {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            Error::Unauthorized { registry, detail: format!("{what}: authentication required (credentials in docker's config.json: $DOCKER_CONFIG or ~/.docker)") }
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}", e.code)).collect();
            let msg: Vec<String> = envelope.errors.iter().map(|e| e.message.clone()).collect();
            if codes.iter().any(|c| c.contains("ManifestUnknown") || c.contains("NameUnknown") || c.contains("BlobUnknown")) {
                Error::ManifestNotFound { reference: r.to_string(), registry }
            } else if codes.iter().any(|c| c.contains("Unauthorized") || c.contains("Denied")) {
                Error::Unauthorized { registry, detail: msg.join("; ") }
            } else {
                Error::Registry { registry, detail: format!("{what}: {}", msg.join("; ")) }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } | OciDistributionError::ImageManifestNotFoundError(_) => {
            Error::ManifestNotFound { reference: r.to_string(), registry }
        }
        OciDistributionError::ServerError { code: 401, .. } => Error::Unauthorized { registry, detail: what.to_string() },
        OciDistributionError::RequestError(re) => {
            let mut detail = re.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&re);
            while let Some(s) = src {
                detail = format!("{detail}: {s}");
                src = s.source();
            }
            Error::RegistryUnreachable { registry, detail: format!("{what}: {detail}") }
        }
        OciDistributionError::IoError(io) => Error::RegistryUnreachable { registry, detail: format!("{what}: {io}") },
        other => Error::Registry { registry, detail: format!("{what}: {other}") },
    }
}

struct Session {
    client: Client,
    auth: RegistryAuth,
    reference: Reference,
}

impl Session {
    async fn open(reference: &Reference, opts: &PullOptions) -> Result<Session> {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure_list(opts, &reference.registry)),
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        crate::tls::init();
        let client = Client::new(config);
        let auth = match crate::auth::credentials(&reference.registry) {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        };
        let r = oci_ref(reference, None);
        client
            .auth(&r, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| map_err(reference, "authentication", e))?;
        Ok(Session {
            client,
            auth,
            reference: reference.clone(),
        })
    }

    async fn manifest(&self, digest: Option<&Digest>) -> Result<(Vec<u8>, Digest)> {
        let r = oci_ref(&self.reference, digest);
        let (bytes, digest_str) = self
            .client
            .pull_manifest_raw(&r, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| map_err(&self.reference, "manifest", e))?;
        let actual = Digest::of_bytes(&bytes);
        let claimed = Digest::parse(&digest_str).unwrap_or(actual.clone());
        let want = digest.cloned().unwrap_or(claimed);
        if actual != want {
            return Err(Error::DigestMismatch {
                digest: want.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok((bytes.to_vec(), actual))
    }

    async fn blob(&self, store: &Store, desc: &Descriptor, bar: &ProgressBar) -> Result<()> {
        if store.has_blob(&desc.digest) {
            bar.finish_with_message("Already exists");
            return Ok(());
        }
        let mut w = store.begin_blob(&desc.digest)?;
        if w.offset() > desc.size {
            w.reset()?;
        }
        let r = oci_ref(&self.reference, None);
        let layer = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: desc.size as i64,
            ..Default::default()
        };
        if w.offset() == desc.size {
            // A complete download stashed by an earlier failed pull.
            if w.commit(Some(desc.size)).is_ok() {
                bar.finish_with_message("Verified");
                return Ok(());
            }
            w = store.begin_blob(&desc.digest)?;
        }
        if w.offset() >= desc.size {
            w.reset()?;
        }
        let resumed = w.offset();
        if resumed > 0 {
            tracing::info!(digest = %desc.digest, offset = resumed, "resuming download");
        }
        // Always a ranged request (from 0 on a fresh download): the bytes are verified here,
        // by BlobWriter, whether or not the registry honours the range.
        let mut stream = match self
            .client
            .pull_blob_stream_partial(&r, &layer, resumed, None)
            .await
            .map_err(|e| map_err(&self.reference, "blob", e))?
        {
            BlobResponse::Partial(s) => s.stream,
            BlobResponse::Full(s) => {
                w.reset()?;
                s.stream
            }
        };
        bar.set_length(desc.size);
        bar.set_position(w.offset());
        bar.set_message(if w.offset() > 0 {
            "Resuming"
        } else {
            "Downloading"
        });
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if e.to_string().contains("Invalid digest") => {
                    drop(w);
                    let _ = std::fs::remove_file(
                        store
                            .tmp_dir()
                            .join(format!("partial-{}", desc.digest.hex())),
                    );
                    return Err(Error::DigestMismatch {
                        digest: desc.digest.to_string(),
                        actual: e.to_string(),
                    });
                }
                Err(e) => {
                    return Err(Error::RegistryUnreachable {
                        registry: self.reference.registry.clone(),
                        detail: format!("blob {}: {e}", desc.digest),
                    })
                }
            };
            if w.offset() + chunk.len() as u64 > desc.size {
                drop(w);
                let _ = std::fs::remove_file(
                    store
                        .tmp_dir()
                        .join(format!("partial-{}", desc.digest.hex())),
                );
                return Err(Error::DigestMismatch {
                    digest: desc.digest.to_string(),
                    actual: "(more bytes than the descriptor's size)".into(),
                });
            }
            w.write_all(&chunk)?;
            bar.set_position(w.offset());
        }
        w.commit(Some(desc.size))?;
        bar.finish_with_message("Pull complete");
        Ok(())
    }
}

/// Fetches the manifest of `reference` (`fetch(None)`) and follows indexes to the image manifest
/// for `platform`, at most `max_index_depth` of them, each document at most `max_manifest_bytes`.
async fn resolve_manifest<F, Fut>(
    reference: &str,
    platform: &PlatformSpec,
    limits: &crate::limits::Limits,
    fetch: F,
) -> Result<(Vec<u8>, Digest, crate::manifest::ImageManifest)>
where
    F: Fn(Option<Digest>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<u8>, Digest)>>,
{
    let bounded = |what: &str, bytes: &[u8]| {
        if bytes.len() as u64 > limits.max_manifest_bytes {
            return Err(Error::ManifestTooLarge {
                what: what.to_string(),
                limit: limits.max_manifest_bytes,
            });
        }
        Ok(())
    };
    let (mut bytes, mut digest) = fetch(None).await?;
    bounded(&format!("manifest of {reference}"), &bytes)?;
    let mut depth = 0;
    loop {
        match Manifest::parse(reference, "", &bytes)? {
            Manifest::Image(m) => return Ok((bytes, digest, m)),
            Manifest::Index(index) => {
                depth += 1;
                if depth > limits.max_index_depth {
                    return Err(Error::IndexTooDeep {
                        reference: reference.to_string(),
                        limit: limits.max_index_depth,
                    });
                }
                let chosen = platform.select(reference, &index)?;
                if chosen.size > limits.max_manifest_bytes {
                    return Err(Error::ManifestTooLarge {
                        what: format!("manifest {} of {reference}", chosen.digest),
                        limit: limits.max_manifest_bytes,
                    });
                }
                let next = chosen.digest.clone();
                (bytes, digest) = fetch(Some(next.clone())).await?;
                bounded(&format!("manifest {next} of {reference}"), &bytes)?;
            }
        }
    }
}

/// Pulls `reference` into the store, builds its rootfs, and names it. On failure the store is
/// as it was; verified downloads stay in tmp/ for the next attempt to resume from.
pub async fn pull(store: &Store, reference: &Reference, opts: &PullOptions) -> Result<ImageRecord> {
    let before: std::collections::HashSet<Digest> =
        std::fs::read_dir(store.root().join("blobs/sha256"))
            .map_err(|e| Error::io(store.root(), e))?
            .flatten()
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .collect();
    let r = pull_inner(store, reference, opts).await;
    if r.is_err() {
        let added: Vec<Digest> = std::fs::read_dir(store.root().join("blobs/sha256"))
            .map_err(|e| Error::io(store.root(), e))?
            .flatten()
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .filter(|d| !before.contains(d))
            .collect();
        store.stash_blobs(&added)?;
    }
    r
}

async fn pull_inner(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<ImageRecord> {
    let platform = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
    let session = Session::open(reference, opts).await?;
    let limits = *store.limits();
    let (bytes, mdigest, manifest) =
        resolve_manifest(&reference.to_string(), &platform, &limits, |d| {
            let session = &session;
            async move { session.manifest(d.as_ref()).await }
        })
        .await?;
    if manifest.config.size > limits.max_manifest_bytes {
        return Err(Error::ManifestTooLarge {
            what: format!("config {} of {reference}", manifest.config.digest),
            limit: limits.max_manifest_bytes,
        });
    }
    let mut work = store.begin_work("pull")?;
    work.pin_blob(&mdigest)?;
    work.pin_blob(&manifest.config.digest)?;
    for l in &manifest.layers {
        work.pin_blob(&l.digest)?;
    }
    let name = reference.digest.is_none().then(|| reference.to_string());
    let up_to_date = store.has_blob(&mdigest) && store.find_image(mdigest.as_str()).is_ok();

    let missing: u64 = manifest
        .layers
        .iter()
        .filter(|l| !store.has_blob(&l.digest))
        .map(|l| l.size)
        .sum();
    // Layers, then their unpacked tree and the rootfs image built from it.
    let need = missing * 4;
    let free = free_space(store.root())?;
    if need > free {
        return Err(Error::NoSpace {
            path: store.root().to_path_buf(),
            need,
            free,
        });
    }

    let multi =
        MultiProgress::with_draw_target(if opts.progress && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
    let lines = opts.progress && !std::io::stderr().is_terminal();
    if opts.progress {
        eprintln!(
            "{}: Pulling from {}",
            reference.tag.as_deref().unwrap_or("digest"),
            reference.name()
        );
    }
    let style = ProgressStyle::with_template("{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes}")
        .expect("template")
        .progress_chars("=> ");

    let config_bar = ProgressBar::hidden();
    session.blob(store, &manifest.config, &config_bar).await?;

    // The rootfs is built as the layers land, each applied once it is in the store and
    // verified (the first while the next download), before the name: an image becomes
    // visible only once it can run.
    store.put_blob(&bytes)?;
    let unindexed = store.unindexed_record(&mdigest)?;
    let arrivals = Arc::new(Arrivals::default());
    let (store2, arrivals2) = (store.clone(), arrivals.clone());
    let build = tokio::task::spawn_blocking(move || {
        store2
            .rootfs_while_pulling(&unindexed, &mut work, arrivals2)
            .map(|_| work)
    });
    let _release = ReleaseOnDrop(arrivals.clone());

    let session = Arc::new(session);
    // One download per distinct layer (images repeat their empty layer): two writers of one
    // blob in this process would wait for each other's lock forever.
    let mut distinct = manifest.layers.clone();
    let mut seen = std::collections::HashSet::new();
    distinct.retain(|l| seen.insert(l.digest.clone()));
    let mut pending = futures_util::stream::iter(distinct.into_iter().map(|layer| {
        let session = session.clone();
        let store = store.clone();
        let arrivals = arrivals.clone();
        let bar = multi.add(
            ProgressBar::new(layer.size)
                .with_style(style.clone())
                .with_prefix(layer.digest.short().to_string()),
        );
        async move {
            let r = session.blob(&store, &layer, &bar).await;
            match &r {
                Ok(_) => arrivals.landed(&layer.digest),
                Err(_) => arrivals.fail(),
            }
            if lines && r.is_ok() {
                eprintln!("{}: Pull complete", layer.digest.short());
            }
            r
        }
    }))
    .buffer_unordered(CONCURRENT_LAYERS);
    let mut first_err = None;
    while let Some(r) = pending.next().await {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    // A failed download has failed `arrivals` (above): the build ends at the layer that did
    // not land, and the download's error is the one reported.
    let built = build.await.map_err(|e| Error::Store {
        path: store.root().to_path_buf(),
        detail: e.to_string(),
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    let work = built??;
    let record = store.add_image(&mdigest, name.as_deref())?;
    drop(work);
    if opts.progress {
        eprintln!("Digest: {mdigest}");
        if up_to_date {
            eprintln!("Status: Image is up to date for {}", reference.familiar());
        } else {
            eprintln!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            );
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_registries_are_plain_http() {
        assert!(is_local("localhost:5000"));
        assert!(is_local("127.0.0.1:41234"));
        assert!(is_local("[::1]:5000"));
        assert!(!is_local("docker.io"));
        assert!(!is_local("registry.example.com:5000"));
        let opts = PullOptions {
            insecure_registries: vec!["lab:5000".into()],
            ..Default::default()
        };
        assert!(insecure_list(&opts, "docker.io").contains(&"lab:5000".to_string()));
        assert!(!insecure_list(&opts, "docker.io").contains(&"docker.io".to_string()));
    }

    fn index_to(digest: &Digest, size: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_INDEX,
            "manifests": [{ "mediaType": crate::manifest::OCI_INDEX, "digest": digest.to_string(), "size": size,
                            "platform": { "os": "linux", "architecture": "amd64" } }]
        }))
        .unwrap()
    }

    fn resolve(
        docs: std::collections::HashMap<Option<Digest>, Vec<u8>>,
        limits: crate::limits::Limits,
    ) -> Result<Digest> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let fetch = |d: Option<Digest>| {
            let bytes = docs[&d].clone();
            async move {
                let digest = Digest::of_bytes(&bytes);
                Ok((bytes, digest))
            }
        };
        rt.block_on(resolve_manifest(
            "registry.test/x:1",
            &PlatformSpec::host(),
            &limits,
            fetch,
        ))
        .map(|(_, d, _)| d)
    }

    #[test]
    fn an_index_that_names_itself_ends_at_the_depth_limit() {
        // The index's entry points at a digest whose document is the same index again.
        let loop_digest = Digest::of_bytes(b"loop");
        let idx = index_to(&loop_digest, 300);
        let docs = [(None, idx.clone()), (Some(loop_digest), idx)]
            .into_iter()
            .collect();
        let err = resolve(docs, crate::limits::Limits::default()).unwrap_err();
        assert!(matches!(err, Error::IndexTooDeep { limit: 2, .. }), "{err}");
        assert_eq!(err.exit_code(), 35);
    }

    #[test]
    fn oversized_manifests_and_descriptors_are_refused() {
        let limits = crate::limits::Limits {
            max_manifest_bytes: 4096,
            ..Default::default()
        };
        let image = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": crate::manifest::OCI_MANIFEST,
            "config": { "mediaType": crate::manifest::OCI_CONFIG, "digest": Digest::of_bytes(b"c").to_string(), "size": 1 },
            "layers": [], "annotations": { "pad": "x".repeat(5000) }
        }))
        .unwrap();
        let docs: std::collections::HashMap<_, _> = [(None, image.clone())].into_iter().collect();
        assert!(matches!(
            resolve(docs, limits).unwrap_err(),
            Error::ManifestTooLarge { limit: 4096, .. }
        ));
        // An index entry claiming a huge manifest is refused before it is fetched.
        let big = Digest::of_bytes(b"big");
        let docs = [(None, index_to(&big, 1 << 40))].into_iter().collect();
        assert!(matches!(
            resolve(docs, limits).unwrap_err(),
            Error::ManifestTooLarge { .. }
        ));
        // Within the limits the same shapes resolve.
        let small = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": crate::manifest::OCI_MANIFEST,
            "config": { "mediaType": crate::manifest::OCI_CONFIG, "digest": Digest::of_bytes(b"c").to_string(), "size": 1 },
            "layers": []
        }))
        .unwrap();
        let d = Digest::of_bytes(&small);
        let docs = [
            (None, index_to(&d, small.len() as u64)),
            (Some(d.clone()), small),
        ]
        .into_iter()
        .collect();
        assert_eq!(resolve(docs, limits).unwrap(), d);
    }
}
