//! What one page says about an API: where the records are, which field keys them, how the
//! next page is asked for and which field could carry an incremental cursor. Pure functions
//! over the parsed body, the `Link` header and the request's parameters; every guess carries
//! the evidence it was made from, for the comments of the written config.

use serde_json::{Map, Value};

/// Names an array of records is commonly kept under.
const RECORD_ARRAY_NAMES: &[&str] = &[
    "data", "results", "items", "records", "entries", "value", "values", "objects", "list", "rows", "hits", "elements",
    "nodes", "edges",
];

/// How deep into the body arrays of records and pagination members are looked for.
const MAX_DEPTH: usize = 3;

/// The first page as fetched.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The parsed body.
    pub body: &'a Value,
    /// Whether the `Link` header has a `rel="next"` target.
    pub next_link: bool,
    /// The request's query parameters, as given on the command line.
    pub params: &'a [(String, String)],
    /// Path segments of the request (`["v1", "things"]`), to recognise a records array
    /// named after the resource.
    pub path_segments: &'a [String],
}

/// The body has no records Landfall could land.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no records found: {0}")]
pub struct NoRecords(pub String);

/// Everything proposed for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub records: RecordsGuess,
    pub primary_key: KeyGuess,
    pub pagination: PaginationGuess,
    pub incremental: CursorGuess,
    /// Request parameters that stay static `params` (those pagination or the incremental
    /// bound now carry are taken out).
    pub params: Vec<(String, String)>,
}

/// Where the records are.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsGuess {
    /// `records_path` as written in the config.
    pub path: String,
    pub shape: Shape,
    /// Records on the page.
    pub count: usize,
    /// Other arrays of objects that could hold the records.
    pub alternatives: Vec<String>,
}

/// The shape the records were found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The body is the array.
    TopLevelArray,
    /// An array of objects in the body.
    Array,
    /// Object members keyed by position (`{"0": {..}, "1": {..}, "total": 2}`).
    Keyed,
    /// No array: the whole document is one record.
    Document,
}

/// The proposed primary key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGuess {
    /// Fields as written in `primary_key` (top-level names or JSON pointers).
    pub fields: Vec<String>,
    pub evidence: KeyEvidence,
}

/// Why the key was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEvidence {
    /// An id-like field, present and unique on the page.
    IdField,
    /// A field ending in `_id` that happens to be unique on the page: weaker.
    WeakIdField,
    /// A whole-document record keyed by the request parameters it echoes and its time.
    DocumentEcho,
    /// A whole-document record with nothing that identifies it: no key.
    DocumentNone,
    /// Nothing present in every record and unique.
    NotFound,
    /// No records on the page to look at.
    NoRecords,
}

/// The proposed pagination.
#[derive(Debug, Clone, PartialEq)]
pub enum PaginationGuess {
    LinkHeader,
    NextUrl {
        next_url_path: String,
        stop: Option<Stop>,
        relative: bool,
    },
    Cursor {
        cursor_path: String,
        cursor_param: String,
        /// Whether the parameter name was confirmed by a next link on the page.
        param_confirmed: bool,
        stop: Option<Stop>,
    },
    /// The last record's key is the next cursor (Stripe's `starting_after`).
    LastRecord {
        last_record_path: String,
        cursor_param: String,
        stop: Stop,
    },
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
        total_path: Option<String>,
        /// Guessed from a total alone, without an offset parameter.
        assumed: bool,
    },
    PageNumber {
        page_param: String,
        page_size_param: Option<String>,
        page_size: u64,
        start_page: u64,
        total_pages_path: Option<String>,
    },
    None {
        /// The page holds exactly as many records as a page-size parameter asked for.
        page_looks_full: bool,
    },
}

impl PaginationGuess {
    /// The `pagination.type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            PaginationGuess::LinkHeader => "link_header",
            PaginationGuess::NextUrl { .. } => "next_url",
            PaginationGuess::Cursor { .. } | PaginationGuess::LastRecord { .. } => "cursor",
            PaginationGuess::Offset { .. } => "offset",
            PaginationGuess::PageNumber { .. } => "page_number",
            PaginationGuess::None { .. } => "none",
        }
    }
}

/// A member of the body that says the list ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub path: String,
    /// The value that ends the stream.
    pub value: bool,
}

/// A time format the cursor can be read in (`incremental.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    Rfc3339,
    Date,
    UnixSeconds,
    UnixMillis,
}

