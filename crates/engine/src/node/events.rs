//! Carrying out what the sessions ask for, in order: every event that must be durable is
//! written before the outputs after it; when a write fails the session's later outputs are
//! dropped ([`Handled::Abort`]), so nothing that depended on it is sent.

use std::collections::{BTreeMap, VecDeque};

use permafrost_keystore::{AuditKind, ReshareConclusion, ShareState};
use permafrost_protocol::{digest_bytes, ProtocolError, Timestamp};
use permafrost_wire::{Epoch, KeyId, ReshareCommit, SessionId};

use super::{audit, NodeNotice, NodeOutput, NodeSetup, NodeStore, ReshareRecord, StoreError};
use crate::any::{AnyEvent, AnyOutput, StoredShare};
use crate::sessions::{Handled, Route};

/// Work an event asks for that needs the sessions themselves (done after the outputs).
pub(super) enum FollowUp {
    StartSigner(KeyId, Epoch),
    StopSigner(KeyId),
}

/// What the handler may read and write while a session's outputs are carried out.
pub(super) struct EventContext<'a, St: NodeStore> {
    pub(super) store: &'a mut St,
    pub(super) setup: &'a NodeSetup,
    pub(super) dkg_keys: &'a BTreeMap<SessionId, KeyId>,
    pub(super) reshares: &'a BTreeMap<SessionId, ReshareRecord>,
    pub(super) outputs: &'a mut VecDeque<NodeOutput>,
    /// Signature shares, and their `ShareProduced` notices, held until the store is synced
    /// ([`NodeCore::flush`](super::NodeCore::flush)).
    pub(super) held: &'a mut Vec<NodeOutput>,
    /// Audit entries of signature shares, by session, written at the next flush.
    pub(super) staged_audits: &'a mut Vec<(SessionId, permafrost_keystore::AuditEntry)>,
    pub(super) follow: Vec<FollowUp>,
    pub(super) now: Timestamp,
}

