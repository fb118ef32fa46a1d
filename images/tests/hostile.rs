//! Hostile images and archives against the store: each test is one attack, asserting what a
//! user sees (the error and its exit code) and that the store was left as it was.
mod common;
use common::*;
use hx_images::manifest::PlatformSpec;
use hx_images::{load, Error, Limits, Store};
use std::time::{Duration, Instant};

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    (d, s)
}

fn load_layout(
    store: &Store,
    img: &Image,
    name: &str,
) -> hx_images::Result<Vec<hx_images::ImageRecord>> {
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), img, name);
    load::load(store, dir.path(), &PlatformSpec::host())
}

fn load_archive(store: &Store, bytes: &[u8]) -> hx_images::Result<Vec<hx_images::ImageRecord>> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("image.tar");
    std::fs::write(&p, bytes).unwrap();
    load::load(store, &p, &PlatformSpec::host())
}

fn layer(who: &[u8]) -> Vec<u8> {
    tar(&[("etc/", M::Dir), ("etc/who", M::File(who))])
}

// Case 1: the rootfs cache is keyed by what determines the tree, and layers must match diff_ids.

#[test]
fn an_image_with_anothers_config_but_other_layers_is_refused() {
    let (root, store) = store();
    let victim = image(&[layer(b"victim")], None, "victim");
    // Same config bytes (hence the same image id), other layer.
    let attacker = image_with_config(&[layer(b"attacker")], victim.config.clone());
    let err = load_layout(&store, &attacker, "registry.test/attacker:1").unwrap_err();
    assert!(
        matches!(&err, Error::DiffIdMismatch { layer, index: 0, .. } if *layer == attacker.layers[0].to_string()),
        "{err}"
    );
    assert_eq!(err.exit_code(), 33);
    assert!(
        err.to_string().contains(&attacker.layers[0].to_string()),
        "names the layer: {err}"
    );
    assert_pristine(root.path());

    let rec = load_layout(&store, &victim, "registry.test/victim:1")
        .unwrap()
        .remove(0);
    let rootfs = store.rootfs_path(&rec);
    assert!(rootfs.is_file());
    // The key is the chain of diff_ids, not the config digest.
    assert!(!rootfs
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(rec.id.hex()));
    // An image with another config over the same layers shares the build.
    let same_tree = image(&[layer(b"victim")], None, "another config");
    let rec2 = load_layout(&store, &same_tree, "registry.test/same:1")
        .unwrap()
        .remove(0);
    assert_ne!(rec2.id, rec.id);
    assert_eq!(store.rootfs_path(&rec2), rootfs);
}