impl TimeFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Date => "date",
            TimeFormat::UnixSeconds => "unix_seconds",
            TimeFormat::UnixMillis => "unix_millis",
        }
    }

    /// A readable name for comments.
    pub fn describe(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "RFC 3339 timestamps",
            TimeFormat::Date => "dates (YYYY-MM-DD)",
            TimeFormat::UnixSeconds => "Unix seconds",
            TimeFormat::UnixMillis => "Unix milliseconds",
        }
    }

    /// The format of a value, when it is one of the four.
    pub fn of(value: &Value) -> Option<TimeFormat> {
        match value {
            Value::String(text) => TimeFormat::of_text(text),
            Value::Number(number) => number.as_i64().and_then(TimeFormat::of_integer),
            _ => None,
        }
    }

    /// The format of a parameter's text.
    pub fn of_text(text: &str) -> Option<TimeFormat> {
        if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
            Some(TimeFormat::Rfc3339)
        } else if text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
            Some(TimeFormat::Date)
        } else if !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse::<i64>().ok().and_then(TimeFormat::of_integer)
        } else {
            None
        }
    }

    /// Seconds from 2001 to 2286 have ten digits; milliseconds of the same years thirteen.
    fn of_integer(number: i64) -> Option<TimeFormat> {
        match number {
            1_000_000_000..=9_999_999_999 => Some(TimeFormat::UnixSeconds),
            1_000_000_000_000..=9_999_999_999_999 => Some(TimeFormat::UnixMillis),
            _ => None,
        }
    }
}

/// Order of the cursor values on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
    Unordered,
    /// One record, or every value equal: nothing to tell.
    Unknown,
}

/// The proposed incremental cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorGuess {
    /// A cursor field and the request parameter that filters on it.
    Found {
        field: String,
        field_format: TimeFormat,
        order: Order,
        param: String,
        start: String,
        /// The format the parameter was given in: what the API takes.
        format: TimeFormat,
    },
    /// A cursor field, but no parameter was given that filters on it.
    FieldOnly {
        field: String,
        field_format: TimeFormat,
        order: Order,
    },
    /// No field holds a time in every record.
    None,
}

/// Infers everything from one page.
pub fn propose(observed: &Observed<'_>) -> Result<Proposal, NoRecords> {
    let records = find_records(observed.body, observed.path_segments)?;
    let items = records_of(observed.body, &records.path);
    let document = records.shape == Shape::Document;
    let incremental = guess_cursor(&items, observed.params, document);
    let primary_key = if document {
        document_key(observed.body, observed.params, &incremental)
    } else {
        guess_key(&items)
    };
    let pagination = guess_pagination(observed, &records, &primary_key, items.len());
    let params = static_params(observed.params, &pagination, &incremental);
    Ok(Proposal {
        records,
        primary_key,
        pagination,
        incremental,
        params,
    })
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn pointer(parent: &str, key: &str) -> String {
    format!("{parent}/{}", escape_segment(key))
}

/// Finds the records: the body itself when it is an array, else the likeliest array of
/// objects in it, else objects keyed by position, else the whole document.
pub fn find_records(body: &Value, path_segments: &[String]) -> Result<RecordsGuess, NoRecords> {
    match body {
        Value::Array(items) => {
            if let Some(other) = items.iter().find(|item| !item.is_object()) {
                return Err(NoRecords(format!(
                    "the body is an array of {}, not of objects",
                    kind_plural(other)
                )));
            }
            Ok(RecordsGuess {
                path: String::new(),
                shape: Shape::TopLevelArray,
                count: items.len(),
                alternatives: Vec::new(),
            })
        }
        Value::Object(members) => {
            let mut arrays = Vec::new();
            collect_arrays(members, "", 1, &mut arrays);
            let name_of = |path: &str| {
                path.rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .replace("~1", "/")
                    .replace("~0", "~")
            };
            let score = |(path, len, depth): &(String, usize, usize)| {
                let name = name_of(path).to_ascii_lowercase();
                let named = RECORD_ARRAY_NAMES.contains(&name.as_str())
                    || path_segments.iter().any(|segment| segment.eq_ignore_ascii_case(&name));
                (*len > 0, named, std::cmp::Reverse(*depth), *len)
            };
            arrays.sort_by_key(|candidate| std::cmp::Reverse(score(candidate)));
            if let Some((path, count, _)) = arrays.first().cloned() {
                let alternatives = arrays[1..].iter().map(|(path, _, _)| path.clone()).collect();
                return Ok(RecordsGuess {
                    path,
                    shape: Shape::Array,
                    count,
                    alternatives,
                });
            }
            let objects: Vec<&String> = members
                .iter()
                .filter(|(_, value)| value.is_object())
                .map(|(key, _)| key)
                .collect();
            if !objects.is_empty() && objects.iter().all(|key| key.parse::<u64>().is_ok()) {
                return Ok(RecordsGuess {
                    path: "/*".to_owned(),
                    shape: Shape::Keyed,
                    count: objects.len(),
                    alternatives: Vec::new(),
                });
            }
            Ok(RecordsGuess {
                path: "/.".to_owned(),
                shape: Shape::Document,
                count: 1,
                alternatives: Vec::new(),
            })
        }
        other => Err(NoRecords(format!(
            "the body is {}, not an object or an array",
            crate::records::kind(&other.to_string())
        ))),
    }
}

fn kind_plural(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "arrays",
        Value::String(_) => "strings",
        Value::Number(_) => "numbers",
        Value::Bool(_) => "booleans",
        Value::Null => "nulls",
        Value::Object(_) => "objects",
    }
}

