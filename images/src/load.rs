//! `hx load` (OCI layout directory, oci-archive, docker-save tarball) and `hx import`.
use crate::apply::clean_name;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::limits::Limits;
use crate::manifest::{
    Descriptor, ImageManifest, Manifest, PlatformSpec, DOCKER_CONFIG, OCI_CONFIG, OCI_MANIFEST,
};
use crate::store::Store;
use crate::store::Work;
use crate::tarstream::{into_error, TarStream};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Loads every image of an OCI layout dir, an oci-archive or a docker-save tarball.
pub fn load(store: &Store, input: &Path, platform: &PlatformSpec) -> Result<Vec<ImageRecord>> {
    load_with(store, input, None, platform)
}

/// Loads every image of an oci-archive or docker-save tarball read from `reader` (stdin, or a
/// file hx opened itself); `name` is what errors call it.
pub fn load_stream(
    store: &Store,
    name: &Path,
    reader: Box<dyn Read>,
    platform: &PlatformSpec,
) -> Result<Vec<ImageRecord>> {
    load_with(store, name, Some(reader), platform)
}

fn load_with(
    store: &Store,
    input: &Path,
    reader: Option<Box<dyn Read>>,
    platform: &PlatformSpec,
) -> Result<Vec<ImageRecord>> {
    let mut added = Vec::new();
    let mut work = store.begin_work("load")?;
    let r = match reader {
        Some(reader) => load_tar(store, input, reader, platform, &mut added, &mut work),
        None => load_any(store, input, platform, &mut added, &mut work),
    };
    if r.is_err() {
        store.discard_blobs(&added)?;
    }
    r
}

fn load_any(
    store: &Store,
    input: &Path,
    platform: &PlatformSpec,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<Vec<ImageRecord>> {
    let meta = fs::metadata(input).map_err(|e| Error::io(input, e))?;
    if meta.is_dir() {
        let src = Source {
            root: input.to_path_buf(),
            input: input.to_path_buf(),
            aliases: HashMap::new(),
        };
        return load_layout(store, &src, platform, added, work);
    }
    if !meta.is_file() {
        return Err(invalid(input, "not a regular file or directory"));
    }
    let f = fs::File::open(input).map_err(|e| Error::io(input, e))?;
    load_tar(store, input, Box::new(f), platform, added, work)
}

fn load_tar(
    store: &Store,
    input: &Path,
    reader: Box<dyn Read>,
    platform: &PlatformSpec,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<Vec<ImageRecord>> {
    // A tarball: its regular members are copied into a private directory, nothing else is
    // created there, and links between members are only noted (see `extract`).
    let dir = work.path().join("archive");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let mut f = io::BufReader::new(reader);
    let gzip = f
        .fill_buf()
        .map_err(|e| Error::io(input, e))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let aliases = extract(store, input, reader, &dir)?;
    let src = Source {
        root: dir,
        input: input.to_path_buf(),
        aliases,
    };
    if src.is_file("oci-layout") {
        load_layout(store, &src, platform, added, work)
    } else if src.is_file("manifest.json") {
        load_docker_save(store, &src, added, work)
    } else {
        Err(invalid(
            input,
            "neither an OCI layout (oci-layout) nor a docker-save archive (manifest.json)",
        ))
    }
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidArchive {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Unpacks the archive `input` into `dir`: directories and regular files only, each file never
/// longer than its member's declared size. A symlink or hardlink member becomes an alias of the
/// member it names (docker save links a repeated layer.tar to its first copy), and only if that
/// name stays inside the archive. Anything else (a FIFO, a device) is refused. The whole
/// archive is bounded like an image (limits.max_image_bytes and the header and entry limits).
fn extract(
    store: &Store,
    input: &Path,
    reader: impl Read,
    dir: &Path,
) -> Result<HashMap<PathBuf, PathBuf>> {
    let limits = Limits {
        max_layer_bytes: store.limits().max_image_bytes,
        ..*store.limits()
    };
    let mut stream = TarStream::new(reader, &format!("archive {}", input.display()), limits);
    let mut aliases = HashMap::new();
    let to_invalid = |e: Error| match e {
        Error::BadLayer { reason, entry, .. } => {
            invalid(input, format!("member {entry:?}: {reason}"))
        }
        Error::LayerTooLarge { limit, .. } => invalid(
            input,
            format!("more than {limit} bytes (limits.max_image_bytes)"),
        ),
        other => other,
    };
    while let Some(entry) = stream.next_entry().map_err(to_invalid)? {
        let name = entry.path_lossy();
        let member = |reason: &str| invalid(input, format!("member {name:?}: {reason}"));
        let raw = PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path));
        let Some(rel) = clean_name(&raw).map_err(member)? else {
            continue;
        };
        let dest = dir.join(&rel);
        match entry.kind() {
            tar::EntryType::Directory => fs::DirBuilder::new().recursive(true).mode(0o700).create(&dest).map_err(|e| member(&e.to_string()))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|e| member(&e.to_string()))?;
                }
                // A later member of the same name replaces an earlier one, as tar does.
                aliases.remove(&rel);
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file()) {
                    fs::remove_file(&dest).map_err(|e| Error::io(&dest, e))?;
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| member(&e.to_string()))?;
                if let Err(e) = io::copy(&mut stream.data(), &mut f) {
                    return Err(match into_error(e) {
                        Ok(limit) => to_invalid(limit),
                        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Error::io(&dest, e),
                        Err(e) => member(&e.to_string()),
                    });
                }
            }
            kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                let link = entry.link.as_deref().filter(|l| !l.is_empty()).ok_or_else(|| member("link without a target"))?;
                let link = Path::new(std::ffi::OsStr::from_bytes(link));
                // A symlink's target is relative to its directory; a hardlink's to the archive.
                let target = if kind == tar::EntryType::Symlink {
                    if link.is_absolute() {
                        return Err(member(&format!("symlink to {:?}, outside the archive", link.display().to_string())));
                    }
                    rel.parent().unwrap_or(Path::new("")).join(link)
                } else {
                    link.to_path_buf()
                };
                let target = lexical(&target).ok_or_else(|| member(&format!("link to {:?}, outside the archive", link.display().to_string())))?;
                aliases.insert(rel, target);
            }
            other => return Err(member(&format!("is a {other:?} member: an image archive holds only files, directories and links between them"))),
        }
    }
    stream.finish().map_err(to_invalid)?;
    Ok(aliases)
}

