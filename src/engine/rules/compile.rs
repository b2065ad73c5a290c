//! CEL conditions compiled to typed closures over the facts.
//!
//! The `cel` crate parses; this module type-checks the AST against the fact
//! schema of the rule's subject kind ([`super::fields`]) and turns it into a
//! tree of boxed closures that read the typed facts directly. Parameters are
//! folded to constants at compile time. Evaluating a condition allocates
//! nothing.
//!
//! Supported: `&&`, `||`, `!`, `? :`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`,
//! `-`, `*`, unary `-`, `in` (against a list literal or list parameter),
//! `has(x.y)` (the fact is known), `size()`, and the string methods
//! `startsWith`, `endsWith`, `contains`. A fact that is unknown (`null`)
//! makes any ordering comparison on it false; `x == null` tests for it.

use cel::common::ast::{operators as op, Expr, IdedExpr, LiteralValue};

use super::fields::{facets, field, Env, Kind};
use super::Param;
use crate::engine::facets::Facets;
use std::collections::BTreeMap;

/// A boolean condition.
pub type BoolFn = Box<dyn Fn(&Env<'_>, u32) -> bool + Send + Sync>;
/// An integer expression; `None` is an unknown fact.
pub type IntFn = Box<dyn Fn(&Env<'_>, u32) -> Option<i64> + Send + Sync>;
/// A string expression; `None` is an unknown fact.
pub type StrFn = Box<dyn for<'e> Fn(&'e Env<'e>, u32) -> Option<&'e str> + Send + Sync>;

// Closures passed through functions with `Fn` bounds get the higher-ranked
// signatures the boxed types need; `Box::new` alone would not infer them.
/// Box a boolean closure.
pub fn bf<F: Fn(&Env<'_>, u32) -> bool + Send + Sync + 'static>(f: F) -> BoolFn {
    Box::new(f)
}
/// Box an integer closure.
pub fn intf<F: Fn(&Env<'_>, u32) -> Option<i64> + Send + Sync + 'static>(f: F) -> IntFn {
    Box::new(f)
}
/// Box a string closure.
pub fn sf<F: for<'e> Fn(&'e Env<'e>, u32) -> Option<&'e str> + Send + Sync + 'static>(
    f: F,
) -> StrFn {
    Box::new(f)
}

/// A compiled, typed expression.
pub enum Typed {
    /// Boolean.
    Bool(BoolFn),
    /// Integer (nullable).
    Int(IntFn),
    /// String (nullable).
    Str(StrFn),
    /// A boolean constant.
    ConstBool(bool),
    /// An integer constant.
    ConstInt(i64),
    /// A string constant.
    ConstStr(String),
    /// A list of string constants (`in` only).
    StrList(Vec<String>),
    /// A list of integer constants (`in` only).
    IntList(Vec<i64>),
    /// `null`.
    Null,
}

impl Typed {
    fn type_name(&self) -> &'static str {
        match self {
            Typed::Bool(_) | Typed::ConstBool(_) => "bool",
            Typed::Int(_) | Typed::ConstInt(_) => "int",
            Typed::Str(_) | Typed::ConstStr(_) => "string",
            Typed::StrList(_) | Typed::IntList(_) => "list",
            Typed::Null => "null",
        }
    }

    fn into_bool(self, what: &str) -> Result<BoolFn, String> {
        match self {
            Typed::Bool(f) => Ok(f),
            Typed::ConstBool(b) => Ok(bf(move |_, _| b)),
            other => Err(format!("{what} must be bool, found {}", other.type_name())),
        }
    }

    fn into_int(self, what: &str) -> Result<IntFn, String> {
        match self {
            Typed::Int(f) => Ok(f),
            Typed::ConstInt(v) => Ok(intf(move |_, _| Some(v))),
            Typed::Null => Ok(intf(|_, _| None)),
            other => Err(format!("{what} must be int, found {}", other.type_name())),
        }
    }

    fn into_str(self, what: &str) -> Result<StrFn, String> {
        match self {
            Typed::Str(f) => Ok(f),
            // Constant strings are folded by the callers (a closure cannot
            // lend out what it owns for the caller's lifetime).
            Typed::ConstStr(s) => Err(format!("{what}: unexpected constant string {s:?}")),
            Typed::Null => Ok(sf(|_, _| None)),
            other => Err(format!(
                "{what} must be string, found {}",
                other.type_name()
            )),
        }
    }
}

/// The result of compiling one condition.
pub struct Compiled {
    /// The condition.
    pub condition: BoolFn,
    /// Fact paths the condition reads (`credential.age_days`), for evidence.
    pub fields: Vec<String>,
    /// What those facts read beyond the subject: the gaps that hold the
    /// rule's findings.
    pub depends: Facets,
}

/// Parse and compile `source` for subject `kind` with parameter values `params`.
pub fn compile(
    source: &str,
    kind: Kind,
    params: &BTreeMap<String, Param>,
) -> Result<Compiled, String> {
    let ast = cel::parser::Parser::new()
        .parse(source)
        .map_err(|e| format!("CEL syntax: {e}"))?;
    let mut c = Compiler {
        kind,
        params,
        fields: Vec::new(),
        depends: Facets::NONE,
    };
    let condition = c.expr(&ast)?.into_bool("a rule condition")?;
    Ok(Compiled {
        condition,
        fields: c.fields,
        depends: c.depends,
    })
}

struct Compiler<'p> {
    kind: Kind,
    params: &'p BTreeMap<String, Param>,
    fields: Vec<String>,
    depends: Facets,
}

/// `a.b.c` as segments, if the expression is a plain dotted name.
fn dotted(e: &Expr) -> Option<Vec<&str>> {
    match e {
        Expr::Ident(n) => Some(vec![n.as_str()]),
        Expr::Select(s) if !s.test => {
            let mut v = dotted(&s.operand.expr)?;
            v.push(s.field.as_str());
            Some(v)
        }
        _ => None,
    }
}

impl Compiler<'_> {
    fn expr(&mut self, e: &IdedExpr) -> Result<Typed, String> {
        match &e.expr {
            Expr::Literal(l) => literal(l),
            Expr::Ident(_) | Expr::Select(_) => self.name(&e.expr),
            Expr::List(l) => {
                let mut items = Vec::new();
                for el in &l.elements {
                    items.push(self.expr(el)?);
                }
                list(items)
            }
            Expr::Call(call) => self.call(&call.func_name, call.target.as_deref(), &call.args),
            Expr::Comprehension(_) => Err(
                "comprehensions (all/exists/map/filter) are not supported: facts are scalars"
                    .into(),
            ),
            Expr::Map(_) | Expr::Struct(_) => {
                Err("map and struct literals are not supported".into())
            }
            Expr::Unspecified => Err("empty expression".into()),
        }
    }

    fn name(&mut self, e: &Expr) -> Result<Typed, String> {
        if let Expr::Select(s) = e {
            if s.test {
                // has(x.y): the fact is known.
                let inner = Expr::Select(cel::common::ast::SelectExpr {
                    operand: s.operand.clone(),
                    field: s.field.clone(),
                    test: false,
                });
                return Ok(match self.name(&inner)? {
                    Typed::Int(f) => Typed::Bool(bf(move |e, s| f(e, s).is_some())),
                    Typed::Str(f) => Typed::Bool(bf(move |e, s| f(e, s).is_some())),
                    _ => Typed::ConstBool(true),
                });
            }
        }
        let path = dotted(e).ok_or("unsupported selection")?;
        if path.len() == 2 && path[0] == "params" {
            return match self.params.get(path[1]) {
                Some(Param::Int(v)) => Ok(Typed::ConstInt(*v)),
                Some(Param::Bool(v)) => Ok(Typed::ConstBool(*v)),
                Some(Param::Str(v)) => Ok(Typed::ConstStr(v.clone())),
                Some(Param::List(v)) => Ok(Typed::StrList(v.clone())),
                None => Err(format!(
                    "unknown parameter params.{} (declare it under `params:` in the rule)",
                    path[1]
                )),
            };
        }
        if path.len() != 2 {
            return Err(format!("unknown name {}", path.join(".")));
        }
        let full = path.join(".");
        let typed = field(self.kind, path[0], path[1]).ok_or_else(|| {
            format!(
                "unknown fact {full} for a {} rule (see rules/README.md for the fact schema)",
                self.kind.as_str()
            )
        })?;
        // Every field the condition names counts, even one a constant
        // folds away: what a rule depends on is never under-stated.
        if let Some(f) = facets(self.kind, path[0], path[1]) {
            self.depends = self.depends.with(f);
        }
        if !self.fields.contains(&full) {
            self.fields.push(full);
        }
        Ok(typed)
    }

    fn call(
        &mut self,
        name: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Result<Typed, String> {
        if let Some(t) = target {
            let recv = self.expr(t)?;
            let [arg] = args else {
                return Err(format!("{name}() takes one argument"));
            };
            if name == "matchesAny" {
                return self.matches_any(recv, arg);
            }
            let Typed::ConstStr(needle) = self.expr(arg)? else {
                return Err(format!("{name}() takes a string literal or parameter"));
            };
            if let Typed::ConstStr(v) = &recv {
                return Ok(Typed::ConstBool(match name {
                    "startsWith" => v.starts_with(needle.as_str()),
                    "endsWith" => v.ends_with(needle.as_str()),
                    "contains" => v.contains(needle.as_str()),
                    _ => return Err(format!("unsupported method {name}()")),
                }));
            }
            let recv = recv.into_str(&format!("the receiver of {name}()"))?;
            return Ok(Typed::Bool(match name {
                "startsWith" => {
                    bf(move |e, s| recv(e, s).is_some_and(|v| v.starts_with(needle.as_str())))
                }
                "endsWith" => {
                    bf(move |e, s| recv(e, s).is_some_and(|v| v.ends_with(needle.as_str())))
                }
                "contains" => {
                    bf(move |e, s| recv(e, s).is_some_and(|v| v.contains(needle.as_str())))
                }
                _ => return Err(format!("unsupported method {name}()")),
            }));
        }
        match (name, args) {
            (op::LOGICAL_AND, [a, b]) => {
                let (a, b) = (self.bool(a)?, self.bool(b)?);
                Ok(Typed::Bool(bf(move |e, s| a(e, s) && b(e, s))))
            }
            (op::LOGICAL_OR, [a, b]) => {
                let (a, b) = (self.bool(a)?, self.bool(b)?);
                Ok(Typed::Bool(bf(move |e, s| a(e, s) || b(e, s))))
            }
            (op::LOGICAL_NOT, [a]) => match self.expr(a)? {
                Typed::ConstBool(b) => Ok(Typed::ConstBool(!b)),
                other => {
                    let a = other.into_bool("the operand of !")?;
                    Ok(Typed::Bool(bf(move |e, s| !a(e, s))))
                }
            },
            (op::CONDITIONAL, [c, a, b]) => {
                let c = self.bool(c)?;
                let (a, b) = (self.bool(a)?, self.bool(b)?);
                Ok(Typed::Bool(bf(
                    move |e, s| if c(e, s) { a(e, s) } else { b(e, s) },
                )))
            }
            (op::EQUALS | op::NOT_EQUALS, [a, b]) => {
                let eq = self.equality(a, b)?;
                Ok(if name == op::EQUALS {
                    Typed::Bool(eq)
                } else {
                    Typed::Bool(bf(move |e, s| !eq(e, s)))
                })
            }
            (op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS, [a, b]) => {
                self.ordering(name, a, b)
            }
            (op::ADD | op::SUBSTRACT | op::MULTIPLY, [a, b]) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                if let (Typed::ConstInt(x), Typed::ConstInt(y)) = (&a, &b) {
                    return Ok(Typed::ConstInt(arith(name, *x, *y)));
                }
                let (a, b) = (
                    a.into_int("an operand of arithmetic")?,
                    b.into_int("an operand of arithmetic")?,
                );
                let name = name.to_string();
                Ok(Typed::Int(intf(move |e, s| {
                    Some(arith(&name, a(e, s)?, b(e, s)?))
                })))
            }
            (op::NEGATE, [a]) => match self.expr(a)? {
                Typed::ConstInt(v) => Ok(Typed::ConstInt(-v)),
                other => {
                    let a = other.into_int("the operand of unary -")?;
                    Ok(Typed::Int(intf(move |e, s| a(e, s).map(|v| -v))))
                }
            },
            (op::IN, [a, b]) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                if let (Typed::ConstStr(v), Typed::StrList(list)) = (&a, &b) {
                    return Ok(Typed::ConstBool(list.contains(v)));
                }
                match b {
                    Typed::StrList(list) => {
                        let a = a.into_str("the left side of `in` a string list")?;
                        Ok(Typed::Bool(bf(move |e, s| {
                            a(e, s).is_some_and(|v| list.iter().any(|x| x == v))
                        })))
                    }
                    Typed::IntList(list) => {
                        let a = a.into_int("the left side of `in` an int list")?;
                        Ok(Typed::Bool(bf(move |e, s| {
                            a(e, s).is_some_and(|v| list.contains(&v))
                        })))
                    }
                    other => Err(format!(
                        "`in` needs a list on the right, found {}",
                        other.type_name()
                    )),
                }
            }
            ("size", [a]) => match self.expr(a)? {
                Typed::StrList(l) => Ok(Typed::ConstInt(l.len() as i64)),
                Typed::IntList(l) => Ok(Typed::ConstInt(l.len() as i64)),
                Typed::ConstStr(s) => Ok(Typed::ConstInt(s.chars().count() as i64)),
                other => Err(format!("size() of {} is not supported", other.type_name())),
            },
            (op::HAS, [a]) => self.name(&a.expr),
            _ => Err(format!(
                "unsupported function or operator {name} with {} argument(s)",
                args.len()
            )),
        }
    }

    /// `s.matchesAny(patterns)`: the string matches one of a list of `*`
    /// patterns (ASCII case ignored). Allow-lists whose entries vary in one
    /// part (an issuer host per region) need it; an unknown string matches
    /// nothing.
    fn matches_any(&mut self, recv: Typed, arg: &IdedExpr) -> Result<Typed, String> {
        const GLOB: nhi_contract::pattern::Syntax =
            nhi_contract::pattern::Syntax::STAR_ASCII_CASELESS;
        let Typed::StrList(patterns) = self.expr(arg)? else {
            return Err("matchesAny() takes a list of strings (literal or parameter)".into());
        };
        if let Typed::ConstStr(v) = &recv {
            return Ok(Typed::ConstBool(
                patterns.iter().any(|p| GLOB.matches(p, v)),
            ));
        }
        let recv = recv.into_str("the receiver of matchesAny()")?;
        Ok(Typed::Bool(bf(move |e, s| {
            recv(e, s).is_some_and(|v| patterns.iter().any(|p| GLOB.matches(p, v)))
        })))
    }

    fn bool(&mut self, e: &IdedExpr) -> Result<BoolFn, String> {
        self.expr(e)?.into_bool("an operand of && / || / ?:")
    }

    fn equality(&mut self, a: &IdedExpr, b: &IdedExpr) -> Result<BoolFn, String> {
        let (a, b) = (self.expr(a)?, self.expr(b)?);
        Ok(match (a, b) {
            (Typed::ConstStr(x), Typed::ConstStr(y)) => {
                let eq = x == y;
                bf(move |_, _| eq)
            }
            (Typed::ConstStr(_), Typed::Null) | (Typed::Null, Typed::ConstStr(_)) => {
                bf(|_, _| false)
            }
            (Typed::Null, Typed::Null) => bf(|_, _| true),
            (Typed::Int(f), Typed::Null) | (Typed::Null, Typed::Int(f)) => {
                bf(move |e, s| f(e, s).is_none())
            }
            (Typed::Str(f), Typed::Null) | (Typed::Null, Typed::Str(f)) => {
                bf(move |e, s| f(e, s).is_none())
            }
            (Typed::Str(f), Typed::ConstStr(c)) | (Typed::ConstStr(c), Typed::Str(f)) => {
                bf(move |e, s| f(e, s) == Some(c.as_str()))
            }
            (Typed::Int(f), Typed::ConstInt(c)) | (Typed::ConstInt(c), Typed::Int(f)) => {
                bf(move |e, s| f(e, s) == Some(c))
            }
            (a @ (Typed::Bool(_) | Typed::ConstBool(_)), b) => {
                let (a, b) = (
                    a.into_bool("==")?,
                    b.into_bool("the right side of == a bool")?,
                );
                bf(move |e, s| a(e, s) == b(e, s))
            }
            (a @ (Typed::Str(_) | Typed::ConstStr(_)), b) => {
                let (a, b) = (
                    a.into_str("==")?,
                    b.into_str("the right side of == a string")?,
                );
                bf(move |e, s| {
                    let (x, y) = (a(e, s), b(e, s));
                    x.is_some() && x == y
                })
            }
            (a, b) => {
                let (a, b) = (
                    a.into_int("==")?,
                    b.into_int("the right side of == an int")?,
                );
                bf(move |e, s| {
                    let (x, y) = (a(e, s), b(e, s));
                    x.is_some() && x == y
                })
            }
        })
    }

    fn ordering(&mut self, name: &str, a: &IdedExpr, b: &IdedExpr) -> Result<Typed, String> {
        let (a, b) = (self.expr(a)?, self.expr(b)?);
        let cmp: fn(i64, i64) -> bool = match name {
            op::LESS => |x, y| x < y,
            op::LESS_EQUALS => |x, y| x <= y,
            op::GREATER => |x, y| x > y,
            _ => |x, y| x >= y,
        };
        // The common shape, a fact against a threshold, gets a closure with
        // the constant folded in.
        Ok(Typed::Bool(match (a, b) {
            (Typed::ConstInt(x), Typed::ConstInt(y)) => return Ok(Typed::ConstBool(cmp(x, y))),
            (Typed::Int(f), Typed::ConstInt(c)) => {
                bf(move |e, s| f(e, s).is_some_and(|v| cmp(v, c)))
            }
            (Typed::ConstInt(c), Typed::Int(f)) => {
                bf(move |e, s| f(e, s).is_some_and(|v| cmp(c, v)))
            }
            (a, b) => {
                let (a, b) = (
                    a.into_int("an operand of a comparison")?,
                    b.into_int("an operand of a comparison")?,
                );
                bf(move |e, s| match (a(e, s), b(e, s)) {
                    (Some(x), Some(y)) => cmp(x, y),
                    _ => false,
                })
            }
        }))
    }
}

