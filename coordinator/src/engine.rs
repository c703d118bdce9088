//! The coordinator's loop: one task owns the coordinator core ([`CoordinatorCore`], every rule
//! of the coordinator), fed by the network's inbound requests, the HTTP handlers' commands,
//! undelivered messages, the replies to its own requests, the aggregation workers' results and
//! a clock tick; it sends what the core queues, answers requests, and logs the core's notices.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use permafrost_engine::coordinator::{
    CoordinatorCore, CoordinatorNotice, CoordinatorOutput, KeyMeta, RequestId, RotationPolicy,
    ROTATION_REQUEST,
};
use permafrost_net::{Client, InboundRequest, PeerId};
use permafrost_protocol::{ProtocolError, Refusal};
use permafrost_runtime::any::AnyAggregated;
use permafrost_runtime::driver::{self, Outbox, Reply, Undelivered};
use permafrost_runtime::identity;
use permafrost_runtime::process::SESSION_LOG_TARGET;
use permafrost_runtime::workers::WorkerPool;
use permafrost_wire::{
    decode, ClientAuthorization, Curve, DerivationPath, KeyId, Message, NodeId, OperatorApproval,
    SessionId,
};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::{AggregatedOn, CoordinatorMetrics, RotationOutcome};
use crate::store::MetadataDb;

pub use permafrost_engine::coordinator::Outcome;

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
        /// The committee.
        committee: Vec<NodeId>,
        /// Operators' approvals (none: the gateway operator key approves, if configured).
        approvals: Vec<OperatorApproval>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
    /// Run one signing request with the key as recorded.
    Sign {
        /// The key (its current epoch, committee and package).
        key: KeyMeta,
        /// Message.
        message: Vec<u8>,
        /// The child key to sign with (empty: the key itself).
        path: DerivationPath,
        /// The client's approval, which every signer checks.
        client: ClientAuthorization,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
    /// Reshare a key to a new committee and threshold. The outcome is
    /// `AnyEvent::KeyReshared` once the new epoch is recorded and its certificate delivered.
    Reshare {
        /// The key.
        key_id: KeyId,
        /// The new committee.
        committee: Vec<NodeId>,
        /// The new threshold.
        threshold: u16,
        /// Operators' approvals (none: the gateway operator key approves, if configured).
        approvals: Vec<OperatorApproval>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
    /// Set (or replace) a key's rotation policy: refresh its shares every `every_secs`,
    /// keeping its current committee and threshold. Answered at once, with the policy as
    /// recorded.
    SetRotation {
        /// The key.
        key_id: KeyId,
        /// The interval, in seconds.
        every_secs: u64,
        /// Operators' approvals of the policy (none: the gateway operator key approves, if
        /// configured).
        approvals: Vec<OperatorApproval>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<RotationPolicy, ProtocolError>>,
    },
    /// Remove a key's rotation policy. Answered at once: whether it had one.
    ClearRotation {
        /// The key.
        key_id: KeyId,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<bool, ProtocolError>>,
    },
}

/// A command and the id of the HTTP request that gave it, which the logs tie to the session
/// opened for it.
pub struct Traced {
    /// The HTTP request's id (`None` outside a request).
    pub request_id: Option<String>,
    /// The command.
    pub command: Command,
}

const TICK: Duration = Duration::from_millis(100);

/// Most threads that aggregate signatures: one per core up to this many.
const MAX_AGGREGATION_THREADS: usize = 8;

/// What a worker hands back: the session, and its aggregation's result.
type Aggregated = (SessionId, AnyAggregated);

/// The coordinator's aggregation workers ([`CoordinatorOutput::Aggregate`]: the curve
/// arithmetic that ends a signing attempt runs there, off the loop, the keys taking turns,
/// whenever other inputs wait on the loop), and the channel their results come back on.
pub struct Aggregations {
    pool: WorkerPool<KeyId, Aggregated>,
    results: mpsc::UnboundedReceiver<Aggregated>,
}

impl Aggregations {
    /// Starts one worker per core, at most [`MAX_AGGREGATION_THREADS`].
    pub fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_AGGREGATION_THREADS);
        let (results_tx, results) = mpsc::unbounded_channel();
        let pool = WorkerPool::start(threads, "aggregation", results_tx)?;
        Ok(Aggregations { pool, results })
    }
}

