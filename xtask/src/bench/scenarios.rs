//! The scenarios of issue 8 beyond plain exports: the client's download against `curl`,
//! status polling under load, kick-off latency, and `_typeFilter` / `_elements` exports.
//! Every loop is bounded in count and time; all traffic is loopback.

use super::{ExportRun, export, mb};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Concurrent status pollers.
const POLLERS: usize = 200;
/// Most requests one poller sends.
const POLLS_EACH: usize = 200;
/// Pause between one poller's requests.
const POLL_GAP: Duration = Duration::from_millis(100);
/// Longest time the pollers run.
const POLL_WINDOW: Duration = Duration::from_secs(20);
/// Kick-offs timed (each DELETEd right away).
const KICKOFFS: usize = 50;
/// Longest any single export or client run may take before the bench gives up.
const RUN_LIMIT: Duration = Duration::from_secs(30 * 60);
/// The client's default `--parallel`.
const CLIENT_PARALLEL: usize = 4;

/// One table row and its JSON.
pub struct Outcome {
    pub rows: Vec<(String, String)>,
    pub json: Vec<(String, Value)>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            rows: Vec::new(),
            json: Vec::new(),
        }
    }
}

/// Percentile `q` (0..=1) of sorted values, nearest rank.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn sort(v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
}

/// `_typeFilter` and `_elements` exports, each next to a plain export of the same type.
pub async fn filtered_exports(http: &reqwest::Client, base: &str, out: &Path) -> Result<Outcome> {
    let mut o = Outcome::new();
    let url = format!("{base}/$export");
    let cases = [
        (
            "typefilter",
            "Observation",
            vec![
                ("_type", "Observation"),
                ("_typeFilter", "Observation?category=laboratory"),
            ],
        ),
        (
            "elements",
            "Patient",
            vec![("_type", "Patient"), ("_elements", "id,gender")],
        ),
    ];
    for (name, ty, params) in cases {
        let plain_url = reqwest::Url::parse_with_params(&url, [("_type", ty)])?;
        let plain = export(http, plain_url.as_str(), out).await?;
        let _ = http.delete(&plain.status_url).send().await;
        let filtered_url = reqwest::Url::parse_with_params(&url, &params)?;
        let f = export(http, filtered_url.as_str(), out).await?;
        let _ = http.delete(&f.status_url).send().await;
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let rps = |r: &ExportRun| r.resources as f64 / r.seconds;
        let mbps = |r: &ExportRun| r.bytes as f64 / 1e6 / r.seconds;
        o.rows.push((
            format!("export {name}"),
            format!(
                "{}: {} resources, {} in {:.2} s: {:.0} resources/s, {:.1} MB/s | plain _type={ty}: {} resources, {} in {:.2} s: {:.0} resources/s, {:.1} MB/s | time {:.2}x, resources/s {:.2}x of plain",
                query.join("&"),
                f.resources,
                mb(f.bytes),
                f.seconds,
                rps(&f),
                mbps(&f),
                plain.resources,
                mb(plain.bytes),
                plain.seconds,
                rps(&plain),
                mbps(&plain),
                f.seconds / plain.seconds,
                rps(&f) / rps(&plain),
            ),
        ));
        o.json.push((
            format!("export_{name}"),
            json!({
                "query": query.join("&"),
                "resources": f.resources, "bytes": f.bytes, "seconds": f.seconds,
                "resources_per_s": rps(&f), "mb_per_s": mbps(&f),
                "plain": {"type": ty, "resources": plain.resources, "bytes": plain.bytes, "seconds": plain.seconds,
                          "resources_per_s": rps(&plain), "mb_per_s": mbps(&plain)},
                "time_ratio_to_plain": f.seconds / plain.seconds,
                "resources_per_s_ratio_to_plain": rps(&f) / rps(&plain),
            }),
        ));
    }
    Ok(o)
}

