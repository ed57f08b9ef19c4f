//! The SQL front end: a Flink-style streaming dialect, parsed with the `sqlparser` crate and
//! planned onto the same steps as YAML specs (filter, map, key_by, window, top_n, join), so a
//! SQL pipeline runs on the engine, checkpoints, sinks and dead letters of `yaml::run`.
//!
//! ```sql
//! CREATE SOURCE nexmark (
//!     Bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP>,
//!     date_time AS Bid.date_time,
//!     WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
//! ) WITH (format = 'jsonl', path = 'nexmark.jsonl');
//! CREATE VIEW bid AS SELECT Bid.auction, Bid.price, date_time FROM nexmark WHERE Bid IS NOT NULL;
//! CREATE SINK q WITH (format = 'jsonl', path = 'q.out.jsonl') AS
//!   SELECT auction, COUNT(*) AS bids, window_start
//!   FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
//!   GROUP BY auction, window_start, window_end;
//! ```
//!
//! The planner keeps a relation's columns as CEL expressions over the current event and
//! writes a `map` only where a stateful step needs fields (before a window, a top-N, the
//! sink), so a filter-and-project query is one filter and one map. Every construct it does not
//! plan is an error that names it, with its line and column; nothing is silently ignored.
//! docs/SQL.md is the user's reference.

use crate::yaml::{
    CheckpointSpec, DeadLetterSpec, Expr, JoinYaml, KafkaSinkYaml, KafkaSourceYaml, KeyFrom, NexmarkYaml,
    RepartitionSpec, SinkSpec, SourceKind, SourceSpec, Spec, StepSpec, TimeFrom, WindowOutput, WindowYaml,
};
use sqlparser::ast::{self, Spanned};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};
use std::collections::BTreeMap;
use weir_stream::aggregate::Aggregate;
use weir_stream::window::Window;

/// An error with the line and column (1-based) of the SQL it is about, when known.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", if *line > 0 { format!("line {line}, column {column}: ") } else { String::new() })]
pub struct SqlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

fn err_at<T>(span: Span, message: impl Into<String>) -> Result<T, SqlError> {
    Err(SqlError { line: span.start.line, column: span.start.column, message: message.into() })
}

/// A SQL column type. TIMESTAMP values are milliseconds since the epoch (JSON integers);
/// DECIMAL is computed in binary floating point (docs/SQL.md says so).
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Int,
    Double,
    Str,
    Ts,
    Interval,
    Null,
    Row(Vec<(String, Ty)>),
}

impl Ty {
    fn name(&self) -> String {
        match self {
            Ty::Bool => "BOOLEAN".into(),
            Ty::Int => "BIGINT".into(),
            Ty::Double => "DOUBLE".into(),
            Ty::Str => "VARCHAR".into(),
            Ty::Ts => "TIMESTAMP".into(),
            Ty::Interval => "INTERVAL".into(),
            Ty::Null => "NULL".into(),
            Ty::Row(f) => {
                let fields: Vec<String> = f.iter().map(|(n, t)| format!("{n} {}", t.name())).collect();
                format!("ROW<{}>", fields.join(", "))
            }
        }
    }
    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Double | Ty::Ts | Ty::Null)
    }
}

/// Which edge of a window a column is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Edge {
    Start,
    End,
}

/// A column of a relation: how to read it from the current event (CEL).
#[derive(Debug, Clone)]
struct Col {
    qual: Option<String>,
    name: String,
    ty: Ty,
    cel: String,
    /// `cel` is a plain field path (so `has()` can test it).
    path: bool,
    /// window_start / window_end: of a window TVF not yet grouped (`cel` empty), or of results.
    edge: Option<Edge>,
}

/// A planned relation: steps so far, and its columns over the current event.
#[derive(Debug, Clone, Default)]
struct Rel {
    steps: Vec<StepSpec>,
    cols: Vec<Col>,
    /// Rows of a window TVF (not yet grouped or ranked) over this window.
    tvf: Option<Window>,
    /// Results of a windowed aggregate over this window.
    windowed: Option<Window>,
    /// A `RANK() OVER (...)` column waiting for the outer `WHERE rk <= N`.
    rank: Option<Box<Rank>>,
    /// Only filters so far (a join side must be).
    stateless: bool,
    /// Rows of an interval join bounded by a column of one side (`until`).
    until: Option<Until>,
    /// The one source the rows are of (None: joined rows).
    source: Option<usize>,
    /// `t FOR SYSTEM_TIME AS OF x`: a table to join as of the other side's time `x`.
    as_of: Option<ast::Expr>,
    /// Joined rows whose time is one side's event time: that column (CEL).
    time: Option<String>,
}

/// An interval join's upper bound: a constant offset, or a TIMESTAMP column of one side (CEL).
enum Hi {
    Const(i64),
    Until(String),
}

/// The rows of a join whose left time is at most a column of its right side: every row of a
/// join key is in by the time the watermark passes that column, so a GROUP BY that includes
/// the key can close there (an until window) instead of at the end of the input.
#[derive(Debug, Clone)]
struct Until {
    /// The bound, over the joined event.
    bound: String,
    /// The join key of either side, over the joined event.
    keys: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rank {
    alias: String,
    partition: Vec<ast::Expr>,
    order: ast::Expr,
    descending: bool,
    span: Span,
}

#[derive(Debug)]
struct SourceDef {
    name: String,
    span: Span,
    cols: Vec<(String, Ty)>,
    /// `name TYPE METADATA FROM 'key' | 'timestamp'`: the record's key or timestamp (CEL).
    meta: Vec<(String, Ty, &'static str)>,
    computed: Vec<(String, ast::Expr)>,
    watermark: Option<(String, ast::Expr, Span)>,
    /// `PRIMARY KEY (col)`: a temporal join with this table must be on it.
    primary_key: Option<String>,
    options: BTreeMap<String, (String, Span)>,
}

#[derive(Debug)]
struct SinkDef {
    name: String,
    span: Span,
    options: BTreeMap<String, (String, Span)>,
    query: Option<(Box<ast::Query>, Span)>,
}

/// A parsed script: sources, views, sinks and what is inserted into them.
#[derive(Debug, Default)]
struct Script {
    sources: Vec<SourceDef>,
    views: Vec<(String, Box<ast::Query>)>,
    sinks: Vec<SinkDef>,
    /// A bare query (`weir sql "SELECT …"`).
    query: Option<(Box<ast::Query>, Span)>,
}

fn perr(e: sqlparser::parser::ParserError) -> SqlError {
    // sqlparser says "… at Line: L, Column: C"; the position goes in front, once.
    let text = e.to_string();
    let text = text.strip_prefix("sql parser error: ").unwrap_or(&text).to_owned();
    if let Some(i) = text.rfind(" at Line: ") {
        let pos = &text[i + 10..];
        if let Some((l, c)) = pos.split_once(", Column: ") {
            if let (Ok(line), Ok(column)) = (l.trim().parse(), c.trim().parse()) {
                return SqlError { line, column, message: text[..i].to_owned() };
            }
        }
    }
    SqlError { line: 0, column: 0, message: text }
}

fn word(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Tokens with Flink's `TABLE name` function arguments (`TUMBLE(TABLE bids, …)`) reduced to
/// the name, which is how sqlparser reads table arguments.
fn tokens(text: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    let dialect = GenericDialect {};
    let toks = Tokenizer::new(&dialect, text).tokenize_with_location().map_err(|e| SqlError {
        line: e.location.line,
        column: e.location.column,
        message: e.message.clone(),
    })?;
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(toks.len());
    let mut skip_to = 0;
    for (i, t) in toks.iter().enumerate() {
        if i < skip_to {
            continue;
        }
        if word(t).as_deref() == Some("FOR") {
            if let Some((expr, end)) = as_of(&toks, i) {
                // `name FOR SYSTEM_TIME AS OF a.b` → `WEIR_AS_OF(name, a.b)`, which sqlparser
                // reads as a table function (its generic dialect has no table versions).
                while out.last().is_some_and(|t| !significant(t)) {
                    out.pop();
                }
                if let Some(name) = out.pop().filter(|n| matches!(n.token, Token::Word(_))) {
                    let at = |token: Token| TokenWithSpan { token, span: t.span };
                    out.push(at(Token::make_word(AS_OF, None)));
                    out.push(at(Token::LParen));
                    out.push(name);
                    out.push(at(Token::Comma));
                    out.extend(expr);
                    out.push(at(Token::RParen));
                    skip_to = end;
                    continue;
                }
                return Err(SqlError {
                    line: t.span.start.line,
                    column: t.span.start.column,
                    message: "FOR SYSTEM_TIME AS OF follows a table's name".into(),
                });
            }
        }
        if word(t).as_deref() == Some("TABLE") {
            let prev = out.iter().rev().find(|t| significant(t)).map(|t| t.token.clone());
            let next = toks[i + 1..].iter().find(|t| significant(t));
            if matches!(prev, Some(Token::LParen | Token::Comma))
                && next.is_some_and(|n| matches!(n.token, Token::Word(_)))
            {
                continue;
            }
        }
        out.push(t.clone());
    }
    Ok(out)
}

/// The table function that stands for `t FOR SYSTEM_TIME AS OF x` (see `tokens`).
const AS_OF: &str = "WEIR_AS_OF";

/// At `FOR` of `FOR SYSTEM_TIME AS OF a.b`: the tokens of `a.b` and the index after them.
fn as_of(toks: &[TokenWithSpan], i: usize) -> Option<(Vec<TokenWithSpan>, usize)> {
    let mut j = i;
    for kw in ["FOR", "SYSTEM_TIME", "AS", "OF"] {
        while matches!(toks.get(j)?.token, Token::Whitespace(_)) {
            j += 1;
        }
        if word(toks.get(j)?).as_deref() != Some(kw) {
            return None;
        }
        j += 1;
    }
    let mut expr = Vec::new();
    loop {
        while matches!(toks.get(j)?.token, Token::Whitespace(_)) {
            j += 1;
        }
        let w = toks.get(j)?;
        if !matches!(w.token, Token::Word(_)) {
            return None;
        }
        expr.push(w.clone());
        j += 1;
        match toks.get(j) {
            Some(t) if t.token == Token::Period => {
                expr.push(t.clone());
                j += 1;
            }
            _ => return Some((expr, j)),
        }
    }
}

fn parse(text: &str) -> Result<Script, SqlError> {
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens(text)?);
    let mut script = Script::default();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let first = p.peek_token();
        if first.token == Token::EOF {
            break;
        }
        let w0 = word(&first).unwrap_or_default();
        let w1 = word(&p.peek_nth_token(1)).unwrap_or_default();
        match (w0.as_str(), w1.as_str()) {
            ("CREATE", "SOURCE" | "TABLE" | "SINK") => {
                p.next_token();
                p.next_token();
                let _ = p.parse_keywords(&[sqlparser::keywords::Keyword::IF, sqlparser::keywords::Keyword::NOT]);
                let _ = p.parse_keyword(sqlparser::keywords::Keyword::EXISTS);
                let name_tok = p.peek_token();
                let name = p.parse_identifier().map_err(perr)?.value;
                if w1 == "SINK" {
                    let options = if p.parse_keyword(sqlparser::keywords::Keyword::WITH) {
                        parse_options(&mut p)?
                    } else {
                        BTreeMap::new()
                    };
                    let query = if p.parse_keyword(sqlparser::keywords::Keyword::AS) {
                        let at = p.peek_token().span;
                        Some((p.parse_query().map_err(perr)?, at))
                    } else {
                        None
                    };
                    script.sinks.push(SinkDef { name, span: name_tok.span, options, query });
                } else {
                    let def = parse_source(&mut p, name, name_tok.span)?;
                    // Flink's CREATE TABLE … WITH (…) names a sink as well as a source: one
                    // that is inserted into is a sink.
                    script.sources.push(def);
                }
            }
            ("CREATE", "VIEW") | ("CREATE", "OR") => {
                p.next_token();
                if w1 == "OR" {
                    p.next_token();
                    p.expect_keyword(sqlparser::keywords::Keyword::REPLACE).map_err(perr)?;
                }
                p.expect_keyword(sqlparser::keywords::Keyword::VIEW).map_err(perr)?;
                let name = p.parse_identifier().map_err(perr)?.value;
                p.expect_keyword(sqlparser::keywords::Keyword::AS).map_err(perr)?;
                script.views.push((name, p.parse_query().map_err(perr)?));
            }
            ("INSERT", _) => {
                p.next_token();
                p.expect_keyword(sqlparser::keywords::Keyword::INTO).map_err(perr)?;
                let name_tok = p.peek_token();
                let name = p.parse_identifier().map_err(perr)?.value;
                let at = p.peek_token().span;
                let query = p.parse_query().map_err(perr)?;
                // INSERT INTO a table declared with CREATE TABLE makes it the sink.
                let pos = script.sources.iter().position(|s| s.name.eq_ignore_ascii_case(&name));
                match (pos, script.sinks.iter_mut().find(|s| s.name.eq_ignore_ascii_case(&name))) {
                    (_, Some(s)) if s.query.is_none() => s.query = Some((query, at)),
                    (_, Some(_)) => return err_at(name_tok.span, format!("sink {name} already has a query")),
                    (Some(i), None) => {
                        let t = script.sources.remove(i);
                        script.sinks.push(SinkDef {
                            name: t.name,
                            span: t.span,
                            options: t.options,
                            query: Some((query, at)),
                        });
                    }
                    (None, None) => {
                        return err_at(name_tok.span, format!("INSERT INTO {name}: no CREATE SINK {name} before it"))
                    }
                }
            }
            ("SELECT" | "WITH", _) | ("", _) if first.token == Token::LParen || w0 == "SELECT" || w0 == "WITH" => {
                if script.query.is_some() {
                    return err_at(first.span, "one query per script");
                }
                script.query = Some((p.parse_query().map_err(perr)?, first.span));
            }
            _ => {
                return err_at(
                    first.span,
                    format!(
                        "unsupported statement starting {}: use CREATE SOURCE, CREATE VIEW, CREATE SINK … AS SELECT, \
                         INSERT INTO sink SELECT, or a query",
                        first.token
                    ),
                )
            }
        }
        if !p.consume_token(&Token::SemiColon) && p.peek_token().token != Token::EOF {
            let t = p.peek_token();
            return err_at(t.span, format!("expected ; or the end of the script, found {}", t.token));
        }
    }
    Ok(script)
}

/// `( key = value, … )`: keys are identifiers or quoted strings (Flink writes `'connector'`).
fn parse_options(p: &mut Parser) -> Result<BTreeMap<String, (String, Span)>, SqlError> {
    let mut out = BTreeMap::new();
    p.expect_token(&Token::LParen).map_err(perr)?;
    if p.consume_token(&Token::RParen) {
        return Ok(out);
    }
    loop {
        let t = p.next_token();
        let mut key = match &t.token {
            Token::Word(w) => w.value.to_ascii_lowercase(),
            Token::SingleQuotedString(s) => s.to_ascii_lowercase(),
            other => return err_at(t.span, format!("expected an option name, found {other}")),
        };
        while p.consume_token(&Token::Period) {
            let t = p.next_token();
            match &t.token {
                Token::Word(w) => {
                    key.push('.');
                    key.push_str(&w.value.to_ascii_lowercase());
                }
                other => return err_at(t.span, format!("expected an option name, found {other}")),
            }
        }
        p.expect_token(&Token::Eq).map_err(perr)?;
        let v = p.next_token();
        let value = match &v.token {
            Token::SingleQuotedString(s) => s.clone(),
            Token::Number(n, _) => n.clone(),
            Token::Word(w) => w.value.clone(),
            other => return err_at(v.span, format!("expected a value for {key}, found {other}")),
        };
        if out.insert(key.clone(), (value, t.span)).is_some() {
            return err_at(t.span, format!("option {key} is given twice"));
        }
        if p.consume_token(&Token::RParen) {
            return Ok(out);
        }
        p.expect_token(&Token::Comma).map_err(perr)?;
    }
}

fn parse_source(p: &mut Parser, name: String, span: Span) -> Result<SourceDef, SqlError> {
    let mut def = SourceDef {
        name,
        span,
        cols: Vec::new(),
        meta: Vec::new(),
        computed: Vec::new(),
        watermark: None,
        primary_key: None,
        options: BTreeMap::new(),
    };
    if p.consume_token(&Token::LParen) {
        loop {
            let t = p.peek_token();
            if word(&t).as_deref() == Some("PRIMARY") {
                // `PRIMARY KEY (col) [NOT ENFORCED]`: the key of a table's rows (temporal joins).
                p.next_token();
                p.expect_keyword(sqlparser::keywords::Keyword::KEY).map_err(perr)?;
                p.expect_token(&Token::LParen).map_err(perr)?;
                let col = p.parse_identifier().map_err(perr)?;
                if !p.consume_token(&Token::RParen) {
                    return err_at(p.peek_token().span, "PRIMARY KEY of one column in this version");
                }
                let _ = p.parse_keywords(&[sqlparser::keywords::Keyword::NOT, sqlparser::keywords::Keyword::ENFORCED]);
                if def.primary_key.is_some() {
                    return err_at(t.span, "one PRIMARY KEY per table");
                }
                def.primary_key = Some(col.value);
            } else if word(&t).as_deref() == Some("WATERMARK") {
                p.next_token();
                p.expect_keyword(sqlparser::keywords::Keyword::FOR).map_err(perr)?;
                let col = p.parse_identifier().map_err(perr)?;
                p.expect_keyword(sqlparser::keywords::Keyword::AS).map_err(perr)?;
                let e = p.parse_expr().map_err(perr)?;
                if def.watermark.is_some() {
                    return err_at(t.span, "one WATERMARK per source");
                }
                def.watermark = Some((col.value, e, t.span));
            } else {
                let col_tok = p.peek_token();
                let col = p.parse_identifier().map_err(perr)?.value;
                if def.cols.iter().any(|(n, _)| n.eq_ignore_ascii_case(&col))
                    || def.computed.iter().any(|(n, _)| n.eq_ignore_ascii_case(&col))
                {
                    return err_at(col_tok.span, format!("column {col} is declared twice"));
                }
                if p.parse_keyword(sqlparser::keywords::Keyword::AS) {
                    def.computed.push((col, p.parse_expr().map_err(perr)?));
                } else {
                    let ty = parse_type(p)?;
                    // NOT NULL / NULL are accepted and mean what JSON gives (docs/SQL.md).
                    let _ = p.parse_keywords(&[sqlparser::keywords::Keyword::NOT, sqlparser::keywords::Keyword::NULL])
                        || p.parse_keyword(sqlparser::keywords::Keyword::NULL);
                    if word(&p.peek_token()).as_deref() == Some("METADATA") {
                        let at = p.next_token().span;
                        p.expect_keyword(sqlparser::keywords::Keyword::FROM).map_err(perr)?;
                        let what = p.parse_literal_string().map_err(perr)?;
                        let cel = match (what.as_str(), &ty) {
                            ("key", Ty::Str) => "key",
                            ("timestamp", Ty::Ts | Ty::Int) => "ts",
                            _ => {
                                return err_at(
                                    at,
                                    format!(
                                    "METADATA FROM {what:?}: the record's 'key' (VARCHAR) or 'timestamp' (TIMESTAMP)"
                                ),
                                )
                            }
                        };
                        def.meta.push((col, ty, cel));
                    } else {
                        def.cols.push((col, ty));
                    }
                }
            }
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma).map_err(perr)?;
        }
    }
    if p.parse_keyword(sqlparser::keywords::Keyword::WITH) {
        def.options = parse_options(p)?;
    }
    Ok(def)
}

