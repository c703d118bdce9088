//! The TCP transport, with every dial from a port of its own.
//!
//! libp2p's TCP transport dials, by default, from the port this process listens on ("port
//! reuse", for NAT traversal). Two nodes that dial each other at the same moment then open
//! the same TCP connection from both ends (a TCP simultaneous open: both sockets bind the
//! listening ports, so both connects name the same four-tuple), both sides run Noise as the
//! initiator, and the handshake fails with "input error": both dials fail and the message that
//! caused them is lost. Nodes of one network reach each other at configured addresses and
//! need no NAT traversal; with a fresh port per dial, two such dials make two connections
//! (allowed: see `MAX_CONNECTIONS_PER_PEER`).

use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::Multiaddr;

/// A transport whose dials never reuse the listening port (see the module documentation).
pub(crate) struct FreshPortDials<T>(pub(crate) T);

impl<T: Transport + Unpin> Transport for FreshPortDials<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        self.0.dial(
            addr,
            DialOpts {
                port_use: PortUse::New,
                ..opts
            },
        )
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}
