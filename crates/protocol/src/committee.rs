use std::collections::BTreeMap;

use frost_core::Identifier;
use permafrost_wire::{participant_identifier, NodeId};

use crate::{ProtocolError, Suite};

/// Largest committee a session accepts. The wire caps are sized for it.
pub const MAX_COMMITTEE: usize = 100;

/// A set of nodes with their FROST identifiers: sorted by node id, no duplicates, every
/// identifier derived from its node id with `Identifier::derive`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committee<S: Suite> {
    members: Vec<NodeId>,
    by_identifier: BTreeMap<Identifier<S>, NodeId>,
    by_node: BTreeMap<NodeId, Identifier<S>>,
}

impl<S: Suite> Committee<S> {
    /// Builds a committee; refuses an empty or oversized one and duplicates.
    pub fn new(members: impl IntoIterator<Item = NodeId>) -> Result<Self, ProtocolError> {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        let given = members.len();
        members.sort();
        members.dedup();
        if members.len() != given {
            return Err(ProtocolError::InvalidParameters(
                "committee lists a node twice".into(),
            ));
        }
        if members.is_empty() || members.len() > MAX_COMMITTEE {
            return Err(ProtocolError::InvalidParameters(format!(
                "committee of {} nodes; 1 to {MAX_COMMITTEE} allowed",
                members.len()
            )));
        }
        let mut by_identifier = BTreeMap::new();
        let mut by_node = BTreeMap::new();
        for node in &members {
            let id = participant_identifier::<S>(node)
                .map_err(|e| ProtocolError::InvalidParameters(e.to_string()))?;
            if by_identifier.insert(id, node.clone()).is_some() {
                return Err(ProtocolError::InvalidParameters(
                    "two nodes derive the same identifier".into(),
                ));
            }
            by_node.insert(node.clone(), id);
        }
        Ok(Committee {
            members,
            by_identifier,
            by_node,
        })
    }

    /// The members, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a committee has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.by_node.contains_key(node)
    }

    /// The FROST identifier of a member.
    pub fn identifier(&self, node: &NodeId) -> Option<Identifier<S>> {
        self.by_node.get(node).copied()
    }

    /// The member with a FROST identifier.
    pub fn node(&self, identifier: &Identifier<S>) -> Option<&NodeId> {
        self.by_identifier.get(identifier)
    }

    /// The members' identifiers, sorted by identifier.
    pub fn identifiers(&self) -> impl Iterator<Item = Identifier<S>> + '_ {
        self.by_identifier.keys().copied()
    }

    /// Members of the committee that are not in `present`.
    pub fn missing<'a>(&'a self, present: impl Fn(&NodeId) -> bool + 'a) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|n| !present(n))
            .cloned()
            .collect()
    }
}
