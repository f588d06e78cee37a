//! Subscription filters: one model for every sink and for WebSocket / socket.io listeners.
//!
//! # The model
//! A [`Filter`] is what a subscription stores and shows back (`"filter": {...}` in the API,
//! every key optional, all of them must hold):
//!
//! ```json
//! {"from_me": false,
//!  "chat_types": ["direct", "group", "broadcast", "newsletter"],
//!  "chats": {"allow": ["+55 11 99999-0000", "120363@g.us"], "deny": ["status@broadcast"]},
//!  "participants": {"allow": [...], "deny": [...]},
//!  "message_types": ["conversation", "imageMessage"],
//!  "match": {"data.pushName": {"$startsWith": "A"}}}
//! ```
//!
//! - `from_me`: `true`, `false`, or `"any"` / `null` / absent (stored as absent).
//! - `chat_types`: any of `direct` (`@s.whatsapp.net`, `@c.us`, `@lid`), `group` (`@g.us`),
//!   `broadcast` (`status@broadcast` and broadcast lists), `newsletter`.
//! - `chats`, `participants`: JIDs or phone numbers, normalized by [`normalize_id`] on both
//!   sides (a phone number matches that number's phone JID; a device suffix is ignored; a
//!   `@lid` JID matches only itself). An event matches a list through either of its JIDs:
//!   `key.remoteJid` or `key.remoteJidAlt` for the chat, `key.participant` or
//!   `key.participantAlt` for the participant (the sender within a group).
//! - `message_types`: Evolution's `messageType`.
//! - `match`: an expression over the event's `data` (module [`expr`]'s doc has the
//!   operators and their semantics).
//!
//! The WebSocket query parameters `from_me`, `chat_types`, `chats` (an allow list) and
//! `message_types` map onto the same model ([`Filter::from_query_params`]).
//!
//! A filter that does not parse is rejected with a [`FilterError`] naming the path
//! (`filter.chats.allow[2]`, `filter.match.data.pushName.$startsWith`) and the problem;
//! unknown keys are errors, since the shape is a contract.
//!
//! # Absent facts
//! Structured clauses read only [`EventFacts`]. An event without a fact (a presence
//! update has no `fromMe`, a connection update is about no chat, a status update has no
//! `messageType`):
//! - fails every clause that asks for a value of it: `from_me`, `chat_types`,
//!   `message_types`, and an `allow` list;
//! - passes a `deny` list (nothing to deny).
//!
//! So a message filter (`"from_me": false`, `"message_types": [...]`) selects messages
//! only, as its words say, and a deny-only filter lets chatless events through.
//!
//! # How the router uses it
//! 1. At ingest, once per event: [`EventFacts::extract`]`(event, data)`, stored beside the
//!    event as [`EventFacts::to_bytes`] (records without them: extract on read).
//! 2. When a subscription is created or changed: [`Filter::compile`] once, kept with the
//!    subscription.
//! 3. When an event is routed: decode its facts once, wrap its raw `data` in one
//!    [`LazyData`], and ask each subscription's [`CompiledFilter::matches`]. Structured
//!    clauses compare a few short strings and bits; `data` is parsed at most once per
//!    event, and only if a subscription with a `match` expression gets past its
//!    structured clauses ([`CompiledFilter::needs_data`] says which may).
//! 4. An event a filter drops still moves that subscription's cursor: it is filtered,
//!    not undelivered.
//!
//! This module never depends on HTTP, the log or sinks: filters are pure functions of an
//! event, so the router, the WebSocket hub and tests call them alike.

pub mod expr;
mod facts;
mod jid;

use std::cell::OnceCell;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use expr::Expr;
pub use facts::{EventFacts, FactsError};
pub use jid::{chat_type_of, normalize_id, MAX_ID_LEN};

/// The most entries an allow or deny list may hold.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// The longest `messageType` a filter may name.
const MAX_MESSAGE_TYPE_LEN: usize = 100;

/// The keys a filter object may have.
const KEYS: &str = "from_me, chat_types, chats, participants, message_types, match";

