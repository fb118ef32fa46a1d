//! Fuzzing the exec channel's frame decoder (pv_init::mux) with hostile byte streams, as hx
//! reads them from a guest: nothing panics, no frame's payload exceeds the bound whatever the
//! header claims, every accepted frame re-encodes to exactly the bytes it was read from, and
//! well-formed streams of frames survive being read back in any chunking.
use proptest::prelude::*;
use pv_init::mux::{
    parse_answer, ExecRequest, Frame, Kind, MuxError, StatsAnswer, TopAnswer, MAX_PAYLOAD,
};

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Stdin),
        Just(Kind::Stdout),
        Just(Kind::Stderr),
        Just(Kind::Open),
        Just(Kind::Exit),
        Just(Kind::Answer),
    ]
}

/// A reader that hands out at most `chunk` bytes per read, like a pipe or a serial port.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #[test]
    fn garbage_never_panics_and_accepted_frames_are_exact(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut r = &bytes[..];
        let mut consumed = 0usize;
        loop {
            match Frame::read_from(&mut r) {
                Ok(Some(f)) => {
                    prop_assert!(f.payload.len() <= MAX_PAYLOAD);
                    let enc = f.encode();
                    prop_assert_eq!(&enc[..], &bytes[consumed..consumed + enc.len()]);
                    consumed += enc.len();
                }
                Ok(None) => break,
                Err(e) => {
                    let line = e.to_string();
                    prop_assert!(!line.contains('\n') && line.len() < 200, "{}", line);
                    break;
                }
            }
        }
    }

    #[test]
    fn lying_lengths_are_refused(kind in 1u8..14, stream in any::<u32>(), len in (MAX_PAYLOAD as u32 + 1)..=u32::MAX) {
        let mut h = vec![kind];
        h.extend_from_slice(&stream.to_le_bytes());
        h.extend_from_slice(&len.to_le_bytes());
        let r = Frame::read_from(&mut &h[..]);
        prop_assert!(matches!(r, Err(MuxError::TooLong(_)) | Err(MuxError::UnknownKind(_))));
    }

    #[test]
    fn streams_of_frames_read_back_in_any_chunking(
        frames in proptest::collection::vec((kind(), 1u32..1000, proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
        chunk in 1usize..64,
    ) {
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|(k, s, p)| Frame::new(k, s, p))
            .collect();
        let mut wire = Vec::new();
        for f in &frames {
            f.write_to(&mut wire).unwrap();
        }
        let mut r = Chunked { data: &wire, chunk };
        let mut back = Vec::new();
        while let Some(f) = Frame::read_from(&mut r).unwrap() {
            back.push(f);
        }
        prop_assert_eq!(back, frames);
    }

    #[test]
    fn exec_requests_parse_or_fail_in_one_line(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = ExecRequest::parse(&bytes) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn answers_parse_or_fail_in_one_line(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let errors = [parse_answer::<TopAnswer>(&bytes).err(), parse_answer::<StatsAnswer>(&bytes).err()];
        for e in errors.into_iter().flatten() {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn answers_with_hostile_strings_round_trip_but_unknown_fields_do_not(cmd in ".{0,200}", extra in "[a-z]{1,8}") {
        let top = TopAnswer { processes: vec![pv_init::mux::ProcessInfo {
            pid: 2, ppid: 1, uid: 0, user: "root".into(), started: 0, cpu_secs: 0, tty: "?".into(), cmd,
        }], more: 0 };
        let json = serde_json::to_vec(&top).unwrap();
        prop_assert_eq!(parse_answer::<TopAnswer>(&json).unwrap(), top);
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v[format!("x{extra}")] = serde_json::json!(1);
        prop_assert!(parse_answer::<TopAnswer>(&serde_json::to_vec(&v).unwrap()).is_err());
    }
}

proptest! {
    // The guest parses a pod member's new limits from the host strictly: garbage never panics,
    // and well-formed limits are accepted exactly when cgroup v2 can take them.
    #[test]
    fn limit_queries_parse_or_fail_and_keep_to_cgroup_bounds(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        memory in proptest::option::of(any::<u64>()),
        cpu in proptest::option::of(any::<u32>()),
        weight in proptest::option::of(any::<u32>()),
        member in "[0-9a-f]{1,70}|[A-Za-z./ ]{0,10}",
    ) {
        let _ = pv_init::mux::Query::parse(&bytes);
        let limits = pv_init::mux::MemberLimits { memory_bytes: memory, cpu_pct: cpu, cpu_weight: weight, pids_max: None };
        let json = serde_json::to_vec(&pv_init::mux::Query::Limits { member: member.clone(), limits }).unwrap();
        let ok = pv_init::mux::Query::parse(&json).is_ok();
        let want = pv_init::mux::valid_member_id(&member)
            && memory.is_none_or(|m| m >= pv_init::mux::MIN_MEMBER_MEMORY)
            && cpu.is_none_or(|c| (1..=pv_init::mux::MAX_MEMBER_CPU_PCT).contains(&c))
            && weight.is_none_or(|w| (1..=10000).contains(&w));
        prop_assert_eq!(ok, want);
    }

    #[test]
    fn shares_become_weights_within_cgroup_bounds(shares in any::<u64>()) {
        let w = pv_init::mux::MemberLimits::weight_of_shares(shares);
        prop_assert!((1..=10000).contains(&w));
    }
}
