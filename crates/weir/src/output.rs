//! How commands print: the one `-o table|json` choice every command takes, and counted nouns
//! ("1 record", "2 records") for messages.

use clap::ValueEnum;

/// `-o`: a human table (the default) or JSON for scripts.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// `n` and the noun, plural unless `n` is 1: `counted(1, "record")` is "1 record".
pub fn counted(n: u64, singular: &str) -> String {
    let plural = match singular {
        s if s.ends_with('y') && !s.ends_with("ey") => format!("{}ies", &s[..s.len() - 1]),
        s if s.ends_with('s') || s.ends_with('x') || s.ends_with("ch") => format!("{s}es"),
        s => format!("{s}s"),
    };
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_and_plural() {
        assert_eq!(counted(1, "record"), "1 record");
        assert_eq!(counted(0, "record"), "0 records");
        assert_eq!(counted(2, "partition"), "2 partitions");
        assert_eq!(counted(3, "dead letter"), "3 dead letters");
        assert_eq!(counted(2, "entry"), "2 entries");
        assert_eq!(counted(1, "entry"), "1 entry");
        assert_eq!(counted(5, "key"), "5 keys");
    }
}
