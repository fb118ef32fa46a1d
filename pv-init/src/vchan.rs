//! The exec channel on Xen: a libxenvchan-compatible byte stream between pv-init (the server,
//! which grants its ring pages to dom0 through /dev/xen/gntalloc) and the container's monitor
//! in dom0 (the client, which maps them through /dev/xen/gntdev); one event channel wakes
//! either side (docs/guest-protocol.md, "Exec channel on Xen"). The same frames as QEMU's
//! `hx.exec` port travel over it: `bridge` copies between the vchan and a socket, so the
//! agent and the broker never know which transport they use.
//!
//! The wire layout is libxenvchan's (xen/include/public/io/libxenvchan.h), written anew:
//! a shared control page holding two rings' indices (`left`: client → server, `right`:
//! server → client), their orders (log2 of the size), liveness and notification bytes, and the
//! grant references of ring pages. Memory the peer can write is hostile to the reader: the
//! indices we own are kept privately and only ever written to the page, the peer's are read
//! once per step and must stay within a ring's size of ours (or the channel is broken), every
//! ring offset is masked, and the layout (orders, grant count) is read once at connection and
//! checked against tight bounds (`Layout::parse`).
use std::sync::atomic::{fence, AtomicU8, Ordering};

pub const PAGE: usize = 4096;
const PAGE_SHIFT: u16 = 12;
/// Offsets in the control page (struct vchan_interface).
const LEFT_CONS: usize = 0;
const LEFT_PROD: usize = 4;
const RIGHT_CONS: usize = 8;
const RIGHT_PROD: usize = 12;
const LEFT_ORDER: usize = 16;
const RIGHT_ORDER: usize = 18;
pub const CLI_LIVE: usize = 20;
pub const SRV_LIVE: usize = 21;
const CLI_NOTIFY: usize = 22;
const SRV_NOTIFY: usize = 23;
const GRANTS: usize = 24;
/// In-page rings: order 10 at offset 1024, order 11 at 2048.
const SMALL_SHIFT: u16 = 10;
const LARGE_SHIFT: u16 = 11;
pub const NOTIFY_WRITE: u8 = 1;
pub const NOTIFY_READ: u8 = 2;
/// The ring order pv-init offers both ways: 64 KiB (16 grant pages) each.
pub const SERVER_ORDER: u16 = 16;
/// The largest ring the host maps (libxenvchan allows 20; we need no more than ours).
pub const MAX_ORDER: u16 = 16;
/// Where pv-init publishes the rendezvous, relative to its domain's xenstore home (libxl makes
/// `data/` guest-writable): `ring-ref` (grant of the control page) and `event-channel`.
pub const XS_DIR: &str = "data/hx/vchan";
/// Highest event channel port number (FIFO ABI: 2^17 ports).
pub const MAX_PORT: u64 = (1 << 17) - 1;
/// Highest grant reference the host accepts (grant tables hold far fewer entries).
pub const MAX_GREF: u64 = (1 << 24) - 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VchanError {
    #[error("vchan: ring orders {0}/{1} are not a layout hx accepts")]
    BadLayout(u16, u16),
    #[error("vchan: the peer moved an index outside its ring ({what}: {value} against {ours})")]
    BadIndex {
        what: &'static str,
        value: u32,
        ours: u32,
    },
}

/// Where one ring's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingPlace {
    /// In the control page at this offset.
    InPage(usize),
    /// In `pages` granted pages, starting at grant list index `first`.
    Granted { first: usize, pages: usize },
}

/// The rings' shapes as announced by the server, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub left_order: u16,
    pub right_order: u16,
    pub left: RingPlace,
    pub right: RingPlace,
    /// Grant references listed after the header.
    pub grants: usize,
}

