//! Child-key derivation paths: which child of a key a signature is for.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::WireError;

/// Most indices a [`DerivationPath`] may have. BIP-32 allows 255 levels; every level costs each
/// signer a scalar multiplication per signature, and custody layouts use a handful.
pub const MAX_PATH_DEPTH: usize = 16;

/// First hardened BIP-32 index (2³¹). Hardened derivation needs the parent private key, which no
/// node holds, so every index of a path is below it.
pub const HARDENED_OFFSET: u32 = 1 << 31;

/// A non-hardened derivation path such as `m/0/17`: up to [`MAX_PATH_DEPTH`] indices, each
/// below [`HARDENED_OFFSET`]. The empty path (`m`) names the key itself.
///
/// Text form: `m`, or `m` followed by `/index` for each level, indices in decimal without
/// leading zeros. Hardened indices (`0'`, `0h`) are refused with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Vec<u32>", into = "Vec<u32>")]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// The key itself (`m`).
    pub const ROOT: DerivationPath = DerivationPath(Vec::new());

    /// Validates and wraps the indices of a path.
    pub fn new(indices: Vec<u32>) -> Result<Self, WireError> {
        if indices.len() > MAX_PATH_DEPTH {
            return Err(invalid(format!(
                "{} levels; at most {MAX_PATH_DEPTH} are accepted",
                indices.len()
            )));
        }
        if let Some(hardened) = indices.iter().find(|&&i| i >= HARDENED_OFFSET) {
            return Err(invalid(format!(
                "index {hardened} is hardened (2^31 or more); only non-hardened derivation \
                 exists for threshold keys, because it needs no private key"
            )));
        }
        Ok(DerivationPath(indices))
    }

    /// The indices, from the key down.
    pub fn indices(&self) -> &[u32] {
        &self.0
    }

    /// Whether this is the key itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

fn invalid(reason: String) -> WireError {
    WireError::InvalidId {
        what: "derivation path",
        reason,
    }
}

impl TryFrom<Vec<u32>> for DerivationPath {
    type Error = WireError;
    fn try_from(indices: Vec<u32>) -> Result<Self, Self::Error> {
        DerivationPath::new(indices)
    }
}

impl From<DerivationPath> for Vec<u32> {
    fn from(path: DerivationPath) -> Self {
        path.0
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for index in &self.0 {
            write!(f, "/{index}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DerivationPath {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut levels = s.split('/');
        if levels.next() != Some("m") {
            return Err(invalid(format!("{s:?} does not start with \"m\"")));
        }
        let mut indices = Vec::new();
        for level in levels {
            if level.ends_with(['\'', 'h', 'H']) {
                return Err(invalid(format!(
                    "level {level:?} is hardened; only non-hardened derivation exists for \
                     threshold keys, because it needs no private key"
                )));
            }
            let canonical = !level.is_empty()
                && level.bytes().all(|b| b.is_ascii_digit())
                && (level == "0" || !level.starts_with('0'));
            if !canonical {
                return Err(invalid(format!(
                    "level {level:?} is not a decimal index without leading zeros"
                )));
            }
            let index: u32 = level
                .parse()
                .map_err(|_| invalid(format!("level {level:?} is above 2^31 - 1")))?;
            if indices.len() == MAX_PATH_DEPTH {
                return Err(invalid(format!(
                    "more than {MAX_PATH_DEPTH} levels are not accepted"
                )));
            }
            indices.push(index);
        }
        DerivationPath::new(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_and_print_the_same() {
        for text in ["m", "m/0", "m/0/17", "m/2147483647/1/2"] {
            let path: DerivationPath = text.parse().unwrap();
            assert_eq!(path.to_string(), text);
        }
        let path: DerivationPath = "m/0/17".parse().unwrap();
        assert_eq!(path.indices(), &[0, 17]);
        assert!("m".parse::<DerivationPath>().unwrap().is_root());
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "does not start"),
            ("0/1", "does not start"),
            ("M/0", "does not start"),
            ("m/", "not a decimal index"),
            ("m//1", "not a decimal index"),
            ("m/01", "not a decimal index"),
            ("m/-1", "not a decimal index"),
            ("m/+1", "not a decimal index"),
            ("m/1 ", "not a decimal index"),
            ("m/0'", "hardened"),
            ("m/0h", "hardened"),
            ("m/2147483648", "hardened"),
            ("m/4294967296", "above 2^31"),
            ("m/0/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", "more than 16"),
        ] {
            let error = text.parse::<DerivationPath>().unwrap_err().to_string();
            assert!(error.contains(why), "{text:?}: {error}");
        }
        assert!(DerivationPath::new(vec![HARDENED_OFFSET]).is_err());
        assert!(DerivationPath::new(vec![0; MAX_PATH_DEPTH + 1]).is_err());
        assert!(DerivationPath::new(vec![HARDENED_OFFSET - 1; MAX_PATH_DEPTH]).is_ok());
    }

    #[test]
    fn a_decoded_path_is_validated() {
        let config = bincode::config::standard().with_limit::<1024>();
        let bytes = bincode::serde::encode_to_vec(vec![1u32, HARDENED_OFFSET], config).unwrap();
        let decoded: Result<(DerivationPath, usize), _> =
            bincode::serde::decode_from_slice(&bytes, config);
        assert!(decoded.is_err());
        let bytes = bincode::serde::encode_to_vec(vec![1u32, 2], config).unwrap();
        let (path, _): (DerivationPath, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(path.indices(), &[1, 2]);
    }
}
