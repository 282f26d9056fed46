//! `registre append` and `registre search`: HTTP clients of a registre server.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::CliError;

/// Where the server is and how to authenticate.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the registre server.
    #[arg(long, env = "REGISTRE_SERVER", default_value = "http://127.0.0.1:7380")]
    pub server: String,
    /// File holding the bearer token (default: registre-data/admin-token).
    #[arg(long, env = "REGISTRE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl ServerArgs {
    pub fn token(&self) -> Result<String, CliError> {
        if let Ok(t) = std::env::var("REGISTRE_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
        if self.token_file.is_none()
            && let Some(t) = crate::login::saved_token()
        {
            return Ok(t);
        }
        let path = self
            .token_file
            .clone()
            .unwrap_or_else(|| crate::default_data_dir().join("admin-token"));
        // A client certificate can be the credential on its own (mutual
        // TLS): no token, no Authorization header.
        if self.token_file.is_none()
            && !path.exists()
            && std::env::var_os("REGISTRE_CLIENT_CERT").is_some()
        {
            return Ok(String::new());
        }
        let t = std::fs::read_to_string(&path).map_err(|e| {
            CliError::with(
                format!(
                    "cannot read the token file {} (pass --token-file, or set REGISTRE_TOKEN)",
                    path.display()
                ),
                &e,
            )
        })?;
        Ok(t.trim().to_owned())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }
}

const APPEND_HELP: &str = "\
Input: JSON Lines, one trace per line (blank lines skipped), e.g.
  {\"class\":\"mss\",\"occurred_at\":\"2026-11-28T15:42:07.123+01:00\",\"actor\":{\"id\":\"810001234567\"},\"action\":\"envoi\",\"target\":{\"mailbox\":\"dr.martin@hopital.mssante.fr\"}}

Examples:
  registre append traces.jsonl
  producer | registre append -
  registre append --server https://registre.hopital.fr --token-file prod.token traces.jsonl

Traces are sent in batches; each batch is acknowledged only once durable.
A refused trace (invalid, or carrying message content) is reported with its
line number and reason, the other traces of its batch are still stored, and
the exit status is 1. Exit status 2 means the run stopped early.";

/// Send JSON Lines traces to a server.
#[derive(Args)]
#[command(after_help = APPEND_HELP)]
pub struct AppendArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Traces per request (at most 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=10000))]
    batch: u16,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// JSON Lines file, or `-` for standard input.
    #[arg(default_value = "-")]
    file: String,
}

struct Refused {
    line: usize,
    reason: String,
}

pub async fn append(args: AppendArgs) -> Result<ExitCode, CliError> {
    let token = args.server.token()?;
    let client = http_client()?;
    let url = args.server.url("/v1/traces");
    let (reader, total_bytes): (Box<dyn BufRead>, Option<u64>) = if args.file == "-" {
        (Box::new(std::io::BufReader::new(std::io::stdin())), None)
    } else {
        let f = std::fs::File::open(&args.file)
            .map_err(|e| CliError::with(format!("cannot open {}", args.file), &e))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 20, f)), len)
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        progress(total_bytes)
    };

    let mut refused: Vec<Refused> = Vec::new();
    let mut accepted = 0u64;
    let mut read = 0usize;
    let mut batch: Vec<(usize, String)> = Vec::with_capacity(args.batch as usize);
    let mut lines = reader.lines();
    let mut line_no = 0usize;
    loop {
        let next = lines.next();
        let done = next.is_none();
        if let Some(line) = next {
            let line = line.map_err(|e| CliError::with("cannot read the input", &e))?;
            line_no += 1;
            bar.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            read += 1;
            if serde_json::from_str::<&RawValue>(&line).is_err() {
                refused.push(Refused {
                    line: line_no,
                    reason: "not a JSON value".into(),
                });
                continue;
            }
            batch.push((line_no, line));
        }
        if batch.len() >= args.batch as usize || (done && !batch.is_empty()) {
            accepted += send_batch(&client, &url, &token, &mut batch, &mut refused).await?;
            batch.clear();
            bar.set_message(format!("{accepted} accepted, {} refused", refused.len()));
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "{read} traces read, {accepted} accepted (durable), {} refused",
        refused.len()
    );
    refused.sort_by_key(|r| r.line);
    for r in refused.iter().take(1000) {
        eprintln!("  line {}: {}", r.line, r.reason);
    }
    if refused.len() > 1000 {
        eprintln!("  … and {} more", refused.len() - 1000);
    }
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Posts one batch; traces the server refuses are recorded and the rest of
/// the batch is sent again (a refused request stores nothing). Returns how
/// many were acknowledged.
async fn send_batch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    batch: &mut Vec<(usize, String)>,
    refused: &mut Vec<Refused>,
) -> Result<u64, CliError> {
    let mut attempts_503 = 0u32;
    while !batch.is_empty() {
        let mut body =
            String::with_capacity(batch.iter().map(|(_, l)| l.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, (_, l)) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(l);
        }
        body.push(']');
        let resp = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| CliError::with(format!("cannot reach {url}"), &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match status {
            201 => return Ok(batch.len() as u64),
            422 => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let errors = v["errors"].as_array().cloned().unwrap_or_default();
                if errors.is_empty() {
                    return Err(CliError::new(format!("server refused the batch: {text}")));
                }
                let mut bad: Vec<usize> = Vec::new();
                for e in &errors {
                    let Some(pos) = e["trace"].as_u64().map(|p| p as usize) else {
                        continue;
                    };
                    if let Some((line, _)) = batch.get(pos) {
                        let field = e["field"].as_str().unwrap_or("");
                        let detail = e["detail"].as_str().unwrap_or("refused");
                        refused.push(Refused {
                            line: *line,
                            reason: if field.is_empty() {
                                detail.to_owned()
                            } else {
                                format!("`{field}`: {detail}")
                            },
                        });
                        bad.push(pos);
                    }
                }
                if bad.is_empty() {
                    return Err(CliError::new(format!("server refused the batch: {text}")));
                }
                let mut i = 0;
                batch.retain(|_| {
                    let keep = !bad.contains(&i);
                    i += 1;
                    keep
                });
            }
            503 if attempts_503 < 30 => {
                attempts_503 += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts_503.min(10))))
                    .await;
            }
            401 => {
                return Err(CliError::new(
                    "the server refused the token (401); check --token-file or REGISTRE_TOKEN",
                ));
            }
            _ => {
                return Err(CliError::new(format!(
                    "the server answered {status}: {}",
                    problem_detail(&text)
                )));
            }
        }
    }
    Ok(0)
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
}

