//! Criterion benchmarks live in `benches/`; run them with `cargo bench -p permafrost-benches`.
//! The library holds what the load tool (`permafrost-load`) measures in its own process: the
//! cost of the FROST operations of one signature, to set beside what the network spends.

pub mod frost_cost;