/// Arrays whose elements are all objects (or that are empty), with their length and depth.
fn collect_arrays(members: &Map<String, Value>, parent: &str, depth: usize, found: &mut Vec<(String, usize, usize)>) {
    for (key, value) in members {
        let path = pointer(parent, key);
        match value {
            Value::Array(items) if items.iter().all(Value::is_object) => found.push((path, items.len(), depth)),
            Value::Object(inner) if depth < MAX_DEPTH => collect_arrays(inner, &path, depth + 1, found),
            _ => {}
        }
    }
}

/// The records at `path` as [`find_records`] wrote it.
pub fn records_of<'a>(body: &'a Value, path: &str) -> Vec<&'a Value> {
    if path == "/." {
        return vec![body];
    }
    if path == "/*" {
        return body
            .as_object()
            .map(|members| members.values().filter(|value| value.is_object()).collect())
            .unwrap_or_default();
    }
    match body.pointer(path) {
        Some(Value::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    }
}

/// A scalar field of the records: its config spelling and how to read it.
#[derive(Debug, Clone)]
struct Field {
    /// As written in the config: a top-level name, or a JSON pointer into a wrapper.
    written: String,
    /// The field's own name.
    name: String,
    /// The single member every record is wrapped in (`{"case": {..}}`), if any.
    wrapper: Option<String>,
}

impl Field {
    fn get<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        match &self.wrapper {
            Some(wrapper) => record.get(wrapper)?.get(&self.name),
            None => record.get(&self.name),
        }
    }
}

/// The single member that wraps every record, as Omnidesk's `{"case": {..}}`.
fn wrapper(records: &[&Value]) -> Option<String> {
    let mut name = None;
    for record in records {
        let members = record.as_object()?;
        if members.len() != 1 {
            return None;
        }
        let (key, value) = members.iter().next()?;
        if !value.is_object() || name.as_ref().is_some_and(|name| name != key) {
            return None;
        }
        name = Some(key.clone());
    }
    name
}

/// The fields of the first record (inside its wrapper, when every record has one).
fn fields(records: &[&Value]) -> Vec<Field> {
    let Some(first) = records.first() else {
        return Vec::new();
    };
    let wrapper = wrapper(records);
    let members = match &wrapper {
        Some(name) => first.get(name).and_then(Value::as_object),
        None => first.as_object(),
    };
    let Some(members) = members else {
        return Vec::new();
    };
    members
        .keys()
        .map(|name| Field {
            written: match &wrapper {
                Some(wrapper) => format!("{}{}", pointer("", wrapper), pointer("", name)),
                None if name.starts_with('/') => pointer("", name),
                None => name.clone(),
            },
            name: name.clone(),
            wrapper: wrapper.clone(),
        })
        .collect()
}

/// How strongly a field's name says "identifier": lower is stronger.
fn id_rank(name: &str, wrapper: Option<&str>) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    if lower == "id" {
        return Some(0);
    }
    if matches!(lower.as_str(), "uuid" | "guid") {
        return Some(1);
    }
    if wrapper.is_some_and(|wrapper| lower == format!("{}_id", wrapper.to_ascii_lowercase())) {
        return Some(2);
    }
    if matches!(lower.as_str(), "sku" | "key" | "slug" | "code") {
        return Some(3);
    }
    if lower.ends_with("_id") || name.ends_with("Id") || name.ends_with("ID") {
        return Some(4);
    }
    None
}

/// An id-like field present in every record (a string or an integer) and unique on the page.
pub fn guess_key(records: &[&Value]) -> KeyGuess {
    if records.is_empty() {
        return KeyGuess {
            fields: Vec::new(),
            evidence: KeyEvidence::NoRecords,
        };
    }
    let mut candidates: Vec<(u8, Field)> = fields(records)
        .into_iter()
        .filter_map(|field| id_rank(&field.name, field.wrapper.as_deref()).map(|rank| (rank, field)))
        .collect();
    candidates.sort_by_key(|(rank, _)| *rank);
    for (rank, field) in candidates {
        let mut seen = std::collections::HashSet::new();
        let unique = records.iter().all(|record| {
            let text = match field.get(record) {
                Some(Value::String(text)) if !text.is_empty() => text.clone(),
                Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
                _ => return false,
            };
            seen.insert(text)
        });
        if unique {
            return KeyGuess {
                fields: vec![field.written],
                evidence: if rank < 4 {
                    KeyEvidence::IdField
                } else {
                    KeyEvidence::WeakIdField
                },
            };
        }
    }
    KeyGuess {
        fields: Vec::new(),
        evidence: KeyEvidence::NotFound,
    }
}

