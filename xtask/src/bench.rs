//! `cargo xtask bench`: the benchmark suite. It builds the release binary, generates a data
//! set with `fhir-bulk synth` (or takes a folder), loads it, runs a server process, and
//! measures exports against the physical floor measured in the same run: reading the same
//! bytes (`cat`) and copying them (read + write). Then (`scenarios.rs`): `_typeFilter` and
//! `_elements` exports next to plain ones of the same type, 200 status pollers during a
//! system export (p50/p99), 50 kick-offs (p50/p99), and `fhir-bulk export` downloading a
//! system export, gzip and plain, next to `curl -Z` saving the same files the same way. It
//! prints a table and writes JSON. The server runs with `--no-auth` and
//! `--max-exports-per-client 1000`; its log goes to `<dir>/server.log`.
//!
//! Figures are wall-clock on this machine; run it on an otherwise idle machine.

pub mod nodes;
mod scenarios;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of a bench run.
pub struct Options {
    /// Patients to synthesise (ignored with `data`).
    pub patients: u64,
    /// A folder of NDJSON to load instead of synthetic data.
    pub data: Option<PathBuf>,
    /// Working folder (kept afterwards).
    pub dir: PathBuf,
    /// Where the JSON results go.
    pub json_out: PathBuf,
    /// Scenarios to run (`exports`, `filtered`, `polling`, `kickoff`, `client`); all if empty.
    pub only: Vec<String>,
    /// Keep `<dir>/data` and `<dir>/bench.db` from an earlier run instead of generating and
    /// loading them again (to repeat one scenario quickly).
    pub reuse: bool,
    /// A `fhir-bulk` binary to measure instead of building the release one (A/B runs).
    pub bin: Option<PathBuf>,
}

