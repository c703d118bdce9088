//! An in-memory network for protocol tests and benchmarks: N signer nodes and a coordinator,
//! a seeded RNG, virtual time, and a network you control. Each node is the production
//! [`NodeCore`] over a [`MemoryNodeStore`]: the rules tested here are the node's own, and a
//! crash is "drop the core, open a new one on the same store". Every message goes through the wire
//! codec, and a fault hook sees each one before it is queued: deliver it, drop it, duplicate
//! it, delay it, or replace it with something else.
//!
//! Enabled by the `sim` feature. Nothing here is used in production.
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature as DalekSignature, Signer as _, SigningKey, VerifyingKey};
use frost_core::keys::PublicKeyPackage;
use frost_core::Signature;
use permafrost_wire::{
    decode, encode, ApprovalTarget, ClientAuthorization, DerivationPath, Epoch, KeyId,
    LifecycleAction, Message, MessageKind, NodeId, OperatorApproval, SessionId,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, RngCore, SeedableRng};

use crate::any::StoredShare;
use crate::any::{AnyAggregation, AnyEvent};
use crate::coordinator::{
    CoordinatorCore, CoordinatorNotice, CoordinatorOutput, CoordinatorSetup, KeyMeta,
    MemoryMetadataStore, MetadataStore, Outcome, RequestId, ReshareState,
};
use crate::deadlines;
use crate::node::{MemoryNodeStore, NodeCore, NodeNotice, NodeOutput, NodeSetup, StoreError};
use permafrost_keystore::ShareState;
use permafrost_protocol::lifecycle::{OperatorKey, OperatorPolicy};
use permafrost_protocol::sign::client::{ClientKey, ClientPolicy};
use permafrost_protocol::sign::{Aggregation, SigningCoordinator, DEFAULT_SIGN_TIMEOUT};
use permafrost_protocol::{
    Event, IdentityVerifier, KeyShare, NodeIdentity, OpenFailure, Output, ProtocolError, Session,
    Suite, Timestamp,
};

/// An ed25519 identity; its node id is the 32-byte public key.
pub struct SimIdentity {
    key: SigningKey,
    id: NodeId,
}

impl SimIdentity {
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        #[allow(clippy::expect_used)]
        let id = NodeId::new(key.verifying_key().to_bytes().to_vec()).expect("32 bytes");
        SimIdentity { key, id }
    }
}

impl NodeIdentity for SimIdentity {
    fn node_id(&self) -> &NodeId {
        &self.id
    }
    fn sign(&self, statement: &[u8]) -> Vec<u8> {
        self.key.sign(statement).to_bytes().to_vec()
    }
}

/// Verifies [`SimIdentity`] signatures: the node id is the ed25519 public key.
pub struct SimVerifier;

impl IdentityVerifier for SimVerifier {
    fn verify(&self, signer: &NodeId, statement: &[u8], signature: &[u8]) -> bool {
        let Ok(key_bytes) = <[u8; 32]>::try_from(signer.as_bytes()) else {
            return false;
        };
        let Ok(key) = VerifyingKey::from_bytes(&key_bytes) else {
            return false;
        };
        let Ok(signature) = DalekSignature::from_slice(signature) else {
            return false;
        };
        key.verify_strict(statement, &signature).is_ok()
    }
}

/// The client every simulated node accepts by default ([`Network::authorize`] signs with it).
pub fn sim_client() -> SigningKey {
    SigningKey::from_bytes(&[0xc1; 32])
}

/// The network id of every simulated network: nodes check that a client's approval is for it.
pub const SIM_NETWORK_ID: &str = "permafrost-sim";

/// A policy accepting [`sim_client`] for every key.
pub fn sim_client_policy() -> ClientPolicy {
    let mut policy = ClientPolicy::default();
    policy
        .all_keys
        .insert(ClientKey(sim_client().verifying_key().to_bytes()));
    policy
}

/// The operator every simulated node accepts by default: the gateway operator key of every
/// simulated coordinator, so a DKG or reshare asked for without approvals is approved with it.
pub fn sim_operator() -> SigningKey {
    SigningKey::from_bytes(&[0x0b; 32])
}

/// A policy accepting [`sim_operator`] for every key, with the default floors.
pub fn sim_operator_policy() -> OperatorPolicy {
    let mut policy = OperatorPolicy::default();
    policy
        .all_keys
        .insert(OperatorKey(sim_operator().verifying_key().to_bytes()));
    policy
}

/// A message in flight, as the fault hook sees it.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message,
}

/// What the network does with one message.
#[derive(Clone, Debug)]
pub enum Fault {
    Deliver,
    Drop,
    Duplicate,
    Delay(Duration),
    /// Deliver this message instead.
    Replace(Message),
    /// Deliver this message instead, this much later (after messages sent at about the same
    /// time).
    ReplaceLater(Message, Duration),
    /// Deliver these raw bytes instead (they go through the decoder).
    ReplaceBytes(Vec<u8>),
    /// Deliver the message and this one after it (an equivocating sender).
    DeliverAlso(Message),
    /// Do not deliver it, and tell a coordinator that sent it that it could not (a failed
    /// dial: the receiver is down or not listening yet).
    Unreachable,
}

type FaultHook = Box<dyn FnMut(&Envelope) -> Fault>;

/// Decides, notice by notice, when a node crashes.
type CrashHook = Box<dyn FnMut(&NodeNotice) -> bool>;

struct InFlight {
    deliver_at: Timestamp,
    order: u64,
    from: NodeId,
    to: NodeId,
    frame: Vec<u8>,
}

/// A signer node in memory: the production node core over a store in memory that survives a
/// crash. `None` while a restart failed (the node is down).
pub struct SimNode<S: Suite> {
    core: Option<NodeCore<MemoryNodeStore>>,
    /// Leaves signature shares held (no sync) after each message, until a test flushes.
    hold_syncs: bool,
    _suite: PhantomData<fn() -> S>,
}

impl<S: Suite> SimNode<S> {
    /// The node's core (`None` if it is down).
    pub fn core(&self) -> Option<&NodeCore<MemoryNodeStore>> {
        self.core.as_ref()
    }

    /// The node's core, to feed it directly or change its store.
    pub fn core_mut(&mut self) -> Option<&mut NodeCore<MemoryNodeStore>> {
        self.core.as_mut()
    }

    /// With `true`, the node no longer syncs its store after a message: its signature shares
    /// stay held (a crash then is a crash between the writes and the sync). With `false` it
    /// syncs after each message again, starting now.
    pub fn hold_syncs(&mut self, hold: bool) {
        self.hold_syncs = hold;
        if let (false, Some(core)) = (hold, self.core.as_mut()) {
            core.flush();
            core.sync_ended();
        }
    }