/// `p` with `.` and `dir/..` resolved lexically; None if it climbs above the start or is absolute.
fn lexical(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Where the files of an OCI layout or docker-save archive are read from: a directory the user
/// named, or the private copy of an archive's members (with its aliases).
struct Source {
    root: PathBuf,
    /// What the user passed to `hx load`, for errors.
    input: PathBuf,
    aliases: HashMap<PathBuf, PathBuf>,
}

impl Source {
    /// Opens `name` (relative to the root) as a regular file, following no symlink on the way
    /// (O_NOFOLLOW on every component), never blocking on a FIFO; returns it with its size.
    fn open(&self, name: &str) -> Result<(fs::File, u64)> {
        let bad = |reason: String| invalid(&self.input, format!("{name:?}: {reason}"));
        let mut rel = clean_name(Path::new(name))
            .map_err(|r| bad(r.to_string()))?
            .ok_or_else(|| bad("empty name".into()))?;
        for _ in 0..16 {
            match self.aliases.get(&rel) {
                Some(t) => rel = t.clone(),
                None => break,
            }
        }
        let root = fs::File::open(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut dir: OwnedFd = root.into();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let flags = libc::O_RDONLY
                | libc::O_NOFOLLOW
                | libc::O_CLOEXEC
                | if last {
                    libc::O_NONBLOCK
                } else {
                    libc::O_DIRECTORY
                };
            let c_name = std::ffi::CString::new(c.as_os_str().as_bytes())
                .map_err(|_| bad("name contains NUL".into()))?;
            // SAFETY: a valid directory fd and NUL-terminated name.
            let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), flags) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                        bad("is (or goes through) a symlink or non-directory".into())
                    }
                    Some(libc::ENOENT) => bad("not found".into()),
                    _ => bad(e.to_string()),
                });
            }
            // SAFETY: fd was just opened and is owned by nothing else.
            dir = unsafe { OwnedFd::from_raw_fd(fd) };
        }
        let f = fs::File::from(dir);
        let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        Ok((f, meta.len()))
    }

    fn is_file(&self, name: &str) -> bool {
        self.open(name).is_ok()
    }

    /// A small document (index, manifest, config), at most limits.max_manifest_bytes.
    fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (f, len) = self.open(name)?;
        if len > limit {
            return Err(Error::ManifestTooLarge {
                what: format!("{}: {name}", self.input.display()),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(self.root.join(name), e))?;
        if bytes.len() as u64 > limit {
            return Err(Error::ManifestTooLarge {
                what: format!("{}: {name}", self.input.display()),
                limit,
            });
        }
        Ok(bytes)
    }

    fn blob_name(d: &Digest) -> String {
        format!("blobs/sha256/{}", d.hex())
    }
}

