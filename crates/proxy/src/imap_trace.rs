//! One registre trace per significant IMAP action (DESIGN §9, issue 6): the
//! pure step from matched [`Exchange`]s to [`Trace`]s of class `mss`.
//!
//! An [`ImapTracer`] follows one proxied connection: who authenticated,
//! which mailbox is selected, the sequence-number → UID map learned from
//! FETCH responses and the `\Deleted` marks set in this session. Feed it
//! every server event and exchange with [`ImapTracer::on_server`] (or each
//! exchange with [`ImapTracer::trace`], and untagged data with
//! [`ImapTracer::observe`]), and call [`ImapTracer::connection_closed`] when
//! the connection ends.
//!
//! # Actions (DESIGN §9)
//!
//! | command | trace |
//! |---|---|
//! | LOGIN, AUTHENTICATE | `connexion`, success or failure; actor = the login (`id_type` `login`, `auth` `password` for LOGIN, else the SASL mechanism lowercased), or the subject a caller's hook reads from a bearer token (`id_type` `oidc`); the password or token is never kept |
//! | LOGOUT, end of connection | `deconnexion` (only once authenticated) |
//! | SELECT, EXAMINE, CLOSE, UNSELECT | no trace: the selected folder is remembered, forgotten on failure, CLOSE or UNSELECT |
//! | FETCH, UID FETCH reading a message | `consultation` |
//! | FETCH of metadata only | no trace |
//! | STORE, UID STORE adding `\Deleted` | `suppression` (the request, `+FLAGS (\Deleted)`, says it is a mark) |
//! | other STORE | `marquage` |
//! | EXPUNGE, UID EXPUNGE | `suppression` when messages were expunged, or when it failed |
//! | CLOSE | `suppression` when expunges were seen or `\Deleted` marks are known in a read-write mailbox |
//! | MOVE, UID MOVE / COPY, UID COPY | `deplacement` / `copie` |
//! | APPEND | `depot` (destination folder, size of the literals, APPENDUID's UIDs) |
//!
//! A FETCH reads a message when it asks for `BODY[…]`, `BODY.PEEK[…]`,
//! `BINARY[…]`, `RFC822`, `RFC822.TEXT`, `RFC822.HEADER`, or for `ENVELOPE`,
//! `BODYSTRUCTURE`, `BODY`, `PREVIEW`, or the macros `ALL` and `FULL`: the
//! envelope carries the subject and the addresses, the structure names the
//! attachments, so these are consultations too (the values are never kept:
//! the parser skips FETCH data). `FLAGS`, `UID`, `INTERNALDATE`,
//! `RFC822.SIZE`, `BINARY.SIZE`, `MODSEQ`, `FAST` only are not traced: they
//! reveal nothing of a message and clients poll them constantly.
//!
//! Commands other than LOGIN/AUTHENTICATE sent before authentication are not
//! traced: the server refuses them and there is no author to name.
//!
//! # UIDs
//!
//! `target.uids` is, in order of preference: the UIDs the server returned
//! (FETCH responses with `UID`, `COPYUID`, `APPENDUID`, `VANISHED`); the UID
//! set of a `UID …` command as sent; the sequence numbers mapped through the
//! UIDs learned in this session (FETCH responses pair them; EXPUNGE shifts
//! them). Otherwise it is left out and the request says why, after ` ; `
//! (`FETCH 3 (RFC822) ; sequence numbers, UIDs not known`,
//! `EXPUNGE ; 2 messages expunged, UIDs not known`). Sets longer than 1 KiB
//! are cut at a comma and end with `,…`.
//!
//! # Never content
//!
//! The request is the parser's summary (literals as `{N bytes}`, no
//! password, no search key), with anything that would look like a literal
//! marker broken (`{5}` → `{ 5}`), control characters replaced and every
//! field bounded to what `registre_model::parse_trace` accepts. The response
//! is the tagged status and its text (response code included). Mailbox names
//! are decoded from modified UTF-7.

mod text;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use registre_model::{Action, Actor, Outcome, Response, Source, Target, Trace};

