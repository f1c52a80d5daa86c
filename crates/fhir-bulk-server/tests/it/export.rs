//! Bulk export end to end over HTTP (checklist §1–§7), against the Synthea data, with
//! expectations computed from the files, not through the server's code.

use crate::harness::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// System export returns exactly the loaded resources (K2, M1–M6, P4 without `_type`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_export_returns_every_resource_once() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export")).await;
    assert!(
        status.starts_with("http://127.0.0.1:"),
        "KR1: absolute Content-Location"
    );
    let m = wait_manifest(&status).await;
    assert_eq!(m["request"], s.url("$export"), "M2");
    assert_eq!(
        m["requiresAccessToken"], false,
        "M3: no auth on this server"
    );
    assert_eq!(m["error"], json!([]), "M6");
    assert!(m["transactionTime"].as_str().unwrap().ends_with('Z'), "M1");
    let got = ids(&download_output(&m).await);
    let want: BTreeMap<String, BTreeSet<String>> = synthea()
        .into_iter()
        .map(|(t, rs)| (t, rs.into_keys().collect()))
        .collect();
    assert_eq!(got, want);
    let total: usize = got.values().map(BTreeSet::len).sum();
    assert_eq!(total, 38_473);
}

/// Patient and Group exports return exactly the Patient compartment (K10, G1, G5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_group_exports_return_the_compartment() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let all = expected_compartment(None);
    assert!(all.contains_key("Observation") && !all.contains_key("Practitioner"));

    let m = wait_manifest(&kickoff_get(&s.url("Patient/$export")).await).await;
    assert_eq!(ids(&download_output(&m).await), all, "Patient/$export");

    let m =
        wait_manifest(&kickoff_get(&s.url(&format!("Group/{SYNTHEA_GROUP}/$export"))).await).await;
    let mut want = all.clone();
    // The Synthea Group references every patient, so it is in their compartments too.
    assert!(want["Group"].contains(SYNTHEA_GROUP));
    want.retain(|_, v| !v.is_empty());
    assert_eq!(ids(&download_output(&m).await), want, "Group/$export");

    // A Group of three patients, one of them inactive (not a member).
    let patients: Vec<String> = synthea()["Patient"].keys().take(3).cloned().collect();
    let group = json!({"resourceType": "Group", "id": "three", "type": "person", "actual": true, "member": [
        {"entity": {"reference": format!("Patient/{}", patients[0])}},
        {"entity": {"reference": format!("Patient/{}", patients[1])}},
        {"entity": {"reference": format!("Patient/{}", patients[2])}, "inactive": true}]});
    let r = http()
        .put(s.url("Group/three"))
        .header("Content-Type", "application/fhir+json")
        .body(group.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = wait_manifest(&kickoff_get(&s.url("Group/three/$export")).await).await;
    let members: BTreeSet<String> = patients[..2].iter().cloned().collect();
    let mut want = expected_compartment(Some(&members));
    want.entry("Group".into())
        .or_default()
        .insert("three".into());
    assert_eq!(
        ids(&download_output(&m).await),
        want,
        "Group of two active members"
    );
}