/// A column type: SQL scalars through sqlparser, `ROW<name type, …>` (Flink) or
/// `STRUCT<…>` for nested JSON objects.
fn parse_type(p: &mut Parser) -> Result<Ty, SqlError> {
    let t = p.peek_token();
    if matches!(word(&t).as_deref(), Some("ROW" | "STRUCT")) && p.peek_nth_token(1).token == Token::Lt {
        p.next_token();
        p.next_token();
        let mut fields = Vec::new();
        loop {
            let f = p.parse_identifier().map_err(perr)?.value;
            let ty = parse_type(p)?;
            fields.push((f, ty));
            if p.consume_token(&Token::Gt) {
                return Ok(Ty::Row(fields));
            }
            if p.peek_token().token == Token::ShiftRight {
                let t = p.next_token();
                return err_at(t.span, "write `> >` between nested ROW types");
            }
            p.expect_token(&Token::Comma).map_err(perr)?;
        }
    }
    let dt = p.parse_data_type().map_err(perr)?;
    use ast::DataType as D;
    Ok(match dt {
        D::BigInt(_) | D::Int(_) | D::Integer(_) | D::SmallInt(_) | D::TinyInt(_) | D::Int64 | D::Int32 => Ty::Int,
        D::Double(_) | D::DoublePrecision | D::Float(_) | D::Real | D::Float64 | D::Decimal(_) | D::Numeric(_) => {
            Ty::Double
        }
        D::Varchar(_) | D::Text | D::String(_) | D::Char(_) | D::CharVarying(_) | D::Character(_) => Ty::Str,
        D::Boolean | D::Bool => Ty::Bool,
        D::Timestamp(_, _) | D::Datetime(_) => Ty::Ts,
        other => return err_at(t.span, format!("column type {other} is not supported (BIGINT, INT, DOUBLE, DECIMAL, VARCHAR, BOOLEAN, TIMESTAMP, ROW<…>)")),
    })
}

// ---------------------------------------------------------------------------------------------
// Planning.

/// What the sink of a script writes to.
struct Planned {
    spec: Spec,
    explain: Vec<String>,
    /// The output columns, in SELECT order.
    columns: Vec<String>,
}

struct Planner<'s> {
    script: &'s Script,
    /// The sources the query reads, in the order it reads them.
    sources: Vec<usize>,
    ctes: Vec<(String, Box<ast::Query>)>,
    /// Per source read: the CEL of its event-time column (its WATERMARK), and the same column
    /// as the record is decoded (before any step), for the source's time.
    times: BTreeMap<usize, (Option<String>, String)>,
}

fn is_ident(s: &str) -> bool {
    const RESERVED: [&str; 16] = [
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
    ];
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !RESERVED.contains(&s)
        && !matches!(s, "true" | "false" | "null")
}

/// `root.field` in CEL (or `root["field"]` when the name is not an identifier).
fn field(root: &str, name: &str) -> String {
    if is_ident(name) {
        format!("{root}.{name}")
    } else {
        format!("{root}[{}]", cel_str(name))
    }
}

