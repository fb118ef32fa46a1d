//! Builders for layers, OCI layouts, oci-archives and docker-save tarballs, honest or hostile.
#![allow(dead_code)]
use hx_images::{Digest, Store};
use std::path::Path;

pub enum M<'a> {
    File(&'a [u8]),
    Dir,
    Symlink(&'a str),
    Hardlink(&'a str),
    Fifo,
    Char(u32, u32),
    /// A header of this type and claimed size, followed by `body` (possibly shorter).
    Raw(u8, u64, &'a [u8]),
}

/// A tar stream of raw GNU headers: names are written verbatim (nothing normalised, no checks).
pub fn tar(members: &[(&str, M)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, m) in members {
        let mut h = tar::Header::new_gnu();
        let n = name.as_bytes();
        h.as_gnu_mut().unwrap().name[..n.len()].copy_from_slice(n);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        let (kind, size, body): (u8, u64, &[u8]) = match m {
            M::File(d) => (b'0', d.len() as u64, d),
            M::Dir => (b'5', 0, &[]),
            M::Symlink(t) | M::Hardlink(t) => {
                let t = t.as_bytes();
                h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
                (
                    if matches!(m, M::Symlink(_)) {
                        b'2'
                    } else {
                        b'1'
                    },
                    0,
                    &[],
                )
            }
            M::Fifo => (b'6', 0, &[]),
            M::Char(ma, mi) => {
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                (b'3', 0, &[])
            }
            M::Raw(k, size, body) => (*k, *size, body),
        };
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn sha(bytes: &[u8]) -> Digest {
    Digest::of_bytes(bytes)
}

/// An OCI image: its blobs (name → bytes) and the digest of its manifest.
pub struct Image {
    pub blobs: Vec<(Digest, Vec<u8>)>,
    pub manifest: Digest,
    pub config: Vec<u8>,
    pub layers: Vec<Digest>,
}

/// Layers given as uncompressed tars (stored gzipped); `diff_ids` default to the honest ones.
pub fn image(layers: &[Vec<u8>], diff_ids: Option<Vec<Digest>>, note: &str) -> Image {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| sha(l)).collect());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>() },
        "history": [{ "created_by": note }],
    }))
    .unwrap();
    image_with_config(layers, config)
}

pub fn image_with_config(layers: &[Vec<u8>], config: Vec<u8>) -> Image {
    let mut blobs = vec![(sha(&config), config.clone())];
    let mut descs = Vec::new();
    let mut layer_digests = Vec::new();
    for l in layers {
        let gz = gzip(l);
        descs.push(serde_json::json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&gz).to_string(), "size": gz.len() }));
        layer_digests.push(sha(&gz));
        blobs.push((sha(&gz), gz));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config).to_string(), "size": config.len() },
        "layers": descs,
    }))
    .unwrap();
    let md = sha(&manifest);
    blobs.push((md.clone(), manifest));
    Image {
        blobs,
        manifest: md,
        config,
        layers: layer_digests,
    }
}

pub fn index_json(img: &Image, name: &str) -> Vec<u8> {
    let size = img
        .blobs
        .iter()
        .find(|(d, _)| *d == img.manifest)
        .unwrap()
        .1
        .len();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest.to_string(), "size": size,
                        "annotations": { "io.containerd.image.name": name } }],
    }))
    .unwrap()
}

/// The files of an OCI layout: (path, bytes).
pub fn layout_files(img: &Image, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index_json(img, name)),
    ];
    for (d, b) in &img.blobs {
        files.push((format!("blobs/sha256/{}", d.hex()), b.clone()));
    }
    files
}

pub fn write_layout(dir: &Path, img: &Image, name: &str) {
    for (p, b) in layout_files(img, name) {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
}

/// An oci-archive of `img` with `extra` members appended (later members replace earlier ones).
pub fn oci_archive(img: &Image, name: &str, replace: &[(&str, M)]) -> Vec<u8> {
    let files = layout_files(img, name);
    let mut members: Vec<(&str, M)> = Vec::new();
    for (p, b) in &files {
        if let Some((_, m)) = replace.iter().find(|(n, _)| n == p) {
            members.push((p.as_str(), clone_m(m)));
        } else {
            members.push((p.as_str(), M::File(b)));
        }
    }
    for (n, m) in replace {
        if !files.iter().any(|(p, _)| p == n) {
            members.push((n, clone_m(m)));
        }
    }
    tar(&members)
}

fn clone_m<'a>(m: &M<'a>) -> M<'a> {
    match m {
        M::File(d) => M::File(d),
        M::Dir => M::Dir,
        M::Symlink(t) => M::Symlink(t),
        M::Hardlink(t) => M::Hardlink(t),
        M::Fifo => M::Fifo,
        M::Char(a, b) => M::Char(*a, *b),
        M::Raw(k, s, b) => M::Raw(*k, *s, b),
    }
}

/// Asserts that a failed command left the store as a fresh one: no blob, rootfs, temp file or image.
pub fn assert_pristine(root: &Path) {
    for d in ["blobs/sha256", "rootfs", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(root.join(d))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{d} not empty: {left:?}");
    }
    let store = Store::open(root).unwrap();
    assert!(store.images().unwrap().is_empty());
}

/// A staging tree of this process left in /dev/shm.
pub fn shm_leftovers() -> Vec<String> {
    let prefix = format!("hx-rootfs-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}
