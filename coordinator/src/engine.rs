//! The coordinator's protocol loop: one task owns every session, fed by the network's inbound
//! requests, the HTTP handlers' commands and a clock tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use permafrost_net::{Client, InboundRequest, PeerId};
use permafrost_protocol::reshare::DEFAULT_RESHARE_TIMEOUT;
use permafrost_protocol::{ProtocolError, Refusal};
use permafrost_runtime::any::{self, AnyEvent};
use permafrost_runtime::driver::{self, Driver, Handled, Route, Undelivered};
use permafrost_runtime::identity::{self, Libp2pVerifier};
use permafrost_runtime::network::Network;
use permafrost_wire::{
    decode, encode, ClientAuthorization, Curve, Epoch, KeyId, Message, MessageKind, NodeId,
    ReshareAbort, ReshareProposal, SessionId,
};

use crate::store::{KeyMeta, MetadataStore, ReshareEntry, ReshareState};
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
        /// The client's approval, which every signer checks.
        client: ClientAuthorization,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
    /// Run a reshare of a key to a new committee and threshold. The outcome is
    /// [`AnyEvent::KeyReshared`] once the new epoch is recorded in the store.
    Reshare {
        /// The key as stored (its current epoch, committee and package).
        meta: KeyMeta,
        /// The new committee (PeerIds).
        committee: Vec<PeerId>,
        /// The new threshold.
        threshold: u16,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
}

const TICK: Duration = Duration::from_millis(100);

/// How long a signature request may take before it fails naming the members that did not
/// answer (503): ROAST retries with other signers within it.
pub const SIGN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the engine until the command channel closes or `stop` fires.
pub async fn run(
    client: Client,
    network: Arc<Network>,
    store: Arc<MetadataStore>,
    mut inbound: mpsc::Receiver<InboundRequest>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
) {
    let (undelivered_tx, mut undelivered) = mpsc::unbounded_channel();
    let mut driver = Driver::new(client);
    driver.report_undelivered(undelivered_tx);
    let mut engine = Engine {
        driver,
        network,
        store,
        waiting: BTreeMap::new(),
        reshares: BTreeMap::new(),
        aliases: BTreeMap::new(),
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
            Some(failed) = undelivered.recv() => engine.undelivered(failed),
            _ = ticker.tick() => engine.tick(),
        }
    }
}

struct Engine {
    driver: Driver,
    network: Arc<Network>,
    store: Arc<MetadataStore>,
    /// Sessions whose outcome an HTTP request waits for.
    waiting: BTreeMap<SessionId, oneshot::Sender<Outcome>>,
    /// Running reshares: what to record when each ends.
    reshares: BTreeMap<SessionId, RunningReshare>,
    /// Test-signature session id → its reshare session.
    aliases: BTreeMap<SessionId, SessionId>,
}

/// A reshare in flight, as the engine records it at its end.
struct RunningReshare {
    meta: KeyMeta,
    entry: ReshareEntry,
}

/// Marks every reshare a previous run left running as aborted: the session died with that
/// process, and it never sent a commit (a commit is sent only after it is recorded).
pub fn abort_unfinished_reshares(store: &MetadataStore) -> Result<(), crate::CoordinatorError> {
    for entry in store.reshares()? {
        if entry.state != ReshareState::Running {
            continue;
        }
        let Ok(session) = hex::decode(&entry.session)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(())
        else {
            continue;
        };
        let entry = aborted(
            entry,
            SessionId(session),
            Vec::new(),
            "the coordinator restarted during the reshare".into(),
        );
        store.put_reshare(&entry)?;
        tracing::warn!(key = %entry.key_id, session = %entry.session, "reshare left running by a previous run recorded as aborted");
    }
    Ok(())
}

