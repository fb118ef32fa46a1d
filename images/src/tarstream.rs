//! A bounded tar reader for layers and image archives.
//!
//! The `tar` crate reads a PAX extended header, GNU long name or long link into memory whole,
//! whatever size its header claims (a 1 GiB PAX header in a 4.7 MB gzip layer: 1.58 GB RSS).
//! Here the 512-byte headers are read and checked by hx itself (`tar::Header` only decodes the
//! fields): extension headers are refused before a byte of their body is read when larger than
//! `max_header_bytes`, every byte pulled from the stream counts against the layer's and image's
//! budget, headers count against `max_layer_entries`, and the whole stream is hashed so the
//! caller can check it against the config's diff_id.
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::limits::Limits;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

const BLOCK: u64 = 512;

type Bytes = Vec<u8>;

/// One member, its extension headers folded in. Its data is read through `TarStream::data`.
#[derive(Debug)]
pub struct Entry {
    /// Long name, else PAX `path`, else the header's (ustar prefix included).
    pub path: Vec<u8>,
    /// Long link, else PAX `linkpath`, else the header's.
    pub link: Option<Vec<u8>>,
    /// uid/gid already overridden by PAX.
    pub header: tar::Header,
    /// PAX records of this member (key, value).
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// Data bytes (PAX `size` wins over the header's).
    pub size: u64,
}

impl Entry {
    pub fn kind(&self) -> tar::EntryType {
        self.header.entry_type()
    }

    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

pub struct TarStream<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes pulled from `inner` so far.
    consumed: u64,
    limits: Limits,
    layer: String,
    /// (image name, bytes it may still use) when an image-wide budget applies.
    image_budget: Option<(String, u64)>,
    entries: u64,
    /// Unread data of the current member, then its padding to a block.
    remaining: u64,
    padding: u64,
}

impl<R: Read> TarStream<R> {
    pub fn new(inner: R, layer: &str, limits: Limits) -> Self {
        TarStream {
            inner,
            hasher: Sha256::new(),
            consumed: 0,
            limits,
            layer: layer.to_string(),
            image_budget: None,
            entries: 0,
            remaining: 0,
            padding: 0,
        }
    }

    /// Also stop once the stream exceeds `left` bytes, reported as the image `image` being too large.
    pub fn image_budget(mut self, image: &str, left: u64) -> Self {
        self.image_budget = Some((image.to_string(), left));
        self
    }

