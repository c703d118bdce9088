//! 16 MiB of hostile input: refused quickly, and without the decoder reserving memory for
//! what a length prefix claims.
//!
//! The memory check reads the process's peak virtual memory (`VmPeak`, Linux). glibc serves
//! even large allocations from address space it has already reserved once its mmap threshold
//! has adapted, so the test re-runs itself in a child process with a fixed threshold
//! (`MALLOC_MMAP_THRESHOLD_`): there every allocation over 128 KiB is a fresh mapping that
//! `VmPeak` sees, as a control allocation checks. Untouched "ballast" first brings the current
//! size up to the peak already reached, so a new mapping cannot hide under an old peak.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use permafrost_wire::{decode, MessageKind, WireError, MAX_FRAME_LEN, WIRE_VERSION};

const SIXTEEN_MIB: usize = 16 << 20;
/// Generous for what are length checks, even in a debug build on a loaded machine; a decoder
/// that walked or copied 16 MiB a hundred times would take seconds.
const QUICK: Duration = Duration::from_millis(500);
/// Set in the child process that measures memory.
const CHILD: &str = "PERMAFROST_OVERSIZED_CHILD";
const TEST: &str = "sixteen_mib_inputs_are_refused_before_decoding";

/// `version ‖ kind` for `kind`.
fn header(kind: MessageKind) -> Vec<u8> {
    let mut frame = WIRE_VERSION.to_be_bytes().to_vec();
    frame.push(kind.tag());
    frame
}

/// bincode's varint for a length of 16 Mi: the `u32` marker (252), then little-endian.
fn varint_16_mib() -> Vec<u8> {
    let mut bytes = vec![252];
    bytes.extend_from_slice(&(SIXTEEN_MIB as u32).to_le_bytes());
    bytes
}

/// A field of `/proc/self/status` in KiB (`VmPeak`, `VmSize`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn vm_peak_kib() -> u64 {
    status_kib("VmPeak:")
}

#[test]
fn sixteen_mib_inputs_are_refused_before_decoding() {
    if cfg!(target_os = "linux") && std::env::var_os(CHILD).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            .status()
            .unwrap();
        assert!(status.success(), "the measuring child failed: {status}");
        return;
    }
    let measure = std::env::var_os(CHILD).is_some();

    // A 16 MiB buffer: refused on its length alone, whatever its header says.
    let mut huge = vec![0u8; SIXTEEN_MIB];
    let mut huge_commit = header(MessageKind::DkgCommit);
    huge_commit.resize(SIXTEEN_MIB, 0xab);
    // Frames within every cap whose body claims 16 Mi elements (a `Vec<DkgConfirm>` in a
    // 1 MiB kind) or bytes (a `Vec<u8>` in a 128 KiB kind), followed by far fewer.
    let mut claims_confirms = header(MessageKind::DkgCommit);
    claims_confirms.extend_from_slice(&[7; 32]); // session
    claims_confirms.extend_from_slice(&varint_16_mib()); // confirms.len()
    let mut claims_bytes = header(MessageKind::SignRequest);
    claims_bytes.extend_from_slice(&[7; 32]); // session
    claims_bytes.extend_from_slice(&[1, b'k']); // key_id "k"
    claims_bytes.push(0); // epoch 0
    claims_bytes.extend_from_slice(&varint_16_mib()); // message.len()
    claims_bytes.extend_from_slice(&[0xcd; 1024]);

    let check = |huge: &[u8], huge_commit: &[u8]| {
        assert_eq!(
            decode(huge),
            Err(WireError::Oversized {
                kind: "any frame",
                len: SIXTEEN_MIB,
                cap: MAX_FRAME_LEN
            })
        );
        assert!(matches!(
            decode(huge_commit),
            Err(WireError::Oversized {
                len: SIXTEEN_MIB,
                cap: MAX_FRAME_LEN,
                ..
            })
        ));
        for (frame, kind) in [
            (&claims_confirms, "DkgCommit"),
            (&claims_bytes, "SignRequest"),
        ] {
            match decode(frame) {
                Err(WireError::Malformed { kind: k, .. }) if k == kind => {}
                other => panic!("{kind} claiming 16 Mi: {other:?}"),
            }
        }
    };
    // Warm-up: anything allocated once is allocated here.
    check(&huge, &huge_commit);

    // Bring the current size up to the peak already reached (by the harness, by building the
    // inputs) with untouched address space, so that any new mapping raises the peak.
    let gap = vm_peak_kib().saturating_sub(status_kib("VmSize:"));
    let ballast = std::hint::black_box(Vec::<u8>::with_capacity((gap as usize + 64) * 1024));
    let peak_before = vm_peak_kib();
    let started = Instant::now();
    for _ in 0..100 {
        check(&huge, &huge_commit);
    }
    let elapsed = started.elapsed();
    let peak_after = vm_peak_kib();
    eprintln!("400 refusals in {elapsed:?}; VmPeak {peak_before} -> {peak_after} KiB");
    assert!(elapsed < QUICK, "400 refusals took {elapsed:?}");
    if measure {
        // Reserving memory for a 16 Mi claim would raise the peak by at least 16 MiB; serde
        // preallocates at most 1 MiB for a claimed length, and the input runs out first.
        assert!(
            peak_after - peak_before < 4 * 1024,
            "peak virtual memory grew by {} KiB",
            peak_after - peak_before
        );
        // The control: the meter sees an untouched 16 MiB reservation.
        let reserved = std::hint::black_box(Vec::<u8>::with_capacity(SIXTEEN_MIB));
        let control = vm_peak_kib();
        drop(reserved);
        eprintln!("control: VmPeak {peak_before} -> {control} KiB");
        assert!(
            control >= peak_before + 16 * 1024,
            "VmPeak did not see a 16 MiB reservation ({peak_before} -> {control} KiB)"
        );
    }
    drop(ballast);

    // The boundary: one byte past the largest cap is refused on length; at the cap, decoding
    // goes on to the header (zeros: version 0).
    huge.truncate(MAX_FRAME_LEN + 1);
    assert!(matches!(
        decode(&huge),
        Err(WireError::Oversized { len, .. }) if len == MAX_FRAME_LEN + 1
    ));
    huge.truncate(MAX_FRAME_LEN);
    assert_eq!(
        decode(&huge),
        Err(WireError::UnsupportedVersion {
            got: 0,
            expected: WIRE_VERSION
        })
    );
}
