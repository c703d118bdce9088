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
    // What was parsed serializes back and parses to the same file.
    if let Ok(text) = toml::to_string(&file) {
        let again: NetworkFile = match toml::from_str(&text) {
            Ok(again) => again,
            Err(e) => panic!("re-serialized network file does not parse: {e}\n{text}"),
        };
        assert_eq!(again, file);
    }
});