/// `entry` recorded as aborted, with the `ReshareAbort` a member asking is sent.
fn aborted(
    entry: ReshareEntry,
    session: SessionId,
    culprits: Vec<NodeId>,
    reason: String,
) -> ReshareEntry {
    let abort = Message::ReshareAbort(ReshareAbort {
        session,
        culprits,
        reason,
    });
    ReshareEntry {
        state: ReshareState::Aborted,
        outcome: encode(&abort).map(hex::encode).unwrap_or_default(),
        ..entry
    }
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
                    Ok((session, dkg)) => {
                        // The API answers once the commit reached every member (or failed
                        // to), so a member stopped right after the answer has its key active.
                        self.driver.track(Route::Session(session));
                        self.start(session, dkg, reply)
                    }
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
                client,
                reply,
            } => {
                let mut session = [0u8; 32];
                OsRng.fill_bytes(&mut session);
                let session = SessionId(session);
                // ROAST: every reachable member is asked; a signature comes out as long as
                // t members answer honestly before the deadline.
                let started = node_ids(&committee).and_then(|committee| {
                    any::roast_coordinator(
                        curve,
                        session,
                        key_id,
                        epoch,
                        message,
                        Some(client),
                        &public_key_package,
                        committee,
                        now,
                        SIGN_DEADLINE,
                    )
                });
                match started {
                    Ok(signing) => self.start(session, signing, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Reshare {
                meta,
                committee,
                threshold,
                reply,
            } => {
                if let Err(e) = self.start_reshare(meta, committee, threshold, reply) {
                    tracing::warn!(error = %e, "reshare not started");
                }
            }
        }
    }

    /// Opens a reshare: builds the proposal, records the reshare as running (durably), then
    /// starts the session. Errors are sent to `reply`; the returned error is for the log.
    fn start_reshare(
        &mut self,
        meta: KeyMeta,
        committee: Vec<PeerId>,
        threshold: u16,
        reply: oneshot::Sender<Outcome>,
    ) -> Result<(), String> {
        // One reshare per key at a time, whatever the HTTP side thinks: two sessions for the
        // same epoch would race to write the same next epoch on the members.
        if self.reshares.values().any(|r| r.meta.key_id == meta.key_id) {
            let message = format!("a reshare of key {} is already running", meta.key_id);
            let _ = reply.send(Err(ProtocolError::InvalidParameters(message.clone())));
            return Err(message);
        }
        let built = self
            .proposal(&meta, &committee, threshold)
            .and_then(|proposal| {
                let attempt = proposal.attempt;
                any::reshare_coordinator(
                    proposal,
                    Arc::new(Libp2pVerifier),
                    permafrost_runtime::now(),
                    DEFAULT_RESHARE_TIMEOUT,
                )
                .map(|started| (started, attempt))
            });
        let ((session, test_session, reshare), attempt) = match built {
            Ok(b) => b,
            Err(e) => {
                let message = e.to_string();
                let _ = reply.send(Err(e));
                return Err(message);
            }
        };
        let entry = ReshareEntry {
            session: hex::encode(session.0),
            key_id: meta.key_id.clone(),
            epoch: meta.epoch,
            attempt,
            state: ReshareState::Running,
            outcome: String::new(),
        };
        if let Err(e) = self.store.put_reshare(&entry) {
            let message = format!("cannot record the reshare: {e}");
            let _ = reply.send(Err(ProtocolError::Frost(message.clone())));
            return Err(message);
        }
        tracing::info!(key = %meta.key_id, epoch = meta.epoch, attempt, %session, "reshare started");
        self.reshares
            .insert(session, RunningReshare { meta, entry });
        self.aliases.insert(test_session, session);
        // The API answers once the certificate reached every member (or failed to), so a
        // signature asked right after the answer finds the new epoch in force.
        self.driver.track(Route::Session(session));
        self.start(session, reshare, reply);
        Ok(())
    }

    /// The proposal for moving `meta`'s key to `committee` with `threshold`. The dealers are
    /// the old members that stay (so an evicted node does not deal), or every old member when
    /// fewer than the old threshold stay.
    fn proposal(
        &self,
        meta: &KeyMeta,
        committee: &[PeerId],
        threshold: u16,
    ) -> Result<ReshareProposal, ProtocolError> {
        let parse = |p: &String| {
            p.parse::<PeerId>()
                .map_err(|e| ProtocolError::Frost(format!("stored peer id {p}: {e}")))
        };
        let old_peers = meta
            .peers
            .iter()
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?;
        let mut old_committee = node_ids(&old_peers)?;
        old_committee.sort();
        let mut new_committee = node_ids(committee)?;
        new_committee.sort();
        let staying: Vec<NodeId> = old_committee
            .iter()
            .filter(|n| new_committee.contains(n))
            .cloned()
            .collect();
        let dealers = if staying.len() >= usize::from(meta.threshold) {
            staying
        } else {
            old_committee.clone()
        };
        let old_public_key_package = hex::decode(&meta.public_key_package)
            .map_err(|e| ProtocolError::Frost(format!("stored public key package: {e}")))?;
        let attempt = self
            .store
            .next_attempt(&meta.key_id, meta.epoch)
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        Ok(ReshareProposal {
            key_id: KeyId::new(meta.key_id.clone())?,
            curve: meta.curve,
            epoch: Epoch(meta.epoch),
            attempt,
            old_committee,
            old_public_key_package,
            new_committee,
            new_threshold: threshold,
            dealers,
        })
    }

    fn start(
        &mut self,
        session: SessionId,
        s: Box<dyn any::AnySession>,
        reply: oneshot::Sender<Outcome>,
    ) {
        self.waiting.insert(session, reply);
        self.drive(|driver, handler| driver.insert(Route::Session(session), s, handler));
    }

    /// Runs `f` on the driver with the event handler, then forgets sessions that ended.
    fn drive<R>(
        &mut self,
        f: impl FnOnce(&mut Driver, &mut dyn FnMut(&Route, AnyEvent) -> Handled) -> R,
    ) -> R {
        let mut finisher = Finisher {
            waiting: &mut self.waiting,
            reshares: &mut self.reshares,
            store: &self.store,
            network: &self.network,
            committed: Vec::new(),
        };
        let result = f(&mut self.driver, &mut |r, e| finisher.finish(r, e));
        for (session, reply, outcome) in std::mem::take(&mut finisher.committed) {
            let deliveries = self.driver.take_deliveries(&Route::Session(session));
            tokio::spawn(async move {
                for delivery in deliveries {
                    let _ = delivery.await;
                }
                let _ = reply.send(outcome);
            });
        }
        self.driver.prune_tracking();
        let reshares = &self.reshares;
        self.aliases
            .retain(|_, session| reshares.contains_key(session));
        result
    }

    /// A signing request that could not reach its member (the dial failed): for this request
    /// the member is as good as refusing, so ROAST moves on without it, and fails at once (503)
    /// if fewer than t members are left, rather than at its deadline. (A package that does not
    /// arrive is left to the attempt's timeout: the member may hold a share of an attempt.)
    fn undelivered(&mut self, failed: Undelivered) {
        if failed.kind != MessageKind::SignRequest {
            return;
        }
        let session = failed.session;
        let route = Route::Session(session);
        if !self.driver.contains(&route) {
            return;
        }
        let refusal = Message::SignRefusal(permafrost_wire::SignRefusal {
            session,
            reason: format!("not reachable: {}", failed.error),
            unauthorized: false,
        });
        let now = permafrost_runtime::now();
        let _ =
            self.drive(|driver, handler| driver.deliver(&route, &failed.to, refusal, now, handler));
    }

    fn inbound(&mut self, request: InboundRequest) {
        let outcome = self.dispatch(request.peer, &request.payload);
        driver::answer(request, outcome);
    }

    fn dispatch(&mut self, peer: PeerId, payload: &[u8]) -> Result<(), ProtocolError> {
        if !self.network.is_node(&peer) {
            return Err(Refusal::NotInCommittee(identity::node_id(&peer)?).into());
        }
        let message = decode(payload)?;
        let from = identity::node_id(&peer)?;
        match &message {
            Message::ReshareStatus(status) => return self.answer_status(from, status.session),
            Message::DkgRound1(_)
            | Message::DkgConfirm(_)
            | Message::DkgComplaint(_)
            | Message::SignCommitment(_)
            | Message::SignShare(_)
            | Message::SignRefusal(_)
            | Message::ReshareDealing(_)
            | Message::ReshareReport(_)
            | Message::ReshareConfirm(_) => {}
            other => return Err(Refusal::Unexpected(other.kind()).into()),
        }
        let session = message.session();
        let route = Route::Session(self.aliases.get(&session).copied().unwrap_or(session));
        let now = permafrost_runtime::now();
        self.drive(|driver, handler| driver.deliver(&route, &from, message, now, handler))
    }

    /// A member asks what became of a reshare: send it the recorded commit or abort again.
    fn answer_status(&mut self, from: NodeId, session: SessionId) -> Result<(), ProtocolError> {
        let entry = self
            .store
            .reshare(&hex::encode(session.0))
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        let Some(entry) = entry else {
            return Err(Refusal::UnknownSession.into());
        };
        if entry.state == ReshareState::Running {
            // It gets the outcome with everyone else.
            return Ok(());
        }
        let outcome = hex::decode(&entry.outcome)
            .ok()
            .and_then(|frame| decode(&frame).ok())
            .ok_or_else(|| ProtocolError::Frost("the recorded outcome does not decode".into()))?;
        tracing::info!(%from, %session, state = ?entry.state, "reshare outcome sent again on request");
        self.driver.send(from, outcome);
        Ok(())
    }

    fn tick(&mut self) {
        let now = permafrost_runtime::now();
        self.drive(|driver, handler| driver.tick(now, handler));
        // An HTTP client that gave up: its session is dropped at its own deadline.
        self.waiting.retain(|_, reply| !reply.is_closed());
    }
}

