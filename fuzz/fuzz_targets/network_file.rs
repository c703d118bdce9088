//! The network file (the allowlist every node and the coordinator load): TOML parsing into
//! `NetworkFile`, then `validate()` (PeerId and multiaddr parsing, duplicate checks).
//! Neither may panic on any UTF-8 input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permafrost_runtime::network::NetworkFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<NetworkFile>(text) else {
        return;
    };
    if let Ok(network) = file.validate() {
        // Cheap consistency checks on what validation promises.
        assert_eq!(network.nodes.len(), file.nodes.len());
        assert_eq!(network.coordinators.len(), file.coordinators.len());
        for node in &network.nodes {
            let name = node.name.as_deref().unwrap_or_default();
            assert!(network.node_by_name(name).is_some());
            assert_eq!(network.name_of(&node.peer_id), Some(name));
        }
    }
    // What was parsed serializes back and parses to the same file. Not for strings holding a
    // run of more than 255 quotes: toml_write 0.1.2 (under toml 0.8) counts such runs in a u8,
    // which overflows (a panic in this debug-checked build, a wrap in release). Permafrost
    // serializes only network files it generates itself (`localnet`), whose strings are names,
    // peer ids and addresses it made.
    let strings = std::iter::once(file.network_id.as_str())
        .chain(
            file.nodes
                .iter()
                .flat_map(|n| [n.name.as_str(), n.peer_id.as_str(), n.addr.as_str()]),
        )
        .chain(
            file.coordinators
                .iter()
                .flat_map(|c| [c.peer_id.as_str(), c.addr.as_str()]),
        );
    if strings.map(longest_quote_run).max().unwrap_or(0) > 255 {
        return;
    }
    if let Ok(text) = toml::to_string(&file) {
        let again: NetworkFile = match toml::from_str(&text) {
            Ok(again) => again,
            Err(e) => panic!("re-serialized network file does not parse: {e}\n{text}"),
        };
        assert_eq!(again, file);
    }
});

/// The longest run of one quote character (`"` or `'`) in a parsed string.
fn longest_quote_run(text: &str) -> usize {
    let (mut longest, mut run, mut last) = (0, 0, 0u8);
    for &byte in text.as_bytes() {
        if (byte == b'"' || byte == b'\'') && byte == last {
            run += 1;
        } else if byte == b'"' || byte == b'\'' {
            run = 1;
        } else {
            run = 0;
        }
        last = byte;
        longest = longest.max(run);
    }
    longest
}
