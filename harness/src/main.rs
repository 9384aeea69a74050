//! The `infoat` binary: parses the command line and hands it to `commands`, one module per
//! subcommand.
//!
//! Exit status: 0 success; 1 a preset ran but missed a target (or a regression or registry
//! problem was found); 2 an error (bad input, missing data, corrupted checkpoint, …), printed
//! with its full cause chain.

use std::process::ExitCode;

use clap::Parser;
use infoat_harness::cli::Cli;

mod commands;

fn main() -> ExitCode {
    // First of all: libtorch caches whether it has CUDA at the first question about it.
    infoat_harness::cuda_library::load();
    // Before any tensor operation: ATen and MKL read their dispatch settings once.
    infoat_harness::numerics::apply_portable_mode_from_env();
    infoat_harness::alloc::tune();
    let cli = Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
