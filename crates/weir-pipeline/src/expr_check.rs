//! Static checks of the CEL expressions in a YAML pipeline spec, so that `weir pipeline
//! validate` reports what would otherwise fail on every event at run time: an undeclared
//! identifier, a function the cel crate does not provide, an operator applied to operands it
//! never accepts, or a result of the wrong type (a filter that is not a bool).
//!
//! The expression is parsed exactly as [`crate::yaml::Expr`] parses it (`cel::Program::compile`,
//! the standard macros expanded) and its AST walked with a small type inference: every
//! sub-expression gets the set of CEL types it may have. Literals, operators and the standard
//! functions narrow the set; a variable or a field of one (`event.amount`) may be anything.
//! An error is reported only when a set is known not to contain what is needed, so whatever
//! the checker accepts may still fail on a particular event, but nothing it rejects could ever
//! succeed.
//!
//! Whether a function exists, and whether a name is a type (`int`, `string`), is asked of the
//! cel crate's own standard environment, the one expressions run in, rather than of a list
//! copied from it: the answer cannot drift when the crate changes.

use cel::common::ast::{
    operators as op, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, StructExpr,
};
use cel::ExecutionError;

/// What the expression's result must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Bool,
    List,
    Map,
    Any,
}

impl Expect {
    fn kinds(self) -> Kinds {
        match self {
            Expect::Bool => Kinds::BOOL,
            Expect::List => Kinds::LIST,
            Expect::Map => Kinds::MAP,
            Expect::Any => Kinds::ANY,
        }
    }
}

/// Static check of a CEL expression: parses it with the cel crate's parser and walks the AST.
///
/// Errors (a human message naming the problem and the identifier or operator):
/// - an identifier that is not in `vars`, not bound by a comprehension macro
///   (`all`/`exists`/`exists_one`/`map`/`filter` bind their first argument) and not a CEL
///   type name (`int`, `string`, ...);
/// - a call to a function the cel crate does not provide, globally (`f(x)`) or as a method
///   (`x.f()`), as the interpreter tells them apart;
/// - an operator whose operands have types it never accepts (`1 + 'a'`, `1 + 2.0`: CEL has no
///   mixed arithmetic), a non-bool condition or logical operand, a non-bool macro predicate;
/// - a result whose type is statically known and does not match `expect`.
///
/// Where a type is not known (a field of `event`, a ternary of unknowns), it is accepted.
pub fn check(source: &str, vars: &[&str], expect: Expect) -> Result<(), String> {
    let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
    let root = program.expression();
    let mut checker = Checker { vars, scopes: Vec::new(), macro_vars: Vec::new() };
    collect_macro_vars(root, &mut checker.macro_vars);
    let kinds = checker.infer(root)?;
    let want = expect.kinds();
    if kinds.intersects(want) {
        Ok(())
    } else {
        Err(format!(
            "`{}` has type {} ({}), expected {}",
            render(root),
            kinds.describe(),
            origin(root),
            want.describe()
        ))
    }
}

/// The field names a map expression produces, when it is a map literal with string-literal
/// keys (`{'customer': event.customer, 'amount': event.amount * 100}` → customer, amount), in
/// the order written, each once; `None` when it cannot know (anything else, a parse error
/// included).
pub fn map_literal_fields(source: &str) -> Option<Vec<String>> {
    let program = cel::Program::compile(source).ok()?;
    let Expr::Map(map) = &program.expression().expr else {
        return None;
    };
    let mut fields: Vec<String> = Vec::with_capacity(map.entries.len());
    for entry in &map.entries {
        let EntryExpr::MapEntry(entry) = &entry.expr else {
            return None;
        };
        // An optional entry (`?'k': v`) may be absent: the fields are not known.
        if entry.optional {
            return None;
        }
        let Expr::Literal(LiteralValue::String(key)) = &entry.key.expr else {
            return None;
        };
        if !fields.iter().any(|f| f == key.inner()) {
            fields.push(key.inner().to_owned());
        }
    }
    Some(fields)
}

/// The top-level `event.<field>` names an expression reads (`event.amount * 2 + event.x.y` →
/// amount, x), also `event['field']`, `has(event.field)` and `'field' in event`, in the order
/// first read, each once. A comprehension variable named `event` hides the event inside its
/// macro. Reads of computed fields (`event[k]`) and of the whole event (`size(event)`) name no
/// field and are not reported. A parse error reads nothing.
///
/// Used to check that a later step does not read a field an earlier map removed.
pub fn event_fields_read(source: &str) -> Vec<String> {
    let mut fields = Vec::new();
    if let Ok(program) = cel::Program::compile(source) {
        fields_read(program.expression(), false, &mut fields);
    }
    fields
}

