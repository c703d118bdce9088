//! `permafrost-coordinator`: `init --dir D` creates its identity; `run --config F` runs it.

fn main() -> std::process::ExitCode {
    permafrost_runtime::process::service_main(
        "permafrost-coordinator",
        "Permafrost coordinator",
        permafrost_coordinator::init,
        permafrost_coordinator::CoordinatorConfig::load,
        permafrost_coordinator::run,
    )
}