fn cel_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `has()` for every step of a path below its root (`event`, or a join's `event.left` /
/// `event.right`): `event.a.b` → `has(event.a) && has(event.a.b)`.
fn has_chain(path: &str) -> String {
    let root = ["event.left", "event.right"]
        .into_iter()
        .find(|r| path.starts_with(r) && !path[r.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
    let mut parts = Vec::new();
    let mut i = root.map_or("event".len(), str::len);
    let bytes = path.as_bytes();
    while i < path.len() {
        let next = path[i + 1..].find(['.', '[']).map_or(path.len(), |j| i + 1 + j);
        if bytes[i] == b'.' {
            parts.push(format!("has({})", &path[..next]));
        } else {
            // An index step: `"k" in root`.
            let inner = &path[i + 1..path[i..].find(']').map_or(path.len(), |j| i + j)];
            parts.push(format!("{inner} in {}", &path[..i]));
        }
        i = if bytes[i] == b'[' { path[i..].find(']').map_or(path.len(), |j| i + j + 1) } else { next };
    }
    parts.join(" && ")
}

/// The identifiers of a column reference (`a` or `t.a.b`).
fn idents_of(e: &ast::Expr) -> Option<Vec<ast::Ident>> {
    match e {
        ast::Expr::Identifier(i) => Some(vec![i.clone()]),
        ast::Expr::CompoundIdentifier(v) => Some(v.clone()),
        _ => None,
    }
}

fn name_of(e: &ast::Expr) -> Option<String> {
    match e {
        ast::Expr::Identifier(i) => Some(i.value.clone()),
        ast::Expr::CompoundIdentifier(v) => v.last().map(|i| i.value.clone()),
        _ => None,
    }
}

fn interval_ms(e: &ast::Expr) -> Option<i64> {
    let ast::Expr::Interval(iv) = e else { return None };
    let text = match iv.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => s.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let unit_ms = |u: &ast::DateTimeField| -> Option<i64> {
        use ast::DateTimeField as F;
        Some(match u {
            F::Millisecond | F::Milliseconds => 1,
            F::Second | F::Seconds => 1000,
            F::Minute | F::Minutes => 60_000,
            F::Hour | F::Hours => 3_600_000,
            F::Day | F::Days => 86_400_000,
            _ => return None,
        })
    };
    match &iv.leading_field {
        Some(u) if iv.last_field.is_none() => {
            let n: f64 = text.trim().parse().ok()?;
            let ms = n * unit_ms(u)? as f64;
            (ms.fract() == 0.0 && ms.abs() < 9e15).then_some(ms as i64)
        }
        None => {
            // INTERVAL '10 seconds'
            let (n, unit) = text.trim().split_once(' ')?;
            crate::yaml::parse_duration_ms(&format!(
                "{}{}",
                n.trim(),
                match unit.trim().trim_end_matches('s') {
                    "millisecond" => "ms",
                    "second" => "s",
                    "minute" => "m",
                    "hour" => "h",
                    "day" => "d",
                    _ => return None,
                }
            ))
        }
        _ => None,
    }
}

/// The arguments of a function call, as plain expressions.
fn args_of(f: &ast::Function) -> Result<Vec<&ast::Expr>, SqlError> {
    let list = match &f.args {
        ast::FunctionArguments::None => return Ok(Vec::new()),
        ast::FunctionArguments::List(l) => l,
        ast::FunctionArguments::Subquery(_) => {
            return err_at(f.span(), format!("{}: a subquery argument is not supported", f.name))
        }
    };
    if !list.clauses.is_empty() {
        return err_at(f.span(), format!("{}: clauses inside the arguments are not supported", f.name));
    }
    list.args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
            other => err_at(f.span(), format!("{}: argument {other} is not supported", f.name)),
        })
        .collect()
}

fn fname(f: &ast::Function) -> String {
    f.name.to_string().to_ascii_uppercase()
}

fn is_aggregate(name: &str) -> bool {
    matches!(name, "COUNT" | "SUM" | "MIN" | "MAX" | "AVG")
}

/// Whether an expression holds an aggregate call.
fn has_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let ast::Expr::Function(f) = x {
            if is_aggregate(&fname(f)) && f.over.is_none() {
                found = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// Splits `a AND b AND c` into its conjuncts.
fn conjuncts(e: &ast::Expr, out: &mut Vec<ast::Expr>) {
    match e {
        ast::Expr::BinaryOp { left, op: ast::BinaryOperator::And, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        ast::Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other.clone()),
    }
}

/// A group-by or rank key as text: strings as they are, anything else as its JSON text.
fn key_cel(parts: &[(Ty, String)]) -> String {
    if parts.is_empty() {
        return "'all'".into();
    }
    let text = |(ty, cel): &(Ty, String)| if *ty == Ty::Str { cel.clone() } else { format!("string({cel})") };
    if let [one] = parts {
        return if one.0 == Ty::Str { one.1.clone() } else { text(one) };
    }
    parts.iter().map(text).collect::<Vec<_>>().join(" + '\\u001f' + ")
}

/// A column read back from a result's key text.
fn from_key(ty: &Ty, span: Span) -> Result<String, SqlError> {
    Ok(match ty {
        Ty::Str => "event.key".into(),
        Ty::Int | Ty::Ts => "int(event.key)".into(),
        Ty::Double => "double(event.key)".into(),
        Ty::Bool => "event.key == 'true'".into(),
        other => return err_at(span, format!("GROUP BY a {} is not supported", other.name())),
    })
}

impl<'s> Planner<'s> {
    fn source_def(&self, i: usize) -> &'s SourceDef {
        &self.script.sources[i]
    }

    /// The CEL of the event time of a relation's source (None: no watermark, or not one source).
    fn time_of_rel<'r>(&'r self, rel: &'r Rel) -> Option<&'r String> {
        if rel.time.is_some() {
            return rel.time.as_ref();
        }
        self.times.get(&rel.source?)?.0.as_ref()
    }

    /// The columns of a source, read from an event at `root`.
    fn source_rel(&mut self, i: usize) -> Result<Rel, SqlError> {
        if !self.sources.contains(&i) {
            self.sources.push(i);
        }
        let def = self.source_def(i);
        let col = |n: &str, ty: &Ty, cel: String, path: bool| Col {
            qual: Some(def.name.clone()),
            name: n.to_owned(),
            ty: ty.clone(),
            cel,
            path,
            edge: None,
        };
        // The columns as the record is decoded (the event time is computed from these).
        let mut cols: Vec<Col> = def.cols.iter().map(|(n, ty)| col(n, ty, field("event", n), true)).collect();
        cols.extend(def.meta.iter().map(|(n, ty, cel)| col(n, ty, (*cel).to_owned(), false)));
        let mut steps = Vec::new();
        if !def.meta.is_empty() {
            // The record's key and time change along the pipeline (key_by, windows): copy them
            // into the event first, with the fields beside them.
            let mut entries = Vec::new();
            for c in &cols {
                let v = if c.path { format!("({} ? {} : null)", has_chain(&c.cel), c.cel) } else { c.cel.clone() };
                entries.push((c.name.clone(), v));
            }
            steps.push(StepSpec::Map(map_literal(&entries)));
        }
        // The computed columns over a set of columns (as decoded, or as the map copied them).
        let computed = |mut cols: Vec<Col>| -> Result<Vec<Col>, SqlError> {
            for (n, e) in &def.computed {
                let rel = Rel {
                    steps: vec![],
                    cols: cols.clone(),
                    tvf: None,
                    windowed: None,
                    rank: None,
                    stateless: true,
                    ..Rel::default()
                };
                let (ty, cel) = self.expr(e, &rel)?;
                cols.push(col(n, &ty, cel, false));
            }
            Ok(cols)
        };
        let mapped: Vec<Col> = cols.iter().map(|c| col(&c.name, &c.ty, field("event", &c.name), true)).collect();
        let raw = computed(cols)?;
        let cols = if steps.is_empty() { raw.clone() } else { computed(mapped)? };
        if let Some((wcol, _, span)) = &def.watermark {
            let Some(c) = raw.iter().find(|c| c.name.eq_ignore_ascii_case(wcol)) else {
                return err_at(*span, format!("WATERMARK FOR {wcol}: {} has no column {wcol}", def.name));
            };
            if !matches!(c.ty, Ty::Ts | Ty::Int) {
                return err_at(
                    *span,
                    format!("WATERMARK FOR {wcol}: a {} is no event time (TIMESTAMP or BIGINT ms)", c.ty.name()),
                );
            }
            let cel = cols.iter().find(|c| c.name.eq_ignore_ascii_case(wcol)).map(|c| c.cel.clone());
            self.times.insert(i, (cel, c.cel.clone()));
        }
        let stateless = steps.is_empty();
        Ok(Rel { steps, cols, stateless, source: Some(i), ..Rel::default() })
    }

    fn find_col(&self, rel: &Rel, idents: &[ast::Ident], span: Span) -> Result<(Col, usize), SqlError> {
        // [qual, name, fields…] or [name, fields…]
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let mut hits: Vec<(&Col, usize)> = Vec::new();
        if idents.len() >= 2 {
            hits.extend(
                rel.cols
                    .iter()
                    .filter(|c| {
                        c.qual.as_deref().is_some_and(|q| eq(q, &idents[0].value)) && eq(&c.name, &idents[1].value)
                    })
                    .map(|c| (c, 2)),
            );
        }
        if hits.is_empty() {
            hits.extend(rel.cols.iter().filter(|c| eq(&c.name, &idents[0].value)).map(|c| (c, 1)));
        }
        let whole = idents.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(".");
        match hits.as_slice() {
            [] => {
                let known: Vec<&str> = rel.cols.iter().map(|c| c.name.as_str()).collect();
                err_at(span, format!("unknown column {whole} (columns here: {})", known.join(", ")))
            }
            [(c, used)] => Ok(((*c).clone(), *used)),
            _ => err_at(span, format!("column {whole} is ambiguous: qualify it with its table")),
        }
    }

    /// A column reference with any row fields after it.
    fn column(
        &self,
        idents: &[ast::Ident],
        rel: &Rel,
        span: Span,
    ) -> Result<(Ty, String, bool, Option<Edge>), SqlError> {
        let (c, used) = self.find_col(rel, idents, span)?;
        if let Some(why) = c.missing() {
            return err_at(span, format!("column {} cannot be used here: {why}", c.name));
        }
        let (mut ty, mut cel, mut path) = (c.ty.clone(), c.cel.clone(), c.path);
        for f in &idents[used..] {
            let Ty::Row(fields) = &ty else {
                return err_at(span, format!("{} is a {}, not a ROW: it has no field {}", c.name, ty.name(), f.value));
            };
            let Some((fname, fty)) = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(&f.value)) else {
                let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                return err_at(span, format!("{} has no field {} (fields: {})", c.name, f.value, names.join(", ")));
            };
            cel = if path { field(&cel, fname) } else { field(&format!("({cel})"), fname) };
            ty = fty.clone();
            path &= true;
        }
        let edge = if used == idents.len() { c.edge } else { None };
        if !path && used < idents.len() {
            path = false;
        }
        Ok((ty, cel, path, edge))
    }

    /// Types an expression and renders it as CEL over the relation's columns.
    fn expr(&self, e: &ast::Expr, rel: &Rel) -> Result<(Ty, String), SqlError> {
        use ast::BinaryOperator as B;
        use ast::Expr as E;
        let span = e.span();
        Ok(match e {
            E::Identifier(i) => {
                let (ty, cel, _, _) = self.column(std::slice::from_ref(i), rel, span)?;
                (ty, cel)
            }
            E::CompoundIdentifier(v) => {
                let (ty, cel, _, _) = self.column(v, rel, span)?;
                (ty, cel)
            }
            E::Nested(inner) => {
                let (ty, cel) = self.expr(inner, rel)?;
                (ty, format!("({cel})"))
            }
            E::Value(v) => match &v.value {
                ast::Value::Number(n, _) => match n.parse::<i64>() {
                    Ok(_) => (Ty::Int, n.clone()),
                    Err(_) => match n.parse::<f64>() {
                        Ok(x) if x.is_finite() => {
                            let text = if n.contains(['.', 'e', 'E']) { n.clone() } else { format!("{n}.0") };
                            (Ty::Double, text)
                        }
                        _ => return err_at(span, format!("number {n} is out of range")),
                    },
                },
                ast::Value::SingleQuotedString(s) => (Ty::Str, cel_str(s)),
                ast::Value::Boolean(b) => (Ty::Bool, b.to_string()),
                ast::Value::Null => (Ty::Null, "null".into()),
                other => return err_at(span, format!("literal {other} is not supported")),
            },
            E::Interval(_) => match interval_ms(e) {
                Some(ms) => (Ty::Interval, ms.to_string()),
                None => return err_at(span, format!("{e}: use INTERVAL 'n' SECOND (MILLISECOND, MINUTE, HOUR, DAY)")),
            },
            E::UnaryOp { op, expr } => {
                let (ty, cel) = self.expr(expr, rel)?;
                match op {
                    ast::UnaryOperator::Not if ty == Ty::Bool => (Ty::Bool, format!("!({cel})")),
                    ast::UnaryOperator::Minus if matches!(ty, Ty::Int | Ty::Double | Ty::Interval) => {
                        (ty, format!("-({cel})"))
                    }
                    ast::UnaryOperator::Plus if ty.numeric() => (ty, cel),
                    other => return err_at(span, format!("{other} of a {} is not supported", ty.name())),
                }
            }
            E::IsNull(inner) | E::IsNotNull(inner) => {
                let test = self.present(inner, rel)?;
                if matches!(e, E::IsNull(_)) {
                    (Ty::Bool, format!("!({test})"))
                } else {
                    (Ty::Bool, format!("({test})"))
                }
            }
            E::Between { expr, negated, low, high } => {
                let (t, x) = self.expr(expr, rel)?;
                let (tl, l) = self.expr(low, rel)?;
                let (th, h) = self.expr(high, rel)?;
                let (x1, l1) = self.unify(&t, &x, &tl, &l, span)?;
                let (x2, h1) = self.unify(&t, &x, &th, &h, span)?;
                let body = format!("({x1} >= {l1} && {x2} <= {h1})");
                (Ty::Bool, if *negated { format!("!{body}") } else { body })
            }
            E::In { expr, target: ast::InTarget::List(list), negated, global: false } => {
                let (t, x) = self.expr(expr, rel)?;
                let mut items = Vec::new();
                for item in list {
                    let (ti, ci) = self.expr(item, rel)?;
                    let ok = matches!((&t, &ti), (Ty::Str, Ty::Str) | (Ty::Int | Ty::Ts, Ty::Int));
                    if !ok {
                        return err_at(
                            item.span(),
                            format!("IN list item {item} is a {}, the value a {}", ti.name(), t.name()),
                        );
                    }
                    items.push(ci);
                }
                let body = format!("({x} in [{}])", items.join(", "));
                (Ty::Bool, if *negated { format!("!{body}") } else { body })
            }
            E::Like { negated, any: false, expr, pattern, escape_char: None } => {
                let (t, x) = self.expr(expr, rel)?;
                if t != Ty::Str {
                    return err_at(span, format!("LIKE needs a VARCHAR, {expr} is a {}", t.name()));
                }
                let ast::Expr::Value(v) = pattern.as_ref() else {
                    return err_at(pattern.span(), "LIKE needs a literal pattern");
                };
                let ast::Value::SingleQuotedString(p) = &v.value else {
                    return err_at(pattern.span(), "LIKE needs a string pattern");
                };
                let inner = p.trim_start_matches('%').trim_end_matches('%');
                if inner.contains(['%', '_']) {
                    return err_at(
                        pattern.span(),
                        format!("LIKE {p:?}: only 'x%', '%x', '%x%' and 'x' patterns are supported"),
                    );
                }
                let lit = cel_str(inner);
                let body = match (p.starts_with('%') && !inner.is_empty() || p == "%", p.ends_with('%') && p.len() > 1)
                {
                    _ if p == "%" || p == "%%" => "true".to_owned(),
                    (true, true) => format!("{x}.contains({lit})"),
                    (true, false) => format!("{x}.endsWith({lit})"),
                    (false, true) => format!("{x}.startsWith({lit})"),
                    (false, false) => format!("{x} == {lit}"),
                };
                (Ty::Bool, if *negated { format!("!({body})") } else { format!("({body})") })
            }
            E::BinaryOp { left, op, right } => {
                let (tl, l) = self.expr(left, rel)?;
                let (tr, r) = self.expr(right, rel)?;
                match op {
                    B::And | B::Or => {
                        if tl != Ty::Bool || tr != Ty::Bool {
                            return err_at(span, format!("{op} needs BOOLEANs, not {} and {}", tl.name(), tr.name()));
                        }
                        (Ty::Bool, format!("{l} {} {r}", if *op == B::And { "&&" } else { "||" }))
                    }
                    B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                        if tl == Ty::Null || tr == Ty::Null {
                            return err_at(span, "a comparison with NULL is never true: use IS NULL / IS NOT NULL");
                        }
                        let (l, r) = self.unify(&tl, &l, &tr, &r, span)?;
                        let o = match op {
                            B::Eq => "==",
                            B::NotEq => "!=",
                            B::Lt => "<",
                            B::LtEq => "<=",
                            B::Gt => ">",
                            _ => ">=",
                        };
                        (Ty::Bool, format!("{l} {o} {r}"))
                    }
                    B::StringConcat => {
                        let s = |t: &Ty, c: String| if *t == Ty::Str { c } else { format!("string({c})") };
                        (Ty::Str, format!("{} + {}", s(&tl, l), s(&tr, r)))
                    }
                    B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => self.arith(op, &tl, l, &tr, r, span)?,
                    other => return err_at(span, format!("operator {other} is not supported")),
                }
            }
            E::Case { operand, conditions, else_result, .. } => {
                let mut arms = Vec::new();
                let mut ty: Option<Ty> = None;
                for cw in conditions {
                    let (tc, c) = match operand {
                        Some(op) => {
                            let (to, o) = self.expr(op, rel)?;
                            let (tv, v) = self.expr(&cw.condition, rel)?;
                            let (o, v) = self.unify(&to, &o, &tv, &v, cw.condition.span())?;
                            (Ty::Bool, format!("{o} == {v}"))
                        }
                        None => self.expr(&cw.condition, rel)?,
                    };
                    if tc != Ty::Bool {
                        return err_at(
                            cw.condition.span(),
                            format!("WHEN {} is a {}, not a BOOLEAN", cw.condition, tc.name()),
                        );
                    }
                    let (tr, r) = self.expr(&cw.result, rel)?;
                    ty = Some(self.join_ty(ty, &tr, cw.result.span())?);
                    arms.push((c, tr, r));
                }
                let (te, el) = match else_result {
                    Some(x) => self.expr(x, rel)?,
                    None => (Ty::Null, "null".into()),
                };
                let ty = self.join_ty(ty, &te, span)?;
                let cast =
                    |t: &Ty, c: String| if ty == Ty::Double && *t == Ty::Int { format!("double({c})") } else { c };
                let mut out = cast(&te, el);
                for (c, t, r) in arms.into_iter().rev() {
                    out = format!("({c} ? {} : {out})", cast(&t, r));
                }
                (ty, out)
            }
            E::Cast { kind, expr, data_type, format: None } => {
                if !matches!(kind, ast::CastKind::Cast | ast::CastKind::DoubleColon) {
                    return err_at(span, format!("{kind:?} is not supported: use CAST"));
                }
                let (t, x) = self.expr(expr, rel)?;
                use ast::DataType as D;
                let to = match data_type {
                    D::BigInt(_) | D::Int(_) | D::Integer(_) | D::SmallInt(_) | D::TinyInt(_) => Ty::Int,
                    D::Double(_) | D::DoublePrecision | D::Float(_) | D::Real | D::Decimal(_) | D::Numeric(_) => {
                        Ty::Double
                    }
                    D::Varchar(_) | D::Text | D::String(_) | D::Char(_) | D::CharVarying(_) => Ty::Str,
                    D::Timestamp(..) => Ty::Ts,
                    other => return err_at(span, format!("CAST to {other} is not supported")),
                };
                let cel = match (&t, &to) {
                    (a, b) if a == b => x,
                    (Ty::Int | Ty::Double | Ty::Str | Ty::Ts, Ty::Int | Ty::Ts) => format!("int({x})"),
                    (Ty::Int | Ty::Double | Ty::Str | Ty::Ts, Ty::Double) => format!("double({x})"),
                    (Ty::Int | Ty::Double | Ty::Bool | Ty::Ts, Ty::Str) => format!("string({x})"),
                    _ => return err_at(span, format!("CAST of a {} to {} is not supported", t.name(), to.name())),
                };
                (to, cel)
            }
            E::Function(f) => self.function(f, rel)?,
            E::Trim { trim_where, trim_what, expr, trim_characters: None } => {
                let x = self.string_arg("TRIM", expr, rel)?;
                let chars = match trim_what {
                    Some(w) => self.string_arg("TRIM", w, rel)?,
                    None => cel_str(" "),
                };
                let mode = match trim_where {
                    None | Some(ast::TrimWhereField::Both) => "both",
                    Some(ast::TrimWhereField::Leading) => "leading",
                    Some(ast::TrimWhereField::Trailing) => "trailing",
                };
                (Ty::Str, format!("trimChars({x}, {chars}, '{mode}')"))
            }
            E::Substring { expr, substring_from, substring_for, .. } => {
                let x = self.string_arg("SUBSTRING", expr, rel)?;
                let from = match substring_from {
                    Some(f) => self.int_arg("SUBSTRING", f, rel)?,
                    None => "1".to_owned(),
                };
                let len = match substring_for {
                    Some(l) => self.int_arg("SUBSTRING", l, rel)?,
                    None => i64::MAX.to_string(),
                };
                (Ty::Str, format!("substr({x}, {from}, {len})"))
            }
            E::Position { expr, r#in } => {
                let needle = self.string_arg("POSITION", expr, rel)?;
                let hay = self.string_arg("POSITION", r#in, rel)?;
                (Ty::Int, format!("position({needle}, {hay})"))
            }
            other => return err_at(span, format!("{other}: this kind of expression is not supported")),
        })
    }

    /// A VARCHAR argument of a string function, as CEL.
    fn string_arg(&self, name: &str, e: &ast::Expr, rel: &Rel) -> Result<String, SqlError> {
        match self.expr(e, rel)? {
            (Ty::Str, x) => Ok(x),
            (t, _) => err_at(e.span(), format!("{name} needs a VARCHAR here, not a {}", t.name())),
        }
    }

    /// A BIGINT argument of a string function, as CEL.
    fn int_arg(&self, name: &str, e: &ast::Expr, rel: &Rel) -> Result<String, SqlError> {
        match self.expr(e, rel)? {
            (Ty::Int, x) => Ok(x),
            (t, _) => err_at(e.span(), format!("{name} needs a BIGINT here, not a {}", t.name())),
        }
    }

    /// `x IS NOT NULL`: the column is in the JSON and not null.
    fn present(&self, e: &ast::Expr, rel: &Rel) -> Result<String, SqlError> {
        let span = e.span();
        if let ast::Expr::Nested(inner) = e {
            return self.present(inner, rel);
        }
        let Some(idents) = idents_of(e) else {
            return err_at(span, format!("IS [NOT] NULL of {e}: only of a column"));
        };
        let (_, cel, path, _) = self.column(&idents, rel, span)?;
        if !path {
            return err_at(span, format!("IS [NOT] NULL of {e}: only of a column read from the input"));
        }
        Ok(format!("{} && {cel} != null", has_chain(&cel)))
    }

    /// Two operands of a comparison made one type (an integer beside a double is widened).
    fn unify(&self, ta: &Ty, a: &str, tb: &Ty, b: &str, span: Span) -> Result<(String, String), SqlError> {
        let intish = |t: &Ty| matches!(t, Ty::Int | Ty::Ts);
        Ok(match (ta, tb) {
            (x, y) if x == y => (a.into(), b.into()),
            (x, y) if intish(x) && intish(y) => (a.into(), b.into()),
            (x, Ty::Double) if intish(x) => (format!("double({a})"), b.into()),
            (Ty::Double, y) if intish(y) => (a.into(), format!("double({b})")),
            _ => return err_at(span, format!("cannot compare a {} with a {}", ta.name(), tb.name())),
        })
    }

    fn join_ty(&self, acc: Option<Ty>, t: &Ty, span: Span) -> Result<Ty, SqlError> {
        Ok(match (acc, t) {
            (None, t) => t.clone(),
            (Some(Ty::Null), t) => t.clone(),
            (Some(a), Ty::Null) => a,
            (Some(a), t) if a == *t => a,
            (Some(Ty::Int), Ty::Double) | (Some(Ty::Double), Ty::Int) => Ty::Double,
            (Some(a), t) => return err_at(span, format!("CASE results are a {} and a {}", a.name(), t.name())),
        })
    }

    fn arith(
        &self,
        op: &ast::BinaryOperator,
        tl: &Ty,
        l: String,
        tr: &Ty,
        r: String,
        span: Span,
    ) -> Result<(Ty, String), SqlError> {
        use ast::BinaryOperator as B;
        let o = match op {
            B::Plus => "+",
            B::Minus => "-",
            B::Multiply => "*",
            B::Divide => "/",
            _ => "%",
        };
        let ty = match (tl, tr, op) {
            (Ty::Ts, Ty::Interval, B::Plus | B::Minus) | (Ty::Interval, Ty::Ts, B::Plus) => Ty::Ts,
            (Ty::Ts, Ty::Ts, B::Minus) => Ty::Int,
            (Ty::Interval, Ty::Interval, B::Plus | B::Minus) => Ty::Interval,
            (Ty::Int, Ty::Int, _) => Ty::Int,
            (Ty::Int | Ty::Double, Ty::Int | Ty::Double, B::Modulo) => return err_at(span, "% (MOD) needs integers"),
            (Ty::Int | Ty::Double, Ty::Int | Ty::Double, _) => Ty::Double,
            _ => return err_at(span, format!("{op} of a {} and a {} is not supported", tl.name(), tr.name())),
        };
        let w = |t: &Ty, c: String| if ty == Ty::Double && *t == Ty::Int { format!("double({c})") } else { c };
        Ok((ty.clone(), format!("{} {o} {}", w(tl, l), w(tr, r))))
    }

    fn function(&self, f: &ast::Function, rel: &Rel) -> Result<(Ty, String), SqlError> {
        let name = fname(f);
        let span = f.span();
        if f.over.is_some() {
            return err_at(span, format!("{name}() OVER is supported as RANK() OVER (PARTITION BY window_start … ORDER BY …) in a subquery filtered by rank"));
        }
        if f.filter.is_some() {
            return err_at(span, format!("{name}(…) FILTER is not supported"));
        }
        if is_aggregate(&name) {
            return err_at(
                span,
                format!("{name}() outside an aggregating query (add GROUP BY, or use it in the SELECT of one)"),
            );
        }
        let args = args_of(f)?;
        let typed: Vec<(Ty, String)> = args.iter().map(|a| self.expr(a, rel)).collect::<Result<_, _>>()?;
        let arity = |n: usize| -> Result<(), SqlError> {
            if typed.len() == n {
                Ok(())
            } else {
                err_at(span, format!("{name} takes {n} argument{}", if n == 1 { "" } else { "s" }))
            }
        };
        Ok(match name.as_str() {
            "MOD" => {
                arity(2)?;
                if typed.iter().any(|(t, _)| *t != Ty::Int) {
                    return err_at(span, "MOD needs integers");
                }
                (Ty::Int, format!("({} % {})", typed[0].1, typed[1].1))
            }
            "ABS" => {
                arity(1)?;
                let (t, x) = &typed[0];
                let zero = match t {
                    Ty::Int => "0",
                    Ty::Double => "0.0",
                    _ => return err_at(span, format!("ABS of a {}", t.name())),
                };
                (t.clone(), format!("({x} < {zero} ? -({x}) : {x})"))
            }
            "CHAR_LENGTH" | "CHARACTER_LENGTH" | "LENGTH" => {
                arity(1)?;
                if typed[0].0 != Ty::Str {
                    return err_at(span, format!("{name} needs a VARCHAR"));
                }
                (Ty::Int, format!("size({})", typed[0].1))
            }
            "CONCAT" => {
                if typed.is_empty() {
                    return err_at(span, "CONCAT needs arguments");
                }
                let parts: Vec<String> =
                    typed.iter().map(|(t, c)| if *t == Ty::Str { c.clone() } else { format!("string({c})") }).collect();
                (Ty::Str, format!("({})", parts.join(" + ")))
            }
            "COALESCE" => {
                if args.len() < 2 {
                    return err_at(span, "COALESCE needs two or more arguments");
                }
                let mut ty = None;
                for ((t, _), a) in typed.iter().zip(&args) {
                    ty = Some(self.join_ty(ty, t, a.span())?);
                }
                let ty = ty.unwrap_or(Ty::Null);
                let mut out = typed.last().map(|(_, c)| c.clone()).unwrap_or_default();
                for (a, (_, c)) in args.iter().zip(&typed).rev().skip(1) {
                    out = format!("({} ? {c} : {out})", self.present(a, rel)?);
                }
                (ty, out)
            }
            "UPPER" | "LOWER" | "LTRIM" | "RTRIM" => {
                arity(1)?;
                if typed[0].0 != Ty::Str {
                    return err_at(span, format!("{name} needs a VARCHAR"));
                }
                let x = &typed[0].1;
                let cel = match name.as_str() {
                    "UPPER" => format!("upper({x})"),
                    "LOWER" => format!("lower({x})"),
                    "LTRIM" => format!("trimChars({x}, ' ', 'leading')"),
                    _ => format!("trimChars({x}, ' ', 'trailing')"),
                };
                (Ty::Str, cel)
            }
            "REPLACE" => {
                arity(3)?;
                if typed.iter().any(|(t, _)| *t != Ty::Str) {
                    return err_at(span, "REPLACE needs three VARCHARs");
                }
                (Ty::Str, format!("replaceAll({}, {}, {})", typed[0].1, typed[1].1, typed[2].1))
            }
            "STARTS_WITH" | "ENDS_WITH" => {
                arity(2)?;
                let m = if name == "STARTS_WITH" { "startsWith" } else { "endsWith" };
                (Ty::Bool, format!("{}.{m}({})", typed[0].1, typed[1].1))
            }
            _ => return err_at(span, format!("unsupported function {name} (docs/SQL.md lists the functions)")),
        })
    }
}

/// Replaces group keys, window edges and aggregate calls of a SELECT/HAVING expression by the
/// synthetic columns of the aggregate's results.
struct Subst<'a, 'p> {
    planner: &'a Planner<'p>,
    input: &'a Rel,
    keys: &'a [(ast::Expr, String, String)],
    aggs: &'a [(ast::Expr, String)],
}

impl ast::VisitorMut for Subst<'_, '_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut ast::Expr) -> std::ops::ControlFlow<()> {
        let span = e.span();
        let ident = |name: &str| ast::Expr::Identifier(ast::Ident::with_span(span, name));
        if let Some((_, name)) = self.aggs.iter().find(|(a, _)| a == e) {
            *e = ident(name);
            return std::ops::ControlFlow::Continue(());
        }
        if let Some((_, _, name)) = self.keys.iter().find(|(k, _, _)| k == e) {
            *e = ident(name);
            return std::ops::ControlFlow::Continue(());
        }
        match e {
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                if let Ok((_, cel)) = self.planner.expr(e, self.input) {
                    if let Some((_, _, name)) = self.keys.iter().find(|(_, c, _)| *c == cel) {
                        *e = ident(name);
                    }
                }
            }
            ast::Expr::Function(f) => {
                let n = fname(f);
                if let Some(edge) = n.strip_prefix("TUMBLE_").or(n.strip_prefix("HOP_")).or(n.strip_prefix("SESSION_"))
                {
                    match edge {
                        "START" => *e = ident("window_start"),
                        "END" => *e = ident("window_end"),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    }
}

fn map_literal(entries: &[(String, String)]) -> String {
    let fields: Vec<String> = entries.iter().map(|(k, v)| format!("{}: {v}", cel_str(k))).collect();
    format!("{{{}}}", fields.join(", "))
}

fn window_step(window: Window, output: WindowOutput) -> StepSpec {
    StepSpec::Window(WindowYaml {
        window,
        end_field: None,
        output,
        allowed_lateness_ms: 0,
        out_of_orderness_ms: None,
        early_updates: false,
        max_open_windows: 1_000_000,
    })
}

fn unavailable(name: &str, why: &str) -> Col {
    Col { qual: None, name: name.into(), ty: Ty::Null, cel: String::new(), path: false, edge: None }.note(why)
}

impl Col {
    /// A column that cannot be read here; `cel` holds why (with a NUL in front).
    fn note(mut self, why: &str) -> Col {
        self.cel = format!("\0{why}");
        self
    }
    fn with_qual(mut self, q: Option<String>) -> Col {
        self.qual = q;
        self
    }
    fn missing(&self) -> Option<&str> {
        self.cel.strip_prefix('\0').or(self.cel.is_empty().then_some("not available here"))
    }
}

impl<'s> Planner<'s> {
    fn plan_query(&mut self, q: &ast::Query) -> Result<Rel, SqlError> {
        let saved = self.ctes.len();
        if let Some(w) = &q.with {
            if w.recursive {
                return err_at(q.span(), "WITH RECURSIVE is not supported");
            }
            for cte in &w.cte_tables {
                self.ctes.push((cte.alias.name.value.clone(), cte.query.clone()));
            }
        }
        if let Some(o) = &q.order_by {
            return err_at(
                o.span(),
                "ORDER BY over a stream never ends: rank within windows (RANK() OVER (PARTITION BY window_start … ORDER BY …))",
            );
        }
        if let Some(l) = &q.limit_clause {
            return err_at(l.span(), "LIMIT is for ad-hoc queries (weir sql \"SELECT … LIMIT n\"), not pipelines");
        }
        if q.fetch.is_some() || !q.locks.is_empty() {
            return err_at(q.span(), "FETCH / FOR UPDATE are not supported");
        }
        let rel = match q.body.as_ref() {
            ast::SetExpr::Select(s) => self.plan_select(s),
            ast::SetExpr::Query(inner) => self.plan_query(inner),
            other => err_at(
                other.span(),
                format!("{}: only SELECT queries are supported (no UNION, VALUES, …)", first_word(&other.to_string())),
            ),
        };
        self.ctes.truncate(saved);
        rel
    }

    fn plan_select(&mut self, s: &ast::Select) -> Result<Rel, SqlError> {
        let span = s.span();
        let distinct = match &s.distinct {
            None => false,
            Some(ast::Distinct::Distinct) => true,
            Some(other) => return err_at(span, format!("{other} is not supported")),
        };
        let unsupported = [
            (s.top.is_some(), "TOP"),
            (s.into.is_some(), "SELECT INTO"),
            (!s.lateral_views.is_empty(), "LATERAL VIEW"),
            (s.prewhere.is_some(), "PREWHERE"),
            (!s.connect_by.is_empty(), "CONNECT BY"),
            (!s.cluster_by.is_empty(), "CLUSTER BY"),
            (!s.distribute_by.is_empty(), "DISTRIBUTE BY"),
            (!s.sort_by.is_empty(), "SORT BY"),
            (!s.named_window.is_empty(), "WINDOW"),
            (s.qualify.is_some(), "QUALIFY"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return err_at(span, format!("{what} is not supported"));
        }
        let mut conj = Vec::new();
        if let Some(w) = &s.selection {
            conjuncts(w, &mut conj);
        }
        let mut rel = match s.from.as_slice() {
            [from] if from.joins.is_empty() => self.plan_factor(&from.relation)?,
            [from] => self.plan_join(from, &mut conj)?,
            [a, b] => self.plan_comma_join(a, b, &mut conj)?,
            _ => {
                return err_at(
                    span,
                    "a query reads one FROM item, or two joined (JOIN … ON, or FROM a, b WHERE a.k = b.k)",
                )
            }
        };
        if rel.rank.is_some() {
            rel = self.apply_rank(rel, &mut conj)?;
        }
        for c in &conj {
            if has_aggregate(c) {
                return err_at(c.span(), "an aggregate in WHERE: filter aggregates with HAVING");
            }
            let (t, cel) = self.expr(c, &rel)?;
            if t != Ty::Bool {
                return err_at(c.span(), format!("WHERE {c} is a {}, not a BOOLEAN", t.name()));
            }
            rel.steps.push(StepSpec::Filter(cel));
        }
        let grouped = match &s.group_by {
            ast::GroupByExpr::Expressions(v, mods) if mods.is_empty() => v.clone(),
            other => return err_at(span, format!("{other} is not supported")),
        };
        let aggregating = !grouped.is_empty()
            || s.having.is_some()
            || s.projection.iter().any(|i| match i {
                ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
                _ => false,
            });
        if aggregating {
            return self.plan_aggregate(s, rel, &grouped);
        }
        let rel = self.project(&s.projection, rel)?;
        if distinct {
            return self.distinct(rel, span);
        }
        Ok(rel)
    }

    /// SELECT DISTINCT over rows of windows: a dedup of the selected columns within a window.
    fn distinct(&self, mut rel: Rel, span: Span) -> Result<Rel, SqlError> {
        let horizon = match rel.windowed {
            Some(Window::Tumbling { size_ms }) => size_ms,
            Some(Window::Sliding { size_ms, .. }) => size_ms,
            _ => {
                return err_at(
                    span,
                    "SELECT DISTINCT over an unbounded stream would remember every row: use it over the rows of a \
                     window (a window join, a window TVF's GROUP BY)",
                )
            }
        };
        let mut parts = Vec::new();
        for c in rel.cols.iter().filter(|c| !c.name.starts_with("__")) {
            if let Some(why) = c.missing() {
                return err_at(span, format!("DISTINCT: column {} cannot be used here: {why}", c.name));
            }
            parts.push((c.ty.clone(), c.cel.clone()));
        }
        // Every row of one window is within its size of the window's first row.
        rel.steps.push(StepSpec::KeyBy(key_cel(&parts)));
        rel.steps
            .push(StepSpec::Dedup(crate::yaml::DedupSpec { horizon: format!("{horizon}ms"), max_keys: 1_000_000 }));
        rel.stateless = false;
        Ok(rel)
    }

    /// The SELECT list over a relation: new columns (no step; they are CEL over the event).
    fn project(&mut self, items: &[ast::SelectItem], rel: Rel) -> Result<Rel, SqlError> {
        let mut cols: Vec<Col> = Vec::new();
        let mut rank = None;
        for (i, item) in items.iter().enumerate() {
            let (e, alias) = match item {
                ast::SelectItem::Wildcard(_) => {
                    cols.extend(
                        rel.cols.iter().filter(|c| !c.name.starts_with("__")).cloned().map(|c| Col { qual: None, ..c }),
                    );
                    continue;
                }
                ast::SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                    let q = n.to_string();
                    let before = cols.len();
                    cols.extend(
                        rel.cols
                            .iter()
                            .filter(|c| c.qual.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(&q)))
                            .cloned()
                            .map(|c| Col { qual: None, ..c }),
                    );
                    if cols.len() == before {
                        return err_at(item.span(), format!("{q}.*: no table {q} here"));
                    }
                    continue;
                }
                ast::SelectItem::UnnamedExpr(e) => (e, None),
                ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                other => return err_at(other.span(), format!("{other}: not supported")),
            };
            if let ast::Expr::Function(f) = e {
                if f.over.is_some() {
                    let alias = alias.clone().unwrap_or_else(|| "rank".into());
                    let mut r = rank_of(f, alias.clone())?;
                    // The partition and order are of this SELECT's input: carried as hidden
                    // columns to the query around it, which plans the Top-N.
                    let mut hidden = Vec::new();
                    for (j, p) in r.partition.iter().enumerate() {
                        hidden.push((format!("__rp{j}"), p.clone()));
                    }
                    hidden.push(("__rby".to_owned(), r.order.clone()));
                    for (name, e) in &hidden {
                        cols.push(self.select_col(e, &rel, name.clone(), false)?);
                    }
                    let ident = |n: &str| ast::Expr::Identifier(ast::Ident::with_span(r.span, n));
                    r.partition = (0..r.partition.len()).map(|j| ident(&format!("__rp{j}"))).collect();
                    r.order = ident("__rby");
                    rank = Some(Box::new(r));
                    cols.push(unavailable(&alias, "the rank is known after the outer WHERE rank <= N"));
                    continue;
                }
            }
            let name = alias.or_else(|| name_of(e)).unwrap_or_else(|| format!("EXPR${i}"));
            let col = self.select_col(e, &rel, name, true)?;
            cols.push(col);
        }
        for (i, c) in cols.iter().enumerate() {
            if cols[..i].iter().any(|d| d.name.eq_ignore_ascii_case(&c.name)) {
                return err_at(
                    items.first().map(|i| i.span()).unwrap_or(Span::empty()),
                    format!("column {} is selected twice: give one an alias", c.name),
                );
            }
        }
        Ok(Rel { cols, rank, ..rel })
    }

    /// A SELECT item as a column: a column reference keeps what it is (a path, a window edge),
    /// anything else is an expression. `strict`: a column that cannot be read here is an error
    /// now (a window TVF's edges pass, for the GROUP BY or Top-N around them).
    fn select_col(&self, e: &ast::Expr, rel: &Rel, name: String, strict: bool) -> Result<Col, SqlError> {
        let Some(idents) = idents_of(e) else {
            let (ty, cel) = self.expr(e, rel)?;
            return Ok(Col { qual: None, name, ty, cel, path: false, edge: None });
        };
        let (c, used) = self.find_col(rel, &idents, e.span())?;
        if let (true, Some(why), None) = (strict, c.missing(), c.edge) {
            return err_at(e.span(), format!("column {} cannot be used here: {why}", c.name));
        }
        if used == idents.len() {
            return Ok(Col { qual: None, name, ..c });
        }
        let (ty, cel, path, edge) = self.column(&idents, rel, e.span())?;
        Ok(Col { qual: None, name, ty, cel, path, edge })
    }

    /// `WHERE rank <= N` over a ranked relation: a top-N window step.
    fn apply_rank(&mut self, mut rel: Rel, conj: &mut Vec<ast::Expr>) -> Result<Rel, SqlError> {
        let rank = rel.rank.take().expect("a ranked relation");
        let is_rank = |e: &ast::Expr| name_of(e).is_some_and(|n| n.eq_ignore_ascii_case(&rank.alias));
        let lit = |e: &ast::Expr| match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n.parse::<usize>().ok(),
                _ => None,
            },
            _ => None,
        };
        let mut n = None;
        conj.retain(|c| {
            use ast::BinaryOperator as B;
            let found = match c {
                ast::Expr::BinaryOp { left, op, right } if is_rank(left) => match (op, lit(right)) {
                    (B::LtEq, Some(k)) => Some(k),
                    (B::Lt, Some(k)) => Some(k.saturating_sub(1)),
                    (B::Eq, Some(1)) => Some(1),
                    _ => None,
                },
                ast::Expr::BinaryOp { left, op, right } if is_rank(right) => match (op, lit(left)) {
                    (B::GtEq, Some(k)) => Some(k),
                    (B::Gt, Some(k)) => Some(k.saturating_sub(1)),
                    (B::Eq, Some(1)) => Some(1),
                    _ => None,
                },
                _ => None,
            };
            if found.is_some() && n.is_none() {
                n = found;
                return false;
            }
            true
        });
        let Some(n) = n.filter(|n| *n >= 1) else {
            return err_at(
                rank.span,
                format!(
                    "RANK() is planned as window Top-N: filter it with WHERE {} <= N (N ≥ 1) in the query around it",
                    rank.alias
                ),
            );
        };
        let window =
            match (rel.tvf, rel.windowed) {
                (Some(w), _) => w,
                (None, Some(Window::Tumbling { size_ms })) => Window::Tumbling { size_ms },
                // Every result of one sliding window has the time window_end - 1, and the ends
                // are multiples of the slide: one tumbling window of the slide holds them.
                (None, Some(Window::Sliding { slide_ms, .. })) => Window::Tumbling { size_ms: slide_ms },
                _ => return err_at(
                    rank.span,
                    "RANK() ranks within windows: over a window TVF (TUMBLE/HOP) or the results of a GROUP BY over one",
                ),
            };
        // The partition: window edges (required) and other columns (the key).
        let mut edges = Vec::new();
        let mut keys = Vec::new();
        for p in &rank.partition {
            let edge = match idents_of(p) {
                Some(idents) => self.find_col(&rel, &idents, p.span())?.0.edge,
                None => None,
            };
            match edge {
                Some(e) => edges.push(e),
                None => keys.push(self.expr(p, &rel)?),
            }
        }
        if edges.is_empty() {
            return err_at(rank.span, "RANK() must be PARTITION BY window_start (and/or window_end): window Top-N");
        }
        let (by_ty, by) = self.expr(&rank.order, &rel)?;
        if !matches!(by_ty, Ty::Int | Ty::Double | Ty::Ts) {
            return err_at(
                rank.order.span(),
                format!("RANK() orders by a number; {} is a {}", rank.order, by_ty.name()),
            );
        }
        let mut entries = Vec::new();
        let mut out = Vec::new();
        for (i, c) in rel.cols.iter().enumerate() {
            if c.name.eq_ignore_ascii_case(&rank.alias) && c.missing().is_some() {
                out.push(Col { ty: Ty::Int, cel: "event.rank".into(), path: false, edge: None, ..c.clone() });
                continue;
            }
            if rel.tvf.is_some() && c.edge.is_some() && c.missing().is_some() {
                let cel = if c.edge == Some(Edge::Start) { "event.window_start" } else { "event.window_end" };
                out.push(Col { ty: Ty::Ts, cel: cel.into(), path: true, ..c.clone() });
                continue;
            }
            if let Some(why) = c.missing() {
                out.push(c.clone().note(why));
                continue;
            }
            let f = format!("c{i}");
            entries.push((f.clone(), c.cel.clone()));
            out.push(Col { cel: field("event", &f), path: true, ..c.clone() });
        }
        entries.push(("by".into(), by));
        for (j, (_, k)) in keys.iter().enumerate() {
            entries.push((format!("k{j}"), k.clone()));
        }
        let key_parts: Vec<(Ty, String)> =
            keys.iter().enumerate().map(|(j, (t, _))| (t.clone(), format!("event.k{j}"))).collect();
        rel.steps.push(StepSpec::Map(map_literal(&entries)));
        rel.steps.push(StepSpec::KeyBy(key_cel(&key_parts)));
        rel.steps.push(window_step(window, WindowOutput::TopN { n, by: "by".into(), descending: rank.descending }));
        Ok(Rel { steps: rel.steps, cols: out, windowed: Some(window), source: rel.source, ..Rel::default() })
    }

    /// A FROM item.
    fn plan_factor(&mut self, f: &ast::TableFactor) -> Result<Rel, SqlError> {
        let span = f.span();
        let (mut rel, alias) = match f {
            ast::TableFactor::Table { name, alias, args, with_hints, version, partitions, sample, .. } => {
                if !with_hints.is_empty() || version.is_some() || !partitions.is_empty() || sample.is_some() {
                    return err_at(span, format!("{f}: table modifiers are not supported"));
                }
                let n = name.to_string();
                match args {
                    Some(a) => {
                        let list: Vec<&ast::Expr> = a
                            .args
                            .iter()
                            .map(|x| match x {
                                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                                other => err_at(span, format!("{n}: argument {other} is not supported")),
                            })
                            .collect::<Result<_, _>>()?;
                        (self.tvf(&n, &list, span)?, alias.as_ref())
                    }
                    None => (self.named(&n, span)?, alias.as_ref()),
                }
            }
            ast::TableFactor::TableFunction { expr: ast::Expr::Function(func), alias } => {
                let n = func.name.to_string();
                (self.tvf(&n, &args_of(func)?, span)?, alias.as_ref())
            }
            ast::TableFactor::Derived { lateral: false, subquery, alias, sample: None } => {
                (self.plan_query(subquery)?, alias.as_ref())
            }
            other => return err_at(span, format!("FROM {other}: not supported")),
        };
        if let Some(a) = alias {
            if !a.columns.is_empty() {
                return err_at(span, "column aliases in FROM are not supported");
            }
            rel = requalify(rel, &a.name.value);
        }
        Ok(rel)
    }

    /// A source, view or WITH query by name.
    fn named(&mut self, name: &str, span: Span) -> Result<Rel, SqlError> {
        let eq = |a: &str| a.eq_ignore_ascii_case(name);
        if let Some((_, q)) = self.ctes.iter().rev().find(|(n, _)| eq(n)).cloned() {
            return Ok(requalify(self.plan_query(&q)?, name));
        }
        if let Some((_, q)) = self.script.views.iter().find(|(n, _)| eq(n)) {
            return Ok(requalify(self.plan_query(q)?, name));
        }
        if let Some(i) = self.script.sources.iter().position(|s| eq(&s.name)) {
            return self.source_rel(i);
        }
        let known: Vec<&str> = self
            .script
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.script.views.iter().map(|(n, _)| n.as_str()))
            .collect();
        err_at(span, format!("unknown table {name} (sources and views: {})", known.join(", ")))
    }

    /// TUMBLE(t, DESCRIPTOR(time), size), HOP(t, DESCRIPTOR(time), slide, size),
    /// SESSION(t, DESCRIPTOR(time), gap).
    fn tvf(&mut self, name: &str, args: &[&ast::Expr], span: Span) -> Result<Rel, SqlError> {
        let kind = name.to_ascii_uppercase();
        if kind == AS_OF {
            // `t FOR SYSTEM_TIME AS OF x`, as `tokens` rewrote it.
            let [ast::Expr::Identifier(table), x] = args else {
                return err_at(span, "FOR SYSTEM_TIME AS OF follows a table's name and is followed by a column");
            };
            let mut rel = self.named(&table.value, table.span)?;
            if !rel.stateless || rel.tvf.is_some() || rel.windowed.is_some() {
                return err_at(
                    table.span,
                    format!(
                        "{}: a temporal join's table is a source or a view of it (filters and columns only)",
                        table.value
                    ),
                );
            }
            rel.as_of = Some((*x).clone());
            return Ok(rel);
        }
        if !matches!(kind.as_str(), "TUMBLE" | "HOP" | "SESSION") {
            return err_at(span, format!("unsupported table function {name} (TUMBLE, HOP, SESSION)"));
        }
        let Some(ast::Expr::Identifier(table)) = args.first() else {
            return err_at(span, format!("{kind}(TABLE t, DESCRIPTOR(time), …): the first argument is a table"));
        };
        let rel = self.named(&table.value, table.span)?;
        if rel.tvf.is_some() || rel.windowed.is_some() || rel.rank.is_some() {
            return err_at(
                table.span,
                format!("{kind} over {}: a window over windowed rows is not supported", table.value),
            );
        }
        let Some(time) = args.get(1) else { return err_at(span, format!("{kind} needs DESCRIPTOR(time column)")) };
        let time_col = match time {
            ast::Expr::Function(f) if fname(f) == "DESCRIPTOR" => match args_of(f)?.as_slice() {
                [c] => (*c).clone(),
                _ => return err_at(time.span(), "DESCRIPTOR(one column)"),
            },
            other => (*other).clone(),
        };
        self.check_time_attribute(&time_col, &rel)?;
        let ms = |i: usize| -> Result<i64, SqlError> {
            match args.get(i) {
                Some(e) => match interval_ms(e) {
                    Some(v) if v > 0 => Ok(v),
                    _ => err_at(e.span(), format!("{e}: a positive INTERVAL, e.g. INTERVAL '10' SECOND")),
                },
                None => err_at(span, format!("{kind} is missing an INTERVAL argument")),
            }
        };
        let (window, want) = match kind.as_str() {
            "TUMBLE" => (Window::Tumbling { size_ms: ms(2)? }, 3),
            "HOP" => (Window::Sliding { slide_ms: ms(2)?, size_ms: ms(3)? }, 4),
            _ => (Window::Session { gap_ms: ms(2)? }, 3),
        };
        if args.len() > want {
            return err_at(args[want].span(), format!("{kind}: an offset argument is not supported"));
        }
        if let Err(e) = window.validate() {
            return err_at(span, format!("{kind}: {e}"));
        }
        let mut rel = rel;
        rel.tvf = Some(window);
        let why = "window_start/window_end are known after GROUP BY window_start, window_end or a window Top-N";
        for (n, edge) in [("window_start", Edge::Start), ("window_end", Edge::End)] {
            let mut c = unavailable(n, why);
            c.ty = Ty::Ts;
            c.edge = Some(edge);
            rel.cols.push(c);
        }
        Ok(rel)
    }

    /// Windows are over the source's event time: the column of its WATERMARK.
    fn check_time_attribute(&self, e: &ast::Expr, rel: &Rel) -> Result<(), SqlError> {
        let span = e.span();
        if rel.time.is_some() {
            let (_, cel) = self.expr(e, rel)?;
            if Some(&cel) == rel.time.as_ref() {
                return Ok(());
            }
        }
        let Some(src) = rel.source.map(|i| self.source_def(i)) else {
            return err_at(
                span,
                format!("{e} is not the event time of these joined rows: a window over joined rows is over the time of the left side of a temporal join, or of the later side of an interval join"),
            );
        };
        let Some((wcol, _, _)) = &src.watermark else {
            return err_at(
                span,
                format!(
                    "a window needs event time: declare WATERMARK FOR <column> AS <column> - INTERVAL '…' SECOND in \
                     CREATE SOURCE {}",
                    src.name
                ),
            );
        };
        let (_, cel) = self.expr(e, rel)?;
        if Some(&cel) != self.time_of_rel(rel) {
            return err_at(span, format!("{e} is not the event time of {} (its WATERMARK is for {wcol})", src.name));
        }
        Ok(())
    }
}

