//! Pairs each command with its tagged completion (several may be in flight:
//! pipelining), with the untagged data seen meanwhile: one [`Exchange`] is
//! one trace later. [`Session`] wires both decoders to a matcher.

use super::client::{ClientDecoder, ClientEvent, Command, CommandArgs};
use super::error::DecodeError;
use super::frame::Limits;
use super::sasl::SaslIdentity;
use super::server::{ResponseCode, ServerDecoder, ServerEvent, Tagged, Untagged};
use super::types::{SequenceSet, Spanned};

/// A command and its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The command (for AUTHENTICATE, with the identities of the
    /// continuation lines merged into its arguments).
    pub command: Command,
    /// The server's tagged answer.
    pub completion: Tagged,
    /// Untagged data attributed to the command.
    pub observed: Observed,
}

/// Untagged data attributed to a command while it was in flight.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// `* n EXPUNGE` sequence numbers, in order (EXPUNGE, UID EXPUNGE,
    /// MOVE; at most [`MAX_OBSERVED`] kept, see `truncated`).
    pub expunged: Vec<u32>,
    /// `* VANISHED uids` (not EARLIER) for the same commands.
    pub vanished: Vec<SequenceSet>,
    /// `[COPYUID …]` sent in an untagged OK (MOVE, RFC 6851).
    pub copy_uid: Option<ResponseCode>,
    /// UIDs of the FETCH responses to a FETCH (or a non-silent STORE).
    pub fetched_uids: Vec<u32>,
    /// FETCH responses counted (with or without UID).
    pub fetch_responses: u64,
    /// More data than kept.
    pub truncated: bool,
}

/// At most this many numbers are kept per list of [`Observed`].
pub const MAX_OBSERVED: usize = 100_000;

/// The matcher refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatchError {
    /// More commands in flight than the bound.
    #[error("more than {limit} IMAP commands in flight")]
    TooManyInFlight {
        /// The bound.
        limit: usize,
    },
}

/// Commands in flight, by tag.
#[derive(Debug)]
pub struct Matcher {
    in_flight: Vec<(Command, Observed)>,
    limit: usize,
    unattributed: u64,
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Matcher {
    /// At most `limit` commands in flight.
    pub fn new(limit: usize) -> Self {
        Self {
            in_flight: Vec::new(),
            limit,
            unattributed: 0,
        }
    }

    /// Commands sent and not yet completed, oldest first.
    pub fn in_flight(&self) -> impl Iterator<Item = &Command> {
        self.in_flight.iter().map(|(command, _)| command)
    }

    /// Untagged EXPUNGE/VANISHED/COPYUID no command could have caused
    /// (another session's expunges reported during NOOP or IDLE).
    pub fn unattributed(&self) -> u64 {
        self.unattributed
    }

    /// A client event.
    pub fn on_client(&mut self, event: &ClientEvent) -> Result<(), MatchError> {
        match event {
            ClientEvent::Command(command) => {
                if self.in_flight.len() >= self.limit {
                    return Err(MatchError::TooManyInFlight { limit: self.limit });
                }
                self.in_flight.push((command.clone(), Observed::default()));
            }
            ClientEvent::AuthResponse(Some(identity)) => {
                if let Some((command, _)) = self
                    .in_flight
                    .iter_mut()
                    .rev()
                    .find(|(c, _)| c.name == "AUTHENTICATE")
                    && let CommandArgs::Authenticate { initial, .. } = &mut command.args
                {
                    merge(initial.get_or_insert_with(SaslIdentity::default), identity);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A server event; a tagged completion returns its exchange (`None` for
    /// a tag never seen: the command was not observed).
    pub fn on_server(&mut self, event: &ServerEvent) -> Option<Exchange> {
        let ServerEvent::Untagged(untagged) = event else {
            if let ServerEvent::Tagged(tagged) = event {
                let index = self
                    .in_flight
                    .iter()
                    .position(|(c, _)| c.tag == tagged.tag)?;
                let (command, observed) = self.in_flight.remove(index);
                return Some(Exchange {
                    command,
                    completion: tagged.clone(),
                    observed,
                });
            }
            return None;
        };
        match untagged {
            Untagged::Expunge(seq) => match self.oldest(expunges) {
                Some(observed) => {
                    push_bounded(&mut observed.expunged, *seq, &mut observed.truncated)
                }
                None => self.unattributed += 1,
            },
            Untagged::Vanished {
                earlier: false,
                uids,
            } => match self.oldest(expunges) {
                Some(observed) if observed.vanished.len() < MAX_OBSERVED => {
                    observed.vanished.push(uids.clone());
                }
                Some(observed) => observed.truncated = true,
                None => self.unattributed += 1,
            },
            Untagged::Status {
                code: Some(code @ ResponseCode::CopyUid { .. }),
                ..
            } => match self.oldest(|name| name.ends_with("MOVE")) {
                Some(observed) => observed.copy_uid = Some(code.clone()),
                None => self.unattributed += 1,
            },
            Untagged::Fetch { uid, .. } => {
                if let Some(observed) =
                    self.oldest(|name| name.ends_with("FETCH") || name.ends_with("STORE"))
                {
                    observed.fetch_responses += 1;
                    if let Some(uid) = uid {
                        push_bounded(&mut observed.fetched_uids, *uid, &mut observed.truncated);
                    }
                }
            }
            _ => {}
        }
        None
    }

    fn oldest(&mut self, accepts: impl Fn(&str) -> bool) -> Option<&mut Observed> {
        self.in_flight
            .iter_mut()
            .find(|(command, _)| accepts(&command.name))
            .map(|(_, observed)| observed)
    }
}

fn expunges(name: &str) -> bool {
    matches!(
        name,
        "EXPUNGE" | "UID EXPUNGE" | "MOVE" | "UID MOVE" | "CLOSE"
    )
}

fn push_bounded(list: &mut Vec<u32>, value: u32, truncated: &mut bool) {
    if list.len() < MAX_OBSERVED {
        list.push(value);
    } else {
        *truncated = true;
    }
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
    /// Commands in flight.
    pub matcher: Matcher,
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
    /// A session with the same limits both ways.
    pub fn new(limits: Limits) -> Self {
        Self {
            client: ClientDecoder::new(limits),
            server: ServerDecoder::new(limits),
            matcher: Matcher::default(),
        }
    }

    /// Client bytes: their events (also given to the matcher).
    pub fn client_bytes(
        &mut self,
        bytes: &[u8],
    ) -> Result<Vec<Spanned<ClientEvent>>, SessionError> {
        let mut events = Vec::new();
        self.client.feed(bytes, &mut events)?;
        for event in &events {
            self.matcher.on_client(&event.event)?;
        }
        Ok(events)
    }

    /// Server bytes: their events, and the exchanges they completed.
    pub fn server_bytes(
        &mut self,
        bytes: &[u8],
    ) -> Result<(Vec<Spanned<ServerEvent>>, Vec<Exchange>), SessionError> {
        let mut events = Vec::new();
        self.server.feed(bytes, &mut events)?;
        let mut exchanges = Vec::new();
        for event in &events {
            if let ServerEvent::Tagged(tagged) = &event.event {
                let mut late = Vec::new();
                self.client.on_tagged_completion(tagged, &mut late);
                for client_event in &late {
                    self.matcher.on_client(&client_event.event)?;
                }
            }
            exchanges.extend(self.matcher.on_server(&event.event));
        }
        Ok((events, exchanges))
    }
}
