//! The coordinator's core: every rule the coordinator applies above the protocol sessions,
//! sans-IO, over a [`MetadataStore`].
//!
//! Requests come in as commands ([`CoordinatorCore::create_key`], [`CoordinatorCore::sign`],
//! [`CoordinatorCore::reshare`]), each under a [`RequestId`] the caller picks; the nodes'
//! messages through [`CoordinatorCore::handle_message`]; failed deliveries through
//! [`CoordinatorCore::handle_undelivered`]; time through [`CoordinatorCore::handle_timeout`].
//! Out of [`CoordinatorCore::poll_output`] come, in order, the messages to send, the answer to
//! each request, and notices for the log. The core records a new key before its commit is sent
//! and a reshare's commit before its certificate is sent; a DKG's or a reshare's answer is to be
//! given once the commit's deliveries ended ([`CoordinatorOutput::Done::after_deliveries`]), so
//! that a member stopped right after the answer has the new epoch in force.

mod pools;
mod preference;
mod reshare;
mod rotation;
mod store;

pub use pools::{MAX_POOLED, POOL_BATCH, POOL_TARGET};
pub use rotation::ROTATION_REQUEST;
pub use store::{
    KeyMeta, MemoryMetadataStore, MetadataError, MetadataStore, ReshareEntry, ReshareState,
    RotationPolicy,
};

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use permafrost_protocol::sign::PooledCommitment;
use permafrost_protocol::{IdentityVerifier, OpenFailure, ProtocolError, Refusal, Timestamp};
use permafrost_wire::{
    ClientAuthorization, Curve, DerivationPath, Digest, Epoch, KeyId, LifecycleAction,
    LifecycleKind, Message, MessageKind, NodeId, OperatorApproval, SessionId, SignRefusal,
};
use rand_core::CryptoRngCore;

use crate::any::{self, AnyEvent, AnyOutput};
use crate::sessions::{Handled, Route, Sessions};
use pools::CommitmentPools;
use preference::SignerPreference;

/// The caller's name for a request, echoed in its answer.
pub type RequestId = u64;

/// The outcome of a request: the session's final event, or why it failed (naming culprits).
pub type Outcome = Result<AnyEvent, ProtocolError>;

/// What a coordinator core is: who the signer nodes are, and how it checks their signatures.
#[derive(Clone)]
pub struct CoordinatorSetup {
    /// Verifies the nodes' identity signatures.
    pub verifier: Arc<dyn IdentityVerifier>,
    /// Every signer node, with its name. Only these may send the coordinator protocol messages.
    pub nodes: BTreeMap<NodeId, String>,
    /// The network id (operator approvals are made for it).
    pub network_id: String,
    /// The gateway operator key: approves a DKG or reshare asked for without approvals. Nodes
    /// accept it only if their config lists it (the same trust decision as the gateway client
    /// key for signing).
    pub gateway_operator: Option<Arc<ed25519_dalek::SigningKey>>,
}

/// What the core wants done, in order.
#[derive(Debug)]
pub enum CoordinatorOutput {
    /// Send `message` to `to` for `session`.
    Transmit {
        /// The recipient.
        to: NodeId,
        /// The message.
        message: Message,
        /// The session it belongs to.
        session: SessionId,
        /// Whether the deliveries of this session's messages are waited for before its answer
        /// (DKG and reshare sessions).
        tracked: bool,
    },
    /// A session ended: the answer to its request, if a request still waits for it.
    Done {
        /// The request (`None` if its caller gave up).
        request: Option<RequestId>,
        /// How.
        outcome: Outcome,
        /// Answer only once every message this session sent was answered or failed (a DKG's
        /// or a reshare's commit): the new epoch is then in force on every member reached.
        after_deliveries: Option<SessionId>,
    },
    /// Run `aggregation` (off the loop: on a worker pool, taking keys in turn) and hand its
    /// result back with [`CoordinatorCore::handle_aggregated`]. The session's deadline runs
    /// meanwhile; a result that never comes back fails the request at that deadline.
    Aggregate {
        /// The session it belongs to.
        session: SessionId,
        /// The arithmetic.
        aggregation: any::AnyAggregation,
    },
    /// Something an operator should be able to see.
    Notice(CoordinatorNotice),
}