/// `RANK() OVER (PARTITION BY … ORDER BY x [DESC])` as a rank still to be filtered.
fn rank_of(f: &ast::Function, alias: String) -> Result<Rank, SqlError> {
    let span = f.span();
    let name = fname(f);
    if name != "RANK" {
        return err_at(
            span,
            format!(
                "{name}() OVER is not supported: window Top-N keeps ties, which is RANK() (ROW_NUMBER would drop them)"
            ),
        );
    }
    let Some(ast::WindowType::WindowSpec(w)) = &f.over else {
        return err_at(span, "RANK() OVER a named window is not supported");
    };
    if w.window_frame.is_some() {
        return err_at(span, "a window frame for RANK() is not supported");
    }
    let [order] = w.order_by.as_slice() else {
        return err_at(span, "RANK() needs ORDER BY one column");
    };
    let descending = matches!(order.options.sort, Some(ast::OrderBySort::Desc));
    Ok(Rank { alias, partition: w.partition_by.clone(), order: order.expr.clone(), descending, span })
}

/// The relation's columns, all qualified by `name` (a view's, a WITH query's, an alias).
fn requalify(mut rel: Rel, name: &str) -> Rel {
    for c in &mut rel.cols {
        c.qual = Some(name.to_owned());
    }
    rel
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or_default().to_owned()
}

