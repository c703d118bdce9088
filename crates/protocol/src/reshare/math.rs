use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{
    CoefficientCommitment, KeyPackage, PublicKeyPackage, SigningShare,
    VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::{compute_lagrange_coefficient, Field, Group, Identifier, VerifyingKey};
use rand_core::CryptoRngCore;

use crate::{ProtocolError, Suite};

type Scalar<S> = <<<S as frost_core::Ciphersuite>::Group as Group>::Field as Field>::Scalar;
type Element<S> = <<S as frost_core::Ciphersuite>::Group as Group>::Element;

fn frost_err(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Frost(e.to_string())
}

/// What one dealer hands out: the Feldman commitment to its polynomial `g_i` (public, the same
/// for every new member) and `g_i(j)` for every new member `j` (secret, one per recipient).
pub struct Dealing<S: Suite> {
    /// `[a_0·G, …, a_{t'−1}·G]` with `a_0` the dealer's share.
    pub commitment: VerifiableSecretSharingCommitment<S>,
    /// `g_i(j)` per new member.
    pub shares: BTreeMap<Identifier<S>, SigningShare<S>>,
}

/// Why a dealer's contribution is refused, as seen by one new member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DealingFault {
    /// `len(C_i) != t'`.
    WrongDegree {
        /// Coefficients committed.
        got: usize,
        /// The new threshold.
        expected: usize,
    },
    /// `C_i[0] != Y_i`: the dealer did not share its own epoch-e share.
    WrongConstantTerm,
    /// `g_i(j)·G != Σ_k C_i[k]·j^k`: the share does not match the commitment.
    ShareMismatch,
}

impl std::fmt::Display for DealingFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DealingFault::WrongDegree { got, expected } => {
                write!(
                    f,
                    "commitment has {got} coefficients, the new threshold is {expected}"
                )
            }
            DealingFault::WrongConstantTerm => {
                f.write_str("commitment's constant term is not the dealer's verifying share")
            }
            DealingFault::ShareMismatch => f.write_str("share does not match the commitment"),
        }
    }
}

