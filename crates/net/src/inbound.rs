//! Requests from peers: every stream a peer opens is read by a task of its own, each request
//! checked (size, the peer's rate limit, room in the queue) and handed to the application as
//! an [`InboundRequest`]; a second task per stream writes the answers back, several per flush
//! when they come together.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, trace, warn, Instrument};

use crate::client::{InboundRequest, Responder};
use crate::frame::{self, Kind};
use crate::rate_limit::{PeerRateLimits, Verdict, REFUSAL_LOG_INTERVAL};

/// Requests of one stream read but not yet answered. At this many the stream is not read
/// further until answers have been written: a peer that does not read its answers stalls only
/// its own stream, and the memory held for it stays bounded.
pub(crate) const MAX_UNANSWERED_PER_STREAM: usize = 1024;
/// Link streams one peer may have open to this node at once. A well-behaved peer has one (two
/// for a moment when both sides dial at once and a connection is replaced); a stream beyond
/// this is closed at once.
pub(crate) const MAX_STREAMS_PER_PEER: usize = 4;

/// An answer on its way to the stream's writing task.
pub(crate) struct Answer {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) body: Vec<u8>,
    /// Released once the answer is written.
    pub(crate) _slot: OwnedSemaphorePermit,
}

/// What every inbound stream needs.
pub(crate) struct InboundContext {
    /// The allowlist (checked again here, after the connection-time check).
    pub(crate) peers: HashSet<PeerId>,
    pub(crate) max_message_bytes: usize,
    pub(crate) rate_limits: Mutex<PeerRateLimits>,
    /// The application's queue.
    pub(crate) queue: mpsc::Sender<InboundRequest>,
    /// Streams open per peer.
    pub(crate) streams: Mutex<HashMap<PeerId, usize>>,
}

/// A peer's place among its open streams, given back when the stream ends.
struct StreamSlot {
    peer: PeerId,
    context: Arc<InboundContext>,
}

impl StreamSlot {
    /// Takes one of `peer`'s stream places, if it has one left.
    fn take(peer: PeerId, context: &Arc<InboundContext>) -> Option<Self> {
        let mut streams = context.streams.lock().unwrap_or_else(|e| e.into_inner());
        let open = streams.entry(peer).or_insert(0);
        if *open >= MAX_STREAMS_PER_PEER {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            peer,
            context: Arc::clone(context),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self
            .context
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(open) = streams.get_mut(&self.peer) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.peer);
            }
        }
    }
}