use crate::imap::{
    Arg, CommandArgs, Exchange, FetchItems, Observed, ResponseCode, SequenceSet, ServerEvent,
    Spanned, Status, StoreMode, Untagged,
};
// The tests name bearer tokens (`BearerSubject` now lives in trace_common).
#[cfg(test)]
use crate::imap::Secret;
use crate::trace_common::{self, MAX_LONG, MAX_REQUEST, MAX_RESPONSE_TEXT, User, mss};
use text::{
    bound_set, clean, compress, contains, defang_literals, expand, mailbox_name, render_code,
    rfc3339_millis,
};

pub use crate::trace_common::{BearerSubject, Clock, ConnectionInfo, TracerConfig};

/// At most this many sequence numbers are mapped to UIDs (a denser map than
/// this is not kept: EXPUNGE shifts it).
const MAX_MAPPED: usize = 20_000;
/// At most this many `\Deleted` marks are remembered.
const MAX_MARKS: usize = 100_000;

/// The traces of one IMAP connection.
#[derive(Debug)]
pub struct ImapTracer {
    config: Arc<TracerConfig>,
    source: Source,
    user: Option<User>,
    selected: Option<Selected>,
    /// `seqs[n - 1]` is the UID of sequence number `n`, 0 when unknown.
    seqs: Vec<u32>,
    /// EXPUNGE responses since the last exchange: sequence number and the
    /// UID it had, if known.
    recent_expunges: Vec<(u32, Option<u32>)>,
}

#[derive(Debug, Default)]
struct Selected {
    folder: Option<String>,
    read_only: bool,
    /// UIDs marked `\Deleted` in this session and not expunged since.
    marked: BTreeSet<u32>,
    /// Some marks were set on messages whose UIDs are not known.
    marked_unknown: bool,
}

/// UIDs found for a command, or why there are none.
#[derive(Debug, Default)]
struct Uids {
    set: Option<String>,
    list: Option<Vec<u32>>,
    note: Option<String>,
}

impl Uids {
    fn from_list(list: Vec<u32>) -> Self {
        Self {
            set: Some(compress(&list)),
            list: Some(list),
            note: None,
        }
    }
}

impl ImapTracer {
    /// A tracer for a new connection.
    pub fn new(config: Arc<TracerConfig>, connection: ConnectionInfo) -> Self {
        let source = trace_common::source(&config, connection);
        Self {
            config,
            source,
            user: None,
            selected: None,
            seqs: Vec::new(),
            recent_expunges: Vec::new(),
        }
    }

    /// The events and exchanges of one [`crate::imap::Session::server_bytes`]
    /// call, in order: untagged data is observed before the exchange it
    /// belongs to is traced.
    pub fn on_server(
        &mut self,
        events: &[Spanned<ServerEvent>],
        exchanges: &[Exchange],
    ) -> Vec<Trace> {
        let mut pending = exchanges.iter().peekable();
        let mut out = Vec::new();
        for event in events {
            match &event.event {
                ServerEvent::Tagged(tagged) => {
                    if let Some(exchange) = pending.next_if(|e| e.completion == *tagged) {
                        out.extend(self.trace(exchange));
                    }
                }
                other => self.observe(other),
            }
        }
        for exchange in pending {
            out.extend(self.trace(exchange));
        }
        out
    }

    /// Untagged data: learns sequence number → UID pairs from FETCH
    /// responses and follows EXPUNGE's renumbering.
    pub fn observe(&mut self, event: &ServerEvent) {
        let ServerEvent::Untagged(untagged) = event else {
            return;
        };
        match untagged {
            Untagged::Fetch {
                seq,
                uid: Some(uid),
                ..
            } => {
                let Some(index) = (*seq as usize).checked_sub(1) else {
                    return;
                };
                if index < MAX_MAPPED {
                    if self.seqs.len() <= index {
                        self.seqs.resize(index + 1, 0);
                    }
                    self.seqs[index] = *uid;
                }
            }
            Untagged::Exists(count) => self.seqs.truncate(*count as usize),
            Untagged::Expunge(seq) => {
                let index = (*seq as usize).wrapping_sub(1);
                let uid = (index < self.seqs.len())
                    .then(|| self.seqs.remove(index))
                    .filter(|&uid| uid != 0);
                if self.recent_expunges.len() < crate::imap::MAX_OBSERVED {
                    self.recent_expunges.push((*seq, uid));
                }
            }
            // Renumbering by UIDs whose sequence numbers we may not know:
            // start the map over.
            Untagged::Vanished { earlier: false, .. } => self.seqs.clear(),
            _ => {}
        }
    }

