//! `_typeFilter` (P8) and `_elements` (P5) end to end, with expectations computed from the
//! Synthea files by plain JSON walking (not through our search code).

use crate::harness::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn pct(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn codings<'a>(v: &'a Value, field: &str) -> Vec<&'a Value> {
    let items: Vec<&Value> = match v.get(field) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o) => vec![o],
        None => vec![],
    };
    items
        .into_iter()
        .flat_map(|cc| cc["coding"].as_array().into_iter().flatten())
        .collect()
}

fn ids_where(t: &str, pred: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    synthea()[t]
        .iter()
        .filter(|(_, r)| pred(r))
        .map(|(id, _)| id.clone())
        .collect()
}

async fn export(s: &TestServer, query: &str) -> BTreeMap<String, BTreeSet<String>> {
    let m = wait_manifest(&kickoff_get(&s.url(&format!("$export?{query}"))).await).await;
    ids(&download_output(&m).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_filters_select_exactly() {
    let s = TestServer::start().await;
    s.load_synthea().await;

    let lab = ids_where("Observation", |r| {
        codings(r, "category")
            .iter()
            .any(|c| c["code"] == "laboratory")
    });
    assert!(!lab.is_empty());
    let got = export(
        &s,
        &format!(
            "_type=Observation&_typeFilter={}",
            pct("Observation?category=laboratory")
        ),
    )
    .await;
    assert_eq!(got["Observation"], lab, "Observation?category=laboratory");

    let hr = ids_where("Observation", |r| {
        codings(r, "code")
            .iter()
            .any(|c| c["system"] == "http://loinc.org" && c["code"] == "8867-4")
    });
    let got = export(
        &s,
        &format!(
            "_type=Observation&_typeFilter={}",
            pct("Observation?code=http://loinc.org|8867-4")
        ),
    )
    .await;
    assert_eq!(got["Observation"], hr, "code=system|code");

    // Two filters for one type are OR'ed (P8b).
    let vitals = ids_where("Observation", |r| {
        codings(r, "category")
            .iter()
            .any(|c| c["code"] == "vital-signs")
    });
    let q = format!(
        "_type=Observation&_typeFilter={}&_typeFilter={}",
        pct("Observation?category=vital-signs"),
        pct("Observation?code=http://loinc.org|8867-4")
    );
    let got = export(&s, &q).await;
    assert_eq!(
        got["Observation"],
        vitals.union(&hr).cloned().collect::<BTreeSet<_>>()
    );

    // Comma = OR within a parameter; filters on two types at once; an unfiltered type in _type is whole.
    let meds = ids_where("MedicationRequest", |r| {
        r["status"] == "active" || r["status"] == "completed"
    });
    let onset = ids_where("Condition", |r| {
        r["onsetDateTime"]
            .as_str()
            .is_some_and(|d| &d[..10] >= "2015-01-01")
    });
    assert!(!onset.is_empty() && onset.len() < 639);
    let q = format!(
        "_type=MedicationRequest,Condition,Device&_typeFilter={}&_typeFilter={}",
        pct("MedicationRequest?status=active,completed"),
        pct("Condition?onset-date=ge2015-01-01")
    );
    let got = export(&s, &q).await;
    assert_eq!(got["MedicationRequest"], meds);
    assert_eq!(got["Condition"], onset);
    assert_eq!(got["Device"].len(), 4);

    // `&` = AND across parameters.
    let both = ids_where("MedicationRequest", |r| {
        r["status"] == "active" && r["intent"] == "order"
    });
    let got = export(
        &s,
        &format!(
            "_type=MedicationRequest&_typeFilter={}",
            pct("MedicationRequest?status=active&intent=order")
        ),
    )
    .await;
    assert_eq!(
        got.get("MedicationRequest").cloned().unwrap_or_default(),
        both
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_keep_only_listed_and_tag_subsetted() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let m = wait_manifest(
        &kickoff_get(&s.url("$export?_type=Patient,Device&_elements=Patient.gender,birthDate"))
            .await,
    )
    .await;
    let got = download_output(&m).await;
    assert_eq!(got["Patient"].len(), 100);
    for p in &got["Patient"] {
        let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            keys.is_subset(&BTreeSet::from([
                "resourceType",
                "id",
                "meta",
                "gender",
                "birthDate",
                "_birthDate",
                "_gender"
            ])),
            "{keys:?}"
        );
        assert!(keys.contains("gender"));
        let tags = p["meta"]["tag"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["code"] == "SUBSETTED"));
    }
    // Device has no `gender`; only the bare `birthDate` applies to it (it has none): mandatory parts stay.
    for d in &got["Device"] {
        let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["resourceType", "id", "meta"]));
    }
}

/// M5, T3: with `_since`, resources deleted after it are reported in `deleted` as
/// transaction Bundles of DELETE entries, and are not in `output`; without `_since`,
/// `deleted` is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_after_since_are_reported() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let data = synthea();
    let m0 = wait_manifest(&kickoff_get(&s.url("$export?_type=Device")).await).await;
    assert_eq!(
        m0["deleted"],
        serde_json::json!([]),
        "no _since: deleted is empty"
    );
    let since = m0["transactionTime"].as_str().unwrap().to_string();

    let obs: Vec<String> = data["Observation"].keys().take(2).cloned().collect();
    let patient = data["Patient"].keys().next().unwrap().clone();
    let mut gone = BTreeSet::new();
    for (t, id) in [
        ("Observation", &obs[0]),
        ("Observation", &obs[1]),
        ("Patient", &patient),
    ] {
        let r = http()
            .delete(s.url(&format!("{t}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        gone.insert(format!("{t}/{id}"));
    }
    let cond = data["Condition"].keys().next().unwrap().clone();
    let mut c = data["Condition"][&cond].clone();
    c["clinicalStatus"]["text"] = Value::String("changed".into());
    let r = http()
        .put(s.url(&format!("Condition/{cond}")))
        .header("Content-Type", "application/fhir+json")
        .body(c.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for level in ["$export", "Patient/$export"] {
        let q = format!(
            "{level}?_type=Observation,Patient,Condition&_since={}",
            pct(&since)
        );
        let m = wait_manifest(&kickoff_get(&s.url(&q)).await).await;
        let got = ids(&download_output(&m).await);
        assert_eq!(
            got,
            BTreeMap::from([("Condition".to_string(), BTreeSet::from([cond.clone()]))]),
            "{level}: output"
        );
        let mut reported = BTreeSet::new();
        for e in m["deleted"].as_array().unwrap() {
            assert_eq!(e["type"], "Bundle");
            let text = String::from_utf8(download(e["url"].as_str().unwrap()).await).unwrap();
            for line in text.lines() {
                let b: Value = serde_json::from_str(line).unwrap();
                assert_eq!(b["resourceType"], "Bundle");
                assert_eq!(b["type"], "transaction");
                for entry in b["entry"].as_array().unwrap() {
                    assert_eq!(entry["request"]["method"], "DELETE");
                    assert!(reported.insert(entry["request"]["url"].as_str().unwrap().to_string()));
                }
            }
        }
        assert_eq!(reported, gone, "{level}: deleted");
    }
}