/// Serves every stream peers open, until `stop` fires or no more streams can come.
pub(crate) async fn accept(
    mut incoming: libp2p_stream::IncomingStreams,
    context: Arc<InboundContext>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            next = incoming.next() => match next {
                Some((peer, stream)) => {
                    tokio::spawn(serve(peer, stream, Arc::clone(&context)).in_current_span());
                }
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
}

/// Reads one stream's requests until it ends.
async fn serve(peer: PeerId, stream: Stream, context: Arc<InboundContext>) {
    if !context.peers.contains(&peer) {
        warn!(%peer, "refusing a stream from a peer outside the allowlist");
        return;
    }
    let Some(_slot) = StreamSlot::take(peer, &context) else {
        warn!(%peer, max = MAX_STREAMS_PER_PEER, "peer opens too many link streams; closing the new one");
        return;
    };
    let (mut read, mut write) = stream.split();
    // Tell the opener this stream is served; it writes no request before this.
    let ready = match frame::encode(0, Kind::Ready, b"") {
        Ok(ready) => ready,
        Err(error) => return debug!(%peer, %error, "cannot encode the ready frame"),
    };
    if let Err(error) = async {
        write.write_all(&ready).await?;
        write.flush().await
    }
    .await
    {
        debug!(%peer, %error, "inbound link stream closed before it was served");
        return;
    }
    let (answers, to_write) = mpsc::unbounded_channel();
    tokio::spawn(write_answers(peer, write, to_write, context.max_message_bytes).in_current_span());
    let slots = Arc::new(Semaphore::new(MAX_UNANSWERED_PER_STREAM));
    let why = loop {
        match read_request(peer, &mut read, &context, &answers, &slots).await {
            Ok(()) => {}
            Err(why) => break why,
        }
    };
    debug!(%peer, reason = %why, "inbound link stream ended");
}

/// Reads one request and hands it on, or refuses it. An error ends the stream.
async fn read_request(
    peer: PeerId,
    read: &mut ReadHalf<Stream>,
    context: &InboundContext,
    answers: &mpsc::UnboundedSender<Answer>,
    slots: &Arc<Semaphore>,
) -> Result<(), String> {
    let header = frame::read_header(read).await.map_err(|e| e.to_string())?;
    if header.kind != Kind::Request {
        return Err(format!(
            "the peer sent a {:?} frame on its own stream",
            header.kind
        ));
    }
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|_| "the stream's slots are closed".to_owned())?;
    let responder = Responder {
        id: header.id,
        answers: answers.clone(),
        slot: Some(slot),
    };
    let cap = context.max_message_bytes;
    if header.body_len > cap {
        frame::skip_body(read, header.body_len)
            .await
            .map_err(|e| e.to_string())?;
        warn!(%peer, len = header.body_len, cap, "request exceeds the message cap; refusing it");
        responder.refuse(format!(
            "a request of {} bytes exceeds the cap of {cap} bytes",
            header.body_len
        ));
        return Ok(());
    }
    let payload = frame::read_body(read, header.body_len)
        .await
        .map_err(|e| e.to_string())?;
    // Over the peer's rate limit: refused before the application sees it. Logged at most
    // once per interval per peer, with the count since the last line.
    let verdict = context
        .rate_limits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check(peer, Instant::now());
    if let Verdict::Refuse { log } = verdict {
        if let Some(refused) = log {
            warn!(
                %peer,
                refused,
                interval_secs = REFUSAL_LOG_INTERVAL.as_secs(),
                "peer exceeds its inbound rate limit; refusing its requests"
            );
        }
        responder.busy("over the rate limit".into());
        return Ok(());
    }
    // Never wait on the application here: a full queue refuses the request at once.
    match context.queue.try_send(InboundRequest {
        peer,
        payload,
        responder,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(request)) => {
            warn!(
                %peer,
                capacity = context.queue.max_capacity(),
                "inbound request queue full; refusing the request"
            );
            request.responder.busy("the inbound queue is full".into());
        }
        Err(TrySendError::Closed(request)) => {
            debug!(%peer, "no inbound request receiver; refusing the request");
            request.responder.refuse("shutting down".into());
        }
    }
    Ok(())
}

/// Writes answers as they come, flushing once per batch, until every responder of the stream
/// is gone or a write fails.
async fn write_answers(
    peer: PeerId,
    mut write: WriteHalf<Stream>,
    mut answers: mpsc::UnboundedReceiver<Answer>,
    cap: usize,
) {
    while let Some(first) = answers.recv().await {
        let mut next = Some(first);
        while let Some(answer) = next {
            let frame = if answer.body.len() > cap {
                warn!(%peer, len = answer.body.len(), cap, "answer exceeds the message cap; refusing instead");
                frame::encode(
                    answer.id,
                    Kind::Refused,
                    b"the answer exceeds the responder's cap",
                )
            } else {
                frame::encode(answer.id, answer.kind, &answer.body)
            };
            let written = match frame {
                Ok(frame) => write.write_all(&frame).await,
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                debug!(%peer, %error, "cannot write an answer; closing the stream");
                return;
            }
            next = answers.try_recv().ok();
        }
        if let Err(error) = write.flush().await {
            debug!(%peer, %error, "cannot flush answers; closing the stream");
            return;
        }
        trace!(%peer, "answers flushed");
    }
}