/// Something that happened on the coordinator.
#[derive(Debug)]
#[non_exhaustive]
pub enum CoordinatorNotice {
    /// A session was opened for a request: the shell ties the request's own id (the HTTP
    /// request id) to the session id every node logs.
    SessionOpened {
        /// The request.
        request: RequestId,
        /// The session.
        session: SessionId,
        /// What it is: `"dkg"`, `"signing"` or `"reshare"`.
        purpose: &'static str,
    },
    /// A key was created and recorded.
    KeyCreated {
        /// The key.
        key_id: KeyId,
        /// Its committee's names.
        nodes: Vec<String>,
    },
    /// A reshare started (recorded as running).
    ReshareStarted {
        /// The key.
        key_id: KeyId,
        /// The epoch reshared.
        epoch: Epoch,
        /// The attempt.
        attempt: u32,
        /// The session.
        session: SessionId,
    },
    /// A reshare committed (recorded before its certificate was sent).
    ReshareCommitted {
        /// The key.
        key_id: KeyId,
        /// The new epoch.
        epoch: Epoch,
        /// The new committee's names.
        nodes: Vec<String>,
    },
    /// A reshare aborted (recorded).
    ReshareAborted {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
        /// Why.
        error: ProtocolError,
    },
    /// A reshare a previous run left running was recorded as aborted at start.
    ReshareAbortedAtStart {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
    },
    /// A member asked what became of a reshare and was sent its recorded outcome again.
    ReshareOutcomeResent {
        /// The member.
        to: NodeId,
        /// The session.
        session: SessionId,
    },
    /// A scheduled rotation (a refresh under the key's rotation policy) started.
    RotationStarted {
        /// The key.
        key_id: KeyId,
        /// The reshare's session.
        session: SessionId,
    },
    /// A scheduled rotation could not start, or failed; the next is due an interval after
    /// it was due.
    RotationFailed {
        /// The key.
        key_id: KeyId,
        /// Why.
        error: ProtocolError,
    },
    /// A write failed; what depended on it was not done.
    StoreFailed {
        /// What was being written.
        operation: &'static str,
        /// The session concerned.
        session: SessionId,
        /// The store's error.
        error: String,
    },
}

impl CoordinatorNotice {
    /// Whether an operator must look.
    pub fn is_error(&self) -> bool {
        matches!(self, CoordinatorNotice::StoreFailed { .. })
    }

    /// Whether it is worth a warning.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            CoordinatorNotice::ReshareAborted { .. }
                | CoordinatorNotice::ReshareAbortedAtStart { .. }
                | CoordinatorNotice::RotationFailed { .. }
        )
    }

    /// Whether it is routine, once per signature (logged at DEBUG, not INFO).
    pub fn is_routine(&self) -> bool {
        matches!(self, CoordinatorNotice::SessionOpened { .. })
    }

    /// The session it concerns, if it concerns one.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            CoordinatorNotice::SessionOpened { session, .. }
            | CoordinatorNotice::ReshareStarted { session, .. }
            | CoordinatorNotice::ReshareAborted { session, .. }
            | CoordinatorNotice::ReshareAbortedAtStart { session, .. }
            | CoordinatorNotice::ReshareOutcomeResent { session, .. }
            | CoordinatorNotice::RotationStarted { session, .. }
            | CoordinatorNotice::StoreFailed { session, .. } => Some(*session),
            CoordinatorNotice::KeyCreated { .. }
            | CoordinatorNotice::ReshareCommitted { .. }
            | CoordinatorNotice::RotationFailed { .. } => None,
        }
    }
}

