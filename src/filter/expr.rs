//! The `match` expression: conditions on paths into `data`, in the Convoy/Outpost style.
//!
//! ```json
//! {"data.pushName": {"$startsWith": "A"},
//!  "data.messageType": {"$in": ["imageMessage", "videoMessage"]},
//!  "$or": [{"data.key.fromMe": true}, {"data.message.conversation": {"$exists": true}}]}
//! ```
//!
//! - An object is the `$and` of its entries. A key is a path (`data`, or `data.` and dotted
//!   field names; a segment of digits also indexes an array) or one of `$and`, `$or` (a
//!   non-empty array of such objects) and `$not` (one such object).
//! - A path's value is a plain JSON value (`$eq` to it), an object of operators (all of
//!   them must hold), or an object of field names (the path continues: `{"data.key":
//!   {"fromMe": true}}` is `{"data.key.fromMe": true}`). Operators and field names in one
//!   object are an error; so is `{}` (write `{"$eq": {}}`).
//! - Operators: `$eq`, `$neq` (any JSON value), `$in`, `$nin` (an array), `$exists` (a
//!   boolean), `$startsWith` (a string), `$gt`, `$gte`, `$lt`, `$lte` (a number), `$not`
//!   (operators or a value, on the same path).
//!
//! Evaluation:
//! - A missing path: `$exists: false`, `$neq` and `$nin` hold; every other operator fails.
//!   `null` is a value: `{"data.x": null}` needs `x` present and null.
//! - Numbers compare by value (`1` equals `1.0`); comparing different types (a string
//!   `$gt` a number) is false, never an error.
//! - Arrays (Convoy's "array contains"): `$eq` with a non-array operand holds when the
//!   array equals it or any element does; `$in` when any element is in the list;
//!   `$startsWith` and the comparisons when any element satisfies them. `$neq` and `$nin`
//!   are the negations of `$eq` and `$in`.
//!
//! Expressions are bounded ([`MAX_DEPTH`], [`MAX_CONDITIONS`], ...) so that neither
//! compiling nor evaluating one can take much time or stack.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::FilterError;

/// The deepest nesting of `$and`, `$or`, `$not` and nested field objects.
pub const MAX_DEPTH: usize = 16;
/// The most conditions (operator tests) one expression may hold.
pub const MAX_CONDITIONS: usize = 256;
/// The most segments a path may have.
pub const MAX_PATH_SEGMENTS: usize = 32;
/// The most values an `$in` or `$nin` list may hold.
pub const MAX_LIST: usize = 1_000;

/// Every operator, for error messages.
const OPERATORS: &str = "$eq $neq $in $nin $exists $startsWith $gt $gte $lt $lte $not";

/// A compiled expression, evaluated against an event's parsed `data`.
#[derive(Debug, Clone)]
pub(super) struct Expr(Node);

#[derive(Debug, Clone)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Test { path: Box<[Box<str>]>, op: Op },
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    StartsWith(Box<str>),
    Compare(Comparison, Number),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }
}

/// Compiling state: how many conditions the expression holds so far.
struct Compiler {
    conditions: usize,
}

