//! Fuzzing the xenstore wire decoder and the blocking client with hostile bytes: random streams,
//! mutated and truncated frames, headers with huge lengths or unknown types, string lists without
//! their NUL or not UTF-8, and a xenstored that answers with any of that. Nothing may panic, no
//! decode may allocate more than the protocol's payload limit allows, and every error is one
//! short line without control characters.
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use xenstore_wire::msg::{self, Msg, MsgType};
use xenstore_wire::{parse_watch_event, Client, Error, HEADER_LEN, MAX_ENTRIES, PAYLOAD_MAX};

/// Room for an error message built while a payload is still held.
const SLACK: usize = 512;

/// Counts this thread's heap use while `measure` runs: the peak of live bytes and the largest
/// single request, so a size taken from a header shows up even when the allocator would grant it.
struct Tracking;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(delta: isize, requested: usize) {
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            let live = LIVE.get() + delta;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
            LARGEST.set(LARGEST.get().max(requested));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the bookkeeping touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize, l.size());
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize, l.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize), 0);
        // SAFETY: p came from System with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new as isize - l.size() as isize, new);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

#[derive(Debug)]
struct Heap {
    peak: usize,
    largest: usize,
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Heap) {
    LIVE.set(0);
    PEAK.set(0);
    LARGEST.set(0);
    ACTIVE.set(true);
    let r = f();
    ACTIVE.set(false);
    (
        r,
        Heap {
            peak: PEAK.get().max(0) as usize,
            largest: LARGEST.get(),
        },
    )
}

/// An error a user may see: one short line, nothing a terminal would interpret.
fn assert_clean(e: &Error) -> Result<(), TestCaseError> {
    let text = e.to_string();
    let head: String = text.chars().take(200).collect();
    prop_assert!(
        !text.is_empty() && text.len() <= 400,
        "error of {} bytes: {head:?}...",
        text.len()
    );
    prop_assert!(
        !text.chars().any(char::is_control),
        "control characters in {text:?}"
    );
    Ok(())
}

const KINDS: [MsgType; 14] = [
    MsgType::Directory,
    MsgType::Read,
    MsgType::GetPerms,
    MsgType::Watch,
    MsgType::Unwatch,
    MsgType::TransactionStart,
    MsgType::TransactionEnd,
    MsgType::GetDomainPath,
    MsgType::Write,
    MsgType::Mkdir,
    MsgType::Rm,
    MsgType::SetPerms,
    MsgType::WatchEvent,
    MsgType::Error,
];

fn frame(kind: u32, req_id: u32, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [kind, req_id, 0, len] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Payloads a xenstored (or something posing as it) might send: text, NUL lists, escape
/// sequences, invalid UTF-8, runs of NULs, up to and past the limit.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"OK\0".to_vec()),
        Just(b"ENOENT\0".to_vec()),
        Just(b"/local/domain/4/hx/control\0hx-control\0".to_vec()),
        Just(b"\x1b[2J\x1b]0;owned\x07\0".to_vec()),
        Just(vec![0u8; PAYLOAD_MAX]),
        Just(vec![0xffu8; PAYLOAD_MAX]),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(b'a'), Just(0x80u8), any::<u8>()],
            0..=PAYLOAD_MAX
        ),
    ]
}

/// A frame whose type and length field may lie.
fn hostile_frame() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![4 => prop::sample::select(KINDS.to_vec()).prop_map(|k| k as u32), 1 => any::<u32>()];
    let len = prop_oneof![
        6 => Just(None),
        1 => (PAYLOAD_MAX as u32 + 1..=u32::MAX).prop_map(Some),
        1 => Just(Some(u32::MAX)),
        1 => (0..=PAYLOAD_MAX as u32).prop_map(Some),
    ];
    (kind, 0u32..8, len, payload())
        .prop_map(|(k, id, len, p)| frame(k, id, len.unwrap_or(p.len() as u32), &p))
}