/// Carries out the terminal events of sessions: records reshare outcomes durably and hands
/// results to the HTTP requests waiting for them.
struct Finisher<'a> {
    waiting: &'a mut BTreeMap<SessionId, oneshot::Sender<Outcome>>,
    reshares: &'a mut BTreeMap<SessionId, RunningReshare>,
    store: &'a MetadataStore,
    network: &'a Network,
    /// Committed DKGs and reshares whose answer waits for the deliveries of their commit.
    committed: Vec<(SessionId, oneshot::Sender<Outcome>, Outcome)>,
}

impl Finisher<'_> {
    fn finish(&mut self, route: &Route, event: AnyEvent) -> Handled {
        let Route::Session(session) = route else {
            return Handled::Continue;
        };
        let outcome = match event {
            AnyEvent::KeyReshared { .. } => {
                // Recorded before the certificate is sent (it is the next output).
                if let Err(e) = self.record_commit(session, &event) {
                    tracing::error!(%session, error = %e, "cannot record the reshare's commit; not sending it");
                    let error = ProtocolError::Frost(format!("cannot record the commit: {e}"));
                    self.record_abort(session, &error);
                    if let Some(reply) = self.waiting.remove(session) {
                        let _ = reply.send(Err(error));
                    }
                    return Handled::Abort;
                }
                if let Some(reply) = self.waiting.remove(session) {
                    self.committed.push((*session, reply, Ok(event)));
                }
                return Handled::Continue;
            }
            AnyEvent::KeyCreated { .. } => {
                if let Some(reply) = self.waiting.remove(session) {
                    self.committed.push((*session, reply, Ok(event)));
                }
                return Handled::Continue;
            }
            AnyEvent::SignatureReady { .. } => Ok(event),
            AnyEvent::Failed(error) => {
                self.record_abort(session, &error);
                Err(error)
            }
            _ => return Handled::Continue,
        };
        if let Some(reply) = self.waiting.remove(session) {
            let _ = reply.send(outcome);
        }
        Handled::Continue
    }

    fn record_commit(&mut self, session: &SessionId, event: &AnyEvent) -> Result<(), String> {
        let AnyEvent::KeyReshared {
            epoch,
            committee,
            threshold,
            public_key_package,
            public_key,
            certificate,
            ..
        } = event
        else {
            return Err("not a commit".into());
        };
        let Some(running) = self.reshares.remove(session) else {
            return Err("no such running reshare".into());
        };
        let mut peers = Vec::new();
        let mut names = Vec::new();
        for node in committee {
            let peer = identity::peer_id(node).ok_or("a member is not a PeerId")?;
            names.push(self.network.name_of(&peer).unwrap_or_default().to_owned());
            peers.push(peer.to_string());
        }
        let old_public_key = running.meta.public_key.clone();
        let meta = KeyMeta {
            threshold: *threshold,
            nodes: names,
            peers,
            public_key: hex::encode(public_key),
            public_key_package: hex::encode(public_key_package),
            epoch: epoch.0,
            ..running.meta
        };
        if meta.public_key != old_public_key {
            return Err("the group key changed".into());
        }
        let frame =
            encode(&Message::ReshareCommit(certificate.clone())).map_err(|e| e.to_string())?;
        let entry = ReshareEntry {
            state: ReshareState::Committed,
            outcome: hex::encode(frame),
            ..running.entry
        };
        self.store
            .commit_reshare(&meta, &entry)
            .map_err(|e| e.to_string())?;
        tracing::info!(key = %meta.key_id, epoch = meta.epoch, nodes = ?meta.nodes, threshold, "reshare committed");
        Ok(())
    }

    fn record_abort(&mut self, session: &SessionId, error: &ProtocolError) {
        let Some(running) = self.reshares.remove(session) else {
            return;
        };
        let entry = aborted(running.entry, *session, error.culprits(), error.to_string());
        if let Err(e) = self.store.put_reshare(&entry) {
            tracing::error!(%session, error = %e, "cannot record the reshare's abort");
        }
        tracing::warn!(key = %entry.key_id, %session, %error, "reshare aborted");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(session: [u8; 32], state: ReshareState) -> ReshareEntry {
        ReshareEntry {
            session: hex::encode(session),
            key_id: "k-1".into(),
            epoch: 3,
            attempt: 0,
            state,
            outcome: String::new(),
        }
    }

    #[test]
    fn a_restart_records_running_reshares_as_aborted_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(&dir.path().join("c.redb")).unwrap();
        store
            .put_reshare(&entry([1; 32], ReshareState::Running))
            .unwrap();
        let committed = ReshareEntry {
            outcome: "00".into(),
            ..entry([2; 32], ReshareState::Committed)
        };
        store.put_reshare(&committed).unwrap();
        abort_unfinished_reshares(&store).unwrap();

        let aborted = store.reshare(&hex::encode([1u8; 32])).unwrap().unwrap();
        assert_eq!(aborted.state, ReshareState::Aborted);
        // The recorded abort is the message a member asking for the outcome is sent.
        let frame = hex::decode(&aborted.outcome).unwrap();
        let Message::ReshareAbort(abort) = decode(&frame).unwrap() else {
            panic!("not an abort");
        };
        assert_eq!(abort.session, SessionId([1; 32]));
        assert_eq!(
            store.reshare(&hex::encode([2u8; 32])).unwrap().unwrap(),
            committed
        );
        // Attempts go on counting past both.
        assert_eq!(store.next_attempt("k-1", 3).unwrap(), 1);
        assert_eq!(store.next_attempt("k-1", 4).unwrap(), 0);
    }
}