fn error(path: &str, problem: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

impl Expr {
    /// Compiles `value` (a filter's `match`); `at` is its path in errors (`filter.match`).
    pub(super) fn compile(value: &Value, at: &str) -> Result<Expr, FilterError> {
        let mut compiler = Compiler { conditions: 0 };
        compiler.expression(value, at, 0).map(Expr)
    }

    /// Whether `data` (the event's parsed `data`) satisfies the expression.
    pub(super) fn eval(&self, data: &Value) -> bool {
        self.0.eval(data)
    }
}

impl Compiler {
    /// An object of paths and `$and` / `$or` / `$not`.
    fn expression(&mut self, value: &Value, at: &str, depth: usize) -> Result<Node, FilterError> {
        if depth > MAX_DEPTH {
            return Err(error(at, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(entries) = value else {
            return Err(error(
                at,
                format!(
                    "expects an object of conditions, like {{\"data.pushName\": \"Ana\"}}, found {}",
                    kind(value)
                ),
            ));
        };
        let mut nodes = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let here = format!("{at}.{key}");
            let node = match key.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = value else {
                        return Err(error(
                            &here,
                            format!(
                                "expects an array of objects of conditions, found {}",
                                kind(value)
                            ),
                        ));
                    };
                    if items.is_empty() {
                        return Err(error(&here, "expects at least one object of conditions"));
                    }
                    let children = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.expression(item, &format!("{here}[{i}]"), depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    if key == "$and" {
                        Node::All(children)
                    } else {
                        Node::Any(children)
                    }
                }
                "$not" => Node::Not(Box::new(self.expression(value, &here, depth + 1)?)),
                operator if operator.starts_with('$') => {
                    return Err(error(
                        &here,
                        if is_value_operator(operator) {
                            format!("{operator} applies to a path: write {{\"data.field\": {{\"{operator}\": ...}}}}")
                        } else {
                            format!("unknown operator; at the top of an expression: $and $or $not, on a path: {OPERATORS}")
                        },
                    ))
                }
                path => {
                    let segments = root_path(path, &here)?;
                    self.condition(segments, value, &here, depth)?
                }
            };
            nodes.push(node);
        }
        Ok(all(nodes))
    }

    /// What `value` requires of the value at `path`.
    fn condition(
        &mut self,
        path: Vec<Box<str>>,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Node, FilterError> {
        if depth > MAX_DEPTH {
            return Err(error(at, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(entries) = value else {
            return self.test(path, Op::Eq(value.clone()), at);
        };
        let operators = entries.keys().filter(|k| k.starts_with('$')).count();
        if entries.is_empty() {
            return Err(error(
                at,
                "an empty object is no condition: write {\"$eq\": {}} to compare with {}",
            ));
        }
        if operators == 0 {
            return self.nested(path, entries, at, depth);
        }
        if operators != entries.len() {
            return Err(error(
                at,
                "mixes operators and field names: write nested fields as their own paths",
            ));
        }
        let mut nodes = Vec::with_capacity(entries.len());
        for (operator, operand) in entries {
            let here = format!("{at}.{operator}");
            let op = match operator.as_str() {
                "$eq" => Op::Eq(operand.clone()),
                "$neq" => Op::Neq(operand.clone()),
                "$in" => Op::In(list(operand, &here)?),
                "$nin" => Op::Nin(list(operand, &here)?),
                "$exists" => match operand {
                    Value::Bool(b) => Op::Exists(*b),
                    other => {
                        return Err(error(
                            &here,
                            format!("expects true or false, found {}", kind(other)),
                        ))
                    }
                },
                "$startsWith" => match operand {
                    Value::String(s) => Op::StartsWith(s.as_str().into()),
                    other => {
                        return Err(error(
                            &here,
                            format!("expects a string, found {}", kind(other)),
                        ))
                    }
                },
                "$gt" | "$gte" | "$lt" | "$lte" => {
                    let Value::Number(n) = operand else {
                        return Err(error(
                            &here,
                            format!("expects a number, found {}", kind(operand)),
                        ));
                    };
                    let comparison = match operator.as_str() {
                        "$gt" => Comparison::Gt,
                        "$gte" => Comparison::Gte,
                        "$lt" => Comparison::Lt,
                        _ => Comparison::Lte,
                    };
                    Op::Compare(comparison, n.clone())
                }
                "$not" => {
                    let inner = self.condition(path.clone(), operand, &here, depth + 1)?;
                    nodes.push(Node::Not(Box::new(inner)));
                    continue;
                }
                "$and" | "$or" => {
                    return Err(error(
                        &here,
                        format!(
                            "{operator} combines whole conditions: use it beside paths, not on one"
                        ),
                    ))
                }
                _ => {
                    return Err(error(
                        &here,
                        format!("unknown operator; one of {OPERATORS}"),
                    ))
                }
            };
            nodes.push(self.test(path.clone(), op, &here)?);
        }
        Ok(all(nodes))
    }

    /// `{"data.key": {"fromMe": true, "id": "A"}}`: each field continues the path.
    fn nested(
        &mut self,
        path: Vec<Box<str>>,
        entries: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Node, FilterError> {
        let mut nodes = Vec::with_capacity(entries.len());
        for (field, value) in entries {
            let here = format!("{at}.{field}");
            let mut longer = path.clone();
            longer.extend(segments(field, &here)?);
            check_length(&longer, &here)?;
            nodes.push(self.condition(longer, value, &here, depth + 1)?);
        }
        Ok(all(nodes))
    }

    fn test(&mut self, path: Vec<Box<str>>, op: Op, at: &str) -> Result<Node, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(error(
                at,
                format!("the expression holds more than {MAX_CONDITIONS} conditions"),
            ));
        }
        Ok(Node::Test {
            path: path.into_boxed_slice(),
            op,
        })
    }
}

/// One node for a conjunction (no wrapper around a single condition).
fn all(mut nodes: Vec<Node>) -> Node {
    if nodes.len() == 1 {
        nodes.pop().unwrap_or(Node::All(Vec::new()))
    } else {
        Node::All(nodes)
    }
}

fn is_value_operator(operator: &str) -> bool {
    OPERATORS.split(' ').any(|o| o == operator)
}

/// An `$in` / `$nin` operand.
fn list(operand: &Value, at: &str) -> Result<Vec<Value>, FilterError> {
    match operand {
        Value::Array(items) if items.len() <= MAX_LIST => Ok(items.clone()),
        Value::Array(_) => Err(error(at, format!("holds more than {MAX_LIST} values"))),
        other => Err(error(
            at,
            format!("expects an array of values, found {}", kind(other)),
        )),
    }
}

/// A top-level path: `data` or `data.<field>...`, without the leading `data`.
fn root_path(path: &str, at: &str) -> Result<Vec<Box<str>>, FilterError> {
    let rest = match path.strip_prefix("data") {
        Some("") => return Ok(Vec::new()),
        Some(rest) => rest.strip_prefix('.'),
        None => None,
    };
    let Some(rest) = rest else {
        return Err(error(
            at,
            "not a path into the event: paths start with `data`, like `data.pushName`",
        ));
    };
    let segments = segments(rest, at)?;
    check_length(&segments, at)?;
    Ok(segments)
}

/// `a.b.0` -> `[a, b, 0]`; an empty segment is an error.
fn segments(path: &str, at: &str) -> Result<Vec<Box<str>>, FilterError> {
    path.split('.')
        .map(|segment| {
            if segment.is_empty() {
                Err(error(
                    at,
                    "has an empty segment (`..`, or a leading or trailing `.`)",
                ))
            } else {
                Ok(segment.into())
            }
        })
        .collect()
}

fn check_length(segments: &[Box<str>], at: &str) -> Result<(), FilterError> {
    if segments.len() > MAX_PATH_SEGMENTS {
        return Err(error(
            at,
            format!("is longer than {MAX_PATH_SEGMENTS} segments"),
        ));
    }
    Ok(())
}

/// A JSON type's name, for errors.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Node {
    fn eval(&self, data: &Value) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|n| n.eval(data)),
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(data)),
            Node::Not(node) => !node.eval(data),
            Node::Test { path, op } => op.test(resolve(data, path)),
        }
    }
}

