//! The IO between a core (node or coordinator) and the network: messages the core queued are
//! sent over `permafrost-net` from tasks of their own ([`Outbox`]), failed dials are reported
//! back, and inbound requests are answered with the core's verdict ([`answer`]), or with the
//! message they asked for ([`answer_with`], [`rides_answer`]), which the requester's outbox
//! hands back as a [`Reply`].

use std::time::Duration;

use permafrost_net::{Client, InboundRequest, PeerId};
use permafrost_protocol::{ProtocolError, Refusal};
use permafrost_wire::{encode, Message, MessageKind, NodeId, SessionId, WIRE_VERSION};
use tracing::Instrument;

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
    /// Why it was not delivered, or the peer's refusal.
    pub error: String,
    /// The message arrived and the peer refused it (`error` is its answer). Reported for the
    /// opens of DKGs and reshares only: a member that refuses one ends the session at once.
    pub refused: bool,
}

/// A message that came back as the answer to one this process sent (see [`rides_answer`]):
/// the peer's next message of the same session, from the peer the request went to.
#[derive(Debug)]
pub struct Reply {
    /// Who answered: the peer the request was sent to (the link is authenticated).
    pub from: NodeId,
    /// The same peer's libp2p id (for the logs).
    pub peer: PeerId,
    /// The kind of the request it answers.
    pub request: MessageKind,
    /// The session of the request it answers.
    pub session: SessionId,
    /// The message, a wire frame, not decoded yet.
    pub payload: Vec<u8>,
}

impl Reply {
    /// Whether `message` (its payload, decoded) is what the request asked for: of the session
    /// of the request, and of a kind that answers it ([`rides_answer`]). Anything else is
    /// refused, though the peer could have sent it as a request of its own: an answer is
    /// read outside the peer's rate limit, so it may carry only what was asked.
    pub fn answers(&self, message: &Message) -> bool {
        message.session() == self.session && rides_answer(self.request, message.kind())
    }
}

/// Sends protocol messages over `permafrost-net`, each from a task of its own, so the owner's
/// loop never waits on the network.
pub struct Outbox {
    client: Client,
    /// Where undelivered messages are reported, if anywhere.
    undelivered: Option<tokio::sync::mpsc::UnboundedSender<Undelivered>>,
    /// Where messages that came back as answers go, if anywhere.
    replies: Option<tokio::sync::mpsc::UnboundedSender<Reply>>,
}

impl Outbox {
    /// An outbox sending through `client`.
    pub fn new(client: Client) -> Self {
        Outbox {
            client,
            undelivered: None,
            replies: None,
        }
    }

    /// Hands every message that comes back as an answer to `to` from now on (unbounded: one at
    /// most per message sent, and a delivery task never waits on the owner's loop). Without
    /// it, such a message is dropped (logged at DEBUG).
    pub fn take_replies(&mut self, to: tokio::sync::mpsc::UnboundedSender<Reply>) {
        self.replies = Some(to);
    }

    /// Reports every message that could not be delivered to `to` from now on (unbounded, so a
    /// delivery task never waits on the owner's loop).
    pub fn report_undelivered(&mut self, to: tokio::sync::mpsc::UnboundedSender<Undelivered>) {
        self.undelivered = Some(to);
    }

    /// The network client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one message in the background; failures are logged with the peer's name, and a
    /// message of a DKG or reshare whose delivery failed is sent again (see `redelivered` and
    /// `REDELIVERY_PAUSES`). Returns
    /// the delivery, which ends once the peer answered or the (last) send failed (`None` if
    /// nothing could be sent).
    pub fn send(&self, to: NodeId, message: Message) -> Option<tokio::task::JoinHandle<()>> {
        Sender {
            client: &self.client,
            undelivered: self.undelivered.as_ref(),
            replies: self.replies.as_ref(),
        }
        .send(to, message)
    }
}