impl<St: NodeStore> EventContext<'_, St> {
    /// Carries out one output of the session at `route`.
    pub(super) fn handle(&mut self, route: &Route, output: AnyOutput) -> Handled {
        match output {
            AnyOutput::Send { to, message } => {
                // A share leaves only once its admission and audit entry are durable: it waits
                // for the next sync, which the shell runs once for all the shares of a batch.
                let share = matches!(message, permafrost_wire::Message::SignShare(_));
                let output = NodeOutput::Transmit { to, message };
                if share {
                    self.held.push(output);
                } else {
                    self.outputs.push_back(output);
                }
                Handled::Continue
            }
            AnyOutput::Event(event) => self.event(route, event),
            // A node's sessions (signer, DKG and reshare members) aggregate nothing.
            AnyOutput::Aggregate(_) => Handled::Continue,
        }
    }

    fn notice(&mut self, notice: NodeNotice) {
        self.outputs.push_back(NodeOutput::Notice(notice));
    }

    /// Reports a failed write; the session's later outputs are dropped.
    fn failed(&mut self, operation: &'static str, key_id: &KeyId, error: StoreError) -> Handled {
        self.notice(NodeNotice::StoreFailed {
            operation,
            key_id: Some(key_id.clone()),
            error,
        });
        Handled::Abort
    }

    fn event(&mut self, route: &Route, event: AnyEvent) -> Handled {
        let reshare = match route {
            Route::Session(session) => self.reshares.get(session).map(|r| (*session, r.clone())),
            Route::Signer(_) => None,
        };
        match event {
            AnyEvent::KeyPending(share) => self.store_pending(&share),
            AnyEvent::KeyActivated {
                key_id,
                epoch,
                public_key_package,
                certificate,
            } => {
                let Route::Session(session) = route else {
                    return Handled::Abort;
                };
                // The share on disk must be the one the commit certifies (never another DKG's).
                let stored = match self.store.share(&key_id, epoch) {
                    Ok(Some((ShareState::Pending, share))) => {
                        digest_bytes("public-key-package", &share.public_key_package)
                    }
                    Ok(_) => {
                        self.notice(NodeNotice::ActivationRefused {
                            key_id,
                            epoch,
                            why: "no pending share of this epoch is stored".into(),
                        });
                        return Handled::Abort;
                    }
                    Err(e) => return self.failed("reading the pending share", &key_id, e),
                };
                if stored != public_key_package {
                    self.notice(NodeNotice::ActivationRefused {
                        key_id,
                        epoch,
                        why:
                            "the stored pending share's public key package is not the committed one"
                                .into(),
                    });
                    return Handled::Abort;
                }
                let entry = audit::entry(
                    self.now,
                    AuditKind::Dkg,
                    Some(&key_id),
                    epoch,
                    None,
                    None,
                    "key activated".into(),
                );
                if let Err(e) = self
                    .store
                    .activate(&key_id, epoch, session, &certificate, &entry)
                {
                    return self.failed("activating a share", &key_id, e);
                }
                self.notice(NodeNotice::KeyActivated {
                    key_id: key_id.clone(),
                    epoch,
                });
                self.follow.push(FollowUp::StartSigner(key_id, epoch));
                Handled::Continue
            }
            AnyEvent::Dealt { key_id, session } => {
                // Durable before the dealing leaves. A dealer's record says so from the open
                // (one synced write for the approval, the record and the dealing); written
                // here only for a record that does not.
                let Some((_, record)) = reshare else {
                    return Handled::Abort;
                };
                if !record.dealt {
                    let record = ReshareRecord {
                        dealt: true,
                        ..record
                    };
                    if let Err(e) = self.store.put_reshare(&record) {
                        return self.failed("recording a dealing", &key_id, e);
                    }
                }
                self.notice(NodeNotice::Dealt { key_id, session });
                Handled::Continue
            }
            AnyEvent::ReshareCommitted {
                key_id,
                epoch,
                certificate,
            } => {
                let Some((session, _)) = reshare else {
                    return Handled::Abort;
                };
                let detail = format!(
                    "reshare {session} committed: epoch {epoch} active, older epochs deleted"
                );
                let change = ReshareConclusion::Promote { epoch: epoch.0 };
                if let Err(e) =
                    self.conclude(&key_id, epoch, change, &session, Some(&certificate), detail)
                {
                    return self.failed("concluding a reshare (both epochs kept)", &key_id, e);
                }
                self.notice(NodeNotice::ReshareCommitted {
                    key_id: key_id.clone(),
                    epoch,
                });
                self.follow.push(FollowUp::StartSigner(key_id, epoch));
                Handled::Continue
            }
            AnyEvent::ShareRetired {
                key_id,
                epoch,
                certificate,
            } => {
                let Some((session, _)) = reshare else {
                    return Handled::Abort;
                };
                let detail = format!(
                    "reshare {session} committed without this node: epoch {epoch} share deleted"
                );
                let change = ReshareConclusion::Retire { epoch: epoch.0 };
                if let Err(e) =
                    self.conclude(&key_id, epoch, change, &session, Some(&certificate), detail)
                {
                    return self.failed("concluding a reshare (share kept)", &key_id, e);
                }
                self.notice(NodeNotice::ShareRetired {
                    key_id: key_id.clone(),
                    epoch,
                });
                self.follow.push(FollowUp::StopSigner(key_id));
                Handled::Continue
            }
            AnyEvent::ShareProduced {
                session,
                key_id,
                epoch,
                message_digest,
                requester,
            } => {
                // The audit record is written and synced at the next flush, before the share
                // is sent (the share is held until then: see `handle` above).
                self.staged_audits.push((
                    session,
                    audit::entry(
                        self.now,
                        AuditKind::SignatureShare,
                        Some(&key_id),
                        epoch,
                        Some(message_digest),
                        (self.setup.peer_name)(&requester),
                        String::new(),
                    ),
                ));
                // Noticed with the share, once its entry is durable.
                self.held
                    .push(NodeOutput::Notice(NodeNotice::ShareProduced {
                        session,
                        key_id,
                        epoch,
                    }));
                Handled::Continue
            }
            AnyEvent::Failed(error) => {
                if let Some((session, record)) = reshare {
                    self.reshare_failed(session, &record, error);
                } else {
                    if let Route::Session(session) = route {
                        if let Some(key_id) = self.dkg_keys.get(session) {
                            let key_id = key_id.clone();
                            self.dkg_failed(&key_id, &error);
                        }
                    }
                    self.notice(NodeNotice::SessionFailed {
                        route: route.clone(),
                        error,
                    });
                }
                Handled::Continue
            }
            AnyEvent::KeyCreated { .. }
            | AnyEvent::SignatureReady { .. }
            | AnyEvent::KeyReshared { .. } => Handled::Continue,
        }
    }

    /// Stores a new share as PENDING. Persist before acknowledging: the confirmation after
    /// this event promises the share is on disk. Never over an ACTIVE share: a PENDING one
    /// only ever fills an epoch not yet in force.
    fn store_pending(&mut self, share: &StoredShare) -> Handled {
        match self.store.share(&share.key_id, share.epoch) {
            Ok(Some((ShareState::Active, _))) => {
                self.notice(NodeNotice::PendingOverActiveRefused {
                    key_id: share.key_id.clone(),
                    epoch: share.epoch,
                });
                return Handled::Abort;
            }
            Ok(_) => {}
            Err(e) => return self.failed("reading the keystore", &share.key_id, e),
        }
        if let Err(e) = self.store.put_pending(share) {
            return self.failed("storing a pending share", &share.key_id, e);
        }
        self.notice(NodeNotice::SharePending {
            key_id: share.key_id.clone(),
            epoch: share.epoch,
        });
        Handled::Continue
    }

    /// Concludes a reshare in the store (one step, audited).
    fn conclude(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        change: ReshareConclusion,
        session: &SessionId,
        certificate: Option<&ReshareCommit>,
        detail: String,
    ) -> Result<(), StoreError> {
        let entry = audit::entry(
            self.now,
            AuditKind::Reshare,
            Some(key_id),
            epoch,
            None,
            None,
            detail,
        );
        self.store
            .conclude_reshare(key_id, change, session, certificate, &entry)
    }

    /// A reshare that ended without a commit: its PENDING share goes, the old epoch stays in
    /// force.
    fn reshare_failed(&mut self, session: SessionId, record: &ReshareRecord, error: ProtocolError) {
        let key_id = record.key_id().clone();
        let Some(next) = record.epoch().0.checked_add(1).map(Epoch) else {
            return;
        };
        let detail = format!("reshare {session} aborted: {error}");
        let change = ReshareConclusion::Discard { epoch: next.0 };
        match self.conclude(&key_id, next, change, &session, None, detail) {
            Ok(()) => self.notice(NodeNotice::ReshareAborted {
                key_id,
                session,
                error,
            }),
            Err(e) => {
                self.failed(
                    "concluding an aborted reshare (both epochs kept)",
                    &key_id,
                    e,
                );
            }
        }
    }

    /// A failed DKG leaves nothing behind, except when the failure is a missing commit: then
    /// the other members may have activated the key, so the pending share is kept for an
    /// operator.
    fn dkg_failed(&mut self, key_id: &KeyId, error: &ProtocolError) {
        if matches!(
            error,
            ProtocolError::Timeout {
                phase: "DKG commit",
                ..
            }
        ) {
            self.notice(NodeNotice::DkgShareKept {
                key_id: key_id.clone(),
            });
            return;
        }
        let had_pending = matches!(
            self.store.share(key_id, Epoch(0)),
            Ok(Some((ShareState::Pending, _)))
        );
        match self.store.delete_pending(key_id, Epoch(0)) {
            Ok(()) if had_pending => self.notice(NodeNotice::DkgShareDiscarded {
                key_id: key_id.clone(),
            }),
            Ok(()) => {}
            Err(e) => {
                self.failed("discarding a failed DKG's pending share", key_id, e);
            }
        }
    }
}