/// A whole-document record (a snapshot) is identified by the request parameters it echoes
/// (`base: USD` for `?base=USD`) and its time field.
fn document_key(body: &Value, params: &[(String, String)], cursor: &CursorGuess) -> KeyGuess {
    let mut fields: Vec<String> = body
        .as_object()
        .map(|members| {
            members
                .iter()
                .filter(|(_, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Number(number) => number.to_string(),
                        _ => return false,
                    };
                    params.iter().any(|(_, given)| *given == text)
                })
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    let time = match cursor {
        CursorGuess::Found { field, .. } | CursorGuess::FieldOnly { field, .. } => Some(field.clone()),
        CursorGuess::None => None,
    };
    fields.extend(time.filter(|field| !fields.contains(field)));
    let evidence = if fields.is_empty() {
        KeyEvidence::DocumentNone
    } else {
        KeyEvidence::DocumentEcho
    };
    KeyGuess { fields, evidence }
}

/// How strongly a field's name says "when this record last changed": lower is stronger.
fn time_rank(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    if ["updated", "modified", "changed", "generated"]
        .iter()
        .any(|part| lower.contains(part))
    {
        Some(0)
    } else if lower.contains("timestamp") || lower == "time" || lower == "ts" {
        Some(1)
    } else if lower.contains("created") {
        Some(2)
    } else if lower.ends_with("_at") || name.ends_with("At") || lower.contains("date") || lower.contains("time") {
        Some(3)
    } else {
        None
    }
}

/// The order of the values of a time field over the page.
fn order_of(values: &[&Value], format: TimeFormat) -> Order {
    let keys: Vec<i128> = values.iter().filter_map(|value| sort_key(value, format)).collect();
    if keys.len() < 2 || keys.windows(2).all(|pair| pair[0] == pair[1]) {
        return Order::Unknown;
    }
    if keys.windows(2).all(|pair| pair[0] <= pair[1]) {
        Order::Ascending
    } else if keys.windows(2).all(|pair| pair[0] >= pair[1]) {
        Order::Descending
    } else {
        Order::Unordered
    }
}

fn sort_key(value: &Value, format: TimeFormat) -> Option<i128> {
    match (format, value) {
        (TimeFormat::Rfc3339, Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| i128::from(time.timestamp_micros())),
        (TimeFormat::Date, Value::String(text)) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|date| i128::from(chrono::Datelike::num_days_from_ce(&date))),
        (_, Value::Number(number)) => number.as_i64().map(i128::from),
        (_, Value::String(text)) => text.parse::<i64>().ok().map(i128::from),
        _ => None,
    }
}

/// Names of request parameters that carry a "changed since" lower bound.
fn is_lower_bound_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    let exact = [
        "since",
        "updated_since",
        "updatedsince",
        "modified_since",
        "modifiedsince",
        "changed_since",
        "updated_after",
        "updatedafter",
        "modified_after",
        "start_time",
        "starttime",
        "start_date",
        "startdate",
        "from",
        "from_date",
        "updated_at_min",
        "updated_min",
        "min_updated_at",
        "date_from",
        "after",
    ];
    exact.contains(&lower.as_str())
        || lower.ends_with("[gte]")
        || lower.ends_with("[gt]")
        || lower.ends_with("_gte")
        || lower.ends_with("_since")
        || lower.ends_with("_after")
        || lower.ends_with("_from")
}

/// How well a time field fits as the cursor: changes along the page, in order, then by name.
type CursorScore = (bool, bool, std::cmp::Reverse<u8>);

/// A time field every record has (the likeliest "last changed" one), and the parameter
/// given on the request that filters on it.
pub fn guess_cursor(records: &[&Value], params: &[(String, String)], document: bool) -> CursorGuess {
    let mut best: Option<(CursorScore, Field, TimeFormat, Order)> = None;
    for field in fields(records) {
        let Some(rank) = time_rank(&field.name) else {
            continue;
        };
        let values: Vec<&Value> = records.iter().filter_map(|record| field.get(record)).collect();
        if values.len() != records.len() {
            continue;
        }
        let Some(format) = values.first().and_then(|value| TimeFormat::of(value)) else {
            continue;
        };
        if values.iter().any(|value| TimeFormat::of(value) != Some(format)) {
            continue;
        }
        let order = order_of(&values, format);
        // A field that changes along the page and follows its order beats one that is
        // constant (Zendesk's tickets: `updated_at` all equal, `generated_timestamp` rising).
        let informative = order != Order::Unknown || records.len() < 2;
        let monotonic = matches!(order, Order::Ascending | Order::Descending);
        let score = (informative, monotonic, std::cmp::Reverse(rank));
        if best.as_ref().is_none_or(|(best_score, ..)| score > *best_score) {
            best = Some((score, field, format, order));
        }
    }
    let Some((_, field, field_format, order)) = best else {
        return CursorGuess::None;
    };
    // A snapshot document has no "changed since" parameter to find.
    let bound = (!document)
        .then(|| {
            params.iter().find_map(|(name, value)| {
                let format = TimeFormat::of_text(value)?;
                is_lower_bound_param(name).then(|| (name.clone(), value.clone(), format))
            })
        })
        .flatten();
    match bound {
        Some((param, start, format)) => CursorGuess::Found {
            field: field.written,
            field_format,
            order,
            param,
            start,
            format,
        },
        None => CursorGuess::FieldOnly {
            field: field.written,
            field_format,
            order,
        },
    }
}

