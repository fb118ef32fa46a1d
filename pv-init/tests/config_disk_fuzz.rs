//! Fuzzing pv-init's config-disk decoder (`HXSPEC01`, u32-le length, JSON spec) with hostile
//! disks: wrong magic, lying or huge length fields, truncation, garbage and deeply nested JSON,
//! non-UTF-8, control characters in field names. Nothing may panic, memory follows the bytes the
//! disk really holds (never the length field), and every error is one clear, short line.
use proptest::prelude::*;
use pv_init::spec::{
    Capabilities, ConfigDiskError, ContainerSpec, DiskFs, DnsRelay, Interface, Mount, MountSource,
    Network, Rlimit, Sysctl, TmpfsOptions, TtySize, Upper, CONFIG_MAGIC, CONFIG_MAX_JSON,
    SPEC_VERSION,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts this thread's heap use while `measure` runs: the peak of live bytes and the largest
/// single request, so a size taken from a header shows up even when the allocator grants it.
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

/// Decodes as pv-init does (from a reader over the whole device), measuring the heap.
fn decode(bytes: &[u8]) -> (Result<ContainerSpec, ConfigDiskError>, Heap) {
    measure(|| ContainerSpec::read_config_disk(&mut &bytes[..]))
}

/// Heap a decode of `n` bytes may use: proportional to what the disk holds (a JSON list of
/// empty strings costs 24 bytes of `String` per 3 bytes, doubled while the Vec grows).
fn heap_allowed(n: usize) -> usize {
    32 * n + 4096
}

/// What pv-init reports (its init_error message, shown by hx): one short line, no control
/// characters, naming the config disk.
fn assert_clean(e: &ConfigDiskError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(text.starts_with("config disk: "), "{text:?}");
    prop_assert!(text.len() <= 400, "error of {} bytes", text.len());
    prop_assert!(
        !text.chars().any(char::is_control),
        "control characters in {text:?}"
    );
    Ok(())
}

fn disk(len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = CONFIG_MAGIC.to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn sample() -> ContainerSpec {
    ContainerSpec {
        version: SPEC_VERSION,
        args: vec!["sh".into(), "-c".into(), "echo hi".into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: "".into(),
        hostname: "c1".into(),
        rootfs: DiskFs {
            disk: 0,
            fstype: "erofs".into(),
        },
        upper: Upper::Tmpfs { size_mb: 0 },
        read_only: false,
        capabilities: Some(Capabilities::docker_default()),
        no_new_privileges: true,
        init: false,
        shared_pids: false,
        pids_limit: None,
        pid_target: None,
        seccomp: None,
        mounts: vec![
            Mount {
                source: MountSource::Share {
                    tag: "hxfs0".into(),
                },
                target: "/data".into(),
                readonly: false,
                subpath: None,
                copy_up: true,
            },
            Mount {
                source: MountSource::Tmpfs {
                    size_mb: 0,
                    options: TmpfsOptions {
                        size: Some(1 << 20),
                        mode: Some(0o755),
                        uid: Some(1000),
                        gid: None,
                        noexec: true,
                        nosuid: true,
                        nodev: false,
                    },
                },
                target: "/run".into(),
                readonly: false,
                subpath: None,
                copy_up: false,
            },
        ],
        network: Some(Network {
            interface: "eth0".into(),
            address: "10.88.0.5/16".into(),
            gateway: Some("10.88.0.1".into()),
            dns: vec!["10.88.0.1".into()],
            hosts: vec![],
            dns_search: vec![],
            dns_options: vec![],
            mtu: Some(1450),
            dns_relay: Some(DnsRelay {
                address: "169.254.53.2/30".into(),
                server: "169.254.53.1".into(),
                replaces: "127.0.0.11".into(),
            }),
            mac: Some("02:42:0a:58:00:05".into()),
            address6: Some("fd42:1::5/64".into()),
            gateway6: Some("fd42:1::1".into()),
            extra: vec![Interface {
                interface: "eth1".into(),
                mac: "02:42:ac:13:00:03".into(),
                address: "172.19.0.3/16".into(),
                gateway: None,
                mtu: Some(1500),
                address6: None,
                gateway6: None,
            }],
        }),
        stdin: false,
        tty: Some(TtySize { rows: 24, cols: 80 }),
        shm_size: Some(64 << 20),
        rlimits: vec![Rlimit {
            name: "nofile".into(),
            soft: 1 << 20,
            hard: 1 << 20,
        }],
        sysctls: vec![Sysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        }],
        aliases: vec!["web".into()],
        extra_hosts: vec!["10.1.2.3\tdb".into()],
    }
}

/// Disks a hostile or broken host side might hand over.
fn hostile_disk() -> impl Strategy<Value = Vec<u8>> {
    let valid = sample().to_config_disk();
    let json_len = serde_json::to_vec(&sample()).unwrap().len();
    let mutated = (
        any::<Option<u32>>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<Option<prop::sample::Index>>(),
    )
        .prop_map(move |(len, flips, cut)| {
            let mut d = valid.clone();
            if let Some(l) = len {
                d[8..12].copy_from_slice(&l.to_le_bytes());
            }
            for (at, b) in flips {
                // Mostly inside the header and JSON, where a change matters.
                let i = at.index(12 + json_len);
                d[i] = b;
            }
            if let Some(c) = cut {
                d.truncate(c.index(d.len()));
            }
            d
        });
    let lying_header = (
        prop_oneof![
            Just(u32::MAX),
            Just(CONFIG_MAX_JSON as u32),
            Just(CONFIG_MAX_JSON as u32 + 1),
            any::<u32>()
        ],
        prop::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(len, body)| disk(len, &body));
    let json_like = prop::collection::vec(
        prop_oneof![
            Just(b'{'),
            Just(b'}'),
            Just(b'['),
            Just(b']'),
            Just(b'"'),
            Just(b':'),
            Just(b','),
            Just(b'1'),
            Just(0xffu8),
            Just(0x1bu8),
            any::<u8>()
        ],
        0..512,
    )
    .prop_map(|body| disk(body.len() as u32, &body));
    prop_oneof![
        3 => mutated,
        2 => lying_header,
        2 => json_like,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Any text, including control characters, quotes, backslashes and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('\u{1b}'),
            Just('"'),
            Just('\\'),
            Just('\0'),
            Just('é'),
            Just('\u{202e}'),
            any::<char>()
        ],
        0..24,
    )
    .prop_map(|c| c.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Decoding never panics, allocates in proportion to the disk's real bytes, and fails with
    /// a clean error; what it accepts is a spec of this version that re-encodes the same way.
    #[test]
    fn hostile_disks_decode_cleanly_within_bounded_memory(bytes in hostile_disk()) {
        let (r, heap) = decode(&bytes);
        prop_assert!(heap.peak <= heap_allowed(bytes.len()) && heap.largest <= heap_allowed(bytes.len()), "{heap:?} for {} bytes", bytes.len());
        match r {
            Ok(spec) => {
                prop_assert_eq!(spec.version, SPEC_VERSION);
                prop_assert_eq!(ContainerSpec::from_config_disk(&spec.to_config_disk()), Ok(spec));
            }
            Err(e) => assert_clean(&e)?,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the host puts in the spec's strings survives the trip intact.
    #[test]
    fn any_spec_round_trips(args in prop::collection::vec(text(), 1..4), env in prop::collection::vec(text(), 0..3), cwd in text(), host in text(), tag in text()) {
        let mut spec = sample();
        spec.args = args;
        spec.env = env;
        spec.cwd = cwd;
        spec.hostname = host;
        spec.mounts[0].source = MountSource::Share { tag };
        let bytes = spec.to_config_disk();
        let (r, heap) = decode(&bytes);
        prop_assert!(heap.peak <= heap_allowed(bytes.len()), "{heap:?}");
        prop_assert_eq!(r, Ok(spec));
    }
}

/// A header naming up to CONFIG_MAX_JSON bytes on a disk that holds a few: nothing is
/// allocated for the missing bytes, and the error says how many there were.
#[test]
fn lying_length_fields_cost_nothing() {
    for len in [CONFIG_MAX_JSON as u32, CONFIG_MAX_JSON as u32 / 2, 70_000] {
        let bytes = disk(len, b"{\"version\":1}");
        let (r, heap) = decode(&bytes);
        assert!(heap.largest <= 4096, "length {len}: {heap:?}");
        assert_eq!(
            r,
            Err(ConfigDiskError::Truncated {
                have: 13,
                want: len as usize
            })
        );
    }
    for len in [0, CONFIG_MAX_JSON as u32 + 1, u32::MAX] {
        let (r, heap) = decode(&disk(len, &[b' '; 100]));
        assert!(heap.largest <= 64, "length {len}: {heap:?}");
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("config disk: spec length {len} out of range")
        );
    }
}

#[test]
fn wrong_magic_short_and_empty_disks() {
    for bytes in [
        &b""[..],
        b"HXSPEC0",
        b"HXSPEC01\x05\x00\x00",
        b"HXSPEC02\x05\x00\x00\x00{}{}{",
        &[0u8; 4096][..],
    ] {
        assert_eq!(decode(bytes).0, Err(ConfigDiskError::BadMagic), "{bytes:?}");
    }
    assert_eq!(
        ConfigDiskError::BadMagic.to_string(),
        "config disk: bad magic (not an hx config disk)"
    );
}

/// serde_json's recursion limit holds for every shape of nesting: a clean error, no stack
/// overflow (this runs on a test thread's 2 MiB stack; pv-init has 8 MiB).
#[test]
fn deeply_nested_json_is_refused() {
    let deep = 200_000;
    let arrays = "[".repeat(deep);
    let objects = "{\"a\":".repeat(deep);
    for body in [
        arrays.clone(),
        format!("{{\"version\":1,\"args\":{arrays}"),
        format!("{{\"version\":1,\"network\":{objects}"),
        format!("{{\"version\":1,\"upper\":{{\"kind\":\"tmpfs\",\"size_mb\":{arrays}"),
        format!("{{\"version\":1,\"zzz\":{arrays}"),
    ] {
        let (r, heap) = decode(&disk(body.len() as u32, body.as_bytes()));
        let e = r.unwrap_err();
        assert!(matches!(e, ConfigDiskError::Json(_)), "{e}");
        assert!(
            e.to_string().len() <= 400 && !e.to_string().chars().any(char::is_control),
            "{e}"
        );
        assert!(heap.peak <= heap_allowed(body.len()), "{heap:?}");
    }
}

/// Input quoted in serde's messages (an unknown field's name) comes out escaped and cut short.
#[test]
fn json_errors_are_escaped_and_short() {
    let mut v = serde_json::to_value(sample()).unwrap();
    v.as_object_mut().unwrap().insert(
        format!("\u{1b}[2J\u{1b}]0;owned\u{7}{}", "x".repeat(10_000)),
        1.into(),
    );
    let body = serde_json::to_vec(&v).unwrap();
    let e = decode(&disk(body.len() as u32, &body))
        .0
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "config disk: invalid spec JSON: unknown field `\\u{1b}[2J\\u{1b}]0;owned\\u{7}xxx"
        ),
        "{e}"
    );
    assert!(e.ends_with("...") && e.len() < 300, "{} bytes", e.len());
    // Raw control bytes and invalid UTF-8 inside a JSON string.
    for body in [
        &b"{\"version\":1,\"args\":[\"\x1b[2J\"]}"[..],
        b"{\"version\":1,\"args\":[\"\xff\xfe\"]}",
        b"\xef\xbb\xbf{}",
    ] {
        let e = decode(&disk(body.len() as u32, body)).0.unwrap_err();
        assert!(matches!(e, ConfigDiskError::Json(_)), "{e}");
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }
    // A well-formed spec of another version.
    let mut v = serde_json::to_value(sample()).unwrap();
    v["version"] = 2.into();
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        decode(&disk(body.len() as u32, &body)).0,
        Err(ConfigDiskError::Version(2))
    );
}