    /// One exchange: its trace, if the action is significant.
    pub fn trace(&mut self, exchange: &Exchange) -> Option<Trace> {
        let ok = exchange.completion.status == Status::Ok;
        let trace = match exchange.command.name.as_str() {
            "LOGIN" | "AUTHENTICATE" => Some(self.connexion(exchange)),
            "LOGOUT" => self.logout(exchange),
            "SELECT" | "EXAMINE" => {
                self.select(exchange);
                None
            }
            "UNSELECT" => {
                if ok {
                    self.deselect();
                }
                None
            }
            "CLOSE" => {
                let trace = self.close(exchange);
                if ok {
                    self.deselect();
                }
                trace
            }
            "FETCH" | "UID FETCH" => self.fetch(exchange),
            "STORE" | "UID STORE" => self.store(exchange),
            "EXPUNGE" | "UID EXPUNGE" => self.expunge(exchange),
            "MOVE" | "UID MOVE" | "COPY" | "UID COPY" => self.transfer(exchange),
            "APPEND" => self.append(exchange),
            _ => None,
        };
        self.recent_expunges.clear();
        trace
    }

    /// The connection ended: a `deconnexion` if a user was still logged in
    /// (no LOGOUT completed). Its request says so; it has no response.
    pub fn connection_closed(&mut self) -> Option<Trace> {
        let user = self.user.take()?;
        self.deselect();
        let target = Target {
            mailbox: user.mailbox,
            ..Target::default()
        };
        Some(Trace {
            action: Action::Deconnexion,
            actor: user.actor,
            class: mss(),
            occurred_at: rfc3339_millis(&(self.config.clock)()),
            original: None,
            outcome: Some(Outcome::Success),
            request: Some("(connection closed without LOGOUT)".to_owned()),
            response: None,
            source: Some(self.source.clone()),
            target: Some(target),
        })
    }

    fn connexion(&mut self, exchange: &Exchange) -> Trace {
        let (login, authzid, auth, bearer) = match &exchange.command.args {
            CommandArgs::Login { user } => (
                user.as_text().map(str::to_owned),
                None,
                "password".to_owned(),
                None,
            ),
            CommandArgs::Authenticate { mechanism, initial } => {
                let identity = initial.as_ref();
                let authcid = identity.and_then(|i| i.authcid.clone());
                let authzid = identity.and_then(|i| i.authzid.clone());
                (
                    authcid.or_else(|| authzid.clone()),
                    authzid,
                    mechanism.to_ascii_lowercase(),
                    identity.and_then(|i| i.bearer.as_ref()),
                )
            }
            _ if exchange.command.name == "LOGIN" => (None, None, "password".to_owned(), None),
            _ => (None, None, "sasl".to_owned(), None),
        };
        let user = trace_common::sasl_user(&self.config, auth, login, authzid, bearer);
        let target = Target {
            mailbox: user.mailbox.clone(),
            ..Target::default()
        };
        let trace = self.build(
            Action::Connexion,
            user.actor.clone(),
            target,
            exchange,
            None,
            None,
        );
        if exchange.completion.status == Status::Ok {
            self.user = Some(user);
            self.deselect();
        }
        trace
    }

    fn logout(&mut self, exchange: &Exchange) -> Option<Trace> {
        let trace = self.user_trace(Action::Deconnexion, Target::default(), exchange, None)?;
        if exchange.completion.status == Status::Ok {
            self.user = None;
            self.deselect();
        }
        Some(trace)
    }

    fn select(&mut self, exchange: &Exchange) {
        // RFC 9051 §6.3.2: a SELECT, even refused, leaves the previous
        // mailbox.
        self.deselect();
        if exchange.completion.status != Status::Ok {
            return;
        }
        let folder = match &exchange.command.args {
            CommandArgs::Mailbox { mailbox } => folder(mailbox),
            _ => None,
        };
        let read_only = exchange.command.name == "EXAMINE"
            || matches!(&exchange.completion.code,
                Some(ResponseCode::Other { name }) if name == "READ-ONLY");
        self.selected = Some(Selected {
            folder,
            read_only,
            ..Selected::default()
        });
    }

    fn deselect(&mut self) {
        self.selected = None;
        self.seqs.clear();
    }