/// A stream of frames, then damaged: cut short and/or bytes overwritten.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let frames = prop::collection::vec(hostile_frame(), 0..6).prop_map(|f| f.concat());
    let base = prop_oneof![3 => frames, 1 => prop::collection::vec(any::<u8>(), 0..9000)];
    (
        base,
        any::<Option<prop::sample::Index>>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(|(mut s, cut, flips)| {
            if !s.is_empty() {
                for (at, b) in flips {
                    let i = at.index(s.len());
                    s[i] = b;
                }
                if let Some(c) = cut {
                    s.truncate(c.index(s.len()));
                }
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every message decoded is the exact bytes it came from; a clean end only at a frame
    /// boundary; anything else a clean error; never more heap than one payload.
    #[test]
    fn decoder_reads_hostile_streams_within_the_payload_limit(bytes in hostile_stream()) {
        let mut rest = &bytes[..];
        loop {
            let before = rest.len();
            let start = bytes.len() - before;
            let (r, heap) = measure(|| Msg::read_from(&mut rest));
            prop_assert!(heap.peak <= PAYLOAD_MAX + SLACK && heap.largest <= PAYLOAD_MAX, "{heap:?} for {:?}", r.as_ref().map(|m| m.as_ref().map(|m| m.payload.len())));
            match r {
                Ok(None) => {
                    prop_assert_eq!(before, 0, "a clean end with {} bytes left", before);
                    break;
                }
                Ok(Some(m)) => {
                    prop_assert!(m.payload.len() <= PAYLOAD_MAX);
                    prop_assert_eq!(&m.encode().unwrap()[..], &bytes[start..start + (before - rest.len())]);
                }
                Err(e) => {
                    assert_clean(&e)?;
                    break;
                }
            }
        }
    }

    /// A frame cut anywhere after its first byte is an error, not a message or a clean end.
    #[test]
    fn truncated_frames_are_errors(kind in prop::sample::select(KINDS.to_vec()), p in prop::collection::vec(any::<u8>(), 0..200), cut in any::<prop::sample::Index>()) {
        let whole = Msg { kind, req_id: 1, tx_id: 0, payload: p }.encode().unwrap();
        let at = 1 + cut.index(whole.len() - 1);
        let r = Msg::read_from(&mut &whole[..at]);
        prop_assert!(r.is_err(), "{} of {} bytes gave {:?}", at, whole.len(), r);
        assert_clean(&r.unwrap_err())?;
    }

    /// The length field is checked before anything is allocated for it.
    #[test]
    fn huge_length_fields_allocate_nothing(kind in prop::sample::select(KINDS.to_vec()), len in PAYLOAD_MAX as u32 + 1..=u32::MAX, tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let bytes = frame(kind as u32, 1, len, &tail);
        let (r, heap) = measure(|| Msg::read_from(&mut &bytes[..]));
        prop_assert!(heap.largest <= SLACK, "{heap:?}");
        let e = r.unwrap_err();
        assert_clean(&e)?;
        prop_assert!(e.to_string().contains("payload limit"), "{e}");
    }

    /// String lists: accepted exactly when NUL-terminated UTF-8 of at most MAX_ENTRIES strings,
    /// and then they re-encode to the same bytes; heap bounded by the payload and the entry cap.
    #[test]
    fn string_lists_and_watch_events_are_strict(p in payload()) {
        let (r, heap) = measure(|| msg::split_nul_strings(&p));
        prop_assert!(heap.peak <= PAYLOAD_MAX + MAX_ENTRIES * std::mem::size_of::<String>() + SLACK, "{heap:?}");
        let valid = p.is_empty()
            || (p.ends_with(&[0]) && std::str::from_utf8(&p).is_ok() && p.iter().filter(|b| **b == 0).count() <= MAX_ENTRIES);
        match r {
            Ok(parts) => {
                prop_assert!(valid);
                let refs: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
                prop_assert_eq!(msg::nul_strings(&refs), p.clone());
            }
            Err(e) => {
                prop_assert!(!valid, "rejected a valid list: {e}");
                assert_clean(&e)?;
            }
        }
        match parse_watch_event(&p) {
            Ok(ev) => {
                let head = format!("{}\0{}\0", ev.path, ev.token);
                prop_assert!(valid && p.starts_with(head.as_bytes()));
            }
            Err(e) => assert_clean(&e)?,
        }
    }
}

/// The client's calls in `client_survives_a_hostile_xenstored` send read, write, watch, rm
/// (request ids 1, 2, 3, ...): a hostile answer to each, the right type and id most of the
/// time, with watch events, error replies and strangers in between; then the same damage as
/// `hostile_stream`.
fn hostile_replies() -> impl Strategy<Value = Vec<u8>> {
    const CALLS: [MsgType; 4] = [MsgType::Read, MsgType::Write, MsgType::Watch, MsgType::Rm];
    let one = (
        0u8..6,
        any::<u32>(),
        any::<u32>(),
        prop_oneof![5 => Just(None), 1 => any::<u32>().prop_map(Some)],
        payload(),
    );
    let frames = prop::collection::vec(one, 0..10).prop_map(|fs| {
        let mut out = Vec::new();
        for (i, (pick, kind, id, len, p)) in fs.into_iter().enumerate() {
            let (kind, id) = match pick {
                0..=2 => (CALLS[i % 4] as u32, i as u32 + 1),
                3 => (MsgType::WatchEvent as u32, 0),
                4 => (MsgType::Error as u32, i as u32 + 1),
                _ => (kind, id),
            };
            out.extend(frame(kind, id, len.unwrap_or(p.len() as u32), &p));
        }
        out
    });
    (
        frames,
        any::<Option<prop::sample::Index>>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(mut s, cut, flips)| {
            if !s.is_empty() {
                for (at, b) in flips {
                    let i = at.index(s.len());
                    s[i] = b;
                }
                if let Some(c) = cut {
                    s.truncate(c.index(s.len()));
                }
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, failure_persistence: None, ..ProptestConfig::default() })]

    /// The client against a xenstored that sends anything (replies for other requests, watch
    /// events, error names, lies about lengths) and then hangs up: every call returns, nothing
    /// panics, errors are clean, and no allocation is sized by the peer.
    #[test]
    fn client_survives_a_hostile_xenstored(stream in hostile_replies()) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut theirs = theirs;
            let _ = theirs.write_all(&stream);
            let _ = theirs.shutdown(std::net::Shutdown::Write);
            // Kept open (unread) until the client is done, so its requests never fail to send.
            theirs
        });
        let mut c = Client::from_fd(OwnedFd::from(ours));
        let p = "/local/domain/4/data/hx/status/0";
        let (results, heap) = measure(|| {
            let mut out: Vec<Result<(), Error>> = Vec::new();
            for _ in 0..3 {
                out.push(c.read(p).map(drop));
                out.push(c.write(p, b"{\"event\":\"exited\",\"code\":0}"));
                out.push(c.watch("hx/control", "hx-control"));
                out.push(c.rm(p));
                out.push(c.next_event().map(drop));
                while c.queued_event().is_some() {}
            }
            out
        });
        drop(server.join().unwrap());
        // The largest allocation allowed: a string list's slots (split_nul_strings' entry cap).
        prop_assert!(heap.largest <= MAX_ENTRIES * std::mem::size_of::<String>(), "{heap:?}");
        for r in &results {
            if let Err(e) = r {
                assert_clean(e)?;
            }
        }
        // Every frame was consumed one way or another: the end of the stream is reached.
        let mut more = 0;
        while c.next_event().is_ok() {
            more += 1;
            prop_assert!(more < 64, "events without end");
        }
    }
}

