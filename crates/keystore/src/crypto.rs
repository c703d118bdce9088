//! Key derivation (Argon2id) and authenticated encryption (XChaCha20-Poly1305).
//!
//! Every plaintext buffer here is `Zeroizing`; the KEK never leaves a `Zeroizing<[u8; 32]>`.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::format::{NONCE_LEN, TAG_LEN};

/// Length of the key-encryption key in bytes.
pub(crate) const KEK_LEN: usize = 32;

/// Argon2id cost parameters used to derive the keystore's key-encryption key from the
/// passphrase.
///
/// They are chosen when a keystore is created and stored in it; later opens always use the
/// stored parameters. Accepted ranges: `1 <= p_cost <= 64`, `1 <= t_cost <= 1024`,
/// `8 * p_cost <= m_cost_kib <= 4 GiB` (4 194 304 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// Argon2id with m = 19 456 KiB (19 MiB), t = 2, p = 1: the OWASP recommendation.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Tiny parameters (64 KiB, one pass) so tests run fast. Never use them for a real
    /// keystore: they make guessing the passphrase cheap.
    pub const FAST_INSECURE_FOR_TESTS: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    /// Largest accepted memory cost: 4 GiB in KiB.
    const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Largest accepted number of passes.
    const MAX_T_COST: u32 = 1024;
    /// Largest accepted parallelism.
    const MAX_P_COST: u32 = 64;

    /// Checks the ranges documented on the type and builds the argon2 parameters.
    ///
    /// The bounds are checked here, before calling argon2, so that parameters read from a
    /// tampered store can neither overflow argon2's own checks nor ask for terabytes of memory.
    pub(crate) fn argon2_params(&self) -> Result<Params, String> {
        let KdfParams {
            m_cost_kib,
            t_cost,
            p_cost,
        } = *self;
        if !(1..=Self::MAX_P_COST).contains(&p_cost) {
            return Err(format!(
                "Argon2 parallelism p_cost = {p_cost} is outside 1..={}",
                Self::MAX_P_COST
            ));
        }
        if !(1..=Self::MAX_T_COST).contains(&t_cost) {
            return Err(format!(
                "Argon2 passes t_cost = {t_cost} is outside 1..={}",
                Self::MAX_T_COST
            ));
        }
        // p_cost <= 64, so 8 * p_cost cannot overflow.
        let min_m = 8 * p_cost;
        if !(min_m..=Self::MAX_M_COST_KIB).contains(&m_cost_kib) {
            return Err(format!(
                "Argon2 memory m_cost_kib = {m_cost_kib} is outside {min_m}..={} for p_cost = \
                 {p_cost}",
                Self::MAX_M_COST_KIB
            ));
        }
        Params::new(m_cost_kib, t_cost, p_cost, Some(KEK_LEN))
            .map_err(|e| format!("Argon2 parameters rejected: {e}"))
    }
}

/// KEK = Argon2id(passphrase, salt, params), 32 bytes.
pub(crate) fn derive_kek(
    passphrase: &[u8],
    salt: &[u8],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; KEK_LEN]>, String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.argon2_params()?);
    let mut kek = Zeroizing::new([0u8; KEK_LEN]);
    argon
        .hash_password_into(passphrase, salt, &mut kek[..])
        .map_err(|e| format!("Argon2id key derivation failed: {e}"))?;
    Ok(kek)
}

/// Fills `out` from the operating system's random number generator.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), String> {
    OsRng
        .try_fill_bytes(out)
        .map_err(|e| format!("the operating system's random number generator failed: {e}"))
}

fn cipher(kek: &[u8; KEK_LEN]) -> Result<XChaCha20Poly1305, String> {
    XChaCha20Poly1305::new_from_slice(&kek[..]).map_err(|e| format!("bad key length: {e}"))
}

/// Encrypts `plaintext` under `kek` with a fresh random nonce: returns `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal(kek: &[u8; KEK_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    // Room for the tag is reserved up front, so the plaintext copy is encrypted in place and
    // never reallocated (which would leave an unzeroized copy behind).
    let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buffer.extend_from_slice(plaintext);
    cipher(kek)?
        .encrypt_in_place(&XNonce::from(nonce), aad, &mut *buffer)
        .map_err(|_| "encryption failed (message too long)".to_string())?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + buffer.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&buffer);
    Ok(sealed)
}

/// Why [`open`] failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Shorter than a nonce and a tag.
    Truncated,
    /// The tag does not verify: wrong key, wrong associated data, or edited bytes.
    Authentication,
}

/// Decrypts `nonce ‖ ciphertext ‖ tag` produced by [`seal`] with the same `aad`.
pub(crate) fn open(
    kek: &[u8; KEK_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(OpenError::Truncated);
    }
    let (nonce, ciphertext) = sealed
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(OpenError::Truncated)?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    cipher(kek)
        .map_err(|_| OpenError::Authentication)?
        .decrypt_in_place(&XNonce::from(*nonce), aad, &mut *buffer)
        .map_err(|_| OpenError::Authentication)?;
    Ok(buffer)
}