    fn fetch(&mut self, exchange: &Exchange) -> Option<Trace> {
        let ok = exchange.completion.status == Status::Ok;
        let uids = match &exchange.command.args {
            CommandArgs::Fetch { set, items } if reads_message(items) => {
                self.resolve(exchange, set, true)
            }
            // Unreadable arguments the server accepted: may have read one.
            CommandArgs::Unparsed if ok => Uids::default(),
            _ => return None,
        };
        let target = Target {
            uids: uids.set,
            ..self.folder_target()
        };
        self.user_trace(Action::Consultation, target, exchange, uids.note)
    }

    fn store(&mut self, exchange: &Exchange) -> Option<Trace> {
        let ok = exchange.completion.status == Status::Ok;
        let (action, uids) = match &exchange.command.args {
            CommandArgs::Store { set, flags } => {
                let uids = self.resolve(exchange, set, true);
                let deleted = |f: &String| f.eq_ignore_ascii_case("\\Deleted");
                let undeletes = match flags.mode {
                    StoreMode::Remove => flags.flags.iter().any(deleted),
                    StoreMode::Replace => !flags.flags.iter().any(deleted),
                    StoreMode::Add => false,
                };
                if ok && let Some(selected) = &mut self.selected {
                    if flags.adds_deleted {
                        match &uids.list {
                            Some(list) => {
                                for uid in list {
                                    if selected.marked.len() >= MAX_MARKS {
                                        selected.marked_unknown = true;
                                        break;
                                    }
                                    selected.marked.insert(*uid);
                                }
                            }
                            None => selected.marked_unknown = true,
                        }
                    } else if undeletes && let Some(list) = &uids.list {
                        for uid in list {
                            selected.marked.remove(uid);
                        }
                    }
                }
                let action = if flags.adds_deleted {
                    Action::Suppression
                } else {
                    Action::Marquage
                };
                (action, uids)
            }
            CommandArgs::Unparsed if ok => {
                let request = exchange.command.request.to_ascii_uppercase();
                let action = if request.contains("\\DELETED") && !request.contains("-FLAGS") {
                    if let Some(selected) = &mut self.selected {
                        selected.marked_unknown = true;
                    }
                    Action::Suppression
                } else {
                    Action::Marquage
                };
                (action, Uids::default())
            }
            _ => return None,
        };
        let target = Target {
            uids: uids.set,
            ..self.folder_target()
        };
        self.user_trace(action, target, exchange, uids.note)
    }

    fn expunge(&mut self, exchange: &Exchange) -> Option<Trace> {
        let ok = exchange.completion.status == Status::Ok;
        let observed = &exchange.observed;
        let seen = !observed.expunged.is_empty() || !observed.vanished.is_empty();
        if ok && !seen {
            // Nothing was expunged: no deletion happened.
            return None;
        }
        let uids = if seen {
            self.expunged(observed)
        } else {
            // A refused expunge: what it would have removed.
            match &exchange.command.args {
                CommandArgs::UidExpunge { uids } => Uids {
                    set: Some(uids.as_str().to_owned()),
                    list: expand(uids),
                    note: None,
                },
                _ => self.marks(),
            }
        };
        if ok && let Some(selected) = &mut self.selected {
            match &exchange.command.args {
                CommandArgs::UidExpunge { uids: set } => {
                    selected.marked.retain(|uid| !contains(set, *uid));
                }
                _ => {
                    selected.marked.clear();
                    selected.marked_unknown = false;
                }
            }
        }
        let target = Target {
            uids: uids.set,
            ..self.folder_target()
        };
        self.user_trace(Action::Suppression, target, exchange, uids.note)
    }

    fn close(&mut self, exchange: &Exchange) -> Option<Trace> {
        let selected = self.selected.as_ref()?;
        if selected.read_only {
            return None;
        }
        let observed = &exchange.observed;
        let uids = if !observed.expunged.is_empty() || !observed.vanished.is_empty() {
            self.expunged(observed)
        } else if !selected.marked.is_empty() || selected.marked_unknown {
            self.marks()
        } else {
            return None;
        };
        let target = Target {
            uids: uids.set,
            ..self.folder_target()
        };
        self.user_trace(Action::Suppression, target, exchange, uids.note)
    }