fn arith(name: &str, x: i64, y: i64) -> i64 {
    match name {
        op::ADD => x.saturating_add(y),
        op::SUBSTRACT => x.saturating_sub(y),
        _ => x.saturating_mul(y),
    }
}

fn literal(l: &LiteralValue) -> Result<Typed, String> {
    Ok(match l {
        LiteralValue::Boolean(b) => Typed::ConstBool(*b.inner()),
        LiteralValue::Int(i) => Typed::ConstInt(*i.inner()),
        LiteralValue::UInt(u) => {
            Typed::ConstInt(i64::try_from(*u.inner()).map_err(|_| "unsigned literal out of range")?)
        }
        LiteralValue::String(s) => Typed::ConstStr(s.inner().to_string()),
        LiteralValue::Null => Typed::Null,
        LiteralValue::Double(_) => {
            return Err(
                "double literals are not supported: facts are integers (days, counts)".into(),
            )
        }
        LiteralValue::Bytes(_) => return Err("bytes literals are not supported".into()),
    })
}

fn list(items: Vec<Typed>) -> Result<Typed, String> {
    if items.iter().all(|i| matches!(i, Typed::ConstStr(_))) {
        return Ok(Typed::StrList(
            items
                .into_iter()
                .filter_map(|i| match i {
                    Typed::ConstStr(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ));
    }
    if items.iter().all(|i| matches!(i, Typed::ConstInt(_))) {
        return Ok(Typed::IntList(
            items
                .into_iter()
                .filter_map(|i| match i {
                    Typed::ConstInt(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ));
    }
    Err("list literals must hold only string constants or only int constants".into())
}