/// The value at `path` under `data`: object fields by name, array elements by index.
fn resolve<'v>(data: &'v Value, path: &[Box<str>]) -> Option<&'v Value> {
    path.iter().try_fold(data, |value, segment| match value {
        Value::Object(fields) => fields.get(&**segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

impl Op {
    fn test(&self, value: Option<&Value>) -> bool {
        match self {
            Op::Exists(wanted) => value.is_some() == *wanted,
            Op::Eq(operand) => value.is_some_and(|v| equals_or_contains(v, operand)),
            Op::Neq(operand) => !value.is_some_and(|v| equals_or_contains(v, operand)),
            Op::In(list) => value.is_some_and(|v| list.iter().any(|o| equals_or_contains(v, o))),
            Op::Nin(list) => !value.is_some_and(|v| list.iter().any(|o| equals_or_contains(v, o))),
            Op::StartsWith(prefix) => value.is_some_and(|v| {
                any_element(v, |e| e.as_str().is_some_and(|s| s.starts_with(&**prefix)))
            }),
            Op::Compare(comparison, operand) => value.is_some_and(|v| {
                any_element(v, |e| match e {
                    Value::Number(n) => compare_numbers(n, operand)
                        .is_some_and(|ordering| comparison.accepts(ordering)),
                    _ => false,
                })
            }),
        }
    }
}

/// `value` itself or, for an array, any of its elements.
fn any_element(value: &Value, test: impl Fn(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(test),
        other => test(other),
    }
}

/// Equality, or an array containing a non-array operand.
fn equals_or_contains(value: &Value, operand: &Value) -> bool {
    json_equals(value, operand)
        || match (value, operand) {
            (Value::Array(items), operand) if !operand.is_array() => {
                items.iter().any(|item| json_equals(item, operand))
            }
            _ => false,
        }
}

/// JSON equality with numbers compared by value.
fn json_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equals(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equals(v, w)))
        }
        _ => a == b,
    }
}