/// A member of the body outside the records, with its pointer.
struct Member<'a> {
    path: String,
    /// The member's name, lowercased, without `_` and `-`.
    name: String,
    /// The enclosing member's name, normalised the same way.
    parent: String,
    value: &'a Value,
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn members<'a>(value: &'a Value, path: &str, parent: &str, depth: usize, skip: &str, out: &mut Vec<Member<'a>>) {
    let Some(object) = value.as_object() else {
        return;
    };
    for (key, inner) in object {
        let child = pointer(path, key);
        if child == skip {
            continue;
        }
        out.push(Member {
            path: child.clone(),
            name: normalise(key),
            parent: parent.to_owned(),
            value: inner,
        });
        if depth < MAX_DEPTH {
            members(inner, &child, &normalise(key), depth + 1, skip, out);
        }
    }
}

fn backwards(name: &str) -> bool {
    ["prev", "before", "previous", "first", "last", "self"]
        .iter()
        .any(|part| name.contains(part))
}

fn is_next_link_name(member: &Member<'_>) -> bool {
    !backwards(&member.name)
        && (member.name.contains("next") || member.name.contains("after") || member.parent.contains("next"))
}

/// Names of a body member that holds the next page's cursor.
fn is_cursor_name(member: &Member<'_>) -> bool {
    const NAMES: &[&str] = &[
        "nextcursor",
        "nextpagetoken",
        "pagetoken",
        "nexttoken",
        "continuation",
        "continuationtoken",
        "aftercursor",
        "endcursor",
        "scrollid",
        "next",
        "nextpage",
    ];
    if backwards(&member.name) {
        return false;
    }
    NAMES.contains(&member.name.as_str())
        || (member.name == "cursor" && !member.parent.is_empty())
        || (member.name == "after" && (member.parent == "next" || member.parent == "cursors"))
}

/// The request parameter that carries a cursor read from a member named `name`.
fn cursor_param_from_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "after" || lower == "after_cursor" {
        return "after".to_owned();
    }
    let stripped = name
        .strip_prefix("next_")
        .or_else(|| name.strip_prefix("next"))
        .unwrap_or(name);
    if stripped.is_empty() || stripped.eq_ignore_ascii_case("page") {
        return "cursor".to_owned();
    }
    let mut chars = stripped.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "cursor".to_owned(),
    }
}

