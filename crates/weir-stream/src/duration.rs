//! Durations as people type them, in one format for every front end (window sizes and
//! checkpoint intervals in specs, `--from 5m`, `--to 5m`, `--duration 10s` on the command
//! line): a whole number with a unit, `250ms`, `10s`, `5m`, `2h` or `1d`. What a bare number
//! means depends on where it is typed, so the caller says it (milliseconds in specs, seconds
//! for a benchmark's length).

use std::time::Duration;

/// The unit of a number written without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNumber {
    Milliseconds,
    Seconds,
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error("{text:?} is not a duration: use a whole number and a unit (250ms, 10s, 5m, 2h, 1d)")]
    Syntax { text: String },
    #[error("{text:?} is not a duration: unknown unit {unit:?} (use ms, s, m, h or d)")]
    Unit { text: String, unit: String },
    #[error("{text:?} is too long a duration")]
    Overflow { text: String },
}

/// Milliseconds in one of each unit.
const UNITS_MS: [(&str, u64); 5] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];

/// Parses `250ms`, `10s`, `5m`, `2h`, `1d`, or a bare number in the `bare` unit. Surrounding
/// whitespace is ignored; a sign, a fraction or a space between number and unit is refused.
pub fn parse(text: &str, bare: BareNumber) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| DurationError::Syntax { text: text.to_owned() })?;
    let unit_ms = match unit {
        "" => match bare {
            BareNumber::Milliseconds => 1,
            BareNumber::Seconds => 1000,
        },
        u => UNITS_MS
            .iter()
            .find(|(name, _)| *name == u)
            .map(|(_, ms)| *ms)
            .ok_or_else(|| DurationError::Unit { text: text.to_owned(), unit: u.to_owned() })?,
    };
    let ms = n.checked_mul(unit_ms).filter(|ms| *ms <= i64::MAX as u64);
    ms.map(Duration::from_millis).ok_or_else(|| DurationError::Overflow { text: text.to_owned() })
}

/// [`parse`] with bare numbers in milliseconds, as milliseconds: the spelling of specs.
pub fn parse_ms(text: &str) -> Option<i64> {
    parse(text, BareNumber::Milliseconds).ok().map(|d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        let ms = |t: &str, bare| parse(t, bare).map(|d| d.as_millis() as u64);
        for (text, bare, want) in [
            ("250ms", BareNumber::Seconds, 250),
            ("10s", BareNumber::Milliseconds, 10_000),
            ("5m", BareNumber::Seconds, 300_000),
            ("2h", BareNumber::Seconds, 7_200_000),
            ("1d", BareNumber::Seconds, 86_400_000),
            ("10", BareNumber::Seconds, 10_000),
            ("10", BareNumber::Milliseconds, 10),
            (" 30s ", BareNumber::Seconds, 30_000),
            ("0s", BareNumber::Seconds, 0),
        ] {
            assert_eq!(ms(text, bare), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn refusals_name_the_text() {
        for text in ["", "s", "-5s", "1.5s", "5 m", "5min", "5M", "99999999999999999999s", "106751991167301d"] {
            let e = parse(text, BareNumber::Seconds).expect_err(text);
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
        assert_eq!(parse_ms("5x"), None);
        assert_eq!(parse_ms("5m"), Some(300_000));
    }
}