/// The kind of chat an event is about, from its JID's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    /// A person: `@s.whatsapp.net`, `@c.us`, `@lid`.
    Direct,
    /// A group: `@g.us`.
    Group,
    /// Status updates (`status@broadcast`) and broadcast lists (`@broadcast`).
    Broadcast,
    /// A channel: `@newsletter`.
    Newsletter,
}

impl ChatType {
    /// Every chat type, in the order of their codes.
    pub const ALL: [ChatType; 4] = [
        ChatType::Direct,
        ChatType::Group,
        ChatType::Broadcast,
        ChatType::Newsletter,
    ];

    /// The name in filters and query parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Direct => "direct",
            ChatType::Group => "group",
            ChatType::Broadcast => "broadcast",
            ChatType::Newsletter => "newsletter",
        }
    }

    /// The code in [`EventFacts::to_bytes`] (1-4; 0 is "unknown").
    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<ChatType> {
        ChatType::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// The bit of this type in a compiled filter's set.
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl FromStr for ChatType {
    type Err = FilterError;

    /// A name from [`ChatType::as_str`]; the error's path is empty (callers set it).
    fn from_str(s: &str) -> Result<ChatType, FilterError> {
        ChatType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                FilterError::new(
                    "",
                    format!("{s:?} is not a chat type (direct, group, broadcast, newsletter)"),
                )
            })
    }
}

impl fmt::Display for ChatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter that does not parse: where, and what is wrong. The API answers it as a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FilterError {
    /// Where: `filter.chats.allow[2]`, `filter.match.data.pushName.$startsWith`, or a
    /// query parameter's name.
    pub path: String,
    /// What is wrong, in words for the client.
    pub problem: String,
}

