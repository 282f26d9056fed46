//! Pairs replies with commands, first in first out (SMTP answers in order,
//! even with PIPELINING), and assembles what the traces need: one
//! [`Transaction`] per MAIL FROM (`envoi`), one [`AuthOutcome`] per AUTH
//! (`connexion`), an [`Exchange`] for the other commands. [`Session`] wires
//! both decoders to a matcher.

use std::collections::VecDeque;

use super::client::{ClientDecoder, ClientEvent, Command, CommandArgs, Decision, Param, Path};
use super::error::DecodeError;
use super::frame::Limits;
use super::server::{Reply, ServerDecoder, ServerEvent};
use crate::imap::{SaslIdentity, Spanned};

/// A command (other than MAIL, RCPT, DATA, BDAT and AUTH, which end up in a
/// [`Transaction`] or an [`AuthOutcome`]) and its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The command.
    pub command: Command,
    /// The server's reply.
    pub reply: Reply,
}

/// An AUTH exchange, ended by its final reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// Upper-case mechanism.
    pub mechanism: String,
    /// The identities of the initial response and continuation lines
    /// merged (never the password; the bearer token as a `Secret`).
    pub identity: Option<SaslIdentity>,
    /// The client answered `*`.
    pub cancelled: bool,
    /// The final reply (235 on success).
    pub reply: Reply,
}

impl AuthOutcome {
    /// The server accepted the credentials (2yz, normally 235).
    pub fn succeeded(&self) -> bool {
        self.reply.is_positive()
    }
}

/// A recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path.
    pub to: Path,
    /// Its ESMTP parameters.
    pub params: Vec<Param>,
    /// The reply to its RCPT (`None` if the connection ended first).
    pub reply: Option<Reply>,
}

impl Recipient {
    /// The RCPT was accepted (2yz).
    pub fn accepted(&self) -> bool {
        self.reply.as_ref().is_some_and(Reply::is_positive)
    }
}

/// What ended a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The message was sent (end of DATA, or BDAT LAST): see
    /// [`Transaction::final_reply`].
    Data,
    /// The server refused DATA.
    DataRefused,
    /// RSET.
    Reset,
    /// Another MAIL FROM.
    NewTransaction,
    /// EHLO, HELO or LHLO.
    Hello,
    /// QUIT.
    Quit,
    /// STARTTLS.
    StartTls,
    /// The connection ended ([`Session::finish`]).
    ConnectionEnd,
}

/// One mail transaction: MAIL FROM, its RCPTs, the message (its size only)
/// and the final reply. One `envoi` trace later, failures included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The reverse-path (empty for `<>`).
    pub from: Path,
    /// MAIL FROM's ESMTP parameters.
    pub params: Vec<Param>,
    /// The reply to MAIL FROM.
    pub mail_reply: Option<Reply>,
    /// The recipients in order (at most [`MAX_RECIPIENTS`]).
    pub recipients: Vec<Recipient>,
    /// RCPTs beyond [`MAX_RECIPIENTS`], not kept.
    pub recipients_dropped: u64,
    /// The reply to DATA (354, or a refusal).
    pub data_reply: Option<Reply>,
    /// The message was sent with BDAT.
    pub chunked: bool,
    /// Message bytes (DATA: dot-stuffing removed; BDAT: the chunks).
    pub size: u64,
    /// Bare line feeds in a DATA message (see [`ClientEvent::Message`]).
    pub bare_line_feeds: u64,
    /// The reply to the end of the message (or to BDAT LAST, or to the
    /// first failed BDAT chunk).
    pub final_reply: Option<Reply>,
    /// The queue id in a positive final reply.
    pub queue_id: Option<String>,
    /// What ended it.
    pub ending: Ending,
}

impl Transaction {
    fn new(from: Path, params: Vec<Param>) -> Self {
        Self {
            from,
            params,
            mail_reply: None,
            recipients: Vec::new(),
            recipients_dropped: 0,
            data_reply: None,
            chunked: false,
            size: 0,
            bare_line_feeds: 0,
            final_reply: None,
            queue_id: None,
            ending: Ending::ConnectionEnd,
        }
    }

    /// The server took the message for delivery.
    pub fn delivered(&self) -> bool {
        self.ending == Ending::Data && self.final_reply.as_ref().is_some_and(Reply::is_positive)
    }

    /// The recipients the server accepted.
    pub fn accepted_recipients(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.accepted())
    }
}

/// At most this many recipients are kept per transaction.
pub const MAX_RECIPIENTS: usize = 10_000;

