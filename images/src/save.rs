//! `hx save`: images as a docker-save archive, the layout docker 25 writes without its OCI
//! index: `manifest.json` (per image its config, tags and layers), `repositories`, and the
//! config and each layer (uncompressed, as docker's are: the file's digest is the config's
//! diff id) under `blobs/sha256/`. `docker load`, skopeo's `docker-archive:` and `hx load`
//! read it.
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Seek, Write};

/// One image to save, and the names (`repo:tag`, familiar form) it is saved under.
pub struct SaveImage {
    pub image: ImageRecord,
    pub tags: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Writes the archive of `images` to `out`; `progress` is told the bytes written so far.
pub fn save(
    store: &Store,
    images: &[SaveImage],
    out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let work = store.begin_work("save")?;
    let mut tar = tar::Builder::new(Counting {
        inner: out,
        written: 0,
    });
    let out_err = |e: io::Error| Error::io(std::path::Path::new("<archive>"), e);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    dir_entry(&mut tar, "blobs/").map_err(out_err)?;
    dir_entry(&mut tar, "blobs/sha256/").map_err(out_err)?;
    for SaveImage { image, tags } in images {
        let config = store.read_blob(&image.id)?;
        let config_name = format!("blobs/sha256/{}", image.id.hex());
        if written.insert(image.id.clone()) {
            file_entry(&mut tar, &config_name, config.len() as u64, &config[..])
                .map_err(out_err)?;
        }
        let diff_ids: Vec<String> = image
            .config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.to_string())
            .collect();
        if diff_ids.len() != image.layers.len() {
            return Err(Error::LayerCountMismatch {
                image: image.id.to_string(),
                layers: image.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let mut layers = Vec::new();
        for (index, (layer, diff_id)) in image.layers.iter().zip(&diff_ids).enumerate() {
            let diff_id = Digest::parse(diff_id).map_err(|reason| Error::Store {
                path: store.blob_path(&image.id),
                detail: format!("diff id {diff_id:?}: {reason}"),
            })?;
            let name = format!("blobs/sha256/{}", diff_id.hex());
            if !written.contains(&diff_id) {
                let (mut tmp, size) = uncompressed(store, layer, index, &diff_id, work.path())?;
                file_entry(&mut tar, &name, size, &mut tmp).map_err(out_err)?;
                written.insert(diff_id.clone());
            }
            progress(tar.get_ref().written);
            layers.push(name);
        }
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "latest"));
            let top = layers.last().map_or("", |l| &l["blobs/sha256/".len()..]);
            repositories
                .entry(repo.to_string())
                .or_default()
                .insert(tag.to_string(), top.to_string());
        }
        manifest.push(ManifestEntry {
            config: config_name,
            repo_tags: (!tags.is_empty()).then(|| tags.clone()),
            layers,
        });
    }
    let m = serde_json::to_vec(&manifest).expect("manifest serializes");
    file_entry(&mut tar, "manifest.json", m.len() as u64, &m[..]).map_err(out_err)?;
    let r = serde_json::to_vec(&repositories).expect("repositories serializes");
    file_entry(&mut tar, "repositories", r.len() as u64, &r[..]).map_err(out_err)?;
    let mut out = tar.into_inner().map_err(out_err)?;
    out.flush().map_err(out_err)?;
    progress(out.written);
    Ok(())
}

/// The layer decompressed into a file in `dir` (tar entries need their size first), checked
/// against its diff id; the file, rewound, and its size.
fn uncompressed(
    store: &Store,
    layer: &crate::image::LayerRef,
    index: usize,
    diff_id: &Digest,
    dir: &std::path::Path,
) -> Result<(std::fs::File, u64)> {
    use sha2::Digest as _;
    let mut src = crate::apply::open_layer(&store.blob_path(&layer.digest), &layer.media_type)?;
    let mut tmp = tempfile::tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| Error::io(store.blob_path(&layer.digest), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(|e| Error::io(dir, e))?;
        size += n as u64;
    }
    let actual = Digest::from_sha256(h);
    if &actual != diff_id {
        return Err(Error::DiffIdMismatch {
            layer: layer.digest.to_string(),
            index,
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    tmp.rewind().map_err(|e| Error::io(dir, e))?;
    Ok((tmp, size))
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn dir_entry<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, name, io::empty())
}

fn file_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, size, 0o644);
    tar.append_data(&mut h, name, data.take(size))
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