impl FilterError {
    fn new(path: impl Into<String>, problem: impl Into<String>) -> FilterError {
        FilterError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Allow and deny lists of JIDs or phone numbers, kept as the client wrote them (they
/// are normalized when compiled).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdLists {
    /// When present, only these match (non-empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// These never match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

/// A subscription's filter as stored and shown back (see the module doc). Deserializing
/// validates it fully (the error text is the [`FilterError`]'s); [`Filter::from_value`]
/// gives the structured error.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Filter {
    /// Only events the instance sent (`true`) or received (`false`); absent is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_me: Option<bool>,
    /// Only events about chats of these types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_types: Option<Vec<ChatType>>,
    /// Chats allowed and denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chats: Option<IdLists>,
    /// Participants (group senders) allowed and denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<IdLists>,
    /// Only these `messageType`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_types: Option<Vec<String>>,
    /// The expression over `data` (`match` in JSON).
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub expression: Option<Value>,
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Filter, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Filter::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl Filter {
    /// Parses and validates a filter object (the value of `"filter"`); errors name paths
    /// under `filter`. `null` is the empty filter.
    pub fn from_value(value: &Value) -> Result<Filter, FilterError> {
        let object = match value {
            Value::Null => return Ok(Filter::default()),
            Value::Object(object) => object,
            other => {
                return Err(FilterError::new(
                    "filter",
                    format!("expects an object, found {}", kind(other)),
                ))
            }
        };
        let mut filter = Filter::default();
        for (key, value) in object {
            let at = format!("filter.{key}");
            if value.is_null() {
                // `"key": null` is the key's absence: clients clear a clause that way.
                if !KEYS.split(", ").any(|k| k == key) {
                    return Err(unknown_key(&at));
                }
                continue;
            }
            match key.as_str() {
                "from_me" => {
                    filter.from_me = match value {
                        Value::Bool(b) => Some(*b),
                        Value::String(s) if s == "any" => None,
                        other => {
                            return Err(FilterError::new(
                                at,
                                format!("expects true, false or \"any\", found {}", kind(other)),
                            ))
                        }
                    }
                }
                "chat_types" => {
                    let names = strings(value, &at)?;
                    non_empty(&names, &at)?;
                    let types = names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            name.parse::<ChatType>()
                                .map_err(|e| FilterError::new(format!("{at}[{i}]"), e.problem))
                        })
                        .collect::<Result<_, _>>()?;
                    filter.chat_types = Some(types);
                }
                "chats" | "participants" => {
                    let lists = id_lists(value, &at)?;
                    if key == "chats" {
                        filter.chats = Some(lists);
                    } else {
                        filter.participants = Some(lists);
                    }
                }
                "message_types" => {
                    let types = strings(value, &at)?;
                    non_empty(&types, &at)?;
                    for (i, t) in types.iter().enumerate() {
                        check_message_type(t, &format!("{at}[{i}]"))?;
                    }
                    filter.message_types = Some(types);
                }
                "match" => {
                    Expr::compile(value, &at)?;
                    filter.expression = Some(value.clone());
                }
                _ => return Err(unknown_key(&at)),
            }
        }
        Ok(filter)
    }

    /// The filter of a WebSocket / socket.io listener, from its query parameters:
    /// `from_me` (`true`, `false`, `any`), and comma-separated `chat_types`, `chats` (an
    /// allow list of JIDs or phone numbers) and `message_types`. Other parameters are
    /// not the filter's and are ignored; a parameter given twice adds to its list (a
    /// `from_me` given twice must agree). Empty values and empty items are skipped.
    /// Errors name the parameter.
    pub fn from_query_params<K, V>(
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Filter, FilterError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut filter = Filter::default();
        let mut from_me_seen: Option<Option<bool>> = None;
        let items = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for (key, value) in params {
            let (key, value) = (key.as_ref(), value.as_ref());
            match key {
                "from_me" => {
                    let parsed = match value.trim().to_ascii_lowercase().as_str() {
                        "true" => Some(true),
                        "false" => Some(false),
                        "any" | "" => None,
                        _ => {
                            return Err(FilterError::new(
                                key,
                                format!("{value:?} is not true, false or any"),
                            ))
                        }
                    };
                    if from_me_seen.is_some_and(|seen| seen != parsed) {
                        return Err(FilterError::new(key, "given twice with different values"));
                    }
                    from_me_seen = Some(parsed);
                    filter.from_me = parsed;
                }
                "chat_types" => {
                    for name in items(value) {
                        let t = name
                            .parse::<ChatType>()
                            .map_err(|e| FilterError::new(key, e.problem))?;
                        filter.chat_types.get_or_insert_with(Vec::new).push(t);
                    }
                }
                "chats" => {
                    for entry in items(value) {
                        check_id(&entry, key)?;
                        let lists = filter.chats.get_or_insert_with(IdLists::default);
                        lists.allow.get_or_insert_with(Vec::new).push(entry);
                    }
                }
                "message_types" => {
                    for t in items(value) {
                        check_message_type(&t, key)?;
                        filter.message_types.get_or_insert_with(Vec::new).push(t);
                    }
                }
                _ => {}
            }
        }
        let too_long = |n: Option<usize>| n.is_some_and(|n| n > MAX_LIST_ENTRIES);
        if too_long(
            filter
                .chats
                .as_ref()
                .and_then(|c| c.allow.as_ref())
                .map(Vec::len),
        ) {
            return Err(FilterError::new(
                "chats",
                format!("holds more than {MAX_LIST_ENTRIES} entries"),
            ));
        }
        Ok(filter)
    }

    /// Whether the filter has no clause (every event matches).
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// [`Filter::compile`], or `None` when the filter passes every event: what the
    /// router and the WebSocket hub keep, so an unfiltered subscription costs nothing.
    pub fn compile_narrowing(&self) -> Result<Option<Arc<CompiledFilter>>, FilterError> {
        let compiled = self.compile()?;
        Ok((!compiled.matches_everything()).then(|| Arc::new(compiled)))
    }

    /// The form the router evaluates. Fails only for a filter built by hand that
    /// [`Filter::from_value`] would have rejected.
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        let chat_types = match &self.chat_types {
            None => None,
            Some(types) => {
                non_empty(types, "filter.chat_types")?;
                Some(types.iter().fold(0u8, |set, t| set | t.bit()))
            }
        };
        let message_types = match &self.message_types {
            None => None,
            Some(types) => {
                non_empty(types, "filter.message_types")?;
                for (i, t) in types.iter().enumerate() {
                    check_message_type(t, &format!("filter.message_types[{i}]"))?;
                }
                Some(sorted(types.iter().cloned()))
            }
        };
        Ok(CompiledFilter {
            from_me: self.from_me,
            chat_types,
            message_types,
            chats: IdSet::compile(self.chats.as_ref(), "filter.chats")?,
            participants: IdSet::compile(self.participants.as_ref(), "filter.participants")?,
            expression: self
                .expression
                .as_ref()
                .map(|e| Expr::compile(e, "filter.match"))
                .transpose()?,
        })
    }
}

