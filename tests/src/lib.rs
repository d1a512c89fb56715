//! End-to-end tests that cross crates live in `tests/`: the harness's vocabulary checked against
//! what the reference server really does.