/// Exact for integers (including past 2^53), by `f64` when either is a fraction.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(expression: Value) -> Expr {
        Expr::compile(&expression, "filter.match").expect("compiles")
    }

    fn problem(expression: Value) -> FilterError {
        Expr::compile(&expression, "filter.match").expect_err("an error")
    }

    fn data() -> Value {
        json!({
            "key": {"remoteJid": "5511@s.whatsapp.net", "fromMe": false, "id": "3EB0"},
            "pushName": "Ana Maria",
            "messageType": "conversation",
            "messageTimestamp": 1733300000,
            "ratio": 0.5,
            "tags": ["vip", "br"],
            "nothing": null,
            "message": {"conversation": "hello"}
        })
    }

    fn holds(expression: Value) -> bool {
        compile(expression).eval(&data())
    }

    #[test]
    fn plain_values_and_eq() {
        assert!(holds(json!({"data.pushName": "Ana Maria"})));
        assert!(!holds(json!({"data.pushName": "Ana"})));
        assert!(holds(json!({"data.key.fromMe": false})));
        assert!(
            holds(json!({"data.key": {"fromMe": false, "id": "3EB0"}})),
            "nested fields"
        );
        assert!(
            holds(json!({"data.messageTimestamp": 1733300000.0})),
            "numbers by value"
        );
        assert!(holds(json!({"data.nothing": null})));
        assert!(!holds(json!({"data.missing": null})), "missing is not null");
        assert!(holds(
            json!({"data.key": {"$eq": {"remoteJid": "5511@s.whatsapp.net", "fromMe": false, "id": "3EB0"}}})
        ));
        assert!(holds(json!({"data.tags": "vip"})), "array contains");
        assert!(holds(json!({"data.tags": ["vip", "br"]})));
        assert!(!holds(json!({"data.tags": ["vip"]})));
        assert!(holds(json!({"data.tags.1": "br"})), "array index");
        assert!(holds(json!({})), "an empty expression holds");
    }

    #[test]
    fn neq_in_nin() {
        assert!(holds(json!({"data.pushName": {"$neq": "Bob"}})));
        assert!(!holds(json!({"data.pushName": {"$neq": "Ana Maria"}})));
        assert!(
            holds(json!({"data.missing": {"$neq": "x"}})),
            "a missing path is not equal"
        );
        assert!(holds(
            json!({"data.messageType": {"$in": ["imageMessage", "conversation"]}})
        ));
        assert!(!holds(
            json!({"data.messageType": {"$in": ["imageMessage"]}})
        ));
        assert!(
            holds(json!({"data.tags": {"$in": ["br"]}})),
            "any element in the list"
        );
        assert!(!holds(json!({"data.missing": {"$in": ["x"]}})));
        assert!(holds(
            json!({"data.messageType": {"$nin": ["imageMessage"]}})
        ));
        assert!(!holds(json!({"data.tags": {"$nin": ["vip"]}})));
        assert!(holds(json!({"data.missing": {"$nin": ["x"]}})));
    }

    #[test]
    fn exists_and_starts_with() {
        assert!(holds(
            json!({"data.message.conversation": {"$exists": true}})
        ));
        assert!(
            holds(json!({"data.nothing": {"$exists": true}})),
            "null exists"
        );
        assert!(holds(
            json!({"data.message.imageMessage": {"$exists": false}})
        ));
        assert!(!holds(json!({"data.pushName": {"$exists": false}})));
        assert!(holds(json!({"data.pushName": {"$startsWith": "Ana"}})));
        assert!(!holds(json!({"data.pushName": {"$startsWith": "ana"}})));
        assert!(
            !holds(json!({"data.messageTimestamp": {"$startsWith": "17"}})),
            "not a string"
        );
        assert!(holds(json!({"data.tags": {"$startsWith": "v"}})));
    }

    #[test]
    fn comparisons() {
        assert!(holds(json!({"data.messageTimestamp": {"$gt": 1733299999}})));
        assert!(!holds(
            json!({"data.messageTimestamp": {"$gt": 1733300000}})
        ));
        assert!(holds(
            json!({"data.messageTimestamp": {"$gte": 1733300000}})
        ));
        assert!(holds(
            json!({"data.messageTimestamp": {"$lt": 1733300000.5}})
        ));
        assert!(holds(json!({"data.ratio": {"$lte": 0.5, "$gt": 0}})));
        assert!(
            !holds(json!({"data.pushName": {"$gt": 1}})),
            "mismatched types are false"
        );
        assert!(!holds(json!({"data.missing": {"$lt": 1}})));
        let big = json!({"n": u64::MAX});
        assert!(
            compile(json!({"data.n": {"$gt": i64::MAX}})).eval(&big),
            "exact past 2^53"
        );
    }

    #[test]
    fn and_or_not() {
        assert!(holds(
            json!({"$or": [{"data.pushName": "Bob"}, {"data.key.fromMe": false}]})
        ));
        assert!(!holds(
            json!({"$or": [{"data.pushName": "Bob"}, {"data.key.fromMe": true}]})
        ));
        assert!(holds(
            json!({"$and": [{"data.pushName": {"$startsWith": "A"}}, {"data.tags": "br"}]})
        ));
        assert!(!holds(
            json!({"$and": [{"data.pushName": {"$startsWith": "A"}}, {"data.tags": "us"}]})
        ));
        assert!(holds(json!({"$not": {"data.pushName": "Bob"}})));
        assert!(holds(
            json!({"data.pushName": {"$not": {"$startsWith": "B"}}})
        ));
        assert!(!holds(json!({"data.pushName": {"$not": "Ana Maria"}})));
        assert!(
            !holds(json!({"data.pushName": "Ana Maria", "data.key.fromMe": true})),
            "implicit and"
        );
        assert!(holds(json!({"data": {"$exists": true}})));
    }

    #[test]
    fn bad_expressions_name_the_path_and_the_problem() {
        let cases = [
            (
                json!({"data.pushName": {"$startsWith": 1}}),
                "filter.match.data.pushName.$startsWith",
                "expects a string",
            ),
            (
                json!({"data.x": {"$in": "a"}}),
                "filter.match.data.x.$in",
                "expects an array",
            ),
            (
                json!({"data.x": {"$nin": {}}}),
                "filter.match.data.x.$nin",
                "expects an array",
            ),
            (
                json!({"data.x": {"$gt": "5"}}),
                "filter.match.data.x.$gt",
                "expects a number",
            ),
            (
                json!({"data.x": {"$exists": "yes"}}),
                "filter.match.data.x.$exists",
                "expects true or false",
            ),
            (
                json!({"data.x": {"$regex": "a"}}),
                "filter.match.data.x.$regex",
                "unknown operator",
            ),
            (
                json!({"data.x": {"$eq": 1, "y": 2}}),
                "filter.match.data.x",
                "mixes operators",
            ),
            (json!({"data.x": {}}), "filter.match.data.x", "empty object"),
            (
                json!({"pushName": "A"}),
                "filter.match.pushName",
                "paths start with `data`",
            ),
            (
                json!({"database.x": "A"}),
                "filter.match.database.x",
                "paths start with `data`",
            ),
            (
                json!({"data..x": "A"}),
                "filter.match.data..x",
                "empty segment",
            ),
            (
                json!({"data.x.": "A"}),
                "filter.match.data.x.",
                "empty segment",
            ),
            (
                json!({"data.x": {"a..b": 1}}),
                "filter.match.data.x.a..b",
                "empty segment",
            ),
            (json!({"$or": {}}), "filter.match.$or", "expects an array"),
            (json!({"$and": []}), "filter.match.$and", "at least one"),
            (
                json!({"$or": [{"data.x": 1}, 2]}),
                "filter.match.$or[1]",
                "expects an object",
            ),
            (json!({"$eq": 1}), "filter.match.$eq", "applies to a path"),
            (json!({"$nor": []}), "filter.match.$nor", "unknown operator"),
            (
                json!({"data.x": {"$or": []}}),
                "filter.match.data.x.$or",
                "beside paths",
            ),
            (json!(["data.x"]), "filter.match", "expects an object"),
            (
                json!({"$not": {"data.x": {"$lt": null}}}),
                "filter.match.$not.data.x.$lt",
                "expects a number",
            ),
        ];
        for (expression, path, problem_part) in cases {
            let err = problem(expression.clone());
            assert_eq!(err.path, path, "{expression}");
            assert!(
                err.problem.contains(problem_part),
                "{expression}: {}",
                err.problem
            );
        }
    }

    #[test]
    fn expressions_are_bounded() {
        let mut deep = json!({"data.x": 1});
        for _ in 0..40 {
            deep = json!({"$not": deep});
        }
        assert!(problem(deep).problem.contains("deeper"));
        let mut nested = json!(1);
        for _ in 0..40 {
            nested = json!({"a": nested});
        }
        let err = problem(json!({ "data": nested }));
        assert!(
            err.problem.contains("deeper") || err.problem.contains("segments"),
            "{err:?}"
        );
        let wide: Map<String, Value> = (0..300).map(|i| (format!("data.f{i}"), json!(i))).collect();
        assert!(problem(Value::Object(wide))
            .problem
            .contains("more than 256"));
        let long = format!("data{}", ".a".repeat(40));
        assert!(problem(json!({ long: 1 })).problem.contains("segments"));
        let many: Vec<u32> = (0..1001).collect();
        assert!(problem(json!({"data.x": {"$in": many}}))
            .problem
            .contains("more than"));
    }
}
