//! A compiled fast path for the CEL expressions of YAML pipelines.
//!
//! The cel crate's interpreter needs its input as CEL values: every evaluation used to copy
//! the whole event into a CEL map (a hash map per JSON object, a string per field) and the
//! result back into JSON. That copy was most of a pipeline's time. Here an expression's AST
//! (parsed by the cel crate, macros expanded) is compiled once into a tree of nodes that are
//! evaluated straight over the event's JSON, borrowing its strings.
//!
//! The fast path covers the common subset: `event`/`key`/`ts`, field selection and `has()`,
//! indexes, literals, map literals, `!`/`-`, `&&`/`||`, the conditional, arithmetic and
//! comparisons of operands of one type, `double()`/`int()`/`uint()`/`string()`/`size()` of the
//! types where the result is plain, and `startsWith`/`endsWith`/`contains`.
//!
//! Its one rule is that it never decides anything CEL might decide differently. Whenever an
//! evaluation meets a case outside the plain ones — a missing field, mixed operand types, an
//! overflow, a division by zero, a non-bool condition — it gives up (`None`) and the caller
//! evaluates the expression with the cel interpreter, which gives the result or the error
//! message it always gave. An expression using anything not compiled here (comprehensions,
//! lists, other functions) is not compiled at all. `tests::agrees_with_cel` checks the two
//! against each other over a grid of expressions and events.

use cel::common::ast::{operators as op, EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value as Json;
use weir_stream::Event;

/// A compiled expression.
#[derive(Debug)]
pub struct Fast {
    root: Node,
}

#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Event,
    Key,
    Ts,
    /// `event.a.b…`: a path from the event, looked up in one go.
    Path(Vec<String>),
    Select(Box<Node>, String),
    Has(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    /// `double(x)`, `int(x)`, `uint(x)`, `string(x)`, `size(x)`.
    Conv(Conv, Box<Node>),
    /// `s.startsWith(t)`, `s.endsWith(t)`, `s.contains(t)`.
    StrTest(StrTest, Box<Node>, Box<Node>),
    /// A map literal with string-literal keys, each once.
    Map(Vec<(String, Node)>),
    /// `x in ['a', 'b']`: a list literal of strings, or of ints.
    InList(Box<Node>, InList),
    /// `'f' in m`: a key of a map.
    InMap(Box<Node>, Box<Node>),
}

#[derive(Debug)]
enum InList {
    Strs(Vec<String>),
    Ints(Vec<i64>),
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
enum Conv {
    Double,
    Int,
    UInt,
    String,
    Size,
}

#[derive(Debug, Clone, Copy)]
enum StrTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// A value during evaluation; strings, lists and maps are borrowed from the event or the
/// expression.
#[derive(Debug, Clone)]
enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
    String(String),
    /// A JSON array or object of the event.
    Json(&'a Json),
}

impl Val<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::String(s) => Some(s),
            _ => None,
        }
    }

    fn into_json(self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(b),
            Val::Int(i) => Json::from(i),
            Val::UInt(u) => Json::from(u),
            // As the cel crate's `json()`: NaN and infinities become null.
            Val::Float(f) => Json::from(f),
            Val::Str(s) => Json::String(s.to_owned()),
            Val::String(s) => Json::String(s),
            Val::Json(j) => j.clone(),
        }
    }
}

/// JSON as CEL sees it (as `json_to_cel` converts): integers that fit in i64 are `int`.
fn from_json(j: &Json) -> Val<'_> {
    match j {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Val::Int(i),
            (None, Some(u)) => Val::UInt(u),
            _ => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Val::Str(s),
        Json::Array(_) | Json::Object(_) => Val::Json(j),
    }
}

impl Fast {
    /// Compiles the parsed expression; None when it uses anything the fast path leaves to CEL.
    pub fn compile(expr: &IdedExpr) -> Option<Fast> {
        Some(Fast { root: node(expr)? })
    }

    /// The value as JSON, or None: ask CEL.
    pub fn eval_json(&self, ev: &Event) -> Option<Json> {
        json_of(&self.root, ev)
    }