impl Layout {
    /// The layout of orders `left`/`right` (from the peer: checked). Each order is 10 or 11 (a
    /// ring inside the control page) or 12..=MAX_ORDER (granted pages); two in-page rings
    /// must differ; the grant list must end before the first in-page ring.
    pub fn parse(left: u16, right: u16) -> Result<Layout, VchanError> {
        let bad = || VchanError::BadLayout(left, right);
        let ok = |o: u16| (SMALL_SHIFT..=MAX_ORDER).contains(&o);
        if !ok(left) || !ok(right) || (left == right && left < PAGE_SHIFT) {
            return Err(bad());
        }
        let pages = |o: u16| {
            if o >= PAGE_SHIFT {
                1usize << (o - PAGE_SHIFT)
            } else {
                0
            }
        };
        let (lp, rp) = (pages(left), pages(right));
        let place = |o: u16, first: usize, n: usize| match o {
            SMALL_SHIFT => RingPlace::InPage(1024),
            LARGE_SHIFT => RingPlace::InPage(2048),
            _ => RingPlace::Granted { first, pages: n },
        };
        let grants = lp + rp;
        let limit = [left, right]
            .iter()
            .filter(|&&o| o < PAGE_SHIFT)
            .map(|&o| 1usize << o)
            .min()
            .unwrap_or(PAGE);
        if GRANTS + 4 * grants > limit {
            return Err(bad());
        }
        Ok(Layout {
            left_order: left,
            right_order: right,
            left: place(left, 0, lp),
            right: place(right, lp, rp),
            grants,
        })
    }
}

/// Which end of the channel we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The guest: reads `left`, writes `right`.
    Server,
    /// dom0: reads `right`, writes `left`.
    Client,
}

/// A region of shared memory: every access is bounds-checked against `len` (a violation is a
/// bug of ours and panics: the fuzz test holds the reader to it) and volatile or atomic, since
/// the peer may change it at any time.
#[derive(Clone, Copy)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a Region is a view of memory mapped for the life of its owner (Mapping); accesses
// are volatile/atomic byte or word reads and writes, valid from any thread.
unsafe impl Send for Region {}

impl Region {
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the Region (and
    /// any Endpoint holding it) is used.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Region {
        Region { ptr, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, n: usize) {
        assert!(
            off <= self.len && n <= self.len - off,
            "vchan: access {off}+{n} outside a region of {}",
            self.len
        );
    }

    pub fn read_u32(&self, off: usize) -> u32 {
        self.check(off, 4);
        // SAFETY: in bounds (checked); the page is mapped (Region::new's contract).
        u32::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u32) })
    }

    pub fn write_u32(&self, off: usize, v: u32) {
        self.check(off, 4);
        // SAFETY: as read_u32.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u32, v.to_le()) }
    }

    pub fn read_u16(&self, off: usize) -> u16 {
        self.check(off, 2);
        // SAFETY: as read_u32.
        u16::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u16) })
    }

    pub fn write_u16(&self, off: usize, v: u16) {
        self.check(off, 2);
        // SAFETY: as read_u32.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u16, v.to_le()) }
    }

    fn byte(&self, off: usize) -> &AtomicU8 {
        self.check(off, 1);
        // SAFETY: in bounds; AtomicU8 has the layout of u8 and the memory lives as long as
        // the Region may be used.
        unsafe { AtomicU8::from_ptr(self.ptr.add(off)) }
    }

    pub fn read_u8(&self, off: usize) -> u8 {
        self.byte(off).load(Ordering::SeqCst)
    }

    pub fn write_u8(&self, off: usize, v: u8) {
        self.byte(off).store(v, Ordering::SeqCst)
    }

    fn copy_out(&self, off: usize, dst: &mut [u8]) {
        self.check(off, dst.len());
        // SAFETY: in bounds; the peer may change the bytes meanwhile, which only changes what
        // we copy (it is data, parsed later from our private copy).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len()) }
    }

    fn copy_in(&self, off: usize, src: &[u8]) {
        self.check(off, src.len());
        // SAFETY: in bounds.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) }
    }

    /// `n` bytes at `off` as a Region of their own.
    pub fn sub(&self, off: usize, n: usize) -> Region {
        self.check(off, n);
        Region {
            // SAFETY: in bounds.
            ptr: unsafe { self.ptr.add(off) },
            len: n,
        }
    }
}

