//! Intervals on the command line and in tables: `24h`, `90m`, `3600s`, `7d` or plain seconds.

use permafrost_wire::MIN_ROTATION_SECS;

/// The units an interval may be given in, largest first, with their length in seconds.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// An interval in seconds from `text`: decimal digits, then at most one unit, `s`, `m`, `h` or
/// `d` (no unit: seconds). Nothing else: no sign, no fraction, no space, no mix of units.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        None => return Err("an empty duration: give one like 24h, 90m, 3600s or 3600".into()),
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], Some(c)),
        Some(_) => (text, None),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a duration: give a whole number with at most one unit, like 24h, \
             90m, 3600s or 3600"
        ));
    }
    let per_unit = match unit {
        None => 1,
        Some(unit) => UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, secs)| *secs)
            .ok_or_else(|| {
                format!("{text:?}: unknown unit {unit:?}, use s, m, h or d (or plain seconds)")
            })?,
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// `--every` of `keys rotation set`: an interval of at least [`MIN_ROTATION_SECS`] (the API
/// refuses a shorter one; this refuses it before anything is approved or sent).
pub fn parse_rotation_interval(text: &str) -> Result<u64, String> {
    let secs = parse_seconds(text)?;
    if secs < MIN_ROTATION_SECS {
        return Err(format!(
            "{text} is {secs} s, shorter than the shortest rotation interval, {MIN_ROTATION_SECS} s \
             (1m)"
        ));
    }
    Ok(secs)
}

/// An interval as people write it: in the largest unit it is a whole number of (`1h`, `90m`,
/// `7d`, `61s`).
pub fn format_interval(secs: u64) -> String {
    UNITS
        .iter()
        .find(|(_, per)| secs % per == 0 && secs != 0)
        .map_or_else(
            || format!("{secs}s"),
            |(unit, per)| format!("{}{unit}", secs / per),
        )
}

/// A span of time to the second, in at most its two largest units: `59m 58s`, `1d 2h`, `45s`,
/// `0s`.
pub fn format_span(secs: u64) -> String {
    let mut parts = Vec::new();
    let mut rest = secs;
    for (unit, per) in UNITS {
        if rest >= per || (unit == 's' && parts.is_empty()) {
            parts.push(format!("{}{unit}", rest / per));
            rest %= per;
        } else if !parts.is_empty() {
            // The next unit is zero: the span is shown to the larger one (`1h 0m 1s` is `1h`).
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit_or_none() {
        for (text, secs) in [
            ("24h", 86_400),
            ("90m", 5_400),
            ("3600s", 3_600),
            ("3600", 3_600),
            ("7d", 604_800),
            ("1m", 60),
            ("0", 0),
            ("007s", 7),
        ] {
            assert_eq!(parse_seconds(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_refused_with_a_reason() {
        for (text, says) in [
            ("", "empty"),
            ("h", "not a duration"),
            ("1.5h", "not a duration"),
            ("-60", "not a duration"),
            ("+60s", "not a duration"),
            (" 60", "not a duration"),
            ("60 s", "not a duration"),
            ("1h30m", "not a duration"),
            ("60sec", "not a duration"),
            ("2w", "unknown unit 'w'"),
            ("60S", "unknown unit 'S'"),
            ("5é", "not a duration"),
            ("18446744073709551616", "too long"),
            ("213503982334602d", "too long"),
        ] {
            let error = parse_seconds(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_rotation_interval_is_at_least_a_minute() {
        assert_eq!(parse_rotation_interval("60"), Ok(60));
        assert_eq!(parse_rotation_interval("1m"), Ok(60));
        assert_eq!(parse_rotation_interval("24h"), Ok(86_400));
        for text in ["59", "59s", "0m", "0"] {
            let error = parse_rotation_interval(text).unwrap_err();
            assert!(
                error.contains("shorter than the shortest rotation interval, 60 s"),
                "{text}: {error}"
            );
        }
        assert!(parse_rotation_interval("soon").is_err());
    }

    #[test]
    fn intervals_print_in_their_largest_whole_unit() {
        for (secs, text) in [
            (86_400, "1d"),
            (604_800, "7d"),
            (3_600, "1h"),
            (5_400, "90m"),
            (90_000, "25h"),
            (61, "61s"),
            (60, "1m"),
            (0, "0s"),
        ] {
            assert_eq!(format_interval(secs), text, "{secs}");
            assert_eq!(parse_seconds(text), Ok(secs), "{text} reads back");
        }
    }

    #[test]
    fn spans_show_their_two_largest_units() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (3_598, "59m 58s"),
            (3_600, "1h"),
            (3_660, "1h 1m"),
            (3_601, "1h"),
            (93_600, "1d 2h"),
            (86_401, "1d"),
        ] {
            assert_eq!(format_span(secs), text, "{secs}");
        }
    }
}