impl std::fmt::Display for CoordinatorNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoordinatorNotice::SessionOpened {
                request,
                session,
                purpose,
            } => write!(
                f,
                "{purpose} session {session} opened for request {request}"
            ),
            CoordinatorNotice::KeyCreated { key_id, nodes } => {
                write!(f, "key {key_id} created on {}", nodes.join(", "))
            }
            CoordinatorNotice::ReshareStarted {
                key_id,
                epoch,
                attempt,
                session,
            } => write!(
                f,
                "key {key_id}: reshare {session} of epoch {epoch} (attempt {attempt}) started"
            ),
            CoordinatorNotice::ReshareCommitted {
                key_id,
                epoch,
                nodes,
            } => write!(
                f,
                "key {key_id}: reshare committed, epoch {epoch} on {}",
                nodes.join(", ")
            ),
            CoordinatorNotice::ReshareAborted {
                key_id,
                session,
                error,
            } => write!(f, "key {key_id}: reshare {session} aborted: {error}"),
            CoordinatorNotice::ReshareAbortedAtStart { key_id, session } => write!(
                f,
                "key {key_id}: reshare {session} left running by a previous run recorded as aborted"
            ),
            CoordinatorNotice::ReshareOutcomeResent { to, session } => {
                write!(
                    f,
                    "reshare {session}: outcome sent again to {to} on request"
                )
            }
            CoordinatorNotice::RotationStarted { key_id, session } => {
                write!(f, "key {key_id}: scheduled rotation {session} started")
            }
            CoordinatorNotice::RotationFailed { key_id, error } => {
                write!(f, "key {key_id}: scheduled rotation failed: {error}")
            }
            CoordinatorNotice::StoreFailed {
                operation,
                session,
                error,
            } => write!(f, "session {session}: cannot write ({operation}): {error}"),
        }
    }
}

/// How the first `t` signers of the signatures so far were asked: in one round (with a
/// pooled commitment of theirs) or in two (their pool was empty), since the core opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignerAsks {
    /// Signers asked in one round.
    pub one_round: u64,
    /// Signers asked in two rounds.
    pub two_round: u64,
}

/// What a running session is, for what is done at its end.
enum Running {
    /// A DKG: its key is recorded before the commit goes.
    Dkg { curve: Curve, threshold: u16 },
    /// A signature.
    Signing,
    /// A reshare: its outcome is recorded before it goes.
    Reshare(Box<reshare::RunningReshare>),
}

/// The coordinator's rules over a metadata store `M`.
pub struct CoordinatorCore<M: MetadataStore> {
    setup: CoordinatorSetup,
    store: M,
    sessions: Sessions,
    /// What each running session is, and the request waiting for it.
    running: BTreeMap<SessionId, (Running, Option<RequestId>)>,
    /// Test-signature session id → its reshare session.
    aliases: BTreeMap<SessionId, SessionId>,
    /// The order in which signatures ask the signers.
    preference: SignerPreference,
    /// Public key packages parsed once per key and epoch.
    parsed: any::ParsedPackages,
    /// Commitments the signers made ahead of time, for one-round signing.
    pools: CommitmentPools,
    /// How the first `t` signers of each signature were asked.
    asks: SignerAsks,
    /// The scheduled rotations running, by session.
    rotating: BTreeMap<SessionId, KeyId>,
    /// When the next scheduled rotation is due (kept in step with the store's policies).
    rotation_due: Option<Timestamp>,
    /// The time of the latest input.
    now: Timestamp,
    outputs: VecDeque<CoordinatorOutput>,
}

impl<M: MetadataStore> CoordinatorCore<M> {
    /// Opens a core on `store`: every reshare a previous run left running is recorded as
    /// aborted (its session died with that run, and it never sent a commit: a commit is sent
    /// only after it is recorded).
    pub fn open(setup: CoordinatorSetup, store: M) -> Result<Self, MetadataError> {
        let mut core = CoordinatorCore {
            setup,
            store,
            sessions: Sessions::new(),
            running: BTreeMap::new(),
            aliases: BTreeMap::new(),
            preference: SignerPreference::default(),
            parsed: any::ParsedPackages::default(),
            pools: CommitmentPools::default(),
            asks: SignerAsks::default(),
            rotating: BTreeMap::new(),
            rotation_due: None,
            now: Timestamp(0),
            outputs: VecDeque::new(),
        };
        core.abort_unfinished_reshares()?;
        core.rotation_due = core.next_rotation();
        Ok(core)
    }

