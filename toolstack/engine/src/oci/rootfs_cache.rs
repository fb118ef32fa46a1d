//! Erofs images of snapshot chains, packed once and shared. A container whose root is a
//! snapshotter's overlay of committed layers over a still-empty upper directory has the same
//! files as every other container over those layers: its image is packed once per chain
//! (mkfs.erofs takes ~0.2 s per 20 MB of small files) and hard-linked into each container's
//! directory, read-only to the guest as before. Committed snapshots never change while they
//! exist; a chain is named by its directories' paths *and* identities (device, inode, ctime),
//! so a snapshot removed and another made at the same path (a wiped containerd root) is
//! another chain. Entries whose directories are gone are pruned at each use.
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const DIR: &str = "rootfs-cache";

/// The committed, read-only directories a rootfs is made of (lowest last, overlay's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain(Vec<PathBuf>);

impl Chain {
    /// The chain of a snapshotter's mounts, when the rootfs they make is nothing but
    /// committed layers: one overlay whose upper directory (if any) is still empty, or one
    /// read-only bind (a view of a single layer). Anything else (no layers, several mounts,
    /// relative paths, an upper with files) is None: packed from the tree as it is.
    pub fn of_mounts(mounts: &[(String, String, Vec<String>)]) -> Option<Chain> {
        let [(kind, source, options)] = mounts else {
            return None;
        };
        let lowers: Vec<PathBuf> = match kind.as_str() {
            "overlay" => {
                let mut lowers = None;
                for o in options {
                    if let Some(l) = o.strip_prefix("lowerdir=") {
                        lowers = Some(l.split(':').map(PathBuf::from).collect::<Vec<_>>());
                    } else if let Some(u) = o.strip_prefix("upperdir=") {
                        let empty = std::fs::read_dir(u).ok()?.next().is_none();
                        if !empty {
                            return None;
                        }
                    }
                }
                lowers?
            }
            "bind" | ""
                if options.iter().any(|o| o == "ro")
                    && options.iter().any(|o| o == "bind" || o == "rbind") =>
            {
                vec![PathBuf::from(source)]
            }
            _ => return None,
        };
        let sane = |p: &PathBuf| {
            p.is_absolute()
                && !p.as_os_str().is_empty()
                && p.components().all(|c| c != std::path::Component::ParentDir)
        };
        (!lowers.is_empty() && lowers.iter().all(sane)).then_some(Chain(lowers))
    }

    /// Its name in the cache: a digest of each directory's path and identity; None when one
    /// is missing.
    fn key(&self) -> Option<String> {
        let mut h = Sha256::new();
        for p in &self.0 {
            let m = std::fs::metadata(p).ok().filter(|m| m.is_dir())?;
            h.update(p.as_os_str().as_encoded_bytes());
            h.update(
                format!(
                    "\0{}\0{}\0{}\0{}\n",
                    m.dev(),
                    m.ino(),
                    m.ctime(),
                    m.ctime_nsec()
                )
                .as_bytes(),
            );
        }
        Some(hex::encode(h.finalize()))
    }
}

pub fn cache_dir(root: &Path) -> PathBuf {
    root.join(DIR)
}

/// Puts the erofs image of `tree` (whose files are `chain`'s) at `out`: a hard link to the
/// chain's cached image, packed now if there is none. Returns whether the cache had it.
pub fn image_of(root: &Path, chain: &Chain, tree: &Path, out: &Path) -> anyhow::Result<bool> {
    let dir = cache_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    prune(&dir);
    let key = chain
        .key()
        .with_context(|| format!("a layer of {:?} is gone", chain.0))?;
    let cached = dir.join(format!("{key}.erofs"));
    if std::fs::hard_link(&cached, out).is_ok() {
        return Ok(true);
    }
    // Its lowers first: an image without them would never be pruned.
    let lowers = dir.join(format!("{key}.lowers"));
    let listed = serde_json::to_vec(&chain.0)?;
    hx_images::store::write_atomic(&lowers, &listed)?;
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    let packed = hx_images::rootfs::make_erofs(tree, &tmp)
        .with_context(|| format!("packing {}", tree.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, &cached).context("caching the rootfs image")?;
            std::fs::hard_link(&cached, out).context("linking the cached rootfs image")
        });
    if packed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    packed.map(|()| false)
}

