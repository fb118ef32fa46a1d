//! Property: whatever an image archive holds (a mutated oci-archive or docker-save tarball,
//! plain or gzipped, with members swapped for links, FIFOs, devices or lying sizes), `hx load`
//! neither panics nor hangs nor writes outside its store, and a failure leaves the store as it was.
mod common;
use common::*;
use hx_images::manifest::PlatformSpec;
use hx_images::{load, Store};
use proptest::prelude::*;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    /// Member `i` (by order) replaced by a hostile one.
    Swap(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        3 => (any::<usize>(), 0u8..6).prop_map(|(i, k)| Mutation::Swap(i, k)),
    ]
}

fn hostile(k: u8) -> M<'static> {
    match k {
        0 => M::Symlink("/dev/zero"),
        1 => M::Symlink("../../../../etc/passwd"),
        2 => M::Hardlink("/etc/shadow"),
        3 => M::Fifo,
        4 => M::Char(1, 5),
        _ => M::Raw(b'0', 1 << 40, b"short"),
    }
}

fn docker_save(layer: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha(layer).to_string()] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{ "Config": "c.json", "RepoTags": ["registry.test/fuzz:1"], "Layers": ["l/layer.tar"] }])).unwrap();
    let files = vec![
        ("c.json".to_string(), config),
        ("l/layer.tar".to_string(), layer.to_vec()),
        ("manifest.json".to_string(), manifest),
    ];
    let members: Vec<(&str, M)> = files
        .iter()
        .map(|(n, b)| (n.as_str(), M::File(b)))
        .collect();
    let t = tar(&members);
    (files, t)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn loading_a_mutated_archive_is_clean(oci in any::<bool>(), gz in any::<bool>(), muts in prop::collection::vec(mutation(), 0..4)) {
        let layer = tar(&[("bin/", M::Dir), ("bin/sh", M::File(b"#!")), ("etc/", M::Dir), ("etc/link", M::Symlink("../bin/sh"))]);
        let files: Vec<(String, Vec<u8>)> = if oci {
            layout_files(&image(std::slice::from_ref(&layer), None, "fuzz"), "registry.test/fuzz:1")
        } else {
            docker_save(&layer).0
        };
        let mut members: Vec<(&str, M)> = files.iter().map(|(n, b)| (n.as_str(), M::File(b))).collect();
        for m in &muts {
            if let Mutation::Swap(i, k) = m {
                let i = i % members.len();
                members[i].1 = hostile(*k);
            }
        }
        let mut bytes = tar(&members);
        for m in &muts {
            match m {
                Mutation::Flip(i, x) => { let i = i % bytes.len(); bytes[i] ^= x; }
                Mutation::Truncate(n) => { let n = n % bytes.len(); bytes.truncate(n); }
                Mutation::Swap(..) => {}
            }
        }
        if gz {
            bytes = gzip(&bytes);
        }
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("store");
        let outside = base.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("x"), b"keep").unwrap();
        let input = base.path().join("in.tar");
        std::fs::write(&input, &bytes).unwrap();
        let store = Store::open(&root).unwrap();

        let started = Instant::now();
        let r = load::load(&store, &input, &PlatformSpec::host());
        prop_assert!(started.elapsed() < Duration::from_secs(20));

        let names: Vec<_> = std::fs::read_dir(base.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        prop_assert_eq!(names.len(), 3, "{:?}", names);
        prop_assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        prop_assert_eq!(std::fs::read(outside.join("x")).unwrap(), b"keep".to_vec());
        prop_assert!(shm_leftovers().is_empty());
        match r {
            Ok(recs) => {
                prop_assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
                prop_assert!(!recs.is_empty());
                for rec in recs {
                    prop_assert!(store.rootfs_path(&rec).is_file());
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'), "{}", msg);
                prop_assert!((10..=35).contains(&e.exit_code()), "{}", msg);
                assert_pristine(&root);
            }
        }
    }
}