/// Runs the engine until the command channel closes or `stop` fires.
pub async fn run(
    client: Client,
    core: CoordinatorCore<MetadataDb>,
    mut inbound: mpsc::Receiver<InboundRequest>,
    mut commands: mpsc::Receiver<Traced>,
    mut stop: oneshot::Receiver<()>,
    metrics: Arc<CoordinatorMetrics>,
    aggregations: Aggregations,
) {
    let Aggregations {
        pool: workers,
        results: mut aggregated,
    } = aggregations;
    let (undelivered_tx, mut undelivered) = mpsc::unbounded_channel();
    let mut outbox = Outbox::new(client);
    outbox.report_undelivered(undelivered_tx);
    let (replies_tx, mut replies) = tokio::sync::mpsc::unbounded_channel();
    outbox.take_replies(replies_tx);
    let mut shell = Shell {
        core,
        outbox,
        next_request: 0,
        replies: BTreeMap::new(),
        deliveries: BTreeMap::new(),
        traces: BTreeMap::new(),
        session_requests: BTreeMap::new(),
        metrics,
        workers,
        backlog: false,
    };
    shell.carry_out();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            command = commands.recv() => match command {
                Some(command) => shell.command(command),
                None => break,
            },
            request = inbound.recv() => match request {
                Some(request) => {
                    shell.backlog = backlog(&inbound, &replies, &commands);
                    shell.inbound(request)
                }
                None => break,
            },
            Some(failed) = undelivered.recv() => shell.undelivered(failed),
            Some(reply) = replies.recv() => {
                shell.backlog = backlog(&inbound, &replies, &commands);
                shell.reply(reply)
            }
            Some((session, done)) = aggregated.recv() => shell.aggregated(session, done),
            _ = ticker.tick() => shell.tick(),
        }
    }
}

/// Whether other inputs wait on the loop right now (the messages that can complete a signing
/// attempt come as inbound requests or as replies).
fn backlog(
    inbound: &mpsc::Receiver<InboundRequest>,
    replies: &mpsc::UnboundedReceiver<Reply>,
    commands: &mpsc::Receiver<Traced>,
) -> bool {
    !inbound.is_empty() || !replies.is_empty() || !commands.is_empty()
}

/// The IO around the coordinator core.
struct Shell {
    core: CoordinatorCore<MetadataDb>,
    outbox: Outbox,
    next_request: RequestId,
    /// Requests waiting for their outcome.
    replies: BTreeMap<RequestId, oneshot::Sender<Outcome>>,
    /// Deliveries of DKG and reshare messages, by session, until the session's answer.
    deliveries: BTreeMap<SessionId, Vec<JoinHandle<()>>>,
    /// The HTTP request id of each request waiting for its outcome (for the logs).
    traces: BTreeMap<RequestId, String>,
    /// The request each running session was opened for (for the logs).
    session_requests: BTreeMap<SessionId, RequestId>,
    /// The pools' depths and how signers were asked go here.
    metrics: Arc<CoordinatorMetrics>,
    /// Where the signing attempts' aggregations run when other inputs wait on the loop.
    workers: WorkerPool<KeyId, Aggregated>,
    /// Whether other inputs waited on the loop when the message being handled was taken. An
    /// aggregation it completes then goes to the workers, so that nothing waits behind it;
    /// with nothing waiting it runs here at once, and a signature alone saves the handoff (two
    /// thread wake-ups, BENCHMARKS.md "The aggregation off the coordinator's loop").
    backlog: bool,
}

impl Shell {
    fn command(&mut self, traced: Traced) {
        let now = permafrost_runtime::now();
        let request = self.next_request;
        self.next_request += 1;
        let request_id = traced
            .request_id
            .unwrap_or_else(|| format!("internal-{request}"));
        let span = tracing::debug_span!(
            target: SESSION_LOG_TARGET,
            "request",
            request_id = %request_id,
        );
        let _entered = span.enter();
        match traced.command {
            Command::CreateKey {
                curve,
                key_id,
                threshold,
                committee,
                approvals,
                reply,
            } => {
                self.traces.insert(request, request_id);
                self.replies.insert(request, reply);
                self.core.create_key(
                    request, curve, key_id, threshold, committee, approvals, now, &mut OsRng,
                );
            }
            Command::Sign {
                key,
                message,
                path,
                client,
                reply,
            } => {
                self.traces.insert(request, request_id);
                self.replies.insert(request, reply);
                let committee = key.committee.clone();
                self.core.sign(
                    request,
                    &key,
                    message,
                    path,
                    Some(client),
                    committee,
                    now,
                    &mut OsRng,
                );
                self.metrics.signer_asks(self.core.signer_asks());
            }
            Command::Reshare {
                key_id,
                committee,
                threshold,
                approvals,
                reply,
            } => {
                self.traces.insert(request, request_id);
                self.replies.insert(request, reply);
                self.core.reshare(
                    request, &key_id, committee, threshold, approvals, now, &mut OsRng,
                );
            }
            // Answered here and now: no session, so nothing to trace or wait for.
            Command::SetRotation {
                key_id,
                every_secs,
                approvals,
                reply,
            } => {
                let outcome = self
                    .core
                    .set_rotation(&key_id, every_secs, approvals, now, &mut OsRng);
                match &outcome {
                    Ok(policy) => tracing::info!(
                        key = %key_id,
                        every_secs,
                        next_ms = policy.next_ms,
                        approvals = policy.approvals.len(),
                        "rotation policy set"
                    ),
                    Err(error) => tracing::info!(key = %key_id, %error, "rotation policy refused"),
                }
                let _ = reply.send(outcome);
            }
            Command::ClearRotation { key_id, reply } => {
                let outcome = self.core.clear_rotation(&key_id);
                match &outcome {
                    Ok(removed) => {
                        tracing::info!(key = %key_id, removed, "rotation policy cleared")
                    }
                    Err(error) => {
                        tracing::warn!(key = %key_id, %error, "rotation policy not cleared")
                    }
                }
                let _ = reply.send(outcome);
            }
        }
        self.carry_out();
    }

