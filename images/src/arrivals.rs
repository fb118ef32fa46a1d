//! Layers applied while the ones after them still download (`hx pull`): the rootfs build opens
//! each layer once its download has landed, verified, in the store, instead of waiting for all
//! of them. A failed download releases every waiting open with an error.
use crate::digest::Digest;
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
pub struct Arrivals {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    landed: HashSet<Digest>,
    failed: bool,
}

impl Arrivals {
    /// Blob `digest` is in the store, verified.
    pub fn landed(&self, digest: &Digest) {
        self.lock().landed.insert(digest.clone());
        self.changed.notify_all();
    }

    /// A download failed: nothing else will land for this pull.
    pub fn fail(&self) {
        self.lock().failed = true;
        self.changed.notify_all();
    }

    /// Blocks until `digest` has landed, or any download failed.
    pub fn wait(&self, digest: &Digest) -> Result<()> {
        let mut s = self.lock();
        loop {
            if s.landed.contains(digest) {
                return Ok(());
            }
            if s.failed {
                return Err(Error::Store {
                    path: Path::new("blobs/sha256").join(digest.hex()),
                    detail: "its download did not complete".into(),
                });
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Fails its `Arrivals` when dropped: a pull that returns, unwinds or is cancelled after its
/// build started never leaves the build's decoders waiting (after the build, it changes
/// nothing).
pub struct ReleaseOnDrop(pub Arc<Arrivals>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.fail();
    }
}

/// A layer stream that waits for its blob's arrival at its first read, so that the decoder
/// thread waits, not the caller that starts it.
pub struct WhenLanded<F> {
    arrivals: Arc<Arrivals>,
    digest: Digest,
    open: Option<F>,
    reader: Option<Box<dyn Read>>,
}

impl<F> WhenLanded<F>
where
    F: FnOnce() -> Result<Box<dyn Read>>,
{
    pub fn new(arrivals: Arc<Arrivals>, digest: Digest, open: F) -> Self {
        WhenLanded {
            arrivals,
            digest,
            open: Some(open),
            reader: None,
        }
    }
}

impl<F> Read for WhenLanded<F>
where
    F: FnOnce() -> Result<Box<dyn Read>>,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(open) = self.open.take() {
            self.arrivals
                .wait(&self.digest)
                .and_then(|()| open())
                .map(|r| self.reader = Some(r))
                // Kept typed: the tar reader turns it back into the error it was.
                .map_err(io::Error::other)?;
        }
        match self.reader.as_mut() {
            Some(r) => r.read(buf),
            None => Err(io::Error::other("the layer could not be opened")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn digest(b: &[u8]) -> Digest {
        Digest::of_bytes(b)
    }

    #[test]
    fn a_reader_waits_for_its_layer_then_reads_it() {
        let arrivals = Arc::new(Arrivals::default());
        let d = digest(b"layer");
        let (a, d2) = (arrivals.clone(), d.clone());
        let reader = std::thread::spawn(move || {
            let mut r = WhenLanded::new(a, d2, || {
                Ok(Box::new(io::Cursor::new(b"bytes".to_vec())) as Box<dyn Read>)
            });
            let mut s = String::new();
            r.read_to_string(&mut s).map(|_| s)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "read before the layer landed");
        arrivals.landed(&digest(b"another"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "read after another layer landed");
        arrivals.landed(&d);
        assert_eq!(reader.join().unwrap().unwrap(), "bytes");
    }

    #[test]
    fn a_failed_download_releases_every_waiter_with_an_error() {
        let arrivals = Arc::new(Arrivals::default());
        let waiters: Vec<_> = (0..3u8)
            .map(|i| {
                let a = arrivals.clone();
                std::thread::spawn(move || a.wait(&digest(&[i])))
            })
            .collect();
        arrivals.fail();
        for w in waiters {
            let e = w.join().unwrap().unwrap_err().to_string();
            assert!(e.contains("did not complete"), "{e}");
        }
        // A pull gone (returned, unwound, cancelled) releases the waiters too.
        let arrivals = Arc::new(Arrivals::default());
        let a = arrivals.clone();
        let waiter = std::thread::spawn(move || a.wait(&digest(b"never")));
        drop(ReleaseOnDrop(arrivals));
        assert!(waiter.join().unwrap().is_err());
        // Landed before the failure: still there.
        let a = Arrivals::default();
        a.landed(&digest(b"x"));
        a.fail();
        assert!(a.wait(&digest(b"x")).is_ok());
    }
}
