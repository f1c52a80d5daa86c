//! `fhir-bulk synth`. (Stub.)

/// Flags of `fhir-bulk synth`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
