//! Property: whatever a layer contains, applying it never creates, changes or follows anything
//! outside the target directory.
use hx_images::apply::LayerApplier;
use proptest::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File,
    Symlink(String),
    Hardlink(String),
}

fn name() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(".wh.a".to_string()),
        Just(".wh..wh..opq".to_string()),
        Just("".to_string()),
        "[a-c]{1,3}".prop_map(|s| s),
    ];
    (prop::bool::weighted(0.1), prop::collection::vec(part, 1..4)).prop_map(|(abs, parts)| {
        let p = parts.join("/");
        if abs { format!("/{p}") } else { p }
    })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![name(), Just("/outside".to_string()), Just("../outside".to_string()), Just("../../outside/x".to_string())]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Dir), Just(Kind::File), target().prop_map(Kind::Symlink), target().prop_map(Kind::Hardlink)]
}

fn raw_header(name: &str, kind: &Kind) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    let n = name.as_bytes();
    gnu.name[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
    match kind {
        Kind::Dir => h.set_entry_type(tar::EntryType::Directory),
        Kind::File => h.set_entry_type(tar::EntryType::Regular),
        Kind::Symlink(t) | Kind::Hardlink(t) => {
            h.set_entry_type(if matches!(kind, Kind::Symlink(_)) { tar::EntryType::Symlink } else { tar::EntryType::Link });
            let gnu = h.as_gnu_mut().unwrap();
            let t = t.as_bytes();
            gnu.linkname[..t.len().min(100)].copy_from_slice(&t[..t.len().min(100)]);
        }
    }
    h.set_mode(0o755);
    h.set_size(if matches!(kind, Kind::File) { 4 } else { 0 });
    h.set_cksum();
    h
}

fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        out.push((e.file_name().to_string_lossy().to_string(), m.len()));
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn never_writes_outside_the_target(entries in prop::collection::vec((name(), kind()), 1..12)) {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("x"), b"keep").unwrap();
        let target = base.path().join("root");
        std::fs::create_dir(&target).unwrap();
        let before_base = snapshot(base.path());
        let before_out = snapshot(&outside);

        let mut tar = Vec::new();
        for (n, k) in &entries {
            let h = raw_header(n, k);
            tar.extend_from_slice(h.as_bytes());
            if matches!(k, Kind::File) {
                let mut block = [0u8; 512];
                block[..4].copy_from_slice(b"data");
                tar.extend_from_slice(&block);
            }
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let _ = LayerApplier::new(&target, "sha256:prop").apply(&tar[..]);

        prop_assert_eq!(snapshot(base.path()), before_base);
        prop_assert_eq!(snapshot(&outside), before_out);
        prop_assert_eq!(std::fs::read(outside.join("x")).unwrap(), b"keep".to_vec());
        // Nothing inside the target is a hardlink to a file outside it.
        fn walk(p: &Path, outside_ino: u64) -> bool {
            use std::os::unix::fs::MetadataExt;
            for e in std::fs::read_dir(p).unwrap().flatten() {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                if m.ino() == outside_ino { return false; }
                if m.is_dir() && !walk(&e.path(), outside_ino) { return false; }
            }
            true
        }
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(outside.join("x")).unwrap().ino();
        prop_assert!(walk(&target, ino));
    }
}