/// Copies `name` into the store as blob `digest` of exactly `size` bytes, verifying both;
/// notes it in `added` when new. Pinned first, so prune keeps it until the image is indexed.
fn copy_blob(
    store: &Store,
    src: &Source,
    name: &str,
    digest: &Digest,
    size: u64,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<()> {
    work.pin_blob(digest)?;
    if store.has_blob(digest) {
        return Ok(());
    }
    let (f, len) = src.open(name)?;
    if len < size {
        return Err(Error::TruncatedBlob {
            digest: digest.to_string(),
            got: len,
            want: size,
        });
    }
    if len > size {
        return Err(Error::DigestMismatch {
            digest: digest.to_string(),
            actual: format!("({len} bytes, the descriptor says {size})"),
        });
    }
    added.push(digest.clone());
    let mut f = f.take(size);
    let mut w = store.begin_blob(digest)?;
    w.reset()?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(src.root.join(name), e))?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    w.commit(Some(size))
}

fn load_layout(
    store: &Store,
    src: &Source,
    platform: &PlatformSpec,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<Vec<ImageRecord>> {
    let limit = store.limits().max_manifest_bytes;
    let bytes = match src.read_small("index.json", limit) {
        Err(Error::InvalidArchive { .. }) => {
            return Err(invalid(
                &src.input,
                "no index.json (a regular file): not an OCI layout",
            ))
        }
        r => r?,
    };
    let index = match Manifest::parse("index.json", crate::manifest::OCI_INDEX, &bytes)? {
        Manifest::Index(i) => i,
        Manifest::Image(_) => return Err(invalid(&src.input, "index.json is not an image index")),
    };
    let mut out = Vec::new();
    for desc in &index.manifests {
        let name = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
            .cloned();
        let Some(image_desc) = resolve_image(src, desc, platform, limit)? else {
            continue;
        };
        let mbytes = read_blob(src, &image_desc, limit)?;
        let manifest =
            match Manifest::parse(image_desc.digest.as_str(), &image_desc.media_type, &mbytes)? {
                Manifest::Image(m) => m,
                Manifest::Index(_) => {
                    return Err(invalid(
                        &src.input,
                        "nested index where an image manifest was expected",
                    ))
                }
            };
        if manifest.config.size > limit {
            return Err(Error::ManifestTooLarge {
                what: format!("config {}", manifest.config.digest),
                limit,
            });
        }
        copy_blob(
            store,
            src,
            &Source::blob_name(&manifest.config.digest),
            &manifest.config.digest,
            manifest.config.size,
            added,
            work,
        )?;
        for l in &manifest.layers {
            copy_blob(
                store,
                src,
                &Source::blob_name(&l.digest),
                &l.digest,
                l.size,
                added,
                work,
            )?;
        }
        copy_blob(
            store,
            src,
            &Source::blob_name(&image_desc.digest),
            &image_desc.digest,
            mbytes.len() as u64,
            added,
            work,
        )?;
        // A bare tag as ref.name ("1.0") names nothing we can use; a full reference does.
        let name = name.filter(|n| {
            crate::reference::Reference::parse(n).is_ok()
                && !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
        // The rootfs first: an image becomes visible only once it can run.
        store.rootfs_in(&store.unindexed_record(&image_desc.digest)?, work)?;
        out.push(store.add_image(&image_desc.digest, name.as_deref())?);
    }
    if out.is_empty() {
        return Err(invalid(
            &src.input,
            format!("no image for platform {platform}"),
        ));
    }
    Ok(out)
}

/// A manifest or index blob of the layout, bounded by its descriptor and `limit`, verified.
fn read_blob(src: &Source, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
    if desc.size > limit {
        return Err(Error::ManifestTooLarge {
            what: format!("{}: manifest {}", src.input.display(), desc.digest),
            limit,
        });
    }
    let bytes = src.read_small(&Source::blob_name(&desc.digest), desc.size)?;
    if bytes.len() as u64 != desc.size {
        return Err(Error::TruncatedBlob {
            digest: desc.digest.to_string(),
            got: bytes.len() as u64,
            want: desc.size,
        });
    }
    let actual = Digest::of_bytes(&bytes);
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            digest: desc.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

/// Follows an index entry to the image manifest for `platform` (one nested index at most).
fn resolve_image(
    src: &Source,
    desc: &Descriptor,
    platform: &PlatformSpec,
    limit: u64,
) -> Result<Option<Descriptor>> {
    if let Some(p) = &desc.platform {
        if !platform.matches(p) {
            return Ok(None);
        }
    }
    let bytes = read_blob(src, desc, limit)?;
    match Manifest::parse(desc.digest.as_str(), &desc.media_type, &bytes)? {
        Manifest::Image(_) => Ok(Some(desc.clone())),
        Manifest::Index(inner) => Ok(Some(platform.select(desc.digest.as_str(), &inner)?.clone())),
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

fn load_docker_save(
    store: &Store,
    src: &Source,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<Vec<ImageRecord>> {
    let limit = store.limits().max_manifest_bytes;
    let input = &src.input;
    let bytes = src.read_small("manifest.json", limit)?;
    let entries: Vec<DockerSaveEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(input, format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_bytes = src.read_small(&entry.config, limit)?;
        let config_digest = Digest::of_bytes(&config_bytes);
        work.pin_blob(&config_digest)?;
        if !store.has_blob(&config_digest) {
            added.push(config_digest.clone());
        }
        store.put_blob(&config_bytes)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (f, size) = src.open(l)?;
            let (digest, gzip) = hash_file(f, size, &src.root.join(l))?;
            copy_blob(store, src, l, &digest, size, added, work)?;
            let media_type = if gzip {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else {
                "application/vnd.docker.image.rootfs.diff.tar"
            };
            layers.push(Descriptor {
                media_type: media_type.into(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            });
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(crate::manifest::DOCKER_MANIFEST.into()),
            config: Descriptor {
                media_type: DOCKER_CONFIG.into(),
                digest: config_digest,
                size: config_bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers,
        };
        let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let mdigest = Digest::of_bytes(&mbytes);
        work.pin_blob(&mdigest)?;
        if !store.has_blob(&mdigest) {
            added.push(mdigest.clone());
        }
        store.put_blob(&mbytes)?;
        store.rootfs_in(&store.unindexed_record(&mdigest)?, work)?;
        let tags = entry.repo_tags.unwrap_or_default();
        let mut rec = store.add_image(&mdigest, None)?;
        for t in &tags {
            rec = store.add_image(&mdigest, Some(t))?;
        }
        out.push(rec);
    }
    Ok(out)
}

/// The sha256 of the first `size` bytes of `f`, and whether they start like gzip.
fn hash_file(f: fs::File, size: u64, p: &Path) -> Result<(Digest, bool)> {
    use sha2::Digest as _;
    let mut f = f.take(size);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut first = true;
    let mut gzip = false;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(p, e))?;
        if n == 0 {
            break;
        }
        if first {
            gzip = buf[..n].starts_with(&[0x1f, 0x8b]);
            first = false;
        }
        h.update(&buf[..n]);
    }
    Ok((Digest::from_sha256(h), gzip))
}

/// `docker import`: a tarball (plain or gzip) or a directory becomes a one-layer image.
pub fn import(
    store: &Store,
    source: &Path,
    name: &str,
    config: serde_json::Value,
) -> Result<ImageRecord> {
    let name = crate::reference::Reference::parse(name)?.to_string();
    let meta = fs::metadata(source).map_err(|e| Error::io(source, e))?;
    let mut work = store.begin_work("import")?;
    let layer_path = work.path().join("layer.tar");
    if meta.is_dir() {
        let f = fs::File::create(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        b.append_dir_all(".", source)
            .map_err(|e| Error::io(source, e))?;
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::io(&layer_path, e))?;
    } else {
        // Normalise to an uncompressed tar (bounded like a layer), validating it on the way.
        let f = fs::File::open(source).map_err(|e| Error::io(source, e))?;
        let mut f = io::BufReader::new(f);
        let gzip = f
            .fill_buf()
            .map_err(|e| Error::io(source, e))?
            .starts_with(&[0x1f, 0x8b]);
        let r: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let limit = store.limits().max_layer_bytes;
        let mut out = fs::File::create(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
        let n = std::io::copy(&mut r.take(limit + 1), &mut out).map_err(|e| invalid(source, e))?;
        if n > limit {
            return Err(Error::LayerTooLarge {
                layer: source.display().to_string(),
                limit,
            });
        }
        let check = fs::File::open(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
        let mut stream = TarStream::new(
            io::BufReader::new(check),
            &source.display().to_string(),
            *store.limits(),
        );
        let mut n = 0;
        while stream
            .next_entry()
            .map_err(|e| match e {
                Error::BadLayer { reason, .. } => invalid(source, reason),
                other => other,
            })?
            .is_some()
        {
            n += 1;
        }
        if n == 0 {
            return Err(invalid(source, "not a tar archive (no entries)"));
        }
    }
    let mut added = Vec::new();
    let r = import_layer(store, source, &name, config, &mut added, &mut work);
    if r.is_err() {
        store.discard_blobs(&added)?;
    }
    r
}

fn import_layer(
    store: &Store,
    source: &Path,
    name: &str,
    config: serde_json::Value,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<ImageRecord> {
    let src = Source {
        root: work.path().to_path_buf(),
        input: source.to_path_buf(),
        aliases: HashMap::new(),
    };
    let (f, size) = src.open("layer.tar")?;
    let (diff_id, _) = hash_file(f, size, &src.root.join("layer.tar"))?;
    copy_blob(store, &src, "layer.tar", &diff_id, size, added, work)?;
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
    let layer = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: diff_id,
        size,
        platform: None,
        annotations: Default::default(),
    };
    let types = (OCI_MANIFEST, OCI_CONFIG);
    store_image(store, &cfg, types, vec![layer], Some(name), added, work)
}

/// Puts `cfg` and a manifest of `layers` (their blobs already in the store) into the store,
/// builds the rootfs, then names the image: a bad layer leaves nothing visible behind.
/// `types`: the manifest's and the config's media types.
fn store_image(
    store: &Store,
    cfg: &serde_json::Value,
    types: (&str, &str),
    layers: Vec<Descriptor>,
    name: Option<&str>,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<ImageRecord> {
    let config_bytes = serde_json::to_vec(cfg).expect("config serializes");
    let config_digest = Digest::of_bytes(&config_bytes);
    work.pin_blob(&config_digest)?;
    added.push(config_digest);
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(types.0.into()),
        config: Descriptor {
            media_type: types.1.into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        },
        layers,
    };
    let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let mdigest = Digest::of_bytes(&mbytes);
    work.pin_blob(&mdigest)?;
    added.push(mdigest);
    let mdigest = store.put_blob(&mbytes)?;
    store.rootfs_in(&store.unindexed_record(&mdigest)?, work)?;
    store.add_image(&mdigest, name)
}

pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
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
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// What `docker commit` records beside the new layer.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    pub author: Option<String>,
    pub comment: Option<String>,
    pub created_by: String,
    /// Fields of the image config's `config` to set (`--change`), e.g. `{"Cmd": [...]}`.
    pub changes: serde_json::Map<String, serde_json::Value>,
}

/// `docker commit`: `layer` (a tar stream of a container's changes, from its guest: hostile,
/// bounded and validated like any layer) on top of `parent`, named `name` or left without a
/// name. The store is as it was when this fails.
pub fn commit(
    store: &Store,
    parent: &ImageRecord,
    layer: &mut dyn Read,
    name: Option<&str>,
    info: CommitInfo,
) -> Result<ImageRecord> {
    let name = name
        .map(|n| crate::reference::Reference::parse(n).map(|r| r.to_string()))
        .transpose()?;
    let mut work = store.begin_work("commit")?;
    let layer_path = work.path().join("layer.tar");
    let what = format!("the changes of a container of {}", parent.id.short());
    let limit = store.limits().max_layer_bytes;
    let mut out = fs::File::create(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
    let n =
        io::copy(&mut layer.take(limit + 1), &mut out).map_err(|e| Error::io(&layer_path, e))?;
    if n > limit {
        return Err(Error::LayerTooLarge { layer: what, limit });
    }
    out.sync_all().map_err(|e| Error::io(&layer_path, e))?;
    let check = fs::File::open(&layer_path).map_err(|e| Error::io(&layer_path, e))?;
    let mut stream = TarStream::new(io::BufReader::new(check), &what, *store.limits());
    while stream.next_entry()?.is_some() {}
    let mut added = Vec::new();
    let r = commit_layer(store, parent, name.as_deref(), info, &mut added, &mut work);
    if r.is_err() {
        store.discard_blobs(&added)?;
    }
    r
}

fn commit_layer(
    store: &Store,
    parent: &ImageRecord,
    name: Option<&str>,
    info: CommitInfo,
    added: &mut Vec<Digest>,
    work: &mut Work,
) -> Result<ImageRecord> {
    let src = Source {
        root: work.path().to_path_buf(),
        input: work.path().to_path_buf(),
        aliases: HashMap::new(),
    };
    let (f, size) = src.open("layer.tar")?;
    let (diff_id, _) = hash_file(f, size, &src.root.join("layer.tar"))?;
    copy_blob(store, &src, "layer.tar", &diff_id, size, added, work)?;
    let parent_manifest = store.image_manifest(&parent.manifest_digest)?;
    let parent_config = store.read_blob(&parent.id)?;
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&parent_config).map_err(|e| Error::Store {
            path: store.blob_path(&parent.id),
            detail: format!("invalid image config: {e}"),
        })?;
    if !cfg.is_object() {
        return Err(Error::Store {
            path: store.blob_path(&parent.id),
            detail: "image config is not a JSON object".into(),
        });
    }
    let created = now_rfc3339();
    cfg["created"] = serde_json::json!(created);
    if let Some(a) = &info.author {
        cfg["author"] = serde_json::json!(a);
    }
    if !cfg["config"].is_object() {
        cfg["config"] = serde_json::json!({});
    }
    for (k, v) in info.changes {
        cfg["config"][k] = v;
    }
    if !cfg["rootfs"]["diff_ids"].is_array() {
        cfg["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": [] });
    }
    if let Some(ids) = cfg["rootfs"]["diff_ids"].as_array_mut() {
        ids.push(serde_json::json!(diff_id.to_string()));
    }
    let mut entry = serde_json::json!({ "created": created, "created_by": info.created_by });
    if let Some(a) = &info.author {
        entry["author"] = serde_json::json!(a);
    }
    if let Some(c) = &info.comment {
        entry["comment"] = serde_json::json!(c);
    }
    match cfg["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => cfg["history"] = serde_json::json!([entry]),
    }
    // Docker's media types when the parent had them (a registry takes either family, not a
    // mix).
    let docker = parent_manifest.media_type.as_deref() == Some(crate::manifest::DOCKER_MANIFEST);
    let (manifest_type, config_type, layer_type) = match docker {
        true => (
            crate::manifest::DOCKER_MANIFEST,
            DOCKER_CONFIG,
            "application/vnd.docker.image.rootfs.diff.tar",
        ),
        false => (
            OCI_MANIFEST,
            OCI_CONFIG,
            "application/vnd.oci.image.layer.v1.tar",
        ),
    };
    let mut layers = parent_manifest.layers.clone();
    layers.push(Descriptor {
        media_type: layer_type.into(),
        digest: diff_id,
        size,
        platform: None,
        annotations: Default::default(),
    });
    store_image(
        store,
        &cfg,
        (manifest_type, config_type),
        layers,
        name,
        added,
        work,
    )
}