/// Length of an audit chain MAC (HMAC-SHA256) in bytes.
pub(crate) const MAC_LEN: usize = 32;

/// Domain-separation label of the audit chain key: `chain key = HMAC-SHA256(KEK, label)`.
pub(crate) const AUDIT_CHAIN_LABEL: &[u8] = b"permafrost/audit-chain/v1";

/// Domain-separation label of the journal's key: `journal key = HMAC-SHA256(KEK, label)`.
pub(crate) const JOURNAL_LABEL: &[u8] = b"permafrost/keystore-journal/v1";

/// HMAC-SHA256 under a 32-byte key over the concatenation of `parts`.
///
/// The key is zero-padded to SHA-256's 64-byte block in a zeroizing buffer (exactly what HMAC
/// does with a short key), so building the MAC cannot fail.
// generic-array 0.14, which hmac 0.12 takes its key in, marks itself deprecated in favour of
// 1.x; hmac 0.12 cannot take anything else.
#[allow(deprecated)]
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as Mac>::new(
        hmac::digest::generic_array::GenericArray::from_slice(&block[..]),
    );
    for part in parts {
        mac.update(part);
    }
    mac
}

/// An HMAC-SHA256 key derived from the KEK under a label of its own (so that each is used for
/// one thing only): the audit log's MAC chain ([`AUDIT_CHAIN_LABEL`]) and the journal's
/// records ([`JOURNAL_LABEL`]). Zeroized on drop; `Debug` never prints it.
pub(crate) struct MacKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

impl MacKey {
    /// `HMAC-SHA256(KEK, label)`.
    pub(crate) fn derive(kek: &[u8; KEK_LEN], label: &[u8]) -> MacKey {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&hmac_sha256(kek, &[label]).finalize().into_bytes());
        MacKey(key)
    }

    /// HMAC-SHA256 under this key over the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        hmac_sha256(&self.0, parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `parts`, compared in constant time.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        hmac_sha256(&self.0, parts).verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let kek = [7u8; KEK_LEN];
        let sealed = seal(&kek, b"ad", b"secret").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(&open(&kek, b"ad", &sealed).unwrap()[..], b"secret");
        assert_eq!(
            open(&kek, b"other", &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            open(&[8u8; KEK_LEN], b"ad", &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            open(&kek, b"ad", &sealed[..NONCE_LEN + TAG_LEN - 1]),
            Err(OpenError::Truncated)
        );
        // Fresh nonce every time.
        assert_ne!(seal(&kek, b"ad", b"secret").unwrap(), sealed);
    }

    #[test]
    fn params_are_range_checked_without_overflow() {
        assert!(KdfParams::default().argon2_params().is_ok());
        assert!(KdfParams::FAST_INSECURE_FOR_TESTS.argon2_params().is_ok());
        for bad in [
            KdfParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 0,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: u32::MAX,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: 0,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: u32::MAX,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 7,
                t_cost: 1,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 9,
            },
            KdfParams {
                m_cost_kib: u32::MAX,
                t_cost: 1,
                p_cost: 1,
            },
        ] {
            assert!(bad.argon2_params().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn kek_depends_on_passphrase_salt_and_params() {
        let p = KdfParams::FAST_INSECURE_FOR_TESTS;
        let a = derive_kek(b"pass", &[1; 16], &p).unwrap();
        assert_eq!(*a, *derive_kek(b"pass", &[1; 16], &p).unwrap());
        assert_ne!(*a, *derive_kek(b"pasS", &[1; 16], &p).unwrap());
        assert_ne!(*a, *derive_kek(b"pass", &[2; 16], &p).unwrap());
        let q = KdfParams { t_cost: 2, ..p };
        assert_ne!(*a, *derive_kek(b"pass", &[1; 16], &q).unwrap());
    }

    #[test]
    fn mac_keys_are_hmac_sha256_domain_separated_and_redacted() {
        // The zero-padded key gives the same MAC as the hmac crate's own slice constructor.
        let kek = [7u8; KEK_LEN];
        let key = MacKey::derive(&kek, AUDIT_CHAIN_LABEL);
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&kek).unwrap();
        reference.update(AUDIT_CHAIN_LABEL);
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(*key.0, expected);
        assert_ne!(*key.0, kek);
        let tag = key.mac(&[b"a", b"bc"]);
        assert_eq!(tag, key.mac(&[b"abc"]));
        assert!(key.verify(&[b"abc"], &tag));
        assert!(!key.verify(&[b"abd"], &tag));
        assert!(!key.verify(&[b"abc"], &tag[..31]));
        assert!(!MacKey::derive(&[8u8; KEK_LEN], AUDIT_CHAIN_LABEL).verify(&[b"abc"], &tag));
        // The journal's key, from the same KEK, is another key.
        assert!(!MacKey::derive(&kek, JOURNAL_LABEL).verify(&[b"abc"], &tag));
        assert_eq!(format!("{key:?}"), "MacKey(<redacted>)");
    }
}
