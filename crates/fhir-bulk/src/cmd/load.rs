//! `fhir-bulk load`: loads NDJSON files, Bundles and folders of them into the store, each
//! file atomically, stopping at the first bad file. The work is
//! `fhir_bulk_server::ingest::load_paths`; this module adds the flags, a progress bar
//! (bytes read, resources/s) and the summary.

use fhir_bulk_server::ingest::{self, FileReport, LoadProgress, LoadReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Flags of `fhir-bulk load`.
#[derive(clap::Args)]
pub struct Args {
    /// The database to load into: a SQLite file (created if missing) or a PostgreSQL URL.
    #[arg(long, env = "FHIR_BULK_DATABASE", default_value = "./fhir-bulk.db")]
    database: String,
    /// The tenant to load into (it must exist: `fhir-bulk tenants add`).
    #[arg(long, env = "FHIR_BULK_TENANT", default_value = fhir_bulk_store::DEFAULT_TENANT)]
    tenant: String,
    /// Files (`.ndjson`, `.ndjson.gz`, `.json` Bundle or resource) and folders of them.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
}

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_store(&args.database).await?;
    let database = fhir_bulk_store::open::redacted(&args.database);
    super::tenants::require(store.as_ref(), &args.tenant, &database).await?;

    let bar = Bar::new();
    let result = ingest::load_paths(store.as_ref(), &args.tenant, &args.paths, &bar).await;
    bar.bar.finish_and_clear();
    match result {
        Ok(report) => {
            print_summary(&report, &database, &args.tenant);
            Ok(())
        }
        Err(e) => {
            let loaded = bar.files_loaded.load(Ordering::Relaxed);
            Err(anyhow::anyhow!(
                "{e}\n{loaded} {} loaded, stopped at {} (nothing of it was written)",
                plural(loaded, "file", "files"),
                e.path().display()
            ))
        }
    }
}

/// The progress bar: bytes of input read across all files, with resources and resources/s.
/// indicatif draws nothing when stderr is not a terminal, so logs and CI output stay clean.
struct Bar {
    bar: ProgressBar,
    started: Instant,
    files_loaded: AtomicUsize,
}

impl Bar {
    fn new() -> Bar {
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}) {msg} {prefix}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        Bar {
            bar: ProgressBar::new(0).with_style(style),
            started: Instant::now(),
            files_loaded: AtomicUsize::new(0),
        }
    }
}

impl LoadProgress for Bar {
    fn start(&self, _files: usize, total_bytes: u64) {
        self.bar.set_length(total_bytes);
    }

    fn skipped(&self, path: &Path, reason: &str) {
        // `println` would be dropped with a hidden bar; a note must always show.
        self.bar
            .suspend(|| eprintln!("note: skipped {}: {reason}", path.display()));
    }

    fn file_started(&self, path: &Path) {
        let name = path.file_name().unwrap_or(path.as_os_str());
        self.bar.set_prefix(name.to_string_lossy().into_owned());
    }

    fn advanced(&self, bytes_read: u64, resources: u64) {
        self.bar.set_position(bytes_read);
        let rate = resources as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} resources, {}/s",
            thousands(resources),
            thousands(rate as u64)
        ));
    }

    fn file_loaded(&self, _report: &FileReport) {
        self.files_loaded.fetch_add(1, Ordering::Relaxed);
    }
}

fn print_summary(report: &LoadReport, database: &str, tenant: &str) {
    let width = report
        .per_type
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(5);
    for (t, n) in &report.per_type {
        println!("{t:<width$}  {:>12}", thousands(*n));
    }
    println!("{:<width$}  {:>12}", "total", thousands(report.resources));
    println!(
        "loaded {} {} ({:.1} MB) into {database} (tenant {tenant}) in {:.2} s: {} resources/s",
        report.files.len(),
        plural(report.files.len(), "file", "files"),
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64(),
        thousands(report.resources_per_second() as u64),
    );
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `38473` → `38,473`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // 1 to 3 digits before the first separator, then groups of 3.
    let head = (digits.len() - 1) % 3 + 1;
    let mut out = digits[..head].to_string();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separates() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(38473), "38,473");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