fn unknown_key(at: &str) -> FilterError {
    FilterError::new(at, format!("unknown key; the keys are {KEYS}"))
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

/// An array of strings.
fn strings(value: &Value, at: &str) -> Result<Vec<String>, FilterError> {
    let Value::Array(items) = value else {
        return Err(FilterError::new(
            at,
            format!("expects an array of strings, found {}", kind(value)),
        ));
    };
    if items.len() > MAX_LIST_ENTRIES {
        return Err(FilterError::new(
            at,
            format!("holds more than {MAX_LIST_ENTRIES} entries"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(FilterError::new(
                format!("{at}[{i}]"),
                format!("expects a string, found {}", kind(other)),
            )),
        })
        .collect()
}

/// An empty list would select nothing, which is never what a client means (and `[]` for
/// "any" would be a trap the other way): omit the key instead.
fn non_empty<T>(list: &[T], at: &str) -> Result<(), FilterError> {
    if list.is_empty() {
        return Err(FilterError::new(
            at,
            "is empty, which would select no event; omit it to select any",
        ));
    }
    Ok(())
}

/// `{"allow": [...], "deny": [...]}`.
fn id_lists(value: &Value, at: &str) -> Result<IdLists, FilterError> {
    let Value::Object(object) = value else {
        return Err(FilterError::new(
            at,
            format!(
                "expects an object with \"allow\" and/or \"deny\", found {}",
                kind(value)
            ),
        ));
    };
    let mut lists = IdLists::default();
    for (key, value) in object {
        let here = format!("{at}.{key}");
        let slot = match key.as_str() {
            "allow" => &mut lists.allow,
            "deny" => &mut lists.deny,
            _ => {
                return Err(FilterError::new(
                    here,
                    "unknown key; the keys are allow, deny",
                ))
            }
        };
        if value.is_null() {
            continue;
        }
        let entries = strings(value, &here)?;
        if key == "allow" {
            non_empty(&entries, &here)?;
        }
        for (i, entry) in entries.iter().enumerate() {
            check_id(entry, &format!("{here}[{i}]"))?;
        }
        *slot = Some(entries);
    }
    Ok(lists)
}

fn check_id(entry: &str, at: &str) -> Result<String, FilterError> {
    normalize_id(entry).ok_or_else(|| {
        FilterError::new(
            at,
            format!(
                "{entry:?} is not a JID (user@server) or a phone number (5 to 20 digits, \
                 with + - ( ) . or spaces)"
            ),
        )
    })
}

/// Evolution's `messageType`s are identifiers (`conversation`, `imageMessage`); unknown
/// ones are fine (new types appear), other shapes are typos.
fn check_message_type(t: &str, at: &str) -> Result<(), FilterError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_MESSAGE_TYPE_LEN
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FilterError::new(
            at,
            format!("{t:?} is not a message type (letters, digits and _, like \"imageMessage\")"),
        ))
    }
}

/// Sorted and deduplicated, for binary search.
fn sorted(items: impl Iterator<Item = String>) -> Box<[Box<str>]> {
    let mut items: Vec<Box<str>> = items.map(String::into_boxed_str).collect();
    items.sort_unstable();
    items.dedup();
    items.into_boxed_slice()
}

/// A compiled allow / deny pair over normalized ids.
#[derive(Debug, Clone, Default)]
struct IdSet {
    allow: Option<Box<[Box<str>]>>,
    deny: Box<[Box<str>]>,
}

