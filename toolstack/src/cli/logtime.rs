//! docker's `--since`/`--until` values: a Go duration before now (`10m`, `1h30m`, `1.5s`),
//! Unix seconds (`1733264400`, `1733264400.5`), or an RFC 3339 time or date, with a zone (`Z`,
//! `+01:00`) or without one (local time): `2026-12-03`, `2026-12-03T22`, `2026-12-03T22:40`,
//! `2026-12-03T22:40:01`, `2026-12-03T22:40:01.123456789Z`, `2026-12-03Z`.
use chrono::{FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

/// `value` as nanoseconds since the Unix epoch, `now` being the reference for durations; the
/// message docker gives when it is none of the above.
pub fn parse(value: &str, now: i64) -> Result<i64, String> {
    let bad = || format!("failed to parse value as time or duration: {value:?}");
    if value != "0" {
        if let Some(d) = go_duration(value) {
            return Ok(now.saturating_sub(d));
        }
    }
    if let Some(t) = unix_seconds(value) {
        return Ok(t);
    }
    date_time(value).ok_or_else(bad)
}

/// A Go duration (`time.ParseDuration`) in nanoseconds.
fn go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num.parse::<f64>().ok()? * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    Some(if neg { -(total as i64) } else { total as i64 })
}

/// `SECONDS[.FRACTION]` (docker's `parseTimestamp`).
fn unix_seconds(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let nanos: i64 = format!("{frac:0<9}").parse().ok()?;
    secs.parse::<i64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

fn date_time(s: &str) -> Option<i64> {
    // The zone: Z, or ±HH:MM after a date (whose own dashes come first) or a time.
    let (body, zone) = if let Some(b) = s.strip_suffix(['Z', 'z']) {
        (b, Some(FixedOffset::east_opt(0)?))
    } else if s.len() > 16 && matches!(s.as_bytes()[s.len() - 6], b'+' | b'-') {
        let (b, z) = s.split_at(s.len() - 6);
        let (h, m) = z[1..].split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
        let off = if z.starts_with('-') { -secs } else { secs };
        (b, Some(FixedOffset::east_opt(off)?))
    } else {
        (s, None)
    };
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    if date.len() != 10 {
        return None;
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let time = match (body.contains('T'), time.matches(':').count()) {
        (false, _) => NaiveTime::MIN,
        (true, 0) if time.len() == 2 => {
            NaiveTime::parse_from_str(&format!("{time}:00"), "%H:%M").ok()?
        }
        (true, 1) if time.len() == 5 => NaiveTime::parse_from_str(time, "%H:%M").ok()?,
        (true, 2) if time.len() >= 8 && (time.len() == 8 || time.as_bytes()[8] == b'.') => {
            NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?
        }
        _ => return None,
    };
    let t = NaiveDateTime::new(date, time);
    let at = match zone {
        Some(z) => z.from_local_datetime(&t).single()?.timestamp_nanos_opt()?,
        None => Local
            .from_local_datetime(&t)
            .earliest()?
            .timestamp_nanos_opt()?,
    };
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_764_801_600_000_000_000; // 2025-12-03T22:40:00Z

    #[test]
    fn dockers_forms() {
        assert_eq!(parse("10m", NOW), Ok(NOW - 600_000_000_000));
        assert_eq!(parse("1h30m", NOW), Ok(NOW - 5_400_000_000_000));
        assert_eq!(parse("1.5s", NOW), Ok(NOW - 1_500_000_000));
        assert_eq!(parse("-2s", NOW), Ok(NOW + 2_000_000_000));
        assert_eq!(parse("0", NOW), Ok(0));
        assert_eq!(parse("1764801600", NOW), Ok(NOW));
        assert_eq!(parse("1764801600.5", NOW), Ok(NOW + 500_000_000));
        assert_eq!(parse("2025-12-03T22:40:00Z", NOW), Ok(NOW));
        assert_eq!(parse("2025-12-03T22:40:00.000000001Z", NOW), Ok(NOW + 1));
        assert_eq!(parse("2025-12-03T23:40:00+01:00", NOW), Ok(NOW));
        assert_eq!(
            parse("2025-12-03Z", NOW),
            Ok(NOW - (22 * 3600 + 40 * 60) * 1_000_000_000)
        );
        for bad in [
            "",
            "x",
            "10x",
            "1.2.3s",
            "2025-13-01",
            "2025-12-03T2",
            "12:00",
            "1e3",
            ".",
        ] {
            assert_eq!(
                parse(bad, NOW),
                Err(format!(
                    "failed to parse value as time or duration: {bad:?}"
                )),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn rfc3339_and_unix_forms_round_trip(nanos in 0i64..4_000_000_000_000_000_000) {
            let s = hx_engine::output_log::format_time(nanos);
            prop_assert_eq!(parse(&s, NOW), Ok(nanos));
            let unix = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
            prop_assert_eq!(parse(&unix, NOW), Ok(nanos));
        }

        #[test]
        fn anything_else_is_an_error_not_a_panic(s in "\\PC{0,40}") {
            let _ = parse(&s, NOW);
        }
    }
}
