//! `reference-server`: the generation service firedrill drills.

use clap::Parser;
use reference_server::cli::{run, Args};
use std::process::ExitCode;

/// The firedrill reference generation server (text-to-image/video with real candle compute).
#[derive(Debug, Parser)]
#[command(name = "reference-server", version, about)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn main() -> ExitCode {
    run(Cli::parse().args)
}