fn stop_of(members: &[Member<'_>]) -> Option<Stop> {
    members.iter().find_map(|member| {
        if !member.value.is_boolean() {
            return None;
        }
        let value = match member.name.as_str() {
            "hasmore" | "hasnext" | "hasnextpage" | "more" | "moreitems" => false,
            "endofstream" | "islast" | "lastpage" | "islastpage" | "done" | "finished" | "complete" => true,
            _ => return None,
        };
        Some(Stop {
            path: member.path.clone(),
            value,
        })
    })
}

/// A parameter's name and integer value, when its name is one of `names`.
fn int_param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<(&'a str, u64)> {
    params.iter().find_map(|(name, value)| {
        let normalised = normalise(name);
        (names.contains(&normalised.as_str()))
            .then(|| value.parse::<u64>().ok().map(|number| (name.as_str(), number)))
            .flatten()
    })
}

const PAGE_SIZE_PARAMS: &[&str] = &["limit", "perpage", "pagesize", "size", "count", "maxresults", "top"];

/// How the next page is asked for, from the strongest evidence down: a `Link` header, an
/// absolute next URL in the body, a cursor member, a relative next URL, `has_more` with a
/// key (the last record's key is the cursor), page and offset parameters, a total.
pub fn guess_pagination(
    observed: &Observed<'_>,
    records: &RecordsGuess,
    key: &KeyGuess,
    count: usize,
) -> PaginationGuess {
    if observed.next_link {
        return PaginationGuess::LinkHeader;
    }
    let mut found = Vec::new();
    let skip = if records.shape == Shape::Array {
        records.path.as_str()
    } else {
        ""
    };
    if records.shape != Shape::TopLevelArray && records.shape != Shape::Document {
        members(observed.body, "", "", 1, skip, &mut found);
    }
    if records.shape == Shape::Keyed {
        // The position-keyed members are the records themselves.
        found.retain(|member| {
            let first = member.path[1..].split('/').next().unwrap_or_default();
            first.parse::<u64>().is_err()
        });
    }
    let stop = stop_of(&found);
    let url_text = |member: &Member<'_>| member.value.as_str().map(str::to_owned);
    let absolute = found.iter().find(|member| {
        is_next_link_name(member)
            && url_text(member).is_some_and(|text| text.starts_with("https://") || text.starts_with("http://"))
    });
    if let Some(member) = absolute {
        return PaginationGuess::NextUrl {
            next_url_path: member.path.clone(),
            stop,
            relative: false,
        };
    }
    let relative = found.iter().find(|member| {
        is_next_link_name(member) && url_text(member).is_some_and(|text| text.starts_with('/') && text.contains('?'))
    });
    let cursor = found.iter().find(|member| {
        is_cursor_name(member)
            && (member.value.is_string() || member.value.is_number() || member.value.is_null())
            && !url_text(member).is_some_and(|text| text.contains("://") || text.starts_with('/'))
    });
    if let Some(member) = cursor {
        let name = member.path.rsplit('/').next().unwrap_or_default();
        let value = match member.value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        // A next link beside the cursor names the parameter that carries it.
        let confirmed = value.and_then(|value| {
            relative.and_then(|link| {
                let text = link.value.as_str()?;
                let query = text.split_once('?')?.1;
                url::form_urlencoded::parse(query.as_bytes())
                    .find(|(_, given)| *given == value)
                    .map(|(name, _)| name.into_owned())
            })
        });
        return PaginationGuess::Cursor {
            cursor_path: member.path.clone(),
            cursor_param: confirmed.clone().unwrap_or_else(|| cursor_param_from_name(name)),
            param_confirmed: confirmed.is_some(),
            stop,
        };
    }
    if let Some(member) = relative {
        return PaginationGuess::NextUrl {
            next_url_path: member.path.clone(),
            stop,
            relative: true,
        };
    }
    if let (Some(stop), [field]) = (&stop, key.fields.as_slice())
        && !stop.value
        && key.evidence == KeyEvidence::IdField
    {
        let last_record_path = if field.starts_with('/') {
            field.clone()
        } else {
            pointer("", field)
        };
        return PaginationGuess::LastRecord {
            last_record_path,
            cursor_param: "starting_after".to_owned(),
            stop: stop.clone(),
        };
    }
    let total = found
        .iter()
        .find(|member| {
            member.value.is_u64()
                && matches!(
                    member.name.as_str(),
                    "total" | "totalcount" | "totalresults" | "totalitems" | "totalrecords" | "totalsize" | "count"
                )
        })
        .map(|member| member.path.clone());
    let total_pages = found
        .iter()
        .find(|member| {
            member.value.is_u64() && matches!(member.name.as_str(), "totalpages" | "pagecount" | "pages" | "lastpage")
        })
        .map(|member| member.path.clone());
    let size = int_param(observed.params, PAGE_SIZE_PARAMS);
    // Without a size parameter the page holds the API's default page size: offsets must
    // step by it, or records past it would be skipped.
    let default_size = if count > 0 { count as u64 } else { 100 };
    if let Some((page_param, start)) = int_param(observed.params, &["page", "pagenumber", "pagenum", "p"]) {
        return PaginationGuess::PageNumber {
            page_param: page_param.to_owned(),
            page_size_param: size.map(|(name, _)| name.to_owned()),
            page_size: size.map_or(default_size, |(_, value)| value.max(1)),
            start_page: start.min(1),
            total_pages_path: total_pages,
        };
    }
    let offset = int_param(observed.params, &["offset", "skip", "startindex"]);
    if offset.is_some() || total.is_some() {
        return PaginationGuess::Offset {
            offset_param: offset.map_or("offset", |(name, _)| name).to_owned(),
            limit_param: size.map_or("limit", |(name, _)| name).to_owned(),
            limit: size.map_or(default_size, |(_, value)| value.max(1)),
            total_path: total,
            assumed: offset.is_none(),
        };
    }
    PaginationGuess::None {
        page_looks_full: size.is_some_and(|(_, value)| value > 0 && value as usize == count),
    }
}

/// The request's parameters minus those pagination and the incremental bound now carry.
fn static_params(
    params: &[(String, String)],
    pagination: &PaginationGuess,
    cursor: &CursorGuess,
) -> Vec<(String, String)> {
    let mut carried: Vec<&str> = Vec::new();
    match pagination {
        PaginationGuess::Offset {
            offset_param,
            limit_param,
            ..
        } => carried.extend([offset_param.as_str(), limit_param.as_str()]),
        PaginationGuess::PageNumber {
            page_param,
            page_size_param,
            ..
        } => {
            carried.push(page_param);
            carried.extend(page_size_param.as_deref());
        }
        _ => {}
    }
    if let CursorGuess::Found { param, .. } = cursor {
        carried.push(param);
    }
    params
        .iter()
        .filter(|(name, _)| !carried.contains(&name.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn propose_for(body: &Value, next_link: bool, params: &[(&str, &str)], path: &[&str]) -> Proposal {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let path: Vec<String> = path.iter().map(|segment| (*segment).to_owned()).collect();
        propose(&Observed {
            body,
            next_link,
            params: &params,
            path_segments: &path,
        })
        .unwrap()
    }

    #[test]
    fn a_top_level_array_with_a_link_header_is_link_header_paginated() {
        let body = json!([
            {"id": 1, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-02T00:00:00Z"},
            {"id": 2, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-03T00:00:00Z"}
        ]);
        let proposal = propose_for(
            &body,
            true,
            &[("per_page", "2"), ("since", "2024-01-01T00:00:00Z")],
            &[],
        );
        assert_eq!(proposal.records.path, "");
        assert_eq!(proposal.primary_key.fields, ["id"]);
        assert_eq!(proposal.pagination, PaginationGuess::LinkHeader);
        assert_eq!(
            proposal.incremental,
            CursorGuess::Found {
                field: "updated_at".into(),
                field_format: TimeFormat::Rfc3339,
                order: Order::Ascending,
                param: "since".into(),
                start: "2024-01-01T00:00:00Z".into(),
                format: TimeFormat::Rfc3339,
            }
        );
        assert_eq!(proposal.params, [("per_page".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn has_more_with_ids_is_a_last_record_cursor() {
        let body = json!({"object": "list", "url": "/v1/charges", "has_more": true,
                          "data": [{"id": "ch_2", "created": 1_704_070_800}, {"id": "ch_1", "created": 1_704_067_200}]});
        let proposal = propose_for(&body, false, &[("limit", "2"), ("created[gte]", "1704067200")], &[]);
        assert_eq!(proposal.records.path, "/data");
        assert_eq!(
            proposal.pagination,
            PaginationGuess::LastRecord {
                last_record_path: "/id".into(),
                cursor_param: "starting_after".into(),
                stop: Stop {
                    path: "/has_more".into(),
                    value: false
                },
            }
        );
        let CursorGuess::Found {
            field, order, format, ..
        } = &proposal.incremental
        else {
            panic!("{:?}", proposal.incremental)
        };
        assert_eq!(
            (field.as_str(), *order, *format),
            ("created", Order::Descending, TimeFormat::UnixSeconds)
        );
    }

    #[test]
    fn an_absolute_next_url_wins_over_a_cursor_and_a_constant_time_field_loses() {
        let body = json!({"tickets": [
                              {"id": 1, "updated_at": "2024-01-01T00:00:00Z", "generated_timestamp": 1_704_067_210},
                              {"id": 2, "updated_at": "2024-01-01T00:00:00Z", "generated_timestamp": 1_704_067_220}],
                          "after_cursor": "MTU3", "after_url": "https://x.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor=MTU3",
                          "before_cursor": null, "before_url": null, "end_of_stream": false});
        let proposal = propose_for(
            &body,
            false,
            &[("start_time", "1704067200")],
            &["incremental", "tickets", "cursor.json"],
        );
        assert_eq!(proposal.records.path, "/tickets");
        assert_eq!(
            proposal.pagination,
            PaginationGuess::NextUrl {
                next_url_path: "/after_url".into(),
                stop: Some(Stop {
                    path: "/end_of_stream".into(),
                    value: true
                }),
                relative: false,
            }
        );
        let CursorGuess::Found { field, format, .. } = &proposal.incremental else {
            panic!("{:?}", proposal.incremental)
        };
        assert_eq!(
            (field.as_str(), *format),
            ("generated_timestamp", TimeFormat::UnixSeconds)
        );
        assert!(proposal.params.is_empty());
    }

    #[test]
    fn a_nested_cursor_takes_its_parameter_from_the_next_link() {
        let body = json!({"results": [{"id": "101"}, {"id": "102"}],
                          "paging": {"next": {"after": "2", "link": "/crm/v3/objects/contacts?after=2"}}});
        let proposal = propose_for(&body, false, &[("limit", "2")], &[]);
        assert_eq!(
            proposal.pagination,
            PaginationGuess::Cursor {
                cursor_path: "/paging/next/after".into(),
                cursor_param: "after".into(),
                param_confirmed: true,
                stop: None,
            }
        );
        let demo = json!({"data": [{"id": 1}], "meta": {"next_cursor": null}});
        let PaginationGuess::Cursor {
            cursor_path,
            cursor_param,
            ..
        } = propose_for(&demo, false, &[], &[]).pagination
        else {
            panic!()
        };
        assert_eq!(
            (cursor_path.as_str(), cursor_param.as_str()),
            ("/meta/next_cursor", "cursor")
        );
    }

    #[test]
    fn records_keyed_by_position_are_wrapped_and_keyed_inside() {
        let body = json!({"0": {"case": {"case_id": 7, "subject": "a"}}, "1": {"case": {"case_id": 8, "subject": "b"}},
                          "total_count": 250});
        let proposal = propose_for(&body, false, &[("page", "1"), ("limit", "2")], &[]);
        assert_eq!(proposal.records.path, "/*");
        assert_eq!(proposal.records.count, 2);
        assert_eq!(proposal.primary_key.fields, ["/case/case_id"]);
        assert_eq!(
            proposal.pagination,
            PaginationGuess::PageNumber {
                page_param: "page".into(),
                page_size_param: Some("limit".into()),
                page_size: 2,
                start_page: 1,
                total_pages_path: None,
            }
        );
        assert!(proposal.params.is_empty());
    }

    #[test]
    fn offset_parameters_with_a_total_are_offset_paginated() {
        let body = json!({"items": [{"sku": "A-1", "title": "x"}, {"sku": "A-2", "title": "y"}], "total": 120});
        let proposal = propose_for(&body, false, &[("offset", "0"), ("limit", "2")], &[]);
        assert_eq!(proposal.records.path, "/items");
        assert_eq!(proposal.primary_key.fields, ["sku"]);
        assert_eq!(
            proposal.pagination,
            PaginationGuess::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit: 2,
                total_path: Some("/total".into()),
                assumed: false,
            }
        );
        assert_eq!(proposal.incremental, CursorGuess::None);
    }

    #[test]
    fn without_a_size_parameter_offsets_step_by_the_page_seen() {
        let body = json!({"items": [{"sku": "A-1"}, {"sku": "A-2"}, {"sku": "A-3"}], "total": 120});
        let PaginationGuess::Offset { limit, assumed, .. } = propose_for(&body, false, &[], &[]).pagination else {
            panic!()
        };
        assert_eq!((limit, assumed), (3, true));
    }

    #[test]
    fn a_document_without_arrays_is_one_record_keyed_by_what_it_echoes() {
        let body = json!({"disclaimer": "d", "timestamp": 1_704_070_800, "base": "USD", "rates": {"EUR": 0.9}});
        let proposal = propose_for(&body, false, &[("base", "USD")], &[]);
        assert_eq!(proposal.records.path, "/.");
        assert_eq!(proposal.primary_key.fields, ["base", "timestamp"]);
        assert_eq!(proposal.pagination, PaginationGuess::None { page_looks_full: false });
        assert!(matches!(proposal.incremental, CursorGuess::FieldOnly { .. }));
        let currencies = json!({"EUR": "Euro", "USD": "United States Dollar"});
        let proposal = propose_for(&currencies, false, &[], &[]);
        assert_eq!(proposal.records.path, "/.");
        assert!(proposal.primary_key.fields.is_empty());
        assert_eq!(proposal.primary_key.evidence, KeyEvidence::DocumentNone);
    }

    #[test]
    fn the_array_named_like_records_or_the_resource_is_preferred() {
        let body = json!({"meta": {"warnings": [{"code": 1}]}, "widgets": [{"id": 1}, {"id": 2}]});
        let found = find_records(&body, &["v1".into(), "widgets".into()]).unwrap();
        assert_eq!(found.path, "/widgets");
        assert_eq!(found.alternatives, ["/meta/warnings"]);
        let escaped = find_records(&json!({"a/b": [{"id": 1}]}), &[]).unwrap();
        assert_eq!(escaped.path, "/a~1b");
    }

    #[test]
    fn bodies_without_records_are_refused() {
        assert!(find_records(&json!([1, 2, 3]), &[]).unwrap_err().0.contains("numbers"));
        assert!(find_records(&json!("text"), &[]).unwrap_err().0.contains("a string"));
        assert!(find_records(&json!(null), &[]).is_err());
    }

    #[test]
    fn keys_must_be_present_and_unique_on_the_page() {
        let duplicate = [json!({"id": 1}), json!({"id": 1})];
        let refs: Vec<&Value> = duplicate.iter().collect();
        assert_eq!(guess_key(&refs).evidence, KeyEvidence::NotFound);
        let weak = [json!({"customer_id": 1, "n": 1}), json!({"customer_id": 2, "n": 2})];
        let refs: Vec<&Value> = weak.iter().collect();
        assert_eq!(guess_key(&refs).evidence, KeyEvidence::WeakIdField);
        assert_eq!(guess_key(&[]).evidence, KeyEvidence::NoRecords);
    }

    #[test]
    fn time_formats_are_read_from_values_and_parameters() {
        assert_eq!(
            TimeFormat::of(&json!("2024-01-01T00:00:00Z")),
            Some(TimeFormat::Rfc3339)
        );
        assert_eq!(TimeFormat::of(&json!("2024-01-01")), Some(TimeFormat::Date));
        assert_eq!(TimeFormat::of(&json!(1_704_067_200)), Some(TimeFormat::UnixSeconds));
        assert_eq!(
            TimeFormat::of(&json!(1_704_067_200_000_i64)),
            Some(TimeFormat::UnixMillis)
        );
        assert_eq!(TimeFormat::of(&json!(42)), None);
        assert_eq!(TimeFormat::of(&json!("Mon, 05 May 2014 00:15:17 +0300")), None);
        assert_eq!(TimeFormat::of_text("99999999999999999999"), None);
        // A time field without a filtering parameter is only a suggestion.
        let records = [
            json!({"id": 1, "modified": "2024-01-01"}),
            json!({"id": 2, "modified": "2024-01-02"}),
        ];
        let refs: Vec<&Value> = records.iter().collect();
        assert!(matches!(
            guess_cursor(&refs, &[("starting_after".into(), "x".into())], false),
            CursorGuess::FieldOnly {
                field_format: TimeFormat::Date,
                order: Order::Ascending,
                ..
            }
        ));
    }

    #[test]
    fn a_full_page_without_pagination_is_flagged() {
        let body = json!({"data": [{"id": 1}, {"id": 2}]});
        let proposal = propose_for(&body, false, &[("limit", "2")], &[]);
        assert_eq!(proposal.pagination, PaginationGuess::None { page_looks_full: true });
    }
}
