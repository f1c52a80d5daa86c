//! The REST surface around export: CRUD, transaction Bundles, Patient/Group search, and
//! bad input that writes nothing.

use crate::harness::*;
use serde_json::{Value, json};

async fn put(s: &TestServer, path: &str, body: &str) -> reqwest::Response {
    http()
        .put(s.url(path))
        .header("Content-Type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_sets_meta_and_versions() {
    let s = TestServer::start().await;
    let r = put(
        &s,
        "Patient/p1",
        r#"{"resourceType":"Patient","id":"p1","gender":"female"}"#,
    )
    .await;
    assert_eq!(r.status(), 201);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("/fhir/Patient/p1/_history/1")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["meta"]["versionId"], "1");
    assert!(v["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let r = put(
        &s,
        "Patient/p1",
        r#"{"resourceType":"Patient","id":"p1","gender":"male"}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = http().get(s.url("Patient/p1")).send().await.unwrap();
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["gender"], "male");
    let r = http().post(s.url("Observation")).header("Content-Type", "application/fhir+json")
        .body(r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p1"}}"#).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().len() >= 32);
    assert_eq!(
        http()
            .delete(s.url("Patient/p1"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_outcome(
        http().get(s.url("Patient/p1")).send().await.unwrap(),
        410,
        "deleted",
    )
    .await;
    assert_outcome(
        http().get(s.url("Patient/nope")).send().await.unwrap(),
        404,
        "Patient/nope",
    )
    .await;
}

/// Every bad input is a 4xx OperationOutcome and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_written() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 10_000).await;
    assert_outcome(
        put(&s, "Patient/a", "{not json").await,
        400,
        "not valid JSON",
    )
    .await;
    assert_outcome(
        put(&s, "Patient/a", r#"{"id":"a"}"#).await,
        400,
        "no resourceType",
    )
    .await;
    assert_outcome(
        put(&s, "Banana/a", r#"{"resourceType":"Banana","id":"a"}"#).await,
        404,
        "'Banana'",
    )
    .await;
    assert_outcome(
        put(
            &s,
            "Patient/a",
            r#"{"resourceType":"Observation","id":"a"}"#,
        )
        .await,
        400,
        "URL is for Patient",
    )
    .await;
    assert_outcome(
        put(&s, "Patient/a", r#"{"resourceType":"Patient","id":"b"}"#).await,
        400,
        "differs",
    )
    .await;
    assert_outcome(
        put(&s, "Patient/a_b", r#"{"resourceType":"Patient"}"#).await,
        400,
        "invalid id 'a_b'",
    )
    .await;
    assert_outcome(put(&s, "Patient/a", "[1,2]").await, 400, "JSON object").await;
    let big = format!(
        r#"{{"resourceType":"Patient","id":"a","text":{{"div":"{}"}}}}"#,
        "x".repeat(20_000)
    );
    assert_outcome(put(&s, "Patient/a", &big).await, 413, "limit").await;
    let r = http()
        .put(s.url("Patient/a"))
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_outcome(r, 415, "text/plain").await;

    // A transaction whose last entry fails is not applied at all.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": "o 1"}, "request": {"method": "PUT", "url": "Observation/o 1"}}]});
    let r = http()
        .post(&s.base)
        .header("Content-Type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_outcome(r, 400, "Bundle entry 1").await;
    assert!(
        s.store.type_counts("default").await.unwrap().is_empty(),
        "nothing was written"
    );
    assert_outcome(
        http().get(s.url("Nope/1")).send().await.unwrap(),
        404,
        "'Nope'",
    )
    .await;
    assert_outcome(
        http().patch(s.url("Patient/a")).send().await.unwrap(),
        405,
        "PATCH",
    )
    .await;
    assert_outcome(
        http()
            .get(format!("{}/../elsewhere", s.base))
            .send()
            .await
            .unwrap(),
        404,
        "nothing at",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_resolves_references() {
    let s = TestServer::start().await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aa", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "urn:uuid:aa"}},
         "request": {"method": "PUT", "url": "Observation/o1"}}]});
    let r = http()
        .post(&s.base)
        .header("Content-Type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "transaction-response");
    assert_eq!(v["entry"][0]["response"]["status"], "201 Created");
    let loc = v["entry"][0]["response"]["location"].as_str().unwrap();
    let pid = loc.split('/').nth(1).unwrap();
    let o: Value = get_json(s.url("Observation/o1")).await;
    assert_eq!(o["subject"]["reference"], format!("Patient/{pid}"));
}

/// G2: Group and Patient search, `_summary=count`, paging links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_groups_and_patients() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let v: Value = get_json(s.url("Group")).await;
    assert_eq!(v["type"], "searchset");
    assert_eq!(v["total"], 1);
    assert_eq!(v["entry"][0]["resource"]["id"], SYNTHEA_GROUP);
    assert_eq!(
        v["entry"][0]["fullUrl"],
        s.url(&format!("Group/{SYNTHEA_GROUP}"))
    );
    assert_eq!(
        v["entry"][0]["resource"]["member"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    let members = s
        .store
        .group_members("default", SYNTHEA_GROUP)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(members.len(), 100);
    let v: Value = get_json(s.url("Group?name=synthea")).await;
    assert_eq!(v["total"], 1);
    let v: Value = get_json(s.url("Group?name=nothing")).await;
    assert_eq!(v["total"], 0);
    let v: Value = get_json(s.url("Patient?_summary=count")).await;
    assert_eq!(v["total"], 100);
    assert!(v["entry"].as_array().unwrap().is_empty());

    let mut seen = std::collections::BTreeSet::new();
    let mut next = Some(s.url("Patient?_count=30"));
    while let Some(url) = next {
        let v: Value = get_json(&url).await;
        for e in v["entry"].as_array().unwrap() {
            assert!(seen.insert(e["resource"]["id"].as_str().unwrap().to_string()));
        }
        next = v["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 100);

    // identifier: system|value and bare value, from a patient of the files.
    let p = synthea()["Patient"].values().next().unwrap().clone();
    let ident = &p["identifier"][1];
    let (sys, val) = (
        ident["system"].as_str().unwrap(),
        ident["value"].as_str().unwrap(),
    );
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("identifier", &format!("{sys}|{val}"))
        .finish();
    let v: Value = http()
        .get(s.url(&format!("Patient?{q}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["entry"][0]["resource"]["id"], p["id"]);
    let v: Value = http()
        .get(s.url(&format!(
            "Patient?identifier={val}&_id={}",
            p["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["total"], 1);
    assert_outcome(
        http()
            .get(s.url("Patient?birthdate=2000"))
            .send()
            .await
            .unwrap(),
        400,
        "'birthdate'",
    )
    .await;
}
