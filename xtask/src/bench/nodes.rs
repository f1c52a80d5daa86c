//! `cargo xtask bench-nodes`: system-export throughput with 1, 2, 3… server nodes sharing
//! one PostgreSQL database and one output folder (#7). The data set is loaded once into a
//! fresh schema; for each node count, that many `fhir-bulk serve` processes start on the
//! same database, a system export is kicked off on the first and polled to completion, and
//! the nodes are stopped. Every node runs `--workers` export workers; units are claimed with
//! `FOR UPDATE SKIP LOCKED`, so the nodes share the job's units.
//!
//! On a machine with few cores the nodes compete for the same CPUs as PostgreSQL itself, so
//! the table shows how the work spreads (units per node) as much as the speed-up.

use super::{Server, free_port, mb, ndjson_stats, timed, wait_up};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Options of `cargo xtask bench-nodes`.
pub struct NodesOptions {
    /// Patients to synthesise (ignored with `data`).
    pub patients: u64,
    /// A folder of NDJSON to load instead of synthetic data.
    pub data: Option<PathBuf>,
    /// PostgreSQL database URL (a schema `fhir_bulk_bench` is recreated in it).
    pub database: String,
    /// Node counts to measure, in order.
    pub nodes: Vec<usize>,
    /// Export workers per node.
    pub workers: usize,
    /// Working folder (kept afterwards).
    pub dir: PathBuf,
    /// Where the JSON results go.
    pub json_out: PathBuf,
    /// Keep the schema a previous run loaded: no synth, no load, exports only.
    pub reuse: bool,
}

const SCHEMA: &str = "fhir_bulk_bench";

pub fn run(workspace: &Path, opts: NodesOptions) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "fhir-bulk"])
        .current_dir(workspace)
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let bin = workspace.join("target/release/fhir-bulk");
    std::fs::create_dir_all(&opts.dir)?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut results = serde_json::Map::new();

    let sep = if opts.database.contains('?') {
        '&'
    } else {
        '?'
    };
    let database = format!("{}{sep}options=-csearch_path%3D{SCHEMA}", opts.database);

    let data = if opts.reuse {
        opts.data.clone().unwrap_or_else(|| opts.dir.join("data"))
    } else {
        load(&bin, &opts, &database, &mut rows, &mut results)?
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::new();
    let mut one_node = None;
    for &n in &opts.nodes {
        let out = opts.dir.join(format!("files-{n}"));
        let _ = std::fs::remove_dir_all(&out);
        let mut servers = Vec::new();
        let mut bases = Vec::new();
        for i in 0..n {
            let port = free_port()?;
            servers.push(Server(
                Command::new(&bin)
                    .args(["serve", "--no-auth", "--listen"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(["--database", &database, "--output"])
                    .arg(&out)
                    .args(["--workers", &opts.workers.to_string()])
                    .args(["--max-exports-per-client", "1000"])
                    .env("FHIR_BULK_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(
                        opts.dir.join(format!("server-{n}-{i}.log")),
                    )?)
                    .spawn()?,
            ));
            bases.push(format!("http://127.0.0.1:{port}/fhir"));
        }
        rt.block_on(async {
            for b in &bases {
                wait_up(&http, b).await?;
            }
            anyhow::Ok(())
        })?;
        let pids: Vec<u32> = servers.iter().map(|s| s.0.id()).collect();
        let (machine0, nodes0) = (
            machine_cpu(),
            pids.iter().map(|p| process_cpu(*p)).sum::<f64>(),
        );
        let run = rt.block_on(system_export(&http, &bases[0], &database, &out))?;
        let (machine1, nodes1) = (
            machine_cpu(),
            pids.iter().map(|p| process_cpu(*p)).sum::<f64>(),
        );
        drop(servers);
        // The files are not needed any more, and at 100,000 patients each run leaves 5.6 GB.
        let _ = std::fs::remove_dir_all(&out);
        // Where the CPU went: the machine's busy time over the export, the nodes' own share,
        // and the rest (PostgreSQL, when it runs here).
        let (busy, nodes_cpu) = (machine1.0 - machine0.0, nodes1 - nodes0);
        let cores_busy = busy / (machine1.1 - machine0.1).max(1e-6);
        let cpu_text = format!(
            "CPU {busy:.1} s ({cores_busy:.2} cores busy): nodes {nodes_cpu:.1} s, the rest (PostgreSQL) {:.1} s",
            busy - nodes_cpu
        );
        let speedup = match one_node {
            None => {
                one_node = Some(run.seconds);
                1.0
            }
            Some(one) => one / run.seconds,
        };
        let spread = run
            .units_per_node
            .values()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("/");
        rows.push((
            format!("export system, {n} node(s)"),
            format!(
                "{} resources, {} in {:.2} s: {:.0} resources/s, {:.2}x one node; {} units, per node {spread}; {cpu_text}",
                run.resources,
                mb(run.bytes),
                run.seconds,
                run.resources as f64 / run.seconds,
                speedup,
                run.units
            ),
        ));
        results.insert(
            format!("export_system_{n}_nodes"),
            json!({"nodes": n, "workers_per_node": opts.workers, "resources": run.resources, "bytes": run.bytes,
                   "seconds": run.seconds, "resources_per_s": run.resources as f64 / run.seconds,
                   "speedup": speedup, "units": run.units, "units_per_node": run.units_per_node,
                   "cpu_seconds": busy, "cores_busy": cores_busy, "nodes_cpu_seconds": nodes_cpu}),
        );
    }

    println!(
        "\nfhir-bulk multi-node benchmark ({}; {} workers per node; {} cores)",
        if opts.data.is_some() {
            data.display().to_string()
        } else {
            format!("synth --patients {}", opts.patients)
        },
        opts.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{}", "-".repeat(100));
    for (k, v) in &rows {
        println!("{k:<28} {v}");
    }
    std::fs::write(
        &opts.json_out,
        serde_json::to_string_pretty(&Value::Object(results))?,
    )?;
    println!("\nJSON: {}", opts.json_out.display());
    Ok(())
}

/// Synthesises (unless `--data`) and loads the data set into a fresh schema; adds the load row.
fn load(
    bin: &Path,
    opts: &NodesOptions,
    database: &str,
    rows: &mut Vec<(String, String)>,
    results: &mut serde_json::Map<String, Value>,
) -> Result<PathBuf> {
    let data = match &opts.data {
        Some(d) => d.clone(),
        None => {
            let out = opts.dir.join("data");
            if !out.join(".complete").exists() {
                let _ = std::fs::remove_dir_all(&out);
                timed(
                    Command::new(bin)
                        .args(["synth", "--seed", "1", "--patients"])
                        .arg(opts.patients.to_string())
                        .arg("--out")
                        .arg(&out),
                )?;
                std::fs::write(out.join(".complete"), b"")?;
            }
            out
        }
    };

    // A fresh schema, so the load measures an empty database.
    let psql = Command::new("psql")
        .arg(&opts.database)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!(
            "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};"
        ))
        .status()
        .context("running psql")?;
    if !psql.success() {
        bail!("could not recreate schema {SCHEMA} in {}", opts.database);
    }
    let (secs, rss) = timed(
        Command::new(bin)
            .args(["load", "--database", database])
            .arg(&data),
    )?;
    let (_, bytes, lines) = ndjson_stats(&data)?;
    rows.push((
        "load (PostgreSQL)".into(),
        format!(
            "{lines} resources, {} in {secs:.1} s: {:.0} resources/s, peak RSS {} MB",
            mb(bytes),
            lines as f64 / secs,
            rss / 1024
        ),
    ));
    results.insert(
        "load".into(),
        json!({"resources": lines, "bytes": bytes, "seconds": secs, "resources_per_s": lines as f64 / secs}),
    );
    // The first read of freshly copied rows sets their hint bits and writes every page again,
    // so without this the first node count measured pays for the load (51 s instead of 21 s
    // for one node at 100,000 patients). VACUUM does it once, as an operator would after a
    // bulk load, and is reported on its own row.
    let started = Instant::now();
    let tables = Command::new("psql")
        .arg(database)
        .args(["-At", "-c"])
        .arg(format!(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables WHERE schemaname = '{SCHEMA}'"
        ))
        .output()
        .context("running psql")?;
    let tables = String::from_utf8_lossy(&tables.stdout).trim().to_string();
    let vacuum = Command::new("psql")
        .arg(database)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("VACUUM (ANALYZE) {tables}"))
        .status()
        .context("running psql")?;
    if !vacuum.success() {
        bail!("VACUUM after the load failed");
    }
    let secs = started.elapsed().as_secs_f64();
    rows.push(("vacuum after load".into(), format!("{secs:.1} s")));
    results.insert("vacuum_seconds".into(), json!(secs));
    Ok(data)
}

