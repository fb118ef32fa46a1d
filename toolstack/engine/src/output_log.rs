//! The workload's output log, `output.log` (rotated like logfile.rs's files): stdout and
//! stderr in the order the log relay received them, one framed record per line, each with
//! its arrival time, like docker's json-file driver but with the guest's bytes kept as they
//! are (not necessarily UTF-8):
//!
//! ```text
//! stdout 2026-12-03T22:40:01.123456789Z 2\n
//! a\n
//! ```
//!
//! a header line (stream, RFC 3339 UTC time with nanoseconds, payload length) and then exactly
//! that many payload bytes: a line with its `\n`, or a line's part (a line longer than the
//! payload limit, or an unfinished one the workload left alone for a moment). The relay writes
//! the headers; the payloads are the guest's and cannot forge one. Readers parse strictly and
//! name the file and byte of a record they cannot read.
//!
//! Containers whose output was kept before this format (and Xen's, whose stdout is the
//! console) have raw `stdout.log`/`stderr.log` files instead: [`Follower`] reads either.
use crate::logfile::{self, Limits, RotatingWriter, Tail};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const FILE: &str = "output.log";
/// The longest payload of one record (docker's json-file splits lines at 16 KiB too).
pub const MAX_PAYLOAD: usize = 16 << 10;
/// "stdout " + 30 time bytes + " " + 5 digits + "\n".
const MAX_HEADER: usize = 6 + 1 + TIME_LEN + 1 + 5 + 1;
const TIME_LEN: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record; `time` in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub stream: Stream,
    pub time: i64,
    pub payload: &'a [u8],
}

/// `nanos` as RFC 3339 UTC with nine fraction digits (docker's `logs -t` format).
pub fn format_time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Appends one record (payload at most MAX_PAYLOAD bytes, not empty) to `out`.
pub fn encode(stream: Stream, time: &str, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_PAYLOAD);
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b' ');
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad record header")]
pub struct BadRecord;

/// The record at the start of `buf` and its length in bytes; None when `buf` holds only the
/// beginning of one.
pub fn parse(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, BadRecord> {
    let Some(end) = buf.iter().take(MAX_HEADER).position(|&b| b == b'\n') else {
        return if buf.len() < MAX_HEADER {
            Ok(None)
        } else {
            Err(BadRecord)
        };
    };
    let header = std::str::from_utf8(&buf[..end]).map_err(|_| BadRecord)?;
    let mut parts = header.split(' ');
    let (Some(stream), Some(time), Some(len), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRecord);
    };
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return Err(BadRecord),
    };
    let time = parse_time(time).ok_or(BadRecord)?;
    if len.is_empty()
        || len.len() > 5
        || len.starts_with('0')
        || !len.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(BadRecord);
    }
    let len: usize = len.parse().map_err(|_| BadRecord)?;
    if len > MAX_PAYLOAD {
        return Err(BadRecord);
    }
    let total = end + 1 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &buf[end + 1..total];
    Ok(Some((
        Record {
            stream,
            time,
            payload,
        },
        total,
    )))
}

/// The canonical form `format_time` writes, and nothing else.
fn parse_time(s: &str) -> Option<i64> {
    if s.len() != TIME_LEN || !s.ends_with('Z') {
        return None;
    }
    let t =
        chrono::NaiveDateTime::parse_from_str(&s[..TIME_LEN - 1], "%Y-%m-%dT%H:%M:%S%.9f").ok()?;
    let nanos = t.and_utc().timestamp_nanos_opt()?;
    (format_time(nanos) == s).then_some(nanos)
}

/// Turns the relay's reads of stdout and stderr into records, one per line: a line's bytes
/// are held until its end arrives, the payload limit is reached or [`Framer::flush`] is
/// called (the relay does after a short quiet spell), and carry the time their first byte
/// arrived.
pub struct Framer {
    pending: [(Vec<u8>, i64); 2],
    max_payload: usize,
}