const SEARCH_HELP: &str = "\
Examples:
  registre search --actor 810001234567
  registre search --mailbox dr.martin@hopital.mssante.fr --action suppression --since 2026-11-01
  registre search --patient 1234567890123 --class applicative --format csv > acces.csv
  registre search --actor 810001234567 --occurred-since 2026-12-05T00:00:00+01:00 --occurred-until 2026-12-06T00:00:00+01:00
  registre search --limit 100000 --format jsonl > all.jsonl

Newest first (by reception). Filters combine (AND). --occurred-since/
--occurred-until bound the time the action happened (occurred_at, as the
producer stated it, compared as an instant whatever its offset): use them to
answer \"what happened on 5 December\", even for traces that arrived late.
--since/--until bound the reception time (received_at, the journal's clock).
All four take an RFC 3339 date-time (2026-11-28T08:00:00+01:00) or a date
(2026-11-28, meaning midnight UTC).";

/// The search filters, shared by `search` and `export`.
#[derive(Args, Clone)]
pub struct Filters {
    /// Author id (actor.id), exact.
    #[arg(long)]
    actor: Option<String>,
    /// Mailbox (target.mailbox), case-insensitive.
    #[arg(long)]
    mailbox: Option<String>,
    /// Patient identifier (target.patient.id), exact.
    #[arg(long)]
    patient: Option<String>,
    /// Action (consultation, envoi, suppression, …).
    #[arg(long)]
    action: Option<String>,
    /// Class (mss, technique, applicative, or a configured one).
    #[arg(long)]
    class: Option<String>,
    /// Received at or after (RFC 3339, or a date meaning midnight UTC).
    #[arg(long)]
    since: Option<String>,
    /// Received before.
    #[arg(long)]
    until: Option<String>,
    /// The action happened at or after (occurred_at; RFC 3339, or a date
    /// meaning midnight UTC).
    #[arg(long)]
    occurred_since: Option<String>,
    /// The action happened before.
    #[arg(long)]
    occurred_until: Option<String>,
}

impl Filters {
    /// As query parameters of `GET /v1/traces`.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        for (k, v) in [
            ("actor", &self.actor),
            ("mailbox", &self.mailbox),
            ("patient", &self.patient),
            ("action", &self.action),
            ("class", &self.class),
        ] {
            if let Some(v) = v {
                params.push((k, v.clone()));
            }
        }
        for (k, v) in [
            ("since", &self.since),
            ("until", &self.until),
            ("occurred_since", &self.occurred_since),
            ("occurred_until", &self.occurred_until),
        ] {
            if let Some(v) = v {
                params.push((k, date_or_datetime(v)));
            }
        }
        params
    }
}

