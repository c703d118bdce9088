//! The glue between protocol sessions and the network: feed a session, carry out its outputs
//! in order (events through the owner's handler, messages over `permafrost-net`).

use std::collections::BTreeMap;

use permafrost_engine::any::{AnyEvent, AnyOutput, AnySession};
use permafrost_engine::sessions::Sessions;
pub use permafrost_engine::sessions::{Handled, Route};
use permafrost_net::{Client, InboundRequest};
use permafrost_protocol::{ProtocolError, Timestamp};
use permafrost_wire::{encode, Message, MessageKind, NodeId, SessionId};
use rand_core::OsRng;

use crate::identity::peer_id;

/// A message the network could not deliver: the peer could not be dialled.
#[derive(Debug)]
pub struct Undelivered {
    /// The intended recipient.
    pub to: NodeId,
    /// The message's kind.
    pub kind: MessageKind,
    /// The session the message belongs to.
    pub session: SessionId,
    /// Why it was not delivered.
    pub error: String,
}

/// Sessions and the network client they send through.
pub struct Driver {
    client: Client,
    sessions: Sessions,
    /// Routes whose sends are kept track of, with the deliveries in flight.
    tracked: BTreeMap<Route, Vec<tokio::task::JoinHandle<()>>>,
    /// Where undelivered messages are reported, if anywhere.
    undelivered: Option<tokio::sync::mpsc::UnboundedSender<Undelivered>>,
}

impl Driver {
    /// A driver sending through `client`.
    pub fn new(client: Client) -> Self {
        Driver {
            client,
            sessions: Sessions::new(),
            tracked: BTreeMap::new(),
            undelivered: None,
        }
    }

    /// Reports every message that could not be delivered to `to` from now on (unbounded, so a
    /// delivery task never waits on the owner's loop).
    pub fn report_undelivered(&mut self, to: tokio::sync::mpsc::UnboundedSender<Undelivered>) {
        self.undelivered = Some(to);
    }

    /// Keeps track of the deliveries of every message `route` sends from now on, for
    /// [`take_deliveries`](Self::take_deliveries).
    pub fn track(&mut self, route: Route) {
        self.tracked.entry(route).or_default();
    }

    /// Stops tracking routes whose session has ended (their deliveries go on untracked).
    pub fn prune_tracking(&mut self) {
        let sessions = &self.sessions;
        self.tracked.retain(|route, _| sessions.contains(route));
    }

    /// The deliveries `route` started since it was tracked (each ends when the message was
    /// answered, refused or failed); stops tracking it.
    pub fn take_deliveries(&mut self, route: &Route) -> Vec<tokio::task::JoinHandle<()>> {
        self.tracked.remove(route).unwrap_or_default()
    }

    /// The network client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether a route is taken.
    pub fn contains(&self, route: &Route) -> bool {
        self.sessions.contains(route)
    }

    /// Adds a session (replacing any at the same route) and carries out its first outputs.
    pub fn insert(
        &mut self,
        route: Route,
        session: Box<dyn AnySession>,
        handler: &mut dyn FnMut(&Route, AnyEvent) -> Handled,
    ) {
        let mut outputs = outputs(
            &self.client,
            self.undelivered.as_ref(),
            &mut self.tracked,
            handler,
        );
        self.sessions.insert(route, session, &mut outputs);
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
        handler: &mut dyn FnMut(&Route, AnyEvent) -> Handled,
    ) -> Result<(), ProtocolError> {
        let mut outputs = outputs(
            &self.client,
            self.undelivered.as_ref(),
            &mut self.tracked,
            handler,
        );
        self.sessions
            .deliver(route, from, message, now, &mut OsRng, &mut outputs)
    }

    /// Lets time pass for every session.
    pub fn tick(&mut self, now: Timestamp, handler: &mut dyn FnMut(&Route, AnyEvent) -> Handled) {
        let mut outputs = outputs(
            &self.client,
            self.undelivered.as_ref(),
            &mut self.tracked,
            handler,
        );
        self.sessions.tick(now, &mut outputs);
    }

    /// Sends one message in the background; failures are logged with the peer's name. Returns
    /// the delivery, which ends once the peer answered or the send failed (`None` if nothing
    /// could be sent).
    pub fn send(&self, to: NodeId, message: Message) -> Option<tokio::task::JoinHandle<()>> {
        Sender {
            client: &self.client,
            undelivered: self.undelivered.as_ref(),
        }
        .send(to, message)
    }

    /// The earliest deadline of any session.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.sessions.next_deadline()
    }
}

/// The handler of session outputs: messages are sent (their deliveries kept track of for
/// tracked routes), events go to `handler`.
fn outputs<'a>(
    client: &'a Client,
    undelivered: Option<&'a tokio::sync::mpsc::UnboundedSender<Undelivered>>,
    tracked: &'a mut BTreeMap<Route, Vec<tokio::task::JoinHandle<()>>>,
    handler: &'a mut dyn FnMut(&Route, AnyEvent) -> Handled,
) -> impl FnMut(&Route, AnyOutput) -> Handled + 'a {
    let sender = Sender {
        client,
        undelivered,
    };
    move |route, output| match output {
        AnyOutput::Send { to, message } => {
            let delivery = sender.send(to, message);
            if let (Some(tracked), Some(delivery)) = (tracked.get_mut(route), delivery) {
                tracked.push(delivery);
            }
            Handled::Continue
        }
        AnyOutput::Event(event) => handler(route, event),
    }
}

/// What sending needs: the client, and where undelivered messages are reported.
struct Sender<'a> {
    client: &'a Client,
    undelivered: Option<&'a tokio::sync::mpsc::UnboundedSender<Undelivered>>,
}

impl Sender<'_> {
    fn send(&self, to: NodeId, message: Message) -> Option<tokio::task::JoinHandle<()>> {
        let kind = message.kind().name();
        let what = (message.kind(), message.session());
        let Some(peer) = peer_id(&to) else {
            tracing::warn!(%to, kind, "cannot send: node id is not a PeerId");
            return None;
        };
        let frame = match encode(&message) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%peer, kind, error = %e, "cannot encode message");
                return None;
            }
        };
        let client = self.client.clone();
        let report = self.undelivered.cloned();
        Some(tokio::spawn(async move {
            match client.request(peer, frame).await {
                Ok(answer) if answer.is_empty() => {}
                Ok(answer) => {
                    tracing::info!(%peer, kind, refusal = %String::from_utf8_lossy(&answer), "message refused by peer");
                }
                Err(e) => {
                    tracing::warn!(%peer, kind, error = %e, "message not delivered");
                    // Only a failed dial proves the message never arrived; a timed-out request
                    // may have been taken.
                    let unreachable = matches!(e, permafrost_net::NetError::Unreachable { .. });
                    if let (Some(tx), true) = (report, unreachable) {
                        let _ = tx.send(Undelivered {
                            to,
                            kind: what.0,
                            session: what.1,
                            error: e.to_string(),
                        });
                    }
                }
            }
        }))
    }
}

/// Answers an inbound request with the outcome of handling it: an empty answer when it was
/// taken, the refusal's text when it was not (logged with the peer).
pub fn answer(request: InboundRequest, outcome: Result<(), ProtocolError>) {
    let answer = match outcome {
        Ok(()) => Vec::new(),
        Err(e) => {
            tracing::info!(peer = %request.peer, error = %e, "message refused");
            e.to_string().into_bytes()
        }
    };
    request.respond(answer);
}
