//! Domain death and shutdown events, delivered by libxl's event callback on the event thread
//! and handed to per-domain subscribers through channels.
use libxl_sys as sys;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::{mpsc, watch};

/// Why a domain shut down (libxl_shutdown_reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
    Unknown,
}

impl ShutdownReason {
    /// libxl's number for it (libxl_shutdown_reason; unknown is -1), as `xl list -v` prints.
    pub fn code(self) -> i32 {
        match self {
            ShutdownReason::Poweroff => sys::LIBXL_SHUTDOWN_REASON_POWEROFF,
            ShutdownReason::Reboot => sys::LIBXL_SHUTDOWN_REASON_REBOOT,
            ShutdownReason::Suspend => sys::LIBXL_SHUTDOWN_REASON_SUSPEND,
            ShutdownReason::Crash => sys::LIBXL_SHUTDOWN_REASON_CRASH,
            ShutdownReason::Watchdog => sys::LIBXL_SHUTDOWN_REASON_WATCHDOG,
            ShutdownReason::SoftReset => sys::LIBXL_SHUTDOWN_REASON_SOFT_RESET,
            ShutdownReason::Unknown => sys::LIBXL_SHUTDOWN_REASON_UNKNOWN,
        }
    }

    pub fn from_libxl(r: i32) -> Self {
        match r {
            sys::LIBXL_SHUTDOWN_REASON_POWEROFF => ShutdownReason::Poweroff,
            sys::LIBXL_SHUTDOWN_REASON_REBOOT => ShutdownReason::Reboot,
            sys::LIBXL_SHUTDOWN_REASON_SUSPEND => ShutdownReason::Suspend,
            sys::LIBXL_SHUTDOWN_REASON_CRASH => ShutdownReason::Crash,
            sys::LIBXL_SHUTDOWN_REASON_WATCHDOG => ShutdownReason::Watchdog,
            sys::LIBXL_SHUTDOWN_REASON_SOFT_RESET => ShutdownReason::SoftReset,
            _ => ShutdownReason::Unknown,
        }
    }
}

/// What `Context::watch_domain` reports. A domain destroyed without shutting down reports only
/// `Death`; `Death` is always the last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DomainEvent {
    Shutdown { domid: u32, reason: ShutdownReason },
    Death { domid: u32 },
}

/// Routes libxl events (by their `for_user` key) to subscribers.
pub(crate) struct Dispatch {
    pub ctx: AtomicPtr<sys::libxl_ctx>,
    subscribers: Mutex<HashMap<u64, mpsc::UnboundedSender<DomainEvent>>>,
    next_key: AtomicU64,
    /// libxl reported a "disaster": the context no longer delivers events reliably.
    pub broken: AtomicBool,
    /// Becomes true when the event thread left libxl's loop: nothing completes after that.
    stopped: watch::Sender<bool>,
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch {
            ctx: AtomicPtr::default(),
            subscribers: Mutex::default(),
            next_key: AtomicU64::default(),
            broken: AtomicBool::default(),
            stopped: watch::channel(false).0,
        }
    }
}

impl Dispatch {
    /// A receiver of domain events; closed at once (None) if the context can no longer
    /// deliver any.
    pub fn subscribe(&self) -> (u64, mpsc::UnboundedReceiver<DomainEvent>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if !self.broken.load(Ordering::Acquire) && !*self.stopped.borrow() {
            subs.insert(key, tx);
        }
        (key, rx)
    }

    /// Ends every subscriber's stream: after a disaster or once the loop stopped, waiting for
    /// an event that cannot come would hang the caller (a monitor would never clean up).
    fn close_subscribers(&self) {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The event thread left libxl's loop: operations in flight fail, event streams end.
    pub fn mark_stopped(&self) {
        self.stopped.send_replace(true);
        self.close_subscribers();
    }

    /// Resolves once the event thread has stopped (at once if it already has).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopped.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    pub fn unsubscribe(&self, key: u64) {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    fn deliver(&self, key: u64, event: DomainEvent) {
        let subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = subs.get(&key) {
            let _ = tx.send(event);
        }
    }
}

/// The libxl form of an event, or None for types hx does not subscribe to.
pub(crate) fn translate(ev: &sys::libxl_event) -> Option<DomainEvent> {
    match ev.type_ {
        sys::LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN => {
            // SAFETY: the union member that matches the event type.
            let reason = unsafe { ev.u.domain_shutdown.shutdown_reason };
            Some(DomainEvent::Shutdown {
                domid: ev.domid,
                reason: ShutdownReason::from_libxl(reason as i32),
            })
        }
        sys::LIBXL_EVENT_TYPE_DOMAIN_DEATH => Some(DomainEvent::Death { domid: ev.domid }),
        _ => None,
    }
}

