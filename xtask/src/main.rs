//! `cargo xtask`: project automation (see `.cargo/config.toml` for the alias).
//!
//! - `cargo xtask gen` regenerates the tables of `fhir-bulk-spec` from the official FHIR R4
//!   definitions in `<workspace>/../shared/fhir-r4`.
//! - `cargo xtask gen --check` fails when the checked-in tables differ from a fresh generation.
//! - `cargo xtask bench [--patients N | --data DIR] [--dir DIR] [--json FILE]
//!   [--only exports,filtered,polling,kickoff,client] [--reuse] [--bin FILE]` runs the
//!   benchmark suite (see `bench.rs`); `--reuse` keeps the data and database of an earlier run
//!   in DIR, `--bin` measures that binary instead of building the release one.
//! - `cargo xtask bench-nodes [--patients N | --data DIR] [--database URL] [--nodes 1,2,3]
//!   [--workers N]` measures system exports with several nodes on PostgreSQL (`bench/nodes.rs`).

mod bench;

use anyhow::{Result, bail};
use std::path::Path;
use xtask::codegen;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.iter().any(|a| matches!(*a, "--help" | "-h" | "help")) {
        println!("{USAGE}");
        return Ok(());
    }
    match args.as_slice() {
        ["gen"] => generate(false),
        ["gen", "--check"] => generate(true),
        ["bench", rest @ ..] => bench_cmd(rest),
        ["bench-nodes", rest @ ..] => bench_nodes_cmd(rest),
        _ => bail!("{USAGE}"),
    }
}

const USAGE: &str = "usage: cargo xtask gen [--check]
       cargo xtask bench [--patients N | --data DIR] [--dir DIR] [--json FILE]
                         [--only exports,filtered,polling,kickoff,client] [--reuse] [--bin FILE]
       cargo xtask bench-nodes [--patients N | --data DIR] [--database URL] [--nodes 1,2,3]
                               [--workers N] [--reuse]";

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

fn bench_cmd(args: &[&str]) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace");
    let mut opts = bench::Options {
        patients: 10_000,
        data: None,
        dir: std::env::temp_dir().join("fhir-bulk-bench"),
        json_out: workspace.join("target/bench.json"),
        only: Vec::new(),
        reuse: false,
        bin: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match *flag {
            "--patients" => opts.patients = value()?.parse()?,
            "--data" => opts.data = Some(value()?.into()),
            "--dir" => opts.dir = value()?.into(),
            "--json" => opts.json_out = value()?.into(),
            "--only" => opts.only = value()?.split(',').map(str::to_string).collect(),
            "--reuse" => opts.reuse = true,
            "--bin" => opts.bin = Some(value()?.into()),
            other => bail!("unknown bench option {other}"),
        }
    }
    bench::run(workspace, opts)
}

fn bench_nodes_cmd(args: &[&str]) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace");
    let mut opts = bench::nodes::NodesOptions {
        patients: 10_000,
        data: None,
        database: "postgres://root@127.0.0.1:5432/test".into(),
        nodes: vec![1, 2, 3],
        workers: 2,
        dir: std::env::temp_dir().join("fhir-bulk-bench-nodes"),
        json_out: workspace.join("target/bench-nodes.json"),
        reuse: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match *flag {
            "--patients" => opts.patients = value()?.parse()?,
            "--data" => opts.data = Some(value()?.into()),
            "--database" => opts.database = value()?.into(),
            "--nodes" => {
                opts.nodes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--workers" => opts.workers = value()?.parse()?,
            "--dir" => opts.dir = value()?.into(),
            "--json" => opts.json_out = value()?.into(),
            "--reuse" => opts.reuse = true,
            other => bail!("unknown bench-nodes option {other}"),
        }
    }
    bench::nodes::run(workspace, opts)
}
