//! `permafrost-node`: `init --dir D` creates the node's identity; `run --config F` runs it.

fn main() -> std::process::ExitCode {
    permafrost_runtime::process::service_main(
        "permafrost-node",
        "Permafrost signer node",
        permafrost_node::init,
        permafrost_node::NodeConfig::load,
        permafrost_node::run,
    )
}