    /// The store.
    pub fn store(&self) -> &M {
        &self.store
    }

    /// The store, to change it behind the core's back (tests: injected failures).
    pub fn store_mut(&mut self) -> &mut M {
        &mut self.store
    }

    /// Ends the core (a crash or a shutdown), handing back its store.
    pub fn into_parts(self) -> (CoordinatorSetup, M) {
        (self.setup, self.store)
    }

    /// Takes messages from `node` too, named `name`.
    pub fn add_node(&mut self, node: NodeId, name: String) {
        self.setup.nodes.insert(node, name);
    }

    /// No longer counts `node` as a signer node (it was removed from the network file).
    pub fn remove_node(&mut self, node: &NodeId) {
        self.setup.nodes.remove(node);
        self.preference.forget(node);
        self.pools.forget_node(node);
    }

    /// The commitments pooled for each node (over every key and epoch), for one-round
    /// signing.
    pub fn pooled_commitments(&self) -> &BTreeMap<NodeId, usize> {
        self.pools.depths()
    }

    /// How the first `t` signers of every signature so far were asked.
    pub fn signer_asks(&self) -> SignerAsks {
        self.asks
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<CoordinatorOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [self.sessions.next_deadline(), self.rotation_due]
            .into_iter()
            .flatten()
            .min()
    }