pub(crate) unsafe extern "C" fn event_occurs(
    user: *mut std::ffi::c_void,
    ev: *mut sys::libxl_event,
) {
    // SAFETY: user is the Dispatch the event thread keeps alive as long as the context.
    let dispatch = unsafe { &*(user as *const Dispatch) };
    // SAFETY: libxl hands over a valid event, which we must free.
    let event = unsafe { &*ev };
    match translate(event) {
        Some(e) => dispatch.deliver(event.for_user, e),
        None => tracing::debug!(target: "libxl", "ignoring libxl event type {}", event.type_),
    }
    // SAFETY: ours to free, with the context it came from.
    unsafe { sys::libxl_event_free(dispatch.ctx.load(Ordering::Acquire), ev) };
}

pub(crate) unsafe extern "C" fn disaster(
    user: *mut std::ffi::c_void,
    type_: sys::libxl_event_type,
    msg: *const std::ffi::c_char,
    errnoval: i32,
) {
    // SAFETY: as in event_occurs; msg is a C string or NULL.
    let dispatch = unsafe { &*(user as *const Dispatch) };
    let msg = if msg.is_null() {
        "".into()
    } else {
        unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy()
    };
    tracing::error!(target: "libxl", "libxl event disaster (event type {type_}, errno {errnoval}): {msg}");
    dispatch.broken.store(true, Ordering::Release);
    dispatch.close_subscribers();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: sys::libxl_event_type, domid: u32) -> sys::libxl_event {
        // SAFETY: plain C struct; zero is a valid bit pattern.
        let mut ev: sys::libxl_event = unsafe { std::mem::zeroed() };
        ev.type_ = kind;
        ev.domid = domid;
        ev
    }

    #[test]
    fn libxl_events_become_domain_events() {
        let mut ev = event(sys::LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN, 7);
        ev.u.domain_shutdown.shutdown_reason = sys::LIBXL_SHUTDOWN_REASON_CRASH as u8;
        assert_eq!(
            translate(&ev),
            Some(DomainEvent::Shutdown {
                domid: 7,
                reason: ShutdownReason::Crash
            })
        );
        assert_eq!(
            translate(&event(sys::LIBXL_EVENT_TYPE_DOMAIN_DEATH, 7)),
            Some(DomainEvent::Death { domid: 7 })
        );
        assert_eq!(translate(&event(sys::LIBXL_EVENT_TYPE_DISK_EJECT, 7)), None);
        assert_eq!(ShutdownReason::from_libxl(-1), ShutdownReason::Unknown);
    }

    #[test]
    fn events_reach_only_their_subscriber() {
        let d = Dispatch::default();
        let (a, mut rx_a) = d.subscribe();
        let (b, mut rx_b) = d.subscribe();
        d.deliver(a, DomainEvent::Death { domid: 3 });
        assert_eq!(rx_a.try_recv().unwrap(), DomainEvent::Death { domid: 3 });
        assert!(rx_b.try_recv().is_err());
        d.unsubscribe(b);
        d.deliver(b, DomainEvent::Death { domid: 4 });
        assert!(rx_b.try_recv().is_err());
    }

    #[test]
    fn a_stopped_loop_ends_every_event_stream_and_wakes_waiters() {
        let d = Dispatch::default();
        let (_, mut before) = d.subscribe();
        let stopped = d.stopped();
        d.mark_stopped();
        // Closed, not merely empty: `DomainEvents::next` returns None instead of hanging.
        assert_eq!(
            before.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
        let (_, mut after) = d.subscribe();
        assert_eq!(
            after.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), stopped)
                .await
                .expect("waiter woken");
            tokio::time::timeout(std::time::Duration::from_secs(5), d.stopped())
                .await
                .expect("a later waiter resolves at once");
        });
    }

    #[test]
    fn a_disaster_ends_every_event_stream() {
        let d = Dispatch::default();
        let (_, mut rx) = d.subscribe();
        let msg = std::ffi::CString::new("xenstore watch failed").unwrap();
        // SAFETY: user is a live Dispatch, msg a C string.
        unsafe {
            disaster(
                (&d as *const Dispatch).cast_mut().cast(),
                0,
                msg.as_ptr(),
                5,
            )
        };
        assert!(d.broken.load(Ordering::Acquire));
        assert_eq!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }
}
