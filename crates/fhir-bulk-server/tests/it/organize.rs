//! The STU3 export options end to end: `organizeOutputBy` (P9, O1–O3, M4, M7),
//! `allowPartialManifests` (P10, ST4, M8) and `includeAssociatedData` (P7), with
//! expectations computed from the Synthea files, not through the server's code.

use crate::harness::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// `(type, id)` of a resource line.
fn key(v: &Value) -> (String, String) {
    (
        v["resourceType"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

/// The patient a block header names, if `v` is one (O2).
fn header_patient(v: &Value) -> Option<String> {
    if v["resourceType"] != "Parameters" {
        return None;
    }
    assert_eq!(v["parameter"][0]["name"], "header", "{v}");
    let r = v["parameter"][0]["valueReference"]["reference"]
        .as_str()
        .unwrap();
    Some(r.strip_prefix("Patient/").unwrap().to_string())
}

/// Expected blocks of an organized export: for each patient of `patients` (all when `None`),
/// the `(type, id)` of every resource of `types` that is in its compartment, sorted. A
/// resource of several compartments is in each of their blocks (O3).
fn expected_blocks(
    patients: Option<&BTreeSet<String>>,
    types: Option<&[&str]>,
) -> BTreeMap<String, Vec<(String, String)>> {
    let compartment = compartment_types();
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (t, rs) in synthea() {
        if !compartment.contains(&t) || types.is_some_and(|ts| !ts.contains(&t.as_str())) {
            continue;
        }
        for (id, r) in rs {
            let mut refs = BTreeSet::new();
            if t == "Patient" {
                refs.insert(id.clone());
            }
            patient_refs(&r, &mut refs);
            for p in refs
                .into_iter()
                .filter(|p| patients.is_none_or(|ps| ps.contains(p)))
            {
                out.entry(p).or_default().push((t.clone(), id.clone()));
            }
        }
    }
    out.values_mut().for_each(|b| b.sort());
    out
}

/// Downloads an organized export and checks its shape: every file starts with a header,
/// each patient has exactly one block (never split), its Patient comes first when exported,
/// `count` is resources (not headers), files stay within `max` unless one block alone is
/// bigger. Returns the blocks, sorted.
async fn organized_blocks(m: &Value, max: u64) -> BTreeMap<String, Vec<(String, String)>> {
    assert_eq!(m["outputOrganizedBy"], "Patient", "M7");
    let output = m["output"].as_array().unwrap();
    let mut blocks: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for entry in output {
        assert!(entry.get("type").is_none(), "M4: no type when organized");
        let body = download(entry["url"].as_str().unwrap()).await;
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert!(
            header_patient(&lines[0]).is_some(),
            "O2: a file starts with a header"
        );
        let (mut current, mut headers, mut resources) = (String::new(), 0, 0u64);
        let mut first_of_block = false;
        for l in &lines {
            if let Some(p) = header_patient(l) {
                assert!(
                    !blocks.contains_key(&p),
                    "O2: the block of {p} is split or repeated"
                );
                blocks.insert(p.clone(), Vec::new());
                (current, first_of_block) = (p, true);
                headers += 1;
                continue;
            }
            let k = key(l);
            if k.0 == "Patient" && k.1 == current {
                assert!(first_of_block, "the Patient comes right after its header");
            }
            blocks.get_mut(&current).unwrap().push(k);
            first_of_block = false;
            resources += 1;
        }
        assert_eq!(
            entry["count"].as_u64().unwrap(),
            resources,
            "count is resources"
        );
        assert!(
            resources <= max || headers == 1,
            "a file goes past {max} only with one block"
        );
    }
    blocks.values_mut().for_each(|b| b.sort());
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organized_by_patient_in_whole_blocks() {
    let s = TestServer::start_with(|c| c.file_max_resources = 500).await;
    s.load_synthea().await;

    // Patient level, every compartment type. The Synthea Group names every patient, so it
    // is repeated in every block (O3).
    let m =
        wait_manifest(&kickoff_get(&s.url("Patient/$export?organizeOutputBy=Patient")).await).await;
    assert!(
        m["output"].as_array().unwrap().len() > 50,
        "files of at most 500"
    );
    let got = organized_blocks(&m, 500).await;
    let want = expected_blocks(None, None);
    assert_eq!(got.len(), 100);
    assert!(
        want.values()
            .all(|b| b.contains(&("Group".into(), SYNTHEA_GROUP.into())))
    );
    assert_eq!(got, want, "Patient/$export organized");

    // Group level (POST), two active members of three, some types, with _typeFilter applied
    // per line.
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
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient,Observation,Encounter"},
        {"name": "_typeFilter", "valueString": "Encounter?class=AMB"},
        {"name": "organizeOutputBy", "valueString": "Patient"}]});
    let m = wait_manifest(&kickoff_post(&s.url("Group/three/$export"), &body).await).await;
    let got = organized_blocks(&m, 500).await;
    let members: BTreeSet<String> = patients[..2].iter().cloned().collect();
    let ambulatory: BTreeSet<String> = synthea()["Encounter"]
        .iter()
        .filter(|(_, e)| e["class"]["code"] == "AMB")
        .map(|(id, _)| id.clone())
        .collect();
    let mut want = expected_blocks(
        Some(&members),
        Some(&["Patient", "Observation", "Encounter"]),
    );
    for b in want.values_mut() {
        b.retain(|(t, id)| t != "Encounter" || ambulatory.contains(id));
    }
    assert_eq!(got, want, "Group/three/$export organized");
}

/// Page `url` as `(status, body)`; pages are plain JSON (ST4).
async fn page(url: &str) -> (u16, Value) {
    let r = http()
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 202 {
        assert!(r.headers().contains_key("x-progress") && r.headers().contains_key("retry-after"));
    }
    assert_eq!(r.headers()["content-type"], "application/json", "{url}");
    (status, r.json().await.unwrap())
}

/// Follows `link.next` from `first`, expecting `status` for every page.
async fn all_pages(first: &str, status: u16) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(url) = next {
        let (got, body) = page(&url).await;
        assert_eq!(got, status, "{url}");
        next = body["link"][0]["url"].as_str().map(str::to_string);
        if next.is_some() {
            assert_eq!(body["link"][0]["relation"], "next");
        }
        pages.push(body);
    }
    pages
}

