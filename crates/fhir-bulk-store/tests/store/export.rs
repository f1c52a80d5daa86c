//! Loads and export reads: what a scan returns, the snapshot of a running job, and a load
//! that fails.

use crate::{obs, patient_job, put, store};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_store::{
    ExportChunk, ExportScan, ExportSet, IdRange, PatientScope, Store, StoreError, Write,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A scan of tenant `t`, from the beginning.
fn scan(resource_type: &str, until: Instant, scope: PatientScope) -> ExportScan {
    ExportScan {
        tenant: "t".into(),
        resource_type: resource_type.into(),
        since: None,
        until,
        scope,
        ids: IdRange::all(),
    }
}

async fn chunks(s: &dyn Store, scan: ExportScan, chunk_bytes: usize) -> Vec<ExportChunk> {
    s.export(scan, chunk_bytes).try_collect().await.unwrap()
}

/// The resources of a scan's chunks; each chunk must be whole lines, as many as it counts.
fn resources(chunks: &[ExportChunk]) -> Vec<Value> {
    let mut out = Vec::new();
    for c in chunks {
        assert!(c.bytes.ends_with(b"\n"), "a chunk ends with a whole line");
        let values = serde_json::Deserializer::from_slice(&c.bytes)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(values.len() as u64, c.count);
        out.extend(values);
    }
    out
}

/// A system scan returns exactly the stored bytes of every live resource, once, in
/// chunks of whole lines of about `chunk_bytes`.
#[tokio::test]
async fn system_export_is_what_was_written() {
    let (s, _db) = store().await;
    let s = &*s;
    let writes: Vec<Write> = (0..3000)
        .map(|i| {
            // Rows of very different sizes, so fetches resize.
            let pad = "x".repeat(if i % 100 == 0 { 50_000 } else { i % 300 });
            put(json!({"resourceType": "Observation", "id": format!("o{i}"),
                "status": "final", "code": {"text": pad}}))
        })
        .collect();
    let batches = writes
        .chunks(700)
        .map(|b| Ok(b.to_vec()))
        .collect::<Vec<_>>();
    s.write_stream("t", Box::pin(futures::stream::iter(batches)))
        .await
        .unwrap();
    s.write("t", vec![Write::delete("Observation", "o7").unwrap()])
        .await
        .unwrap();
    let ts = s
        .read("t", "Observation", "o7")
        .await
        .unwrap()
        .unwrap()
        .last_updated;

    let got = chunks(s, scan("Observation", ts, PatientScope::All), 64 * 1024).await;
    assert!(got.len() > 10);
    for c in &got[..got.len() - 1] {
        assert!(c.bytes.len() >= 64 * 1024 && c.bytes.len() < 64 * 1024 + 51_000);
    }
    let mut seen = BTreeSet::new();
    for c in &got {
        for line in c.bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(seen.insert(line.to_vec()), "no line twice");
        }
    }
    let mut want = BTreeSet::new();
    for i in (0..3000).filter(|i| *i != 7) {
        let r = s
            .read("t", "Observation", &format!("o{i}"))
            .await
            .unwrap()
            .unwrap();
        want.insert(r.json.unwrap());
    }
    assert_eq!(seen, want);
    assert!(
        chunks(s, scan("Patient", ts, PatientScope::All), 1024)
            .await
            .is_empty()
    );
    let mut since = scan("Observation", ts, PatientScope::All);
    since.since = Some(ts);
    assert!(chunks(s, since, 1024).await.is_empty());
    let deleted: Vec<(String, String)> = s
        .export_deleted(scan("Observation", ts, PatientScope::All))
        .flat_map(|b| futures::stream::iter(b.unwrap()))
        .collect()
        .await;
    assert_eq!(deleted, vec![("Observation".into(), "o7".into())]);
    // A dropped reader ends the scan and gives its connection back.
    for _ in 0..40 {
        let mut st = s.export(scan("Observation", ts, PatientScope::All), 1024);
        assert!(st.next().await.unwrap().is_ok());
    }
    assert_eq!(
        s.type_counts("t").await.unwrap(),
        vec![("Observation".into(), 2999)]
    );
}

/// Updates, deletes and creates committed while a scan runs change nothing it returns:
/// every resource exactly once, as it was at transactionTime.
#[tokio::test]
async fn concurrent_updates_neither_duplicate_nor_gap() {
    let (s, _db) = store().await;
    let n = 2000;
    let all: Vec<Write> = (0..n).map(|i| obs(&format!("o{i}"), "p1", "v1")).collect();
    s.write_stream("t", Box::pin(futures::stream::iter(vec![Ok(all)])))
        .await
        .unwrap();
    let t = s
        .create_job(patient_job("t", "j"))
        .await
        .unwrap()
        .transaction_time;

    let mut stream = s.export(scan("Observation", t, PatientScope::AnyPatient), 8 * 1024);
    let first = stream.next().await.unwrap().unwrap();
    // Rewrite everything (new versions, deletes, new ids) while the cursor is open.
    for part in 0..10 {
        let mut writes: Vec<Write> = (part * n / 10..(part + 1) * n / 10)
            .map(|i| {
                if i % 37 == 0 {
                    Write::delete("Observation", &format!("o{i}")).unwrap()
                } else {
                    obs(&format!("o{i}"), "p1", "v2")
                }
            })
            .collect();
        writes.push(obs(&format!("new{part}"), "p1", "v2"));
        s.write("t", writes).await.unwrap();
    }
    let mut got = vec![first];
    while let Some(c) = stream.next().await {
        got.push(c.unwrap());
    }
    assert!(got.len() > 10, "most rows were read after the updates");
    let check = |got: &[ExportChunk]| {
        let got = resources(got);
        let ids: BTreeSet<String> = got.iter().map(|v| v["id"].to_string()).collect();
        assert_eq!(ids.len(), got.len(), "no duplicates");
        assert_eq!(got.len(), n, "no gaps");
        assert!(
            got.iter()
                .all(|v| v["status"] == "v1" && v["meta"]["versionId"] == "1")
        );
    };
    check(&got);
    // A scan started after the updates reads the same snapshot from kept versions.
    check(&chunks(&*s, scan("Observation", t, PatientScope::All), 8 * 1024).await);
}