struct NodesRun {
    seconds: f64,
    resources: u64,
    bytes: u64,
    units: u64,
    /// Units completed per node (`job_units.done_by`), as the store recorded them.
    units_per_node: BTreeMap<String, u64>,
}

/// Kicks off a system export on `base`, polls it to its manifest, and reads from the store
/// which node completed which unit.
async fn system_export(
    http: &reqwest::Client,
    base: &str,
    database: &str,
    out: &Path,
) -> Result<NodesRun> {
    let started = Instant::now();
    let r = http
        .get(format!("{base}/$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await?;
    if r.status() != 202 {
        bail!("kick-off: {} {}", r.status(), r.text().await?);
    }
    let status_url = r.headers()["content-location"].to_str()?.to_string();
    let manifest: Value = loop {
        let r = http.get(&status_url).send().await?;
        match r.status().as_u16() {
            200 => break r.json().await?,
            202 => tokio::time::sleep(Duration::from_millis(50)).await,
            s => bail!("status {s}: {}", r.text().await?),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let job = status_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (mut resources, mut bytes) = (0, 0);
    for e in manifest["output"].as_array().into_iter().flatten() {
        resources += e["count"].as_u64().unwrap_or(0);
        let name = e["url"].as_str().unwrap_or_default();
        let name = name.rsplit('/').next().unwrap_or_default();
        bytes += std::fs::metadata(out.join(&job).join(name))?.len();
    }
    let owners = Command::new("psql")
        .arg(database)
        .args(["-At", "-F", " ", "-c"])
        .arg(format!(
            "SELECT done_by, count(*) FROM job_units WHERE job_id = '{job}' GROUP BY 1 ORDER BY 1"
        ))
        .output()?;
    let mut units_per_node = BTreeMap::new();
    for line in String::from_utf8_lossy(&owners.stdout).lines() {
        if let Some((owner, n)) = line.rsplit_once(' ') {
            units_per_node.insert(owner.to_string(), n.parse().unwrap_or(0));
        }
    }
    let _ = http.delete(&status_url).send().await;
    Ok(NodesRun {
        seconds,
        resources,
        bytes,
        units: units_per_node.values().sum(),
        units_per_node,
    })
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The machine's CPU seconds spent busy (all but idle and iowait) and the wall seconds
/// elapsed per core, from /proc/stat; (0, 0) where there is none.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let hz = clock_ticks();
    ((total - idle) / hz, total / hz / cores)
}

/// User plus system CPU seconds of one process so far, from /proc/PID/stat.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is the first, utime the 12th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    f.iter().sum::<f64>() / clock_ticks()
}
