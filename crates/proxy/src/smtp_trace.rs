//! One registre trace per significant SMTP action (DESIGN §9, issue 6): the
//! pure step from the [`smtp`](crate::smtp) matcher's [`Outcome`]s to
//! [`Trace`]s of class `mss`, the counterpart of
//! [`imap_trace`](crate::imap_trace) and built on the same conventions
//! ([`crate::trace_common`]).
//!
//! An [`SmtpTracer`] follows one proxied connection: who authenticated.
//! Feed it every outcome with [`SmtpTracer::trace`] and call
//! [`SmtpTracer::connection_closed`] when the connection ends.
//!
//! # Actions (DESIGN §9)
//!
//! | SMTP | trace |
//! |---|---|
//! | AUTH (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER, any other) | `connexion`, success (2yz) or failure (the reply says why, a cancelled exchange says so); actor = the login (`id_type` `login`, `auth` the mechanism lowercased), or the subject the bearer hook reads from the token (`oidc`); never the password or the token |
//! | MAIL FROM … RCPT TO … DATA / BDAT | `envoi`, one per transaction (every MAIL FROM), whatever its end |
//! | QUIT, end of connection | `deconnexion` (only once authenticated) |
//!
//! An `envoi` says:
//! - `target.mailbox`: the envelope sender (the authenticated user's mailbox
//!   for the null sender `<>`);
//! - `target.recipients`: every RCPT TO address, in order, refused ones
//!   included (bounded: at most 1000 and 8 KiB of addresses; when the
//!   request cannot name them all it ends with `; N more RCPT (M in all)`);
//! - `target.size`: the message bytes sent (DATA with dot-stuffing removed,
//!   or the BDAT chunks), when a message was sent;
//! - `request`: `MAIL FROM:<…> PARAMS ; RCPT TO:<…> ; RCPT TO:<…> → 550
//!   5.1.1 … ; DATA` — each refused recipient with its reply, and how the
//!   transaction ended when no message was sent (`; reset before the
//!   message`, `; connection closed during the message`…);
//! - `response`: the reply that decided it (`status` the three-digit code,
//!   `text` the enhanced code and text): the reply to the end of the
//!   message, which carries the queue id (`2.0.0 Ok: queued as 4F2A1C`);
//!   else DATA's refusal (`554 5.5.1 Error: no valid recipients`); else
//!   MAIL's refusal; else, when every recipient was refused, the first
//!   refusal; none when the client gave up before any of these;
//! - `outcome`: `success` only when the server took the message (a
//!   positive reply to its end), even if some recipients were refused;
//! - `actor`: the authenticated user; before any AUTH (a relay that does
//!   not require it), the envelope sender with `id_type` `email` and
//!   `auth` `none`.
//!
//! # Never content
//!
//! The matcher never holds a header, a body or a password (it counts
//! message bytes and drops passwords as it reads them); the bearer token is
//! only handed to the configured hook. Every field is cleaned (no control
//! character, no IMAP literal marker in a request) and bounded to what
//! `registre_model::parse_trace` accepts.

use std::sync::Arc;

use registre_model::{Action, Actor, Outcome as TraceOutcome, Response, Source, Target, Trace};

use crate::smtp::{AuthOutcome, Ending, Exchange, Outcome, Reply, Transaction};
use crate::trace_common::{
    self, ConnectionInfo, MAX_REQUEST, MAX_RESPONSE_TEXT, MAX_SHORT, TracerConfig, User, clean,
    defang_literals, mss,
};

/// At most this many recipients are named in `target.recipients` (the
/// model's bound).
pub const MAX_TRACE_RECIPIENTS: usize = 1000;
/// At most this many bytes of addresses in `target.recipients` (a trace is
/// at most 16 KiB).
pub const MAX_RECIPIENT_BYTES: usize = 8 * 1024;
/// A refused recipient's reply text is cut to this in the request.
const MAX_REFUSAL: usize = 200;

/// The traces of one SMTP connection.
#[derive(Debug)]
pub struct SmtpTracer {
    config: Arc<TracerConfig>,
    source: Source,
    user: Option<User>,
}

impl SmtpTracer {
    /// A tracer for a new connection.
    pub fn new(config: Arc<TracerConfig>, connection: ConnectionInfo) -> Self {
        let source = trace_common::source(&config, connection);
        Self {
            config,
            source,
            user: None,
        }
    }

