//! Property: whatever a layer contains (every entry type, whiteouts, PAX and GNU long names,
//! absurd sizes), applying it never creates, changes or follows anything outside the target,
//! fails only with a clean layer error, and when it succeeds reports the stream's real diff_id.
use hx_images::apply::LayerApplier;
use hx_images::{Digest, Error};
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(usize),
    Symlink(String),
    Hardlink(String),
    Char,
    Block,
    Fifo,
    /// A regular file whose header claims far more data than the stream holds.
    AbsurdSize(u64),
}

#[derive(Debug, Clone, Copy)]
enum Naming {
    Plain,
    /// The name in a PAX `path` record (and a dummy in the header).
    Pax,
    /// The name in a GNU long-name member.
    GnuLong,
    /// A PAX header claiming this many bytes (never present).
    HugePax(u64),
}

fn name() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(".wh.a".to_string()),
        Just(".wh..wh..opq".to_string()),
        Just(".wh...".to_string()),
        Just("".to_string()),
        "[a-c]{1,3}".prop_map(|s| s),
        Just("x".repeat(150)),
    ];
    (prop::bool::weighted(0.1), prop::collection::vec(part, 1..4)).prop_map(|(abs, parts)| {
        let p = parts.join("/");
        if abs {
            format!("/{p}")
        } else {
            p
        }
    })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        Just("/outside".to_string()),
        Just("../outside".to_string()),
        Just("../../outside/x".to_string()),
        Just("".to_string())
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Dir),
        4 => (0usize..1500).prop_map(Kind::File),
        3 => target().prop_map(Kind::Symlink),
        3 => target().prop_map(Kind::Hardlink),
        1 => Just(Kind::Char),
        1 => Just(Kind::Block),
        1 => Just(Kind::Fifo),
        1 => prop_oneof![Just(1u64 << 40), Just(u64::MAX >> 1), Just(1u64 << 33)].prop_map(Kind::AbsurdSize),
    ]
}

fn naming() -> impl Strategy<Value = Naming> {
    prop_oneof![6 => Just(Naming::Plain), 2 => Just(Naming::Pax), 2 => Just(Naming::GnuLong), 1 => prop_oneof![Just(64u64 << 20), Just(1u64 << 40)].prop_map(Naming::HugePax)]
}

fn push_member(tar: &mut Vec<u8>, mut h: tar::Header, body: &[u8]) {
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(body);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

fn base_header(kind: u8, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h
}

fn set_name_field(h: &mut tar::Header, name: &str) {
    let n = name.as_bytes();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
}

fn append(tar: &mut Vec<u8>, name: &str, kind: &Kind, naming: Naming) {
    match naming {
        Naming::Plain => {}
        Naming::Pax => {
            let rec = format!("path={name}\n");
            let mut len = rec.len() + 2;
            while format!("{len} {rec}").len() != len {
                len += 1;
            }
            let body = format!("{len} {rec}");
            push_member(tar, base_header(b'x', body.len() as u64), body.as_bytes());
        }
        Naming::GnuLong => {
            let mut body = name.as_bytes().to_vec();
            body.push(0);
            let mut h = base_header(b'L', body.len() as u64);
            set_name_field(&mut h, "././@LongLink");
            push_member(tar, h, &body);
        }
        Naming::HugePax(size) => {
            // Only the header: its claimed body is never there.
            push_member(tar, base_header(b'x', size), &[]);
            return;
        }
    }
    let (code, size, body): (u8, u64, Vec<u8>) = match kind {
        Kind::Dir => (b'5', 0, vec![]),
        Kind::File(n) => (b'0', *n as u64, vec![b'd'; *n]),
        Kind::Symlink(_) => (b'2', 0, vec![]),
        Kind::Hardlink(_) => (b'1', 0, vec![]),
        Kind::Char => (b'3', 0, vec![]),
        Kind::Block => (b'4', 0, vec![]),
        Kind::Fifo => (b'6', 0, vec![]),
        Kind::AbsurdSize(s) => (b'0', *s, vec![b'z'; 100]),
    };
    let mut h = base_header(code, size);
    if matches!(naming, Naming::Plain) {
        set_name_field(&mut h, name);
    } else {
        set_name_field(&mut h, "placeholder");
    }
    if let Kind::Symlink(t) | Kind::Hardlink(t) = kind {
        let t = t.as_bytes();
        h.as_gnu_mut().unwrap().linkname[..t.len().min(100)]
            .copy_from_slice(&t[..t.len().min(100)]);
    }
    if let Kind::Char | Kind::Block = kind {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    push_member(tar, h, &body);
}

/// Everything under `dir`: (relative path, type bits, size, content of regular files).
fn snapshot(dir: &Path) -> Vec<(String, u32, u64, Vec<u8>)> {
    let mut out = vec![];
    fn walk(root: &Path, p: &Path, out: &mut Vec<(String, u32, u64, Vec<u8>)>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if m.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                vec![]
            };
            out.push((
                e.path().strip_prefix(root).unwrap().display().to_string(),
                m.mode() & 0o170000,
                m.len(),
                content,
            ));
            if m.is_dir() {
                walk(root, &e.path(), out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn unsafe_name(n: &str) -> bool {
    n.starts_with('/') || n.split('/').any(|c| c == "..")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn never_writes_outside_the_target(entries in prop::collection::vec((name(), kind(), naming()), 1..12)) {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("x"), b"keep").unwrap();
        let target = base.path().join("root");
        std::fs::create_dir(&target).unwrap();
        let before = snapshot(base.path()).into_iter().filter(|e| !e.0.starts_with("root")).collect::<Vec<_>>();

        let mut tar = Vec::new();
        for (n, k, naming) in &entries {
            append(&mut tar, n, k, *naming);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let result = LayerApplier::new(&target, "sha256:prop").apply(&tar[..]);

        let after = snapshot(base.path()).into_iter().filter(|e| !e.0.starts_with("root")).collect::<Vec<_>>();
        prop_assert_eq!(after, before);
        // Nothing inside the target is a hardlink to a file outside it.
        let ino = std::fs::metadata(outside.join("x")).unwrap().ino();
        fn shares(p: &Path, ino: u64) -> bool {
            std::fs::read_dir(p).unwrap().flatten().any(|e| {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                m.ino() == ino || (m.is_dir() && shares(&e.path(), ino))
            })
        }
        prop_assert!(!shares(&target, ino));

        let hostile = entries.iter().any(|(n, k, naming)| {
            // A plain header holds the first 100 bytes of the name: that is the entry's name.
            let named = if matches!(naming, Naming::Plain) { &n.as_bytes()[..n.len().min(100)] } else { n.as_bytes() };
            unsafe_name(&String::from_utf8_lossy(named)) || matches!(k, Kind::AbsurdSize(_)) || matches!(naming, Naming::HugePax(_))
        });
        match result {
            Ok(applied) => {
                prop_assert!(!hostile, "a layer with an unsafe name, absurd size or huge header was accepted");
                prop_assert_eq!(applied.diff_id, Digest::of_bytes(&tar));
                prop_assert_eq!(applied.bytes, tar.len() as u64);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("sha256:prop") && !msg.contains('\n'), "{}", msg);
                prop_assert!(matches!(e, Error::UnsafeEntry { .. } | Error::BadLayer { .. } | Error::HeaderTooLarge { .. } | Error::LayerTooLarge { .. }), "{}", msg);
                if let Error::HeaderTooLarge { size, .. } = e {
                    prop_assert!(size > 1 << 20);
                }
            }
        }
    }
}