/// What sending needs: the client, and where undelivered messages and replies go.
struct Sender<'a> {
    client: &'a Client,
    undelivered: Option<&'a tokio::sync::mpsc::UnboundedSender<Undelivered>>,
    replies: Option<&'a tokio::sync::mpsc::UnboundedSender<Reply>>,
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
        let replies = self.replies.cloned();
        // A copy is kept only for a message that may be sent again (zeroized: it may carry a
        // secret share); every other message, a signature's among them, is handed over as it is.
        let kept = redelivered(what.0).then(|| zeroize::Zeroizing::new(frame.clone()));
        let mut pauses = REDELIVERY_PAUSES.as_slice();
        // The delivery logs in the span of whoever sent it (a node's name, a session).
        Some(tokio::spawn(
            async move {
                let mut next = frame;
                let delivery = loop {
                    let delivery = client.request(peer, next).await;
                    match (&delivery, pauses.split_first(), &kept) {
                        (Err(e), Some((pause, rest)), Some(kept)) if transient(e) => {
                            tracing::debug!(%peer, kind, error = %e, ?pause, "message not delivered; sending it again");
                            tokio::time::sleep(*pause).await;
                            pauses = rest;
                            next = kept.to_vec();
                        }
                        _ => break delivery,
                    }
                };
                match delivery {
                    Ok(answer) if answer.is_empty() => {}
                    Ok(answer) if is_reply(&answer) => match &replies {
                        Some(replies) => {
                            let _ = replies.send(Reply {
                                from: to,
                                peer,
                                request: what.0,
                                session: what.1,
                                payload: answer,
                            });
                        }
                        None => tracing::debug!(%peer, kind, "a reply nobody takes, dropped"),
                    },
                    Ok(answer) => {
                        let refusal = String::from_utf8_lossy(&answer).into_owned();
                        if signing(what.0) {
                            // Late commitments and shares of a signature already made are refused
                            // in the normal run of ROAST: not worth a line per signature.
                            tracing::debug!(%peer, kind, %refusal, "message refused by peer");
                        } else {
                            tracing::info!(%peer, kind, %refusal, "message refused by peer");
                        }
                        let open =
                            matches!(what.0, MessageKind::DkgOpen | MessageKind::ReshareOpen);
                        if let (Some(tx), true) = (report, open) {
                            let _ = tx.send(Undelivered {
                                to,
                                kind: what.0,
                                session: what.1,
                                error: refusal,
                                refused: true,
                            });
                        }
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
                                refused: false,
                            });
                        }
                    }
                }
            }
            .in_current_span(),
        ))
    }
}

/// Answers an inbound request with the outcome of handling it: an empty answer when it was
/// taken, the refusal's text when it was not (logged with the peer).
pub fn answer(request: InboundRequest, outcome: Result<(), ProtocolError>) {
    answer_with(request, outcome, None);
}

/// [`answer`], but a request that was taken is answered with `reply`, when given: the encoded
/// message it asked for (see [`rides_answer`]), which the requester's outbox hands back as a
/// [`Reply`] instead of the empty answer.
pub fn answer_with(
    request: InboundRequest,
    outcome: Result<(), ProtocolError>,
    reply: Option<Vec<u8>>,
) {
    let answer = match outcome {
        Ok(()) => reply.unwrap_or_default(),
        Err(e) => {
            log_refusal(&request.peer, &e, "message refused");
            e.to_string().into_bytes()
        }
    };
    request.respond(answer);
}

/// The pauses before each redelivery of a [`redelivered`] message: 9.3 s in all, well within
/// a DKG's or a reshare's deadline.
const REDELIVERY_PAUSES: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(1_000),
    Duration::from_secs(3),
    Duration::from_secs(5),
];

/// Whether a message of `kind` whose delivery failed is sent again: every message of a DKG or
/// a reshare after its open whose loss would leave an honest party silent, and so the one
/// named when the session times out. A dealer's share (DKG round 2, `ReshareShare`): no one
/// else can send it for its dealer. A member's round-1 package, dealing, report or
/// confirmation to the coordinator, and the coordinator's relays to the members (the round-1
/// set, the dealing set, the dealer set): without one, the member waits, or the coordinator
/// waits for it. A transient failure (a peer restarting, a connection being set up) must not
/// lose any of them. Each receiver takes the same message twice as once, or refuses the second
/// copy (it has moved on), which changes nothing: a second copy arrives only when the first
/// was taken and its answer lost. Opens are not sent again (one that does not arrive ends the
/// session at once, naming the member), nor are certificates (a member that misses one asks
/// the coordinator for it), nor signing messages (ROAST moves on without the signer).
fn redelivered(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::DkgRound1
            | MessageKind::DkgRound1Set
            | MessageKind::DkgRound2
            | MessageKind::DkgConfirm
            | MessageKind::ReshareDealing
            | MessageKind::ReshareShare
            | MessageKind::ReshareDealingSet
            | MessageKind::ReshareReport
            | MessageKind::ReshareDealerSet
            | MessageKind::ReshareConfirm
    )
}

/// Whether a failed delivery may succeed if tried again (not a message too large for the
/// network, a peer not configured, or the network shut down).
fn transient(error: &permafrost_net::NetError) -> bool {
    use permafrost_net::NetError;
    matches!(
        error,
        NetError::Unreachable { .. }
            | NetError::Remote { .. }
            | NetError::Timeout(_)
            | NetError::Busy { .. }
    )
}

/// Logs that this process refused a [`Reply`] from `peer`, as [`answer`] logs a refused
/// request.
pub fn log_refused_reply(peer: &PeerId, error: &ProtocolError) {
    log_refusal(peer, error, "reply refused");
}

/// Logs a refusal of a message from `peer`: at DEBUG when it only came late, at INFO otherwise.
fn log_refusal(peer: &PeerId, error: &ProtocolError, what: &str) {
    if late(error) {
        tracing::debug!(%peer, %error, "{what}");
    } else {
        tracing::info!(%peer, %error, "{what}");
    }
}