impl Framer {
    /// `max_payload` is kept well under the file cap, so that a record always fits a file.
    pub fn new(limits: Limits) -> Self {
        let max_payload = MAX_PAYLOAD.min((limits.max_size / 2) as usize).max(1);
        Framer {
            pending: [(Vec::new(), 0), (Vec::new(), 0)],
            max_payload,
        }
    }

    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|(p, _)| !p.is_empty())
    }

    /// The records of `data`, received on `stream` at `now`, appended to `out`.
    pub fn feed(&mut self, stream: Stream, now: i64, mut data: &[u8], out: &mut RecordBatch) {
        let max = self.max_payload;
        let (pending, since) = &mut self.pending[stream as usize];
        while !data.is_empty() {
            if pending.is_empty() {
                *since = now;
            }
            let room = max - pending.len();
            let take = match data[..room.min(data.len())]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(i) => i + 1,
                None => room.min(data.len()),
            };
            pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if pending.ends_with(b"\n") || pending.len() == max {
                out.push(stream, *since, pending);
                pending.clear();
            }
        }
    }

    /// The unfinished lines as records of their own.
    pub fn flush(&mut self, out: &mut RecordBatch) {
        for (i, (pending, since)) in self.pending.iter_mut().enumerate() {
            if !pending.is_empty() {
                let stream = [Stream::Stdout, Stream::Stderr][i];
                out.push(stream, *since, pending);
                pending.clear();
            }
        }
    }
}

/// Encoded records waiting to be written, each kept whole.
#[derive(Default)]
pub struct RecordBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    time_cache: Option<(i64, String)>,
}

impl RecordBatch {
    fn push(&mut self, stream: Stream, time: i64, payload: &[u8]) {
        let text = match &self.time_cache {
            Some((t, s)) if *t == time => s.clone(),
            _ => {
                let s = format_time(time);
                self.time_cache = Some((time, s.clone()));
                s
            }
        };
        encode(stream, &text, payload, &mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    /// Writes the records to `w`, rotating between records (never inside one).
    pub fn write_to(&mut self, w: &mut RotatingWriter) -> io::Result<()> {
        let (mut start, mut i) = (0, 0);
        while i < self.ends.len() {
            let room = w.room();
            let mut j = i;
            while j < self.ends.len() && (self.ends[j] - start) as u64 <= room {
                j += 1;
            }
            if j == i && !w.is_empty() {
                w.rotate()?;
                continue;
            }
            // Nothing fits an empty file only below twice a record's size: written whole.
            let end = self.ends[j.max(i + 1) - 1];
            w.write_whole(&self.bytes[start..end])?;
            start = end;
            i = j.max(i + 1);
        }
        self.bytes.clear();
        self.ends.clear();
        Ok(())
    }
}

/// Calls `f` for each record of `files` (oldest first) from `start` = (file index, offset),
/// reading in fixed-size chunks. A record cut short at the end of a file (a relay killed in a
/// write) is skipped. Returns the length of the newest file read, for following.
pub fn read_records(
    files: &[PathBuf],
    start: (usize, u64),
    f: &mut dyn FnMut(&Record) -> io::Result<()>,
) -> io::Result<u64> {
    let mut newest = 0;
    for (i, p) in files.iter().enumerate().skip(start.0) {
        let from = if i == start.0 { start.1 } else { 0 };
        newest = scan(p, from, &mut |r, _| f(r))?;
    }
    Ok(newest)
}

/// Reads the records of one file from `from`, with each record's offset; returns the offset
/// after the last whole record.
fn scan(
    path: &Path,
    from: u64,
    f: &mut dyn FnMut(&Record, u64) -> io::Result<()>,
) -> io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * (MAX_PAYLOAD + MAX_HEADER));
    let mut at = from;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            match parse(&buf[used..]) {
                Ok(Some((r, len))) => {
                    f(&r, at)?;
                    at += len as u64;
                    used += len;
                }
                Ok(None) => break,
                Err(BadRecord) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: bad record at byte {at}", path.display()),
                    ))
                }
            }
        }
        buf.drain(..used);
        if n == 0 {
            return Ok(at);
        }
    }
}