    /// The node's store.
    pub fn store(&self) -> Option<&MemoryNodeStore> {
        self.core.as_ref().map(NodeCore::store)
    }

    fn share(&self, key_id: &KeyId, state: ShareState) -> Option<KeyShare<S>> {
        self.store()?
            .shares_of(key_id)
            .into_iter()
            .filter(|(_, s, _)| *s == state)
            .max_by_key(|(epoch, _, _)| *epoch)
            .and_then(|(_, _, share)| share.to_share::<S>().ok())
    }

    /// The active share of a key, if any.
    pub fn active_share(&self, key_id: &KeyId) -> Option<KeyShare<S>> {
        self.share(key_id, ShareState::Active)
    }

    /// The pending share of a key, if any.
    pub fn pending_share(&self, key_id: &KeyId) -> Option<KeyShare<S>> {
        self.share(key_id, ShareState::Pending)
    }

    /// Signing sessions holding a live nonce, over all keys.
    pub fn open_signing_sessions(&self) -> usize {
        self.core.as_ref().map_or(0, NodeCore::live_nonces)
    }

    /// Nonces pooled ahead of time for one-round signing, over all keys.
    pub fn pooled_nonces(&self) -> usize {
        self.core.as_ref().map_or(0, NodeCore::pooled_nonces)
    }

    /// Whether a reshare session is recorded on this node's disk.
    pub fn has_reshare_record(&self, session: &SessionId) -> bool {
        self.store().is_some_and(|s| s.has_reshare(session))
    }

    /// Loses everything in memory (sessions, nonces, buffered messages, lazily written audit
    /// entries); keeps the disk; opens a new core on it, which resumes what the disk records.
    pub fn crash_and_restart(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let Some(core) = self.core.take() else {
            return Ok(());
        };
        let (setup, mut store) = core.into_parts();
        store.crash();
        self.core = Some(NodeCore::open(setup, store, now)?);
        Ok(())
    }

    /// An operator's work on the stopped node: the core is taken down, `work` runs on its
    /// store, and a new core opens on it (which resumes what the store still records).
    pub fn operate<R>(
        &mut self,
        now: Timestamp,
        work: impl FnOnce(&mut MemoryNodeStore) -> R,
    ) -> Result<R, StoreError> {
        let core = self
            .core
            .take()
            .ok_or_else(|| StoreError::Unreadable("the node is down".into()))?;
        let (setup, mut store) = core.into_parts();
        let result = work(&mut store);
        self.core = Some(NodeCore::open(setup, store, now)?);
        Ok(result)
    }

    /// Replaces the share a key is signed with (for tests of stale or foreign shares); the
    /// node restarts to pick it up.
    pub fn install_share(
        &mut self,
        share: KeyShare<S>,
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        let stored = StoredShare::from_share(&share)?;
        if let Some(core) = self.core.as_mut() {
            core.store_mut().install_active(stored);
        }
        self.crash_and_restart(now)
            .map_err(|e| ProtocolError::Frost(e.to_string()))
    }
}

/// A coordinator in memory: the production coordinator core over a metadata store in memory,
/// and beside it any sessions a test runs itself (a coordinator that builds its own messages),
/// routed by session id. `core` is `None` while a restart failed.
pub struct SimCoordinator<S: Suite> {
    core: Option<CoordinatorCore<MemoryMetadataStore>>,
    next_request: RequestId,
    /// Sessions a test started itself.
    sessions: BTreeMap<SessionId, Box<dyn Session<S>>>,
    aliases: BTreeMap<SessionId, SessionId>,
    outputs: VecDeque<PartyOutput<S>>,
    /// Keys whose aggregations wait until released ([`SimCoordinator::hold_aggregations`]), as
    /// a worker busy with them would keep them waiting.
    held_keys: BTreeSet<KeyId>,
    /// The aggregations waiting, in order.
    held: Vec<HeldAggregation<S>>,
    /// The time of the latest input.
    now: Timestamp,
}

/// An aggregation the simulated coordinator keeps waiting: of a session a test started, or of
/// the core's.
enum HeldAggregation<S: Suite> {
    Raw(SessionId, Aggregation<S>),
    Core(SessionId, AnyAggregation),
}

impl<S: Suite> HeldAggregation<S> {
    fn key_id(&self) -> &KeyId {
        match self {
            HeldAggregation::Raw(_, a) => a.key_id(),
            HeldAggregation::Core(_, a) => a.key_id(),
        }
    }
}

impl<S: Suite> SimCoordinator<S> {
    /// Moves the outputs of the sessions a test started out; their aggregations run at once
    /// (as a pool with a free worker would run them), unless their key's are held.
    fn collect(&mut self) {
        loop {
            let mut ran = false;
            for (id, session) in self.sessions.iter_mut() {
                while let Some(o) = session.poll_output() {
                    match o {
                        Output::Aggregate(a) if self.held_keys.contains(a.key_id()) => {
                            self.held.push(HeldAggregation::Raw(*id, a));
                        }
                        Output::Aggregate(a) => {
                            session.handle_aggregated(a.run(), self.now);
                            ran = true;
                        }
                        Output::Send { to, message } => {
                            self.outputs.push_back(PartyOutput::Send(to, message))
                        }
                        Output::Event(event) => self.outputs.push_back(PartyOutput::Event(event)),
                    }
                }
            }
            if !ran {
                break;
            }
        }
        self.sessions.retain(|_, s| !s.is_finished());
    }

    /// Keeps every aggregation of signatures with `key` waiting from now on, as a worker busy
    /// with that key would: the rest of the coordinator goes on.
    pub fn hold_aggregations(&mut self, key: &KeyId) {
        self.held_keys.insert(key.clone());
    }

    /// How many aggregations wait.
    pub fn held_aggregations(&self) -> usize {
        self.held.len()
    }

    /// Runs the aggregations of `key` that waited, in order, and runs the key's next ones at
    /// once again. (The network moves what they produce on its next step.)
    pub fn release_aggregations(&mut self, key: &KeyId) {
        self.held_keys.remove(key);
        let (released, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.key_id() == key);
        self.held = kept;
        for held in released {
            match held {
                HeldAggregation::Raw(id, a) => {
                    if let Some(session) = self.sessions.get_mut(&id) {
                        session.handle_aggregated(a.run(), self.now);
                    }
                    self.collect();
                }
                HeldAggregation::Core(id, a) => {
                    if let Some(core) = self.core.as_mut() {
                        core.handle_aggregated(id, a.run(), self.now);
                    }
                }
            }
        }
    }