/// O2 and P7 reads see the job's snapshot: versions current at transactionTime, rows
/// grouped by patient with the patient's own Patient first, repeated per compartment.
#[tokio::test]
async fn organized_and_lookup_read_the_snapshot() {
    let (s, _db) = store().await;
    s.write(
        "t",
        vec![
            put(json!({"resourceType": "Patient", "id": "p1"})),
            put(json!({"resourceType": "Patient", "id": "p2"})),
            obs("o1", "p1", "preliminary"),
            put(
                json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
                "member": [{"entity": {"reference": "Patient/p1"}},
                    {"entity": {"reference": "Patient/p2"}}]}),
            ),
        ],
    )
    .await
    .unwrap();
    // A running job keeps the versions its snapshot needs.
    let job = s.create_job(patient_job("t", "j")).await.unwrap();
    s.write(
        "t",
        vec![obs("o1", "p1", "final"), obs("o2", "p2", "final")],
    )
    .await
    .unwrap();
    s.write("t", vec![Write::delete("Patient", "p2").unwrap()])
        .await
        .unwrap();

    let set = |scope| ExportSet {
        tenant: "t".into(),
        types: vec!["Group".into(), "Observation".into(), "Patient".into()],
        since: None,
        until: job.transaction_time,
        scope,
    };
    let rows: Vec<(String, String, Value)> = s
        .export_organized(set(PatientScope::Group("g".into())), 10)
        .flat_map(|chunk| futures::stream::iter(chunk.unwrap()))
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.json).unwrap();
            (r.patient_id, r.resource_type, v)
        })
        .collect()
        .await;
    let keys: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(p, t, v)| (p.as_str(), t.as_str(), v["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("p1", "Patient", "p1"),
            ("p1", "Group", "g"),
            ("p1", "Observation", "o1"),
            ("p2", "Patient", "p2"),
            ("p2", "Group", "g"),
        ]
    );
    assert_eq!(
        rows[2].2["status"], "preliminary",
        "the version at transactionTime"
    );

    let refs = [
        ("Observation", "o1"),
        ("Observation", "o2"),
        ("Patient", "p2"),
        ("Practitioner", "x"),
    ]
    .map(|(t, id)| (t.to_string(), id.to_string()))
    .to_vec();
    let found = s
        .export_lookup(set(PatientScope::AnyPatient), refs)
        .await
        .unwrap();
    let found: Vec<Option<Value>> = found
        .into_iter()
        .map(|j| j.map(|j| serde_json::from_slice(&j).unwrap()))
        .collect();
    assert_eq!(found[0].as_ref().unwrap()["status"], "preliminary");
    assert!(found[1].is_none(), "written after transactionTime");
    assert_eq!(
        found[2].as_ref().unwrap()["id"],
        "p2",
        "deleted after transactionTime"
    );
    assert!(found[3].is_none(), "not a type of the set");
    let only_p1 = s
        .export_lookup(
            set(PatientScope::Patients(vec!["p1".into()])),
            vec![("Patient".into(), "p2".into())],
        )
        .await
        .unwrap();
    assert_eq!(only_p1, vec![None], "outside the scope");
}

/// An `Err` in the stream rolls the whole load back; the store goes on working.
#[tokio::test]
async fn failed_stream_writes_nothing() {
    let (s, _db) = store().await;
    let batches: Vec<fhir_bulk_store::Result<Vec<Write>>> = vec![
        Ok((0..100)
            .map(|i| obs(&format!("o{i}"), "p1", "final"))
            .collect()),
        Err(StoreError::Invalid("bad line".into())),
        Ok(vec![obs("late", "p1", "final")]),
    ];
    let e = s
        .write_stream("t", Box::pin(futures::stream::iter(batches)))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(m) if m == "bad line"));
    assert!(s.read("t", "Observation", "o1").await.unwrap().is_none());
    assert!(s.type_counts("t").await.unwrap().is_empty());
    let ok = vec![Ok(vec![obs("o1", "p1", "final")])];
    let summary = s
        .write_stream("t", Box::pin(futures::stream::iter(ok)))
        .await
        .unwrap();
    assert_eq!(summary.per_type["Observation"], 1);
    assert_eq!(
        s.read("t", "Observation", "o1")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}
