//! Where to start reading or to move a group: the one spelling of `weir consume --from` and
//! `weir group reset-offsets --to`. `earliest`/`latest` as in Kafka's tools (`beginning`/`end`
//! are kept as aliases), a duration back from now in the one duration syntax (`5m`: the first
//! record of the last five minutes, like kafka-consumer-groups' --by-duration), `time:<ms>`,
//! or a bare number, whose meaning the command chooses.

use weir_stream::duration::{self, BareNumber};

/// A position in every partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Earliest,
    Latest,
    /// The same offset in each partition.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the end if none is.
    Time(i64),
}

/// What a bare number means where it is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    Offset,
    TimestampMs,
}

impl Position {
    /// Parses `text` at wall-clock time `now_ms`; the error says what is accepted.
    pub fn parse(text: &str, bare: Bare, now_ms: i64) -> Result<Position, String> {
        let accepted = match bare {
            Bare::Offset => "earliest, latest, an offset, a duration back from now (30s, 5m, 2h, 1d) or time:<ms>",
            Bare::TimestampMs => {
                "earliest, latest, a duration back from now (30s, 5m, 2h, 1d) or a timestamp in ms since the epoch"
            }
        };
        let bad = |why: String| format!("{text:?}: {why}; use {accepted}");
        match text.trim() {
            "earliest" | "beginning" => return Ok(Position::Earliest),
            "latest" | "end" => return Ok(Position::Latest),
            t => {
                if let Some(ms) = t.strip_prefix("time:") {
                    let ms = ms.parse::<i64>().map_err(|_| bad("time: takes milliseconds since the epoch".into()))?;
                    return Ok(Position::Time(ms));
                }
                if let Ok(n) = t.parse::<i64>() {
                    if n < 0 {
                        return Err(bad("a negative number".into()));
                    }
                    return Ok(match bare {
                        Bare::Offset => Position::Offset(n),
                        Bare::TimestampMs => Position::Time(n),
                    });
                }
            }
        }
        // Bare numbers were taken above: what remains must carry a unit.
        let ago = duration::parse(text, BareNumber::Milliseconds).map_err(|e| bad(e.to_string()))?;
        let ago_ms = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        Ok(Position::Time(now_ms.saturating_sub(ago_ms).max(0)))
    }

    /// The ListOffsets timestamp for this position (-2 earliest, -1 latest), or None for an offset.
    pub fn list_offsets_timestamp(self) -> Option<i64> {
        match self {
            Position::Earliest => Some(-2),
            Position::Latest => Some(-1),
            Position::Time(ms) => Some(ms),
            Position::Offset(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        let now = 10_000_000;
        let p = |t, bare| Position::parse(t, bare, now);
        assert_eq!(p("earliest", Bare::Offset), Ok(Position::Earliest));
        assert_eq!(p("beginning", Bare::Offset), Ok(Position::Earliest));
        assert_eq!(p("latest", Bare::TimestampMs), Ok(Position::Latest));
        assert_eq!(p("end", Bare::TimestampMs), Ok(Position::Latest));
        assert_eq!(p("100", Bare::Offset), Ok(Position::Offset(100)));
        assert_eq!(p("100", Bare::TimestampMs), Ok(Position::Time(100)));
        assert_eq!(p("5m", Bare::Offset), Ok(Position::Time(now - 300_000)));
        assert_eq!(p("250ms", Bare::TimestampMs), Ok(Position::Time(now - 250)));
        assert_eq!(p("time:42", Bare::Offset), Ok(Position::Time(42)));
        for bad in ["-1", "5 parsecs", "yesterday", "time:x", ""] {
            let e = p(bad, Bare::Offset).expect_err(bad);
            assert!(e.contains("earliest, latest"), "{e}");
        }
    }
}