/// What the fuzzers promise, on the cases that motivated them.
#[test]
fn known_hostile_frames() {
    // A header cut short used to read as a clean end of stream.
    let e = Msg::read_from(&mut &frame(2, 1, 0, b"")[..7]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "xenstore protocol: truncated header (7 of 16 bytes)"
    );
    // 4096 NULs: 4096 empty strings (96 KiB of String headers) before the entry cap.
    let e = msg::split_nul_strings(&[0u8; PAYLOAD_MAX]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "xenstore protocol: string list of 4096 entries, at most 1024"
    );
    // A reply that is not OK is quoted short and escaped, not as 24 KiB of \u{1b}.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut theirs_w = theirs.try_clone().unwrap();
    theirs_w
        .write_all(&frame(
            MsgType::Write as u32,
            1,
            PAYLOAD_MAX as u32,
            &[0x1b; PAYLOAD_MAX],
        ))
        .unwrap();
    let e = Client::from_fd(OwnedFd::from(ours))
        .write("/a", b"v")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("xenstore protocol: write: expected OK, got \"\\u{1b}\\u{1b}")
            && e.ends_with("...\""),
        "{e}"
    );
    assert!(e.len() < 400, "{} bytes", e.len());
    drop(theirs);
    assert_eq!(HEADER_LEN, 16);
}