impl<'s> Planner<'s> {
    /// GROUP BY (over a window TVF, a legacy group window, or the whole bounded input): key_by,
    /// a map of the aggregates' arguments, and a window step; then HAVING and the SELECT list
    /// over its results.
    fn plan_aggregate(&mut self, s: &ast::Select, mut rel: Rel, grouped: &[ast::Expr]) -> Result<Rel, SqlError> {
        let span = s.span();
        if rel.rank.is_some() {
            return err_at(span, "GROUP BY over ranked rows is not supported");
        }
        let mut window = rel.tvf;
        let mut edges = Vec::new();
        let mut keys: Vec<(ast::Expr, Ty, String)> = Vec::new();
        for g in grouped {
            if let Some(idents) = idents_of(g) {
                let (c, used) = self.find_col(&rel, &idents, g.span())?;
                if let (Some(e), true) = (c.edge, used == idents.len()) {
                    edges.push(e);
                    continue;
                }
            }
            if let ast::Expr::Function(f) = g {
                let n = fname(f);
                if matches!(n.as_str(), "TUMBLE" | "HOP" | "SESSION") {
                    if rel.tvf.is_some() || window.is_some() {
                        return err_at(g.span(), "one window per GROUP BY");
                    }
                    // Flink's group windows: TUMBLE(time, size), HOP(time, slide, size), SESSION(time, gap).
                    let a = args_of(f)?;
                    let Some(time) = a.first() else { return err_at(g.span(), format!("{n}(time, INTERVAL …)")) };
                    self.check_time_attribute(time, &rel)?;
                    let ms = |i: usize| a.get(i).and_then(|e| interval_ms(e)).filter(|v| *v > 0);
                    let w = match (n.as_str(), ms(1), ms(2), a.len()) {
                        ("TUMBLE", Some(size), None, 2) => Window::Tumbling { size_ms: size },
                        ("HOP", Some(slide), Some(size), 3) => Window::Sliding { slide_ms: slide, size_ms: size },
                        ("SESSION", Some(gap), None, 2) => Window::Session { gap_ms: gap },
                        _ => {
                            return err_at(
                                g.span(),
                                format!(
                                "{n}: TUMBLE(time, size), HOP(time, slide, size) or SESSION(time, gap), with INTERVALs"
                            ),
                            )
                        }
                    };
                    if let Err(e) = w.validate() {
                        return err_at(g.span(), format!("{n}: {e}"));
                    }
                    window = Some(w);
                    edges.extend([Edge::Start, Edge::End]);
                    continue;
                }
            }
            if has_aggregate(g) {
                return err_at(g.span(), "GROUP BY an aggregate");
            }
            let (ty, cel) = self.expr(g, &rel)?;
            keys.push((g.clone(), ty, cel));
        }
        if rel.tvf.is_some() && !edges.contains(&Edge::Start) && !edges.contains(&Edge::End) {
            return err_at(span, "GROUP BY over a window TVF needs window_start and window_end among its columns");
        }
        if rel.windowed.is_some() && window.is_some() {
            return err_at(
                span,
                "a windowed GROUP BY over the results of another windowed GROUP BY is not supported yet",
            );
        }
        // Over rows of a join bounded by a column of one side, a group that includes the join
        // key is complete once the watermark passes the bound: it closes there (Nexmark q4).
        let until = match (window, &rel.until) {
            (None, Some(u)) if keys.iter().any(|(_, _, cel)| u.keys.contains(cel)) => Some(u.bound.clone()),
            _ => None,
        };
        let window = match until {
            Some(_) => Window::Until,
            None => window.unwrap_or(Window::Global),
        };
        // The aggregates of the SELECT list and HAVING, each once.
        let mut aggs: Vec<(ast::Expr, String, Aggregate, Option<String>, Ty)> = Vec::new();
        let mut found = Vec::new();
        let mut collect = |e: &ast::Expr| {
            let _ = ast::visit_expressions(e, |x| {
                if let ast::Expr::Function(f) = x {
                    if is_aggregate(&fname(f)) && f.over.is_none() {
                        found.push(x.clone());
                    }
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        };
        for item in &s.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => collect(e),
                other => return err_at(other.span(), format!("{other} in an aggregating query: name the columns")),
            }
        }
        if let Some(h) = &s.having {
            collect(h);
        }
        let mut entries: Vec<(String, String)> = Vec::new();
        for x in found {
            if aggs.iter().any(|(a, ..)| *a == x) {
                continue;
            }
            let ast::Expr::Function(f) = &x else { continue };
            let n = fname(f);
            let distinct = matches!(&f.args, ast::FunctionArguments::List(l) if l.duplicate_treatment == Some(ast::DuplicateTreatment::Distinct));
            let star = matches!(&f.args, ast::FunctionArguments::List(l) if matches!(l.args.as_slice(), [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]));
            let name = format!("agg{}", aggs.len());
            let (kind, arg_ty) = if n == "COUNT" && star {
                (Aggregate::Count, None)
            } else {
                let a = match &f.args {
                    ast::FunctionArguments::List(l) => match l.args.as_slice() {
                        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] if l.clauses.is_empty() => e,
                        _ => return err_at(f.span(), format!("{n} takes one argument")),
                    },
                    _ => return err_at(f.span(), format!("{n} takes one argument")),
                };
                if has_aggregate(a) {
                    return err_at(a.span(), "an aggregate inside an aggregate");
                }
                let (ty, cel) = self.expr(a, &rel)?;
                let kind = match (n.as_str(), distinct) {
                    ("COUNT", true) => Aggregate::CountDistinct,
                    ("COUNT", false) => {
                        return err_at(f.span(), "COUNT(x) counts the rows where x is not NULL: write COUNT(*) with WHERE x IS NOT NULL, or COUNT(DISTINCT x)")
                    }
                    (_, true) => return err_at(f.span(), format!("{n}(DISTINCT …) is not supported")),
                    ("SUM", _) => Aggregate::Sum,
                    ("MIN", _) => Aggregate::Min,
                    ("MAX", _) => Aggregate::Max,
                    _ => Aggregate::Avg,
                };
                if kind != Aggregate::CountDistinct && !matches!(ty, Ty::Int | Ty::Double | Ty::Ts) {
                    return err_at(a.span(), format!("{n} of a {}: it needs a number", ty.name()));
                }
                entries.push((format!("a{}", aggs.len()), cel));
                (kind, Some(ty))
            };
            let ty = match (kind, arg_ty) {
                (Aggregate::Count | Aggregate::CountDistinct, _) => Ty::Int,
                (Aggregate::Avg, _) => Ty::Double,
                (_, Some(t)) => t,
                _ => Ty::Double,
            };
            let field = (kind != Aggregate::Count).then(|| format!("a{}", aggs.len()));
            aggs.push((x.clone(), name, kind, field, ty));
        }
        // Several group keys: the key is their text, and each is carried by a MAX aggregate.
        let mut key_cols: Vec<(ast::Expr, String, String, Ty, String)> = Vec::new();
        if keys.len() == 1 {
            let (g, ty, cel) = &keys[0];
            key_cols.push((g.clone(), cel.clone(), "__k0".into(), ty.clone(), from_key(ty, g.span())?));
        } else {
            for (j, (g, ty, cel)) in keys.iter().enumerate() {
                if !matches!(ty, Ty::Int | Ty::Ts) {
                    return err_at(g.span(), format!("GROUP BY several columns: {g} is a {}; only the first key may be a non-integer in this version", ty.name()));
                }
                let agg = format!("agg{}", aggs.len());
                entries.push((format!("g{j}"), cel.clone()));
                aggs.push((g.clone(), agg.clone(), Aggregate::Max, Some(format!("g{j}")), ty.clone()));
                key_cols.push((g.clone(), cel.clone(), format!("__k{j}"), ty.clone(), format!("int(event.{agg})")));
            }
        }
        let key_parts: Vec<(Ty, String)> = keys.iter().map(|(_, t, c)| (t.clone(), c.clone())).collect();
        rel.steps.push(StepSpec::KeyBy(key_cel(&key_parts)));
        if let Some(bound) = &until {
            entries.push(("__until".into(), bound.clone()));
        }
        if !entries.is_empty() {
            rel.steps.push(StepSpec::Map(map_literal(&entries)));
        }
        let mut outputs: Vec<(String, Aggregate, Option<String>)> =
            aggs.iter().map(|(_, n, k, f, _)| (n.clone(), *k, f.clone())).collect();
        if outputs.is_empty() {
            outputs.push(("agg0".into(), Aggregate::Count, None));
        }
        let mut step = window_step(window, WindowOutput::Aggregates(outputs));
        if let (StepSpec::Window(w), Some(_)) = (&mut step, &until) {
            w.end_field = Some("__until".into());
        }
        rel.steps.push(step);
        // The results: group keys, window edges and aggregates as columns.
        let mut post_cols: Vec<Col> = Vec::new();
        for c in &rel.cols {
            if c.edge.is_none() {
                post_cols.push(
                    unavailable(&c.name, "it is neither in GROUP BY nor in an aggregate").with_qual(c.qual.clone()),
                );
            }
        }
        for (_, _, name, ty, cel) in &key_cols {
            post_cols.push(Col {
                qual: None,
                name: name.clone(),
                ty: ty.clone(),
                cel: cel.clone(),
                path: false,
                edge: None,
            });
        }
        if window != Window::Global {
            post_cols.push(Col {
                qual: None,
                name: "window_start".into(),
                ty: Ty::Ts,
                cel: "event.window_start".into(),
                path: true,
                edge: Some(Edge::Start),
            });
            post_cols.push(Col {
                qual: None,
                name: "window_end".into(),
                ty: Ty::Ts,
                cel: "event.window_end".into(),
                path: true,
                edge: Some(Edge::End),
            });
        }
        for (_, name, _, _, ty) in &aggs {
            post_cols.push(Col {
                qual: None,
                name: format!("__{name}"),
                ty: ty.clone(),
                cel: field("event", name),
                path: true,
                edge: None,
            });
        }
        let post = Rel {
            steps: std::mem::take(&mut rel.steps),
            cols: post_cols,
            tvf: None,
            windowed: (window != Window::Global).then_some(window),
            ..Rel::default()
        };
        let key_subst: Vec<(ast::Expr, String, String)> =
            key_cols.iter().map(|(g, cel, n, _, _)| (g.clone(), cel.clone(), n.clone())).collect();
        let agg_subst: Vec<(ast::Expr, String)> = aggs.iter().map(|(e, n, ..)| (e.clone(), format!("__{n}"))).collect();
        let rewrite = |e: &ast::Expr| -> ast::Expr {
            let mut e = e.clone();
            let mut v = Subst { planner: self, input: &rel, keys: &key_subst, aggs: &agg_subst };
            let _ = ast::VisitMut::visit(&mut e, &mut v);
            e
        };
        let mut items = Vec::new();
        for item in &s.projection {
            items.push(match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let alias = name_of(e).map(|n| ast::Ident::with_span(e.span(), n));
                    match alias {
                        Some(alias) => ast::SelectItem::ExprWithAlias { expr: rewrite(e), alias },
                        None => ast::SelectItem::UnnamedExpr(rewrite(e)),
                    }
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    ast::SelectItem::ExprWithAlias { expr: rewrite(expr), alias: alias.clone() }
                }
                other => return err_at(other.span(), format!("{other}: not supported here")),
            });
        }
        let mut post = post;
        if let Some(h) = &s.having {
            let h = rewrite(h);
            let (t, cel) = self.expr(&h, &post)?;
            if t != Ty::Bool {
                return err_at(h.span(), "HAVING needs a BOOLEAN");
            }
            post.steps.push(StepSpec::Filter(cel));
        }
        self.project(&items, post)
    }
}