/// ST4, M8: partial manifests while the job runs, pages that never change but for `link`,
/// files downloadable before the end, and all pages together are the whole export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_manifests_page_by_completed_unit() {
    // No workers at first, so one unit can be held back: it keeps the job running for as
    // long as the test needs, whatever the machine's speed.
    let s = TestServer::start_with(|c| c.workers = 0).await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export?allowPartialManifests=true")).await;
    let (job, held) = s
        .store
        .claim_unit("held-by-test", Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    assert!(status.ends_with(&job.id));
    let (db, out) = (s.db.clone(), s.output.clone());
    let dir = s.stop().await;
    let s = TestServer::start_on(db, out, |c| c.file_max_resources = 3_000).await;
    let status = s.url(&status[status.find("bulk-status/").unwrap()..]);

    // Wait until every other unit is done.
    for _ in 0..600 {
        let units = s.store.units(&job.id).await.unwrap();
        if units.iter().filter(|u| !u.done).count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let running = all_pages(&status, 202).await;
    assert!(running.len() > 5, "one page per finished unit with files");
    let first = running[0]["output"][0]["url"].as_str().unwrap();
    assert!(!download(first).await.is_empty(), "a listed file is ready");
    assert_eq!(page(&status).await.0, 202, "downloaded while the job runs");
    assert_outcome(
        http()
            .get(format!("{status}?page=99"))
            .send()
            .await
            .unwrap(),
        404,
        "no manifest page 99",
    )
    .await;

    s.store
        .release_unit(&job.id, held.seq, "held-by-test")
        .await
        .unwrap();
    wait_manifest(&status).await;
    let done = all_pages(&status, 200).await;
    assert_eq!(
        done.len(),
        running.len() + 1,
        "the held unit adds the last page"
    );
    for (n, (before, after)) in running.iter().zip(&done).enumerate() {
        let mut after = after.clone();
        if before.get("link").is_none() {
            // The last page served while running gains its `next` link, nothing else.
            assert_eq!(n, running.len() - 1);
            after.as_object_mut().unwrap().remove("link");
        }
        assert_eq!(before, &after, "page {} changed", n + 1);
    }
    assert!(done.last().unwrap().get("link").is_none());
    let last = &done.last().unwrap()["output"];
    assert!(
        last.as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == held.resource_type.as_str())
    );

    // Together the pages list every file once and every resource once (M4, M8).
    let mut merged = done[0].clone();
    let urls: Vec<String> = done
        .iter()
        .flat_map(|p| p["output"].as_array().unwrap().iter())
        .map(|e| e["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        urls.iter().collect::<BTreeSet<_>>().len(),
        urls.len(),
        "no file listed twice"
    );
    merged["output"] = Value::Array(
        done.iter()
            .flat_map(|p| p["output"].as_array().unwrap().clone())
            .collect(),
    );
    let got = ids(&download_output(&merged).await);
    let want: BTreeMap<String, BTreeSet<String>> = synthea()
        .into_iter()
        .map(|(t, rs)| (t, rs.into_keys().collect()))
        .collect();
    assert_eq!(got, want);

    // `false` is accepted and changes nothing: one manifest, no link.
    let m = wait_manifest(
        &kickoff_get(&s.url("$export?_type=Device&allowPartialManifests=false")).await,
    )
    .await;
    assert!(m.get("link").is_none());
    assert_eq!(m["output"].as_array().unwrap().len(), 1);
    drop(dir);
}

/// P7: Provenance comes with the resources it targets, whatever `_type` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associated_provenance_follows_exported_targets() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let data = synthea();
    let patients: Vec<String> = data["Patient"].keys().take(3).cloned().collect();
    let of = |t: &str, p: &str| -> String {
        data[t]
            .iter()
            .find(|(_, r)| r["subject"]["reference"] == format!("Patient/{p}").as_str())
            .map(|(id, _)| id.clone())
            .unwrap()
    };
    let (o1, o2, o3) = (
        of("Observation", &patients[0]),
        of("Observation", &patients[1]),
        of("Observation", &patients[2]),
    );
    let e1 = of("Encounter", &patients[0]);
    // id, recorded, targets
    let provenance = [
        (
            "a",
            "2020-01-01T00:00:00Z",
            vec![format!("Observation/{o1}")],
        ),
        (
            "b",
            "2021-01-01T00:00:00+01:00",
            vec![format!("Observation/{o1}"), format!("Observation/{o2}")],
        ),
        ("c", "2022-01-01T00:00:00Z", vec![format!("Encounter/{e1}")]),
        (
            "d",
            "2022-01-01T00:00:00Z",
            vec!["Observation/not-there".to_string()],
        ),
        (
            "e",
            "2019-01-01T00:00:00Z",
            vec![format!("Observation/{o3}")],
        ),
    ];
    for (id, recorded, targets) in &provenance {
        let p = json!({"resourceType": "Provenance", "id": id, "recorded": recorded,
            "target": targets.iter().map(|t| json!({"reference": t})).collect::<Vec<_>>(),
            "agent": [{"who": {"display": "test"}}]});
        let r = http()
            .put(s.url(&format!("Provenance/{id}")))
            .header("Content-Type", "application/fhir+json")
            .body(p.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let group = json!({"resourceType": "Group", "id": "two", "type": "person", "actual": true, "member": [
        {"entity": {"reference": format!("Patient/{}", patients[0])}},
        {"entity": {"reference": format!("Patient/{}", patients[1])}}]});
    let r = http()
        .put(s.url("Group/two"))
        .header("Content-Type", "application/fhir+json")
        .body(group.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Expected: the Provenance whose targets include an exported Observation.
    let relevant = |observations: &BTreeSet<String>| -> BTreeSet<String> {
        provenance
            .iter()
            .filter(|(_, _, ts)| {
                ts.iter().any(|t| {
                    t.strip_prefix("Observation/")
                        .is_some_and(|o| observations.contains(o))
                })
            })
            .map(|(id, _, _)| id.to_string())
            .collect()
    };
    let members: BTreeSet<String> = patients[..2].iter().cloned().collect();
    let group_obs = expected_compartment(Some(&members))["Observation"].clone();
    let all_obs: BTreeSet<String> = data["Observation"].keys().cloned().collect();
    let export = |q: &str| {
        let url = s.url(q);
        async move { ids(&download_output(&wait_manifest(&kickoff_get(&url).await).await).await) }
    };

    let got = export(
        "Group/two/$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources",
    )
    .await;
    assert_eq!(got["Observation"], group_obs);
    assert_eq!(got["Provenance"], relevant(&group_obs));
    assert_eq!(got["Provenance"], BTreeSet::from(["a".into(), "b".into()]));

    // Latest: b is newer than a for o1 and the only one for o2.
    let got =
        export("Patient/$export?_type=Observation&includeAssociatedData=LatestProvenanceResources")
            .await;
    assert_eq!(got["Provenance"], BTreeSet::from(["b".into(), "e".into()]));

    // System level: `_type` without Provenance still gets the relevant ones.
    let got =
        export("$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources").await;
    assert_eq!(got["Provenance"], relevant(&all_obs));
    assert_eq!(got.len(), 2);

    assert_outcome(
        http()
            .get(s.url("$export?includeAssociatedData=Bogus"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap(),
        400,
        "'Bogus'",
    )
    .await;
}
