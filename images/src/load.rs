//! `hx load` (OCI layout directory, oci-archive, docker-save tarball) and `hx import`.
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::manifest::{Descriptor, ImageManifest, Manifest, PlatformSpec, DOCKER_CONFIG, OCI_CONFIG, OCI_MANIFEST};
use crate::store::Store;
use serde::Deserialize;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Loads every image of an OCI layout dir, an oci-archive or a docker-save tarball.
pub fn load(store: &Store, input: &Path, platform: &PlatformSpec) -> Result<Vec<ImageRecord>> {
    let mut added = Vec::new();
    let r = load_any(store, input, platform, &mut added);
    if r.is_err() {
        store.discard_blobs(&added)?;
    }
    r
}

fn load_any(store: &Store, input: &Path, platform: &PlatformSpec, added: &mut Vec<Digest>) -> Result<Vec<ImageRecord>> {
    let meta = fs::metadata(input).map_err(|e| Error::io(input, e))?;
    if meta.is_dir() {
        return load_layout(store, input, platform, added);
    }
    // A tarball: unpack to a private temp dir (safely), then see what it is.
    let tmp = tempfile::Builder::new().prefix("load-").tempdir_in(store.tmp_dir()).map_err(|e| Error::io(store.tmp_dir(), e))?;
    let dir = tmp.path().join("archive");
    fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
    let mut magic = [0u8; 2];
    let reader: Box<dyn Read> = {
        let mut f2 = f.try_clone().map_err(|e| Error::io(input, e))?;
        let _ = f2.read(&mut magic);
        drop(f2);
        let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
        if magic == [0x1f, 0x8b] { Box::new(flate2::read::MultiGzDecoder::new(f)) } else { Box::new(f) }
    };
    let layer_name = format!("archive {}", input.display());
    crate::apply::LayerApplier::new(&dir, &layer_name).apply(reader).map_err(|e| match e {
        Error::BadLayer { reason, .. } => Error::InvalidArchive { path: input.to_path_buf(), reason },
        other => other,
    })?;
    if dir.join("oci-layout").is_file() {
        load_layout(store, &dir, platform, added)
    } else if dir.join("manifest.json").is_file() {
        load_docker_save(store, &dir, input, added)
    } else {
        Err(Error::InvalidArchive { path: input.to_path_buf(), reason: "neither an OCI layout (oci-layout) nor a docker-save archive (manifest.json)".into() })
    }
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidArchive { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Copies a blob from a layout into the store, verifying its digest; notes it in `added` when new.
fn copy_blob(store: &Store, src: &Path, digest: &Digest, size: Option<u64>, added: &mut Vec<Digest>) -> Result<()> {
    if store.has_blob(digest) {
        return Ok(());
    }
    added.push(digest.clone());
    let mut f = fs::File::open(src).map_err(|e| Error::io(src, e))?;
    let mut w = store.begin_blob(digest)?;
    w.reset()?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(src, e))?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    w.commit(size)
}

fn load_layout(store: &Store, dir: &Path, platform: &PlatformSpec, added: &mut Vec<Digest>) -> Result<Vec<ImageRecord>> {
    let index_path = dir.join("index.json");
    let bytes = fs::read(&index_path).map_err(|_| invalid(dir, "no index.json: not an OCI layout"))?;
    let index = match Manifest::parse(&index_path.display().to_string(), crate::manifest::OCI_INDEX, &bytes)? {
        Manifest::Index(i) => i,
        Manifest::Image(_) => return Err(invalid(&index_path, "index.json is not an image index")),
    };
    let blob = |d: &Digest| dir.join("blobs/sha256").join(d.hex());
    let mut out = Vec::new();
    for desc in &index.manifests {
        let name = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
            .cloned();
        let image_desc = resolve_image(dir, desc, platform, &blob)?;
        let Some(image_desc) = image_desc else { continue };
        let mbytes = fs::read(blob(&image_desc.digest)).map_err(|e| Error::io(blob(&image_desc.digest), e))?;
        let manifest = match Manifest::parse(image_desc.digest.as_str(), &image_desc.media_type, &mbytes)? {
            Manifest::Image(m) => m,
            Manifest::Index(_) => return Err(invalid(dir, "nested index where an image manifest was expected")),
        };
        copy_blob(store, &blob(&manifest.config.digest), &manifest.config.digest, Some(manifest.config.size), added)?;
        for l in &manifest.layers {
            copy_blob(store, &blob(&l.digest), &l.digest, Some(l.size), added)?;
        }
        copy_blob(store, &blob(&image_desc.digest), &image_desc.digest, None, added)?;
        // A bare tag as ref.name ("1.0") names nothing we can use; a full reference does.
        let name = name.filter(|n| crate::reference::Reference::parse(n).is_ok() && !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        // The rootfs first: an image becomes visible only once it can run.
        store.rootfs(&store.unindexed_record(&image_desc.digest)?)?;
        out.push(store.add_image(&image_desc.digest, name.as_deref())?);
    }
    if out.is_empty() {
        return Err(invalid(dir, format!("no image for platform {platform}")));
    }
    Ok(out)
}

/// Follows an index entry to the image manifest for `platform`.
fn resolve_image(dir: &Path, desc: &Descriptor, platform: &PlatformSpec, blob: &dyn Fn(&Digest) -> PathBuf) -> Result<Option<Descriptor>> {
    if let Some(p) = &desc.platform {
        if !platform.matches(p) {
            return Ok(None);
        }
    }
    let bytes = fs::read(blob(&desc.digest)).map_err(|e| Error::io(blob(&desc.digest), e))?;
    match Manifest::parse(desc.digest.as_str(), &desc.media_type, &bytes)? {
        Manifest::Image(_) => Ok(Some(desc.clone())),
        Manifest::Index(inner) => {
            let chosen = platform.select(desc.digest.as_str(), &inner)?;
            let _ = dir;
            Ok(Some(chosen.clone()))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn load_docker_save(store: &Store, dir: &Path, input: &Path, added: &mut Vec<Digest>) -> Result<Vec<ImageRecord>> {
    let bytes = fs::read(dir.join("manifest.json")).map_err(|e| Error::io(dir.join("manifest.json"), e))?;
    let entries: Vec<DockerSaveEntry> = serde_json::from_slice(&bytes).map_err(|e| invalid(input, format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let inside = |name: &str| -> Result<PathBuf> {
            let rel = crate::apply::clean_name(Path::new(name)).map_err(|r| invalid(input, format!("{name:?}: {r}")))?.ok_or_else(|| invalid(input, "empty path"))?;
            Ok(dir.join(rel))
        };
        let config_bytes = fs::read(inside(&entry.config)?).map_err(|e| invalid(input, format!("{}: {e}", entry.config)))?;
        let config_digest = Digest::of_bytes(&config_bytes);
        if !store.has_blob(&config_digest) {
            added.push(config_digest.clone());
        }
        store.put_blob(&config_bytes)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let p = inside(l)?;
            let digest = hash_file(&p)?;
            let size = fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
            copy_blob(store, &p, &digest, Some(size), added)?;
            let mut magic = [0u8; 2];
            let _ = fs::File::open(&p).and_then(|mut f| f.read(&mut magic));
            let media_type = if magic == [0x1f, 0x8b] { "application/vnd.docker.image.rootfs.diff.tar.gzip" } else { "application/vnd.docker.image.rootfs.diff.tar" };
            layers.push(Descriptor { media_type: media_type.into(), digest, size, platform: None, annotations: Default::default() });
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(crate::manifest::DOCKER_MANIFEST.into()),
            config: Descriptor { media_type: DOCKER_CONFIG.into(), digest: config_digest, size: config_bytes.len() as u64, platform: None, annotations: Default::default() },
            layers,
        };
        let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let mdigest = Digest::of_bytes(&mbytes);
        if !store.has_blob(&mdigest) {
            added.push(mdigest.clone());
        }
        store.put_blob(&mbytes)?;
        store.rootfs(&store.unindexed_record(&mdigest)?)?;
        let tags = entry.repo_tags.unwrap_or_default();
        let mut rec = store.add_image(&mdigest, None)?;
        for t in &tags {
            rec = store.add_image(&mdigest, Some(t))?;
        }
        out.push(rec);
    }
    Ok(out)
}

fn hash_file(p: &Path) -> Result<Digest> {
    use sha2::Digest as _;
    let mut f = fs::File::open(p).map_err(|e| Error::io(p, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(p, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest::from_sha256(h))
}

/// `docker import`: a tarball (plain or gzip) or a directory becomes a one-layer image.
pub fn import(store: &Store, source: &Path, name: &str, config: serde_json::Value) -> Result<ImageRecord> {
    let name = crate::reference::Reference::parse(name)?.to_string();
    let meta = fs::metadata(source).map_err(|e| Error::io(source, e))?;
    let tmp = tempfile::Builder::new().prefix("import-").tempdir_in(store.tmp_dir()).map_err(|e| Error::io(store.tmp_dir(), e))?;
    let layer_path = tmp.path().join("layer.tar");
    if meta.is_dir() {
        let f = fs::File::create(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        b.append_dir_all(".", source).map_err(|e| Error::io(source, e))?;
        b.into_inner().and_then(|mut w| w.flush()).map_err(|e| Error::io(&layer_path, e))?;
    } else {
        // Normalise to an uncompressed tar, validating it as a layer on the way.
        let mut f = fs::File::open(source).map_err(|e| Error::io(source, e))?;
        let mut magic = [0u8; 2];
        let _ = f.read(&mut magic);
        let f = fs::File::open(source).map_err(|e| Error::io(source, e))?;
        let mut r: Box<dyn Read> = if magic == [0x1f, 0x8b] { Box::new(flate2::read::MultiGzDecoder::new(f)) } else { Box::new(f) };
        let mut out = fs::File::create(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
        std::io::copy(&mut r, &mut out).map_err(|e| invalid(source, e))?;
        let check = fs::File::open(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
        let mut a = tar::Archive::new(check);
        let entries = a.entries().map_err(|e| invalid(source, e))?;
        let mut n = 0;
        for e in entries {
            e.map_err(|e| invalid(source, e))?;
            n += 1;
        }
        if n == 0 {
            return Err(invalid(source, "not a tar archive (no entries)"));
        }
    }
    let mut added = Vec::new();
    let r = import_layer(store, source, &name, config, &layer_path, &mut added);
    if r.is_err() {
        store.discard_blobs(&added)?;
    }
    r
}

fn import_layer(store: &Store, source: &Path, name: &str, config: serde_json::Value, layer_path: &Path, added: &mut Vec<Digest>) -> Result<ImageRecord> {
    let diff_id = hash_file(layer_path)?;
    let size = fs::metadata(layer_path).map_err(|e| Error::io(layer_path, e))?.len();
    copy_blob(store, layer_path, &diff_id, Some(size), added)?;
    let created = now_rfc3339();
    let mut cfg = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [ { "created": created, "created_by": "hx import", "comment": format!("imported from {}", source.display()) } ],
    });
    if cfg["config"].is_null() {
        cfg["config"] = serde_json::json!({});
    }
    let config_bytes = serde_json::to_vec(&cfg).expect("config serializes");
    added.push(Digest::of_bytes(&config_bytes));
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: Descriptor { media_type: OCI_CONFIG.into(), digest: config_digest, size: config_bytes.len() as u64, platform: None, annotations: Default::default() },
        layers: vec![Descriptor { media_type: "application/vnd.oci.image.layer.v1.tar".into(), digest: diff_id, size, platform: None, annotations: Default::default() }],
    };
    let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    added.push(Digest::of_bytes(&mbytes));
    let mdigest = store.put_blob(&mbytes)?;
    // The rootfs before the name: a bad layer must leave nothing visible behind.
    store.rootfs(&store.unindexed_record(&mdigest)?)?;
    store.add_image(&mdigest, Some(name))
}

pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}
