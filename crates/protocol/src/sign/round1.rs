//! FROST's first round for a signer (RFC 9591 §5.1): two secret nonces and the commitment to
//! them, made as frost's `round1::commit` makes them — the same hedged nonce generation
//! (frost's `Nonce::new`: the hash of fresh randomness and the signing share) — with two
//! differences in how, not in what:
//!
//! - the commitment points are computed by the suite's fixed-base multiplication
//!   ([`Suite::mul_generator`], with precomputed tables), where frost multiplies its generator
//!   as it would any point;
//! - the commitment is serialized once, when it is made ([`Nonces::serialized_commitments`]):
//!   the signer sends those bytes, and recognises its own entry in a package by them.
//!
//! The tests below check both against frost.

use std::fmt;

use frost_core::keys::SigningShare;
use frost_core::round1::{Nonce, NonceCommitment, SigningCommitments};
use frost_core::{Error, Scalar};
use rand_core::{CryptoRng, RngCore};

use crate::Suite;

/// A signer's two secret nonces for one signature, and its commitment to them. Used once:
/// [`super::round2::sign`] consumes them. Never serialized, never persisted, never printed.
pub struct Nonces<S: Suite> {
    /// On the heap, so that moving the nonces (into a slot, out of a pool, into the signing)
    /// leaves no copy of them behind; zeroized when dropped.
    secret: Box<Secret<S>>,
    commitments: SigningCommitments<S>,
    /// `commitments.serialize()`.
    serialized: Vec<u8>,
}

/// The two nonces d and e.
struct Secret<S: Suite> {
    hiding: Scalar<S>,
    binding: Scalar<S>,
}

impl<S: Suite> Secret<S> {
    /// Overwrites both nonces with zero.
    fn wipe(&mut self) {
        S::zeroize_scalar(&mut self.hiding);
        S::zeroize_scalar(&mut self.binding);
    }
}

impl<S: Suite> Drop for Secret<S> {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl<S: Suite> Nonces<S> {
    /// Fresh nonces hedged with `secret` (frost's `Nonce::new`), and the commitment to them.
    pub fn commit<R: RngCore + CryptoRng>(
        secret: &SigningShare<S>,
        rng: &mut R,
    ) -> Result<Self, Error<S>> {
        let hiding = Nonce::<S>::new(secret, rng).to_scalar();
        let binding = Nonce::<S>::new(secret, rng).to_scalar();
        Self::from_scalars(hiding, binding)
    }

    /// Nonces with these values (for tests against frost).
    pub(crate) fn from_scalars(hiding: Scalar<S>, binding: Scalar<S>) -> Result<Self, Error<S>> {
        let secret = Box::new(Secret { hiding, binding });
        let commitments = SigningCommitments::new(
            NonceCommitment::new(S::mul_generator(&secret.hiding)),
            NonceCommitment::new(S::mul_generator(&secret.binding)),
        );
        let serialized = commitments.serialize()?;
        Ok(Self {
            secret,
            commitments,
            serialized,
        })
    }

    /// The commitment to these nonces.
    pub fn commitments(&self) -> &SigningCommitments<S> {
        &self.commitments
    }

    /// frost's serialization of [`Nonces::commitments`].
    pub fn serialized_commitments(&self) -> &[u8] {
        &self.serialized
    }

    /// The hiding nonce d.
    pub(crate) fn hiding(&self) -> Scalar<S> {
        self.secret.hiding
    }

    /// The binding nonce e.
    pub(crate) fn binding(&self) -> Scalar<S> {
        self.secret.binding
    }
}

impl<S: Suite> fmt::Debug for Nonces<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("commitments", &self.commitments)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::round1::SigningNonces;
    use frost_core::{Field, Group};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    type Ed = frost_ed25519::Ed25519Sha512;
    type Secp = frost_secp256k1::Secp256K1Sha256;
    type Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

    /// From the same randomness, the nonces and the commitment are frost's (`round1::commit`),
    /// and the bytes are frost's serialization of the commitment; fresh nonces are distinct,
    /// and so are their commitments.
    fn commitments_are_frosts<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let secret =
            SigningShare::<S>::new(<<S::Group as Group>::Field as Field>::random(&mut rng));
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..64u64 {
            let ours =
                Nonces::<S>::commit(&secret, &mut ChaCha20Rng::seed_from_u64(round)).unwrap();
            let (theirs, commitments) =
                frost_core::round1::commit(&secret, &mut ChaCha20Rng::seed_from_u64(round));
            assert!(ours.hiding() == theirs.hiding().to_scalar());
            assert!(ours.binding() == theirs.binding().to_scalar());
            assert_eq!(*ours.commitments(), commitments);
            let theirs: SigningNonces<S> = theirs;
            assert_eq!(
                ours.serialized_commitments(),
                theirs.commitments().serialize().unwrap()
            );
            assert!(seen.insert(ours.serialized_commitments().to_vec()));
            assert!(ours.hiding() != ours.binding());
        }
        // The nonces are not printed (in any of the ways a scalar is shown).
        let nonces = Nonces::<S>::commit(&secret, &mut rng).unwrap();
        let printed = format!("{nonces:?}");
        for secret in [nonces.hiding(), nonces.binding()] {
            let bytes = <<S::Group as Group>::Field as Field>::serialize(&secret);
            let hex: String = bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            assert!(!printed.contains(&hex), "{printed}");
            assert!(
                !printed.contains(&format!("{:?}", bytes.as_ref())),
                "{printed}"
            );
        }
    }

    #[test]
    fn commitments_equal_frosts() {
        commitments_are_frosts::<Ed>();
        commitments_are_frosts::<Secp>();
        commitments_are_frosts::<Tr>();
    }

    /// What dropping the nonces runs zeroes both of them, where they lie.
    fn zeroized<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let secret =
            SigningShare::<S>::new(<<S::Group as Group>::Field as Field>::random(&mut rng));
        let mut nonces = Nonces::<S>::commit(&secret, &mut rng).unwrap();
        let zero = <<S::Group as Group>::Field as Field>::zero();
        assert!(nonces.hiding() != zero && nonces.binding() != zero);
        nonces.secret.wipe();
        assert!(nonces.hiding() == zero && nonces.binding() == zero);
    }

    #[test]
    fn nonces_are_zeroized() {
        zeroized::<Ed>();
        zeroized::<Secp>();
        zeroized::<Tr>();
    }
}
