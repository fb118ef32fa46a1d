//! A caller's input (a terminal, a pipe, descriptor 0) copied into a workload's stdin channel,
//! the one loop `hx exec -i`, hx-runtime's keeper and hx-runtime's exec share.
use std::io::{ErrorKind, Read};

/// Reads `from` in chunks of `chunk` bytes and passes each to `send` until end of input or a
/// read error: true, and the caller closes the workload's stdin. False when `send` refused a
/// chunk: the channel is gone, there is nothing to close.
#[must_use]
pub fn copy_until_eof<E>(
    mut from: impl Read,
    chunk: usize,
    mut send: impl FnMut(&[u8]) -> Result<(), E>,
) -> bool {
    let mut buf = vec![0u8; chunk];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if send(&buf[..n]).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_then_ends() {
        let mut got = Vec::new();
        let ended = copy_until_eof(&b"hello world"[..], 4, |b| {
            got.extend_from_slice(b);
            Ok::<(), ()>(())
        });
        assert_eq!(got, b"hello world");
        assert!(ended);
    }

    #[test]
    fn a_refused_chunk_stops_without_ending() {
        let mut sent = 0;
        let ended = copy_until_eof(&b"abcdefgh"[..], 2, |_| {
            sent += 1;
            if sent == 2 {
                Err(())
            } else {
                Ok(())
            }
        });
        assert_eq!(sent, 2);
        assert!(!ended);
    }
}