    fn bad(&self, entry: &str, reason: impl std::fmt::Display) -> Error {
        Error::BadLayer {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Reads from the stream, counting and hashing; past a budget the read fails with our Error.
    fn pull(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.consumed += n as u64;
        self.hasher.update(&buf[..n]);
        if self.consumed > self.limits.max_layer_bytes {
            return Err(io::Error::other(Error::LayerTooLarge {
                layer: self.layer.clone(),
                limit: self.limits.max_layer_bytes,
            }));
        }
        if let Some((image, left)) = &self.image_budget {
            if self.consumed > *left {
                return Err(io::Error::other(Error::ImageTooLarge {
                    image: image.clone(),
                    layer: self.layer.clone(),
                    limit: self.limits.max_image_bytes,
                }));
            }
        }
        Ok(n)
    }

    /// Fills `buf`; the number of bytes read is less only at the end of the stream.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.pull(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(self.stream_error(e)),
            }
        }
        Ok(got)
    }

    /// Our own error carried through `io::Error`, or a read error of the stream itself.
    pub fn stream_error(&self, e: io::Error) -> Error {
        into_error(e).unwrap_or_else(|e| self.bad("(archive)", e))
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.fill(&mut buf[..want])?;
            if got < want {
                return Err(self.bad("(archive)", "truncated archive"));
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// The body of an extension header, bounded by `max_header_bytes` before anything is read.
    fn extension_body(
        &mut self,
        header: &tar::Header,
        kind: &'static str,
        size: u64,
    ) -> Result<Vec<u8>> {
        if size > self.limits.max_header_bytes {
            let entry = String::from_utf8_lossy(&header.path_bytes()).into_owned();
            return Err(Error::HeaderTooLarge {
                layer: self.layer.clone(),
                entry,
                kind,
                size,
                limit: self.limits.max_header_bytes,
            });
        }
        let mut body = vec![0u8; size as usize];
        if self.fill(&mut body)? < body.len() {
            return Err(self.bad("(archive)", format!("truncated {kind}")));
        }
        self.skip(pad(size))?;
        Ok(body)
    }

    /// The next member, or None at the end of the archive. Skips what is left of the previous one.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        self.skip(self.remaining.saturating_add(self.padding))?;
        (self.remaining, self.padding) = (0, 0);
        let (mut long_name, mut long_link, mut pax): (Option<Bytes>, Option<Bytes>, Option<Bytes>) =
            (None, None, None);
        loop {
            let mut block = [0u8; BLOCK as usize];
            let got = self.fill(&mut block)?;
            let pending = long_name.is_some() || long_link.is_some() || pax.is_some();
            if got == 0 || block.iter().all(|b| *b == 0) {
                if got != 0 && got < block.len() {
                    return Err(self.bad("(archive)", "truncated header"));
                }
                if pending {
                    return Err(self.bad("(archive)", "extension header without a member after it"));
                }
                return Ok(None);
            }
            if got < block.len() {
                return Err(self.bad("(archive)", "truncated header"));
            }
            self.entries += 1;
            if self.entries > self.limits.max_layer_entries {
                return Err(Error::TooManyEntries {
                    layer: self.layer.clone(),
                    limit: self.limits.max_layer_entries,
                });
            }
            let mut header = tar::Header::from_byte_slice(&block).clone();
            let name = || {
                String::from_utf8_lossy(&tar::Header::from_byte_slice(&block).path_bytes())
                    .into_owned()
            };
            let sum: u32 = block[..148]
                .iter()
                .chain(&block[156..])
                .map(|b| *b as u32)
                .sum::<u32>()
                + 8 * 32;
            if header.cksum().ok() != Some(sum) {
                return Err(self.bad(&name(), "header checksum mismatch"));
            }
            let size = header.entry_size().map_err(|e| self.bad(&name(), e))?;
            let slot = match block[156] {
                b'L' => Some((&mut long_name, "GNU long name")),
                b'K' => Some((&mut long_link, "GNU long link")),
                b'x' | b'X' => Some((&mut pax, "PAX extended header")),
                _ => None,
            };
            if let Some((slot, kind)) = slot {
                if slot.is_some() {
                    return Err(self.bad(&name(), format!("two {kind}s for one member")));
                }
                let body = self.extension_body(&header, kind, size)?;
                *slot = Some(body);
                continue;
            }
            if block[156] == b'g' {
                // Global PAX records: bounded like the others, and not applied (as containerd).
                self.extension_body(&header, "PAX global header", size)?;
                continue;
            }
            let records = match &pax {
                Some(p) => parse_pax(p).map_err(|r| self.bad(&name(), r))?,
                None => Vec::new(),
            };
            let value = |key: &[u8]| {
                records
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let num = |key: &[u8]| -> Result<Option<u64>> {
                match value(key) {
                    None => Ok(None),
                    Some(v) => std::str::from_utf8(&v)
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse().ok())
                        .map(Some)
                        .ok_or_else(|| {
                            self.bad(
                                &name(),
                                format!("PAX {} is not a number", String::from_utf8_lossy(key)),
                            )
                        }),
                }
            };
            let size = num(b"size")?.unwrap_or(size);
            if let Some(uid) = num(b"uid")? {
                header.set_uid(uid);
            }
            if let Some(gid) = num(b"gid")? {
                header.set_gid(gid);
            }
            let path = strip_nul(long_name.take())
                .or_else(|| value(b"path"))
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let link = strip_nul(long_link.take())
                .or_else(|| value(b"linkpath"))
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
            if size > self.limits.max_layer_bytes {
                return Err(Error::LayerTooLarge {
                    layer: self.layer.clone(),
                    limit: self.limits.max_layer_bytes,
                });
            }
            if header.entry_type().is_gnu_sparse() {
                return Err(self.bad(
                    &String::from_utf8_lossy(&path),
                    "GNU sparse files are not supported",
                ));
            }
            self.remaining = size;
            self.padding = pad(size);
            return Ok(Some(Entry {
                path,
                link,
                header,
                pax: records,
                size,
            }));
        }
    }

    /// The current member's data.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { stream: self }
    }

    /// Reads the rest of the stream (what follows the end-of-archive blocks is part of the
    /// layer's diff_id too) and returns the sha256 and length of everything read.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        let mut buf = vec![0u8; 1 << 16];
        while self.fill(&mut buf)? > 0 {}
        Ok((Digest::from_sha256(self.hasher), self.consumed))
    }
}

