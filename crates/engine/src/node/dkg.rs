//! Joining a DKG: only a coordinator opens one, only over signer nodes, only for a key this node
//! does not hold and is not creating already, only on an operator's approval, and never twice
//! for one session.

use permafrost_protocol::{lifecycle, ProtocolError, Timestamp};
use permafrost_wire::{DkgOpen, NodeId};
use rand_core::CryptoRngCore;

use super::{NodeCore, NodeStore};
use crate::any;
use crate::sessions::Route;

impl<St: NodeStore> NodeCore<St> {
    /// Joins the DKG `open` from `coordinator`.
    pub(super) fn open_dkg(
        &mut self,
        coordinator: NodeId,
        open: DkgOpen,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        let route = Route::Session(open.session);
        if self.sessions.contains(&route) {
            // The same open again (a retransmission): this node already takes part.
            return Ok(());
        }
        self.refuse_concluded(&open.session)?;
        self.refuse_strangers(&open.committee)?;
        if let Some((other, _)) = self.dkg_keys.iter().find(|(_, k)| **k == open.key_id) {
            return Err(ProtocolError::InvalidParameters(format!(
                "a DKG of key {} is already running here (session {other})",
                open.key_id
            )));
        }
        if self.holds_key(&open.key_id) {
            return Err(ProtocolError::InvalidParameters(format!(
                "key {} already exists on this node",
                open.key_id
            )));
        }
        let (session, key_id) = (open.session, open.key_id.clone());
        let action = lifecycle::dkg_action(&open);
        let approvals = open.approvals.clone();
        let coordinator_id = coordinator.clone();
        let participant = any::dkg_participant(
            open,
            coordinator,
            self.setup.identity.clone(),
            self.setup.verifier.clone(),
            now,
            rng,
        )?;
        // The session is remembered, in the write that makes the approval durable, before the
        // first message leaves: once this node stops taking part (the DKG ends, a write fails,
        // the node restarts) an open replayed for it is refused, so it never sends two
        // different round-1 packages under one session id.
        self.approve_lifecycle(
            &coordinator_id,
            session,
            &action,
            &approvals,
            now,
            |store| {
                store.conclude_session(&session).map_err(|e| {
                    ProtocolError::Frost(format!("cannot record the DKG session: {e}"))
                })
            },
        )?;
        self.dkg_keys.insert(session, key_id);
        self.drive(|sessions, handler| sessions.insert(route, participant, handler));
        // An abort that overtook this open ends the DKG now.
        self.deliver_early(session, now, rng);
        Ok(())
    }
}