/// Whether the message of kind `reply`, to the peer that sent a request of kind `request` in
/// the same session and handled in the same batch, travels as that request's answer instead
/// of a request of its own: a signer's commitment or share, or a batch of pooled commitments,
/// to the coordinator that asked for it. Half the frames of a signature. Nothing of a DKG or
/// a reshare does: their messages are sent again when a delivery fails, and an answer is not.
pub fn rides_answer(request: MessageKind, reply: MessageKind) -> bool {
    matches!(
        (request, reply),
        (MessageKind::SignRequest, MessageKind::SignCommitment)
            | (MessageKind::SignPackage, MessageKind::SignShare)
            | (MessageKind::SignWithCommitment, MessageKind::SignShare)
            | (
                MessageKind::CommitmentsRequest,
                MessageKind::CommitmentBatch
            )
    )
}

/// Whether an answer is a message (a wire frame, which begins with the wire version) rather
/// than a refusal (text, which never begins with a zero byte) or an acceptance (empty).
fn is_reply(answer: &[u8]) -> bool {
    answer.starts_with(&WIRE_VERSION.to_be_bytes())
}

/// Whether `kind` belongs to a signature (whose late copies are refused in the normal run).
fn signing(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::SignRequest
            | MessageKind::SignCommitment
            | MessageKind::SignPackage
            | MessageKind::SignShare
            | MessageKind::SignRefusal
            | MessageKind::SignWithCommitment
            | MessageKind::CommitmentsRequest
            | MessageKind::CommitmentBatch
    )
}

/// Whether a refusal only says the message came late or twice (its session ended, its nonce
/// was used, or its commitment came after the signers were chosen: a reshare's test signature
/// asks every new member and uses the first t), or named a pooled commitment lost in a
/// restart: the normal run of ROAST, logged at DEBUG.
fn late(error: &ProtocolError) -> bool {
    matches!(
        error,
        ProtocolError::Refused(
            Refusal::Finished
                | Refusal::UnknownSession
                | Refusal::WrongSession
                | Refusal::NonceConsumed
                | Refusal::UnknownCommitment
                | Refusal::SessionExists
                | Refusal::Unexpected(MessageKind::SignCommitment)
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message, a refusal and an acceptance are told apart by their first bytes.
    #[test]
    fn a_reply_is_told_from_a_refusal() {
        let share = encode(&Message::SignRefusal(permafrost_wire::SignRefusal {
            session: SessionId([1; 32]),
            reason: "x".into(),
            unauthorized: false,
            commitment_unknown: false,
        }))
        .unwrap();
        assert!(is_reply(&share));
        let refusal = ProtocolError::Refused(Refusal::Finished).to_string();
        assert!(!is_reply(refusal.as_bytes()));
        assert!(!is_reply(b""));
        // Only a signer's answers to the coordinator ride; DKG and reshare messages never do.
        assert!(rides_answer(
            MessageKind::SignWithCommitment,
            MessageKind::SignShare
        ));
        assert!(!rides_answer(
            MessageKind::SignRequest,
            MessageKind::SignShare
        ));
        assert!(!rides_answer(MessageKind::DkgOpen, MessageKind::DkgRound1));
    }

    /// A reply is taken only in the session of the request it answers, and of a kind that
    /// answers it.
    #[test]
    fn a_reply_answers_only_its_request() {
        let refusal = |session| {
            Message::SignRefusal(permafrost_wire::SignRefusal {
                session,
                reason: "x".into(),
                unauthorized: false,
                commitment_unknown: false,
            })
        };
        let batch = |session| {
            Message::CommitmentBatch(permafrost_wire::CommitmentBatch {
                session,
                key_id: permafrost_wire::KeyId::new("k").unwrap(),
                epoch: permafrost_wire::Epoch(0),
                commitments: Vec::new(),
            })
        };
        let reply = Reply {
            from: NodeId::new(b"n1".to_vec()).unwrap(),
            peer: PeerId::random(),
            request: MessageKind::CommitmentsRequest,
            session: SessionId([1; 32]),
            payload: Vec::new(),
        };
        assert!(reply.answers(&batch(SessionId([1; 32]))));
        assert!(!reply.answers(&batch(SessionId([2; 32]))));
        assert!(!reply.answers(&refusal(SessionId([1; 32]))));
    }

    /// A commitment that came after the signers were chosen is the normal run (DEBUG); a share
    /// nobody asked for, or any other unexpected message, is worth a line at INFO.
    #[test]
    fn only_late_copies_are_quiet() {
        let refused = |r: Refusal| ProtocolError::Refused(r);
        assert!(late(&refused(Refusal::Unexpected(
            MessageKind::SignCommitment
        ))));
        assert!(late(&refused(Refusal::Finished)));
        assert!(!late(&refused(Refusal::Unexpected(MessageKind::SignShare))));
        assert!(!late(&refused(Refusal::Unexpected(MessageKind::DkgRound1))));
        assert!(!late(&refused(Refusal::BadSignature(
            NodeId::new(b"n1".to_vec()).unwrap()
        ))));
    }
}