/// A dealer re-shares its share `share` to `recipients` with threshold `new_threshold`:
/// a random polynomial of degree `t' − 1` whose constant term is the share.
pub fn deal<S: Suite>(
    share: &SigningShare<S>,
    new_threshold: u16,
    recipients: &BTreeSet<Identifier<S>>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Dealing<S>, ProtocolError> {
    if new_threshold < 2 || usize::from(new_threshold) > recipients.len() {
        return Err(ProtocolError::InvalidParameters(format!(
            "new threshold {new_threshold} for {} new members",
            recipients.len()
        )));
    }
    let mut rng = rng;
    let mut coefficients: Vec<Scalar<S>> = Vec::with_capacity(usize::from(new_threshold));
    coefficients.push(share.to_scalar());
    for _ in 1..new_threshold {
        coefficients.push(<<S::Group as Group>::Field as Field>::random(&mut rng));
    }
    // The coefficients are secret: multiplied in constant time, with the suite's tables.
    let commitment = VerifiableSecretSharingCommitment::new(
        coefficients
            .iter()
            .map(|a| CoefficientCommitment::new(S::mul_generator(a)))
            .collect(),
    );
    let shares = recipients
        .iter()
        .map(|j| (*j, SigningShare::from_coefficients(&coefficients, *j)))
        .collect();
    // Overwrite the polynomial before it is dropped (the scalar types offer no zeroize bound).
    for c in coefficients.iter_mut() {
        *c = <<S::Group as Group>::Field as Field>::zero();
    }
    Ok(Dealing { commitment, shares })
}

/// A new member's checks of one dealer: the degree, the constant term against the dealer's
/// epoch-e verifying share, and its own share against the commitment.
pub fn check_dealing<S: Suite>(
    dealer_verifying_share: &VerifyingShare<S>,
    commitment: &VerifiableSecretSharingCommitment<S>,
    new_threshold: u16,
    recipient: Identifier<S>,
    share: &SigningShare<S>,
) -> Result<(), DealingFault> {
    let coefficients = commitment.coefficients();
    if coefficients.len() != usize::from(new_threshold) {
        return Err(DealingFault::WrongDegree {
            got: coefficients.len(),
            expected: usize::from(new_threshold),
        });
    }
    match coefficients.first() {
        Some(c0) if c0.value() == dealer_verifying_share.to_element() => {}
        _ => return Err(DealingFault::WrongConstantTerm),
    }
    if crate::vss::share_matches(recipient, share, commitment) {
        Ok(())
    } else {
        Err(DealingFault::ShareMismatch)
    }
}

fn lagrange_at_zero<S: Suite>(
    dealers: &BTreeSet<Identifier<S>>,
) -> Result<BTreeMap<Identifier<S>, Scalar<S>>, ProtocolError> {
    dealers
        .iter()
        .map(|i| {
            Ok((
                *i,
                compute_lagrange_coefficient(dealers, None, *i).map_err(frost_err)?,
            ))
        })
        .collect()
}

/// `C' = Σ_{i∈H} λ_i·C_i`, checked to commit to the unchanged group key, and the public key
/// package of the new committee derived from it. Anyone holding the commitments can compute
/// this (the coordinator and old members check confirmations with it).
pub fn public_key_package_from_dealings<S: Suite>(
    commitments: &BTreeMap<Identifier<S>, VerifiableSecretSharingCommitment<S>>,
    group_key: &VerifyingKey<S>,
    new_committee: &BTreeSet<Identifier<S>>,
    new_threshold: u16,
) -> Result<PublicKeyPackage<S>, ProtocolError> {
    let dealers: BTreeSet<_> = commitments.keys().copied().collect();
    let lambdas = lagrange_at_zero::<S>(&dealers)?;
    let t = usize::from(new_threshold);
    // C'ₖ = Σᵢ λᵢ·Cᵢ,ₖ, one variable-time combination per coefficient (all public).
    let mut terms: Vec<Vec<(Element<S>, Scalar<S>)>> =
        vec![Vec::with_capacity(commitments.len()); t];
    for (i, commitment) in commitments {
        let coefficients = commitment.coefficients();
        if coefficients.len() != t {
            return Err(ProtocolError::InvalidParameters(
                "a dealing of the wrong degree".into(),
            ));
        }
        let lambda = lambdas
            .get(i)
            .copied()
            .ok_or_else(|| frost_err("missing lambda"))?;
        for (k, c) in coefficients.iter().enumerate() {
            terms[k].push((c.value(), lambda));
        }
    }
    let combined: Vec<Element<S>> = terms
        .iter()
        .map(|terms| S::public_linear_combination(terms))
        .collect();
    if combined.first() != Some(&group_key.to_element()) {
        return Err(ProtocolError::Frost(
            "combined commitment does not commit to the group key".into(),
        ));
    }
    let commitment = VerifiableSecretSharingCommitment::new(
        combined
            .into_iter()
            .map(CoefficientCommitment::new)
            .collect(),
    );
    let package = crate::vss::public_key_package(new_committee, &commitment).map_err(frost_err)?;
    // `from_commitment` recomputes the key from C'[0]; it must be exactly the old one,
    // parity included (secp256k1-tr stores the tweaked key as it is).
    if package.verifying_key() != group_key {
        return Err(ProtocolError::Frost("group key changed".into()));
    }
    Ok(package)
}

/// A new member combines the dealings of the agreed dealer set `H` (exactly the keys of
/// `dealings`: commitment and the share addressed to `me`) into its new key package, and the
/// new public key package; both are checked against the group key.
pub fn combine<S: Suite>(
    dealings: &BTreeMap<Identifier<S>, (VerifiableSecretSharingCommitment<S>, SigningShare<S>)>,
    group_key: &VerifyingKey<S>,
    new_committee: &BTreeSet<Identifier<S>>,
    new_threshold: u16,
    me: Identifier<S>,
) -> Result<(KeyPackage<S>, PublicKeyPackage<S>), ProtocolError> {
    let commitments = dealings.iter().map(|(i, (c, _))| (*i, c.clone())).collect();
    let package = public_key_package_from_dealings::<S>(
        &commitments,
        group_key,
        new_committee,
        new_threshold,
    )?;
    let dealers: BTreeSet<_> = dealings.keys().copied().collect();
    let lambdas = lagrange_at_zero::<S>(&dealers)?;
    let mut secret = <<S::Group as Group>::Field as Field>::zero();
    for (i, (_, share)) in dealings {
        let lambda = lambdas
            .get(i)
            .copied()
            .ok_or_else(|| frost_err("missing lambda"))?;
        secret = secret + lambda * share.to_scalar();
    }
    let signing_share = SigningShare::new(secret);
    S::zeroize_scalar(&mut secret);
    let verifying_share = *package
        .verifying_shares()
        .get(&me)
        .ok_or_else(|| ProtocolError::InvalidParameters("not a new member".into()))?;
    if VerifyingShare::new(S::mul_generator(&signing_share.to_scalar())) != verifying_share {
        return Err(ProtocolError::Frost(
            "combined share does not match the new verifying share".into(),
        ));
    }
    let key_package = KeyPackage::new(
        me,
        signing_share,
        verifying_share,
        *group_key,
        new_threshold,
    );
    Ok((key_package, package))
}