    fn inbound(&mut self, request: InboundRequest) {
        let outcome = self.dispatch(&request);
        self.carry_out();
        driver::answer(request, outcome);
    }

    /// A signer's message that came back as the answer to the request that asked for it: handled
    /// as if it came as a request of its own, and its refusal logged here (nobody waits for it).
    fn reply(&mut self, reply: Reply) {
        let outcome = decode(&reply.payload)
            .map_err(ProtocolError::from)
            .and_then(|message| {
                if reply.answers(&message) {
                    Ok(message)
                } else {
                    Err(Refusal::Unexpected(message.kind()).into())
                }
            })
            .and_then(|message| self.handle(&reply.from, message, &reply.peer, Via::Answer));
        self.carry_out();
        if let Err(error) = outcome {
            driver::log_refused_reply(&reply.peer, &error);
        }
    }

    fn dispatch(&mut self, request: &InboundRequest) -> Result<(), ProtocolError> {
        let from = identity::node_id(&request.peer)?;
        let message = decode(&request.payload)?;
        self.handle(&from, message, &request.peer, Via::Request)
    }

    /// Hands a message from `from` (`peer`, for the logs) to the core.
    fn handle(
        &mut self,
        from: &NodeId,
        message: Message,
        peer: &PeerId,
        via: Via,
    ) -> Result<(), ProtocolError> {
        let session = message.session();
        let span = tracing::debug_span!(
            target: SESSION_LOG_TARGET,
            "session",
            %session,
            request_id = self.request_id_of(&session),
            kind = ?message.kind(),
            from = %peer,
            ?via,
        );
        let _entered = span.enter();
        tracing::debug!(target: SESSION_LOG_TARGET, "message received");
        self.core
            .handle_message(from, message, permafrost_runtime::now(), &mut OsRng)
    }

    /// The HTTP request id of the request `session` was opened for, if it still waits.
    fn request_id_of(&self, session: &SessionId) -> Option<&str> {
        let request = self.session_requests.get(session)?;
        self.traces.get(request).map(String::as_str)
    }

    /// Forgets the ids of a request that was answered or given up.
    fn forget_trace(&mut self, request: RequestId) {
        self.traces.remove(&request);
        self.session_requests.retain(|_, r| *r != request);
    }

    fn undelivered(&mut self, failed: Undelivered) {
        if failed.refused {
            self.core
                .handle_open_refused(&failed.to, failed.kind, failed.session, &failed.error);
            self.carry_out();
            return;
        }
        self.core.handle_undelivered(
            &failed.to,
            failed.kind,
            failed.session,
            &failed.error,
            permafrost_runtime::now(),
            &mut OsRng,
        );
        self.carry_out();
    }

    fn tick(&mut self) {
        self.metrics.pools(self.core.pooled_commitments());
        // An HTTP client that gave up: its session runs on to its own deadline, unanswered.
        let gone: Vec<RequestId> = self
            .replies
            .iter()
            .filter(|(_, reply)| reply.is_closed())
            .map(|(request, _)| *request)
            .collect();
        for request in gone {
            self.replies.remove(&request);
            self.forget_trace(request);
            self.core.cancel(request);
        }
        let now = permafrost_runtime::now();
        if self.core.poll_timeout().is_some_and(|due| due <= now) {
            self.core.handle_timeout(now);
            self.carry_out();
        }
    }