fn fields_read(e: &IdedExpr, event_hidden: bool, out: &mut Vec<String>) {
    let mut push = |field: &str| {
        if !out.iter().any(|f| f == field) {
            out.push(field.to_owned());
        }
    };
    let is_event = |e: &IdedExpr| !event_hidden && matches!(&e.expr, Expr::Ident(n) if n == "event");
    match &e.expr {
        Expr::Select(select) if is_event(&select.operand) => push(&select.field),
        Expr::Select(select) => fields_read(&select.operand, event_hidden, out),
        Expr::Call(call) => {
            if call.target.is_none() && call.args.len() == 2 {
                let read = match call.func_name.as_str() {
                    op::INDEX if is_event(&call.args[0]) => string_literal(&call.args[1]),
                    op::IN if is_event(&call.args[1]) => string_literal(&call.args[0]),
                    _ => None,
                };
                if let Some(field) = read {
                    push(field);
                    return;
                }
            }
            for arg in call.target.as_deref().into_iter().chain(&call.args) {
                fields_read(arg, event_hidden, out);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                fields_read(element, event_hidden, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    fields_read(&entry.key, event_hidden, out);
                    fields_read(&entry.value, event_hidden, out);
                }
            }
        }
        Expr::Struct(strct) => {
            for entry in &strct.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    fields_read(&field.value, event_hidden, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            fields_read(&c.iter_range, event_hidden, out);
            fields_read(&c.accu_init, event_hidden, out);
            let hidden = event_hidden
                || c.iter_var == "event"
                || c.iter_var2.as_deref() == Some("event")
                || c.accu_var == "event";
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                fields_read(part, hidden, out);
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// A set of CEL types, one bit each: what an expression may evaluate to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kinds(u16);

impl Kinds {
    const NULL: Kinds = Kinds(1);
    const BOOL: Kinds = Kinds(1 << 1);
    const INT: Kinds = Kinds(1 << 2);
    const UINT: Kinds = Kinds(1 << 3);
    const DOUBLE: Kinds = Kinds(1 << 4);
    const STRING: Kinds = Kinds(1 << 5);
    const BYTES: Kinds = Kinds(1 << 6);
    const LIST: Kinds = Kinds(1 << 7);
    const MAP: Kinds = Kinds(1 << 8);
    const TIMESTAMP: Kinds = Kinds(1 << 9);
    const DURATION: Kinds = Kinds(1 << 10);
    const TYPE: Kinds = Kinds(1 << 11);
    const OPTIONAL: Kinds = Kinds(1 << 12);
    /// Struct and opaque values: nothing a JSON event holds.
    const OTHER: Kinds = Kinds(1 << 13);
    const ANY: Kinds = Kinds((1 << 14) - 1);
    const NONE: Kinds = Kinds(0);
    const NUMBER: Kinds = Kinds::INT.or(Kinds::UINT).or(Kinds::DOUBLE);

    const NAMES: [(Kinds, &'static str); 14] = [
        (Kinds::NULL, "null"),
        (Kinds::BOOL, "bool"),
        (Kinds::INT, "int"),
        (Kinds::UINT, "uint"),
        (Kinds::DOUBLE, "double"),
        (Kinds::STRING, "string"),
        (Kinds::BYTES, "bytes"),
        (Kinds::LIST, "list"),
        (Kinds::MAP, "map"),
        (Kinds::TIMESTAMP, "timestamp"),
        (Kinds::DURATION, "duration"),
        (Kinds::TYPE, "type"),
        (Kinds::OPTIONAL, "optional"),
        (Kinds::OTHER, "struct"),
    ];

    const fn or(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    fn intersects(self, other: Kinds) -> bool {
        self.0 & other.0 != 0
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `int`, `int or double`, `int, uint or double`; `any type` for the full set.
    fn describe(self) -> String {
        if self == Kinds::ANY {
            return "any type".to_owned();
        }
        let names: Vec<&str> =
            Kinds::NAMES.iter().filter(|(k, _)| self.intersects(*k)).map(|(_, name)| *name).collect();
        match names.split_last() {
            None => "no type".to_owned(),
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

/// `(left, right, result)`: the operand types an operator accepts, and what it then yields.
/// These mirror the cel crate's `Adder`, `Subtractor`, ... implementations: arithmetic only
/// between operands of the same type, plus the timestamp and duration forms.
type Rule = (Kinds, Kinds, Kinds);

const SAME_NUMBER: [Rule; 3] = [
    (Kinds::INT, Kinds::INT, Kinds::INT),
    (Kinds::UINT, Kinds::UINT, Kinds::UINT),
    (Kinds::DOUBLE, Kinds::DOUBLE, Kinds::DOUBLE),
];

const ADD_RULES: [Rule; 9] = [
    SAME_NUMBER[0],
    SAME_NUMBER[1],
    SAME_NUMBER[2],
    (Kinds::STRING, Kinds::STRING, Kinds::STRING),
    (Kinds::BYTES, Kinds::BYTES, Kinds::BYTES),
    (Kinds::LIST, Kinds::LIST, Kinds::LIST),
    (Kinds::TIMESTAMP, Kinds::DURATION, Kinds::TIMESTAMP),
    (Kinds::DURATION, Kinds::TIMESTAMP, Kinds::TIMESTAMP),
    (Kinds::DURATION, Kinds::DURATION, Kinds::DURATION),
];

const SUBTRACT_RULES: [Rule; 6] = [
    SAME_NUMBER[0],
    SAME_NUMBER[1],
    SAME_NUMBER[2],
    (Kinds::TIMESTAMP, Kinds::DURATION, Kinds::TIMESTAMP),
    (Kinds::TIMESTAMP, Kinds::TIMESTAMP, Kinds::DURATION),
    (Kinds::DURATION, Kinds::DURATION, Kinds::DURATION),
];

const MODULO_RULES: [Rule; 2] = [SAME_NUMBER[0], SAME_NUMBER[1]];

/// Ordering comparisons: numbers compare across int, uint and double; the other ordered
/// types only with themselves.
const COMPARE_RULES: [Rule; 6] = [
    (Kinds::NUMBER, Kinds::NUMBER, Kinds::BOOL),
    (Kinds::BOOL, Kinds::BOOL, Kinds::BOOL),
    (Kinds::STRING, Kinds::STRING, Kinds::BOOL),
    (Kinds::BYTES, Kinds::BYTES, Kinds::BOOL),
    (Kinds::TIMESTAMP, Kinds::TIMESTAMP, Kinds::BOOL),
    (Kinds::DURATION, Kinds::DURATION, Kinds::BOOL),
];

fn binary_rules(func_name: &str) -> Option<&'static [Rule]> {
    Some(match func_name {
        op::ADD => &ADD_RULES,
        op::SUBSTRACT => &SUBTRACT_RULES,
        op::MULTIPLY | op::DIVIDE => &SAME_NUMBER,
        op::MODULO => &MODULO_RULES,
        op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS => &COMPARE_RULES,
        _ => return None,
    })
}

fn apply_rules(rules: &[Rule], left: Kinds, right: Kinds) -> Kinds {
    rules
        .iter()
        .filter(|(l, r, _)| left.intersects(*l) && right.intersects(*r))
        .fold(Kinds::NONE, |acc, (_, _, result)| acc.or(*result))
}

/// The result type of a standard function, where it has one whatever the overload; any other
/// function the crate provides may return anything.
fn function_result(name: &str) -> Kinds {
    match name {
        "size" | "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate" | "getDayOfWeek"
        | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" | "int" => Kinds::INT,
        "uint" => Kinds::UINT,
        "double" => Kinds::DOUBLE,
        "string" => Kinds::STRING,
        "bytes" => Kinds::BYTES,
        "bool" | "contains" | "startsWith" | "endsWith" | "matches" | "hasValue" => Kinds::BOOL,
        "timestamp" => Kinds::TIMESTAMP,
        "duration" => Kinds::DURATION,
        "type" => Kinds::TYPE,
        "optional.of" | "optional.ofNonZeroValue" | "optional.none" | "or" => Kinds::OPTIONAL,
        _ => Kinds::ANY,
    }
}

/// The standard macros, recognised in their expansion, so a message can name the macro the
/// user wrote and check only the parts the user wrote.
enum Macro<'a> {
    All(&'a IdedExpr),
    Exists(&'a IdedExpr),
    ExistsOne(&'a IdedExpr),
    /// `map(x, f)`, or `map(x, p, f)` with its predicate.
    Map(Option<&'a IdedExpr>, &'a IdedExpr),
    Filter(&'a IdedExpr),
}

impl Macro<'_> {
    fn name(&self) -> &'static str {
        match self {
            Macro::All(_) => "all",
            Macro::Exists(_) => "exists",
            Macro::ExistsOne(_) => "exists_one",
            Macro::Map(..) => "map",
            Macro::Filter(_) => "filter",
        }
    }
}

/// The accumulator every standard macro expansion uses: no user identifier can spell it.
const ACCU: &str = "@result";

fn recognize(c: &ComprehensionExpr) -> Option<Macro<'_>> {
    if c.accu_var != ACCU || c.iter_var2.is_some() {
        return None;
    }
    let Expr::Call(step) = &c.loop_step.expr else {
        return None;
    };
    let appended = appended_element;
    match (&c.accu_init.expr, step.func_name.as_str(), step.args.as_slice()) {
        (Expr::Literal(LiteralValue::Boolean(b)), op::LOGICAL_OR, [accu, pred]) if !*b.inner() && is_accu(accu) => {
            Some(Macro::Exists(pred))
        }
        (Expr::Literal(LiteralValue::Boolean(b)), op::LOGICAL_AND, [accu, pred]) if *b.inner() && is_accu(accu) => {
            Some(Macro::All(pred))
        }
        (Expr::Literal(LiteralValue::Int(_)), op::CONDITIONAL, [pred, _, _]) => Some(Macro::ExistsOne(pred)),
        (Expr::List(_), op::ADD, _) => appended(&c.loop_step).map(|f| Macro::Map(None, f)),
        (Expr::List(_), op::CONDITIONAL, [pred, then, otherwise]) if is_accu(otherwise) => {
            let element = appended(then)?;
            match &element.expr {
                Expr::Ident(name) if *name == c.iter_var => Some(Macro::Filter(pred)),
                _ => Some(Macro::Map(Some(pred), element)),
            }
        }
        _ => None,
    }
}

fn is_accu(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == ACCU)
}

/// The `element` of `@result + [element]`, the step of map and filter.
fn appended_element(e: &IdedExpr) -> Option<&IdedExpr> {
    let Expr::Call(add) = &e.expr else {
        return None;
    };
    if add.func_name != op::ADD || add.args.len() != 2 || !is_accu(&add.args[0]) {
        return None;
    }
    match &add.args[1].expr {
        Expr::List(list) if list.elements.len() == 1 => Some(&list.elements[0]),
        _ => None,
    }
}

struct Checker<'a> {
    vars: &'a [&'a str],
    /// Comprehension variables in scope, innermost last, with their types.
    scopes: Vec<(String, Kinds)>,
    /// Every variable a macro in the expression binds, to explain a use outside it.
    macro_vars: Vec<String>,
}

impl Checker<'_> {
    fn infer(&mut self, e: &IdedExpr) -> Result<Kinds, String> {
        match &e.expr {
            Expr::Literal(literal) => Ok(literal_kinds(literal)),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(select) => {
                let segments = if select.test { None } else { qualified_name(e) };
                if let Some(root) = segments.as_ref().and_then(|s| s.first()) {
                    // `a.b` may name a type: only an error if neither it nor `a` names anything.
                    if !self.in_scope(root) && probe(&e.expr).is_ok() {
                        return Ok(Kinds::ANY);
                    }
                }
                let operand = self.infer(&select.operand)?;
                if !operand.intersects(Kinds::MAP.or(Kinds::OTHER)) {
                    return Err(format!(
                        "`{}` selects the field `{}` of `{}`, which has type {} and no fields",
                        render(e),
                        select.field,
                        render(&select.operand),
                        operand.describe()
                    ));
                }
                Ok(if select.test { Kinds::BOOL } else { Kinds::ANY })
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.infer(element)?;
                }
                Ok(Kinds::LIST)
            }
            Expr::Map(map) => {
                let key_kinds = Kinds::INT.or(Kinds::UINT).or(Kinds::BOOL).or(Kinds::STRING);
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        let key = self.infer(&entry.key)?;
                        if !key.intersects(key_kinds) {
                            return Err(format!(
                                "map key `{}` has type {}: keys must be int, uint, bool or string",
                                render(&entry.key),
                                key.describe()
                            ));
                        }
                        self.infer(&entry.value)?;
                    }
                }
                Ok(Kinds::MAP)
            }
            Expr::Struct(strct) => self.structure(strct),
            Expr::Comprehension(c) => self.comprehension(e, c),
            Expr::Call(call) => self.call(e, call),
            Expr::Unspecified => Ok(Kinds::ANY),
        }
    }

    fn in_scope(&self, name: &str) -> bool {
        self.scopes.iter().any(|(n, _)| n == name) || self.vars.contains(&name)
    }

    fn ident(&self, name: &str) -> Result<Kinds, String> {
        if let Some((_, kinds)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
            return Ok(*kinds);
        }
        if self.vars.contains(&name) {
            return Ok(Kinds::ANY);
        }
        // A type name (`int`, `string`, ...) is a value of its own in CEL.
        if probe(&Expr::Ident(name.to_owned())).is_ok() {
            return Ok(Kinds::TYPE);
        }
        Err(self.unknown_ident(name))
    }

    fn unknown_ident(&self, name: &str) -> String {
        let mut message = if self.vars.is_empty() {
            format!("undeclared identifier `{name}`: no variables are declared")
        } else {
            format!(
                "undeclared identifier `{name}`: an expression can read {}",
                self.vars.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
            )
        };
        if self.macro_vars.iter().any(|v| v == name) {
            message.push_str(&format!(" (`{name}` is bound only inside the macro that declares it)"));
        }
        message
    }

    fn structure(&mut self, strct: &StructExpr) -> Result<Kinds, String> {
        let empty = Expr::Struct(StructExpr { type_name: strct.type_name.clone(), entries: Vec::new() });
        if let Err(ExecutionError::UnexpectedType { .. }) = probe(&empty) {
            return Err(format!("unknown message type `{}`: no struct types are declared", strct.type_name));
        }
        for entry in &strct.entries {
            if let EntryExpr::StructField(field) = &entry.expr {
                self.infer(&field.value)?;
            }
        }
        Ok(Kinds::OTHER)
    }

    fn comprehension(&mut self, e: &IdedExpr, c: &ComprehensionExpr) -> Result<Kinds, String> {
        let range = self.infer(&c.iter_range)?;
        if !range.intersects(Kinds::LIST.or(Kinds::MAP)) {
            return Err(format!(
                "`{}` iterates over `{}`, which has type {}, not a list or map",
                render(e),
                render(&c.iter_range),
                range.describe()
            ));
        }
        let m = recognize(c);
        // The accumulator starts outside the loop's scope: the iteration variables are not
        // visible to it.
        let accu = match m {
            Some(_) => None,
            None => Some(self.infer(&c.accu_init)?),
        };
        let outer = self.scopes.len();
        self.scopes.push((c.iter_var.clone(), Kinds::ANY));
        if let Some(var2) = &c.iter_var2 {
            self.scopes.push((var2.clone(), Kinds::ANY));
        }
        let result = match (m, accu) {
            (Some(m), _) => self.standard_macro(&m),
            (None, accu) => {
                self.scopes.push((c.accu_var.clone(), accu.unwrap_or(Kinds::ANY)));
                self.infer(&c.loop_cond).and_then(|_| self.infer(&c.loop_step)).and_then(|_| self.infer(&c.result))
            }
        };
        self.scopes.truncate(outer);
        result
    }

    fn standard_macro(&mut self, m: &Macro<'_>) -> Result<Kinds, String> {
        let role = format!("the predicate of `{}`", m.name());
        match m {
            Macro::All(pred) | Macro::Exists(pred) | Macro::ExistsOne(pred) => {
                self.expect_bool(pred, &role)?;
                Ok(Kinds::BOOL)
            }
            Macro::Filter(pred) => {
                self.expect_bool(pred, &role)?;
                Ok(Kinds::LIST)
            }
            Macro::Map(pred, f) => {
                if let Some(pred) = pred {
                    self.expect_bool(pred, &role)?;
                }
                self.infer(f)?;
                Ok(Kinds::LIST)
            }
        }
    }

    fn expect_bool(&mut self, e: &IdedExpr, role: &str) -> Result<(), String> {
        let kinds = self.infer(e)?;
        if kinds.intersects(Kinds::BOOL) {
            Ok(())
        } else {
            Err(format!("{role}, `{}`, has type {} ({}), not bool", render(e), kinds.describe(), origin(e)))
        }
    }

    fn call(&mut self, e: &IdedExpr, call: &CallExpr) -> Result<Kinds, String> {
        let name = call.func_name.as_str();
        match (name, call.target.as_deref(), call.args.as_slice()) {
            (op::CONDITIONAL, None, [cond, then, otherwise]) => {
                self.expect_bool(cond, "the condition of `? :`")?;
                Ok(self.infer(then)?.or(self.infer(otherwise)?))
            }
            (op::LOGICAL_AND | op::LOGICAL_OR, None, [left, right]) => {
                let role = format!("an operand of `{}`", operator_symbol(name).unwrap_or(name));
                self.expect_bool(left, &role)?;
                self.expect_bool(right, &role)?;
                Ok(Kinds::BOOL)
            }
            (op::LOGICAL_NOT, None, [operand]) => {
                self.expect_bool(operand, "the operand of `!`")?;
                Ok(Kinds::BOOL)
            }
            (op::NOT_STRICTLY_FALSE, None, [operand]) => {
                self.infer(operand)?;
                Ok(Kinds::BOOL)
            }
            (op::EQUALS | op::NOT_EQUALS, None, [left, right]) => {
                self.infer(left)?;
                self.infer(right)?;
                Ok(Kinds::BOOL)
            }
            (op::IN, None, [element, container]) => {
                self.infer(element)?;
                let kinds = self.infer(container)?;
                if !kinds.intersects(Kinds::LIST.or(Kinds::MAP)) {
                    return Err(format!(
                        "`in` needs a list or map on its right, but `{}` has type {}",
                        render(container),
                        kinds.describe()
                    ));
                }
                Ok(Kinds::BOOL)
            }
            (op::INDEX, None, [container, index]) => {
                let kinds = self.infer(container)?;
                self.infer(index)?;
                if !kinds.intersects(Kinds::LIST.or(Kinds::MAP)) {
                    return Err(format!(
                        "`{}` indexes `{}`, which has type {}, not a list or map",
                        render(e),
                        render(container),
                        kinds.describe()
                    ));
                }
                Ok(Kinds::ANY)
            }
            (op::NEGATE, None, [operand]) => {
                let kinds = self.infer(operand)?;
                let result = Kinds(kinds.0 & Kinds::INT.or(Kinds::DOUBLE).0);
                if result.is_empty() {
                    return Err(format!(
                        "unary `-` is not defined for `{}`, which has type {}",
                        render(operand),
                        kinds.describe()
                    ));
                }
                Ok(result)
            }
            (_, None, [left, right]) if binary_rules(name).is_some() => {
                let rules = binary_rules(name).unwrap_or(&[]);
                let (l, r) = (self.infer(left)?, self.infer(right)?);
                let result = apply_rules(rules, l, r);
                if result.is_empty() {
                    return Err(format!(
                        "`{}` is not defined for {} and {}: `{}`",
                        operator_symbol(name).unwrap_or(name),
                        l.describe(),
                        r.describe(),
                        render(e)
                    ));
                }
                Ok(result)
            }
            _ if is_operator(name) => {
                // An operator this checker does not model (the optional syntax, disabled by
                // the parser the pipeline uses): check its operands only.
                for arg in call.target.as_deref().into_iter().chain(&call.args) {
                    self.infer(arg)?;
                }
                Ok(Kinds::ANY)
            }
            _ => self.function(call),
        }
    }

    /// A function call, resolved as the interpreter resolves it: `a.b.f(x)` is the global
    /// function `a.b.f` if the crate provides one, else the method `f` on `a.b`.
    fn function(&mut self, call: &CallExpr) -> Result<Kinds, String> {
        let name = call.func_name.as_str();
        let global = match call.target.as_deref() {
            None => Some(name.to_owned()),
            Some(target) => qualified_name(target)
                .map(|segments| format!("{}.{name}", segments.join(".")))
                .filter(|qualified| provides_global(qualified)),
        };
        let result_name = match (&global, call.target.as_deref()) {
            (Some(global), _) => {
                if !provides_global(global) {
                    return Err(format!(
                        "unknown function `{global}()`: neither the CEL standard library nor \
                         Weir's functions (docs/SQL.md) have it{}",
                        if provides_method(global) {
                            format!(" (call it as a method: `x.{global}()`)")
                        } else {
                            String::new()
                        }
                    ));
                }
                global.as_str()
            }
            (None, Some(target)) => {
                self.infer(target)?;
                if !provides_method(name) {
                    return Err(format!(
                        "unknown method `.{name}()` on `{}`: the CEL standard library has no \
                         such method{}",
                        render(target),
                        if provides_global(name) {
                            format!(" (call it as a function: `{name}(x)`)")
                        } else {
                            String::new()
                        }
                    ));
                }
                name
            }
            (None, None) => unreachable!("a call without a target is global"),
        };
        for arg in &call.args {
            self.infer(arg)?;
        }
        Ok(function_result(result_name))
    }
}

fn literal_kinds(literal: &LiteralValue) -> Kinds {
    match literal {
        LiteralValue::Boolean(_) => Kinds::BOOL,
        LiteralValue::Bytes(_) => Kinds::BYTES,
        LiteralValue::Double(_) => Kinds::DOUBLE,
        LiteralValue::Int(_) => Kinds::INT,
        LiteralValue::Null => Kinds::NULL,
        LiteralValue::String(_) => Kinds::STRING,
        LiteralValue::UInt(_) => Kinds::UINT,
    }
}

/// `a.b.c` as `["a", "b", "c"]`: only an identifier, or field selections on one, is a name.
fn qualified_name(e: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut expr = e;
    loop {
        match &expr.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Expr::Select(select) if !select.test => {
                segments.push(select.field.as_str());
                expr = &select.operand;
            }
            _ => return None,
        }
    }
}

fn collect_macro_vars(e: &IdedExpr, out: &mut Vec<String>) {
    match &e.expr {
        Expr::Comprehension(c) => {
            out.push(c.iter_var.clone());
            out.extend(c.iter_var2.clone());
            for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                collect_macro_vars(part, out);
            }
        }
        Expr::Call(call) => {
            for arg in call.target.as_deref().into_iter().chain(&call.args) {
                collect_macro_vars(arg, out);
            }
        }
        Expr::Select(select) => collect_macro_vars(&select.operand, out),
        Expr::List(list) => {
            for element in &list.elements {
                collect_macro_vars(element, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    collect_macro_vars(&entry.key, out);
                    collect_macro_vars(&entry.value, out);
                }
            }
        }
        Expr::Struct(strct) => {
            for entry in &strct.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    collect_macro_vars(&field.value, out);
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

thread_local! {
    // The environment expressions run in (`yaml::Expr::eval` uses `cel_env::root()` too).
    // Building it is dear: once per thread.
    static ROOT: cel::Context<'static, 'static> = crate::cel_env::root();
}

/// Evaluates `expr` in the standard environment with no variables: asks the cel crate itself
/// whether a name means anything.
fn probe(expr: &Expr) -> Result<cel::Value, ExecutionError> {
    let expr = IdedExpr { id: 0, expr: expr.clone() };
    ROOT.with(|ctx| cel::Value::resolve(&expr, ctx))
}

/// Whether `name(...)` calls a function: with no arguments, a declared function fails on
/// its overloads, an undeclared one as an undeclared reference to its name.
fn provides_global(name: &str) -> bool {
    let call = Expr::Call(CallExpr { func_name: name.to_owned(), target: None, args: Vec::new() });
    !matches!(probe(&call), Err(ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
}

/// Whether `x.name(...)` calls a method, asked the same way with a `null` receiver.
fn provides_method(name: &str) -> bool {
    let call = Expr::Call(CallExpr {
        func_name: name.to_owned(),
        target: Some(Box::new(IdedExpr { id: 0, expr: Expr::Literal(LiteralValue::Null) })),
        args: Vec::new(),
    });
    !matches!(probe(&call), Err(ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('@') || name == op::LOGICAL_NOT || name == op::NEGATE
}

/// The source spelling of a binary operator.
fn operator_symbol(name: &str) -> Option<&'static str> {
    Some(match name {
        op::ADD => "+",
        op::SUBSTRACT => "-",
        op::MULTIPLY => "*",
        op::DIVIDE => "/",
        op::MODULO => "%",
        op::EQUALS => "==",
        op::NOT_EQUALS => "!=",
        op::LESS => "<",
        op::LESS_EQUALS => "<=",
        op::GREATER => ">",
        op::GREATER_EQUALS => ">=",
        op::IN => "in",
        op::LOGICAL_AND => "&&",
        op::LOGICAL_OR => "||",
        _ => return None,
    })
}

/// Where a value comes from, for a message: `the result of `+``, `a literal`.
fn origin(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Literal(_) => "a literal".to_owned(),
        Expr::List(_) => "a list literal".to_owned(),
        Expr::Map(_) => "a map literal".to_owned(),
        Expr::Struct(_) => "a message literal".to_owned(),
        Expr::Select(select) if select.test => "the result of `has()`".to_owned(),
        Expr::Comprehension(c) => match recognize(c) {
            Some(m) => format!("the result of `{}()`", m.name()),
            None => "a comprehension".to_owned(),
        },
        Expr::Call(call) => match (call.func_name.as_str(), operator_symbol(&call.func_name)) {
            (_, Some(symbol)) => format!("the result of `{symbol}`"),
            (op::CONDITIONAL, None) => "the result of `? :`".to_owned(),
            (op::LOGICAL_NOT, None) => "the result of `!`".to_owned(),
            (op::NEGATE, None) => "the result of unary `-`".to_owned(),
            (name, None) => format!("the result of `{name}()`"),
        },
        Expr::Ident(name) => format!("the value of `{name}`"),
        Expr::Select(_) | Expr::Unspecified => "a field".to_owned(),
    }
}

/// Source text for an AST node, for messages; long ones are cut.
fn render(e: &IdedExpr) -> String {
    const CHARS_MAX: usize = 60;
    let mut out = String::new();
    write_expr(e, &mut out);
    if out.chars().count() > CHARS_MAX {
        out = out.chars().take(CHARS_MAX - 3).collect();
        out.push_str("...");
    }
    out
}

fn write_expr(e: &IdedExpr, out: &mut String) {
    match &e.expr {
        Expr::Literal(literal) => write_literal(literal, out),
        Expr::Ident(name) => out.push_str(name),
        Expr::Select(select) => {
            if select.test {
                out.push_str("has(");
            }
            write_operand(&select.operand, out);
            out.push('.');
            out.push_str(&select.field);
            if select.test {
                out.push(')');
            }
        }
        Expr::List(list) => {
            out.push('[');
            write_list(&list.elements, out);
            out.push(']');
        }
        Expr::Map(map) => {
            out.push('{');
            for (i, entry) in map.entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    write_expr(&entry.key, out);
                    out.push_str(": ");
                    write_expr(&entry.value, out);
                }
            }
            out.push('}');
        }
        Expr::Struct(strct) => {
            out.push_str(&strct.type_name);
            out.push('{');
            for (i, entry) in strct.entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if let EntryExpr::StructField(field) = &entry.expr {
                    out.push_str(&field.field);
                    out.push_str(": ");
                    write_expr(&field.value, out);
                }
            }
            out.push('}');
        }
        Expr::Comprehension(c) => write_comprehension(c, out),
        Expr::Call(call) => write_call(call, out),
        Expr::Unspecified => out.push('?'),
    }
}

fn write_list(elements: &[IdedExpr], out: &mut String) {
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_expr(element, out);
    }
}

/// An operand of an operator or a receiver: parenthesised when it is itself an operation.
fn write_operand(e: &IdedExpr, out: &mut String) {
    let compound = matches!(&e.expr, Expr::Call(call)
        if call.target.is_none() && is_operator(&call.func_name) && call.func_name != op::INDEX);
    if compound {
        out.push('(');
    }
    write_expr(e, out);
    if compound {
        out.push(')');
    }
}

fn write_call(call: &CallExpr, out: &mut String) {
    let name = call.func_name.as_str();
    match (name, call.target.as_deref(), call.args.as_slice()) {
        (_, None, [left, right]) if operator_symbol(name).is_some() => {
            write_operand(left, out);
            out.push(' ');
            out.push_str(operator_symbol(name).unwrap_or(name));
            out.push(' ');
            write_operand(right, out);
        }
        (op::CONDITIONAL, None, [cond, then, otherwise]) => {
            write_operand(cond, out);
            out.push_str(" ? ");
            write_operand(then, out);
            out.push_str(" : ");
            write_operand(otherwise, out);
        }
        (op::INDEX, None, [container, index]) => {
            write_operand(container, out);
            out.push('[');
            write_expr(index, out);
            out.push(']');
        }
        (op::LOGICAL_NOT | op::NEGATE, None, [operand]) => {
            out.push_str(if name == op::NEGATE { "-" } else { "!" });
            write_operand(operand, out);
        }
        (op::NOT_STRICTLY_FALSE, None, [operand]) => write_expr(operand, out),
        (_, target, args) => {
            if let Some(target) = target {
                write_operand(target, out);
                out.push('.');
            }
            out.push_str(name);
            out.push('(');
            write_list(args, out);
            out.push(')');
        }
    }
}

fn write_comprehension(c: &ComprehensionExpr, out: &mut String) {
    let Some(m) = recognize(c) else {
        out.push_str("<comprehension>");
        return;
    };
    write_operand(&c.iter_range, out);
    out.push('.');
    out.push_str(m.name());
    out.push('(');
    out.push_str(&c.iter_var);
    out.push_str(", ");
    match m {
        Macro::All(pred) | Macro::Exists(pred) | Macro::ExistsOne(pred) | Macro::Filter(pred) => write_expr(pred, out),
        Macro::Map(pred, f) => {
            if let Some(pred) = pred {
                write_expr(pred, out);
                out.push_str(", ");
            }
            write_expr(f, out);
        }
    }
    out.push(')');
}

fn write_literal(literal: &LiteralValue, out: &mut String) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = match literal {
        LiteralValue::Boolean(b) => write!(out, "{}", b.inner()),
        LiteralValue::Int(i) => write!(out, "{}", i.inner()),
        LiteralValue::UInt(u) => write!(out, "{}u", u.inner()),
        LiteralValue::Double(d) => write!(out, "{:?}", d.inner()),
        LiteralValue::String(s) => write!(out, "'{}'", s.inner().replace('\'', "\\'")),
        LiteralValue::Bytes(b) => write!(out, "b'{}'", b.inner().escape_ascii()),
        LiteralValue::Null => write!(out, "null"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: &[&str] = &["event", "key", "ts"];

    #[test]
    fn expr_check_accepts() {
        let table: &[(&str, Expect)] = &[
            ("event.status == 'paid'", Expect::Bool),
            ("has(event.Bid) && event.Bid.price > 10", Expect::Bool),
            ("event.items.map(i, i.price)", Expect::List),
            ("event.items.map(i, i.price > 1, i.price)", Expect::List),
            ("event.items.filter(i, i.price > 1)", Expect::List),
            ("event.items.exists(x, x > 2)", Expect::Bool),
            ("event.items.all(x, x.ok)", Expect::Bool),
            ("event.items.exists_one(x, x == 1)", Expect::Bool),
            ("key != null", Expect::Bool),
            ("ts > 0", Expect::Bool),
            ("int(event.a) * 2", Expect::Any),
            ("string(event.id)", Expect::Any),
            ("event.a in [1, 2]", Expect::Bool),
            ("'a' in event", Expect::Bool),
            ("size(event.s) > 0", Expect::Bool),
            ("event.s.size() > 0", Expect::Bool),
            ("event.s.startsWith('a')", Expect::Bool),
            ("event.s.endsWith('a') || event.s.contains('b')", Expect::Bool),
            ("event.s.matches('^a+$')", Expect::Bool),
            ("event.ok ? event.a : event.b", Expect::Bool),
            ("event.ok ? [1] : [2]", Expect::List),
            ("event.ok ? {'a': 1} : event.x", Expect::Map),
            ("event.a > 1 ? 'big' : 'small'", Expect::Any),
            ("double(event.price) * 0.908", Expect::Any),
            ("event.price * 0.908 > 1.0", Expect::Bool),
            ("event.amount + 5 > 10", Expect::Bool),
            ("event.tags", Expect::List),
            ("event.x", Expect::Bool),
            ("event['x'] == 1", Expect::Bool),
            ("{'customer': event.customer, 'amount': event.amount * 100}", Expect::Map),
            ("[event.a, event.b]", Expect::List),
            ("!event.flag", Expect::Bool),
            ("-event.a < 0", Expect::Bool),
            ("type(event.a) == int", Expect::Bool),
            ("timestamp(event.t) < timestamp('2026-01-01T00:00:00Z')", Expect::Bool),
            ("duration('1s') + duration('2s') > duration('2s')", Expect::Bool),
            ("optional.of(1).hasValue()", Expect::Bool),
            ("event.items.map(event, event.price)", Expect::List),
            ("event.a.b.c.d == 'x'", Expect::Bool),
            ("'a' + event.s", Expect::Any),
            ("[1] + event.l", Expect::List),
            ("event.items.map(x, x.tags.exists(t, t == x.name))", Expect::List),
        ];
        for (source, expect) in table {
            assert_eq!(check(source, VARS, *expect), Ok(()), "{source} as {expect:?}");
        }
    }

    #[test]
    fn expr_check_rejects() {
        // (source, expect, words the message must contain)
        let table: &[(&str, Expect, &[&str])] = &[
            ("evnt.amount > 5", Expect::Bool, &["undeclared identifier", "`evnt`"]),
            ("evnt > 5", Expect::Bool, &["`evnt`"]),
            ("event.amount + 5", Expect::Bool, &["int", "`+`", "bool"]),
            ("1 + 2", Expect::Bool, &["int", "`+`", "bool"]),
            ("'a'", Expect::Bool, &["string", "bool"]),
            ("event.a + event.b", Expect::Bool, &["`+`", "bool"]),
            ("size(event.s)", Expect::Bool, &["int", "`size()`"]),
            ("nosuchfn(event.a)", Expect::Any, &["unknown function", "`nosuchfn()`"]),
            ("event.s.nosuch()", Expect::Any, &["unknown method", "`.nosuch()`"]),
            ("startsWith(event.s, 'a')", Expect::Any, &["`startsWith()`", "method"]),
            ("[1,2]", Expect::Map, &["list", "map"]),
            ("{'a': 1}", Expect::List, &["map", "list"]),
            ("event.items.exists(x, x > 2) && x > 1", Expect::Bool, &["`x`", "bound only inside"]),
            ("event.items.map(i, i.price) == i", Expect::Bool, &["`i`"]),
            ("event.items.exists(x, x + 2)", Expect::Bool, &["predicate of `exists`", "int"]),
            ("event.items.filter(x, 'a')", Expect::List, &["predicate of `filter`", "string"]),
            ("event.items.map(x, x * 2)", Expect::Bool, &["list", "`map()`"]),
            ("event.items.all(x, y > 1)", Expect::Bool, &["`y`"]),
            ("1 + 2.0", Expect::Any, &["`+`", "int and double"]),
            ("1 + 'a'", Expect::Any, &["`+`", "int and string"]),
            ("'a' < 1", Expect::Bool, &["`<`"]),
            ("event.a && 1", Expect::Bool, &["`&&`", "int"]),
            ("1 ? event.a : event.b", Expect::Any, &["condition", "int"]),
            ("!'a'", Expect::Bool, &["`!`", "string"]),
            ("event.a in 5", Expect::Bool, &["`in`", "int"]),
            ("5.exists(x, x > 1)", Expect::Bool, &["iterates", "int"]),
            ("event.x == nosuch.y", Expect::Bool, &["`nosuch`"]),
            ("Foo{a: 1}", Expect::Any, &["`Foo`"]),
            ("event.a == ", Expect::Bool, &["Syntax error"]),
            ("has(event.a) + 1", Expect::Any, &["`+`", "bool and int"]),
            ("{[1]: 2}", Expect::Map, &["map key"]),
            ("'abc'.x", Expect::Any, &["`x`", "string"]),
            ("int.x", Expect::Any, &["`x`", "`int`", "type"]),
            ("event.amount + 5", Expect::Map, &["expected map"]),
        ];
        for (source, expect, words) in table {
            let Err(message) = check(source, VARS, *expect) else {
                panic!("{source} as {expect:?} was accepted");
            };
            for word in *words {
                assert!(message.contains(word), "{source} as {expect:?}: {message:?} does not mention {word:?}");
            }
        }
    }

    /// What the checker rejects fails when evaluated, and for the reason it gives: the
    /// checker's view of the crate is the crate's own.
    #[test]
    fn expr_check_rejections_fail_at_run_time() {
        let ctx = {
            let mut ctx = crate::cel_env::root();
            let event: std::collections::HashMap<String, cel::Value> = Default::default();
            ctx.add_variable_from_value("event", cel::Value::Map(event.into()));
            ctx
        };
        for source in ["nosuchfn(1)", "'a'.nosuch()", "startsWith('a', 'b')", "1 + 2.0", "x > 1"] {
            assert!(check(source, VARS, Expect::Any).is_err(), "{source}");
            let program = cel::Program::compile(source).expect(source);
            assert!(program.execute(&ctx).is_err(), "{source} ran");
        }
    }

    #[test]
    fn expr_check_standard_functions_exist() {
        for name in [
            "size",
            "int",
            "uint",
            "double",
            "string",
            "bytes",
            "bool",
            "type",
            "dyn",
            "timestamp",
            "duration",
            "matches",
        ] {
            assert!(provides_global(name), "{name}()");
        }
        for name in [
            "size",
            "contains",
            "startsWith",
            "endsWith",
            "matches",
            "getFullYear",
            "getMonth",
            "getDayOfYear",
            "getDayOfMonth",
            "getDate",
            "getDayOfWeek",
            "getHours",
            "getMinutes",
            "getSeconds",
            "getMilliseconds",
        ] {
            assert!(provides_method(name), ".{name}()");
        }
        for name in ["nosuchfn", "startsWith", "lowerAscii", "max"] {
            assert!(!provides_global(name), "{name}()");
        }
        assert!(!provides_method("int"));
    }

    #[test]
    fn expr_check_map_literal_fields() {
        let table: &[(&str, Option<&[&str]>)] = &[
            ("{'customer': event.customer, 'amount': event.amount * 100}", Some(&["customer", "amount"])),
            ("{}", Some(&[])),
            ("{'a': 1, 'a': 2, 'b': 3}", Some(&["a", "b"])),
            ("{'a': 1, event.k: 2}", None),
            ("{1: 'a'}", None),
            ("event", None),
            ("event.ok ? {'a': 1} : {'b': 2}", None),
            ("[1, 2]", None),
            ("{'a': ", None),
        ];
        for (source, want) in table {
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(map_literal_fields(source), want, "{source}");
        }
    }

    #[test]
    fn expr_check_event_fields_read() {
        let table: &[(&str, &[&str])] = &[
            ("event.amount * 2 + event.x.y", &["amount", "x"]),
            ("event['field'] == 1", &["field"]),
            ("has(event.Bid) && event.Bid.price > 10", &["Bid"]),
            ("'tag' in event", &["tag"]),
            ("event.items.map(i, i.price + event.rate)", &["items", "rate"]),
            ("event.items.map(event, event.price)", &["items"]),
            ("{'a': event.a, 'b': event.b.c}", &["a", "b"]),
            ("size(event) > 0", &[]),
            ("event[key] == 1", &[]),
            ("key != null && ts > 0", &[]),
            ("other.a", &[]),
            ("event.a ==", &[]),
            ("event.s.startsWith(event.prefix)", &["s", "prefix"]),
        ];
        for (source, want) in table {
            assert_eq!(event_fields_read(source), *want, "{source}");
        }
    }
}
