//! A table of running protocol sessions of any curve: feed one, and hand its outputs, in order,
//! to the owner's handler (which sends the messages and carries out the events). The node core
//! and the coordinator both route through it; it does no IO.

use std::collections::{BTreeMap, BTreeSet};

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

/// Running sessions by route, with an index of their deadlines: the next deadline and the
/// sessions due are found without asking every session (a node runs one signer per key it
/// holds, so asking each on every event would cost time in proportion to its keys).
#[derive(Default)]
pub struct Sessions {
    sessions: BTreeMap<Route, Box<dyn AnySession>>,
    /// `(deadline, route)` of every session with a deadline, as it last answered
    /// `poll_timeout`; kept equal to `deadline_of`.
    deadlines: BTreeSet<(Timestamp, Route)>,
    /// The deadline of each route in `deadlines`.
    deadline_of: BTreeMap<Route, Timestamp>,
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

    /// The session at `route`, if one runs.
    pub fn get(&self, route: &Route) -> Option<&dyn AnySession> {
        self.sessions.get(route).map(|s| s.as_ref())
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
        self.index_deadline(route);
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

    /// Hands the session at `route` the result of an aggregation it made (ignored if it ended).
    pub fn aggregated(
        &mut self,
        route: &Route,
        done: crate::any::AnyAggregated,
        now: Timestamp,
        handler: OutputHandler,
    ) {
        if let Some(session) = self.sessions.get_mut(route) {
            session.handle_aggregated(done, now);
            self.drain(route, handler);
        }
    }

    /// Lets time pass for every session whose deadline is due.
    pub fn tick(&mut self, now: Timestamp, handler: OutputHandler) {
        let due: Vec<Route> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, r)| r.clone())
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
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Brings the index up to date with the session at `route` (or its absence). Called after
    /// every change to a session: its deadline changes only when it handles something.
    fn index_deadline(&mut self, route: &Route) {
        let deadline = self.sessions.get(route).and_then(|s| s.poll_timeout());
        let indexed = self.deadline_of.get(route).copied();
        if deadline == indexed {
            return;
        }
        if let Some(old) = indexed {
            self.deadlines.remove(&(old, route.clone()));
            self.deadline_of.remove(route);
        }
        if let Some(new) = deadline {
            self.deadlines.insert((new, route.clone()));
            self.deadline_of.insert(route.clone(), new);
        }
    }

    /// Hands the outputs of the session at `route` to `handler`, then indexes its deadline.
    fn drain(&mut self, route: &Route, handler: OutputHandler) {
        self.drain_outputs(route, handler);
        self.index_deadline(route);
    }

    fn drain_outputs(&mut self, route: &Route, handler: OutputHandler) {
        loop {
            let Some(session) = self.sessions.get_mut(route) else {
                return;
            };
            let Some(output) = session.poll_output() else {
                break;
            };
            match output {
                AnyOutput::Send { .. } | AnyOutput::Aggregate(_) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that only keeps time: due at `deadline`; a timeout re-arms it `period` later
    /// (or ends it when `period` is zero), a failed open moves its deadline to `0 + period`.
    struct Timer {
        deadline: Option<Timestamp>,
        period: u64,
        fired: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AnySession for Timer {
        fn handle_message(
            &mut self,
            _: &NodeId,
            _: Message,
            _: Timestamp,
            _: &mut dyn CryptoRngCore,
        ) -> Result<(), ProtocolError> {
            Ok(())
        }
        fn handle_aggregated(&mut self, _: crate::any::AnyAggregated, _: Timestamp) {}

        fn handle_timeout(&mut self, now: Timestamp) {
            if self.deadline.is_some_and(|t| t <= now) {
                self.fired
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.deadline = (self.period > 0).then(|| Timestamp(now.0 + self.period));
            }
        }
        fn handle_open_failed(&mut self, _: &NodeId, _: OpenFailure<'_>) {
            self.deadline = Some(Timestamp(self.period));
        }
        fn poll_output(&mut self) -> Option<AnyOutput> {
            None
        }
        fn poll_timeout(&self) -> Option<Timestamp> {
            self.deadline
        }
        fn is_finished(&self) -> bool {
            self.deadline.is_none()
        }
        fn live_nonces(&self) -> usize {
            0
        }
        fn pooled_nonces(&self) -> usize {
            0
        }
        fn holds_pooled_nonce(&self, _: &NodeId, _: &permafrost_wire::SignWithCommitment) -> bool {
            false
        }
    }

    fn route(n: u8) -> Route {
        Route::Session(SessionId([n; 32]))
    }

    /// The earliest deadline by asking every session, as the index must answer.
    fn asked(sessions: &Sessions) -> Option<Timestamp> {
        sessions.iter().filter_map(|(_, s)| s.poll_timeout()).min()
    }

    #[test]
    fn the_deadline_index_follows_every_change_to_a_session() {
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let timer = |deadline: u64, period: u64| -> Box<dyn AnySession> {
            Box::new(Timer {
                deadline: Some(Timestamp(deadline)),
                period,
                fired: fired.clone(),
            })
        };
        let mut handler = |_: &Route, _: AnyOutput| Handled::Continue;
        let mut sessions = Sessions::new();
        sessions.insert(route(1), timer(30, 0), &mut handler);
        sessions.insert(route(2), timer(10, 25), &mut handler);
        sessions.insert(route(3), timer(20, 7), &mut handler);
        assert_eq!(sessions.next_deadline(), Some(Timestamp(10)));

        // Only the due session fires; it re-arms at 15 + 25.
        sessions.tick(Timestamp(15), &mut handler);
        assert_eq!(fired.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(sessions.next_deadline(), Some(Timestamp(20)));

        // A session replaced at its route keeps one entry, at its new deadline.
        sessions.insert(route(3), timer(50, 7), &mut handler);
        assert_eq!(sessions.next_deadline(), Some(Timestamp(30)));
        assert_eq!(sessions.deadlines.len(), 3);

        // A failed open moves route 2's deadline from 40 to 25, before everyone else's.
        let node = NodeId::new(vec![9]).unwrap();
        sessions.open_failed(
            &route(2),
            &node,
            OpenFailure::Unreachable("x"),
            &mut handler,
        );
        assert_eq!(sessions.next_deadline(), Some(Timestamp(25)));

        // A removed session leaves the index.
        sessions.remove(&route(2));
        assert_eq!(sessions.next_deadline(), Some(Timestamp(30)));

        // Route 1 fires and finishes (period 0); route 3 fires at 50 and re-arms at 107.
        sessions.tick(Timestamp(100), &mut handler);
        assert_eq!(fired.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert!(!sessions.contains(&route(1)));
        assert_eq!(sessions.next_deadline(), Some(Timestamp(107)));
        assert_eq!(sessions.next_deadline(), asked(&sessions));
        assert_eq!(sessions.deadlines.len(), sessions.deadline_of.len());
        assert_eq!(sessions.deadlines.len(), 1);

        sessions.remove(&route(3));
        assert_eq!(sessions.next_deadline(), None);
        assert!(sessions.deadlines.is_empty() && sessions.deadline_of.is_empty());
    }
}