    fn transfer(&mut self, exchange: &Exchange) -> Option<Trace> {
        let ok = exchange.completion.status == Status::Ok;
        let is_move = exchange.command.name.ends_with("MOVE");
        let copy_uid = exchange
            .observed
            .copy_uid
            .as_ref()
            .or(exchange.completion.code.as_ref())
            .and_then(|code| match code {
                ResponseCode::CopyUid { source, .. } => Some(source),
                _ => None,
            });
        let (uids, destination) = match &exchange.command.args {
            CommandArgs::Transfer { set, mailbox } => {
                let uids = match copy_uid {
                    Some(source) => Uids {
                        set: Some(source.as_str().to_owned()),
                        list: expand(source),
                        note: None,
                    },
                    None => self.resolve(exchange, set, false),
                };
                (uids, folder(mailbox))
            }
            CommandArgs::Unparsed if ok => (Uids::default(), None),
            _ => return None,
        };
        if ok
            && is_move
            && let (Some(selected), Some(list)) = (&mut self.selected, &uids.list)
        {
            for uid in list {
                selected.marked.remove(uid);
            }
        }
        let target = Target {
            destination,
            uids: uids.set,
            ..self.folder_target()
        };
        let action = if is_move {
            Action::Deplacement
        } else {
            Action::Copie
        };
        // MOVE sends COPYUID in an untagged OK: part of its answer.
        let untagged_code = exchange.observed.copy_uid.as_ref();
        self.build_for_user(action, target, exchange, uids.note, untagged_code)
    }

    fn append(&mut self, exchange: &Exchange) -> Option<Trace> {
        let ok = exchange.completion.status == Status::Ok;
        let (folder, size, note) = match &exchange.command.args {
            CommandArgs::Append {
                mailbox,
                messages,
                size,
            } => (
                folder(mailbox),
                *size,
                (*messages > 1).then(|| format!("{messages} messages")),
            ),
            CommandArgs::Unparsed if ok => (None, exchange.command.literal_bytes, None),
            _ => return None,
        };
        let uids = match &exchange.completion.code {
            Some(ResponseCode::AppendUid { uids, .. }) => Some(bound_set(uids.as_str(), MAX_LONG)),
            _ => None,
        };
        let target = Target {
            folder,
            size: Some(size),
            uids,
            ..Target::default()
        };
        self.user_trace(Action::Depot, target, exchange, note)
    }

    /// The UIDs of a command's set: returned by the server, sent as UIDs,
    /// or mapped from sequence numbers.
    fn resolve(&self, exchange: &Exchange, set: &SequenceSet, use_fetched: bool) -> Uids {
        let by_uid = exchange.command.name.starts_with("UID ");
        let observed = &exchange.observed;
        let fetched = &observed.fetched_uids;
        if use_fetched
            && !fetched.is_empty()
            && !observed.truncated
            && (!by_uid || fetched.iter().all(|uid| contains(set, *uid)))
        {
            return Uids::from_list(fetched.clone());
        }
        if by_uid {
            return Uids {
                set: Some(set.as_str().to_owned()),
                list: expand(set),
                note: None,
            };
        }
        let mapped = expand(set).and_then(|seqs| {
            seqs.iter()
                .map(|&seq| {
                    self.seqs
                        .get((seq as usize).wrapping_sub(1))
                        .copied()
                        .filter(|&uid| uid != 0)
                })
                .collect::<Option<Vec<u32>>>()
        });
        match mapped {
            Some(list) => Uids::from_list(list),
            None => Uids {
                note: Some("sequence numbers, UIDs not known".to_owned()),
                ..Uids::default()
            },
        }
    }