impl IdSet {
    fn compile(lists: Option<&IdLists>, at: &str) -> Result<IdSet, FilterError> {
        let Some(lists) = lists else {
            return Ok(IdSet::default());
        };
        let normalize = |entries: &[String], at: String| {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| check_id(e, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(|ids| sorted(ids.into_iter()))
        };
        let allow = match &lists.allow {
            None => None,
            Some(entries) => {
                non_empty(entries, &format!("{at}.allow"))?;
                Some(normalize(entries, format!("{at}.allow"))?)
            }
        };
        let deny = match &lists.deny {
            None => Box::default(),
            Some(entries) => normalize(entries, format!("{at}.deny"))?,
        };
        Ok(IdSet { allow, deny })
    }

    /// Whether an event with these ids (a chat's or a participant's, normalized) passes.
    fn admits<'a, I: Iterator<Item = &'a str> + Clone>(&self, ids: I) -> bool {
        let listed = |list: &[Box<str>], mut ids: I| {
            ids.any(|id| list.binary_search_by(|e| (**e).cmp(id)).is_ok())
        };
        if let Some(allow) = &self.allow {
            if !listed(allow, ids.clone()) {
                return false;
            }
        }
        self.deny.is_empty() || !listed(&self.deny, ids)
    }

    fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// A filter ready to evaluate: lists normalized and sorted, chat types as bits, the
/// expression compiled. Cheap to evaluate: the structured clauses read only
/// [`EventFacts`].
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    from_me: Option<bool>,
    /// A set of [`ChatType::bit`]s; `None` is any.
    chat_types: Option<u8>,
    message_types: Option<Box<[Box<str>]>>,
    chats: IdSet,
    participants: IdSet,
    expression: Option<Expr>,
}

impl CompiledFilter {
    /// Whether every event matches (the filter has no clause): the router may skip it.
    pub fn matches_everything(&self) -> bool {
        self.from_me.is_none()
            && self.chat_types.is_none()
            && self.message_types.is_none()
            && self.chats.is_empty()
            && self.participants.is_empty()
            && self.expression.is_none()
    }

    /// Whether evaluating may need the event's parsed `data` (the filter has a `match`
    /// expression). A router with no such filter never parses `data`.
    pub fn needs_data(&self) -> bool {
        self.expression.is_some()
    }

    /// Whether the event with these facts and this `data` passes the filter.
    pub fn matches(&self, facts: &EventFacts, data: &LazyData<'_>) -> bool {
        self.matches_with(facts, || data.get())
    }

    /// [`CompiledFilter::matches`] with `data` from any source: `data` is called only
    /// when the structured clauses pass and there is an expression, and `None` (data
    /// that is not JSON) fails the expression.
    pub fn matches_with<'v>(
        &self,
        facts: &EventFacts,
        data: impl FnOnce() -> Option<&'v Value>,
    ) -> bool {
        self.matches_facts(facts)
            && match &self.expression {
                None => true,
                Some(expression) => data().is_some_and(|data| expression.eval(data)),
            }
    }

    /// The structured clauses alone (see the module doc for absent facts).
    pub fn matches_facts(&self, facts: &EventFacts) -> bool {
        if let Some(wanted) = self.from_me {
            if facts.from_me() != Some(wanted) {
                return false;
            }
        }
        if let Some(set) = self.chat_types {
            if facts.chat_type().is_none_or(|t| set & t.bit() == 0) {
                return false;
            }
        }
        if let Some(types) = &self.message_types {
            let Some(t) = facts.message_type() else {
                return false;
            };
            if !types.iter().any(|wanted| **wanted == *t) {
                return false;
            }
        }
        self.chats.admits(facts.chats()) && self.participants.admits(facts.participants())
    }
}

/// An event's `data`, parsed on first use and then kept: the router makes one per event
/// and passes it to every subscription's [`CompiledFilter::matches`], so `data` is parsed
/// at most once per event, and never when no expression asks for it.
#[derive(Debug)]
pub struct LazyData<'a> {
    raw: &'a RawValue,
    parsed: OnceCell<Option<Value>>,
}

impl<'a> LazyData<'a> {
    /// Wraps an event's raw `data`; nothing is parsed yet.
    pub fn new(raw: &'a RawValue) -> LazyData<'a> {
        LazyData {
            raw,
            parsed: OnceCell::new(),
        }
    }

    /// The parsed `data` (parsed now if it was not yet); `None` if it is not JSON.
    pub fn get(&self) -> Option<&Value> {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.raw.get()).ok())
            .as_ref()
    }

    /// Whether `data` has been parsed (for tests and metrics).
    pub fn was_parsed(&self) -> bool {
        self.parsed.get().is_some()
    }
}

#[cfg(test)]
mod tests;