    /// An aggregation ended on a worker.
    fn aggregated(&mut self, session: SessionId, done: AnyAggregated) {
        self.core
            .handle_aggregated(session, done, permafrost_runtime::now());
        self.carry_out();
    }

    /// Sends what the core queued, answers what ended, logs what it noticed. An answer that
    /// waits for a session's deliveries is given once the messages queued with it (the commit)
    /// were delivered or failed.
    fn carry_out(&mut self) {
        let mut answers = Vec::new();
        while let Some(output) = self.core.poll_output() {
            match output {
                CoordinatorOutput::Transmit {
                    to,
                    message,
                    session,
                    tracked,
                } => {
                    let delivery = self.outbox.send(to, message);
                    if let (true, Some(delivery)) = (tracked, delivery) {
                        self.deliveries.entry(session).or_default().push(delivery);
                    }
                }
                CoordinatorOutput::Done {
                    request,
                    outcome,
                    after_deliveries,
                } => answers.push((request, outcome, after_deliveries)),
                CoordinatorOutput::Aggregate {
                    session,
                    aggregation,
                } => {
                    if self.backlog {
                        self.metrics.aggregation(AggregatedOn::Workers);
                        let key = aggregation.key_id().clone();
                        self.workers
                            .submit(key, move || (session, aggregation.run()));
                    } else {
                        self.metrics.aggregation(AggregatedOn::Loop);
                        let done = aggregation.run();
                        self.core
                            .handle_aggregated(session, done, permafrost_runtime::now());
                    }
                }
                CoordinatorOutput::Notice(notice) => {
                    if let CoordinatorNotice::SessionOpened {
                        request, session, ..
                    } = &notice
                    {
                        self.session_requests.insert(*session, *request);
                    }
                    if let CoordinatorNotice::RotationStarted { .. } = &notice {
                        self.metrics.scheduled_rotation(RotationOutcome::Started);
                    }
                    let request_id = notice
                        .session()
                        .and_then(|session| self.request_id_of(&session));
                    log(&notice, request_id);
                }
            }
        }
        for (request, outcome, after) in answers {
            // A started scheduled run ends once: committed or failed.
            if request == Some(ROTATION_REQUEST) {
                self.metrics.scheduled_rotation(if outcome.is_ok() {
                    RotationOutcome::Committed
                } else {
                    RotationOutcome::Failed
                });
            }
            if let Some(request) = request {
                let request_id = self.traces.get(&request).map(String::as_str);
                let session = self
                    .session_requests
                    .iter()
                    .find(|(_, r)| **r == request)
                    .map(|(session, _)| tracing::field::display(session));
                match &outcome {
                    Ok(_) => tracing::debug!(
                        target: SESSION_LOG_TARGET,
                        request_id,
                        session,
                        "request done"
                    ),
                    Err(error) => tracing::debug!(
                        target: SESSION_LOG_TARGET,
                        request_id,
                        session,
                        %error,
                        "request failed"
                    ),
                }
                self.forget_trace(request);
            }
            let reply = request.and_then(|r| self.replies.remove(&r));
            let deliveries = after
                .and_then(|session| self.deliveries.remove(&session))
                .unwrap_or_default();
            match reply {
                Some(reply) if deliveries.is_empty() => {
                    let _ = reply.send(outcome);
                }
                Some(reply) => {
                    tokio::spawn(async move {
                        for delivery in deliveries {
                            let _ = delivery.await;
                        }
                        let _ = reply.send(outcome);
                    });
                }
                None => {}
            }
        }
        // Deliveries of sessions that ended without an answer to wait for them.
        self.deliveries
            .retain(|_, handles| handles.iter().any(|h| !h.is_finished()));
    }
}

/// How a message reached the coordinator (a field of its log lines).
#[derive(Clone, Copy, Debug)]
enum Via {
    /// A request of its own.
    Request,
    /// The answer to a request the coordinator sent ([`Reply`]).
    Answer,
}

/// Writes a notice to the log at the level its meaning calls for, with the session it concerns
/// and the HTTP request id of the request it serves as fields; routine ones (once per
/// signature) are DEBUG events of the session target.
fn log(notice: &CoordinatorNotice, request_id: Option<&str>) {
    let session = notice.session().map(tracing::field::display);
    if notice.is_error() {
        tracing::error!(session, request_id, "{notice}");
    } else if notice.is_warning() {
        tracing::warn!(session, request_id, "{notice}");
    } else if notice.is_routine() {
        tracing::debug!(target: SESSION_LOG_TARGET, session, request_id, "{notice}");
    } else {
        tracing::info!(session, request_id, "{notice}");
    }
}