    /// Lets time pass for every session.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        self.pools.expire(now);
        if self.rotation_due.is_some_and(|due| due <= now) {
            self.run_due_rotations(now);
            self.rotation_due = self.next_rotation();
        }
        self.drive(|sessions, handler| sessions.tick(now, handler));
    }

    /// Forgets the request waiting for a session (its caller gave up); the session runs on to
    /// its own deadline.
    pub fn cancel(&mut self, request: RequestId) {
        for (_, waiting) in self.running.values_mut() {
            if *waiting == Some(request) {
                *waiting = None;
            }
        }
    }

    /// Runs a DKG of `key_id` over `committee` with threshold `threshold`.
    #[allow(clippy::too_many_arguments)]
    pub fn create_key(
        &mut self,
        request: RequestId,
        curve: Curve,
        key_id: KeyId,
        threshold: u16,
        committee: Vec<NodeId>,
        approvals: Vec<OperatorApproval>,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) {
        self.now = self.now.max(now);
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let mut committee = committee;
        committee.sort();
        let action = LifecycleAction {
            kind: LifecycleKind::Dkg,
            key_id: key_id.clone(),
            curve,
            epoch: Epoch(0),
            old_public_key_package: Digest([0; 32]),
            committee: committee.clone(),
            threshold,
        };
        let started = self
            .members(&committee)
            .and_then(|()| self.approvals(&action, approvals, now, rng))
            .and_then(|approvals| {
                any::dkg_coordinator(
                    curve,
                    key_id,
                    threshold,
                    committee,
                    nonce,
                    approvals,
                    self.setup.verifier.clone(),
                    now,
                )
            });
        match started {
            Ok((session, dkg)) => {
                self.start(session, dkg, Running::Dkg { curve, threshold }, request)
            }
            Err(e) => self.done(request, Err(e)),
        }
    }

    /// Runs one ROAST signing request: `t` members of `committee` are asked (in the order of
    /// [`preference`](self): rotating, those in trouble last), others only as needed; a
    /// signature comes out as long as `t` of them answer honestly before the deadline. Each of
    /// the first `t` with a pooled commitment is asked in one round (request and package at
    /// once); then the pools of the committee's members that are not in trouble are topped
    /// up. The signature is for the child at `path` (the key itself for the empty path): the
    /// signers derive their child shares and this coordinator the child public key package,
    /// each on its own.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &mut self,
        request: RequestId,
        key: &KeyMeta,
        message: Vec<u8>,
        path: DerivationPath,
        client: Option<ClientAuthorization>,
        committee: Vec<NodeId>,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) {
        self.now = self.now.max(now);
        // Batches asked for and never answered are forgotten here too: on a network where
        // every signature ends well inside its deadlines, no timeout may ever come due.
        self.pools.expire(now);
        let mut session = [0u8; 32];
        rng.fill_bytes(&mut session);
        let session = SessionId(session);
        let committee = self
            .preference
            .order(&committee, now, crate::deadlines::SIGNING_ATTEMPT);
        let pooled: BTreeMap<NodeId, PooledCommitment> = committee
            .iter()
            .take(usize::from(key.threshold))
            .filter_map(|node| {
                let pooled = self.pools.take(&key.key_id, key.epoch, node, now)?;
                Some((node.clone(), pooled))
            })
            .collect();
        let first = committee.len().min(usize::from(key.threshold));
        let asks = SignerAsks {
            one_round: u64::try_from(pooled.len()).unwrap_or(u64::MAX),
            two_round: u64::try_from(first.saturating_sub(pooled.len())).unwrap_or(u64::MAX),
        };
        let healthy: Vec<NodeId> = committee
            .iter()
            .filter(|node| {
                !self
                    .preference
                    .in_trouble(node, now, crate::deadlines::SIGNING_ATTEMPT)
            })
            .cloned()
            .collect();
        let started = any::roast_coordinator(
            key.curve,
            session,
            key.key_id.clone(),
            key.epoch,
            message,
            path,
            client,
            &key.public_key_package,
            committee,
            pooled,
            now,
            crate::deadlines::SIGNING,
            &mut self.parsed,
        );
        match started {
            Ok(signing) => {
                self.asks.one_round += asks.one_round;
                self.asks.two_round += asks.two_round;
                self.start(session, signing, Running::Signing, request)
            }
            Err(e) => return self.done(request, Err(e)),
        }
        for (to, batch) in self
            .pools
            .top_up(&key.key_id, key.epoch, &healthy, now, rng)
        {
            self.outputs.push_back(CoordinatorOutput::Transmit {
                to,
                session: batch.session,
                message: Message::CommitmentsRequest(batch),
                tracked: false,
            });
        }
    }

    /// Handles one message from the authenticated peer `from`. Only signer nodes may send the
    /// coordinator anything, and only the kinds a coordinator receives.
    pub fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        if !self.setup.nodes.contains_key(from) {
            return Err(Refusal::NotInCommittee(from.clone()).into());
        }
        self.now = self.now.max(now);
        self.preference.heard(from, &message);
        match &message {
            Message::SessionStatus(status) => return self.answer_status(from, status.session),
            Message::CommitmentBatch(_) => {
                let Message::CommitmentBatch(batch) = message else {
                    return Ok(());
                };
                return self.pools.accept(from, batch).map_err(Into::into);
            }
            Message::SignRefusal(refusal) if refusal.commitment_unknown => {
                // It lost its pooled nonces (it restarted): none of its pools is any good.
                self.pools.forget_node(from);
            }
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
        self.drive(|sessions, handler| sessions.deliver(&route, from, message, now, rng, handler))
    }

    /// The result of an aggregation of `session`'s ([`CoordinatorOutput::Aggregate`]); ignored
    /// if the session ended meanwhile.
    pub fn handle_aggregated(
        &mut self,
        session: SessionId,
        done: any::AnyAggregated,
        now: Timestamp,
    ) {
        self.now = self.now.max(now);
        let route = Route::Session(session);
        self.drive(|sessions, handler| sessions.aggregated(&route, done, now, handler));
    }

    /// A message that could not reach `to` (the dial failed). A signing request (one round or
    /// two) that did not arrive is as good as refused: ROAST moves on without the member, and fails at once if
    /// fewer than t are left, rather than at its deadline. (A package that does not arrive is
    /// left to the attempt's timeout: the member may hold a share of an attempt.) The open of
    /// a DKG or reshare that did not arrive ends the session at once if it cannot go on
    /// without that member (`MemberUnreachable`, naming it), as a refusal would.
    pub fn handle_undelivered(
        &mut self,
        to: &NodeId,
        kind: MessageKind,
        session: SessionId,
        error: &str,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) {
        self.now = self.now.max(now);
        self.preference.unreachable(to, now);
        if kind == MessageKind::CommitmentsRequest {
            return self.pools.undelivered(&session);
        }
        if matches!(kind, MessageKind::DkgOpen | MessageKind::ReshareOpen) {
            return self.open_failed(to, session, OpenFailure::Unreachable(error));
        }
        if !matches!(
            kind,
            MessageKind::SignRequest | MessageKind::SignWithCommitment
        ) {
            return;
        }
        let route = Route::Session(session);
        if !self.sessions.contains(&route) {
            return;
        }
        let refusal = Message::SignRefusal(SignRefusal {
            session,
            reason: format!("not reachable: {error}"),
            unauthorized: false,
            commitment_unknown: false,
        });
        let _ = self
            .drive(|sessions, handler| sessions.deliver(&route, to, refusal, now, rng, handler));
    }

    /// A member refused the open of `session` (its answer was `reason`): a DKG or a reshare
    /// that cannot go on without it ends now, so the request is answered at once (403 when the
    /// refusal was for lack of an operator approval) rather than at the session's deadline.
    pub fn handle_open_refused(
        &mut self,
        from: &NodeId,
        kind: MessageKind,
        session: SessionId,
        reason: &str,
    ) {
        if !matches!(kind, MessageKind::DkgOpen | MessageKind::ReshareOpen) {
            return;
        }
        self.open_failed(from, session, OpenFailure::Refused(reason));
    }

    /// `from` did not take the open of `session`.
    fn open_failed(&mut self, from: &NodeId, session: SessionId, failure: OpenFailure<'_>) {
        let route = Route::Session(session);
        if !self.sessions.contains(&route) {
            return;
        }
        self.drive(|sessions, handler| {
            sessions.open_failed(&route, from, failure, handler);
        });
    }

    /// The approvals a DKG or reshare open carries: those of the request, or, when it has
    /// none, the gateway operator key's (if this coordinator has one). The coordinator does not
    /// judge them: every member checks them against its own list.
    fn approvals(
        &self,
        action: &LifecycleAction,
        given: Vec<OperatorApproval>,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Vec<OperatorApproval>, ProtocolError> {
        if !given.is_empty() {
            return Ok(given);
        }
        let Some(gateway) = &self.setup.gateway_operator else {
            return Err(ProtocolError::InvalidParameters(
                "the request carries no operator approvals, and this coordinator has no gateway operator key".into(),
            ));
        };
        let mut request_id = [0u8; 16];
        rng.fill_bytes(&mut request_id);
        Ok(vec![OperatorApproval::sign(
            gateway,
            &self.setup.network_id,
            action,
            request_id,
            now.0,
        )])
    }

    /// Refuses unless every member of `committee` is a signer node.
    fn members(&self, committee: &[NodeId]) -> Result<(), ProtocolError> {
        match committee
            .iter()
            .find(|n| !self.setup.nodes.contains_key(*n))
        {
            Some(stranger) => Err(ProtocolError::InvalidParameters(format!(
                "{stranger} is not a signer node of this network"
            ))),
            None => Ok(()),
        }
    }

    fn start(
        &mut self,
        session: SessionId,
        s: Box<dyn any::AnySession>,
        running: Running,
        request: RequestId,
    ) {
        let purpose = match running {
            Running::Dkg { .. } => "dkg",
            Running::Signing => "signing",
            Running::Reshare(_) => "reshare",
        };
        self.notice(CoordinatorNotice::SessionOpened {
            request,
            session,
            purpose,
        });
        self.running.insert(session, (running, Some(request)));
        self.drive(|sessions, handler| sessions.insert(Route::Session(session), s, handler));
    }

    fn done(&mut self, request: RequestId, outcome: Outcome) {
        self.outputs.push_back(CoordinatorOutput::Done {
            request: Some(request),
            outcome,
            after_deliveries: None,
        });
    }

    fn notice(&mut self, notice: CoordinatorNotice) {
        self.outputs.push_back(CoordinatorOutput::Notice(notice));
    }

    /// Runs `f` on the sessions with the output handler (which carries out every output in
    /// order), then forgets what ended.
    fn drive<R>(
        &mut self,
        f: impl FnOnce(&mut Sessions, &mut dyn FnMut(&Route, AnyOutput) -> Handled) -> R,
    ) -> R {
        let mut cx = Finisher {
            store: &mut self.store,
            setup: &self.setup,
            running: &mut self.running,
            preference: &mut self.preference,
            rotating: &mut self.rotating,
            now: self.now,
            outputs: &mut self.outputs,
        };
        let result = f(&mut self.sessions, &mut |route, output| {
            cx.handle(route, output)
        });
        let sessions = &self.sessions;
        self.running
            .retain(|session, _| sessions.contains(&Route::Session(*session)));
        let running = &self.running;
        self.aliases
            .retain(|_, session| running.contains_key(session));
        result
    }
}