/// The data of the current member: never more than its declared size.
pub struct Data<'a, R> {
    stream: &'a mut TarStream<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stream.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.stream.remaining.min(usize::MAX as u64) as usize);
        let n = self.stream.pull(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated archive: member shorter than its header says",
            ));
        }
        self.stream.remaining -= n as u64;
        Ok(n)
    }
}

/// Our own Error if `e` carries one (a budget hit inside a `Read`).
pub fn into_error(e: io::Error) -> std::result::Result<Error, io::Error> {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return Ok(*inner.downcast::<Error>().expect("checked above"));
    }
    Err(e)
}

fn pad(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn strip_nul(v: Option<Vec<u8>>) -> Option<Vec<u8>> {
    v.map(|mut v| {
        if let Some(i) = v.iter().position(|b| *b == 0) {
            v.truncate(i);
        }
        v
    })
}

/// PAX records, `"<len> <key>=<value>\n"` each, strictly.
fn parse_pax(body: &[u8]) -> std::result::Result<Vec<(Bytes, Bytes)>, String> {
    let mut out = Vec::new();
    for rec in tar::PaxExtensions::new(body) {
        let rec = rec.map_err(|_| "malformed PAX record".to_string())?;
        out.push((rec.key_bytes().to_vec(), rec.value_bytes().to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn pax_and_long_names_apply_to_the_next_member() {
        let mut t = Vec::new();
        let rec = b"20 path=a/long/name\n";
        t.extend(header("pax", b'x', rec.len() as u64));
        let mut body = rec.to_vec();
        body.resize(512, 0);
        t.extend(body);
        t.extend(header("short", b'0', 3));
        let mut data = b"abc".to_vec();
        data.resize(512, 0);
        t.extend(data);
        t.extend([0u8; 1024]);
        let mut s = TarStream::new(&t[..], "l", Limits::default());
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!(e.path, b"a/long/name");
        let mut got = Vec::new();
        s.data().read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abc");
        assert!(s.next_entry().unwrap().is_none());
        assert_eq!(s.finish().unwrap(), (Digest::of_bytes(&t), t.len() as u64));
    }

    #[test]
    fn oversized_extension_headers_are_refused_before_reading_them() {
        for kind in [b'x', b'L', b'K', b'g'] {
            // Only the header: the claimed 1 GiB body is never read (the stream ends here).
            let t = header("big", kind, 1 << 30);
            let err = TarStream::new(&t[..], "sha256:l", Limits::default())
                .next_entry()
                .unwrap_err();
            assert!(
                matches!(err, Error::HeaderTooLarge { size, .. } if size == 1 << 30),
                "{err}"
            );
        }
    }

    #[test]
    fn budgets_and_entry_counts_are_enforced() {
        let mut t = Vec::new();
        for i in 0..4 {
            t.extend(header(&format!("d{i}/"), b'5', 0));
        }
        t.extend([0u8; 1024]);
        let limits = Limits {
            max_layer_entries: 3,
            ..Limits::default()
        };
        let mut s = TarStream::new(&t[..], "l", limits);
        let r: Result<Vec<_>> = std::iter::from_fn(|| s.next_entry().transpose()).collect();
        assert!(matches!(r, Err(Error::TooManyEntries { limit: 3, .. })));
        let limits = Limits {
            max_layer_bytes: 1024,
            ..Limits::default()
        };
        let mut s = TarStream::new(&t[..], "l", limits);
        let r: Result<Vec<_>> = std::iter::from_fn(|| s.next_entry().transpose()).collect();
        assert!(matches!(r, Err(Error::LayerTooLarge { limit: 1024, .. })));
        let mut s = TarStream::new(&t[..], "l", Limits::default()).image_budget("img", 600);
        let r: Result<Vec<_>> = std::iter::from_fn(|| s.next_entry().transpose()).collect();
        assert!(matches!(r, Err(Error::ImageTooLarge { .. })));
    }

    #[test]
    fn a_member_shorter_than_its_header_is_an_error() {
        let mut t = header("f", b'0', 100_000);
        t.extend([1u8; 600]);
        let mut s = TarStream::new(&t[..], "l", Limits::default());
        s.next_entry().unwrap().unwrap();
        let mut sink = Vec::new();
        assert!(s.data().read_to_end(&mut sink).is_err());
        assert_eq!(sink.len(), 600);
    }
}
