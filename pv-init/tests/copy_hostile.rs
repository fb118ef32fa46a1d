//! `hx cp`'s unpacking (pv_init::copy) against hostile tar streams, as hx reads them from a
//! guest: nothing lands outside the destination, nothing is written through a symlink, special
//! files and setuid bits never appear, a refused stream leaves the destination as it was; and
//! honest trees survive pack → unpack with their modes and symlinks.
use proptest::prelude::*;
use pv_init::copy::{pack, unpack};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    // set_path refuses `..`: write the raw name, as a hostile guest would.
    let name = &mut h.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    h
}

/// (path, type, mode, content, link target)
type Entry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data, link) in entries {
        let mut h = header(path, *kind, *mode, data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
            h.set_cksum();
        }
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir, dir);
    out.sort();
    out
}

fn walk(base: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.strip_prefix(base).unwrap().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(base, &p));
        }
    }
    out
}

use tar::EntryType as T;

#[test]
fn escapes_are_refused_and_leave_nothing() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "original").unwrap();
    let cases: Vec<Vec<u8>> = vec![
        archive(&[("top/../../victim", T::Regular, 0o644, b"pwned", None)]),
        archive(&[("/abs", T::Regular, 0o644, b"pwned", None)]),
        archive(&[
            ("top", T::Directory, 0o755, b"", None),
            (
                "top/link",
                T::Symlink,
                0o777,
                b"",
                Some(outside.path().to_str().unwrap()),
            ),
            ("top/link/victim", T::Regular, 0o644, b"pwned", None),
        ]),
        archive(&[
            ("top", T::Directory, 0o755, b"", None),
            ("other/x", T::Regular, 0o644, b"pwned", None),
        ]),
    ];
    for (i, a) in cases.iter().enumerate() {
        let dest = tempfile::tempdir().unwrap();
        let r = unpack(&a[..], dest.path());
        assert!(r.is_err(), "case {i} was accepted");
        let msg = r.unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(
            listing(dest.path()),
            Vec::<String>::new(),
            "case {i} left files"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "original");
    }
}

#[test]
fn special_files_and_setuid_bits_never_land() {
    let a = archive(&[
        ("top", T::Directory, 0o755, b"", None),
        ("top/suid", T::Regular, 0o4755, b"#!/bin/sh\n", None),
        ("top/dev", T::Char, 0o666, b"", None),
        ("top/fifo", T::Fifo, 0o666, b"", None),
        ("top/hard", T::Link, 0o644, b"", Some("/etc/shadow")),
    ]);
    let dest = tempfile::tempdir().unwrap();
    assert_eq!(unpack(&a[..], dest.path()).unwrap(), 3);
    assert_eq!(listing(dest.path()), ["top", "top/suid"]);
    let mode = std::fs::metadata(dest.path().join("top/suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn docker_placement_rules() {
    let src = tempfile::tempdir().unwrap();
    let d = src.path().join("dir");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/f"), "x").unwrap();
    let mut tar_dir = Vec::new();
    pack(d.to_str().unwrap(), &mut tar_dir).unwrap();
    let mut tar_contents = Vec::new();
    pack(&format!("{}/.", d.display()), &mut tar_contents).unwrap();
    let dest = tempfile::tempdir().unwrap();
    // Into an existing directory: under its own name.
    unpack(&tar_dir[..], dest.path()).unwrap();
    assert!(dest.path().join("dir/sub/f").is_file());
    // To a new name: becomes that name.
    unpack(&tar_dir[..], &dest.path().join("renamed")).unwrap();
    assert!(dest.path().join("renamed/sub/f").is_file());
    // `/.`: the contents into the destination.
    let flat = dest.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    unpack(&tar_contents[..], &flat).unwrap();
    assert!(flat.join("sub/f").is_file());
    // A missing parent is an error that creates nothing.
    assert!(unpack(&tar_dir[..], &dest.path().join("no/such")).is_err());
    assert!(!dest.path().join("no").exists());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn trees_round_trip_with_modes_and_symlinks(
        files in proptest::collection::btree_map("[a-z]{1,6}", (proptest::collection::vec(any::<u8>(), 0..200), 0o400u32..0o777), 1..8),
        link in "[a-z]{1,6}",
    ) {
        let src = tempfile::tempdir().unwrap();
        let top = src.path().join("top");
        std::fs::create_dir(&top).unwrap();
        for (name, (data, mode)) in &files {
            let p = top.join(name);
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        std::os::unix::fs::symlink("../elsewhere", top.join(format!("L{link}"))).unwrap();
        let mut stream = Vec::new();
        pack(top.to_str().unwrap(), &mut stream).unwrap();
        let dest = tempfile::tempdir().unwrap();
        prop_assert_eq!(unpack(&stream[..], dest.path()).unwrap(), 0);
        for (name, (data, mode)) in &files {
            let p = dest.path().join("top").join(name);
            prop_assert_eq!(&std::fs::read(&p).unwrap(), data);
            prop_assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, *mode);
        }
        let l = std::fs::read_link(dest.path().join("top").join(format!("L{link}"))).unwrap();
        prop_assert_eq!(l, Path::new("../elsewhere"));
    }

    #[test]
    fn garbage_streams_fail_in_one_line_and_leave_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let dest = tempfile::tempdir().unwrap();
        if let Err(e) = unpack(&bytes[..], dest.path()) {
            prop_assert!(!e.to_string().contains('\n'));
            prop_assert_eq!(listing(dest.path()), Vec::<String>::new());
        }
    }
}