    /// Whether an AUTH succeeded on this connection (and no QUIT ended it).
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// One outcome of the matcher: its trace, if the action is significant.
    pub fn trace(&mut self, outcome: &Outcome) -> Option<Trace> {
        match outcome {
            Outcome::Auth(auth) => Some(self.connexion(auth)),
            Outcome::Transaction(txn) => Some(self.envoi(txn)),
            Outcome::Exchange(exchange) if exchange.command.name == "QUIT" => self.quit(exchange),
            Outcome::Greeting(_) | Outcome::Exchange(_) | Outcome::Unsolicited(_) => None,
        }
    }

    /// The connection ended: a `deconnexion` if a user was still
    /// authenticated (no QUIT answered). Its request says so; it has no
    /// response.
    pub fn connection_closed(&mut self) -> Option<Trace> {
        let user = self.user.take()?;
        let target = Target {
            mailbox: user.mailbox,
            ..Target::default()
        };
        Some(self.build(
            Action::Deconnexion,
            user.actor,
            target,
            "(connection closed without QUIT)".to_owned(),
            None,
            true,
        ))
    }

    fn connexion(&mut self, auth: &AuthOutcome) -> Trace {
        let identity = auth.identity.as_ref();
        let authcid = identity.and_then(|i| i.authcid.clone());
        let authzid = identity.and_then(|i| i.authzid.clone());
        let user = trace_common::sasl_user(
            &self.config,
            auth.mechanism.to_ascii_lowercase(),
            authcid.or_else(|| authzid.clone()),
            authzid,
            identity.and_then(|i| i.bearer.as_ref()),
        );
        let mut request = format!("AUTH {}", auth.mechanism);
        if auth.cancelled {
            request.push_str(" ; cancelled by the client");
        }
        let target = Target {
            mailbox: user.mailbox.clone(),
            ..Target::default()
        };
        let trace = self.build(
            Action::Connexion,
            user.actor.clone(),
            target,
            request,
            Some(&auth.reply),
            auth.succeeded(),
        );
        if auth.succeeded() {
            self.user = Some(user);
        }
        trace
    }

    fn quit(&mut self, exchange: &Exchange) -> Option<Trace> {
        let user = self.user.take()?;
        let target = Target {
            mailbox: user.mailbox,
            ..Target::default()
        };
        Some(self.build(
            Action::Deconnexion,
            user.actor,
            target,
            "QUIT".to_owned(),
            Some(&exchange.reply),
            true,
        ))
    }

    fn envoi(&self, txn: &Transaction) -> Trace {
        let sender = (!txn.from.address.is_empty()).then(|| clean(&txn.from.address, MAX_SHORT));
        let actor = match (&self.user, &sender) {
            (Some(user), _) => user.actor.clone(),
            (None, Some(sender)) => Actor {
                auth: Some("none".to_owned()),
                id: sender.clone(),
                id_type: Some("email".to_owned()),
            },
            (None, None) => Actor {
                auth: Some("none".to_owned()),
                id: "inconnu".to_owned(),
                id_type: Some("inconnu".to_owned()),
            },
        };
        let mailbox = sender.or_else(|| self.user.as_ref().and_then(|u| u.mailbox.clone()));
        let recipients = recipients(txn);
        let sent = txn.ending == Ending::Data;
        let target = Target {
            mailbox,
            recipients: (!recipients.is_empty()).then_some(recipients),
            size: sent.then_some(txn.size),
            ..Target::default()
        };
        self.build(
            Action::Envoi,
            actor,
            target,
            envoi_request(txn),
            deciding_reply(txn),
            txn.delivered(),
        )
    }

    fn build(
        &self,
        action: Action,
        actor: Actor,
        target: Target,
        request: String,
        reply: Option<&Reply>,
        success: bool,
    ) -> Trace {
        Trace {
            action,
            actor,
            class: mss(),
            occurred_at: trace_common::now(&self.config),
            original: None,
            outcome: Some(if success {
                TraceOutcome::Success
            } else {
                TraceOutcome::Failure
            }),
            request: Some(clean(&defang_literals(&request), MAX_REQUEST)),
            response: reply.map(response),
            source: Some(self.source.clone()),
            target: Some(target),
        }
    }
}