/// What the matcher completed, in the order the server's replies came.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The server's greeting (220, or 554 when it refuses the connection).
    Greeting(Reply),
    /// A command and its reply.
    Exchange(Exchange),
    /// An AUTH exchange.
    Auth(AuthOutcome),
    /// A mail transaction, once ended and all its replies in.
    Transaction(Transaction),
    /// A reply no command was waiting for (a 421 before the server closes).
    Unsolicited(Reply),
}

/// The matcher refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatchError {
    /// More commands waiting for replies than the bound.
    #[error("more than {limit} SMTP commands waiting for a reply")]
    TooManyInFlight {
        /// The bound.
        limit: usize,
    },
}

#[derive(Debug)]
enum Awaiting {
    Greeting,
    Malformed,
    Command(Command),
    Auth {
        mechanism: String,
        identity: Option<SaslIdentity>,
        cancelled: bool,
    },
    Mail {
        txn: u64,
    },
    Rcpt {
        txn: u64,
        index: Option<usize>,
    },
    Data {
        txn: Option<u64>,
    },
    Message {
        txn: Option<u64>,
    },
    Bdat {
        txn: Option<u64>,
        last: bool,
    },
}

#[derive(Debug)]
struct Open {
    id: u64,
    txn: Transaction,
    /// The client ended it (or the server refused DATA).
    closed: bool,
    /// Replies still due for it.
    pending: usize,
}