/// One end of a connected vchan over its control page and two rings.
pub struct Endpoint {
    ctrl: Region,
    rx: Region,
    tx: Region,
    side: Side,
    /// Our own indices: never read back from shared memory.
    rx_cons: u32,
    tx_prod: u32,
}

impl Endpoint {
    /// `ctrl` is the control page; `left`/`right` the rings (each a power of two in length,
    /// as the checked Layout gives).
    pub fn new(side: Side, ctrl: Region, left: Region, right: Region) -> Endpoint {
        assert!(left.len().is_power_of_two() && right.len().is_power_of_two());
        assert!(ctrl.len() >= GRANTS);
        let (rx, tx) = match side {
            Side::Server => (left, right),
            Side::Client => (right, left),
        };
        let (rx_cons_off, tx_prod_off) = match side {
            Side::Server => (LEFT_CONS, RIGHT_PROD),
            Side::Client => (RIGHT_CONS, LEFT_PROD),
        };
        // Where the peer left them at connection (a client connecting to a fresh server: 0);
        // from here on they are ours.
        let rx_cons = ctrl.read_u32(rx_cons_off);
        let tx_prod = ctrl.read_u32(tx_prod_off);
        Endpoint {
            ctrl,
            rx,
            tx,
            side,
            rx_cons,
            tx_prod,
        }
    }

    fn offs(&self) -> (usize, usize, usize, usize) {
        // (rx prod: peer's, rx cons: ours, tx prod: ours, tx cons: peer's)
        match self.side {
            Side::Server => (LEFT_PROD, LEFT_CONS, RIGHT_PROD, RIGHT_CONS),
            Side::Client => (RIGHT_PROD, RIGHT_CONS, LEFT_PROD, LEFT_CONS),
        }
    }

    /// Bytes waiting to be read.
    pub fn readable(&self) -> Result<usize, VchanError> {
        let prod = self.ctrl.read_u32(self.offs().0);
        fence(Ordering::SeqCst);
        let ready = prod.wrapping_sub(self.rx_cons);
        if ready as usize > self.rx.len() {
            return Err(VchanError::BadIndex {
                what: "producer",
                value: prod,
                ours: self.rx_cons,
            });
        }
        Ok(ready as usize)
    }

    /// Room for writing.
    pub fn writable(&self) -> Result<usize, VchanError> {
        let cons = self.ctrl.read_u32(self.offs().3);
        fence(Ordering::SeqCst);
        let used = self.tx_prod.wrapping_sub(cons);
        if used as usize > self.tx.len() {
            return Err(VchanError::BadIndex {
                what: "consumer",
                value: cons,
                ours: self.tx_prod,
            });
        }
        Ok(self.tx.len() - used as usize)
    }

