//! The coordinator's protocol loop: one task owns every session, fed by the network's inbound
//! requests, the HTTP handlers' commands and a clock tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use permafrost_net::{Client, InboundRequest, PeerId};
use permafrost_protocol::{ProtocolError, Refusal};
use permafrost_runtime::any::{self, AnyEvent};
use permafrost_runtime::driver::{Driver, Handled, Route};
use permafrost_runtime::identity::{self, Libp2pVerifier};
use permafrost_runtime::network::Network;
use permafrost_wire::{decode, Curve, Epoch, KeyId, Message, NodeId, SessionId};
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, oneshot};

/// The outcome of a session, as the HTTP handler receives it.
pub type Outcome = Result<AnyEvent, ProtocolError>;

/// What the HTTP side asks the engine to do.
pub enum Command {
    /// Run a DKG.
    CreateKey {
        /// Curve.
        curve: Curve,
        /// Key id (fresh).
        key_id: KeyId,
        /// t.
        threshold: u16,
        /// The committee (PeerIds).
        committee: Vec<PeerId>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
    /// Run one signing session.
    Sign {
        /// Curve.
        curve: Curve,
        /// Key.
        key_id: KeyId,
        /// Epoch.
        epoch: Epoch,
        /// `PublicKeyPackage::serialize()`.
        public_key_package: Vec<u8>,
        /// Committee (PeerIds).
        committee: Vec<PeerId>,
        /// Message.
        message: Vec<u8>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
}

const TICK: Duration = Duration::from_millis(100);

/// Runs the engine until the command channel closes or `stop` fires.
pub async fn run(
    client: Client,
    network: Arc<Network>,
    mut inbound: mpsc::Receiver<InboundRequest>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut engine = Engine {
        driver: Driver::new(client),
        network,
        waiting: BTreeMap::new(),
    };
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            command = commands.recv() => match command {
                Some(command) => engine.command(command),
                None => break,
            },
            request = inbound.recv() => match request {
                Some(request) => engine.inbound(request),
                None => break,
            },
            _ = ticker.tick() => engine.tick(),
        }
    }
}

struct Engine {
    driver: Driver,
    network: Arc<Network>,
    /// Sessions whose outcome an HTTP request waits for.
    waiting: BTreeMap<SessionId, oneshot::Sender<Outcome>>,
}

fn node_ids(peers: &[PeerId]) -> Result<Vec<NodeId>, ProtocolError> {
    peers
        .iter()
        .map(|p| identity::node_id(p).map_err(ProtocolError::from))
        .collect()
}

impl Engine {
    fn command(&mut self, command: Command) {
        let now = permafrost_runtime::now();
        match command {
            Command::CreateKey {
                curve,
                key_id,
                threshold,
                committee,
                reply,
            } => {
                let mut nonce = [0u8; 32];
                OsRng.fill_bytes(&mut nonce);
                let started = node_ids(&committee).and_then(|committee| {
                    any::dkg_coordinator(
                        curve,
                        key_id,
                        threshold,
                        committee,
                        nonce,
                        Arc::new(Libp2pVerifier),
                        now,
                    )
                });
                match started {
                    Ok((session, dkg)) => self.start(session, dkg, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Sign {
                curve,
                key_id,
                epoch,
                public_key_package,
                committee,
                message,
                reply,
            } => {
                let mut session = [0u8; 32];
                OsRng.fill_bytes(&mut session);
                let session = SessionId(session);
                let started = node_ids(&committee).and_then(|committee| {
                    any::signing_coordinator(
                        curve,
                        session,
                        key_id,
                        epoch,
                        message,
                        &public_key_package,
                        committee,
                        now,
                    )
                });
                match started {
                    Ok(signing) => self.start(session, signing, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    fn start(
        &mut self,
        session: SessionId,
        s: Box<dyn any::AnySession>,
        reply: oneshot::Sender<Outcome>,
    ) {
        self.waiting.insert(session, reply);
        let waiting = &mut self.waiting;
        let mut handler = |r: &Route, e: AnyEvent| finish(waiting, r, e);
        self.driver.insert(Route::Session(session), s, &mut handler);
    }

    fn inbound(&mut self, request: InboundRequest) {
        let peer = request.peer;
        let answer = match self.dispatch(peer, &request.payload) {
            Ok(()) => Vec::new(),
            Err(e) => {
                tracing::info!(%peer, error = %e, "message refused");
                e.to_string().into_bytes()
            }
        };
        request.respond(answer);
    }

    fn dispatch(&mut self, peer: PeerId, payload: &[u8]) -> Result<(), ProtocolError> {
        if !self.network.is_node(&peer) {
            return Err(Refusal::NotInCommittee(identity::node_id(&peer)?).into());
        }
        let message = decode(payload)?;
        match &message {
            Message::DkgRound1(_)
            | Message::DkgConfirm(_)
            | Message::DkgComplaint(_)
            | Message::SignCommitment(_)
            | Message::SignShare(_)
            | Message::SignRefusal(_) => {}
            other => return Err(Refusal::Unexpected(other.kind()).into()),
        }
        let from = identity::node_id(&peer)?;
        let route = Route::Session(message.session());
        let waiting = &mut self.waiting;
        let mut handler = |r: &Route, e: AnyEvent| finish(waiting, r, e);
        self.driver.deliver(
            &route,
            &from,
            message,
            permafrost_runtime::now(),
            &mut handler,
        )
    }

    fn tick(&mut self) {
        let waiting = &mut self.waiting;
        let mut handler = |r: &Route, e: AnyEvent| finish(waiting, r, e);
        self.driver.tick(permafrost_runtime::now(), &mut handler);
        // An HTTP client that gave up: its session is dropped at its own deadline.
        self.waiting.retain(|_, reply| !reply.is_closed());
    }
}

/// Hands a session's terminal event to the HTTP request waiting for it.
fn finish(
    waiting: &mut BTreeMap<SessionId, oneshot::Sender<Outcome>>,
    route: &Route,
    event: AnyEvent,
) -> Handled {
    let Route::Session(session) = route else {
        return Handled::Continue;
    };
    let outcome = match event {
        AnyEvent::KeyCreated { .. } | AnyEvent::SignatureReady { .. } => Ok(event),
        AnyEvent::Failed(error) => Err(error),
        _ => return Handled::Continue,
    };
    if let Some(reply) = waiting.remove(session) {
        let _ = reply.send(outcome);
    }
    Handled::Continue
}