    /// The UIDs an expunging command removed: VANISHED, or its EXPUNGE
    /// responses mapped through what [`Self::observe`] recorded.
    fn expunged(&self, observed: &Observed) -> Uids {
        if !observed.vanished.is_empty() {
            let joined: Vec<&str> = observed.vanished.iter().map(SequenceSet::as_str).collect();
            return Uids {
                set: Some(joined.join(",")),
                list: None,
                note: observed.truncated.then(|| "more UIDs expunged".to_owned()),
            };
        }
        let count = observed.expunged.len();
        let recent = &self.recent_expunges;
        let mut known = Vec::new();
        if !observed.truncated
            && recent.len() >= count
            && recent[recent.len() - count..]
                .iter()
                .map(|(seq, _)| *seq)
                .eq(observed.expunged.iter().copied())
        {
            known.extend(
                recent[recent.len() - count..]
                    .iter()
                    .filter_map(|(_, uid)| *uid),
            );
        }
        let plural = if count == 1 { "message" } else { "messages" };
        let more = if observed.truncated { " or more" } else { "" };
        if known.len() == count && !known.is_empty() {
            Uids::from_list(known)
        } else if known.is_empty() {
            Uids {
                note: Some(format!("{count}{more} {plural} expunged, UIDs not known")),
                ..Uids::default()
            }
        } else {
            let found = known.len();
            Uids {
                note: Some(format!(
                    "{count}{more} {plural} expunged, {found} UIDs known"
                )),
                ..Uids::from_list(known)
            }
        }
    }

    /// The `\Deleted` marks known in the selected mailbox.
    fn marks(&self) -> Uids {
        let Some(selected) = &self.selected else {
            return Uids::default();
        };
        let list: Vec<u32> = selected.marked.iter().copied().collect();
        let note = if selected.marked_unknown {
            Some("messages marked \\Deleted in this session, some UIDs not known")
        } else {
            Some("messages marked \\Deleted in this session")
        };
        Uids {
            set: (!list.is_empty()).then(|| compress(&list)),
            list: Some(list),
            note: note.map(str::to_owned),
        }
    }

    fn folder_target(&self) -> Target {
        Target {
            folder: self.selected.as_ref().and_then(|s| s.folder.clone()),
            ..Target::default()
        }
    }

    fn user_trace(
        &self,
        action: Action,
        target: Target,
        exchange: &Exchange,
        note: Option<String>,
    ) -> Option<Trace> {
        self.build_for_user(action, target, exchange, note, None)
    }

    fn build_for_user(
        &self,
        action: Action,
        mut target: Target,
        exchange: &Exchange,
        note: Option<String>,
        untagged_code: Option<&ResponseCode>,
    ) -> Option<Trace> {
        let user = self.user.as_ref()?;
        target.mailbox.clone_from(&user.mailbox);
        Some(self.build(
            action,
            user.actor.clone(),
            target,
            exchange,
            note,
            untagged_code,
        ))
    }

    fn build(
        &self,
        action: Action,
        actor: Actor,
        mut target: Target,
        exchange: &Exchange,
        note: Option<String>,
        untagged_code: Option<&ResponseCode>,
    ) -> Trace {
        let completion = &exchange.completion;
        let mut request = exchange.command.request.clone();
        if let Some(note) = note {
            request.push_str(" ; ");
            request.push_str(&note);
        }
        let mut text = String::new();
        for code in untagged_code.into_iter().chain(&completion.code) {
            text.push_str(&render_code(code));
            text.push(' ');
        }
        text.push_str(&completion.text);
        let text = clean(text.trim_end(), MAX_RESPONSE_TEXT);
        target.uids = target.uids.map(|uids| bound_set(&uids, MAX_LONG));
        target.folder = target.folder.map(|f| clean(&f, MAX_LONG));
        target.destination = target.destination.map(|f| clean(&f, MAX_LONG));
        Trace {
            action,
            actor,
            class: mss(),
            occurred_at: rfc3339_millis(&(self.config.clock)()),
            original: None,
            outcome: Some(if completion.status == Status::Ok {
                Outcome::Success
            } else {
                Outcome::Failure
            }),
            request: Some(clean(&defang_literals(&request), MAX_REQUEST)),
            response: Some(Response {
                status: completion.status.as_str().to_owned(),
                text: (!text.is_empty()).then_some(text),
            }),
            source: Some(self.source.clone()),
            target: Some(target),
        }
    }
}

/// A mailbox argument as a folder name (unknown when sent as a literal).
fn folder(arg: &Arg) -> Option<String> {
    arg.as_text().map(mailbox_name)
}

/// Whether a FETCH reads (part of) a message rather than only its metadata.
fn reads_message(items: &FetchItems) -> bool {
    items.content
        || items.items.iter().any(|item| {
            matches!(
                item.as_str(),
                "ENVELOPE" | "BODYSTRUCTURE" | "BODY" | "ALL" | "FULL" | "PREVIEW" | "SNIPPET"
            ) || item.starts_with("PREVIEW")
        })
}
