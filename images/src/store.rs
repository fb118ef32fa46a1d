//! The content-addressed store.
//!
//! Layout under the root (docs/images.md):
//! - `lock`: flock serialising index changes between hx processes
//! - `blobs/sha256/<hex>`: manifests, configs and layers, named by their verified digest
//! - `index.json`: names → manifest digests, and the manifests that are images
//! - `rootfs/<config hex>.v<N>.erofs`: built read-only rootfs images
//! - `tmp/`: partial downloads (`partial-<hex>`) and build staging; nothing there is ever visible
//!   as a finished entry, everything becomes one by rename.
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{ImageRecord, LayerRef};
use crate::limits::Limits;
use crate::manifest::{ImageManifest, Manifest};
use crate::reference::Reference;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    limits: Limits,
}

/// Exclusive lock on the store's index; released on drop.
pub struct StoreLock {
    _flock: nix::fcntl::Flock<File>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// normalised name → manifest digest
    names: BTreeMap<String, Digest>,
    /// manifest digest → when it was added (RFC 3339)
    images: BTreeMap<Digest, IndexEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexEntry {
    added: u64,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        for dir in ["", "blobs/sha256", "rootfs", "tmp", "containers"] {
            let p = root.join(dir);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|e| Error::io(&p, e))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            limits: Limits::default(),
        })
    }

    /// The same store, with `limits` bounding what images may make hx read and write.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Private scratch space for one operation, left alone by prune while it lives.
    pub fn begin_work(&self, kind: &str) -> Result<Work> {
        Work::new(&self.tmp_dir(), kind)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn lock(&self) -> Result<StoreLock> {
        let p = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&p, e.into()))?;
        Ok(StoreLock { _flock: flock })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let bytes = fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                digest: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of_bytes(bytes);
        if !self.has_blob(&digest) {
            let mut w = self.begin_blob(&digest)?;
            w.reset()?;
            w.write_all(bytes)?;
            w.commit(Some(bytes.len() as u64))?;
        }
        Ok(digest)
    }

    /// A writer for a blob, resuming a partial left by an interrupted earlier attempt.
    pub fn begin_blob(&self, digest: &Digest) -> Result<BlobWriter> {
        let path = self.tmp_dir().join(format!("partial-{}", digest.hex()));
        // Locked while written, so that prune leaves it alone and two pulls of one blob take
        // turns; a lock won on a file that was meanwhile renamed into blobs/ (or pruned) is retried.
        let mut file = loop {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            let f = Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| Error::io(&path, e.into()))?;
            let held = f.metadata().map_err(|e| Error::io(&path, e))?;
            if fs::symlink_metadata(&path)
                .is_ok_and(|m| m.ino() == held.ino() && m.dev() == held.dev())
            {
                break f;
            }
        };
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        Ok(BlobWriter {
            store: self.clone(),
            digest: digest.clone(),
            path,
            file,
            hasher,
            offset,
            committed: false,
        })
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<Index> {
        let p = self.index_path();
        match fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Store {
                path: p,
                detail: format!("corrupt index: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).expect("index serializes");
        write_atomic(&self.index_path(), &bytes)
    }

    /// The image manifest at `digest`; an index is not an image.
    pub fn image_manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        let bytes = self.read_blob(digest)?;
        match Manifest::parse(digest.as_str(), "", &bytes)? {
            Manifest::Image(m) => Ok(m),
            Manifest::Index(_) => Err(Error::Store {
                path: self.blob_path(digest),
                detail: "is an index, not an image manifest".into(),
            }),
        }
    }

    pub fn add_image(&self, manifest_digest: &Digest, name: Option<&str>) -> Result<ImageRecord> {
        let manifest = self.image_manifest(manifest_digest)?;
        self.read_blob(&manifest.config.digest)?;
        for l in &manifest.layers {
            if !self.has_blob(&l.digest) {
                return Err(Error::Store {
                    path: self.blob_path(&l.digest),
                    detail: format!("layer {} missing", l.digest),
                });
            }
        }
        let name = name
            .map(|n| Reference::parse(n).map(|r| r.to_string()))
            .transpose()?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index
            .images
            .entry(manifest_digest.clone())
            .or_insert(IndexEntry { added: now() });
        if let Some(n) = name {
            index.names.insert(n, manifest_digest.clone());
        }
        self.write_index(&index)?;
        self.record(&index, manifest_digest)
    }

    fn record(&self, index: &Index, manifest_digest: &Digest) -> Result<ImageRecord> {
        let manifest = self.image_manifest(manifest_digest)?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::Store {
                path: self.blob_path(&manifest.config.digest),
                detail: format!("invalid image config: {e}"),
            })?;
        let created = config.created().clone();
        let names = index
            .names
            .iter()
            .filter(|(_, d)| *d == manifest_digest)
            .map(|(n, _)| n.clone())
            .collect();
        let layers: Vec<LayerRef> = manifest
            .layers
            .iter()
            .map(|l| LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect();
        Ok(ImageRecord {
            id: manifest.config.digest.clone(),
            manifest_digest: manifest_digest.clone(),
            names,
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            config,
            created,
        })
    }

    /// The record of a manifest whose blobs are present, without naming or indexing it
    /// (to build its rootfs before anything becomes visible).
    pub fn unindexed_record(&self, manifest_digest: &Digest) -> Result<ImageRecord> {
        self.record(&Index::default(), manifest_digest)
    }

    /// Deletes blobs that an operation added and then abandoned, unless an image uses them.
    pub fn discard_blobs(&self, blobs: &[Digest]) -> Result<()> {
        self.abandon_blobs(blobs, false)
    }

    /// Like discard_blobs, but keeps the bytes as complete partial downloads, so that a retried
    /// pull resumes without fetching them again.
    pub fn stash_blobs(&self, blobs: &[Digest]) -> Result<()> {
        self.abandon_blobs(blobs, true)
    }

    fn abandon_blobs(&self, blobs: &[Digest], stash: bool) -> Result<()> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let mut used = std::collections::HashSet::new();
        for m in index.images.keys() {
            used.insert(m.clone());
            if let Ok(man) = self.image_manifest(m) {
                used.insert(man.config.digest.clone());
                used.extend(man.layers.into_iter().map(|l| l.digest));
            }
        }
        for b in blobs.iter().filter(|b| !used.contains(*b)) {
            if stash {
                let _ = fs::rename(
                    self.blob_path(b),
                    self.tmp_dir().join(format!("partial-{}", b.hex())),
                );
            } else {
                let _ = fs::remove_file(self.blob_path(b));
            }
        }
        Ok(())
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for digest in index.images.keys() {
            out.push(self.record(&index, digest)?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// Finds an image by name (normalised like docker), name@digest, or (short) id.
    pub fn find_image(&self, reference: &str) -> Result<ImageRecord> {
        let index = self.read_index()?;
        let hexish = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hexish.len() >= 4
            && hexish.len() <= 64
            && hexish
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let mut matches = Vec::new();
            for digest in index.images.keys() {
                let rec = self.record(&index, digest)?;
                if rec.id.hex().starts_with(hexish) || digest.hex().starts_with(hexish) {
                    matches.push(rec);
                }
            }
            matches.dedup_by(|a, b| a.manifest_digest == b.manifest_digest);
            match matches.len() {
                1 => return Ok(matches.pop().unwrap()),
                0 => {}
                _ => {
                    return Err(Error::Ambiguous {
                        reference: reference.to_string(),
                        matches: matches
                            .iter()
                            .map(|m| m.id.short().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        let r =
            Reference::parse(reference).map_err(|_| Error::ImageNotFound(reference.to_string()))?;
        if let Some(d) = &r.digest {
            if index.images.contains_key(d) {
                return self.record(&index, d);
            }
            return Err(Error::ImageNotFound(reference.to_string()));
        }
        match index.names.get(&r.to_string()) {
            Some(d) => self.record(&index, d),
            None => Err(Error::ImageNotFound(reference.to_string())),
        }
    }

    /// Removes a name; the image itself goes when no name is left (or when `by_id`).
    /// Returns (untagged names, deleted manifest digest).
    pub fn remove_image(
        &self,
        reference: &str,
        force: bool,
    ) -> Result<(Vec<String>, Option<Digest>)> {
        let rec = self.find_image(reference)?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let by_name = Reference::parse(reference)
            .ok()
            .map(|r| r.to_string())
            .filter(|n| index.names.contains_key(n));
        let mut untagged = Vec::new();
        match by_name {
            Some(n) => {
                index.names.remove(&n);
                untagged.push(n);
            }
            None => {
                if rec.names.len() > 1 && !force {
                    return Err(Error::Ambiguous {
                        reference: reference.to_string(),
                        matches: format!(
                            "image is referenced by several names ({}); use -f or a name",
                            rec.names.join(", ")
                        ),
                    });
                }
                for n in &rec.names {
                    index.names.remove(n);
                    untagged.push(n.clone());
                }
            }
        }
        let still_named = index.names.values().any(|d| d == &rec.manifest_digest);
        let deleted = if still_named {
            None
        } else {
            index.images.remove(&rec.manifest_digest);
            Some(rec.manifest_digest.clone())
        };
        self.write_index(&index)?;
        Ok((untagged, deleted))
    }

    /// Removes dangling images (no name; all unnamed with `all`), unreferenced blobs, stale rootfs
    /// builds and stale temp files. `in_use` lists image ids containers still need.
    pub fn prune(&self, all: bool, in_use: &[Digest]) -> Result<PruneReport> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut report = PruneReport::default();
        let named: Vec<Digest> = index.names.values().cloned().collect();
        let ids: BTreeMap<Digest, Digest> = index
            .images
            .keys()
            .filter_map(|m| {
                self.image_manifest(m)
                    .ok()
                    .map(|man| (m.clone(), man.config.digest))
            })
            .collect();
        index.images.retain(|m, _| {
            let used = ids.get(m).is_some_and(|id| in_use.contains(id));
            let keep = used || (!all && named.contains(m));
            if !keep {
                report.images.push(m.clone());
            }
            keep
        });
        if all {
            index.names.retain(|_, d| index.images.contains_key(d));
        }
        self.write_index(&index)?;
        let mut live = std::collections::HashSet::new();
        for m in index.images.keys() {
            live.insert(m.hex().to_string());
            if let Ok(man) = self.image_manifest(m) {
                live.insert(man.config.digest.hex().to_string());
                for l in man.layers {
                    live.insert(l.digest.hex().to_string());
                }
            }
            if let Ok(rec) = self.unindexed_record(m) {
                live.insert(
                    self.rootfs_path(&rec)
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        // Listed before the work in progress is asked what it pins: an operation pins a blob or
        // rootfs before creating it, so whatever is listed here and pinned, is pinned by now.
        let blobs = read_dir(&self.root.join("blobs/sha256"))?;
        let rootfs = read_dir(&self.root.join("rootfs"))?;
        for entry in read_dir(&self.tmp_dir())? {
            if let Some(pins) = work_in_progress(&entry.path()) {
                live.extend(pins);
                continue;
            }
            report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            remove_any(&entry.path())?;
            report.temp += 1;
        }
        for entry in blobs {
            let name = entry.file_name().to_string_lossy().to_string();
            if !live.contains(&name) {
                report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                remove_any(&entry.path())?;
                report.blobs += 1;
            }
        }
        for entry in rootfs {
            let name = entry.file_name().to_string_lossy().to_string();
            if !live.contains(&name) {
                report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                remove_any(&entry.path())?;
                report.rootfs += 1;
            }
        }
        Ok(report)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub images: Vec<Digest>,
    pub blobs: usize,
    pub rootfs: usize,
    pub temp: usize,
    pub bytes: u64,
}

/// Scratch space of one operation in `tmp/`: `<kind>-<pid>-<random>`, private (0700), flocked
/// while it lives and removed on drop. Its `pins` file names the blobs and rootfs images the
/// operation is creating, so that prune keeps them until the image is in the index.
pub struct Work {
    dir: tempfile::TempDir,
    pins: File,
    _lock: Flock<File>,
}

impl Work {
    fn new(parent: &Path, kind: &str) -> Result<Work> {
        let dir = private_tempdir(parent, &format!("{kind}-{}-", std::process::id()))?;
        let handle = File::open(dir.path()).map_err(|e| Error::io(dir.path(), e))?;
        let lock = Flock::lock(handle, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::io(dir.path(), e.into()))?;
        let p = dir.path().join(PINS);
        let pins = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        Ok(Work {
            dir,
            pins,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps `blobs/sha256/<name>` or `rootfs/<name>` from prune while this work lives.
    pub fn pin(&mut self, name: &str) -> Result<()> {
        let p = self.dir.path().join(PINS);
        self.pins
            .write_all(format!("{name}\n").as_bytes())
            .map_err(|e| Error::io(&p, e))
    }

    pub fn pin_blob(&mut self, digest: &Digest) -> Result<()> {
        self.pin(digest.hex())
    }
}

const PINS: &str = "pins";

/// Some(what it pins) when `p` (an entry of tmp/) belongs to a live operation: its owner's pid
/// (from the name) is alive or it is flocked (a partial download being written, a work dir).
fn work_in_progress(p: &Path) -> Option<Vec<String>> {
    let name = p.file_name()?.to_string_lossy().into_owned();
    let owner_alive = name
        .split('-')
        .nth(1)
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    let locked = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
    {
        Ok(f) => matches!(
            Flock::lock(f, FlockArg::LockExclusiveNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        ),
        Err(_) => false,
    };
    if !owner_alive && !locked {
        return None;
    }
    let pins = fs::read_to_string(p.join(PINS)).unwrap_or_default();
    Some(pins.lines().map(str::to_string).collect())
}

/// A new directory in `parent` that only its owner can enter (0700, whatever the umask),
/// removed on drop.
pub fn private_tempdir(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let mode = fs::symlink_metadata(dir.path())
        .map_err(|e| Error::io(dir.path(), e))?
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Store {
            path: dir.path().to_path_buf(),
            detail: format!("staging directory has mode {:o}, not 0700", mode & 0o7777),
        });
    }
    Ok(dir)
}

fn read_dir(p: &Path) -> Result<Vec<fs::DirEntry>> {
    fs::read_dir(p)
        .map_err(|e| Error::io(p, e))?
        .map(|e| e.map_err(|e| Error::io(p, e)))
        .collect()
}

pub(crate) fn remove_any(p: &Path) -> Result<()> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(|e| Error::io(p, e))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes a file so that readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir);
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A blob being written: hashed while written, renamed into place only when verified.
pub struct BlobWriter {
    store: Store,
    digest: Digest,
    path: PathBuf,
    file: Flock<File>,
    hasher: Sha256,
    offset: u64,
    committed: bool,
}

impl BlobWriter {
    /// Bytes already on disk from an earlier, interrupted attempt.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Drops what an earlier attempt left (e.g. the server ignored a Range request).
    pub fn reset(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| Error::io(&self.path, e))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .write_all(buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.hasher.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    pub fn commit(mut self, expected_size: Option<u64>) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        if let Some(want) = expected_size {
            if self.offset < want {
                return Err(Error::TruncatedBlob {
                    digest: self.digest.to_string(),
                    got: self.offset,
                    want,
                });
            }
        }
        let actual = Digest::from_sha256(std::mem::take(&mut self.hasher));
        if actual != self.digest || expected_size.is_some_and(|w| w != self.offset) {
            let _ = fs::remove_file(&self.path);
            self.committed = true;
            return Err(Error::DigestMismatch {
                digest: self.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let dest = self.store.blob_path(&self.digest);
        fs::rename(&self.path, &dest).map_err(|e| Error::io(&dest, e))?;
        sync_dir(dest.parent().unwrap());
        self.committed = true;
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.file.flush();
            let _ = self.file.sync_all();
        }
    }
}

/// Free bytes on the filesystem holding `path`.
pub fn free_space(path: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io(path, e.into()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}