/// Kick-off latency over [`KICKOFFS`] system kick-offs, each job DELETEd right after.
pub async fn kickoff_latency(http: &reqwest::Client, base: &str) -> Result<Outcome> {
    let mut o = Outcome::new();
    let mut ms = Vec::with_capacity(KICKOFFS);
    for _ in 0..KICKOFFS {
        let started = Instant::now();
        let r = http
            .get(format!("{base}/$export"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        if r.status() != 202 {
            bail!("kick-off: {} {}", r.status(), r.text().await?);
        }
        let status_url = r.headers()["content-location"].to_str()?.to_string();
        http.delete(&status_url).send().await?;
    }
    // Let the cancelled jobs' units wind down before the next measurement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sort(&mut ms);
    let (p50, p99, max) = (pct(&ms, 0.5), pct(&ms, 0.99), pct(&ms, 1.0));
    o.rows.push((
        "kick-off latency".into(),
        format!("{KICKOFFS} system kick-offs (each DELETEd after): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"),
    ));
    o.json.push((
        "kickoff_latency".into(),
        json!({"kickoffs": KICKOFFS, "p50_ms": p50, "p99_ms": p99, "max_ms": max}),
    ));
    Ok(o)
}

/// A system export with [`POLLERS`] concurrent pollers on its status URL.
pub async fn polling_under_load(
    http: &reqwest::Client,
    base: &str,
    plain_system_seconds: Option<f64>,
) -> Result<Outcome> {
    let mut o = Outcome::new();
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
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + POLL_WINDOW;
    let mut tasks = Vec::with_capacity(POLLERS);
    for _ in 0..POLLERS {
        let (http, url, done) = (http.clone(), status_url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            for _ in 0..POLLS_EACH {
                if done.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match http.get(&url).send().await {
                    Ok(r) => {
                        let code = r.status().as_u16();
                        let body = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                        match (code, body) {
                            (200, Ok(_)) => done.store(true, Ordering::Relaxed),
                            (202, Ok(_)) => {}
                            _ => errors += 1,
                        }
                    }
                    Err(_) => errors += 1,
                }
                tokio::time::sleep(POLL_GAP).await;
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let window = started.elapsed().as_secs_f64();
    // Finish the export (if the pollers stopped first) to time it under that load.
    let seconds = loop {
        let r = http.get(&status_url).send().await?;
        match r.status().as_u16() {
            200 => break started.elapsed().as_secs_f64(),
            202 if started.elapsed() < RUN_LIMIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            s => bail!("status {s}: {}", r.text().await?),
        }
    };
    let _ = http.delete(&status_url).send().await;
    sort(&mut lat);
    let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), pct(&lat, 1.0));
    let vs_plain = plain_system_seconds
        .map(|p| format!(" ({:.2}x the unpolled system export)", seconds / p))
        .unwrap_or_default();
    o.rows.push((
        "status polling".into(),
        format!(
            "{POLLERS} pollers (every {} ms, ≤{POLLS_EACH} each, ≤{} s) during a system export: {} GETs in {window:.1} s ({:.0}/s), {errors} errors; p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; export took {seconds:.2} s{vs_plain}",
            POLL_GAP.as_millis(),
            POLL_WINDOW.as_secs(),
            lat.len(),
            lat.len() as f64 / window,
        ),
    ));
    o.json.push((
        "status_polling".into(),
        json!({
            "pollers": POLLERS, "gap_ms": POLL_GAP.as_millis() as u64, "requests": lat.len(), "errors": errors,
            "window_seconds": window, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "export_seconds": seconds, "export_ratio_to_unpolled": plain_system_seconds.map(|p| seconds / p),
        }),
    ));
    Ok(o)
}

/// What `fhir-bulk export` did: total and download-phase seconds, peak RSS, bytes.
struct ClientRun {
    total: f64,
    download: f64,
    rss_kb: u64,
    bytes: u64,
    resources: u64,
    urls: Vec<String>,
    status_url: Option<String>,
}

/// Runs `fhir-bulk export <base> --out DIR --keep --accept-encoding <coding>` under
/// `/usr/bin/time`. The download phase starts when the client writes `DIR/manifest.json`
/// (watched every 5 ms).
fn run_client(bin: &Path, base: &str, dir: &Path, coding: &str) -> Result<ClientRun> {
    let dl = dir.join("client-download");
    let _ = std::fs::remove_dir_all(&dl);
    let err_path = dir.join("client.stderr");
    let time = Path::new("/usr/bin/time").exists();
    let mut cmd = if time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg("export")
        .arg(base)
        .arg("--out")
        .arg(&dl)
        .args(["--keep", "--log", "warn", "--accept-encoding", coding])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path)?);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let manifest = dl.join("manifest.json");
    let mut manifest_at = None;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if manifest_at.is_none() && manifest.exists() {
            manifest_at = Some(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("fhir-bulk export took over {} s", RUN_LIMIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let total = started.elapsed().as_secs_f64();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        bail!("fhir-bulk export failed ({status}): {stderr}");
    }
    let rss_kb = if time {
        stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let summary: Value = serde_json::from_slice(&std::fs::read(dl.join("summary.json"))?)
        .context("reading the client's summary.json")?;
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    let urls = m["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["url"].as_str().map(str::to_string))
        .collect();
    Ok(ClientRun {
        total,
        download: total - manifest_at.unwrap_or(0.0),
        rss_kb,
        bytes: summary["bytes"].as_u64().unwrap_or(0),
        resources: summary["resources"].as_u64().unwrap_or(0),
        urls,
        status_url: summary["status_url"].as_str().map(str::to_string),
    })
}

/// Seconds for `curl` to fetch `urls` into files under `dir`, `parallel` at a time (`-Z`),
/// as the client does. With `compressed`, curl asks for gzip and inflates it, as our client
/// does by default (F4), so the server does the same work for both.
fn curl_fetch(urls: &[String], parallel: usize, compressed: bool, dir: &Path) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut c = Command::new("curl");
    c.args(["-s", "-S", "-f", "--no-progress-meter", "-Z"])
        .args(["--parallel-max", &parallel.to_string()]);
    if compressed {
        c.arg("--compressed");
    }
    for (i, u) in urls.iter().enumerate() {
        c.arg("-o").arg(dir.join(format!("{i}.ndjson"))).arg(u);
    }
    let started = Instant::now();
    let ok = c.status()?.success();
    let seconds = started.elapsed().as_secs_f64().max(1e-6);
    let _ = std::fs::remove_dir_all(dir);
    if !ok {
        bail!("curl failed fetching the manifest's files");
    }
    Ok(seconds)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The client's download of a system export, with gzip and plain transfers, each next to
/// `curl` fetching the same files the same way.
pub fn client_download(
    bin: &Path,
    base: &str,
    dir: &Path,
    http_delete: impl Fn(&str),
) -> Result<Outcome> {
    let mut o = Outcome::new();
    let curl = have("curl");
    let mut texts = Vec::new();
    let mut j = json!({ "parallel": CLIENT_PARALLEL });
    // Each way files can travel, client and curl alike: gzip (the client's default, the
    // server compresses on the fly) and plain.
    for (coding, compressed) in [("gzip", true), ("identity", false)] {
        let c = run_client(bin, base, dir, coding)?;
        let dl_mbps = c.bytes as f64 / 1e6 / c.download.max(1e-6);
        let mut text = format!(
            "{coding}: {dl_mbps:.0} MB/s ({} in {} files, download phase {:.2} s), peak RSS {} MB",
            mb(c.bytes),
            c.urls.len(),
            c.download,
            c.rss_kb / 1024
        );
        let mut r = json!({
            "resources": c.resources, "bytes": c.bytes, "files": c.urls.len(),
            "total_seconds": c.total, "download_seconds": c.download,
            "download_mb_per_s": dl_mbps, "peak_rss_kb": c.rss_kb,
        });
        if curl {
            let t = curl_fetch(
                &c.urls,
                CLIENT_PARALLEL,
                compressed,
                &dir.join("curl-download"),
            )?;
            // A throughput ratio: client MB/s over curl's (1.0 = as fast).
            text.push_str(&format!(
                ", curl -Z{CLIENT_PARALLEL} {:.0} MB/s (client {:.2}x)",
                c.bytes as f64 / 1e6 / t,
                t / c.download
            ));
            r["curl_seconds"] = json!(t);
            r["throughput_ratio_to_curl"] = json!(t / c.download);
        }
        if let Some(s) = &c.status_url {
            http_delete(s);
        }
        texts.push(text);
        j[coding] = r;
    }
    if !curl {
        texts.push("curl comparison skipped (curl not found)".into());
        j["curl_skipped"] = json!(true);
    }
    let text = texts.join("; ");
    o.rows.push(("client download".into(), text));
    o.json.push(("client_download".into(), j));
    Ok(o)
}