/// Carries out the sessions' outputs: messages are queued for sending, a new key and a
/// reshare's outcome are recorded before what follows them is released, and each request gets
/// its answer.
struct Finisher<'a, M: MetadataStore> {
    store: &'a mut M,
    setup: &'a CoordinatorSetup,
    running: &'a mut BTreeMap<SessionId, (Running, Option<RequestId>)>,
    preference: &'a mut SignerPreference,
    rotating: &'a mut BTreeMap<SessionId, KeyId>,
    now: Timestamp,
    outputs: &'a mut VecDeque<CoordinatorOutput>,
}

impl<M: MetadataStore> Finisher<'_, M> {
    fn handle(&mut self, route: &Route, output: AnyOutput) -> Handled {
        let Route::Session(session) = route else {
            return Handled::Continue;
        };
        let session = *session;
        let event = match output {
            AnyOutput::Send { to, message } => {
                let tracked = matches!(
                    self.running.get(&session),
                    Some((Running::Dkg { .. } | Running::Reshare(_), _))
                );
                self.preference.sent(&to, &message, self.now);
                self.outputs.push_back(CoordinatorOutput::Transmit {
                    to,
                    message,
                    session,
                    tracked,
                });
                return Handled::Continue;
            }
            AnyOutput::Aggregate(aggregation) => {
                self.outputs.push_back(CoordinatorOutput::Aggregate {
                    session,
                    aggregation,
                });
                return Handled::Continue;
            }
            AnyOutput::Event(event) => event,
        };
        let Some((running, request)) = self.running.get_mut(&session) else {
            return Handled::Continue;
        };
        let request = *request;
        match (running, event) {
            (
                Running::Dkg { curve, threshold },
                AnyEvent::KeyCreated {
                    key_id,
                    committee,
                    public_key_package,
                    public_key,
                },
            ) => {
                // Recorded before the commit (the outputs after this event) goes out; never
                // over a key already recorded under this id.
                if !matches!(self.store.key(&key_id), Ok(None)) {
                    let error = ProtocolError::InvalidParameters(format!(
                        "key {key_id} is already recorded (or the record cannot be read); commit not sent"
                    ));
                    self.done(request, Err(error), None);
                    return Handled::Abort;
                }
                let meta = KeyMeta {
                    nodes: names(self.setup, &committee),
                    key_id: key_id.clone(),
                    curve: *curve,
                    threshold: *threshold,
                    committee: committee.clone(),
                    public_key: public_key.clone(),
                    public_key_package: public_key_package.clone(),
                    epoch: Epoch(0),
                };
                if let Err(e) = self.store.put_key(&meta) {
                    let error = ProtocolError::Frost(format!("cannot record the key: {e}"));
                    self.failed_write("recording a new key (commit not sent)", session, &e);
                    self.done(request, Err(error), None);
                    return Handled::Abort;
                }
                self.notice(CoordinatorNotice::KeyCreated {
                    key_id: key_id.clone(),
                    nodes: meta.nodes,
                });
                self.done(
                    request,
                    Ok(AnyEvent::KeyCreated {
                        key_id,
                        committee,
                        public_key_package,
                        public_key,
                    }),
                    Some(session),
                );
                Handled::Continue
            }
            (Running::Reshare(running), event @ AnyEvent::KeyReshared { .. }) => {
                // Recorded before the certificate (the outputs after this event) goes out.
                match reshare::record_commit(self.store, self.setup, running, &event) {
                    Ok(notice) => {
                        self.notice(notice);
                        self.rotation_committed(&session);
                        self.done(request, Ok(event), Some(session));
                        Handled::Continue
                    }
                    Err(e) => {
                        let error = ProtocolError::Frost(format!("cannot record the commit: {e}"));
                        self.failed_write(
                            "recording a reshare's commit (certificate not sent)",
                            session,
                            &e,
                        );
                        self.record_abort(session, &error);
                        self.done(request, Err(error), None);
                        Handled::Abort
                    }
                }
            }
            (_, event @ AnyEvent::SignatureReady { .. }) => {
                self.done(request, Ok(event), None);
                Handled::Continue
            }
            (_, AnyEvent::Failed(error)) => {
                if let Some(key_id) = self.rotating.remove(&session) {
                    self.notice(CoordinatorNotice::RotationFailed {
                        key_id,
                        error: error.clone(),
                    });
                }
                self.record_abort(session, &error);
                self.done(request, Err(error), None);
                Handled::Continue
            }
            _ => Handled::Continue,
        }
    }

    /// Records that the scheduled rotation `session` (if it is one) committed, now.
    fn rotation_committed(&mut self, session: &SessionId) {
        let Some(key_id) = self.rotating.remove(session) else {
            return;
        };
        let policy = self
            .store
            .rotations()
            .map(|all| all.into_iter().find(|p| p.key_id == key_id));
        let recorded = match policy {
            Ok(Some(mut policy)) => {
                policy.last_ms = Some(self.now.0);
                self.store.put_rotation(&policy)
            }
            // Cleared meanwhile: nothing to record.
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            self.notice(CoordinatorNotice::RotationFailed {
                key_id,
                error: ProtocolError::Frost(format!(
                    "the refresh committed, but its time cannot be recorded: {e}"
                )),
            });
        }
    }

    /// Records the abort of a running reshare (nothing for other sessions).
    fn record_abort(&mut self, session: SessionId, error: &ProtocolError) {
        let Some((Running::Reshare(running), _)) = self.running.get(&session) else {
            return;
        };
        let entry = reshare::aborted(running.entry.clone(), error.culprits(), error.to_string());
        let key_id = entry.key_id.clone();
        match self.store.put_reshare(&entry) {
            Ok(()) => self.notice(CoordinatorNotice::ReshareAborted {
                key_id,
                session,
                error: error.clone(),
            }),
            Err(e) => self.failed_write("recording a reshare's abort", session, &e),
        }
    }

    fn failed_write(&mut self, operation: &'static str, session: SessionId, error: &MetadataError) {
        self.notice(CoordinatorNotice::StoreFailed {
            operation,
            session,
            error: error.to_string(),
        });
    }

    fn done(&mut self, request: Option<RequestId>, outcome: Outcome, after: Option<SessionId>) {
        self.outputs.push_back(CoordinatorOutput::Done {
            request,
            outcome,
            after_deliveries: after,
        });
    }

    fn notice(&mut self, notice: CoordinatorNotice) {
        self.outputs.push_back(CoordinatorOutput::Notice(notice));
    }
}

/// The node names of `committee`, in its order.
fn names(setup: &CoordinatorSetup, committee: &[NodeId]) -> Vec<String> {
    committee
        .iter()
        .map(|n| setup.nodes.get(n).cloned().unwrap_or_else(|| n.to_string()))
        .collect()
}