    /// The value when it is a bool, or None: ask CEL (which also reports a non-bool result).
    pub fn eval_bool(&self, ev: &Event) -> Option<bool> {
        match eval(&self.root, ev)? {
            Val::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a key (`yaml::key_text`): a string as it is, null as none, other values
    /// as their JSON text; None: ask CEL.
    pub fn eval_key(&self, ev: &Event) -> Option<Option<String>> {
        match eval(&self.root, ev)? {
            Val::Null => Some(None),
            Val::Str(s) => Some(Some(s.to_owned())),
            Val::String(s) => Some(Some(s)),
            // A NaN or infinity is null as JSON, so no key.
            other => Some(crate::yaml::key_text(&other.into_json())),
        }
    }

    /// The value as an event time (an integer, or a double truncated); None: ask CEL.
    pub fn eval_time(&self, ev: &Event) -> Option<i64> {
        match eval(&self.root, ev)? {
            Val::Int(i) => Some(i),
            Val::UInt(u) => i64::try_from(u).ok(),
            Val::Float(f) if f.is_finite() => Some(f as i64),
            _ => None,
        }
    }
}

impl Fast {
    /// Adds what the expression reads of `event` to `p`; false when it reads the event as a
    /// whole or at a computed path (no projection can serve it).
    pub fn reads(&self, p: &mut crate::projection::Projection) -> bool {
        reads(&self.root, p)
    }
}

/// The path from the event a node spells: `event` is [], `event.a.b` and `event['a'].b` are
/// [a, b].
fn event_path(n: &Node) -> Option<Vec<&str>> {
    match n {
        Node::Event => Some(Vec::new()),
        Node::Path(p) => Some(p.iter().map(String::as_str).collect()),
        Node::Index(operand, index) => match &**index {
            Node::Str(s) => {
                let mut p = event_path(operand)?;
                p.push(s);
                Some(p)
            }
            _ => None,
        },
        _ => None,
    }
}

fn reads(n: &Node, p: &mut crate::projection::Projection) -> bool {
    if let Some(path) = event_path(n) {
        if path.is_empty() {
            return false;
        }
        p.read(&path);
        return true;
    }
    match n {
        Node::Has(operand, field) => match event_path(operand) {
            Some(mut path) => {
                path.push(field);
                p.test(&path);
                true
            }
            None => reads(operand, p),
        },
        Node::Null | Node::Bool(_) | Node::Int(_) | Node::UInt(_) | Node::Float(_) | Node::Str(_) => true,
        Node::Key | Node::Ts => true,
        Node::Event | Node::Path(_) => unreachable!("paths are handled above"),
        Node::Select(a, _) | Node::Not(a) | Node::Neg(a) | Node::Conv(_, a) => reads(a, p),
        Node::Index(a, b)
        | Node::And(a, b)
        | Node::Or(a, b)
        | Node::Arith(_, a, b)
        | Node::Cmp(_, a, b)
        | Node::StrTest(_, a, b) => reads(a, p) && reads(b, p),
        Node::Cond(c, a, b) => reads(c, p) && reads(a, p) && reads(b, p),
        Node::Map(entries) => entries.iter().all(|(_, v)| reads(v, p)),
        Node::InList(x, _) => reads(x, p),
        // The map is read whole (which of its keys is asked may be computed).
        Node::InMap(x, m) => reads(x, p) && reads(m, p),
    }
}

fn boxed(e: &IdedExpr) -> Option<Box<Node>> {
    node(e).map(Box::new)
}

fn node(e: &IdedExpr) -> Option<Node> {
    Some(match &e.expr {
        Expr::Literal(l) => match l {
            LiteralValue::Null => Node::Null,
            LiteralValue::Boolean(b) => Node::Bool(*b.inner()),
            LiteralValue::Int(i) => Node::Int(*i.inner()),
            LiteralValue::UInt(u) => Node::UInt(*u.inner()),
            LiteralValue::Double(f) => Node::Float(*f.inner()),
            LiteralValue::String(s) => Node::Str(s.inner().to_owned()),
            LiteralValue::Bytes(_) => return None,
        },
        Expr::Ident(name) => match name.as_str() {
            "event" => Node::Event,
            "key" => Node::Key,
            "ts" => Node::Ts,
            _ => return None,
        },
        Expr::Select(s) => {
            let operand = node(&s.operand)?;
            match (operand, s.test) {
                (operand, true) => Node::Has(Box::new(operand), s.field.clone()),
                (Node::Event, false) => Node::Path(vec![s.field.clone()]),
                (Node::Path(mut p), false) => {
                    p.push(s.field.clone());
                    Node::Path(p)
                }
                (operand, false) => Node::Select(Box::new(operand), s.field.clone()),
            }
        }
        Expr::Map(m) => {
            let mut entries: Vec<(String, Node)> = Vec::with_capacity(m.entries.len());
            for entry in &m.entries {
                let EntryExpr::MapEntry(entry) = &entry.expr else { return None };
                let Expr::Literal(LiteralValue::String(k)) = &entry.key.expr else { return None };
                // Optional entries and repeated keys are CEL's to decide.
                if entry.optional || entries.iter().any(|(e, _)| e == k.inner()) {
                    return None;
                }
                entries.push((k.inner().to_owned(), node(&entry.value)?));
            }
            Node::Map(entries)
        }
        Expr::Call(call) => {
            let args = &call.args;
            let unary = |f: fn(Box<Node>) -> Node| -> Option<Node> {
                match (&call.target, args.as_slice()) {
                    (None, [a]) => Some(f(boxed(a)?)),
                    _ => None,
                }
            };
            let binary = |f: &dyn Fn(Box<Node>, Box<Node>) -> Node| -> Option<Node> {
                match (&call.target, args.as_slice()) {
                    (None, [a, b]) => Some(f(boxed(a)?, boxed(b)?)),
                    _ => None,
                }
            };
            match call.func_name.as_str() {
                op::LOGICAL_NOT => unary(Node::Not)?,
                op::NEGATE => unary(Node::Neg)?,
                op::LOGICAL_AND => binary(&Node::And)?,
                op::LOGICAL_OR => binary(&Node::Or)?,
                op::INDEX => binary(&Node::Index)?,
                op::ADD => binary(&|a, b| Node::Arith(Arith::Add, a, b))?,
                op::SUBSTRACT => binary(&|a, b| Node::Arith(Arith::Sub, a, b))?,
                op::MULTIPLY => binary(&|a, b| Node::Arith(Arith::Mul, a, b))?,
                op::DIVIDE => binary(&|a, b| Node::Arith(Arith::Div, a, b))?,
                op::MODULO => binary(&|a, b| Node::Arith(Arith::Rem, a, b))?,
                op::EQUALS => binary(&|a, b| Node::Cmp(Cmp::Eq, a, b))?,
                op::NOT_EQUALS => binary(&|a, b| Node::Cmp(Cmp::Ne, a, b))?,
                op::LESS => binary(&|a, b| Node::Cmp(Cmp::Lt, a, b))?,
                op::LESS_EQUALS => binary(&|a, b| Node::Cmp(Cmp::Le, a, b))?,
                op::GREATER => binary(&|a, b| Node::Cmp(Cmp::Gt, a, b))?,
                op::GREATER_EQUALS => binary(&|a, b| Node::Cmp(Cmp::Ge, a, b))?,
                op::IN => match (&call.target, args.as_slice()) {
                    (None, [x, container]) => in_node(x, container)?,
                    _ => return None,
                },
                op::CONDITIONAL => match (&call.target, args.as_slice()) {
                    (None, [c, a, b]) => Node::Cond(boxed(c)?, boxed(a)?, boxed(b)?),
                    _ => return None,
                },
                "double" => unary(|a| Node::Conv(Conv::Double, a))?,
                "int" => unary(|a| Node::Conv(Conv::Int, a))?,
                "uint" => unary(|a| Node::Conv(Conv::UInt, a))?,
                "string" => unary(|a| Node::Conv(Conv::String, a))?,
                "size" => match (&call.target, args.as_slice()) {
                    (None, [a]) => Node::Conv(Conv::Size, boxed(a)?),
                    (Some(t), []) => Node::Conv(Conv::Size, boxed(t)?),
                    _ => return None,
                },
                name @ ("startsWith" | "endsWith" | "contains") => match (&call.target, args.as_slice()) {
                    (Some(t), [a]) => {
                        let test = match name {
                            "startsWith" => StrTest::StartsWith,
                            "endsWith" => StrTest::EndsWith,
                            _ => StrTest::Contains,
                        };
                        Node::StrTest(test, boxed(t)?, boxed(a)?)
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
        Expr::Comprehension(_) | Expr::List(_) | Expr::Struct(_) | Expr::Unspecified => return None,
    })
}

/// `x in <list literal>` (strings only, or ints only) or `x in <map>`.
fn in_node(x: &IdedExpr, container: &IdedExpr) -> Option<Node> {
    let x = boxed(x)?;
    let Expr::List(list) = &container.expr else { return Some(Node::InMap(x, boxed(container)?)) };
    if !list.optional_indices.is_empty() {
        return None;
    }
    let lits = list.elements.iter().map(|e| match &e.expr {
        Expr::Literal(l) => Some(l),
        _ => None,
    });
    let lits: Vec<&LiteralValue> = lits.collect::<Option<_>>()?;
    if let Some(strs) = lits
        .iter()
        .map(|l| if let LiteralValue::String(s) = l { Some(s.inner().to_owned()) } else { None })
        .collect::<Option<Vec<String>>>()
    {
        return Some(Node::InList(x, InList::Strs(strs)));
    }
    let ints = lits.iter().map(|l| if let LiteralValue::Int(i) = l { Some(*i.inner()) } else { None });
    Some(Node::InList(x, InList::Ints(ints.collect::<Option<Vec<i64>>>()?)))
}

fn json_of(n: &Node, ev: &Event) -> Option<Json> {
    match n {
        Node::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                m.insert(k.clone(), json_of(v, ev)?);
            }
            Some(Json::Object(m))
        }
        Node::Cond(c, a, b) => match eval(c, ev)? {
            Val::Bool(true) => json_of(a, ev),
            Val::Bool(false) => json_of(b, ev),
            _ => None,
        },
        other => eval(other, ev).map(Val::into_json),
    }
}

fn eval<'a>(n: &'a Node, ev: &'a Event) -> Option<Val<'a>> {
    Some(match n {
        Node::Null => Val::Null,
        Node::Bool(b) => Val::Bool(*b),
        Node::Int(i) => Val::Int(*i),
        Node::UInt(u) => Val::UInt(*u),
        Node::Float(f) => Val::Float(*f),
        Node::Str(s) => Val::Str(s),
        Node::Event => from_json(&ev.value),
        Node::Key => ev.key.as_deref().map_or(Val::Null, Val::Str),
        Node::Ts => Val::Int(ev.timestamp_ms),
        Node::Path(path) => {
            let mut v = &ev.value;
            for p in path {
                // A missing field or a non-map is CEL's error to word.
                v = v.as_object()?.get(p)?;
            }
            from_json(v)
        }
        Node::Select(operand, field) => match eval(operand, ev)? {
            Val::Json(Json::Object(m)) => from_json(m.get(field)?),
            _ => return None,
        },
        Node::Has(operand, field) => match eval(operand, ev)? {
            Val::Json(Json::Object(m)) => Val::Bool(m.contains_key(field)),
            _ => return None,
        },
        Node::Index(operand, index) => match (eval(operand, ev)?, eval(index, ev)?) {
            (Val::Json(Json::Object(m)), i) => from_json(m.get(i.as_str()?)?),
            (Val::Json(Json::Array(a)), Val::Int(i)) => from_json(a.get(usize::try_from(i).ok()?)?),
            _ => return None,
        },
        Node::Not(a) => match eval(a, ev)? {
            Val::Bool(b) => Val::Bool(!b),
            _ => return None,
        },
        Node::Neg(a) => match eval(a, ev)? {
            Val::Int(i) => Val::Int(i.checked_neg()?),
            Val::Float(f) => Val::Float(-f),
            _ => return None,
        },
        Node::And(a, b) => Val::Bool(logic(a, b, false, ev)?),
        Node::Or(a, b) => Val::Bool(logic(a, b, true, ev)?),
        Node::Cond(c, a, b) => match eval(c, ev)? {
            Val::Bool(true) => eval(a, ev)?,
            Val::Bool(false) => eval(b, ev)?,
            _ => return None,
        },
        Node::Arith(o, a, b) => arith(*o, eval(a, ev)?, eval(b, ev)?)?,
        Node::Cmp(o, a, b) => Val::Bool(compare(*o, &eval(a, ev)?, &eval(b, ev)?)?),
        Node::Conv(c, a) => convert(*c, eval(a, ev)?)?,
        Node::StrTest(t, s, a) => {
            let (s, a) = (eval(s, ev)?, eval(a, ev)?);
            let (s, a) = (s.as_str()?, a.as_str()?);
            Val::Bool(match t {
                StrTest::StartsWith => s.starts_with(a),
                StrTest::EndsWith => s.ends_with(a),
                StrTest::Contains => s.contains(a),
            })
        }
        Node::Map(_) => return None,
        Node::InList(x, list) => match (eval(x, ev)?, list) {
            // A string equals only strings, an int only ints here (CEL compares ints with
            // uints and doubles too: those are left to it).
            (Val::Str(s), InList::Strs(l)) => Val::Bool(l.iter().any(|e| e == s)),
            (Val::String(s), InList::Strs(l)) => Val::Bool(l.contains(&s)),
            (Val::Int(i), InList::Ints(l)) => Val::Bool(l.contains(&i)),
            _ => return None,
        },
        Node::InMap(x, m) => match (eval(x, ev)?, eval(m, ev)?) {
            (k, Val::Json(Json::Object(m))) => Val::Bool(m.contains_key(k.as_str()?)),
            _ => return None,
        },
    })
}

/// `a && b` (`decisive` false) or `a || b` (true): `a` decides alone when it is `decisive`;
/// both must be bools.
fn logic(a: &Node, b: &Node, decisive: bool, ev: &Event) -> Option<bool> {
    match eval(a, ev)? {
        Val::Bool(x) if x == decisive => Some(x),
        Val::Bool(_) => match eval(b, ev)? {
            Val::Bool(y) => Some(y),
            _ => None,
        },
        _ => None,
    }
}

fn arith<'a>(o: Arith, a: Val<'a>, b: Val<'a>) -> Option<Val<'a>> {
    Some(match (a, b) {
        (Val::Int(l), Val::Int(r)) => Val::Int(match o {
            Arith::Add => l.checked_add(r)?,
            Arith::Sub => l.checked_sub(r)?,
            Arith::Mul => l.checked_mul(r)?,
            Arith::Div => l.checked_div(r)?,
            Arith::Rem => l.checked_rem(r)?,
        }),
        (Val::UInt(l), Val::UInt(r)) => Val::UInt(match o {
            Arith::Add => l.checked_add(r)?,
            Arith::Sub => l.checked_sub(r)?,
            Arith::Mul => l.checked_mul(r)?,
            Arith::Div => l.checked_div(r)?,
            Arith::Rem => l.checked_rem(r)?,
        }),
        (Val::Float(l), Val::Float(r)) => Val::Float(match o {
            Arith::Add => l + r,
            Arith::Sub => l - r,
            Arith::Mul => l * r,
            Arith::Div => l / r,
            Arith::Rem => return None,
        }),
        (a, b) if matches!(o, Arith::Add) => {
            let (l, r) = (a.as_str()?, b.as_str()?);
            let mut s = String::with_capacity(l.len() + r.len());
            s.push_str(l);
            s.push_str(r);
            Val::String(s)
        }
        _ => return None,
    })
}

/// A comparison of two values of one scalar type; None (ask CEL) for anything else.
fn compare(o: Cmp, a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Int(l), Val::Int(r)) => Some(l.cmp(r)),
        (Val::UInt(l), Val::UInt(r)) => Some(l.cmp(r)),
        (Val::Float(l), Val::Float(r)) => {
            if l.is_nan() || r.is_nan() {
                return None;
            }
            l.partial_cmp(r)
        }
        (Val::Bool(l), Val::Bool(r)) if matches!(o, Cmp::Eq | Cmp::Ne) => Some(l.cmp(r)),
        (Val::Null, Val::Null) if matches!(o, Cmp::Eq | Cmp::Ne) => Some(Ordering::Equal),
        // Null equals no scalar (`key == 'vip'` with no key is false, as in CEL).
        // …nor any list or map (`event.Bid != null`, SQL's IS NOT NULL of a ROW).
        (Val::Null, _) | (_, Val::Null) if matches!(o, Cmp::Eq | Cmp::Ne) => Some(Ordering::Less),
        (l, r) => Some(l.as_str()?.cmp(r.as_str()?)),
    };
    let ord = ord?;
    Some(match o {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    })
}

fn convert(c: Conv, a: Val<'_>) -> Option<Val<'_>> {
    Some(match (c, a) {
        (Conv::Double, Val::Int(i)) => Val::Float(i as f64),
        (Conv::Double, Val::UInt(u)) => Val::Float(u as f64),
        (Conv::Double, Val::Float(f)) => Val::Float(f),
        (Conv::Int, Val::Int(i)) => Val::Int(i),
        (Conv::Int, Val::UInt(u)) => Val::Int(i64::try_from(u).ok()?),
        // As the cel crate: a decimal integer as Rust parses it.
        (Conv::Int, Val::Str(s)) => Val::Int(s.parse().ok()?),
        (Conv::Int, Val::String(s)) => Val::Int(s.parse().ok()?),
        // Truncated, within (i64::MIN, i64::MAX) exclusive as the cel crate bounds it.
        (Conv::Int, Val::Float(f)) if f > i64::MIN as f64 && f < i64::MAX as f64 => Val::Int(f as i64),
        (Conv::UInt, Val::UInt(u)) => Val::UInt(u),
        (Conv::UInt, Val::Int(i)) => Val::UInt(u64::try_from(i).ok()?),
        (Conv::String, Val::Int(i)) => Val::String(i.to_string()),
        (Conv::String, Val::UInt(u)) => Val::String(u.to_string()),
        (Conv::String, s @ (Val::Str(_) | Val::String(_))) => s,
        (Conv::Size, Val::Str(s)) => Val::Int(s.chars().count() as i64),
        (Conv::Size, Val::String(s)) => Val::Int(s.chars().count() as i64),
        (Conv::Size, Val::Json(Json::Array(a))) => Val::Int(a.len() as i64),
        (Conv::Size, Val::Json(Json::Object(m))) => Val::Int(m.len() as i64),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::yaml::Expr;
    use serde_json::json;
    use weir_stream::Event;

    fn events() -> Vec<Event> {
        let values = [
            json!({"Bid": {"auction": 1007, "bidder": 2001, "price": 12345, "date_time": 1700000000123_i64, "channel": "Google", "url": "https://a.b/c", "extra": ""}}),
            json!({"Auction": {"id": 1000, "seller": 1001, "category": 10, "date_time": 1700000000000_i64, "expires": 1700000009000_i64, "item_name": "héllo wörld"}}),
            json!({"Person": {"id": 1001, "name": "vicky", "city": "cheyenne", "state": "az", "date_time": 1700000000000_i64}}),
            json!({"amount": 12.5, "n": -3, "big": u64::MAX, "min": i64::MIN, "s": "abc", "t": "abd", "flag": true, "none": null, "list": [1, "x", 2.5], "nested": {"a": {"b": 7}}}),
            json!({"amount": 0, "n": 0, "s": "", "flag": false, "nan_like": 1e308, "neg": -0.0}),
            json!([1, 2, 3]),
            json!("just a string"),
            json!(null),
        ];
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| Event::new((i % 2 == 0).then_some("k1"), v, 1_700_000_000_000 + i as i64))
            .collect()
    }

    const EXPRS: &[&str] = &[
        "has(event.Bid)",
        "has(event.Bid) ? event.Bid.date_time : has(event.Auction) ? event.Auction.date_time : event.Person.date_time",
        "has(event.Bid) && event.Bid.auction % 123 == 0",
        "{'auction': event.Bid.auction, 'bidder': event.Bid.bidder, 'price': double(event.Bid.price) * 0.908, 'date_time': event.Bid.date_time}",
        "{'auction': event.Bid.auction, 'price': event.Bid.price}",
        "{'a': {'b': event.n, 'c': [1]}}",
        "{'a': {'b': event.n, 'c': key}}",
        "event.Bid.price * 100 + 1",
        "event.Bid.price / 0",
        "event.Bid.price % 0",
        "event.n / 2",
        "event.n % 2",
        "-event.n",
        "-event.min",
        "event.min - 1",
        "event.min / -1",
        "event.big + 1u",
        "event.big",
        "event.amount * 2.0",
        "event.amount * 2",
        "event.amount / 0.0",
        "event.amount % 2.0",
        "event.amount > 10.0",
        "event.amount > 10",
        "event.n < 0",
        "event.n == 0",
        "event.n != 0",
        "event.n >= -3 && event.n <= -3",
        "event.s + '-' + event.t",
        "event.s < event.t",
        "event.s == 'abc'",
        "event.s + 1",
        "event.s.startsWith('a')",
        "event.s.endsWith('bc')",
        "event.s.contains('b')",
        "event.Auction.item_name.contains('wö')",
        "size(event.s)",
        "event.s.size()",
        "size(event.Auction.item_name)",
        "size(event.list)",
        "size(event)",
        "event.list[0]",
        "event.list[1]",
        "event.list[5]",
        "event.list[-1]",
        "event['s']",
        "event.nested.a.b",
        "event.nested['a'].b",
        "has(event.nested.a)",
        "has(event.nested.x)",
        "has(event.missing.x)",
        "event.missing",
        "event.none",
        "event.none == null",
        "event.n == null",
        "event.nested != null",
        "event.list == null",
        "null != event.nested.a",
        "event.flag",
        "!event.flag",
        "event.flag == true",
        "event.flag || event.missing",
        "event.missing || true",
        "event.flag && event.n < 0",
        "event.flag ? 'yes' : 'no'",
        "event.n ? 1 : 2",
        "string(event.n)",
        "string(event.big)",
        "string(event.s)",
        "string(event.amount)",
        "string(event.flag)",
        "double(event.n)",
        "double(event.big)",
        "double(event.s)",
        "int(event.amount)",
        "int(event.big)",
        "int(event.n)",
        "int(event.s)",
        "int('42')",
        "int('+42')",
        "int(' 42')",
        "int(string(event.n))",
        "int(event.amount * 1e30)",
        "int(-event.amount)",
        "uint(event.n)",
        "uint(event.big)",
        "key",
        "key + '!'",
        "ts",
        "ts - 1000",
        "ts / 1000 * 1000",
        "key == 'k1'",
        "key != 'k1'",
        "event.none == 1",
        "null == event.s",
        "event.none != event.flag",
        "event.none == event.list",
        "event.neg",
        "event.nan_like * 10.0",
        "event.n + 1.0",
        "1 + 2 * 3",
        "'a' + 'b'",
        "null",
        "true",
        "3u",
        "2.5",
        "event",
        "event.list",
        "event.nested",
        "[1, 2].size()",
        "event.list.exists(x, x == 1)",
        "event.s in ['abc', 'x']",
        "event.s in ['x']",
        "event.n in [-3, 4]",
        "event.n in [1, 2]",
        "event.n in [1.0, -3.0]",
        "event.amount in [12, 13]",
        "event.big in [1, 2]",
        "key in ['k1']",
        "event.Person.state in ['or', 'id', 'az']",
        "has(event.Person) && event.Person.state in ['or', 'id', 'ca']",
        "'s' in event",
        "'zz' in event",
        "'a' in event.nested",
        "'b' in event.nested.a",
        "1 in event.nested",
        "event.s in event.nested",
        "event.s in [event.t]",
        "event.s in []",
    ];

    #[test]
    fn agrees_with_cel() {
        let mut fast_hits = 0;
        for src in EXPRS {
            let e = Expr::compile(src).expect(src);
            for ev in events() {
                let cel = e.eval_cel(&ev);
                if let Some(f) = e.fast() {
                    if let Some(v) = f.eval_json(&ev) {
                        fast_hits += 1;
                        assert_eq!(cel.as_ref(), Ok(&v), "{src} over {}", ev.value);
                    }
                    if let Some(b) = f.eval_bool(&ev) {
                        assert_eq!(cel.as_ref(), Ok(&serde_json::Value::Bool(b)), "{src} as a bool over {}", ev.value);
                    }
                    if let Some(k) = f.eval_key(&ev) {
                        assert_eq!(cel.as_ref().map(crate::yaml::key_text), Ok(k), "{src} as a key over {}", ev.value);
                    }
                    if let Some(t) = f.eval_time(&ev) {
                        assert_eq!(
                            cel.as_ref().map(crate::yaml::time_of),
                            Ok(Some(t)),
                            "{src} as a time over {}",
                            ev.value
                        );
                    }
                }
                // Whatever path answers, the answer is the one given before the fast path.
                let before = match e.lookup(&ev) {
                    Some(r) => r.cloned(),
                    None => cel,
                };
                assert_eq!(e.eval(&ev), before, "{src} over {}", ev.value);
            }
        }
        // The grid exercises the fast path, not only the fallback.
        assert!(fast_hits > 150, "only {fast_hits} fast evaluations");
    }

    #[test]
    fn the_nexmark_expressions_are_compiled() {
        for src in &EXPRS[..5] {
            assert!(Expr::compile(src).expect(src).is_fast(), "{src}");
        }
        // q3's side predicate.
        assert!(Expr::compile("has(event.Person) && event.Person.state in ['or', 'id', 'ca']")
            .expect("parses")
            .is_fast());
        assert!(!Expr::compile("event.list.exists(x, x == 1)").expect("parses").is_fast());
        assert!(!Expr::compile("{'a': 1, 'a': 2}").expect("parses").is_fast());
    }
}