/// `_type`, `_since`, `_until` and `patient` filter exactly; GET and POST agree (P2–P6, T1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_filter_exactly() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let data = synthea();

    // _type (P4): only the listed types, all of them.
    let m =
        wait_manifest(&kickoff_get(&s.url("$export?_type=Patient,Condition&_type=Device")).await)
            .await;
    let got = ids(&download_output(&m).await);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec!["Condition", "Device", "Patient"]
    );
    assert_eq!(got["Condition"].len(), 639);

    // _since (T1): only what changed strictly after; use the first export's transactionTime.
    let t1 = m["transactionTime"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let pid = data["Patient"].keys().next().unwrap().clone();
    let mut p = data["Patient"][&pid].clone();
    p["gender"] = json!("other");
    let r = http()
        .put(s.url(&format!("Patient/{pid}")))
        .header("Content-Type", "application/fhir+json")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let since = t1.replace('+', "%2B");
    let m2 = wait_manifest(&kickoff_get(&s.url(&format!("$export?_since={since}"))).await).await;
    let got = ids(&download_output(&m2).await);
    assert_eq!(
        got,
        BTreeMap::from([("Patient".to_string(), BTreeSet::from([pid.clone()]))])
    );
    let updated = &download_output(&m2).await["Patient"][0];
    assert_eq!(updated["gender"], "other");
    assert_eq!(updated["meta"]["versionId"], "2");

    // _until (P3): changed at or before; files hold only latest versions (F5), so the
    // patient updated after the first transactionTime is not in a window that ends there.
    let m3 =
        wait_manifest(&kickoff_get(&s.url(&format!("$export?_type=Patient&_until={since}"))).await)
            .await;
    let got = ids(&download_output(&m3).await);
    assert_eq!(got["Patient"].len(), 99);
    assert!(!got["Patient"].contains(&pid));

    // patient (P6, POST): two patients' compartments only; GET and POST agree on the rest.
    let two: Vec<String> = data["Patient"].keys().skip(1).take(2).cloned().collect();
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient,Observation,Encounter"},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{}", two[0])}},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{}", two[1])}}]});
    let m4 = wait_manifest(&kickoff_post(&s.url("Patient/$export"), &body).await).await;
    assert_eq!(
        m4["request"],
        s.url("Patient/$export"),
        "M2: POST request without parameters"
    );
    let set: BTreeSet<String> = two.iter().cloned().collect();
    let mut want = expected_compartment(Some(&set));
    want.retain(|t, _| ["Patient", "Observation", "Encounter"].contains(&t.as_str()));
    assert_eq!(ids(&download_output(&m4).await), want);

    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Condition,Device"}, {"name": "_outputFormat", "valueString": "ndjson"}]});
    let post = wait_manifest(&kickoff_post(&s.url("$export"), &body).await).await;
    let get = wait_manifest(
        &kickoff_get(&s.url("$export?_type=Condition,Device&_outputFormat=ndjson")).await,
    )
    .await;
    assert_eq!(
        download_output(&post).await,
        download_output(&get).await,
        "GET and POST give the same export"
    );
}