/// A reply as a trace's response: the code, and the text of its lines.
fn response(reply: &Reply) -> Response {
    let text = clean(reply_text(reply).trim(), MAX_RESPONSE_TEXT);
    Response {
        status: reply.code.to_string(),
        text: (!text.is_empty()).then_some(text),
    }
}

/// The lines of a reply joined by spaces (the enhanced code is the start of
/// the first line, as sent).
fn reply_text(reply: &Reply) -> String {
    let mut text = reply.lines.join(" ");
    if reply.truncated {
        text.push('…');
    }
    text
}

/// The reply that decided a transaction (see the module doc).
fn deciding_reply(txn: &Transaction) -> Option<&Reply> {
    if let Some(reply) = &txn.final_reply {
        return Some(reply);
    }
    if let Some(reply) = txn.data_reply.as_ref().filter(|r| r.code != 354) {
        return Some(reply);
    }
    if let Some(reply) = txn.mail_reply.as_ref().filter(|r| !r.is_positive()) {
        return Some(reply);
    }
    if !txn.recipients.is_empty() && txn.accepted_recipients().next().is_none() {
        return txn
            .recipients
            .iter()
            .find_map(|r| r.reply.as_ref().filter(|reply| !reply.is_positive()));
    }
    None
}

/// `target.recipients`, bounded.
fn recipients(txn: &Transaction) -> Vec<String> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for recipient in &txn.recipients {
        let address = clean(&recipient.to.address, MAX_SHORT);
        if out.len() == MAX_TRACE_RECIPIENTS || bytes + address.len() + 3 > MAX_RECIPIENT_BYTES {
            break;
        }
        bytes += address.len() + 3;
        out.push(address);
    }
    out
}

/// `MAIL FROM:<…> ; RCPT TO:<…> → refusal ; DATA`, within the request's
/// bound: the end (how the message went) is always kept, recipients are
/// cut first.
fn envoi_request(txn: &Transaction) -> String {
    let params = |params: &[crate::smtp::Param]| {
        params
            .iter()
            .map(|p| match &p.value {
                Some(value) => format!(" {}={value}", p.keyword),
                None => format!(" {}", p.keyword),
            })
            .collect::<String>()
    };
    let head = format!("MAIL FROM:<{}>{}", txn.from.address, params(&txn.params));
    let head = clean(&head, MAX_SHORT * 2);
    let mut tail = String::new();
    if txn.chunked {
        tail.push_str(" ; BDAT");
    } else if txn.data_reply.is_some() || txn.ending == Ending::Data {
        tail.push_str(" ; DATA");
    }
    let ended = match txn.ending {
        Ending::Data | Ending::DataRefused => None,
        Ending::Reset => Some("reset before the message"),
        Ending::NewTransaction => Some("another MAIL FROM before the message"),
        Ending::Hello => Some("EHLO before the message"),
        Ending::Quit => Some("QUIT before the message"),
        Ending::StartTls => Some("STARTTLS before the message"),
        Ending::ConnectionEnd if txn.data_reply.as_ref().is_some_and(|r| r.code == 354) => {
            Some("connection closed during the message")
        }
        Ending::ConnectionEnd => Some("connection closed before the message"),
    };
    if let Some(ended) = ended {
        tail.push_str(" ; ");
        tail.push_str(ended);
    }
    // Room for the recipients, and for saying how many did not fit.
    let room = MAX_REQUEST.saturating_sub(head.len() + tail.len() + 32);
    let mut middle = String::new();
    let mut shown = 0u64;
    for recipient in &txn.recipients {
        let mut part = format!(
            " ; RCPT TO:<{}>{}",
            recipient.to.address,
            params(&recipient.params)
        );
        if let Some(reply) = recipient.reply.as_ref().filter(|r| !r.is_positive()) {
            part.push_str(&format!(
                " → {} {}",
                reply.code,
                clean(reply_text(reply).trim(), MAX_REFUSAL)
            ));
        }
        let part = clean(&part, MAX_SHORT * 2);
        if middle.len() + part.len() > room {
            break;
        }
        middle.push_str(&part);
        shown += 1;
    }
    let total = txn.recipients.len() as u64 + txn.recipients_dropped;
    if shown < total {
        middle.push_str(&format!(" ; {} more RCPT ({total} in all)", total - shown));
    }
    format!("{head}{middle}{tail}")
}

#[cfg(test)]
mod tests;
