//! Domain-separated SHA-256 transcripts. Every variable-length field is length-prefixed so that
//! two different field lists never hash alike.

use permafrost_wire::Digest;
use sha2::{Digest as _, Sha256};

pub(crate) struct Transcript(Sha256);

impl Transcript {
    pub(crate) fn new(domain: &str) -> Self {
        let mut t = Transcript(Sha256::new());
        t.put(b"permafrost/v1");
        t.put(domain.as_bytes());
        t
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub(crate) fn put_u64(&mut self, value: u64) -> &mut Self {
        self.0.update(value.to_be_bytes());
        self
    }

    pub(crate) fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// SHA-256 of `bytes` under a Permafrost domain tag: the digest used for packages in
/// confirmations.
pub fn digest_bytes(domain: &str, bytes: &[u8]) -> Digest {
    let mut t = Transcript::new(domain);
    t.put(bytes);
    t.finish()
}