/// Search the journal.
#[derive(Args)]
#[command(after_help = SEARCH_HELP)]
pub struct SearchArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    filters: Filters,
    /// Most traces to print.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn search(args: SearchArgs) -> Result<(), CliError> {
    let token = args.server.token()?;
    let client = http_client()?;
    let params = args.filters.params();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let write_err = |e: std::io::Error| CliError::with("cannot write the output", &e);
    if let Format::Csv = args.format {
        write!(out, "{}\r\n", crate::csv::CSV_COLUMNS.join(",")).map_err(write_err)?;
    }
    let mut printed = 0usize;
    let mut cursor: Option<String> = None;
    let mut table: Vec<[String; 8]> = Vec::new();
    while printed < args.limit {
        let mut p = params.clone();
        p.push(("limit", (args.limit - printed).min(1000).to_string()));
        if let Some(c) = &cursor {
            p.push(("cursor", c.clone()));
        }
        let resp = client
            .get(args.server.url("/v1/traces"))
            .bearer_auth(&token)
            .query(&p)
            .send()
            .await
            .map_err(|e| CliError::with(format!("cannot reach {}", args.server.server), &e))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| CliError::with("cannot read the answer", &e))?;
        if status != 200 {
            return Err(CliError::new(format!(
                "the server answered {status}: {}",
                problem_detail(&text)
            )));
        }
        let page: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::with("the server's answer is not JSON", &e))?;
        let traces = page["traces"].as_array().cloned().unwrap_or_default();
        for t in &traces {
            match args.format {
                Format::Jsonl => writeln!(out, "{t}").map_err(write_err)?,
                Format::Csv => write!(out, "{}\r\n", crate::csv::csv_row(t)).map_err(write_err)?,
                Format::Table => table.push(table_row(t)),
            }
        }
        printed += traces.len();
        match page["next"].as_str() {
            // A page may be empty yet have a next one (the server bounds
            // the work per request); stop only if the cursor stops moving.
            Some(c) if cursor.as_deref() != Some(c) => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    if let Format::Table = args.format {
        print_table(&mut out, &table).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    eprintln!("{printed} traces");
    Ok(())
}

fn s(v: &Value) -> String {
    crate::csv::cell_text(v)
}

fn table_row(t: &Value) -> [String; 8] {
    let target = t["target"]["mailbox"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            t["target"]["patient"]["id"]
                .as_str()
                .map(|p| format!("patient {p}"))
        })
        .or_else(|| t["target"]["resource"].as_str().map(str::to_owned))
        .unwrap_or_default();
    [
        s(&t["received_at"]).chars().take(23).collect(),
        s(&t["occurred_at"]),
        format!("{}/{}", s(&t["log"]), s(&t["index"])),
        s(&t["action"]),
        s(&t["actor"]["id"]),
        target,
        s(&t["target"]["folder"]),
        s(&t["response"]["status"]),
    ]
}

fn print_table(out: &mut impl Write, rows: &[[String; 8]]) -> std::io::Result<()> {
    let head = [
        "RECEIVED (UTC)",
        "OCCURRED (LOCAL)",
        "LOG/INDEX",
        "ACTION",
        "ACTOR",
        "TARGET",
        "FOLDER",
        "STATUS",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count().min(40));
        }
    }
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(40).collect();
                format!("{c:<width$}", width = w[i])
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(head.to_vec()).trim_end())?;
    for r in rows {
        writeln!(
            out,
            "{}",
            line(r.iter().map(String::as_str).collect()).trim_end()
        )?;
    }
    Ok(())
}

pub fn date_or_datetime(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    }
}

pub fn problem_detail(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(500).collect())
}

/// The HTTP(S) client of every command. `REGISTRE_CA_CERT` (PEM) adds a
/// trusted CA (a server with a private certificate);
/// `REGISTRE_CLIENT_CERT` (PEM: certificate chain and private key) presents
/// a client certificate (mutual TLS).
pub fn http_client() -> Result<reqwest::Client, CliError> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(120));
    if let Some(path) = std::env::var_os("REGISTRE_CA_CERT") {
        let pem = std::fs::read(&path).map_err(|e| {
            CliError::with(
                format!("cannot read REGISTRE_CA_CERT {}", path.to_string_lossy()),
                &e,
            )
        })?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| CliError::with("REGISTRE_CA_CERT is not a PEM certificate", &e))?;
        b = b.add_root_certificate(cert);
    }
    if let Some(path) = std::env::var_os("REGISTRE_CLIENT_CERT") {
        let pem = std::fs::read(&path).map_err(|e| {
            CliError::with(
                format!(
                    "cannot read REGISTRE_CLIENT_CERT {}",
                    path.to_string_lossy()
                ),
                &e,
            )
        })?;
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            CliError::with(
                "REGISTRE_CLIENT_CERT must hold a PEM certificate and its key",
                &e,
            )
        })?;
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| CliError::with("cannot build the HTTP client", &e))
}

pub fn progress(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = match total {
        Some(_) => ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        ),
        None => ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bytes} read ({bytes_per_sec}) {msg}",
        ),
    };
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

/// One JSON request to the server with the caller's credential; a non-2xx
/// answer becomes an error carrying the problem's detail.
pub async fn call_json(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let token = server.token()?;
    let client = http_client()?;
    let mut req = client.request(method, server.url(path));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| CliError::with(format!("cannot reach {}", server.server), &e))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(CliError::new(format!(
            "the server answered {status}: {}",
            problem_detail(&text)
        )));
    }
    serde_json::from_str(&text).map_err(|e| CliError::with("the answer is not JSON", &e))
}