/// Where to start reading for the last `lines` lines of `files`: (file index, offset).
/// A line is what the workload wrote up to its `\n` (or a record of [`MAX_PAYLOAD`] bytes, the
/// split docker's json-file makes too): the parts of a line the relay flushed while the
/// workload paused count once, from the first part. Only the newest files that hold the lines
/// are read, and only offsets are kept.
pub fn tail_start(files: &[PathBuf], lines: Option<usize>) -> io::Result<(usize, u64)> {
    let Some(mut need) = lines else {
        return Ok((0, 0));
    };
    if need == 0 {
        let len = files
            .last()
            .map_or(0, |p| std::fs::metadata(p).map_or(0, |m| m.len()));
        return Ok((files.len().saturating_sub(1), len));
    }
    for (i, p) in files.iter().enumerate().rev() {
        let starts = line_starts(p, need)?;
        if starts.len() == need {
            return Ok((i, starts.into_iter().min().unwrap_or(0)));
        }
        need -= starts.len();
    }
    Ok((0, 0))
}

/// The start offsets of the last `keep` lines of one file, in the order the lines ended (an
/// unfinished line at the end of the file counts as ended there).
fn line_starts(path: &Path, keep: usize) -> io::Result<std::collections::VecDeque<u64>> {
    let mut ended = std::collections::VecDeque::with_capacity(keep.min(4096));
    let push = |ended: &mut std::collections::VecDeque<u64>, start| {
        if ended.len() == keep {
            ended.pop_front();
        }
        ended.push_back(start);
    };
    // Per stream, where its unfinished line began.
    let mut open: [Option<u64>; 2] = [None, None];
    scan(path, 0, &mut |r, at| {
        let slot = &mut open[r.stream as usize];
        let start = slot.take().unwrap_or(at);
        if r.payload.ends_with(b"\n") || r.payload.len() >= MAX_PAYLOAD {
            push(&mut ended, start);
        } else {
            *slot = Some(start);
        }
        Ok(())
    })?;
    let mut unfinished: Vec<u64> = open.into_iter().flatten().collect();
    unfinished.sort_unstable();
    for start in unfinished {
        push(&mut ended, start);
    }
    Ok(ended)
}

/// A place in a container's output: `hx start -a` shows what follows it.
#[derive(Debug, Clone, Copy)]
pub enum Position {
    Framed(u64),
    Raw(u64, u64),
}

/// Where the container's output in `dir` ends now.
pub fn position(dir: &Path) -> Position {
    let len = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    if dir.join(FILE).exists() || !dir.join("stdout.log").exists() {
        Position::Framed(len(FILE))
    } else {
        Position::Raw(len("stdout.log"), len("stderr.log"))
    }
}

/// Follows a container's output across the relay's rotations: framed records demultiplexed
/// into the two streams, or (older containers, Xen) the raw files.
pub enum Follower {
    Framed { tail: Tail, buf: Vec<u8> },
    Raw(Tail, Tail),
}

impl Follower {
    /// From the start of the current files, or from their end.
    pub fn open(dir: &Path, from_start: bool) -> anyhow::Result<Self> {
        if dir.join(FILE).exists() {
            return Ok(Follower::Framed {
                tail: Tail::open(&dir.join(FILE), from_start)?,
                buf: Vec::new(),
            });
        }
        Ok(Follower::Raw(
            Tail::open(&dir.join("stdout.log"), from_start)?,
            Tail::open(&dir.join("stderr.log"), from_start)?,
        ))
    }

    /// From `pos` on (a position taken before the VM started: the relay may have made
    /// `output.log` since, for a container that had raw logs).
    pub fn open_at(dir: &Path, pos: Position) -> anyhow::Result<Self> {
        Ok(match (pos, dir.join(FILE).exists()) {
            (Position::Framed(p), true) => Follower::Framed {
                tail: Tail::open_at(&dir.join(FILE), p)?,
                buf: Vec::new(),
            },
            (Position::Raw(..), true) => Follower::open(dir, true)?,
            (Position::Raw(o, e), false) => Follower::Raw(
                Tail::open_at(&dir.join("stdout.log"), o)?,
                Tail::open_at(&dir.join("stderr.log"), e)?,
            ),
            (Position::Framed(_), false) => Follower::open(dir, true)?,
        })
    }