#[test]
fn layers_and_diff_ids_must_be_as_many() {
    let (root, store) = store();
    let l = layer(b"x");
    let img = image(
        std::slice::from_ref(&l),
        Some(vec![sha(&l), sha(&l)]),
        "two diff_ids",
    );
    let err = load_layout(&store, &img, "registry.test/count:1").unwrap_err();
    assert!(
        matches!(
            err,
            Error::LayerCountMismatch {
                layers: 1,
                diff_ids: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_pristine(root.path());
}

#[test]
fn prune_removes_rootfs_of_older_formats_and_keeps_current_ones() {
    let (_root, store) = store();
    let rec = load_layout(
        &store,
        &image(&[layer(b"a")], None, "a"),
        "registry.test/a:1",
    )
    .unwrap()
    .remove(0);
    let old = store
        .root()
        .join("rootfs")
        .join(format!("{}.v1.erofs", rec.id.hex()));
    std::fs::write(&old, b"old build").unwrap();
    let report = store.prune(false, &[]).unwrap();
    assert_eq!(report.rootfs, 1);
    assert!(!old.exists());
    assert!(store.rootfs_path(&rec).is_file());
    assert!(store.find_image("registry.test/a:1").is_ok());
}

// Case 2: archive members are read as regular files inside the archive, never past their size.

fn assert_invalid_archive(err: Error, needle: &str) {
    assert!(matches!(err, Error::InvalidArchive { .. }), "{err}");
    assert_eq!(err.exit_code(), 23);
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    assert!(!msg.contains('\n'));
}

#[test]
fn an_archive_member_symlinked_to_a_host_file_is_refused() {
    let (root, store) = store();
    let host = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(host.path(), tar(&[("secret", M::File(b"host secret"))])).unwrap();
    let img = image(&[layer(b"x")], None, "x");
    let blob = format!("blobs/sha256/{}", img.layers[0].hex());
    let target = host.path().to_str().unwrap().to_string();
    for t in [
        target.as_str(),
        "/dev/zero",
        "../../../../../../dev/zero",
        "../../../../../../etc/passwd",
    ] {
        let bytes = oci_archive(&img, "registry.test/x:1", &[(blob.as_str(), M::Symlink(t))]);
        let started = Instant::now();
        let err = load_archive(&store, &bytes).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_invalid_archive(err, "outside the archive");
        assert_pristine(root.path());
    }
}

#[test]
fn an_archive_hardlink_member_only_aliases_another_member() {
    let (root, store) = store();
    let img = image(&[layer(b"x")], None, "x");
    let blob = format!("blobs/sha256/{}", img.layers[0].hex());
    for t in ["/etc/passwd", "etc/passwd", "../x"] {
        let bytes = oci_archive(
            &img,
            "registry.test/x:1",
            &[(blob.as_str(), M::Hardlink(t))],
        );
        let err = load_archive(&store, &bytes).unwrap_err();
        assert!(matches!(err, Error::InvalidArchive { .. }), "{t}: {err}");
        assert_pristine(root.path());
    }
}

#[test]
fn a_docker_save_symlink_between_members_still_loads() {
    // docker save writes a repeated layer once and links the second layer.tar to the first.
    let (_root, store) = store();
    let l = layer(b"same");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha(&l).to_string(), sha(&l).to_string()] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{ "Config": "c.json", "RepoTags": ["registry.test/saved:1"], "Layers": ["a/layer.tar", "b/layer.tar"] }])).unwrap();
    let bytes = tar(&[
        ("c.json", M::File(&config)),
        ("a/", M::Dir),
        ("a/layer.tar", M::File(&l)),
        ("b/", M::Dir),
        ("b/layer.tar", M::Symlink("../a/layer.tar")),
        ("manifest.json", M::File(&manifest)),
    ]);
    let recs = load_archive(&store, &bytes).unwrap();
    assert_eq!(recs[0].layers.len(), 2);
    assert!(store.find_image("registry.test/saved:1").is_ok());
}

#[test]
fn a_fifo_or_device_member_is_refused_without_hanging() {
    let (root, store) = store();
    let img = image(&[layer(b"x")], None, "x");
    let blob = format!("blobs/sha256/{}", img.layers[0].hex());
    for m in [M::Fifo, M::Char(1, 5)] {
        let bytes = oci_archive(&img, "registry.test/x:1", &[(blob.as_str(), m)]);
        let started = Instant::now();
        let err = load_archive(&store, &bytes).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_invalid_archive(err, "only files, directories and links");
        assert_pristine(root.path());
    }
}

#[test]
fn a_member_larger_or_smaller_than_its_descriptor_is_refused() {
    let (root, store) = store();
    let img = image(&[layer(b"x")], None, "x");
    let (d, real) = img.blobs.iter().find(|(d, _)| *d == img.layers[0]).unwrap();
    let blob = format!("blobs/sha256/{}", d.hex());
    let mut longer = real.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    let err = load_archive(
        &store,
        &oci_archive(
            &img,
            "registry.test/x:1",
            &[(blob.as_str(), M::File(&longer))],
        ),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_pristine(root.path());
    let shorter = &real[..real.len() / 2];
    let err = load_archive(
        &store,
        &oci_archive(
            &img,
            "registry.test/x:1",
            &[(blob.as_str(), M::File(shorter))],
        ),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TruncatedBlob { .. }), "{err}");
    assert_pristine(root.path());
    // A tar member whose data ends before its header's size: the archive is truncated.
    let err = load_archive(
        &store,
        &tar(&[("oci-layout", M::Raw(b'0', 1 << 30, b"{}"))]),
    )
    .unwrap_err();
    assert_invalid_archive(err, "truncated");
    assert_pristine(root.path());
}

#[test]
fn path_traversal_in_members_and_manifest_names_is_refused() {
    let (root, store) = store();
    let outside = tempfile::tempdir().unwrap();
    let name = format!("../../../../../../../../{}/pwned", outside.path().display());
    let bytes = tar(&[
        (name.as_str(), M::File(b"x")),
        ("manifest.json", M::File(b"[]")),
    ]);
    assert_invalid_archive(load_archive(&store, &bytes).unwrap_err(), "'..'");
    assert!(!outside.path().join("pwned").exists());
    let manifest = br#"[{"Config":"../../../../etc/passwd","Layers":[]}]"#;
    let err = load_archive(&store, &tar(&[("manifest.json", M::File(manifest))])).unwrap_err();
    assert_invalid_archive(err, "'..'");
    assert_pristine(root.path());
}

