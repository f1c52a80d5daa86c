//! `fhir-bulk export`. (Stub.)

/// Flags of `fhir-bulk export`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub async fn run(_args: Args) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
