//! A table of running protocol sessions of any curve: feed one, and hand its outputs, in order,
//! to the owner's handler (which sends the messages and carries out the events). The node core
//! and the coordinator both route through it; it does no IO.

use std::collections::BTreeMap;

use permafrost_protocol::{OpenFailure, ProtocolError, Refusal, Timestamp};
use permafrost_wire::{KeyId, Message, NodeId, SessionId};
use rand_core::CryptoRngCore;

use crate::any::{AnyOutput, AnySession};

/// Where a message is routed: a session by its id, or a node's signer by key id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// A DKG, reshare or signing-coordinator session.
    Session(SessionId),
    /// A node's signer service for a key.
    Signer(KeyId),
}

/// What the owner did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Carry on with the session's next output.
    Continue,
    /// Stop: the event could not be carried out (e.g. a share could not be persisted, an audit
    /// record could not be written). The outputs queued after it are discarded, so nothing
    /// that depended on the event is sent. A session ([`Route::Session`]) is dropped too; a
    /// signer ([`Route::Signer`]) stays, so one failed write does not disable a key.
    Abort,
}

/// The handler of session outputs, in order: the owner sends each message and persists or
/// records what each event asks for. Its answer to a message is ignored.
pub type OutputHandler<'a> = &'a mut dyn FnMut(&Route, AnyOutput) -> Handled;

/// Running sessions by route.
#[derive(Default)]
pub struct Sessions {
    sessions: BTreeMap<Route, Box<dyn AnySession>>,
}

impl Sessions {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a route is taken.
    pub fn contains(&self, route: &Route) -> bool {
        self.sessions.contains_key(route)
    }

    /// Every running session with its route.
    pub fn iter(&self) -> impl Iterator<Item = (&Route, &dyn AnySession)> {
        self.sessions.iter().map(|(r, s)| (r, s.as_ref()))
    }

    /// Adds a session (replacing any at the same route) and carries out its first outputs.
    pub fn insert(&mut self, route: Route, session: Box<dyn AnySession>, handler: OutputHandler) {
        self.sessions.insert(route.clone(), session);
        self.drain(&route, handler);
    }

    /// Removes a session.
    pub fn remove(&mut self, route: &Route) {
        self.sessions.remove(route);
    }

    /// Delivers `message` from `from` to the session at `route`.
    pub fn deliver(
        &mut self,
        route: &Route,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
        handler: OutputHandler,
    ) -> Result<(), ProtocolError> {
        let Some(session) = self.sessions.get_mut(route) else {
            return Err(Refusal::WrongSession.into());
        };
        let result = session.handle_message(from, message, now, rng);
        self.drain(route, handler);
        result
    }

    /// Tells the session at `route` that `from` did not take its open.
    pub fn open_failed(
        &mut self,
        route: &Route,
        from: &NodeId,
        failure: OpenFailure<'_>,
        handler: OutputHandler,
    ) {
        if let Some(session) = self.sessions.get_mut(route) {
            session.handle_open_failed(from, failure);
            self.drain(route, handler);
        }
    }

    /// Lets time pass for every session whose deadline is due.
    pub fn tick(&mut self, now: Timestamp, handler: OutputHandler) {
        let due: Vec<Route> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.poll_timeout().is_some_and(|t| t <= now))
            .map(|(r, _)| r.clone())
            .collect();
        for route in due {
            if let Some(session) = self.sessions.get_mut(&route) {
                session.handle_timeout(now);
            }
            self.drain(&route, handler);
        }
    }

    /// The earliest deadline of any session.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.sessions
            .values()
            .filter_map(|s| s.poll_timeout())
            .min()
    }

    fn drain(&mut self, route: &Route, handler: OutputHandler) {
        loop {
            let Some(session) = self.sessions.get_mut(route) else {
                return;
            };
            let Some(output) = session.poll_output() else {
                break;
            };
            match output {
                AnyOutput::Send { .. } => {
                    handler(route, output);
                }
                AnyOutput::Event(_) => {
                    if handler(route, output) == Handled::Abort {
                        match route {
                            Route::Session(_) => {
                                self.sessions.remove(route);
                            }
                            Route::Signer(_) => {
                                if let Some(session) = self.sessions.get_mut(route) {
                                    while session.poll_output().is_some() {}
                                }
                            }
                        }
                        return;
                    }
                }
            }
        }
        if self.sessions.get(route).is_some_and(|s| s.is_finished()) {
            self.sessions.remove(route);
        }
    }
}
