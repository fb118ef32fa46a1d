//! Decompresses the next layers on other cores while the current one is applied.
//!
//! Layers must be applied in order, but gzip decoding is the largest single cost of a rootfs
//! build and each layer decodes independently. A decoder thread per layer fills a bounded queue
//! of chunks; at most `ahead` layers beyond the one being applied are decoding at any time, so
//! memory stays bounded (`ahead` × `QUEUE_CHUNKS` × `CHUNK`) whatever the number of layers.
use crate::error::{Error, Result};
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

const CHUNK: usize = 1 << 20;
const QUEUE_CHUNKS: usize = 16;

/// One layer's decoded bytes, as a `Read`. A decoding error surfaces as the read error.
pub struct DecodedLayer {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    thread: Option<JoinHandle<()>>,
}

impl DecodedLayer {
    /// Starts decoding `open()`'s stream on a new thread.
    pub fn spawn<F>(open: F) -> Result<Self>
    where
        F: FnOnce() -> Result<Box<dyn Read>> + Send + 'static,
    {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(QUEUE_CHUNKS);
        let (opened_tx, opened_rx) = sync_channel::<Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("layer-decode".into())
            .spawn(move || {
                let mut reader = match open() {
                    Ok(r) => {
                        let _ = opened_tx.send(Ok(()));
                        r
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let mut filled = 0;
                    // Fill whole chunks: decoders return small reads.
                    while filled < CHUNK {
                        match reader.read(&mut buf[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    if filled == 0 {
                        return;
                    }
                    buf.truncate(filled);
                    // The applier stopped reading (an error in an earlier layer): stop too.
                    if tx.send(Ok(buf)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Store {
                path: "layer-decode".into(),
                detail: format!("cannot start a decoder thread: {e}"),
            })?;
        let opened = opened_rx.recv().unwrap_or_else(|_| {
            Err(Error::Store {
                path: "layer-decode".into(),
                detail: "decoder thread died".into(),
            })
        });
        let layer = DecodedLayer {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
            thread: Some(thread),
        };
        opened.map(|_| layer)
    }
}

impl Read for DecodedLayer {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for DecodedLayer {
    fn drop(&mut self) {
        // Unblock a decoder waiting on a full queue, then wait for it.
        let (_, dummy) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dummy));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Layers decoded in order with up to `ahead` layers decoding in advance.
pub struct Pipeline<F> {
    opens: std::collections::VecDeque<F>,
    started: std::collections::VecDeque<DecodedLayer>,
    ahead: usize,
}

impl<F> Pipeline<F>
where
    F: FnOnce() -> Result<Box<dyn Read>> + Send + 'static,
{
    pub fn new(opens: Vec<F>, ahead: usize) -> Self {
        Pipeline {
            opens: opens.into(),
            started: Default::default(),
            ahead: ahead.max(1),
        }
    }

    /// The next layer's decoded stream, or None after the last.
    pub fn next_layer(&mut self) -> Option<Result<DecodedLayer>> {
        while self.started.len() < self.ahead + 1 {
            let Some(open) = self.opens.pop_front() else {
                break;
            };
            match DecodedLayer::spawn(open) {
                Ok(l) => self.started.push_back(l),
                Err(e) => {
                    if self.started.is_empty() {
                        return Some(Err(e));
                    }
                    // Report it in order, after the layers before it.
                    self.opens.clear();
                    self.started.push_back(failed(e));
                    break;
                }
            }
        }
        self.started.pop_front().map(Ok)
    }
}

/// A stream whose first read returns the opening error (keeps errors in layer order).
fn failed(e: Error) -> DecodedLayer {
    let (tx, rx) = sync_channel(1);
    let _ = tx.send(Err(io::Error::other(e.to_string())));
    DecodedLayer {
        rx,
        current: Vec::new(),
        pos: 0,
        done: false,
        thread: None,
    }
}

/// How many layers to decode ahead: one per spare core.
pub fn default_ahead() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn layers_come_out_in_order_and_whole() {
        let layers: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; 3 * CHUNK + 17 * i as usize])
            .collect();
        let opens: Vec<_> = layers
            .iter()
            .map(|l| {
                let z = gz(l);
                move || {
                    Ok(
                        Box::new(flate2::read::MultiGzDecoder::new(io::Cursor::new(z)))
                            as Box<dyn Read>,
                    )
                }
            })
            .collect();
        let mut p = Pipeline::new(opens, 2);
        for want in &layers {
            let mut got = Vec::new();
            p.next_layer()
                .unwrap()
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert_eq!(&got, want);
        }
        assert!(p.next_layer().is_none());
    }

    #[test]
    fn a_corrupt_layer_is_a_read_error_of_that_layer() {
        let mut bad = gz(&vec![7u8; 2 * CHUNK]);
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        let good = gz(b"fine");
        type Open = Box<dyn FnOnce() -> Result<Box<dyn Read>> + Send>;
        let opens: Vec<Open> = vec![
            Box::new(move || {
                Ok(
                    Box::new(flate2::read::MultiGzDecoder::new(io::Cursor::new(good)))
                        as Box<dyn Read>,
                )
            }),
            Box::new(move || {
                Ok(
                    Box::new(flate2::read::MultiGzDecoder::new(io::Cursor::new(bad)))
                        as Box<dyn Read>,
                )
            }),
        ];
        let mut p = Pipeline::new(opens, 1);
        let mut s = String::new();
        p.next_layer()
            .unwrap()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "fine");
        let mut rest = Vec::new();
        assert!(p
            .next_layer()
            .unwrap()
            .unwrap()
            .read_to_end(&mut rest)
            .is_err());
    }

    #[test]
    fn dropping_early_stops_the_decoders() {
        let opens: Vec<_> = (0..3)
            .map(|_| {
                let z = gz(&vec![1u8; 40 * CHUNK]);
                move || {
                    Ok(
                        Box::new(flate2::read::MultiGzDecoder::new(io::Cursor::new(z)))
                            as Box<dyn Read>,
                    )
                }
            })
            .collect();
        let mut p = Pipeline::new(opens, 2);
        let mut first = p.next_layer().unwrap().unwrap();
        let mut buf = [0u8; 10];
        first.read_exact(&mut buf).unwrap();
        drop(first);
        drop(p); // joins every decoder: a hang here fails the test by timeout
    }
}
