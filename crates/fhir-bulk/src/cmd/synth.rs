//! `fhir-bulk synth`: deterministic synthetic FHIR R4 data as NDJSON per resource type.
//!
//! A thin shell over [`fhir_bulk_synth::generate`]: parse flags, show a progress bar, print
//! what was written. Generation is CPU-bound and blocking, so it runs on tokio's blocking
//! pool rather than stalling the async runtime.

use anyhow::Context;
use fhir_bulk_synth::{SynthConfig, SynthSummary};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Flags of `fhir-bulk synth`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of patients; each brings about 55 resources on average (encounters,
    /// observations, conditions, …), and providers and Groups are added.
    #[arg(long, env = "FHIR_BULK_PATIENTS", value_parser = clap::value_parser!(u64).range(1..))]
    patients: u64,
    /// Seed of every random choice: the same patients and seed give byte-identical files.
    #[arg(long, env = "FHIR_BULK_SEED", default_value_t = 1)]
    seed: u64,
    /// Output directory, created if missing; writes `<ResourceType>.ndjson` there and
    /// replaces files of those names.
    #[arg(long, env = "FHIR_BULK_OUT")]
    out: PathBuf,
}

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = SynthConfig {
        patients: args.patients,
        seed: args.seed,
    };
    // The bar hides itself when stderr is not a terminal (CI, pipes).
    let bar = ProgressBar::new(args.patients).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} patients ({per_sec}, {eta} left)",
        )
        .context("progress bar template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    let started = Instant::now();
    let out = args.out.clone();
    let progress = bar.clone();
    let summary = tokio::task::spawn_blocking(move || {
        fhir_bulk_synth::generate(&config, &out, &mut |done| progress.set_position(done))
    })
    .await
    .context("the generator thread failed")?
    .with_context(|| format!("generating into {}", args.out.display()))?;
    bar.finish_and_clear();

    print_summary(&summary, args.patients, &args.out, started.elapsed());
    Ok(())
}

/// Counts and sizes per type, then the totals.
fn print_summary(summary: &SynthSummary, patients: u64, out: &std::path::Path, elapsed: Duration) {
    println!("{:<20} {:>12} {:>12}", "type", "resources", "size");
    for (kind, count) in &summary.resources {
        let bytes = summary.bytes_per_type.get(kind).copied().unwrap_or(0);
        println!(
            "{kind:<20} {count:>12} {:>12}",
            HumanBytes(bytes).to_string()
        );
    }
    let total = summary.total();
    let seconds = elapsed.as_secs_f64();
    println!(
        "{:<20} {total:>12} {:>12}",
        "total",
        HumanBytes(summary.bytes).to_string()
    );
    println!(
        "wrote {total} resources for {patients} patients to {} in {seconds:.2} s ({:.0} resources/s)",
        out.display(),
        total as f64 / seconds.max(1e-9)
    );
}