/// Replies due, oldest first, and the transactions being assembled.
#[derive(Debug)]
pub struct Matcher {
    queue: VecDeque<Awaiting>,
    open: VecDeque<Open>,
    next_id: u64,
    limit: usize,
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Matcher {
    /// At most `limit` replies due; the server's greeting is the first.
    pub fn new(limit: usize) -> Self {
        Self {
            queue: VecDeque::from([Awaiting::Greeting]),
            open: VecDeque::new(),
            next_id: 0,
            limit,
        }
    }

    /// Replies due (the greeting included).
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// The TLS layer is up after STARTTLS: the SMTP state starts over with
    /// no greeting (RFC 3207 §4.2). Returns what was still open.
    pub fn after_starttls(&mut self, out: &mut Vec<Outcome>) {
        self.finish(out);
    }

    /// The connection ended: every transaction still open is returned
    /// (with the replies that came), and nothing is due any more.
    pub fn finish(&mut self, out: &mut Vec<Outcome>) {
        self.queue.clear();
        for mut open in self.open.drain(..) {
            if !open.closed {
                open.txn.ending = Ending::ConnectionEnd;
            }
            out.push(Outcome::Transaction(open.txn));
        }
    }

    /// A client event.
    pub fn on_client(
        &mut self,
        event: &ClientEvent,
        out: &mut Vec<Outcome>,
    ) -> Result<(), MatchError> {
        match event {
            ClientEvent::Command(command) => self.on_command(command, out)?,
            ClientEvent::AuthResponse(Some(identity)) => {
                if let Some(Awaiting::Auth {
                    identity: merged, ..
                }) = self.last_auth()
                {
                    merge(merged.get_or_insert_with(SaslIdentity::default), identity);
                }
            }
            ClientEvent::AuthCancelled => {
                if let Some(Awaiting::Auth { cancelled, .. }) = self.last_auth() {
                    *cancelled = true;
                }
            }
            // The server answers a line that is no command too (500).
            ClientEvent::Malformed { .. } => self.push(Awaiting::Malformed)?,
            ClientEvent::Message {
                size,
                bare_line_feeds,
            } => {
                let txn = self.current().map(|open| {
                    open.txn.size = *size;
                    open.txn.bare_line_feeds = *bare_line_feeds;
                    open.pending += 1;
                    open.id
                });
                self.push(Awaiting::Message { txn })?;
                self.close(Ending::Data, out);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, command: &Command, out: &mut Vec<Outcome>) -> Result<(), MatchError> {
        if self.queue.len() >= self.limit {
            return Err(MatchError::TooManyInFlight { limit: self.limit });
        }
        match (command.name.as_str(), &command.args) {
            ("MAIL", CommandArgs::Mail { from, params }) => {
                self.close(Ending::NewTransaction, out);
                let id = self.next_id;
                self.next_id += 1;
                self.open.push_back(Open {
                    id,
                    txn: Transaction::new(from.clone(), params.clone()),
                    closed: false,
                    pending: 1,
                });
                self.push(Awaiting::Mail { txn: id })?;
            }
            ("RCPT", CommandArgs::Rcpt { to, params }) if self.current().is_some() => {
                let Some(open) = self.current() else {
                    return Ok(());
                };
                open.pending += 1;
                let index = if open.txn.recipients.len() < MAX_RECIPIENTS {
                    open.txn.recipients.push(Recipient {
                        to: to.clone(),
                        params: params.clone(),
                        reply: None,
                    });
                    Some(open.txn.recipients.len() - 1)
                } else {
                    open.txn.recipients_dropped += 1;
                    None
                };
                let txn = open.id;
                self.push(Awaiting::Rcpt { txn, index })?;
            }
            ("DATA", _) => {
                let txn = self.current().map(|open| {
                    open.pending += 1;
                    open.id
                });
                self.push(Awaiting::Data { txn })?;
            }
            ("BDAT", CommandArgs::Bdat { size, last }) => {
                let txn = self.current().map(|open| {
                    open.pending += 1;
                    open.txn.chunked = true;
                    open.txn.size = open.txn.size.saturating_add(*size);
                    open.id
                });
                self.push(Awaiting::Bdat { txn, last: *last })?;
                if *last {
                    self.close(Ending::Data, out);
                }
            }
            (
                "AUTH",
                CommandArgs::Auth {
                    mechanism, initial, ..
                },
            ) => self.push(Awaiting::Auth {
                mechanism: mechanism.clone(),
                identity: initial.clone(),
                cancelled: false,
            })?,
            (name, _) => {
                let ending = match name {
                    "RSET" => Some(Ending::Reset),
                    "EHLO" | "HELO" | "LHLO" => Some(Ending::Hello),
                    "QUIT" => Some(Ending::Quit),
                    "STARTTLS" => Some(Ending::StartTls),
                    _ => None,
                };
                if let Some(ending) = ending {
                    self.close(ending, out);
                }
                self.push(Awaiting::Command(command.clone()))?;
            }
        }
        Ok(())
    }

    /// A server reply: what it completed goes to `out`; the decision the
    /// client decoder needs (after DATA, AUTH, STARTTLS) is returned.
    pub fn on_reply(&mut self, reply: &Reply, out: &mut Vec<Outcome>) -> Option<Decision> {
        if matches!(self.queue.front(), Some(Awaiting::Auth { .. })) && reply.code == 334 {
            return None; // a challenge: the exchange goes on
        }
        let Some(awaiting) = self.queue.pop_front() else {
            out.push(Outcome::Unsolicited(reply.clone()));
            return None;
        };
        let mut decision = None;
        match awaiting {
            Awaiting::Greeting => out.push(Outcome::Greeting(reply.clone())),
            Awaiting::Malformed => {}
            Awaiting::Command(command) => {
                if command.name == "STARTTLS" && reply.code != 220 {
                    decision = Some(Decision::StartTlsRefused);
                }
                out.push(Outcome::Exchange(Exchange {
                    command,
                    reply: reply.clone(),
                }));
            }
            Awaiting::Auth {
                mechanism,
                identity,
                cancelled,
            } => {
                decision = Some(Decision::AuthFinished);
                out.push(Outcome::Auth(AuthOutcome {
                    mechanism,
                    identity,
                    cancelled,
                    reply: reply.clone(),
                }));
            }
            Awaiting::Mail { txn } => {
                self.replied(Some(txn), |t| t.mail_reply = Some(reply.clone()));
            }
            Awaiting::Rcpt { txn, index } => self.replied(Some(txn), |t| {
                if let Some(recipient) = index.and_then(|i| t.recipients.get_mut(i)) {
                    recipient.reply = Some(reply.clone());
                }
            }),
            Awaiting::Data { txn } => {
                let accepted = reply.code == 354;
                decision = Some(Decision::Data { accepted });
                self.replied(txn, |t| t.data_reply = Some(reply.clone()));
                if !accepted
                    && let Some(open) = self.open.iter_mut().find(|o| Some(o.id) == txn)
                    && !open.closed
                {
                    open.closed = true;
                    open.txn.ending = Ending::DataRefused;
                }
            }
            Awaiting::Message { txn } => self.replied(txn, |t| final_reply(t, reply)),
            Awaiting::Bdat { txn, last } => self.replied(txn, |t| {
                if last {
                    final_reply(t, reply);
                } else if !reply.is_positive() && t.final_reply.is_none() {
                    t.final_reply = Some(reply.clone());
                }
            }),
        }
        self.drain(out);
        decision
    }

    fn replied(&mut self, txn: Option<u64>, update: impl FnOnce(&mut Transaction)) {
        if let Some(open) = self.open.iter_mut().find(|o| Some(o.id) == txn) {
            update(&mut open.txn);
            open.pending = open.pending.saturating_sub(1);
        }
    }

    fn push(&mut self, awaiting: Awaiting) -> Result<(), MatchError> {
        if self.queue.len() >= self.limit {
            return Err(MatchError::TooManyInFlight { limit: self.limit });
        }
        self.queue.push_back(awaiting);
        Ok(())
    }

    /// The transaction the client is building, if one is open.
    fn current(&mut self) -> Option<&mut Open> {
        self.open.back_mut().filter(|open| !open.closed)
    }

    fn last_auth(&mut self) -> Option<&mut Awaiting> {
        self.queue
            .iter_mut()
            .rev()
            .find(|a| matches!(a, Awaiting::Auth { .. }))
    }

    fn close(&mut self, ending: Ending, out: &mut Vec<Outcome>) {
        if let Some(open) = self.current() {
            open.closed = true;
            open.txn.ending = ending;
        }
        self.drain(out);
    }

    /// Transactions ended with all their replies in, oldest first.
    fn drain(&mut self, out: &mut Vec<Outcome>) {
        while self
            .open
            .front()
            .is_some_and(|open| open.closed && open.pending == 0)
        {
            if let Some(open) = self.open.pop_front() {
                out.push(Outcome::Transaction(open.txn));
            }
        }
    }
}

fn final_reply(txn: &mut Transaction, reply: &Reply) {
    if reply.is_positive() {
        txn.queue_id = reply.queue_id();
    }
    txn.final_reply = Some(reply.clone());
}

fn merge(into: &mut SaslIdentity, from: &SaslIdentity) {
    if from.authzid.is_some() {
        into.authzid.clone_from(&from.authzid);
    }
    if from.authcid.is_some() {
        into.authcid.clone_from(&from.authcid);
    }
    if from.bearer.is_some() {
        into.bearer.clone_from(&from.bearer);
    }
}

/// Both decoders and a matcher: what one proxied connection needs.
#[derive(Debug)]
pub struct Session {
    /// Client → server.
    pub client: ClientDecoder,
    /// Server → client.
    pub server: ServerDecoder,
    /// Replies due and transactions being assembled.
    pub matcher: Matcher,
}

/// What a call to [`Session`] decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Client events (from server bytes too: what the client sent after
    /// DATA is decoded once the server has answered it).
    pub client: Vec<Spanned<ClientEvent>>,
    /// Server events.
    pub server: Vec<Spanned<ServerEvent>>,
    /// What was completed.
    pub outcomes: Vec<Outcome>,
}

/// An error of either direction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A framing error.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A matching error.
    #[error(transparent)]
    Match(#[from] MatchError),
}

impl Session {
    /// A session with the same limits both ways, expecting the greeting.
    pub fn new(limits: Limits) -> Self {
        Self {
            client: ClientDecoder::new(limits),
            server: ServerDecoder::new(limits),
            matcher: Matcher::default(),
        }
    }

    /// Client bytes.
    pub fn client_bytes(&mut self, bytes: &[u8]) -> Result<Decoded, SessionError> {
        let mut decoded = Decoded::default();
        self.client.feed(bytes, &mut decoded.client)?;
        for event in &decoded.client {
            self.matcher
                .on_client(&event.event, &mut decoded.outcomes)?;
        }
        Ok(decoded)
    }

    /// Server bytes.
    pub fn server_bytes(&mut self, bytes: &[u8]) -> Result<Decoded, SessionError> {
        let mut decoded = Decoded::default();
        self.server.feed(bytes, &mut decoded.server)?;
        for event in &decoded.server {
            let ServerEvent::Reply(reply) = &event.event else {
                continue;
            };
            let Some(decision) = self.matcher.on_reply(reply, &mut decoded.outcomes) else {
                continue;
            };
            let mut late = Vec::new();
            self.client.on_decision(decision, &mut late)?;
            for client_event in &late {
                self.matcher
                    .on_client(&client_event.event, &mut decoded.outcomes)?;
            }
            decoded.client.extend(late);
        }
        Ok(decoded)
    }

    /// The TLS handshake after STARTTLS is done: both decoders start over
    /// (positions from 0) and so does the SMTP state. Returns any
    /// transaction still open.
    pub fn starttls_done(&mut self) -> Vec<Outcome> {
        self.client.reset();
        self.server.reset();
        let mut out = Vec::new();
        self.matcher.after_starttls(&mut out);
        out
    }

    /// The connection ended: transactions still open.
    pub fn finish(&mut self) -> Vec<Outcome> {
        let mut out = Vec::new();
        self.matcher.finish(&mut out);
        out
    }
}
