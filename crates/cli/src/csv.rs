//! The CSV form of traces (`registre search --format csv`, `traces.csv` in
//! an export bundle): columns documented in docs/format.md.

use serde_json::Value;

/// Columns of `--format csv` (documented in docs/format.md).
pub const CSV_COLUMNS: [&str; 16] = [
    "log",
    "index",
    "id",
    "received_at",
    "occurred_at",
    "class",
    "action",
    "actor_id",
    "actor_id_type",
    "actor_auth",
    "mailbox",
    "folder",
    "uids",
    "patient_id",
    "request",
    "response_status",
];

pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn csv_row(t: &Value) -> String {
    let cells = [
        cell_text(&t["log"]),
        cell_text(&t["index"]),
        cell_text(&t["id"]),
        cell_text(&t["received_at"]),
        cell_text(&t["occurred_at"]),
        cell_text(&t["class"]),
        cell_text(&t["action"]),
        cell_text(&t["actor"]["id"]),
        cell_text(&t["actor"]["id_type"]),
        cell_text(&t["actor"]["auth"]),
        cell_text(&t["target"]["mailbox"]),
        cell_text(&t["target"]["folder"]),
        cell_text(&t["target"]["uids"]),
        cell_text(&t["target"]["patient"]["id"]),
        cell_text(&t["request"]),
        cell_text(&t["response"]["status"]),
    ];
    cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 4180 quoting; cells starting with a formula character are prefixed
/// with `'` so a spreadsheet never evaluates them.
pub fn csv_cell(c: &str) -> String {
    let c = if c.starts_with(['=', '+', '-', '@', '\t', '\r']) && c.parse::<f64>().is_err() {
        format!("'{c}")
    } else {
        c.to_owned()
    };
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c
    }
}