pub fn run(workspace: &Path, opts: Options) -> Result<()> {
    let bin = match &opts.bin {
        Some(bin) => std::path::absolute(bin)?,
        None => {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "fhir-bulk"])
                .current_dir(workspace)
                .status()?;
            if !status.success() {
                bail!("cargo build --release failed");
            }
            workspace.join("target/release/fhir-bulk")
        }
    };
    std::fs::create_dir_all(&opts.dir)?;
    let mut results = serde_json::Map::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    let wants = |name: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == name);
    let db = opts.dir.join("bench.db");
    let reused = opts.reuse && db.exists();

    let data = match &opts.data {
        Some(d) => d.clone(),
        None if reused => opts.dir.join("data"),
        None => {
            let out = opts.dir.join("data");
            let _ = std::fs::remove_dir_all(&out);
            let (secs, rss) = timed(
                Command::new(&bin)
                    .args([
                        "synth",
                        "--patients",
                        &opts.patients.to_string(),
                        "--seed",
                        "1",
                        "--out",
                    ])
                    .arg(&out),
            )?;
            let (files, bytes, lines) = ndjson_stats(&out)?;
            rows.push(("synth".into(), format!("{} patients: {lines} resources, {} in {files} files, {secs:.1} s, {:.0} resources/s, peak RSS {} MB", opts.patients, mb(bytes), lines as f64 / secs, rss / 1024)));
            results.insert("synth".into(), json!({"patients": opts.patients, "resources": lines, "bytes": bytes, "seconds": secs, "peak_rss_kb": rss}));
            out
        }
    };

    if !reused {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        let (secs, rss) = timed(
            Command::new(&bin)
                .arg("load")
                .arg("--database")
                .arg(&db)
                .arg(&data),
        )?;
        let (_, bytes, lines) = ndjson_stats(&data)?;
        rows.push((
            "load".into(),
            format!(
                "{lines} resources, {} in {secs:.1} s: {:.0} resources/s, {:.1} MB/s, peak RSS {} MB",
                mb(bytes),
                lines as f64 / secs,
                bytes as f64 / 1e6 / secs,
                rss / 1024
            ),
        ));
        results.insert("load".into(), json!({"resources": lines, "bytes": bytes, "seconds": secs, "resources_per_s": lines as f64 / secs, "peak_rss_kb": rss}));
    }

    let out = opts.dir.join("files");
    let _ = std::fs::remove_dir_all(&out);
    let port = free_port()?;
    let server = Server(
        Command::new(&bin)
            .args([
                "serve",
                "--no-auth",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--max-exports-per-client",
                "1000",
                "--database",
            ])
            .arg(&db)
            .arg("--output")
            .arg(&out)
            .env("FHIR_BULK_LOG", "warn")
            .stdout(Stdio::null())
            // Cancelled kick-offs log "lease lost" warnings: keep them out of the table.
            .stderr(std::fs::File::create(opts.dir.join("server.log"))?)
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}/fhir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::new();
    rt.block_on(async {
        wait_up(&http, &base).await?;
        let group = smallest_cohort(&http, &base).await?;
        let mut kinds = vec![("system".to_string(), format!("{base}/$export"))];
        kinds.push(("patient".into(), format!("{base}/Patient/$export")));
        if let Some((id, n)) = group {
            kinds.push((format!("group ({n} members)"), format!("{base}/Group/{id}/$export")));
        }
        if !wants("exports") {
            kinds.clear();
        }
        let mut system_seconds = None;
        for (name, url) in kinds {
            // The peak of this export alone: reading the Groups above (a 100,000-member Group
            // is one 8 MB resource) must not count as the export's.
            reset_peak_rss(server.0.id());
            let r = export(&http, &url, &out).await?;
            if name == "system" {
                system_seconds = Some(r.seconds);
            }
            let (cat_s, copy_s) = floors(&r.files, &opts.dir)?;
            let rss = peak_rss_kb(server.0.id());
            rows.push((format!("export {name}"), format!(
                "{} resources, {} in {:.2} s (kick-off {:.1} ms): {:.0} resources/s, {:.0} MB/s; cat {:.2} s ({:.1}x), read+write {:.2} s ({:.1}x); server peak RSS during it {} MB",
                r.resources, mb(r.bytes), r.seconds, r.kickoff_ms, r.resources as f64 / r.seconds, r.bytes as f64 / 1e6 / r.seconds,
                cat_s, r.seconds / cat_s, copy_s, r.seconds / copy_s, rss / 1024
            )));
            results.insert(format!("export_{}", name.split(' ').next().unwrap_or(&name)), json!({
                "resources": r.resources, "bytes": r.bytes, "seconds": r.seconds, "kickoff_ms": r.kickoff_ms,
                "resources_per_s": r.resources as f64 / r.seconds, "mb_per_s": r.bytes as f64 / 1e6 / r.seconds,
                "cat_seconds": cat_s, "ratio_to_cat": r.seconds / cat_s, "copy_seconds": copy_s, "ratio_to_copy": r.seconds / copy_s,
                "server_peak_rss_kb": rss,
            }));
            let _ = http.delete(&r.status_url).send().await;
        }
        if wants("filtered") {
            let o = scenarios::filtered_exports(&http, &base, &out).await?;
            rows.extend(o.rows);
            results.extend(o.json);
        }
        if wants("polling") {
            let o = scenarios::polling_under_load(&http, &base, system_seconds).await?;
            rows.extend(o.rows);
            results.extend(o.json);
        }
        if wants("kickoff") {
            let o = scenarios::kickoff_latency(&http, &base).await?;
            rows.extend(o.rows);
            results.extend(o.json);
        }
        anyhow::Ok(())
    })?;
    if wants("client") {
        let o = scenarios::client_download(&bin, &base, &opts.dir, |status_url| {
            let _ = rt.block_on(http.delete(status_url).send());
        })?;
        rows.extend(o.rows);
        results.extend(o.json);
    }
    drop(server);

    println!(
        "\nfhir-bulk benchmark ({})",
        if opts.data.is_some() {
            data.display().to_string()
        } else {
            format!("synth --patients {}", opts.patients)
        }
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

/// Kills the server when the bench ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Runs a command under `/usr/bin/time` when present: (seconds, peak RSS KiB).
fn timed(cmd: &mut Command) -> Result<(f64, u64)> {
    let started = Instant::now();
    let time = Path::new("/usr/bin/time").exists();
    let output = if time {
        let mut wrapped = Command::new("/usr/bin/time");
        wrapped
            .arg("-f")
            .arg("%M")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        wrapped
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?
    };
    let secs = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let rss = if time {
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    Ok((secs, rss))
}

fn ndjson_stats(dir: &Path) -> Result<(usize, u64, u64)> {
    let (mut files, mut bytes, mut lines) = (0, 0, 0);
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) == Some("ndjson") {
            let data = std::fs::read(&p)?;
            files += 1;
            bytes += data.len() as u64;
            lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
    Ok((files, bytes, lines))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_up(http: &reqwest::Client, base: &str) -> Result<()> {
    let started = Instant::now();
    while http.get(format!("{base}/metadata")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the server did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The smallest Group with members (the 10% cohort of synthetic data), if any.
async fn smallest_cohort(http: &reqwest::Client, base: &str) -> Result<Option<(String, usize)>> {
    let v: Value = http
        .get(format!("{base}/Group?_count=100"))
        .send()
        .await?
        .json()
        .await?;
    let mut best: Option<(String, usize)> = None;
    for e in v["entry"].as_array().into_iter().flatten() {
        let n = e["resource"]["member"].as_array().map_or(0, Vec::len);
        let id = e["resource"]["id"].as_str().unwrap_or_default().to_string();
        // Prefer a cohort around a tenth of the largest group; fall back to the smallest.
        if n > 0
            && best
                .as_ref()
                .is_none_or(|(_, b)| (n > 20 && n < *b) || *b <= 20)
        {
            best = Some((id, n));
        }
    }
    Ok(best)
}

struct ExportRun {
    status_url: String,
    seconds: f64,
    kickoff_ms: f64,
    resources: u64,
    bytes: u64,
    files: Vec<PathBuf>,
}

async fn export(http: &reqwest::Client, url: &str, out: &Path) -> Result<ExportRun> {
    let started = Instant::now();
    let r = http
        .get(url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await?;
    let kickoff_ms = started.elapsed().as_secs_f64() * 1e3;
    if r.status() != 202 {
        bail!("kick-off {url}: {} {}", r.status(), r.text().await?);
    }
    let status_url = r.headers()["content-location"].to_str()?.to_string();
    let manifest: Value = loop {
        let r = http.get(&status_url).send().await?;
        match r.status().as_u16() {
            200 => break r.json().await?,
            202 => tokio::time::sleep(Duration::from_millis(20)).await,
            s => bail!("status {s}: {}", r.text().await?),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let job = status_url.rsplit('/').next().unwrap_or_default();
    let mut files = Vec::new();
    let (mut resources, mut bytes) = (0, 0);
    for e in manifest["output"].as_array().into_iter().flatten() {
        resources += e["count"].as_u64().unwrap_or(0);
        let name = e["url"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let p = out.join(job).join(name);
        bytes += std::fs::metadata(&p)?.len();
        files.push(p);
    }
    Ok(ExportRun {
        status_url,
        seconds,
        kickoff_ms,
        resources,
        bytes,
        files,
    })
}

/// The floors for the same bytes: `cat` to /dev/null, and a read + write copy (fsynced).
fn floors(files: &[PathBuf], dir: &Path) -> Result<(f64, f64)> {
    let started = Instant::now();
    let ok = Command::new("cat")
        .args(files)
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("cat failed");
    }
    let cat = started.elapsed().as_secs_f64();
    let copy_to = dir.join("copy.ndjson");
    let started = Instant::now();
    {
        use std::io::Write;
        let mut w = std::fs::File::create(&copy_to)?;
        let mut buf = vec![0u8; 1 << 20];
        for f in files {
            let mut r = std::fs::File::open(f)?;
            loop {
                let n = std::io::Read::read(&mut r, &mut buf)?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n])?;
            }
        }
        w.sync_data()?;
    }
    let copy = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(copy_to);
    Ok((cat.max(1e-6), copy.max(1e-6)))
}

/// Resets a live process's peak resident set (VmHWM) to its current one, so the next
/// [`peak_rss_kb`] is the peak of what ran in between (`clear_refs` value 5, Linux ≥ 4.0).
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Peak resident set (VmHWM) of a live process, in KiB.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
