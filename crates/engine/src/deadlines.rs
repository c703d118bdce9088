//! Every deadline of the node and the coordinator, decided in one place: production and the
//! simulator read the same values.

use std::time::Duration;

/// A DKG session, from its open to its commit.
pub const DKG: Duration = permafrost_protocol::dkg::DEFAULT_DKG_TIMEOUT;

/// A reshare session, from its open to its certificate.
pub const RESHARE: Duration = permafrost_protocol::reshare::DEFAULT_RESHARE_TIMEOUT;

/// A signature request (ROAST): past it the request fails naming the members that did not
/// answer (503). ROAST retries with other signers within it.
pub const SIGNING: Duration = Duration::from_secs(10);

/// One ROAST attempt: a chosen signer that has not answered by then is passed over.
pub const SIGNING_ATTEMPT: Duration = permafrost_protocol::sign::DEFAULT_ROAST_ATTEMPT_TIMEOUT;

/// Reshare messages that came before their open are kept this long.
pub const EARLY_MESSAGE_MAX_AGE: Duration = Duration::from_secs(60);

/// A signer keeps the nonce of a commitment no package came for this long.
pub const SIGNER_SESSION: Duration = permafrost_protocol::sign::DEFAULT_SIGN_TIMEOUT;