#[test]
fn a_layout_directory_with_symlinked_or_special_blobs_is_refused() {
    let (root, store) = store();
    let img = image(&[layer(b"x")], None, "x");
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), &img, "registry.test/x:1");
    let blob = dir.path().join("blobs/sha256").join(img.layers[0].hex());
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
    let err = load::load(&store, dir.path(), &PlatformSpec::host()).unwrap_err();
    assert_invalid_archive(err, "symlink");
    assert_pristine(root.path());
    std::fs::remove_file(&blob).unwrap();
    let c = std::ffi::CString::new(blob.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    let err = load::load(&store, dir.path(), &PlatformSpec::host()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_invalid_archive(err, "not a regular file");
    assert_pristine(root.path());
    // A symlinked directory on the way is refused too.
    std::fs::remove_file(&blob).unwrap();
    let real = tempfile::tempdir().unwrap();
    std::fs::rename(dir.path().join("blobs"), real.path().join("blobs")).unwrap();
    std::os::unix::fs::symlink(real.path().join("blobs"), dir.path().join("blobs")).unwrap();
    let err = load::load(&store, dir.path(), &PlatformSpec::host()).unwrap_err();
    assert_invalid_archive(err, "symlink");
    assert_pristine(root.path());
}

// Case 7: header, byte and entry limits.

/// A layer of one member of type `kind` claiming `chunks` × 256 KiB of zeros, then the end of
/// the archive, as a multi-member gzip stream (layers are read with MultiGzDecoder): one
/// compressed chunk repeated, so building it costs nothing. Returns it and its diff_id (when
/// `diff_id`; a placeholder otherwise, for layers refused before their end).
fn zeros_layer(kind: u8, chunks: usize, diff_id: bool) -> (Vec<u8>, hx_images::Digest) {
    use sha2::Digest as _;
    const CHUNK: usize = 256 << 10;
    let mut head = tar(&[("zeros", M::Raw(kind, (chunks * CHUNK) as u64, &[]))]);
    head.truncate(512);
    let chunk = vec![0u8; CHUNK];
    let end = [0u8; 1024];
    let gz_chunk = gzip(&chunk);
    let mut out = gzip(&head);
    let mut h = sha2::Sha256::new();
    h.update(&head);
    for _ in 0..chunks {
        out.extend_from_slice(&gz_chunk);
        if diff_id {
            h.update(&chunk);
        }
    }
    out.extend(gzip(&end));
    h.update(end);
    (
        out,
        if diff_id {
            hx_images::Digest::from_sha256(h)
        } else {
            sha(b"never reached")
        },
    )
}

#[test]
fn a_64_mib_pax_header_is_refused_quickly() {
    let (root, store) = store();
    let layer = zeros_layer(b'x', 256, false);
    assert!(layer.0.len() < 1 << 20, "a small gzip layer");
    let img = image_from_gz(vec![layer]);
    let started = Instant::now();
    let err = load_layout(&store, &img, "registry.test/pax:1").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, Error::HeaderTooLarge { size, limit, .. } if *size == 64 << 20 && *limit == Limits::default().max_header_bytes),
        "{err}"
    );
    assert_eq!(err.exit_code(), 29);
    assert!(err.to_string().contains(&img.layers[0].to_string()));
    assert_pristine(root.path());
}

/// An image of already gzipped layers with their diff_ids.
fn image_from_gz(layers: Vec<(Vec<u8>, hx_images::Digest)>) -> Image {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|(_, d)| d.to_string()).collect::<Vec<_>>() },
    }))
    .unwrap();
    let mut img = image_with_config(&[], config.clone());
    img.blobs.retain(|(d, _)| *d == sha(&config));
    let descs: Vec<_> = layers
        .iter()
        .map(|(gz, _)| serde_json::json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gz).to_string(), "size": gz.len() }))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config).to_string(), "size": config.len() },
        "layers": descs,
    }))
    .unwrap();
    img.layers = layers.iter().map(|(gz, _)| sha(gz)).collect();
    img.manifest = sha(&manifest);
    for (gz, _) in layers {
        img.blobs.push((sha(&gz), gz));
    }
    img.blobs.push((sha(&manifest), manifest));
    img
}