    /// Passes each new record to `f`; whether there was any.
    pub fn pump_records(
        &mut self,
        f: &mut dyn FnMut(&Record) -> io::Result<()>,
    ) -> anyhow::Result<bool> {
        let Follower::Framed { tail, buf } = self else {
            anyhow::bail!("this container's output has no records");
        };
        let any = tail.pump(buf)?;
        let mut used = 0;
        while let Some((r, len)) =
            parse(&buf[used..]).map_err(|_| anyhow::anyhow!("{}: bad record", FILE))?
        {
            f(&r)?;
            used += len;
        }
        buf.drain(..used);
        Ok(any)
    }

    /// Copies new output to `out` and `err` as the workload wrote it; whether there was any.
    pub fn pump(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<bool> {
        if let Follower::Raw(o, e) = self {
            let a = o.pump(out)?;
            let b = e.pump(err)?;
            return Ok(a || b);
        }
        let any = self.pump_records(&mut |r| match r.stream {
            Stream::Stdout => out.write_all(r.payload),
            Stream::Stderr => err.write_all(r.payload),
        })?;
        out.flush()?;
        err.flush()?;
        Ok(any)
    }

    pub fn is_framed(&self) -> bool {
        matches!(self, Follower::Framed { .. })
    }
}

/// The current and rotated files of the container's framed log, oldest first (empty when it
/// has none).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let p = dir.join(FILE);
    if p.exists() {
        logfile::files(&p)
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn records(bytes: &[u8]) -> Vec<(Stream, i64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((r, n)) = parse(&bytes[at..]).unwrap() {
            out.push((r.stream, r.time, r.payload.to_vec()));
            at += n;
        }
        assert_eq!(at, bytes.len());
        out
    }

    #[test]
    fn records_read_back_in_arrival_order_with_their_times() {
        let mut f = Framer::new(crate::logfile::OUTPUT);
        let mut b = RecordBatch::default();
        f.feed(Stream::Stdout, 1, b"a\npart", &mut b);
        f.feed(Stream::Stderr, 2, b"b\n", &mut b);
        f.feed(Stream::Stdout, 3, b"ial\nc", &mut b);
        assert!(f.has_pending());
        f.flush(&mut b);
        let got = records(&b.bytes);
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, 1, b"a\n".to_vec()),
                (Stream::Stderr, 2, b"b\n".to_vec()),
                (Stream::Stdout, 1, b"partial\n".to_vec()),
                (Stream::Stdout, 3, b"c".to_vec()),
            ]
        );
        assert_eq!(
            std::str::from_utf8(&b.bytes[..40]).unwrap(),
            "stdout 1970-01-01T00:00:00.000000001Z 2\n"
        );
    }

    #[test]
    fn strict_headers() {
        let ok = b"stderr 2026-12-03T22:40:01.123456789Z 1\nx";
        let (r, n) = parse(ok).unwrap().unwrap();
        assert_eq!(
            (r.stream, r.payload, n),
            (Stream::Stderr, &b"x"[..], ok.len())
        );
        assert_eq!(format_time(r.time), "2026-12-03T22:40:01.123456789Z");
        for bad in [
            &b"stdin 2026-12-03T22:40:01.123456789Z 1\nx"[..],
            b"stdout 2026-12-03T22:40:01.12345678Z 1\nx",
            b"stdout 2026-12-03T22:40:01.123456789+00:00 1\nx",
            b"stdout 2026-02-30T22:40:01.123456789Z 1\nx",
            b"stdout 2026-12-03T22:40:01.123456789Z 01\nx",
            b"stdout 2026-12-03T22:40:01.123456789Z 0\n",
            b"stdout 2026-12-03T22:40:01.123456789Z 16385\nx",
            b"stdout 2026-12-03T22:40:01.123456789Z +1\nx",
            b"stdout  2026-12-03T22:40:01.123456789Z 1\nx",
            b"stdout 2026-12-03T22:40:01.123456789Z 1 \nx",
            &[b'x'; MAX_HEADER],
        ] {
            assert_eq!(
                parse(bad),
                Err(BadRecord),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"stdout 2026-12-03T22:40:01.123456789Z 5\nab"),
            Ok(None)
        );
        assert_eq!(parse(b"stdout 2026-12"), Ok(None));
    }

    #[test]
    fn rotation_keeps_records_whole_and_tail_counts_records() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE);
        let limits = Limits {
            max_size: 1024,
            max_file: 3,
        };
        let mut w = RotatingWriter::open(&p, limits).unwrap();
        let mut f = Framer::new(limits);
        for i in 0..200 {
            let mut b = RecordBatch::default();
            let s = if i % 3 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            f.feed(s, i, format!("line {i}\n").as_bytes(), &mut b);
            b.write_to(&mut w).unwrap();
        }
        let files = files(d.path());
        assert_eq!(files.len(), 3);
        let mut got = Vec::new();
        read_records(&files, (0, 0), &mut |r| {
            assert!(r.payload.starts_with(b"line "));
            got.push(r.time);
            Ok(())
        })
        .unwrap();
        assert_eq!(*got.last().unwrap(), 199);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
        let start = tail_start(&files, Some(3)).unwrap();
        let mut last = Vec::new();
        read_records(&files, start, &mut |r| {
            last.push(r.payload.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(last, [&b"line 197\n"[..], b"line 198\n", b"line 199\n"]);
        let n = got.len();
        assert_eq!(tail_start(&files, Some(n + 5)).unwrap(), (0, 0));
    }

    #[test]
    fn tail_counts_a_line_flushed_in_parts_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE);
        let mut w = RotatingWriter::open(&p, crate::logfile::OUTPUT).unwrap();
        let mut f = Framer::new(crate::logfile::OUTPUT);
        let mut b = RecordBatch::default();
        f.feed(Stream::Stdout, 1, b"first\n", &mut b);
        f.feed(Stream::Stdout, 2, b"sec", &mut b);
        f.flush(&mut b);
        f.feed(Stream::Stdout, 3, b"ond\nthi", &mut b);
        f.flush(&mut b);
        f.feed(Stream::Stdout, 4, b"rd\n", &mut b);
        b.write_to(&mut w).unwrap();
        drop(w);
        let files = files(d.path());
        let text = |n| {
            let mut out = Vec::new();
            read_records(&files, tail_start(&files, Some(n)).unwrap(), &mut |r| {
                out.extend_from_slice(r.payload);
                Ok(())
            })
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(1), "third\n");
        assert_eq!(text(2), "second\nthird\n");
        assert_eq!(text(3), "first\nsecond\nthird\n");
    }

    proptest! {
        /// Whatever the guest writes, in whatever pieces, the records give back its bytes per
        /// stream, each record within the limit.
        #[test]
        fn framing_round_trips(chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..40), max in 1024u64..40000) {
            let mut f = Framer::new(Limits { max_size: max, max_file: 2 });
            let mut b = RecordBatch::default();
            let mut want = [Vec::new(), Vec::new()];
            for (i, (err, data)) in chunks.iter().enumerate() {
                let s = if *err { Stream::Stderr } else { Stream::Stdout };
                want[s as usize].extend_from_slice(data);
                f.feed(s, i as i64, data, &mut b);
            }
            f.flush(&mut b);
            let mut got = [Vec::new(), Vec::new()];
            for (s, _, p) in records(&b.bytes) {
                prop_assert!(!p.is_empty() && p.len() <= MAX_PAYLOAD);
                got[s as usize].extend_from_slice(&p);
            }
            prop_assert_eq!(got, want);
        }

        /// The parser never panics and never claims more bytes than it was given.
        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..200), header in "(stdout|stderr|x) [0-9TZ:.-]{0,32} [0-9]{0,6}\n") {
            for input in [bytes.clone(), [header.as_bytes(), &bytes].concat()] {
                if let Ok(Some((r, n))) = parse(&input) {
                    prop_assert!(n <= input.len() && r.payload.len() <= MAX_PAYLOAD);
                }
            }
        }

        #[test]
        fn times_round_trip(nanos in any::<i64>()) {
            let s = format_time(nanos);
            prop_assert_eq!(s.len(), TIME_LEN);
            prop_assert_eq!(parse_time(&s), Some(nanos));
        }
    }
}
