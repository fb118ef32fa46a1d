//! The vchan ring reader dom0 runs against a guest's shared pages (pv_init::vchan), under a
//! hostile guest that rewrites any byte of the control page between (and instead of) honest
//! steps: nothing panics (every access is bounds-checked: an out-of-ring access would panic),
//! no read returns more than the caller's buffer or the ring holds, a lie about the indices is
//! an error rather than a loop, and the layout a guest announces is accepted only within our
//! bounds. With an honest peer, bytes arrive in order, whole, across wrap-arounds.
use proptest::prelude::*;
use pv_init::vchan::{self, Endpoint, Layout, Region, RingPlace, Side};

const RING: usize = 1 << 12;

/// Control page + left ring + right ring, in memory we own (8-byte aligned).
struct Shm {
    mem: Vec<u64>,
}

impl Shm {
    fn new() -> Shm {
        Shm {
            mem: vec![0; (vchan::PAGE + 2 * RING) / 8],
        }
    }
    fn regions(&mut self) -> (Region, Region, Region) {
        let p = self.mem.as_mut_ptr() as *mut u8;
        // SAFETY: the Vec outlives the endpoints of each test case and is never resized.
        let all = unsafe { Region::new(p, self.mem.len() * 8) };
        (
            all.sub(0, vchan::PAGE),
            all.sub(vchan::PAGE, RING),
            all.sub(vchan::PAGE + RING, RING),
        )
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// The guest writes a u32 anywhere in the header (indices, orders, live and notify bytes).
    Poke(usize, u32),
    /// The guest produces `n` more bytes (honestly or not: prod moves by any amount).
    Produce(u32),
    /// The guest consumes (moves the cons of the ring we write) by any amount.
    Consume(u32),
    Read(usize),
    Write(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ((0usize..6), any::<u32>()).prop_map(|(i, v)| Op::Poke(i * 4, v)),
        prop_oneof![0u32..(2 * RING as u32), any::<u32>()].prop_map(Op::Produce),
        prop_oneof![0u32..(2 * RING as u32), any::<u32>()].prop_map(Op::Consume),
        (0usize..3 * RING).prop_map(Op::Read),
        (0usize..3 * RING).prop_map(Op::Write),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_lying_guest_cannot_make_the_host_reader_misbehave(ops in proptest::collection::vec(op(), 1..64)) {
        let mut shm = Shm::new();
        let (ctrl, left, right) = shm.regions();
        vchan::init_server_page(&ctrl, 12, 12, &[]);
        let mut host = Endpoint::new(Side::Client, ctrl, left, right);
        let mut buf = vec![0u8; 3 * RING];
        for op in ops {
            match op {
                Op::Poke(off, v) => ctrl.write_u32(off, v),
                // right ring: server → client; its prod at 12, its cons at 8; left cons at 0.
                Op::Produce(n) => ctrl.write_u32(12, ctrl.read_u32(12).wrapping_add(n)),
                Op::Consume(n) => ctrl.write_u32(0, ctrl.read_u32(0).wrapping_add(n)),
                Op::Read(n) => match host.read(&mut buf[..n]) {
                    Ok(got) => prop_assert!(got <= n && got <= RING),
                    Err(e) => { let bad_index = matches!(e, vchan::VchanError::BadIndex { .. }); prop_assert!(bad_index) }
                },
                Op::Write(n) => match host.write(&buf[..n]) {
                    Ok(put) => prop_assert!(put <= n && put <= RING),
                    Err(e) => { let bad_index = matches!(e, vchan::VchanError::BadIndex { .. }); prop_assert!(bad_index) }
                },
            }
            // What the host reports is always within one ring, or an error.
            if let Ok(r) = host.readable() { prop_assert!(r <= RING) }
            if let Ok(w) = host.writable() { prop_assert!(w <= RING) }
        }
    }

    #[test]
    fn any_announced_layout_is_refused_or_fits(l in any::<u16>(), r in any::<u16>()) {
        if let Ok(layout) = Layout::parse(l, r) {
            prop_assert!(l <= vchan::MAX_ORDER && r <= vchan::MAX_ORDER && l >= 10 && r >= 10);
            prop_assert!(24 + 4 * layout.grants <= 1024);
            for (p, o) in [(layout.left, l), (layout.right, r)] {
                match p {
                    RingPlace::InPage(off) => prop_assert!(off + (1usize << o) <= vchan::PAGE),
                    RingPlace::Granted { first, pages } => {
                        prop_assert!(first + pages <= layout.grants);
                        prop_assert_eq!(pages * vchan::PAGE, 1usize << o);
                    }
                }
            }
        }
    }

    #[test]
    fn honest_peers_move_every_byte_in_order(
        chunks in proptest::collection::vec((1usize..3 * RING, 1usize..3 * RING), 1..40),
    ) {
        let mut shm = Shm::new();
        let (ctrl, left, right) = shm.regions();
        vchan::init_server_page(&ctrl, 12, 12, &[]);
        let mut guest = Endpoint::new(Side::Server, ctrl, left, right);
        let mut host = Endpoint::new(Side::Client, ctrl, left, right);
        vchan::client_hello(&ctrl);
        prop_assert_eq!(guest.peer_live(), 1);
        prop_assert_eq!(host.peer_live(), 1);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        // Guest → host in the test's chunking.
        let (mut sent, mut got) = (0usize, Vec::new());
        let mut buf = vec![0u8; 3 * RING];
        for &(w, r) in chunks.iter().cycle().take(400) {
            if got.len() == data.len() { break }
            let w = w.min(data.len() - sent);
            sent += guest.write(&data[sent..sent + w]).unwrap();
            let n = host.read(&mut buf[..r]).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        prop_assert_eq!(&got[..], &data[..got.len()]);
        while host.read(&mut buf).unwrap() > 0 {}
        // And the other way.
        let mut buf = vec![0u8; RING];
        let mut got = Vec::new();
        for c in data[..50_000].chunks(1000) {
            let mut off = 0;
            while off < c.len() {
                off += host.write(&c[off..]).unwrap();
                let n = guest.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
        }
        loop {
            let n = guest.read(&mut buf).unwrap();
            if n == 0 { break }
            got.extend_from_slice(&buf[..n]);
        }
        prop_assert_eq!(&got[..], &data[..50_000]);
    }
}

/// The notification bytes follow libxenvchan: a writer signals only when the reader asked,
/// and each request is answered once.
#[test]
fn notifications_are_requested_and_consumed_once() {
    let mut shm = Shm::new();
    let (ctrl, left, right) = shm.regions();
    vchan::init_server_page(&ctrl, 12, 12, &[]);
    let mut guest = Endpoint::new(Side::Server, ctrl, left, right);
    let host = Endpoint::new(Side::Client, ctrl, left, right);
    vchan::client_hello(&ctrl);
    // The client asked to hear about server writes (client_hello).
    guest.write(b"x").unwrap();
    assert!(guest.should_notify(vchan::NOTIFY_WRITE));
    assert!(!guest.should_notify(vchan::NOTIFY_WRITE));
    // The server asked to hear about client writes (init_server_page).
    assert!(host.should_notify(vchan::NOTIFY_WRITE));
    host.request(vchan::NOTIFY_READ);
    assert!(guest.should_notify(vchan::NOTIFY_READ));
    let _ = &mut guest;
}