    /// A member refused the open of `session`.
    fn open_refused(&mut self, from: &NodeId, kind: MessageKind, session: SessionId, reason: &str) {
        if let Some(raw) = self.sessions.get_mut(&session) {
            raw.handle_open_failed(from, OpenFailure::Refused(reason));
            self.collect();
        } else if let Some(core) = self.core.as_mut() {
            core.handle_open_refused(from, kind, session, reason);
        }
    }

    /// A message of `kind` in `session` could not reach `to` (a failed dial).
    fn undelivered(
        &mut self,
        to: &NodeId,
        kind: MessageKind,
        session: SessionId,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) {
        let error = "unreachable (the simulator's fault hook)";
        if let Some(raw) = self.sessions.get_mut(&session) {
            if matches!(kind, MessageKind::DkgOpen | MessageKind::ReshareOpen) {
                raw.handle_open_failed(to, OpenFailure::Unreachable(error));
                self.collect();
            }
        } else if let Some(core) = self.core.as_mut() {
            core.handle_undelivered(to, kind, session, error, now, rng);
        }
    }

    /// The coordinator's core.
    pub fn core(&self) -> Option<&CoordinatorCore<MemoryMetadataStore>> {
        self.core.as_ref()
    }

    /// The coordinator's core, to command it or change its store.
    pub fn core_mut(&mut self) -> Option<&mut CoordinatorCore<MemoryMetadataStore>> {
        self.core.as_mut()
    }

    /// The recorded outcome of a reshare, if concluded: the commit or the abort a member that
    /// asks is sent.
    pub fn outcome(&self, session: &SessionId) -> Option<Message> {
        match self.core.as_ref()?.store().reshare(session).ok()??.state {
            ReshareState::Running => None,
            ReshareState::Committed(commit) => Some(Message::ReshareCommit(commit)),
            ReshareState::Aborted(abort) => Some(Message::ReshareAbort(abort)),
        }
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        let routed = self
            .aliases
            .get(&message.session())
            .copied()
            .unwrap_or(message.session());
        if let Some(session) = self.sessions.get_mut(&routed) {
            let result = session.handle_message(from, message, now, rng);
            self.collect();
            return result;
        }
        match self.core.as_mut() {
            Some(core) => core.handle_message(from, message, now, rng),
            None => Err(ProtocolError::Frost("the coordinator is down".into())),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        for s in self.sessions.values_mut() {
            if s.poll_timeout().is_some_and(|due| due <= now) {
                s.handle_timeout(now);
            }
        }
        self.collect();
        if let Some(core) = self.core.as_mut() {
            if core.poll_timeout().is_some_and(|due| due <= now) {
                core.handle_timeout(now);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.sessions
            .values()
            .filter_map(|s| s.poll_timeout())
            .chain(self.core.as_ref().and_then(CoordinatorCore::poll_timeout))
            .min()
    }

    fn poll_output(&mut self) -> Option<PartyOutput<S>> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        loop {
            return Some(match self.core.as_mut()?.poll_output()? {
                CoordinatorOutput::Transmit { to, message, .. } => PartyOutput::Send(to, message),
                CoordinatorOutput::Done { outcome, .. } => PartyOutput::Event(typed(outcome)),
                CoordinatorOutput::Notice(notice) => PartyOutput::CoordinatorNotice(notice),
                CoordinatorOutput::Aggregate {
                    session,
                    aggregation,
                } => {
                    if self.held_keys.contains(aggregation.key_id()) {
                        self.held.push(HeldAggregation::Core(session, aggregation));
                    } else if let Some(core) = self.core.as_mut() {
                        core.handle_aggregated(session, aggregation.run(), self.now);
                    }
                    continue;
                }
            });
        }
    }
}

/// A coordinator's outcome in `S`'s types, as the simulator's events carry it.
fn typed<S: Suite>(outcome: Outcome) -> Event<S> {
    let frost = |e: frost_core::Error<S>| ProtocolError::Frost(e.to_string());
    let event = match outcome {
        Err(error) => return Event::Failed(error),
        Ok(AnyEvent::KeyCreated {
            key_id,
            committee,
            public_key_package,
            ..
        }) => PublicKeyPackage::<S>::deserialize(&public_key_package)
            .map(|public_key_package| Event::KeyCreated {
                key_id,
                committee,
                public_key_package,
            })
            .map_err(frost),
        Ok(AnyEvent::SignatureReady {
            signature,
            signers,
            culprits,
            passed_over,
        }) => Signature::<S>::deserialize(&signature)
            .map(|signature| Event::SignatureReady {
                signature,
                signers,
                culprits,
                passed_over,
            })
            .map_err(frost),
        Ok(AnyEvent::KeyReshared {
            key_id,
            epoch,
            committee,
            threshold,
            public_key_package,
            excluded,
            certificate,
            ..
        }) => PublicKeyPackage::<S>::deserialize(&public_key_package)
            .map(|public_key_package| Event::KeyReshared {
                key_id,
                epoch,
                committee,
                public_key_package,
                threshold,
                excluded,
                certificate,
            })
            .map_err(frost),
        Ok(other) => Err(ProtocolError::Frost(format!(
            "unexpected outcome {other:?}"
        ))),
    };
    event.unwrap_or_else(Event::Failed)
}

/// Where a party lives in the simulation.
enum Party<S: Suite> {
    Node(Box<SimNode<S>>),
    Coordinator(Box<SimCoordinator<S>>),
}

impl<S: Suite> Party<S> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        match self {
            // Each message is a batch of its own, and the disk in memory syncs at once: the
            // shares it produced are released right after it (a crash between the write and
            // the sync, or while the sync runs, is tested with `hold_syncs` and the store's
            // `hold_sync_ends`).
            Party::Node(n) => match n.core.as_mut() {
                Some(core) => {
                    let result = core.handle_message(from, message, now, rng);
                    if !n.hold_syncs {
                        core.flush();
                        core.sync_ended();
                    }
                    result
                }
                None => Err(ProtocolError::Frost("the node is down".into())),
            },
            Party::Coordinator(c) => c.handle_message(from, message, now, rng),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        match self {
            Party::Node(n) => {
                if let Some(core) = n.core.as_mut() {
                    if core.poll_timeout().is_some_and(|due| due <= now) {
                        core.handle_timeout(now);
                    }
                }
            }
            Party::Coordinator(c) => c.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            Party::Node(n) => n.core.as_ref().and_then(NodeCore::poll_timeout),
            Party::Coordinator(c) => c.poll_timeout(),
        }
    }
}

/// One output of a party, in the simulator's terms.
enum PartyOutput<S: Suite> {
    Send(NodeId, Message),
    Event(Event<S>),
    Notice(NodeNotice),
    CoordinatorNotice(CoordinatorNotice),
}

impl<S: Suite> Party<S> {
    fn poll_output(&mut self) -> Option<PartyOutput<S>> {
        match self {
            Party::Node(n) => match n.core.as_mut()?.poll_output()? {
                NodeOutput::Transmit { to, message } => Some(PartyOutput::Send(to, message)),
                NodeOutput::Notice(notice) => Some(PartyOutput::Notice(notice)),
            },
            Party::Coordinator(c) => c.poll_output(),
        }
    }
}

/// A refused message, as recorded by the network.
#[derive(Clone, Debug)]
pub struct Refused {
    pub at: NodeId,
    pub from: NodeId,
    pub kind: &'static str,
    pub error: ProtocolError,
}

/// The simulated network.
pub struct Network<S: Suite> {
    now: Timestamp,
    rng: ChaCha20Rng,
    identities: BTreeMap<NodeId, Arc<SimIdentity>>,
    parties: BTreeMap<NodeId, Party<S>>,
    in_flight: Vec<InFlight>,
    order: u64,
    /// Delivery latency is drawn uniformly from this range (milliseconds).
    pub latency_ms: (u64, u64),
    /// Deliver in uniformly random order instead of by arrival time.
    pub shuffle: bool,
    faults: Option<FaultHook>,
    /// Nodes that crash right after a notice (once each).
    crashes: BTreeMap<NodeId, CrashHook>,
    /// Every event of a coordinator session, with the coordinator that reported it.
    pub events: Vec<(NodeId, Event<S>)>,
    /// Every notice of a node core, with the node that reported it.
    pub notices: Vec<(NodeId, NodeNotice)>,
    /// Every notice of a coordinator core, with the coordinator that reported it.
    pub coordinator_notices: Vec<(NodeId, CoordinatorNotice)>,
    /// Every refused message.
    pub refused: Vec<Refused>,
    /// Messages delivered so far.
    pub delivered: u64,
}

/// The result of a signature in the simulation.
#[derive(Debug)]
pub struct SignOutcome<S: Suite> {
    pub signature: Signature<S>,
    pub signers: Vec<NodeId>,
    pub culprits: Vec<NodeId>,
    /// Members ROAST went on without, other than culprits, each with why.
    pub passed_over: Vec<(NodeId, String)>,
}

impl<S: Suite> Network<S> {
    pub fn new(seed: u64) -> Self {
        Network {
            now: Timestamp(0),
            rng: ChaCha20Rng::seed_from_u64(seed),
            identities: BTreeMap::new(),
            parties: BTreeMap::new(),
            in_flight: Vec::new(),
            order: 0,
            latency_ms: (1, 20),
            shuffle: false,
            faults: None,
            crashes: BTreeMap::new(),
            events: Vec::new(),
            notices: Vec::new(),
            coordinator_notices: Vec::new(),
            refused: Vec::new(),
            delivered: 0,
        }
    }

