//! Property: whatever a layer contains (every entry type, whiteouts, PAX and GNU long names,
//! absurd sizes), applying it never creates, changes or follows anything outside the target,
//! fails only with a clean layer error, and when it succeeds reports the stream's real diff_id
//! and leaves every entry no later entry overrides as the layer says.
use hx_images::apply::{clean_name, LayerApplier};
use hx_images::{Digest, Error};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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

/// The name the applier reads: a plain header holds only the first 100 bytes.
fn entry_name(n: &str, naming: Naming) -> String {
    match naming {
        Naming::Plain => n[..n.len().min(100)].to_string(),
        _ => n.to_string(),
    }
}

/// What an entry does to the tree, by its cleaned path (`None` for the root itself).
enum Effect {
    Sets { path: PathBuf, dir: bool },
    Whiteout { hidden: PathBuf },
    Opaque { dir: PathBuf },
}

fn effect(name: &str, kind: &Kind) -> Option<(PathBuf, Effect)> {
    let rel = clean_name(Path::new(name)).ok().flatten()?;
    let file_name = rel.file_name()?.to_string_lossy().into_owned();
    let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let effect = if file_name == ".wh..wh..opq" {
        Effect::Opaque { dir: parent }
    } else if let Some(hidden) = file_name.strip_prefix(".wh.") {
        Effect::Whiteout {
            hidden: parent.join(hidden),
        }
    } else {
        Effect::Sets {
            path: rel.clone(),
            dir: matches!(kind, Kind::Dir),
        }
    };
    Some((rel, effect))
}

/// After a successful apply: every entry that no later entry replaces, removes or hides is in
/// the target as the layer describes it, and every whiteout nothing later recreates removed its
/// path. (Later opaque markers are not modelled: entries under them are not checked.)
fn check_tree(target: &Path, entries: &[(String, Kind, Naming)]) -> Result<(), TestCaseError> {
    let effects: Vec<_> = entries
        .iter()
        .map(|(n, k, naming)| effect(&entry_name(n, *naming), k))
        .collect();
    for (i, ((_, kind, _), this)) in entries.iter().zip(&effects).enumerate() {
        let Some((_, this)) = this else { continue };
        let later = effects[i + 1..].iter().flatten();
        match this {
            Effect::Sets { path, .. } => {
                let overridden = later.clone().any(|(_, e)| match e {
                    Effect::Sets { path: p, dir } => p == path || (path.starts_with(p) && !dir),
                    Effect::Whiteout { hidden } => path.starts_with(hidden),
                    Effect::Opaque { dir } => path.starts_with(dir),
                });
                if !overridden {
                    check_entry(&target.join(path), kind)?;
                }
            }
            Effect::Whiteout { hidden } => {
                if !later.clone().any(|(rel, _)| rel.starts_with(hidden)) {
                    prop_assert!(
                        std::fs::symlink_metadata(target.join(hidden)).is_err(),
                        "{} survived its whiteout",
                        hidden.display()
                    );
                }
            }
            Effect::Opaque { .. } => {}
        }
    }
    Ok(())
}

fn check_entry(path: &Path, kind: &Kind) -> Result<(), TestCaseError> {
    let shown = path.display();
    let m = std::fs::symlink_metadata(path);
    let root = nix::unistd::geteuid().is_root();
    if matches!(kind, Kind::Char | Kind::Block) && !root {
        prop_assert!(m.is_err(), "{shown}: device nodes are skipped unprivileged");
        return Ok(());
    }
    let m = m.map_err(|e| TestCaseError::fail(format!("{shown}: {e}")))?;
    let t = m.file_type();
    match kind {
        Kind::Dir => prop_assert!(t.is_dir(), "{shown}: {t:?}"),
        Kind::File(n) => {
            prop_assert!(t.is_file(), "{shown}: {t:?}");
            prop_assert_eq!(std::fs::read(path).unwrap(), vec![b'd'; *n], "{}", shown);
            prop_assert_eq!(m.mode() & 0o7777, 0o4755, "{}", shown);
        }
        Kind::Symlink(to) => {
            prop_assert!(t.is_symlink(), "{shown}: {t:?}");
            let to = &to[..to.len().min(100)];
            prop_assert_eq!(std::fs::read_link(path).unwrap(), PathBuf::from(to));
        }
        Kind::Hardlink(_) => prop_assert!(!t.is_dir(), "{shown}: {t:?}"),
        Kind::Char => prop_assert!(t.is_char_device(), "{shown}: {t:?}"),
        Kind::Block => prop_assert!(t.is_block_device(), "{shown}: {t:?}"),
        Kind::Fifo => prop_assert!(t.is_fifo(), "{shown}: {t:?}"),
        Kind::AbsurdSize(_) => prop_assert!(false, "{shown}: an absurd size was applied"),
    }
    Ok(())
}

/// Applies `entries` as one layer beside an `outside` directory and checks the property.
fn apply_checked(entries: &[(String, Kind, Naming)]) -> Result<(), TestCaseError> {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("x"), b"keep").unwrap();
    let target = base.path().join("root");
    std::fs::create_dir(&target).unwrap();
    let before = snapshot(base.path())
        .into_iter()
        .filter(|e| !e.0.starts_with("root"))
        .collect::<Vec<_>>();

    let mut tar = Vec::new();
    for (n, k, naming) in entries {
        append(&mut tar, n, k, *naming);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let result = LayerApplier::new(&target, "sha256:prop").apply(&tar[..]);

    let after = snapshot(base.path())
        .into_iter()
        .filter(|e| !e.0.starts_with("root"))
        .collect::<Vec<_>>();
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
        unsafe_name(&entry_name(n, *naming))
            || matches!(k, Kind::AbsurdSize(_))
            || matches!(naming, Naming::HugePax(_))
    });
    match result {
        Ok(applied) => {
            prop_assert!(
                !hostile,
                "a layer with an unsafe name, absurd size or huge header was accepted"
            );
            prop_assert_eq!(applied.diff_id, Digest::of_bytes(&tar));
            prop_assert_eq!(applied.bytes, tar.len() as u64);
            check_tree(&target, entries)?;
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.contains("sha256:prop") && !msg.contains('\n'),
                "{}",
                msg
            );
            prop_assert!(
                matches!(
                    e,
                    Error::UnsafeEntry { .. }
                        | Error::BadLayer { .. }
                        | Error::HeaderTooLarge { .. }
                        | Error::LayerTooLarge { .. }
                ),
                "{}",
                msg
            );
            if let Error::HeaderTooLarge { size, .. } = e {
                prop_assert!(size > 1 << 20);
            }
        }
    }
    Ok(())
}

/// Entries without unsafe names, absurd sizes or huge headers: most such layers apply, so
/// their resulting files get checked (few hostile layers do).
fn benign_entry() -> impl Strategy<Value = (String, Kind, Naming)> {
    (
        name().prop_filter("unsafe name", |n| !unsafe_name(n)),
        kind().prop_filter("absurd size", |k| !matches!(k, Kind::AbsurdSize(_))),
        naming().prop_filter("huge header", |n| !matches!(n, Naming::HugePax(_))),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn never_writes_outside_the_target(entries in prop::collection::vec((name(), kind(), naming()), 1..12)) {
        apply_checked(&entries)?;
    }

    #[test]
    fn benign_layers_apply_as_described(entries in prop::collection::vec(benign_entry(), 1..12)) {
        apply_checked(&entries)?;
    }
}