/// A job's snapshot is fixed at kick-off (M1): writes after it are not exported, versions
/// current at kick-off are, and the job survives a restart of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_at_kickoff_and_survives_restart() {
    // First server: no workers, so the job waits in the store.
    let s = TestServer::start_with(|c| c.workers = 0).await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export?_type=Patient,Device")).await;
    let data = synthea();
    let (p1, p2) = {
        let mut k = data["Patient"].keys();
        (k.next().unwrap().clone(), k.next().unwrap().clone())
    };
    let mut p = data["Patient"][&p1].clone();
    p["gender"] = json!("unknown");
    let put = |id: String, v: Value| {
        let url = s.url(&format!("Patient/{id}"));
        async move {
            http()
                .put(url)
                .header("Content-Type", "application/fhir+json")
                .body(v.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(put(p1.clone(), p).await.status(), 200);
    assert_eq!(
        put(
            "brand-new".into(),
            json!({"resourceType": "Patient", "id": "brand-new"})
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        http()
            .delete(s.url(&format!("Patient/{p2}")))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = http().get(&status).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let progress = r.headers()["x-progress"].to_str().unwrap().to_string();
    assert!(
        progress.contains("0%") && progress.contains("of ~104"),
        "{progress}"
    );
    assert!(progress.len() < 100, "ST3: under 100 characters");

    // Restart on the same database and folder, now with workers.
    let (db, out) = (s.db.clone(), s.output.clone());
    let dir = s.stop().await;
    let s2 = TestServer::start_on(db, out, |_| {}).await;
    // Same job, same path; only the port of the new server differs.
    let path = &status[status.find("/fhir/").unwrap() + "/fhir/".len()..];
    let m = wait_manifest(&s2.url(path)).await;
    let got = download_output(&m).await;
    let patients: BTreeMap<&str, &Value> = got["Patient"]
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(
        patients.len(),
        100,
        "the deleted patient is in, the new one is not"
    );
    assert!(!patients.contains_key("brand-new"));
    assert!(patients.contains_key(p2.as_str()));
    assert_ne!(
        patients[p1.as_str()]["gender"],
        "unknown",
        "the version current at kick-off"
    );
    assert_eq!(got["Device"].len(), 4);
    drop(dir);
}

/// DELETE cancels; later polls and downloads are 404 with an OperationOutcome (D1–D3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_404() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export?_type=Patient")).await;
    let m = wait_manifest(&status).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    let r = http().delete(&status).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_outcome(
        http().get(&status).send().await.unwrap(),
        404,
        "no export job",
    )
    .await;
    assert_outcome(
        http().get(&file).send().await.unwrap(),
        404,
        "no export job",
    )
    .await;
    assert_outcome(
        http().delete(&status).send().await.unwrap(),
        404,
        "no export job",
    )
    .await;
    // The purger removes the files.
    let job = status.rsplit('/').next().unwrap();
    let dir = s.output.join(job);
    for _ in 0..50 {
        if !dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!dir.exists(), "files of a deleted job are removed");
}

/// gzip (F4), Range (resumed downloads) and HEAD round-trip byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_range_and_head() {
    use std::io::Read;
    let s = TestServer::start().await;
    s.load_synthea().await;
    let m = wait_manifest(&kickoff_get(&s.url("$export?_type=Observation")).await).await;
    let url = m["output"][0]["url"].as_str().unwrap().to_string();
    let plain = download(&url).await;
    assert!(plain.len() > 1_000_000);

    let r = http()
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    assert!(gz.len() < plain.len() / 3);
    let mut unzipped = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);

    let cut = 123_457;
    let r = http()
        .get(&url)
        .header("Range", format!("bytes={cut}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {cut}-{}/{}", plain.len() - 1, plain.len()).as_str()
    );
    let tail = r.bytes().await.unwrap();
    assert_eq!([&plain[..cut], &tail[..]].concat(), plain);
    let r = http()
        .get(&url)
        .header("Range", format!("bytes={}-", plain.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    let r = http().head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        plain.len().to_string().as_str()
    );
}

/// Files roll over at the configured count (issue: configurable size), with exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_roll_over() {
    let s = TestServer::start_with(|c| c.file_max_resources = 5_000).await;
    s.load_synthea().await;
    let m = wait_manifest(&kickoff_get(&s.url("$export?_type=Observation,Patient")).await).await;
    let obs: Vec<&Value> = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "Observation")
        .collect();
    assert_eq!(
        obs.len(),
        4,
        "16,315 Observations in files of at most 5,000"
    );
    assert!(obs.iter().all(|e| e["count"].as_u64().unwrap() <= 5_000));
    let got = ids(&download_output(&m).await);
    assert_eq!(got["Observation"].len(), 16_315);
}

/// Jobs and files expire; then the status URL is 404 and the disk space is reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_expire() {
    let s = TestServer::start_with(|c| c.job_ttl = Duration::from_secs(2)).await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export?_type=Patient")).await;
    wait_manifest(&status).await;
    let job = status.rsplit('/').next().unwrap().to_string();
    assert!(s.output.join(&job).exists());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_outcome(http().get(&status).send().await.unwrap(), 404, "expired").await;
    assert!(!s.output.join(&job).exists(), "expired files are deleted");
}

/// KR3: a per-client limit of running exports answers 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_export_limit() {
    let s = TestServer::start_with(|c| {
        c.workers = 0;
        c.max_exports_per_client = 2;
    })
    .await;
    let r = http()
        .put(s.url("Patient/p"))
        .header("Content-Type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient","id":"p"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    kickoff_get(&s.url("$export")).await;
    kickoff_get(&s.url("$export")).await;
    let r = http()
        .get(s.url("$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_outcome(r, 429, "already running").await;
}