/// `event.…` → `<root>.…` outside string literals.
fn reroot(cel: &str, root: &str) -> String {
    let mut out = String::with_capacity(cel.len() + 8);
    let b = cel.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            in_str = c != b'"';
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        }
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.');
        if boundary && cel[i..].starts_with("event") && matches!(b.get(i + 5), Some(b'.' | b'[')) {
            out.push_str(root);
            i += 5;
            continue;
        }
        // Multi-byte characters are only in string literals (handled above) or copied whole.
        let ch = cel[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

impl<'s> Planner<'s> {
    /// `a JOIN b ON a.x = b.y`: a regular inner join of two stateless relations of the source
    /// (every pair, whichever arrives first, as Flink's regular join). WHERE conjuncts that name
    /// one side only are pushed into that side.
    fn plan_join(&mut self, from: &ast::TableWithJoins, conj: &mut Vec<ast::Expr>) -> Result<Rel, SqlError> {
        let [j] = from.joins.as_slice() else {
            return err_at(from.joins[1].relation.span(), "one JOIN per query in this version (join in a subquery)");
        };
        let on = match &j.join_operator {
            ast::JoinOperator::Join(ast::JoinConstraint::On(e))
            | ast::JoinOperator::Inner(ast::JoinConstraint::On(e)) => e,
            other => {
                return err_at(
                    j.relation.span(),
                    format!(
                        "{}: only [INNER] JOIN … ON is supported (no outer joins yet)",
                        first_word(&format!("{other:?}"))
                    ),
                )
            }
        };
        let mut on_conj = Vec::new();
        conjuncts(on, &mut on_conj);
        self.join_factors(&from.relation, &j.relation, on_conj, on.span(), conj)
    }

    /// `FROM a, b WHERE a.x = b.y …`: the same inner join, its conditions all in WHERE.
    fn plan_comma_join(
        &mut self,
        a: &ast::TableWithJoins,
        b: &ast::TableWithJoins,
        conj: &mut Vec<ast::Expr>,
    ) -> Result<Rel, SqlError> {
        for t in [a, b] {
            if let Some(j) = t.joins.first() {
                return err_at(j.relation.span(), "FROM a, b JOIN c: write every join with JOIN … ON");
            }
        }
        let on_conj = std::mem::take(conj);
        self.join_factors(&a.relation, &b.relation, on_conj, b.relation.span(), conj)
    }

    fn join_factors(
        &mut self,
        left_f: &ast::TableFactor,
        right_f: &ast::TableFactor,
        mut on_conj: Vec<ast::Expr>,
        on_span: Span,
        conj: &mut Vec<ast::Expr>,
    ) -> Result<Rel, SqlError> {
        let left = self.plan_factor(left_f)?;
        let right = self.plan_factor(right_f)?;
        // A window join: both sides rows of one tumbling window TVF, joined within a window.
        let window =
            match (left.tvf, right.tvf) {
                (None, None) => None,
                (Some(Window::Tumbling { size_ms: a }), Some(Window::Tumbling { size_ms: b })) if a == b => Some(a),
                _ => return err_at(
                    right_f.span(),
                    "a window join needs both sides over the same TUMBLE window (other window joins are not supported)",
                ),
            };
        for (side, r) in [("left", &left), ("right", &right)] {
            if !r.stateless || r.rank.is_some() {
                return err_at(
                    if side == "left" { left_f.span() } else { right_f.span() },
                    "a join side is a source or a view of it (filters and columns only; no METADATA columns): windowed or aggregated sides are not supported yet",
                );
            }
        }
        let mut keys: Option<((Ty, String), (Ty, String))> = None;
        let mut residual = Vec::new();
        // `a.window_start = b.window_start` (and window_end) make it a window join.
        let edge_of = |e: &ast::Expr, r: &Rel| -> Option<Edge> {
            let idents = idents_of(e)?;
            let (c, used) = self.find_col(r, &idents, e.span()).ok()?;
            c.edge.filter(|_| used == idents.len() && c.missing().is_some())
        };
        let mut same_window = false;
        on_conj.retain(|c| {
            if let ast::Expr::BinaryOp { left: a, op: ast::BinaryOperator::Eq, right: b } = c {
                let pair = (edge_of(a, &left), edge_of(b, &right), edge_of(b, &left), edge_of(a, &right));
                if matches!(pair, (Some(x), Some(y), _, _) | (_, _, Some(x), Some(y)) if x == y) {
                    same_window = true;
                    return false;
                }
            }
            true
        });
        // `a.t BETWEEN b.t - INTERVAL … AND b.t + INTERVAL …` on the event time: an interval join.
        let time_of = |e: &ast::Expr, r: &Rel| -> Option<i64> {
            let (col, offset) = match e {
                ast::Expr::BinaryOp { left: c, op: ast::BinaryOperator::Plus, right: i } => {
                    (c.as_ref(), interval_ms(i)?)
                }
                ast::Expr::BinaryOp { left: c, op: ast::BinaryOperator::Minus, right: i } => {
                    (c.as_ref(), -interval_ms(i)?)
                }
                c => (c, 0),
            };
            let (_, cel) = self.expr(col, r).ok()?;
            (Some(&cel) == self.time_of_rel(r)).then_some(offset)
        };
        // Or `a.t BETWEEN b.t + INTERVAL … AND b.col`, with `col` a TIMESTAMP of b (an auction's
        // `expires`): b's events are kept until the watermark passes their `col`.
        let until_of = |e: &ast::Expr, r: &Rel| -> Option<String> {
            match self.expr(e, r).ok()? {
                (Ty::Ts, cel) if Some(&cel) != self.time_of_rel(r) => Some(cel),
                _ => None,
            }
        };
        // (lower, upper) of the left time relative to the right's, and whether the engine's
        // left side is the query's right (an `until` bound is the engine's right side's).
        let mut interval: Option<(i64, Hi)> = None;
        let mut swap = false;
        let mut take_interval = |c: &ast::Expr| -> bool {
            let ast::Expr::Between { expr, negated: false, low, high } = c else { return false };
            if interval.is_some() {
                return false;
            }
            let found = match (time_of(expr, &left), time_of(low, &right), time_of(high, &right)) {
                (Some(0), Some(lo), Some(hi)) => Some((lo, Hi::Const(hi))),
                (Some(0), Some(lo), None) => until_of(high, &right).map(|u| (lo, Hi::Until(u))),
                _ => match (time_of(expr, &right), time_of(low, &left), time_of(high, &left)) {
                    (Some(0), Some(lo), Some(hi)) => Some((-hi, Hi::Const(-lo))),
                    (Some(0), Some(lo), None) => until_of(high, &left).map(|u| {
                        swap = true;
                        (lo, Hi::Until(u))
                    }),
                    _ => None,
                },
            };
            interval = found;
            interval.is_some()
        };
        on_conj.retain(|c| !take_interval(c));
        conj.retain(|c| !take_interval(c));
        if let Some((lo, hi)) = &interval {
            if let Hi::Const(hi) = hi {
                if lo > hi {
                    return err_at(on_span, format!("the interval join's bounds are reversed ({lo} ms > {hi} ms)"));
                }
            }
            if window.is_some() {
                return err_at(on_span, "a join is a window join or an interval join, not both");
            }
        }
        // `JOIN t FOR SYSTEM_TIME AS OF s.time`: each left row joins t's row of its key as of
        // its time (an event-time temporal join).
        let table = match (&left.as_of, &right.as_of) {
            (None, None) => false,
            (None, Some(e)) => {
                if time_of(e, &left) != Some(0) {
                    return err_at(
                        e.span(),
                        format!("FOR SYSTEM_TIME AS OF {e}: it must be the event time (the WATERMARK column) of the join's left side"),
                    );
                }
                if window.is_some() || interval.is_some() {
                    return err_at(on_span, "a temporal join (FOR SYSTEM_TIME AS OF) is not also a window or interval join");
                }
                true
            }
            (Some(e), _) => {
                return err_at(e.span(), "FOR SYSTEM_TIME AS OF is for the table on the right of the JOIN (stream JOIN table FOR SYSTEM_TIME AS OF stream.time)")
            }
        };
        if window.is_some() && !same_window {
            return err_at(on_span, "a join of two window TVFs needs ON … AND a.window_start = b.window_start");
        }
        for c in on_conj {
            if keys.is_none() {
                if let ast::Expr::BinaryOp { left: a, op: ast::BinaryOperator::Eq, right: b } = &c {
                    let la = self.expr(a, &left).ok();
                    let rb = self.expr(b, &right).ok();
                    let lb = self.expr(b, &left).ok();
                    let ra = self.expr(a, &right).ok();
                    let pair = match (la, rb, lb, ra) {
                        (Some(l), Some(r), None, None) => Some((l, r)),
                        (None, None, Some(l), Some(r)) => Some((l, r)),
                        _ => None,
                    };
                    if let Some((l, r)) = pair {
                        let same = l.0 == r.0 || matches!((&l.0, &r.0), (Ty::Int | Ty::Ts, Ty::Int | Ty::Ts));
                        if !same {
                            return err_at(
                                c.span(),
                                format!("join keys are a {} and a {}: CAST one", l.0.name(), r.0.name()),
                            );
                        }
                        keys = Some((l, r));
                        continue;
                    }
                }
            }
            residual.push(c);
        }
        let Some((lk, rk)) = keys else {
            return err_at(on_span, "JOIN … ON needs an equality of a left column and a right column (the join key)");
        };
        if let (true, Some(si)) = (table, right.source) {
            if let Some(pk) = &self.source_def(si).primary_key {
                let pk_expr = ast::Expr::Identifier(ast::Ident::new(pk.clone()));
                if self.expr(&pk_expr, &right).ok().map(|(_, cel)| cel) != Some(rk.1.clone()) {
                    return err_at(
                        on_span,
                        format!("a temporal join with {} must be on its PRIMARY KEY ({pk})", self.source_def(si).name),
                    );
                }
            }
        }
        // Push single-side conjuncts of WHERE into the sides.
        let mut side_filters: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut keep = Vec::new();
        for c in conj.drain(..).chain(residual.drain(..)) {
            let l = self.expr(&c, &left).ok();
            let r = self.expr(&c, &right).ok();
            match (l, r) {
                (Some((Ty::Bool, cel)), None) => side_filters[0].push(cel),
                (None, Some((Ty::Bool, cel))) => side_filters[1].push(cel),
                _ => keep.push(c),
            }
        }
        *conj = keep;
        let pred = |r: &Rel, extra: &[String]| -> String {
            let mut all: Vec<String> = r
                .steps
                .iter()
                .filter_map(|s| match s {
                    StepSpec::Filter(f) => Some(format!("({f})")),
                    _ => None,
                })
                .collect();
            all.extend(extra.iter().map(|f| format!("({f})")));
            if all.is_empty() {
                "true".into()
            } else {
                all.join(" && ")
            }
        };
        let kc = |k: &(Ty, String)| key_cel(std::slice::from_ref(k));
        // The engine's sides: the query's, or swapped for an `until` bound on the left.
        let (el, er, ek, roots) = if swap {
            ((&right, &side_filters[1]), (&left, &side_filters[0]), (&rk, &lk), ["event.right", "event.left"])
        } else {
            ((&left, &side_filters[0]), (&right, &side_filters[1]), (&lk, &rk), ["event.left", "event.right"])
        };
        let until_cel = match &interval {
            Some((_, Hi::Until(u))) => Some(u.clone()),
            _ => None,
        };
        // Sides of two sources are picked by source; their filters apply to the joined rows
        // (the same rows, for an inner join).
        let mut after = Vec::new();
        let mut side_of = |r: &Rel, extra: &[String], root: &str| -> String {
            let p = pred(r, extra);
            match (left.source != right.source, r.source) {
                (true, Some(si)) => {
                    if p != "true" {
                        after.push(StepSpec::Filter(reroot(&p, root)));
                    }
                    self.source_def(si).name.clone()
                }
                _ => p,
            }
        };
        let (lsel, rsel) = (side_of(el.0, el.1, "event.left"), side_of(er.0, er.1, "event.right"));
        let step = StepSpec::Join(JoinYaml {
            left: lsel,
            left_key: kc(ek.0),
            right: rsel,
            right_key: kc(ek.1),
            window: window.map(|ms| format!("{ms}ms")),
            interval: interval.as_ref().map(|(lo, hi)| crate::yaml::IntervalYaml {
                lower: format!("{lo}ms"),
                upper: match hi {
                    Hi::Const(hi) => Some(format!("{hi}ms")),
                    Hi::Until(_) => None,
                },
                until: until_cel.clone(),
            }),
            table,
            unbounded: window.is_none() && interval.is_none() && !table,
            allowed_lateness: None,
            max_state: 1_000_000,
        });
        let mut cols = Vec::new();
        for (r, root) in [(&left, roots[0]), (&right, roots[1])] {
            for c in &r.cols {
                let cel = match (c.missing(), c.edge, window) {
                    // The window's edges, which the window join writes beside both sides.
                    (Some(_), Some(Edge::Start), Some(_)) => "event.window_start".to_owned(),
                    (Some(_), Some(Edge::End), Some(_)) => "event.window_end".to_owned(),
                    (Some(_), _, _) => c.cel.clone(),
                    (None, _, _) => reroot(&c.cel, root),
                };
                cols.push(Col { cel, ..c.clone() });
            }
        }
        // Groups of the join's key close when the watermark passes the bound (see plan_aggregate).
        let until = until_cel.map(|u| Until {
            bound: reroot(&u, "event.right"),
            keys: vec![reroot(&lk.1, roots[0]), reroot(&rk.1, roots[1])],
        });
        let windowed = window.map(|size_ms| Window::Tumbling { size_ms });
        // A joined row's time is the later of its sides' (the left's, in a temporal join).
        let later = match &interval {
            _ if table => Some((el.0, "event.left")),
            Some((lo, _)) if *lo >= 0 => Some((el.0, "event.left")),
            Some((_, Hi::Const(hi))) if *hi <= 0 => Some((er.0, "event.right")),
            _ => None,
        };
        let time = later.and_then(|(r, root)| self.time_of_rel(r).map(|t| reroot(t, root)));
        let mut steps = vec![step];
        steps.extend(after);
        Ok(Rel { steps, cols, windowed, until, time, ..Rel::default() })
    }

    /// The Spec of the script's one sink.
    fn plan_sink(&mut self, sink: &SinkDef) -> Result<Planned, SqlError> {
        let Some((q, at)) = &sink.query else {
            return err_at(
                sink.span,
                format!(
                    "sink {} has no query: CREATE SINK {} … AS SELECT, or INSERT INTO {} SELECT",
                    sink.name, sink.name, sink.name
                ),
            );
        };
        let rel = self.plan_query(q)?;
        self.finish(rel, *at, sink.name.clone(), Some(sink))
    }

    fn finish(&mut self, mut rel: Rel, at: Span, name: String, sink: Option<&SinkDef>) -> Result<Planned, SqlError> {
        if let Some(r) = &rel.rank {
            return err_at(
                r.span,
                format!(
                    "RANK() is planned as window Top-N: filter it with WHERE {} <= N in a query around it",
                    r.alias
                ),
            );
        }
        if rel.tvf.is_some() {
            return err_at(at, "the rows of a window TVF need GROUP BY window_start, window_end (or a window Top-N)");
        }
        let mut entries = Vec::new();
        let mut columns = Vec::new();
        for c in &rel.cols {
            if c.name.starts_with("__") {
                continue;
            }
            if let Some(why) = c.missing() {
                return err_at(at, format!("column {} cannot be output: {why}", c.name));
            }
            // A column read as it is: NULL when the input lacks it (SQL), not an error.
            let cel = if c.path
                && c.cel.starts_with("event")
                && !c.cel.starts_with("event.window_")
                && rel.windowed.is_none()
            {
                format!("({} ? {} : null)", has_chain(&c.cel), c.cel)
            } else {
                c.cel.clone()
            };
            entries.push((c.name.clone(), cel));
            use crate::rows::ColumnType as C;
            let ty = match c.ty {
                Ty::Int | Ty::Ts | Ty::Interval => C::BigInt,
                Ty::Double => C::Double,
                Ty::Bool => C::Boolean,
                Ty::Str | Ty::Null | Ty::Row(_) => C::Text,
            };
            columns.push((c.name.clone(), ty));
        }
        rel.steps.push(StepSpec::Map(map_literal(&entries)));
        let (source, sources, out_of_orderness) = match self.sources.as_slice() {
            [] => return err_at(at, "the query reads no source"),
            [si] => {
                let (source, delay) = self.source_spec(*si)?;
                (Some(source), BTreeMap::new(), delay)
            }
            several => {
                // Sources by name; the watermark trails by the largest of their delays.
                let mut sources = BTreeMap::new();
                let mut delay: Option<i64> = None;
                for si in several {
                    let (source, d) = self.source_spec(*si)?;
                    delay = delay.max(d);
                    sources.insert(self.source_def(*si).name.clone(), source);
                }
                (None, sources, delay)
            }
        };
        let out_of_orderness = out_of_orderness.map(|ms| format!("{ms}ms"));
        let mut spec = Spec {
            name,
            source,
            sources,
            steps: rel.steps,
            window: None,
            out_of_orderness,
            idle_timeout: None,
            sink: SinkSpec {
                sqlite: None,
                postgres: None,
                table: None,
                jsonl: None,
                kafka: None,
                stdout: false,
                rows: true,
                row_columns: Vec::new(),
            },
            dead_letters: None,
            checkpoint: CheckpointSpec::default(),
            on_sink_error: Default::default(),
            repartition: RepartitionSpec::default(),
        };
        match sink {
            Some(s) => self.sink_options(s, &mut spec, &columns)?,
            None => spec.sink.stdout = true,
        }
        prune_maps(&mut spec.steps);
        let explain = explain_steps(&spec);
        let columns = columns.into_iter().map(|(n, _)| n).collect();
        Ok(Planned { spec, explain, columns })
    }

    /// A source's spec, and its WATERMARK delay in ms.
    fn source_spec(&self, si: usize) -> Result<(SourceSpec, Option<i64>), SqlError> {
        let src = self.source_def(si);
        let opt = |k: &str| src.options.get(k).map(|(v, _)| v.clone());
        for (k, (_, span)) in &src.options {
            if k.starts_with("properties.") {
                continue;
            }
            if !matches!(
                k.as_str(),
                "format"
                    | "connector"
                    | "path"
                    | "topic"
                    | "brokers"
                    | "group"
                    | "events"
                    | "rate"
                    | "partitioned_by_key"
            ) {
                return err_at(
                    *span,
                    format!("unknown source option {k} (format, path, topic, brokers, group, events, rate)"),
                );
            }
        }
        let format = opt("format").or(opt("connector")).unwrap_or_default().to_ascii_lowercase();
        let compile = |cel: &str| {
            Expr::compile(cel).map_err(|e| SqlError {
                line: src.span.start.line,
                column: src.span.start.column,
                message: format!("internal: {cel}: {e}"),
            })
        };
        let kafka = opt("topic").is_some();
        let kind = match (format.as_str(), kafka) {
            ("jsonl" | "file" | "filesystem", false) | ("", false) if opt("path").is_some() => SourceKind::Jsonl(opt("path").unwrap_or_default()),
            ("json" | "kafka" | "", true) => SourceKind::Kafka(KafkaSourceYaml {
                brokers: opt("brokers").unwrap_or_else(|| "127.0.0.1:9092".into()),
                topic: opt("topic").unwrap_or_default(),
                group: opt("group"),
                partitioned_by_key: opt("partitioned_by_key").is_some_and(|v| v.eq_ignore_ascii_case("true")),
                // Flink's `'properties.<librdkafka property>' = '…'`.
                properties: src
                    .options
                    .iter()
                    .filter_map(|(k, (v, _))| Some((k.strip_prefix("properties.")?.to_owned(), v.clone())))
                    .collect(),
            }),
            ("nexmark", false) => SourceKind::Nexmark(NexmarkYaml {
                events: opt("events").and_then(|v| v.parse().ok()).unwrap_or(100_000),
                rate: opt("rate").and_then(|v| v.parse().ok()).unwrap_or(10_000),
            }),
            _ => return err_at(src.span, format!("source {}: WITH (format = 'jsonl', path = '…') or (format = 'json', topic = '…', brokers = '…') or (format = 'nexmark', events = N)", src.name)),
        };
        let bounded = !matches!(kind, SourceKind::Kafka(_));
        let (time, delay) = match &src.watermark {
            Some((col, e, span)) => {
                let cel = self.times.get(&si).map(|t| t.1.clone()).ok_or_else(|| SqlError {
                    line: span.start.line,
                    column: span.start.column,
                    message: format!("WATERMARK FOR {col}: no such column"),
                })?;
                let delay = match e {
                    ast::Expr::Identifier(i) if i.value.eq_ignore_ascii_case(col) => None,
                    ast::Expr::BinaryOp { left, op: ast::BinaryOperator::Minus, right } if name_of(left).is_some_and(|n| n.eq_ignore_ascii_case(col)) => match interval_ms(right) {
                        Some(ms) if ms >= 0 => Some(ms),
                        _ => return err_at(*span, "WATERMARK FOR t AS t - INTERVAL 'n' SECOND"),
                    },
                    _ => return err_at(*span, format!("WATERMARK FOR {col} AS {col} [- INTERVAL 'n' SECOND]: other watermark expressions are not supported")),
                };
                (TimeFrom::Expr(compile(&cel)?), delay)
            }
            None if bounded => (TimeFrom::Expr(compile("0")?), None),
            None => (TimeFrom::RecordTimestamp, None),
        };
        let key = if bounded { KeyFrom::Expr(compile("null")?) } else { KeyFrom::RecordKey };
        Ok((SourceSpec { kind, time, key }, delay))
    }

    fn sink_options(
        &self,
        s: &SinkDef,
        spec: &mut Spec,
        columns: &[(String, crate::rows::ColumnType)],
    ) -> Result<(), SqlError> {
        let opt = |k: &str| s.options.get(k).map(|(v, _)| v.clone());
        for (k, (_, span)) in &s.options {
            if !matches!(
                k.as_str(),
                "format"
                    | "connector"
                    | "path"
                    | "topic"
                    | "brokers"
                    | "table"
                    | "conninfo"
                    | "url"
                    | "dead_letters"
                    | "dead_letter_topic"
                    | "checkpoint_interval"
                    | "checkpoint_dir"
            ) {
                return err_at(*span, format!("unknown sink option {k} (format, path, topic, brokers, table, conninfo, dead_letters, dead_letter_topic, checkpoint_interval, checkpoint_dir)"));
            }
        }
        let format = opt("format").or(opt("connector")).unwrap_or_default().to_ascii_lowercase();
        match (format.as_str(), opt("path"), opt("topic")) {
            ("jsonl" | "file" | "filesystem" | "", Some(p), None) => spec.sink.jsonl = Some(p),
            ("stdout" | "print", None, None) | ("", None, None) => spec.sink.stdout = true,
            ("json" | "kafka" | "", None, Some(t)) => spec.sink.kafka = Some(KafkaSinkYaml { topic: t, brokers: opt("brokers") }),
            ("sqlite", Some(p), None) => spec.sink.sqlite = Some(p),
            ("postgres" | "postgresql", None, None) => match opt("conninfo").or(opt("url")) {
                Some(c) => spec.sink.postgres = Some(c),
                None => return err_at(s.span, format!("sink {}: a postgres sink needs conninfo = 'host=… user=… dbname=…'", s.name)),
            },
            _ => return err_at(s.span, format!("sink {}: WITH (format = 'jsonl', path = '…'), (format = 'json', topic = '…') or (format = 'stdout')", s.name)),
        }
        if let Some(d) = opt("dead_letters") {
            spec.dead_letters = Some(DeadLetterSpec { jsonl: Some(d), topic: None, brokers: None });
        } else if let Some(t) = opt("dead_letter_topic") {
            spec.dead_letters = Some(DeadLetterSpec { jsonl: None, topic: Some(t), brokers: opt("brokers") });
        }
        if spec.sink.sqlite.is_some() || spec.sink.postgres.is_some() {
            spec.sink.table = Some(opt("table").unwrap_or_else(|| s.name.clone()));
            spec.sink.row_columns = columns.to_vec();
            for (c, _) in columns {
                if c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return err_at(
                        s.span,
                        format!("column {c} cannot be a table column: give it an alias of letters, digits and _"),
                    );
                }
            }
        }
        if let Some(i) = opt("checkpoint_interval") {
            spec.checkpoint.interval = i;
        }
        spec.checkpoint.dir = opt("checkpoint_dir");
        Ok(())
    }
}