    /// A network with `n` signer nodes and one coordinator: (nodes sorted, coordinator).
    pub fn with_nodes(seed: u64, n: usize) -> (Self, Vec<NodeId>, NodeId) {
        let mut net = Network::new(seed);
        let mut nodes: Vec<NodeId> = (0..n).map(|_| net.add_node()).collect();
        nodes.sort();
        let coordinator = net.add_coordinator();
        (net, nodes, coordinator)
    }

    fn new_identity(&mut self) -> Arc<SimIdentity> {
        let identity = Arc::new(SimIdentity::generate(&mut self.rng));
        self.identities
            .insert(identity.node_id().clone(), identity.clone());
        identity
    }

    fn coordinator_ids(&self) -> BTreeSet<NodeId> {
        self.parties
            .iter()
            .filter(|(_, p)| matches!(p, Party::Coordinator(_)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Adds a signer node that accepts [`sim_client`] and every coordinator of the network
    /// (those added later too).
    pub fn add_node(&mut self) -> NodeId {
        let identity = self.new_identity();
        let id = identity.node_id().clone();
        let mut nodes: BTreeSet<NodeId> = self
            .parties
            .iter()
            .filter(|(_, p)| matches!(p, Party::Node(_)))
            .map(|(id, _)| id.clone())
            .collect();
        nodes.insert(id.clone());
        let setup = NodeSetup {
            identity,
            verifier: Arc::new(SimVerifier),
            coordinators: self.coordinator_ids(),
            nodes,
            network_id: SIM_NETWORK_ID.to_owned(),
            clients: sim_client_policy(),
            operators: sim_operator_policy(),
            peer_name: Arc::new(|node: &NodeId| Some(node.to_string())),
        };
        // An empty store cannot fail to open.
        let core = NodeCore::open(setup, MemoryNodeStore::new(), self.now).ok();
        for party in self.parties.values_mut() {
            match party {
                Party::Coordinator(c) => {
                    if let Some(core) = c.core.as_mut() {
                        core.add_node(id.clone(), id.to_string());
                    }
                }
                Party::Node(n) => {
                    if let Some(core) = n.core.as_mut() {
                        core.add_node(id.clone());
                    }
                }
            }
        }
        self.parties.insert(
            id.clone(),
            Party::Node(Box::new(SimNode {
                core,
                hold_syncs: false,
                _suite: PhantomData,
            })),
        );
        self.pump();
        id
    }

    pub fn add_coordinator(&mut self) -> NodeId {
        let id = self.new_identity().node_id().clone();
        for party in self.parties.values_mut() {
            if let Party::Node(n) = party {
                if let Some(core) = n.core.as_mut() {
                    core.add_coordinator(id.clone());
                }
            }
        }
        let nodes = self
            .parties
            .iter()
            .filter(|(_, p)| matches!(p, Party::Node(_)))
            .map(|(id, _)| (id.clone(), id.to_string()))
            .collect();
        let setup = CoordinatorSetup {
            verifier: Arc::new(SimVerifier),
            nodes,
            network_id: SIM_NETWORK_ID.into(),
            gateway_operator: Some(Arc::new(sim_operator())),
        };
        // An empty store cannot fail to open.
        let core = CoordinatorCore::open(setup, MemoryMetadataStore::new()).ok();
        self.parties.insert(
            id.clone(),
            Party::Coordinator(Box::new(SimCoordinator {
                core,
                next_request: 0,
                sessions: BTreeMap::new(),
                aliases: BTreeMap::new(),
                outputs: VecDeque::new(),
                held_keys: BTreeSet::new(),
                held: Vec::new(),
                now: Timestamp(0),
            })),
        );
        id
    }

    /// Removes `node` from every party's network file: it is stopped, and no party counts it as
    /// a signer node any more.
    pub fn delist(&mut self, node: &NodeId) {
        self.parties.remove(node);
        for party in self.parties.values_mut() {
            match party {
                Party::Coordinator(c) => {
                    if let Some(core) = c.core.as_mut() {
                        core.remove_node(node);
                    }
                }
                Party::Node(n) => {
                    if let Some(core) = n.core.as_mut() {
                        core.remove_node(node);
                    }
                }
            }
        }
    }

    /// Restarts coordinator `coordinator`: it loses its memory (every session), keeps its
    /// metadata, and records every reshare it had running as aborted.
    pub fn restart_coordinator(&mut self, coordinator: &NodeId) {
        if let Some(Party::Coordinator(c)) = self.parties.get_mut(coordinator) {
            c.sessions.clear();
            c.aliases.clear();
            c.outputs.clear();
            if let Some(core) = c.core.take() {
                let (setup, store) = core.into_parts();
                c.core = CoordinatorCore::open(setup, store).ok();
            }
        }
        self.pump();
    }

    /// Takes coordinator `coordinator` down for `down` of virtual time (the nodes go on), then
    /// starts it again on its metadata, as [`Network::restart_coordinator`] does.
    pub fn coordinator_down(&mut self, coordinator: &NodeId, down: Duration) {
        let parts = match self.parties.get_mut(coordinator) {
            Some(Party::Coordinator(c)) => {
                c.sessions.clear();
                c.aliases.clear();
                c.outputs.clear();
                c.core.take().map(CoordinatorCore::into_parts)
            }
            _ => None,
        };
        self.advance(down);
        if let (Some(Party::Coordinator(c)), Some((setup, store))) =
            (self.parties.get_mut(coordinator), parts)
        {
            c.core = CoordinatorCore::open(setup, store).ok();
        }
        self.pump();
    }

    /// Sets `key_id`'s rotation policy at `coordinator` (every `every_secs`, approved by
    /// `approvals`, or by the coordinator's gateway operator key if there are none).
    pub fn set_rotation(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        every_secs: u64,
        approvals: Vec<OperatorApproval>,
    ) -> Result<crate::coordinator::RotationPolicy, ProtocolError> {
        let now = self.now;
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        self.coordinator_core(coordinator, |core, _| {
            core.set_rotation(key_id, every_secs, approvals, now, &mut rng)
        })?
    }

    /// `key_id`'s rotation policy at `coordinator`.
    pub fn coordinator_core_policy(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
    ) -> Result<Option<crate::coordinator::RotationPolicy>, ProtocolError> {
        self.coordinator_core(coordinator, |core, _| core.rotation(key_id))?
    }

    /// Removes `key_id`'s rotation policy at `coordinator`; whether it had one.
    pub fn clear_rotation(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
    ) -> Result<bool, ProtocolError> {
        self.coordinator_core(coordinator, |core, _| core.clear_rotation(key_id))?
    }

    /// Signature shares produced, by `node` or by every node: counted from the nodes' notices,
    /// each written after its audit entry was durable.
    pub fn shares_produced(&self, node: Option<&NodeId>) -> usize {
        self.notices
            .iter()
            .filter(|(n, e)| {
                node.is_none_or(|node| n == node) && matches!(e, NodeNotice::ShareProduced { .. })
            })
            .count()
    }

    /// A party's identity key (to forge or re-sign messages in fault tests).
    pub fn identity(&self, node: &NodeId) -> Option<Arc<SimIdentity>> {
        self.identities.get(node).cloned()
    }

    pub fn node(&self, node: &NodeId) -> Option<&SimNode<S>> {
        match self.parties.get(node) {
            Some(Party::Node(n)) => Some(n),
            _ => None,
        }
    }

    pub fn node_mut(&mut self, node: &NodeId) -> Option<&mut SimNode<S>> {
        match self.parties.get_mut(node) {
            Some(Party::Node(n)) => Some(n),
            _ => None,
        }
    }

    /// Replaces the client keys and clock skew `node` applies from now on
    /// ([`NodeCore::set_client_policy`]); nothing changes for a node that is down or unknown.
    pub fn set_client_policy(
        &mut self,
        node: &NodeId,
        policy: ClientPolicy,
    ) -> Result<(), StoreError> {
        let now = self.now;
        match self.node_mut(node).and_then(SimNode::core_mut) {
            Some(core) => core.set_client_policy(policy, now),
            None => Ok(()),
        }
    }

    /// Replaces the operator keys, floors and clock skew `node` applies from now on
    /// ([`NodeCore::set_operator_policy`]); nothing changes for a node that is down or unknown.
    pub fn set_operator_policy(
        &mut self,
        node: &NodeId,
        policy: OperatorPolicy,
    ) -> Result<(), StoreError> {
        let now = self.now;
        match self.node_mut(node).and_then(SimNode::core_mut) {
            Some(core) => core.set_operator_policy(policy, now),
            None => Ok(()),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    pub fn set_faults(&mut self, hook: impl FnMut(&Envelope) -> Fault + 'static) {
        self.faults = Some(Box::new(hook));
    }

    pub fn clear_faults(&mut self) {
        self.faults = None;
    }

    /// Starts a coordinator session and queues its first messages.
    pub fn start(&mut self, coordinator: &NodeId, session: Box<dyn Session<S>>, id: SessionId) {
        if let Some(Party::Coordinator(c)) = self.parties.get_mut(coordinator) {
            c.sessions.insert(id, session);
            c.collect();
        }
        self.pump();
    }

    /// Moves every party's outputs into the network (through the fault hook).
    fn pump(&mut self) {
        let ids: Vec<NodeId> = self.parties.keys().cloned().collect();
        for id in ids {
            while let Some(output) = self.parties.get_mut(&id).and_then(Party::poll_output) {
                match output {
                    PartyOutput::Send(to, message) => self.send(id.clone(), to, message),
                    PartyOutput::Event(event) => self.events.push((id.clone(), event)),
                    PartyOutput::CoordinatorNotice(notice) => {
                        self.coordinator_notices.push((id.clone(), notice))
                    }
                    PartyOutput::Notice(notice) => {
                        let crash = self.crashes.get_mut(&id).is_some_and(|hook| hook(&notice));
                        self.notices.push((id.clone(), notice));
                        if crash {
                            self.crashes.remove(&id);
                            self.crash_now(&id);
                        }
                    }
                }
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        let envelope = Envelope { from, to, message };
        let fault = match &mut self.faults {
            Some(hook) => hook(&envelope),
            None => Fault::Deliver,
        };
        let Envelope { from, to, message } = envelope;
        let (frames, extra_delay) = match fault {
            Fault::Drop => return,
            Fault::Unreachable => {
                let (kind, session) = (message.kind(), message.session());
                let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
                if let Some(Party::Coordinator(c)) = self.parties.get_mut(&from) {
                    c.undelivered(&to, kind, session, self.now, &mut rng);
                }
                return;
            }
            Fault::Deliver => (vec![encode(&message)], 0),
            Fault::Duplicate => (vec![encode(&message), encode(&message)], 0),
            Fault::Delay(d) => (vec![encode(&message)], d.as_millis() as u64),
            Fault::Replace(m) => (vec![encode(&m)], 0),
            Fault::ReplaceLater(m, d) => (vec![encode(&m)], d.as_millis() as u64),
            Fault::ReplaceBytes(b) => (vec![Ok(b)], 0),
            Fault::DeliverAlso(m) => (vec![encode(&message), encode(&m)], 0),
        };
        for frame in frames {
            let Ok(frame) = frame else { continue };
            let (lo, hi) = self.latency_ms;
            let latency = lo + self.rng.next_u64() % (hi.saturating_sub(lo) + 1);
            self.order += 1;
            self.in_flight.push(InFlight {
                deliver_at: Timestamp(self.now.0 + latency + extra_delay),
                order: self.order,
                from: from.clone(),
                to: to.clone(),
                frame,
            });
        }
    }

    /// Routes messages of session `alias` at `coordinator` to its session `target`.
    pub fn alias(&mut self, coordinator: &NodeId, alias: SessionId, target: SessionId) {
        if let Some(Party::Coordinator(c)) = self.parties.get_mut(coordinator) {
            c.aliases.insert(alias, target);
        }
    }

    /// Runs a whole reshare and returns the new public key package, or the coordinator's
    /// error.
    pub fn run_reshare(
        &mut self,
        coordinator: &NodeId,
        proposal: permafrost_wire::ReshareProposal,
    ) -> Result<PublicKeyPackage<S>, ProtocolError> {
        let mark = self.events.len();
        self.start_reshare(coordinator, proposal)?;
        self.finish_reshare(coordinator, mark)
    }

    /// Opens a reshare at `coordinator`'s core without running it; returns its session id.
    /// It carries no approvals: the coordinator's gateway operator key approves it.
    pub fn start_reshare(
        &mut self,
        coordinator: &NodeId,
        proposal: permafrost_wire::ReshareProposal,
    ) -> Result<SessionId, ProtocolError> {
        self.start_reshare_approved(coordinator, proposal, Vec::new())
    }

    /// [`start_reshare`](Self::start_reshare) carrying `approvals`.
    pub fn start_reshare_approved(
        &mut self,
        coordinator: &NodeId,
        proposal: permafrost_wire::ReshareProposal,
        approvals: Vec<OperatorApproval>,
    ) -> Result<SessionId, ProtocolError> {
        let now = self.now;
        let mark = self.events.len();
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let session = self.coordinator_core(coordinator, |core, request| {
            core.reshare_with(request, proposal, approvals, now, &mut rng)
        })?;
        self.pump();
        match session {
            Some(session) => Ok(session),
            None => Err(match self.coordinator_result(coordinator, mark) {
                Some(Event::Failed(e)) => e.clone(),
                _ => ProtocolError::Frost("the reshare did not start".into()),
            }),
        }
    }

    /// Runs `f` on `coordinator`'s core with a fresh request id.
    fn coordinator_core<R>(
        &mut self,
        coordinator: &NodeId,
        f: impl FnOnce(&mut CoordinatorCore<MemoryMetadataStore>, RequestId) -> R,
    ) -> Result<R, ProtocolError> {
        let Some(Party::Coordinator(c)) = self.parties.get_mut(coordinator) else {
            return Err(ProtocolError::Frost(format!(
                "{coordinator} is no coordinator"
            )));
        };
        let request = c.request();
        let core = c
            .core
            .as_mut()
            .ok_or_else(|| ProtocolError::Frost("the coordinator is down".into()))?;
        Ok(f(core, request))
    }

    /// Runs the reshare started after event index `mark` to its end (and lets the certificate
    /// reach every member); returns the new public key package or the coordinator's error.
    pub fn finish_reshare(
        &mut self,
        coordinator: &NodeId,
        mark: usize,
    ) -> Result<PublicKeyPackage<S>, ProtocolError> {
        let finished = |net: &Self| {
            net.events[mark..].iter().any(|(n, e)| {
                n == coordinator && matches!(e, Event::KeyReshared { .. } | Event::Failed(_))
            })
        };
        self.run_until(deadlines::RESHARE * 2, finished);
        // Let the certificate reach every member.
        self.run(Duration::from_secs(1));
        let outcome = self.events[mark..].iter().find_map(|(n, e)| match e {
            Event::KeyReshared {
                public_key_package, ..
            } if n == coordinator => Some(Ok(public_key_package.clone())),
            Event::Failed(err) if n == coordinator => Some(Err(err.clone())),
            _ => None,
        });
        outcome.unwrap_or_else(|| Err(ProtocolError::Frost("reshare did not finish".into())))
    }

    /// Crashes `node` right after the first notice that `when` accepts, before anything the
    /// node queued after that notice leaves it (for a write, before anything that depended on
    /// it), and restarts it at once on its store.
    pub fn crash_on(&mut self, node: &NodeId, when: impl FnMut(&NodeNotice) -> bool + 'static) {
        self.crashes.insert(node.clone(), Box::new(when));
    }

    /// Crashes node `node` (it loses its memory, keeps its disk) and restarts it at once.
    pub fn crash_and_restart(&mut self, node: &NodeId) {
        self.crash_now(node);
        self.pump();
    }

    /// Crashes `node` and restarts it, dropping what it had not sent yet.
    fn crash_now(&mut self, node: &NodeId) {
        let now = self.now;
        if let Some(Party::Node(n)) = self.parties.get_mut(node) {
            if let Err(error) = n.crash_and_restart(now) {
                self.notices.push((
                    node.clone(),
                    NodeNotice::StoreFailed {
                        operation: "reopening after a crash",
                        key_id: None,
                        error,
                    },
                ));
            }
        }
    }

    /// The coordinator party, to inspect what it recorded.
    pub fn coordinator(&self, coordinator: &NodeId) -> Option<&SimCoordinator<S>> {
        match self.parties.get(coordinator) {
            Some(Party::Coordinator(c)) => Some(c),
            _ => None,
        }
    }

    /// The coordinator party, to command its core or change its store.
    pub fn coordinator_mut(&mut self, coordinator: &NodeId) -> Option<&mut SimCoordinator<S>> {
        match self.parties.get_mut(coordinator) {
            Some(Party::Coordinator(c)) => Some(c),
            _ => None,
        }
    }

    /// Puts a message on the wire from `from` to `to`, as a (possibly malicious) party would.
    pub fn inject(&mut self, from: &NodeId, to: &NodeId, message: Message) {
        let frame = match encode(&message) {
            Ok(f) => f,
            Err(_) => return,
        };
        self.order += 1;
        self.in_flight.push(InFlight {
            deliver_at: self.now,
            order: self.order,
            from: from.clone(),
            to: to.clone(),
            frame,
        });
    }

    /// Delivers one message, or advances time to the next deadline. Returns false when nothing
    /// is left to do before `until`.
    pub fn step(&mut self, until: Timestamp) -> bool {
        self.pump();
        if !self.in_flight.is_empty() {
            let index = if self.shuffle {
                (self.rng.next_u64() % self.in_flight.len() as u64) as usize
            } else {
                let mut best = 0;
                for (i, m) in self.in_flight.iter().enumerate() {
                    let b = &self.in_flight[best];
                    if (m.deliver_at, m.order) < (b.deliver_at, b.order) {
                        best = i;
                    }
                }
                best
            };
            let m = self.in_flight.swap_remove(index);
            if m.deliver_at > until {
                self.in_flight.push(m);
            } else {
                self.now = self.now.max(m.deliver_at);
                self.deliver(m);
                self.pump();
                return true;
            }
        }
        let next = self
            .parties
            .values_mut()
            .filter_map(|p| p.poll_timeout())
            .chain(self.in_flight.iter().map(|m| m.deliver_at))
            .min();
        match next {
            Some(t) if t <= until => {
                self.now = self.now.max(t);
                let now = self.now;
                for p in self.parties.values_mut() {
                    p.handle_timeout(now);
                }
                self.pump();
                true
            }
            _ => false,
        }
    }

    fn deliver(&mut self, m: InFlight) {
        self.delivered += 1;
        let now = self.now;
        let Some(party) = self.parties.get_mut(&m.to) else {
            return;
        };
        let mut open_refused = None;
        let result = decode(&m.frame)
            .map_err(ProtocolError::from)
            .and_then(|message| {
                let (kind, session) = (message.kind(), message.session());
                party
                    .handle_message(&m.from, message, now, &mut self.rng)
                    .inspect_err(|e| {
                        self.refused.push(Refused {
                            at: m.to.clone(),
                            from: m.from.clone(),
                            kind: kind.name(),
                            error: e.clone(),
                        });
                        open_refused = Some((kind, session, e.to_string()));
                    })
            });
        // The sender hears the refusal, as over the network (the answer to its request).
        if let (Some((kind, session, reason)), Some(Party::Coordinator(c))) =
            (open_refused, self.parties.get_mut(&m.from))
        {
            c.open_refused(&m.to, kind, session, &reason);
        }
        if let Err(error @ ProtocolError::Wire(_)) = result {
            self.refused.push(Refused {
                at: m.to,
                from: m.from,
                kind: "frame",
                error,
            });
        }
    }

    /// Runs until `done` says so or nothing is left to do within `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let until = self.now.after(limit);
        while !done(self) && self.step(until) {}
    }

    /// Runs for `by` of virtual time: everything due happens, and the clock then reads
    /// `now + by` even if the network fell idle earlier.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now.after(by);
        self.run(by);
        self.now = self.now.max(until);
    }

    /// Runs until nothing is in flight and no deadline is due within `limit`.
    pub fn run(&mut self, limit: Duration) {
        self.run_until(limit, |_| false);
    }

    /// The last terminal event of a coordinator session, if it ended.
    fn coordinator_result(&self, coordinator: &NodeId, from_index: usize) -> Option<&Event<S>> {
        self.events[from_index..]
            .iter()
            .filter(|(id, _)| id == coordinator)
            .map(|(_, e)| e)
            .find(|e| {
                matches!(
                    e,
                    Event::KeyCreated { .. } | Event::SignatureReady { .. } | Event::Failed(_)
                )
            })
    }

    /// Runs a whole DKG through `coordinator`'s core and returns the public key package, or
    /// the coordinator's error. It carries no approvals: the coordinator's gateway operator key
    /// approves it.
    pub fn run_dkg(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        threshold: u16,
        committee: &[NodeId],
    ) -> Result<PublicKeyPackage<S>, ProtocolError> {
        self.run_dkg_approved(coordinator, key_id, threshold, committee, Vec::new())
    }

    /// [`run_dkg`](Self::run_dkg) carrying `approvals`.
    pub fn run_dkg_approved(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        threshold: u16,
        committee: &[NodeId],
        approvals: Vec<OperatorApproval>,
    ) -> Result<PublicKeyPackage<S>, ProtocolError> {
        let mark = self.events.len();
        let (now, committee) = (self.now, committee.to_vec());
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        self.coordinator_core(coordinator, |core, request| {
            core.create_key(
                request,
                S::CURVE,
                key_id.clone(),
                threshold,
                committee,
                approvals,
                now,
                &mut rng,
            )
        })?;
        self.run_until(deadlines::DKG * 2, |net| {
            net.coordinator_result(coordinator, mark).is_some()
        });
        // Let the commit reach the members.
        self.run(Duration::from_secs(1));
        match self.coordinator_result(coordinator, mark) {
            Some(Event::KeyCreated {
                public_key_package, ..
            }) => Ok(public_key_package.clone()),
            Some(Event::Failed(e)) => Err(e.clone()),
            _ => Err(ProtocolError::Frost("DKG did not finish".into())),
        }
    }

    /// `operator`'s approval of `action` on the simulated network now (a fresh request id).
    pub fn approve(&mut self, operator: &SigningKey, action: &LifecycleAction) -> OperatorApproval {
        let mut request_id = [0u8; 16];
        self.rng.fill_bytes(&mut request_id);
        OperatorApproval::sign(operator, SIM_NETWORK_ID, action, request_id, self.now.0)
    }

    /// [`sim_client`]'s approval of signing `message` with `key_id` (whose public key package
    /// is `public_key_package`) on this network ([`SIM_NETWORK_ID`]) now, with a fresh request
    /// id.
    pub fn authorize(
        &mut self,
        key_id: &KeyId,
        public_key_package: &PublicKeyPackage<S>,
        message: &[u8],
    ) -> ClientAuthorization {
        self.authorize_path(key_id, public_key_package, &DerivationPath::ROOT, message)
    }

    /// [`Network::authorize`] for the child key at `path`.
    pub fn authorize_path(
        &mut self,
        key_id: &KeyId,
        public_key_package: &PublicKeyPackage<S>,
        path: &DerivationPath,
        message: &[u8],
    ) -> ClientAuthorization {
        // A public key package that was deserialized or made by a DKG always serializes.
        let group_key = public_key_package
            .verifying_key()
            .serialize()
            .unwrap_or_default();
        let target = ApprovalTarget {
            network_id: SIM_NETWORK_ID,
            group_key: &group_key,
            key_id,
            path,
        };
        self.authorize_for(&target, message)
    }

    /// [`sim_client`]'s approval of signing `message` for `target` (any network id, group key
    /// and key id) now, with a fresh request id.
    pub fn authorize_for(
        &mut self,
        target: &ApprovalTarget<'_>,
        message: &[u8],
    ) -> ClientAuthorization {
        let mut request_id = [0u8; 16];
        self.rng.fill_bytes(&mut request_id);
        ClientAuthorization::sign(&sim_client(), target, message, request_id, self.now.0)
    }

    /// Runs one signing session over `committee` and returns the signature.
    pub fn sign(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        epoch: Epoch,
        public_key_package: &PublicKeyPackage<S>,
        committee: &[NodeId],
        message: &[u8],
    ) -> Result<SignOutcome<S>, ProtocolError> {
        let mut session = [0u8; 32];
        self.rng.fill_bytes(&mut session);
        let client = Some(self.authorize(key_id, public_key_package, message));
        let session = SigningCoordinator::<S>::new(
            SessionId(session),
            key_id.clone(),
            epoch,
            message.to_vec(),
            client,
            public_key_package.clone(),
            committee.to_vec(),
            self.now,
            DEFAULT_SIGN_TIMEOUT,
        )?;
        let id = session.session();
        self.run_signing(coordinator, Box::new(session), id, DEFAULT_SIGN_TIMEOUT)
    }

    /// Runs one ROAST request over `committee` and returns the signature (with the culprits
    /// ROAST excluded on the way).
    pub fn sign_roast(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        epoch: Epoch,
        public_key_package: &PublicKeyPackage<S>,
        committee: &[NodeId],
        message: &[u8],
    ) -> Result<SignOutcome<S>, ProtocolError> {
        let client = self.authorize(key_id, public_key_package, message);
        self.sign_roast_as(
            coordinator,
            key_id,
            epoch,
            public_key_package,
            committee,
            message,
            client,
        )
    }

    /// [`Network::sign_roast`] with the child key at `path`, approved by [`sim_client`] for
    /// that path.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_roast_at(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        epoch: Epoch,
        public_key_package: &PublicKeyPackage<S>,
        committee: &[NodeId],
        path: &DerivationPath,
        message: &[u8],
    ) -> Result<SignOutcome<S>, ProtocolError> {
        let client = self.authorize_path(key_id, public_key_package, path, message);
        self.sign_roast_path_as(
            coordinator,
            key_id,
            epoch,
            public_key_package,
            committee,
            path,
            message,
            client,
        )
    }

    /// [`Network::sign_roast`] with the request carrying `client` as its authorization, as a
    /// (possibly malicious) coordinator may build it.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_roast_as(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        epoch: Epoch,
        public_key_package: &PublicKeyPackage<S>,
        committee: &[NodeId],
        message: &[u8],
        client: ClientAuthorization,
    ) -> Result<SignOutcome<S>, ProtocolError> {
        self.sign_roast_path_as(
            coordinator,
            key_id,
            epoch,
            public_key_package,
            committee,
            &DerivationPath::ROOT,
            message,
            client,
        )
    }

    /// [`Network::sign_roast_as`] for the child key at `path`: the coordinator asks for that
    /// child, whatever `client` approved.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_roast_path_as(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        epoch: Epoch,
        public_key_package: &PublicKeyPackage<S>,
        committee: &[NodeId],
        path: &DerivationPath,
        message: &[u8],
        client: ClientAuthorization,
    ) -> Result<SignOutcome<S>, ProtocolError> {
        let mark = self.start_sign_roast(
            coordinator,
            key_id,
            epoch,
            public_key_package,
            committee,
            path,
            message,
            client,
        )?;
        self.signing_result(coordinator, mark, deadlines::SIGNING)
    }

    /// Gives the coordinator core a signing request, as [`Network::sign_roast_path_as`] does,
    /// without running the network: returns the index of the events its outcome comes after.
    #[allow(clippy::too_many_arguments)]
    pub fn start_sign_roast(
        &mut self,
        coordinator: &NodeId,
        key_id: &KeyId,
        epoch: Epoch,
        public_key_package: &PublicKeyPackage<S>,
        committee: &[NodeId],
        path: &DerivationPath,
        message: &[u8],
        client: ClientAuthorization,
    ) -> Result<usize, ProtocolError> {
        let key = KeyMeta {
            key_id: key_id.clone(),
            curve: S::CURVE,
            threshold: public_key_package.min_signers().unwrap_or(0),
            committee: committee.to_vec(),
            nodes: committee.iter().map(ToString::to_string).collect(),
            public_key: public_key_package
                .verifying_key()
                .serialize()
                .map_err(|e| ProtocolError::Frost(e.to_string()))?,
            public_key_package: public_key_package
                .serialize()
                .map_err(|e| ProtocolError::Frost(e.to_string()))?,
            epoch,
        };
        let mark = self.events.len();
        let (now, message, path) = (self.now, message.to_vec(), path.clone());
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        self.coordinator_core(coordinator, |core, request| {
            core.sign(
                request,
                &key,
                message,
                path,
                Some(client),
                key.committee.clone(),
                now,
                &mut rng,
            )
        })?;
        Ok(mark)
    }

    /// Starts a signing session at `coordinator` and runs until it ends.
    pub fn run_signing(
        &mut self,
        coordinator: &NodeId,
        session: Box<dyn Session<S>>,
        id: SessionId,
        timeout: Duration,
    ) -> Result<SignOutcome<S>, ProtocolError> {
        let mark = self.events.len();
        self.start(coordinator, session, id);
        self.signing_result(coordinator, mark, timeout)
    }

    /// Runs until the signing session `coordinator` started after event index `mark` ends.
    fn signing_result(
        &mut self,
        coordinator: &NodeId,
        mark: usize,
        timeout: Duration,
    ) -> Result<SignOutcome<S>, ProtocolError> {
        self.run_until(timeout * 2, |net| {
            net.coordinator_result(coordinator, mark).is_some()
        });
        match self.coordinator_result(coordinator, mark) {
            Some(Event::SignatureReady {
                signature,
                signers,
                culprits,
                passed_over,
            }) => Ok(SignOutcome {
                signature: *signature,
                signers: signers.clone(),
                culprits: culprits.clone(),
                passed_over: passed_over.clone(),
            }),
            Some(Event::Failed(e)) => Err(e.clone()),
            _ => Err(ProtocolError::Frost("signing did not finish".into())),
        }
    }
}
