//! Every frame a peer can send goes through `permafrost_wire::decode` first.
//!
//! Invariants: `decode` never panics; whatever it accepts re-encodes, decodes back to the
//! same message, fits its kind's cap, is no longer than the frame it came from, and the
//! canonical encoding is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permafrost_wire::{decode, encode, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode(data) else {
        return;
    };
    let kind = message.kind();
    let frame = match encode(&message) {
        Ok(frame) => frame,
        Err(e) => panic!("a decoded {} does not re-encode: {e}", kind.name()),
    };
    assert!(
        frame.len() <= kind.max_frame_len() && frame.len() <= MAX_FRAME_LEN,
        "re-encoded {} is {} bytes, over its {}-byte cap",
        kind.name(),
        frame.len(),
        kind.max_frame_len()
    );
    // The canonical encoding is never longer than any encoding decode accepts.
    assert!(
        frame.len() <= data.len(),
        "re-encoded {} grew from {} to {} bytes",
        kind.name(),
        data.len(),
        frame.len()
    );
    let again = match decode(&frame) {
        Ok(again) => again,
        Err(e) => panic!("re-encoded {} does not decode: {e}", kind.name()),
    };
    assert_eq!(again, message, "round trip changed a {}", kind.name());
    match encode(&again) {
        Ok(frame2) => assert_eq!(
            frame2,
            frame,
            "encoding of a {} is not canonical",
            kind.name()
        ),
        Err(e) => panic!("a round-tripped {} does not re-encode: {e}", kind.name()),
    }
});
