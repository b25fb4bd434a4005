//! FIX UTCTimestamp (`YYYYMMDD-HH:MM:SS.sss`, UTC) by hand, from and to
//! [`SystemTime`]: std has no calendar, and this is all the calendar FIX needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of a timestamp as [`write_utc_timestamp`] writes it.
pub(crate) const TIMESTAMP_LEN: usize = 21;

/// The latest time written: 9999-12-31 23:59:59.999 (four-digit years only).
const MAX_SECS: u64 = 253_402_300_799;

/// Appends `t` as `YYYYMMDD-HH:MM:SS.sss` (UTC, milliseconds truncated).
/// Times before 1970 are written as the epoch, after 9999 as the last
/// millisecond of 9999: a clock that far off is not worth a panic.
pub fn write_utc_timestamp(out: &mut Vec<u8>, t: SystemTime) {
    out.extend_from_slice(&format_utc(t));
}

/// `t` as the 21 bytes [`write_utc_timestamp`] appends.
pub(crate) fn format_utc(t: SystemTime) -> [u8; TIMESTAMP_LEN] {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (secs, millis) =
        if since.as_secs() > MAX_SECS { (MAX_SECS, 999) } else { (since.as_secs(), since.subsec_millis()) };
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    let mut b = [0u8; TIMESTAMP_LEN];
    put_digits(&mut b[0..4], year);
    put_digits(&mut b[4..6], month);
    put_digits(&mut b[6..8], day);
    b[8] = b'-';
    put_digits(&mut b[9..11], hh);
    b[11] = b':';
    put_digits(&mut b[12..14], mm);
    b[14] = b':';
    put_digits(&mut b[15..17], ss);
    b[17] = b'.';
    put_digits(&mut b[18..21], u64::from(millis));
    b
}

/// Parses a FIX UTCTimestamp: `YYYYMMDD-HH:MM:SS` optionally followed by `.`
/// and 1 to 9 fraction digits (milliseconds, microseconds or nanoseconds).
/// `None` if it is not one, or names a date that does not exist or is before
/// 1970. A leap second (`:60`) is read as the next second.
pub fn parse_utc_timestamp(s: &[u8]) -> Option<SystemTime> {
    if s.len() < 17 || s[8] != b'-' || s[11] != b':' || s[14] != b':' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[4..6])?;
    let day = digits(&s[6..8])?;
    let (hh, mm, ss) = (digits(&s[9..11])?, digits(&s[12..14])?, digits(&s[15..17])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let nanos = match &s[17..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => digits(frac)? * 10u64.pow(9 - frac.len() as u32),
        _ => return None,
    };
    let days = days_from_civil(year, month, day)?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// The value of an all-digit slice (at most 19 digits, so no overflow).
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0')))
}

/// Writes `v` in decimal into all of `out`, zero-padded (`v` must fit).
fn put_digits(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    debug_assert_eq!(v, 0, "Invariant: the value fits its width");
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to the date (`None` before 1970); the inverse of
/// [`civil_from_days`].
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, millis * 1_000_000)
    }

    fn text(t: SystemTime) -> String {
        String::from_utf8(format_utc(t).to_vec()).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(text(UNIX_EPOCH), "19700101-00:00:00.000");
        // 2000-03-01 00:00:00 (after a leap day of a century divisible by 400)
        assert_eq!(text(at(951_868_800, 0)), "20000301-00:00:00.000");
        // 2024-02-29 23:59:59.999
        assert_eq!(text(at(1_709_251_199, 999)), "20240229-23:59:59.999");
        // 2100-03-01 12:34:56.789 (2100 is not a leap year)
        assert_eq!(text(at(4_107_587_696, 789)), "21000301-12:34:56.789");
        // Before the epoch and after 9999: clamped, no panic.
        assert_eq!(text(UNIX_EPOCH - Duration::from_secs(5)), "19700101-00:00:00.000");
        assert_eq!(text(at(MAX_SECS + 10, 0)), "99991231-23:59:59.999");
    }

    #[test]
    fn parses_what_it_formats_and_fractions() {
        for secs in (0..4_000_000_000u64).step_by(7_777_777) {
            let t = at(secs, (secs % 1000) as u32);
            assert_eq!(parse_utc_timestamp(&format_utc(t)), Some(t), "{}", text(t));
        }
        assert_eq!(parse_utc_timestamp(b"20240229-23:59:59"), Some(at(1_709_251_199, 0)));
        assert_eq!(
            parse_utc_timestamp(b"20240229-23:59:59.123456"),
            Some(UNIX_EPOCH + Duration::new(1_709_251_199, 123_456_000))
        );
        for bad in [
            &b"20230229-00:00:00"[..],
            b"20241301-00:00:00",
            b"20240100-00:00:00",
            b"20240101-24:00:00",
            b"20240101 00:00:00",
            b"20240101-00:00:00.",
            b"20240101-00:00:00.1234567890",
            b"19691231-23:59:59",
            b"2024010-00:00:00",
            b"",
        ] {
            assert_eq!(parse_utc_timestamp(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