/// Whether CEL text reads `event.<name>` (or `event["name"]`).
fn reads_field(cel: &str, name: &str) -> bool {
    let dotted = format!("event.{name}");
    let indexed = format!("event[{}]", cel_str(name));
    let b = cel.as_bytes();
    cel.match_indices(&dotted).any(|(i, _)| {
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.');
        let after = b.get(i + dotted.len()).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
        before && after
    }) || cel.contains(&indexed)
}

/// Drops the entries of a map that no later step reads (a column the query computed but does
/// not use, e.g. the ones a Top-N carries). Only where the later steps, up to the next map or
/// aggregating window, read the event by field name; the last map is the output and is kept.
fn prune_maps(steps: &mut [StepSpec]) {
    for i in 0..steps.len() {
        let StepSpec::Map(text) = &steps[i] else { continue };
        let mut readers: Vec<&str> = Vec::new();
        let mut closed = false;
        for later in &steps[i + 1..] {
            match later {
                StepSpec::Filter(f) | StepSpec::KeyBy(f) => readers.push(f),
                StepSpec::Map(m) => {
                    readers.push(m);
                    closed = true;
                    break;
                }
                StepSpec::Window(w) => {
                    readers.extend(w.end_field.as_deref());
                    match &w.output {
                        WindowOutput::TopN { by, .. } => readers.push(by),
                        WindowOutput::Aggregates(a) => {
                            readers.extend(a.iter().filter_map(|(_, _, f)| f.as_deref()));
                            closed = true;
                            break;
                        }
                    }
                }
                StepSpec::FlatMap(_) | StepSpec::Dedup(_) | StepSpec::Join(_) => break,
            }
        }
        if !closed {
            continue;
        }
        let Some(entries) = map_entries(text) else { continue };
        let kept: Vec<(String, String)> =
            entries.into_iter().filter(|(k, _)| readers.iter().any(|r| reads_field(r, k) || *r == k)).collect();
        steps[i] = StepSpec::Map(map_literal(&kept));
    }
}

