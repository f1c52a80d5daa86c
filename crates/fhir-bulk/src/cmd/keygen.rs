//! `fhir-bulk keygen`. (Stub.)

/// Flags of `fhir-bulk keygen`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
