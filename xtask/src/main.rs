//! `cargo xtask`: project automation (see `.cargo/config.toml` for the alias).
//!
//! - `cargo xtask gen` regenerates the tables of `fhir-bulk-spec` from the official FHIR R4
//!   definitions in `<workspace>/../shared/fhir-r4`.
//! - `cargo xtask gen --check` fails when the checked-in tables differ from a fresh generation.

use anyhow::{Result, bail};
use std::path::Path;
use xtask::codegen;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["gen"] => generate(false),
        ["gen", "--check"] => generate(true),
        _ => bail!("usage: cargo xtask gen [--check]"),
    }
}

fn generate(check: bool) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace");
    let generation = codegen::generate(&codegen::fhir_dir(workspace))?;
    for note in &generation.notes {
        eprintln!("note: {note}");
    }
    let stale = codegen::stale_files(workspace, &generation);
    if check {
        if !stale.is_empty() {
            bail!(
                "generated files are out of date (run `cargo xtask gen`): {}",
                stale.join(", ")
            );
        }
        eprintln!("generated files are up to date");
    } else {
        codegen::write(workspace, &generation)?;
        eprintln!(
            "wrote {} files ({} changed)",
            generation.files.len(),
            stale.len()
        );
    }
    Ok(())
}