/// The entries of a map literal this module wrote (`{"k": v, …}`), split at top-level commas.
fn map_entries(text: &str) -> Option<Vec<(String, String)>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    let (mut depth, mut quote, mut esc, mut start) = (0i32, None::<char>, false, 0usize);
    let mut push = |part: &str| -> Option<()> {
        let part = part.trim();
        if part.is_empty() {
            return Some(());
        }
        let rest = part.strip_prefix('"')?;
        let mut end = None;
        let mut e = false;
        for (j, c) in rest.char_indices() {
            match c {
                '\\' if !e => e = true,
                '"' if !e => {
                    end = Some(j);
                    break;
                }
                _ => e = false,
            }
        }
        let end = end?;
        let key: String = serde_json::from_str(&part[..end + 2]).ok()?;
        let value = rest[end + 1..].trim_start().strip_prefix(':')?.trim();
        out.push((key, value.to_owned()));
        Some(())
    };
    for (i, c) in inner.char_indices() {
        if let Some(q) = quote {
            match c {
                '\\' if !esc => esc = true,
                c if c == q && !esc => quote = None,
                _ => esc = false,
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                push(&inner[start..i])?;
                start = i + 1;
            }
            _ => {}
        }
    }
    push(&inner[start..])?;
    Some(out)
}

/// The steps of a spec, one line each, with the shuffles the compiler inserts.
fn explain_steps(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    for (name, s) in spec.source.iter().map(|s| ("source", s)).chain(spec.sources.iter().map(|(n, s)| (n.as_str(), s)))
    {
        let what = match &s.kind {
            SourceKind::Jsonl(p) => format!("jsonl {p}"),
            SourceKind::Kafka(k) => format!("topic {} on {}", k.topic, k.brokers),
            SourceKind::Nexmark(n) => format!("nexmark generator, {} events", n.events),
        };
        let time = match &s.time {
            TimeFrom::Expr(e) => e.source().to_owned(),
            TimeFrom::RecordTimestamp => "record timestamp".into(),
            TimeFrom::Field(f) => f.join("."),
        };
        out.push(format!(
            "{name}: {what}; event time {time}; watermark delay {}",
            spec.out_of_orderness.as_deref().unwrap_or("0")
        ));
    }
    for st in &spec.steps {
        out.push(match st {
            StepSpec::Filter(f) => format!("filter: {f}"),
            StepSpec::Map(m) => format!("map: {m}"),
            StepSpec::FlatMap(m) => format!("flat_map: {m}"),
            StepSpec::KeyBy(k) => format!("key_by: {k}"),
            StepSpec::Dedup(d) => format!("dedup: horizon {}", d.horizon),
            StepSpec::Join(j) => {
                let kind = match (&j.window, &j.interval, j.table) {
                    (Some(w), _, _) => format!("window {w}"),
                    (_, Some(i), _) => match (&i.upper, &i.until) {
                        (Some(u), _) => format!("interval: left time within right time + [{}, {u}]", i.lower),
                        (_, u) => format!(
                            "interval: left time within [right time + {}, {}]",
                            i.lower,
                            u.as_deref().unwrap_or("?")
                        ),
                    },
                    (_, _, true) => "temporal: the right side's row as of the left time".into(),
                    _ => "regular".into(),
                };
                format!("join ({kind}): left {} on {}; right {} on {}", j.left, j.left_key, j.right, j.right_key)
            }
            StepSpec::Window(w) => {
                let out = match &w.output {
                    WindowOutput::Aggregates(a) => a
                        .iter()
                        .map(|(n, k, f)| format!("{n} = {k:?}({})", f.as_deref().unwrap_or("*")))
                        .collect::<Vec<_>>()
                        .join(", "),
                    WindowOutput::TopN { n, by, descending } => {
                        format!("top {n} by {by} {}", if *descending { "desc" } else { "asc" })
                    }
                };
                match &w.end_field {
                    Some(f) => format!("window {:?} (closes at {f}): {out}", w.window),
                    None => format!("window {:?}: {out}", w.window),
                }
            }
        });
    }
    out
}

/// A compiled SQL script: the pipeline (as `yaml::run` runs it) and its plan.
pub struct Compiled {
    pub pipeline: crate::yaml::Compiled,
    /// The plan, a line per step (`weir sql explain`).
    pub explain: Vec<String>,
    /// The output columns, in SELECT order.
    pub columns: Vec<String>,
}

/// Parses, plans and compiles a script with one sink (or one bare query, written to stdout).
pub fn load(text: &str) -> Result<Compiled, SqlError> {
    compile_script(&parse(text)?)
}

fn compile_script(script: &Script) -> Result<Compiled, SqlError> {
    let mut planner = Planner { script, sources: Vec::new(), ctes: Vec::new(), times: BTreeMap::new() };
    let planned = match (script.sinks.as_slice(), &script.query) {
        ([one], None) => planner.plan_sink(one)?,
        ([], Some((q, at))) => {
            let rel = planner.plan_query(q)?;
            planner.finish(rel, *at, "sql-query".into(), None)?
        }
        ([], None) => return err_at(Span::empty(), "the script has no CREATE SINK … AS SELECT, INSERT INTO or query"),
        (sinks, _) => {
            let s = sinks.get(1).map_or(Span::empty(), |s| s.span);
            return err_at(s, "one sink (or query) per script in this version: run one script per sink");
        }
    };
    let columns = planned.columns;
    let mut explain = planned.explain;
    let compiled = planned.spec.compile("").map_err(|e| SqlError {
        line: 0,
        column: 0,
        message: format!("the plan does not compile: {}", e.message),
    })?;
    explain.push(format!(
        "{} stage(s) (each stage after the first reads a repartition topic over Kafka)",
        compiled.stages
    ));
    Ok(Compiled { pipeline: compiled, explain, columns })
}

/// An ad-hoc query's answer (`weir sql "SELECT …"`).
#[derive(Debug)]
pub struct Answer {
    pub columns: Vec<String>,
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Records read from the topics.
    pub records: u64,
}

/// The tables a query reads by name: FROM items, join sides and window TVFs' first arguments.
fn tables_of(q: &ast::Query, out: &mut Vec<(String, Span)>) {
    if let Some(w) = &q.with {
        for cte in &w.cte_tables {
            tables_of(&cte.query, out);
        }
    }
    fn body(b: &ast::SetExpr, out: &mut Vec<(String, Span)>) {
        match b {
            ast::SetExpr::Select(s) => {
                for twj in &s.from {
                    factor(&twj.relation, out);
                    for j in &twj.joins {
                        factor(&j.relation, out);
                    }
                }
            }
            ast::SetExpr::Query(q) => tables_of(q, out),
            ast::SetExpr::SetOperation { left, right, .. } => {
                body(left, out);
                body(right, out);
            }
            _ => {}
        }
    }
    fn factor(f: &ast::TableFactor, out: &mut Vec<(String, Span)>) {
        let first_arg = |args: &[ast::FunctionArg], out: &mut Vec<(String, Span)>| {
            if let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(i)))) = args.first()
            {
                out.push((i.value.clone(), i.span));
            }
        };
        match f {
            ast::TableFactor::Table { name, args: None, .. } => out.push((name.to_string(), f.span())),
            ast::TableFactor::Table { args: Some(a), .. } => first_arg(&a.args, out),
            ast::TableFactor::TableFunction { expr: ast::Expr::Function(func), .. } => {
                if let ast::FunctionArguments::List(l) = &func.args {
                    first_arg(&l.args, out);
                }
            }
            ast::TableFactor::Derived { subquery, .. } => tables_of(subquery, out),
            _ => {}
        }
    }
    body(&q.body, out);
}

/// The type of a JSON value's column; None when it says nothing (null).
fn infer(v: &serde_json::Value) -> Option<Ty> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(_) => Ty::Bool,
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Ty::Int,
        serde_json::Value::Number(_) => Ty::Double,
        serde_json::Value::String(_) => Ty::Str,
        serde_json::Value::Array(_) => return None,
        serde_json::Value::Object(m) => Ty::Row(infer_fields(std::iter::once(m))?),
    })
}

/// Field types over sampled objects: an integer beside a double is a DOUBLE; a field whose
/// values disagree otherwise (or are lists) is left out, and so cannot be queried.
fn infer_fields<'a>(
    objects: impl Iterator<Item = &'a serde_json::Map<String, serde_json::Value>>,
) -> Option<Vec<(String, Ty)>> {
    let mut fields: Vec<(String, Option<Ty>, bool)> = Vec::new();
    for m in objects {
        for (k, v) in m {
            let t = infer(v);
            let pos = match fields.iter().position(|(n, _, _)| n == k) {
                Some(p) => p,
                None => {
                    fields.push((k.clone(), None, true));
                    fields.len() - 1
                }
            };
            let slot = &mut fields[pos];
            if matches!(v, serde_json::Value::Array(_)) {
                slot.2 = false;
            }
            slot.1 = match (slot.1.take(), t) {
                (None, t) => t,
                (Some(a), None) => Some(a),
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(Ty::Int), Some(Ty::Double)) | (Some(Ty::Double), Some(Ty::Int)) => Some(Ty::Double),
                (Some(Ty::Row(a)), Some(Ty::Row(b))) => {
                    let mut merged = a;
                    for (n, t) in b {
                        if !merged.iter().any(|(m, _)| *m == n) {
                            merged.push((n, t));
                        }
                    }
                    Some(Ty::Row(merged))
                }
                (Some(a), Some(_)) => {
                    slot.2 = false;
                    Some(a)
                }
            };
        }
    }
    Some(fields.into_iter().filter(|(_, _, ok)| *ok).map(|(n, t, _)| (n, t.unwrap_or(Ty::Str))).collect())
}

fn order_value(v: Option<&serde_json::Value>) -> (u8, f64, String) {
    match v {
        None | Some(serde_json::Value::Null) => (2, 0.0, String::new()),
        Some(serde_json::Value::Number(n)) => (0, n.as_f64().unwrap_or(0.0), String::new()),
        Some(serde_json::Value::String(s)) => (1, 0.0, s.clone()),
        Some(other) => (1, 0.0, other.to_string()),
    }
}

/// Runs a query over topics' current contents: each table the query names that the script
/// does not declare is a topic on `brokers`, read from its start to its current end into
/// `work` (JSON values; columns `key`, `timestamp` (the event time), `partition`, `offset`
/// and the values' fields, their types inferred from the first 1,000 records). `ORDER BY`
/// output columns and `LIMIT`/`OFFSET` apply to the answer.
pub fn query_topics(text: &str, brokers: &str, work: &std::path::Path) -> Result<Answer, SqlError> {
    let mut script = parse(text)?;
    let Some((mut q, at)) = script.query.take() else {
        return err_at(Span::empty(), "give one query: weir sql \"SELECT … FROM topic …\"");
    };
    if !script.sinks.is_empty() {
        return err_at(script.sinks[0].span, "an ad-hoc query has no sink: run the script with weir sql run");
    }
    let order = q.order_by.take();
    let limit = q.limit_clause.take();
    let mut names = Vec::new();
    tables_of(&q, &mut names);
    let known = |n: &str, s: &Script| {
        s.sources.iter().any(|x| x.name.eq_ignore_ascii_case(n))
            || s.views.iter().any(|(v, _)| v.eq_ignore_ascii_case(n))
            || q.with.as_ref().is_some_and(|w| w.cte_tables.iter().any(|c| c.alias.name.value.eq_ignore_ascii_case(n)))
    };
    let mut records = 0;
    for (name, span) in names {
        if known(&name, &script) {
            continue;
        }
        let file = work.join(format!("topic-{}.jsonl", script.sources.len()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).map_err(|e| SqlError {
            line: 0,
            column: 0,
            message: format!("{}: {e}", file.display()),
        })?);
        let n = crate::kafka::snapshot_topic(brokers, &name, &mut out).map_err(|e| SqlError {
            line: span.start.line,
            column: span.start.column,
            message: e.to_string(),
        })?;
        std::io::Write::flush(&mut out).map_err(|e| SqlError { line: 0, column: 0, message: e.to_string() })?;
        records += n;
        // The first 1,000 lines only: the snapshot may be far larger than memory.
        let reader = std::fs::File::open(&file).map_err(|e| SqlError { line: 0, column: 0, message: e.to_string() })?;
        let sample: Vec<serde_json::Map<String, serde_json::Value>> =
            std::io::BufRead::lines(std::io::BufReader::new(reader))
                .take(1000)
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect();
        let mut cols = infer_fields(sample.iter()).unwrap_or_default();
        for (fixed, ty) in [("key", Ty::Str), ("timestamp", Ty::Ts), ("partition", Ty::Int), ("offset", Ty::Int)] {
            match cols.iter_mut().find(|(n, _)| n == fixed) {
                Some(c) => c.1 = ty,
                None => cols.push((fixed.to_owned(), ty)),
            }
        }
        let mut options = BTreeMap::new();
        options.insert("format".to_owned(), ("jsonl".to_owned(), span));
        options.insert("path".to_owned(), (file.display().to_string(), span));
        let ts = ast::Expr::Identifier(ast::Ident::with_span(span, "timestamp"));
        script.sources.push(SourceDef {
            name,
            span,
            cols,
            meta: Vec::new(),
            computed: Vec::new(),
            watermark: Some(("timestamp".into(), ts, span)),
            primary_key: None,
            options,
        });
    }
    script.query = Some((q, at));
    let mut compiled = compile_script(&script)?;
    let out = work.join("answer.jsonl");
    let sink = &mut compiled.pipeline.spec.sink;
    sink.stdout = false;
    sink.jsonl = Some(out.display().to_string());
    compiled.pipeline.spec.checkpoint.dir = Some(work.join("checkpoints").display().to_string());
    let columns = compiled.columns.clone();
    let internal = |e: &dyn std::fmt::Display| SqlError { line: 0, column: 0, message: e.to_string() };
    let stats =
        crate::yaml::run(compiled.pipeline, work, &crate::yaml::RunOptions::default()).map_err(|e| internal(&e))?;
    if stats.dead_letters > 0 {
        eprintln!(
            "weir sql: {} record(s) could not be evaluated (missing or mistyped fields) and are not in the answer",
            stats.dead_letters
        );
    }
    let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = std::fs::read_to_string(&out)
        .map_err(|e| internal(&e))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| internal(&e))?;
    if let Some(o) = order {
        let ast::OrderByKind::Expressions(list) = &o.kind else {
            return err_at(o.span(), "ORDER BY ALL is not supported");
        };
        let mut keys = Vec::new();
        for e in list {
            let Some(name) = name_of(&e.expr).filter(|n| columns.iter().any(|c| c.eq_ignore_ascii_case(n))) else {
                return err_at(
                    e.expr.span(),
                    format!("ORDER BY {}: order by an output column ({})", e.expr, columns.join(", ")),
                );
            };
            let name = columns.iter().find(|c| c.eq_ignore_ascii_case(&name)).cloned().unwrap_or(name);
            keys.push((name, matches!(e.options.sort, Some(ast::OrderBySort::Desc))));
        }
        rows.sort_by(|a, b| {
            for (k, desc) in &keys {
                let (x, y) = (order_value(a.get(k)), order_value(b.get(k)));
                let ord = x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then_with(|| x.2.cmp(&y.2));
                let ord = if *desc && x.0 != 2 && y.0 != 2 { ord.reverse() } else { ord };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    if let Some(l) = limit {
        let number = |e: &ast::Expr| -> Result<usize, SqlError> {
            match e {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => {
                        n.parse().map_err(|_| SqlError { line: 0, column: 0, message: format!("LIMIT {n}") })
                    }
                    _ => err_at(e.span(), "LIMIT takes a number"),
                },
                _ => err_at(e.span(), "LIMIT takes a number"),
            }
        };
        let (limit, offset) = match &l {
            ast::LimitClause::LimitOffset { limit, offset, limit_by } if limit_by.is_empty() => {
                (limit.as_ref().map(number).transpose()?, offset.as_ref().map(|o| number(&o.value)).transpose()?)
            }
            other => return err_at(other.span(), format!("{other}: use LIMIT n [OFFSET m]")),
        };
        let skip = offset.unwrap_or(0).min(rows.len());
        rows.drain(..skip);
        if let Some(n) = limit {
            rows.truncate(n);
        }
    }
    Ok(Answer { columns, rows, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_entries_split_at_top_level_commas_only() {
        let text = map_literal(&[
            ("a".into(), "f(x, y)".into()),
            ("b,\"c".into(), "\"s, }\" + 'q, \\' ,'".into()),
            ("d".into(), "{\"e\": [1, 2]}".into()),
        ]);
        let got = map_entries(&text).expect("parses");
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[1].0, "b,\"c");
        assert_eq!(map_literal(&got), text);
    }

    #[test]
    fn reads_field_needs_the_whole_name() {
        assert!(reads_field("event.c1 + 1", "c1"));
        assert!(!reads_field("event.c10 + 1", "c1"));
        assert!(!reads_field("event.left.c1", "c1"));
        assert!(reads_field("size(event[\"a b\"])", "a b"));
    }

    #[test]
    fn reroot_leaves_strings_alone() {
        assert_eq!(
            reroot("event.a == \"event.b\" && has(event.c)", "event.left"),
            "event.left.a == \"event.b\" && has(event.left.c)"
        );
    }
}