    /// Reads what is there, at most `buf.len()` bytes; 0 when the ring is empty.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        let n = self.readable()?.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let size = self.rx.len();
        let at = self.rx_cons as usize & (size - 1);
        let first = n.min(size - at);
        self.rx.copy_out(at, &mut buf[..first]);
        self.rx.copy_out(0, &mut buf[first..n]);
        fence(Ordering::SeqCst);
        self.rx_cons = self.rx_cons.wrapping_add(n as u32);
        self.ctrl.write_u32(self.offs().1, self.rx_cons);
        Ok(n)
    }

    /// Writes as much of `data` as fits; 0 when the ring is full.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        let n = self.writable()?.min(data.len());
        if n == 0 {
            return Ok(0);
        }
        let size = self.tx.len();
        let at = self.tx_prod as usize & (size - 1);
        let first = n.min(size - at);
        self.tx.copy_in(at, &data[..first]);
        self.tx.copy_in(0, &data[first..n]);
        fence(Ordering::SeqCst);
        self.tx_prod = self.tx_prod.wrapping_add(n as u32);
        self.ctrl.write_u32(self.offs().2, self.tx_prod);
        Ok(n)
    }

    /// The byte where we ask the peer for events, and the one where it asks us.
    fn notify_bytes(&self) -> (usize, usize) {
        match self.side {
            Side::Server => (CLI_NOTIFY, SRV_NOTIFY),
            Side::Client => (SRV_NOTIFY, CLI_NOTIFY),
        }
    }

    /// Asks the peer for an event when it writes (NOTIFY_WRITE) or reads (NOTIFY_READ).
    pub fn request(&self, bits: u8) {
        self.ctrl
            .byte(self.notify_bytes().0)
            .fetch_or(bits, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Whether the peer asked for an event about `bit` (clearing its request): call after
    /// moving an index.
    pub fn should_notify(&self, bit: u8) -> bool {
        fence(Ordering::SeqCst);
        self.ctrl
            .byte(self.notify_bytes().1)
            .fetch_and(!bit, Ordering::SeqCst)
            & bit
            != 0
    }

    /// The peer's liveness byte: 0 gone, 1 connected, 2 (client) not yet connected.
    pub fn peer_live(&self) -> u8 {
        self.ctrl.read_u8(match self.side {
            Side::Server => CLI_LIVE,
            Side::Client => SRV_LIVE,
        })
    }

    pub fn set_live(&self, v: u8) {
        self.ctrl.write_u8(
            match self.side {
                Side::Server => SRV_LIVE,
                Side::Client => CLI_LIVE,
            },
            v,
        )
    }

    pub fn ring_sizes(&self) -> (usize, usize) {
        (self.rx.len(), self.tx.len())
    }
}

/// Writes the server's header into a zeroed control page: orders, liveness (server 1, client
/// 2 = not yet), the server's wish to hear about client writes, and the grant list.
pub fn init_server_page(ctrl: &Region, left_order: u16, right_order: u16, grants: &[u32]) {
    ctrl.write_u16(LEFT_ORDER, left_order);
    ctrl.write_u16(RIGHT_ORDER, right_order);
    ctrl.write_u8(CLI_LIVE, 2);
    ctrl.write_u8(SRV_LIVE, 1);
    ctrl.write_u8(CLI_NOTIFY, NOTIFY_WRITE);
    for (i, g) in grants.iter().enumerate() {
        ctrl.write_u32(GRANTS + 4 * i, *g);
    }
}

/// The orders a server announced (read once; `Layout::parse` checks them).
pub fn read_orders(ctrl: &Region) -> (u16, u16) {
    (ctrl.read_u16(LEFT_ORDER), ctrl.read_u16(RIGHT_ORDER))
}

/// The `n` grant references listed in the control page (read once).
pub fn read_grants(ctrl: &Region, n: usize) -> Vec<u32> {
    (0..n).map(|i| ctrl.read_u32(GRANTS + 4 * i)).collect()
}

/// A client announcing itself: connected, and wanting events when the server writes.
pub fn client_hello(ctrl: &Region) {
    ctrl.write_u8(CLI_LIVE, 1);
    ctrl.byte(SRV_NOTIFY)
        .fetch_or(NOTIFY_WRITE, Ordering::SeqCst);
}

#[cfg(target_os = "linux")]
pub mod dev;
#[cfg(target_os = "linux")]
pub use dev::{bridge, Connected};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_libxenvchan_and_our_bounds() {
        let l = Layout::parse(16, 16).unwrap();
        assert_eq!(
            l.left,
            RingPlace::Granted {
                first: 0,
                pages: 16
            }
        );
        assert_eq!(
            l.right,
            RingPlace::Granted {
                first: 16,
                pages: 16
            }
        );
        assert_eq!(l.grants, 32);
        let l = Layout::parse(10, 11).unwrap();
        assert_eq!(
            (l.left, l.right, l.grants),
            (RingPlace::InPage(1024), RingPlace::InPage(2048), 0)
        );
        let l = Layout::parse(10, 16).unwrap();
        assert_eq!(
            l.right,
            RingPlace::Granted {
                first: 0,
                pages: 16
            }
        );
        for (a, b) in [
            (9, 12),
            (10, 10),
            (11, 11),
            (17, 12),
            (12, 20),
            (0, 0),
            (u16::MAX, 12),
        ] {
            assert!(Layout::parse(a, b).is_err(), "{a}/{b}");
        }
    }
}