/// Removes the images whose layers are gone, and leftovers of packs that died.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if let Some(key) = name.strip_suffix(".lowers") {
            let gone = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Vec<PathBuf>>(&b).ok())
                .is_none_or(|l| Chain(l).key().as_deref() != Some(key));
            if gone {
                let _ = std::fs::remove_file(dir.join(format!("{key}.erofs")));
                let _ = std::fs::remove_file(&path);
            }
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            // A pack's temporary file whose packer is gone (its pid no longer ours to wait on).
            let pid = name.rsplit('.').nth(1).and_then(|p| p.parse::<i32>().ok());
            if pid.is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_file(&path);
            }
        } else if let Some(key) = name.strip_suffix(".erofs") {
            if !dir.join(format!("{key}.lowers")).exists() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(kind: &str, source: &str, options: &[&str]) -> (String, String, Vec<String>) {
        (
            kind.into(),
            source.into(),
            options.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn only_committed_layers_make_a_chain() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, up) = (t.path().join("a"), t.path().join("b"), t.path().join("up"));
        for d in [&a, &b, &up] {
            std::fs::create_dir(d).unwrap();
        }
        let lower = format!("lowerdir={}:{}", a.display(), b.display());
        let upper = format!("upperdir={}", up.display());
        let overlay = m("overlay", "overlay", &[&lower, &upper, "workdir=/w"]);
        assert_eq!(
            Chain::of_mounts(std::slice::from_ref(&overlay)),
            Some(Chain(vec![a.clone(), b.clone()]))
        );
        // Files in the upper: this rootfs is its own.
        std::fs::write(up.join("f"), "x").unwrap();
        assert_eq!(Chain::of_mounts(std::slice::from_ref(&overlay)), None);
        let view = m("bind", &a.display().to_string(), &["ro", "rbind"]);
        assert_eq!(
            Chain::of_mounts(std::slice::from_ref(&view)),
            Some(Chain(vec![a.clone()]))
        );
        // A writable bind (a snapshot without parents), relative paths, two mounts: none.
        let rw = m("bind", &a.display().to_string(), &["rw", "rbind"]);
        assert_eq!(Chain::of_mounts(&[rw]), None);
        assert_eq!(
            Chain::of_mounts(&[m("overlay", "overlay", &["lowerdir=l/A:l/B"])]),
            None
        );
        assert_eq!(Chain::of_mounts(&[view.clone(), view]), None);
    }

    #[test]
    fn a_layer_remade_at_the_same_path_is_another_chain() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let chain = Chain(vec![a.clone()]);
        let before = chain.key().unwrap();
        assert_eq!(chain.key().unwrap(), before);
        std::fs::remove_dir(&a).unwrap();
        assert_eq!(chain.key(), None);
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::create_dir(&a).unwrap();
        assert_ne!(chain.key().unwrap(), before);
    }

    #[test]
    fn a_chain_is_packed_once_and_pruned_when_its_layers_go() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let (layer, other) = (t.path().join("layer"), t.path().join("other"));
        for d in [&layer, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("f"), "x").unwrap();
        }
        let (c1, c2) = (t.path().join("c1.erofs"), t.path().join("c2.erofs"));
        let chain = Chain(vec![layer.clone()]);
        assert!(!image_of(&root, &chain, &layer, &c1).unwrap());
        assert!(image_of(&root, &chain, &layer, &c2).unwrap());
        let (m1, m2) = (
            std::fs::metadata(&c1).unwrap(),
            std::fs::metadata(&c2).unwrap(),
        );
        assert_eq!((m1.ino(), m1.nlink()), (m2.ino(), 3));
        assert_eq!(std::fs::read_dir(cache_dir(&root)).unwrap().count(), 2);
        // The layer goes (its snapshot removed): the next use of the cache drops its image,
        // containers' links stay whole.
        std::fs::remove_dir_all(&layer).unwrap();
        let c3 = t.path().join("c3.erofs");
        assert!(!image_of(&root, &Chain(vec![other.clone()]), &other, &c3).unwrap());
        let mut left: Vec<String> = std::fs::read_dir(cache_dir(&root))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        let key = Chain(vec![other]).key().unwrap();
        assert_eq!(left, [format!("{key}.erofs"), format!("{key}.lowers")]);
        assert_eq!(std::fs::metadata(&c1).unwrap().nlink(), 2);
    }

    proptest! {
        #[test]
        fn any_mount_options_are_judged_without_panic(
            kind in "(overlay|bind|)",
            source in "[a-z/.:]{0,16}",
            options in proptest::collection::vec("(lowerdir=|upperdir=|ro|rbind|)[a-z/.:]{0,16}", 0..6),
        ) {
            let opts: Vec<&str> = options.iter().map(String::as_str).collect();
            if let Some(Chain(l)) = Chain::of_mounts(&[m(&kind, &source, &opts)]) {
                prop_assert!(!l.is_empty());
                prop_assert!(l.iter().all(|p| p.is_absolute()));
            }
        }
    }
}