#[test]
fn a_gzip_bomb_over_the_byte_limits_is_refused_and_leaves_nothing() {
    let (root, store) = store();
    let limits = Limits {
        max_layer_bytes: 2 << 20,
        max_image_bytes: 5 << 19,
        ..Limits::default()
    };
    let store = store.with_limits(limits);
    // One member claiming more than the layer may hold: refused at its header.
    let bomb = zeros_layer(b'0', 64, false);
    assert!(bomb.0.len() < 1 << 20, "a small gzip");
    let img = image_from_gz(vec![bomb]);
    let err = load_layout(&store, &img, "registry.test/bomb:1").unwrap_err();
    assert!(
        matches!(err, Error::LayerTooLarge { limit, .. } if limit == 2 << 20),
        "{err}"
    );
    assert_eq!(err.exit_code(), 30);
    assert_pristine(root.path());
    // Members each within the limit, together over it: refused while streaming.
    let (one, _) = zeros_layer(b'0', 6, false);
    let many: Vec<u8> = std::iter::repeat_n(&one[..one.len() - gzip(&[0u8; 1024]).len()], 8)
        .flatten()
        .copied()
        .collect();
    let img = image_from_gz(vec![(many, sha(b"never reached"))]);
    let err = load_layout(&store, &img, "registry.test/many:1").unwrap_err();
    assert!(
        matches!(err, Error::LayerTooLarge { limit, .. } if limit == 2 << 20),
        "{err}"
    );
    assert_pristine(root.path());
    // Two layers each within the layer limit, together over the image's.
    let img = image_from_gz(vec![zeros_layer(b'0', 6, true), zeros_layer(b'0', 6, true)]);
    let err = load_layout(&store, &img, "registry.test/two:1").unwrap_err();
    assert!(
        matches!(err, Error::ImageTooLarge { limit, .. } if limit == 5 << 19),
        "{err}"
    );
    assert_eq!(err.exit_code(), 31);
    assert_pristine(root.path());
}

#[test]
fn too_many_entries_in_a_layer_are_refused() {
    let (root, store) = store();
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let members: Vec<(&str, M)> = names.iter().map(|n| (n.as_str(), M::File(b""))).collect();
    let store = store.with_limits(Limits {
        max_layer_entries: 20,
        ..Limits::default()
    });
    let err = load_layout(
        &store,
        &image(&[tar(&members)], None, "many"),
        "registry.test/many:1",
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::TooManyEntries { limit: 20, .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), 32);
    assert_pristine(root.path());
}

// Case 9: prune never touches work in progress.

#[test]
fn prune_keeps_work_in_progress_and_sweeps_what_dead_owners_left() {
    let (root, store) = store();
    let tmp = root.path().join("tmp");
    let mut work = store.begin_work("pull").unwrap();
    let pinned = store.put_blob(b"a layer being pulled").unwrap();
    work.pin_blob(&pinned).unwrap();
    std::fs::write(work.path().join("staging"), b"half a tree").unwrap();
    let unpinned = store.put_blob(b"garbage").unwrap();
    let writer_digest = sha(b"downloading");
    let mut writer = store.begin_blob(&writer_digest).unwrap();
    writer.write_all(b"down").unwrap();
    // Left by killed processes: a work dir of a dead pid, an unlocked partial download.
    let dead = tmp.join("load-999999999-abc");
    std::fs::create_dir(&dead).unwrap();
    let stale = tmp.join(format!("partial-{}", sha(b"stale").hex()));
    std::fs::write(&stale, b"st").unwrap();

    let report = store.prune(true, &[]).unwrap();
    assert!(
        work.path().join("staging").is_file(),
        "the live work dir is kept"
    );
    assert!(store.has_blob(&pinned), "a pinned blob is kept");
    assert!(
        tmp.join(format!("partial-{}", writer_digest.hex()))
            .is_file(),
        "a download being written is kept"
    );
    assert!(!store.has_blob(&unpinned));
    assert!(!dead.exists() && !stale.exists());
    assert_eq!(report.temp, 2);
    writer.write_all(b"loading").unwrap();
    writer.commit(Some(11)).unwrap();
    assert!(store.has_blob(&writer_digest));

    drop(work);
    store.prune(true, &[]).unwrap();
    assert!(!store.has_blob(&pinned) && !store.has_blob(&writer_digest));
    assert_pristine(root.path());
}

#[test]
fn a_failed_load_leaves_no_work_dir() {
    let (root, store) = store();
    let err = load_archive(&store, b"not a tar at all, just some bytes").unwrap_err();
    assert!(matches!(err, Error::InvalidArchive { .. }), "{err}");
    assert_pristine(root.path());
}
