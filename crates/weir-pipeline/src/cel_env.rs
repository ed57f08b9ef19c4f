//! The environment every CEL expression of a pipeline runs in: CEL's standard library and
//! the string functions SQL needs, with SQL's meaning (Unicode case mapping, 1-based
//! positions). The evaluator (`yaml::Expr::eval_cel`) and the static checker
//! (`expr_check`) both use this one root, so what the checker accepts is what runs.

use cel::{Context, ExecutionError};
use std::sync::Arc;

/// Names of the functions added to CEL's standard library (docs/SQL.md lists them).
pub const FUNCTIONS: &[&str] = &["upper", "lower", "trimChars", "substr", "replaceAll", "position"];

/// A root context: standard library plus [`FUNCTIONS`]. Dear to build: once per thread.
pub fn root() -> Context<'static, 'static> {
    let mut ctx = Context::default();
    let added = [
        ctx.add_function("upper", |s: Arc<String>| s.to_uppercase()),
        ctx.add_function("lower", |s: Arc<String>| s.to_lowercase()),
        ctx.add_function("trimChars", trim_chars),
        ctx.add_function("substr", substr),
        // As Java's String.replace (Flink's REPLACE): an empty `from` matches between characters.
        ctx.add_function("replaceAll", |s: Arc<String>, from: Arc<String>, to: Arc<String>| {
            s.replace(from.as_str(), to.as_str())
        }),
        ctx.add_function("position", |needle: Arc<String>, s: Arc<String>| -> i64 {
            s.find(needle.as_str()).map_or(0, |at| s[..at].chars().count() as i64 + 1)
        }),
    ];
    for r in added {
        r.expect("the added names are not CEL standard-library overloads");
    }
    ctx
}

/// `trimChars(s, chars, mode)`: SQL's TRIM — removes any of `chars` from the start
/// (`"leading"`), the end (`"trailing"`) or both (`"both"`).
fn trim_chars(s: Arc<String>, chars: Arc<String>, mode: Arc<String>) -> Result<Arc<String>, ExecutionError> {
    let set = |c: char| chars.contains(c);
    Ok(match mode.as_str() {
        "both" => s.trim_matches(set),
        "leading" => s.trim_start_matches(set),
        "trailing" => s.trim_end_matches(set),
        other => return Err(ExecutionError::function_error("trimChars", format!("unknown mode {other:?}"))),
    }
    .to_owned()
    .into())
}

/// `substr(s, start, length)`: SQL's SUBSTRING(s FROM start FOR length) over characters, as
/// Flink has it: positions count from 1, 0 is read as 1, a negative start counts from the end
/// (before the beginning gives ''); past the end gives ''; a negative length gives null. A
/// SUBSTRING without FOR passes `i64::MAX`.
fn substr(s: Arc<String>, start: i64, length: i64) -> cel::Value {
    if length < 0 {
        return cel::Value::Null;
    }
    let n = s.chars().count() as i64;
    let from = match start {
        p if p > 0 => p - 1,
        0 => 0,
        p if n + p < 0 => return cel::Value::String(Arc::new(String::new())),
        p => n + p,
    };
    let to = from.saturating_add(length).min(n);
    if from >= to {
        return cel::Value::String(Arc::new(String::new()));
    }
    cel::Value::String(Arc::new(s.chars().skip(from as usize).take((to - from) as usize).collect()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;

    fn eval(src: &str) -> Result<cel::Value, String> {
        let ctx = root();
        cel::Program::compile(src).unwrap().execute(&ctx).map_err(|e| e.to_string())
    }

    fn s(v: &str) -> cel::Value {
        cel::Value::String(Arc::new(v.to_owned()))
    }

    #[test]
    fn sql_string_functions() {
        for (src, want) in [
            ("upper('straße ß')", "STRASSE SS"),
            ("lower('ÀÉÎ Abc')", "àéî abc"),
            ("trimChars('  a b  ', ' ', 'both')", "a b"),
            ("trimChars('xxaxx', 'x', 'leading')", "axx"),
            ("trimChars('xxaxx', 'x', 'trailing')", "xxa"),
            ("substr('hello world', 1, 5)", "hello"),
            ("substr('hello world', 7, 9223372036854775807)", "world"),
            ("substr('hello', 0, 2)", "he"),
            ("substr('hello', -3, 2)", "ll"),
            ("substr('hello', -10, 3)", ""),
            ("substr('hello', 9, 2)", ""),
            ("substr('héllo', 2, 3)", "éll"),
            ("replaceAll('a-b-c', '-', '+')", "a+b+c"),
            ("replaceAll('abc', '', 'x')", "xaxbxcx"),
        ] {
            assert_eq!(eval(src), Ok(s(want)), "{src}");
        }
        assert_eq!(eval("position('lo', 'héllo')"), Ok(cel::Value::Int(4)));
        assert_eq!(eval("position('z', 'hello')"), Ok(cel::Value::Int(0)));
        assert_eq!(eval("substr('hello', 1, -1)"), Ok(cel::Value::Null), "Flink: NULL");
        assert!(eval("trimChars('a', 'a', 'middle')").unwrap_err().contains("unknown mode"));
        assert!(eval("upper(1)").is_err(), "types are checked");
    }
}
