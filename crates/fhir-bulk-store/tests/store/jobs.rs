//! Export jobs: units, leases, completions and files.

use crate::{Db, store};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_store::{FileKind, IdRange, JobFile, JobStatus, NewJob, NewUnit, UnitKind};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn new_job(tenant: &str, id: &str, units: usize) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        id: id.into(),
        client_id: Some("c".into()),
        request_url: format!("http://x/fhir/$export?job={id}"),
        params: json!({"types": ["Patient"], "n": 1.5}),
        units: (0..units)
            .map(|i| NewUnit {
                resource_type: format!("T{i}"),
                kind: if i == 0 {
                    UnitKind::Output
                } else {
                    UnitKind::Deleted
                },
                estimate: 10 + i as u64,
                ids: IdRange::all(),
            })
            .collect(),
        ttl_seconds: 3600,
    }
}

fn file(seq: i64, name: &str, kind: FileKind, count: u64) -> JobFile {
    JobFile {
        name: name.into(),
        unit_seq: seq,
        kind,
        resource_type: "Patient".into(),
        count,
        bytes: count * 100,
    }
}

#[tokio::test]
async fn job_lifecycle() {
    let (s, _db) = store().await;
    let j1 = s.create_job(new_job("default", "j1", 2)).await.unwrap();
    assert_eq!(j1.status, JobStatus::Running);
    assert_eq!(j1.created_at, j1.transaction_time);
    assert_eq!(j1.expires_at, j1.transaction_time.plus_seconds(3600));
    assert_eq!(j1.params, json!({"types": ["Patient"], "n": 1.5}));
    assert_eq!(j1.client_id.as_deref(), Some("c"));
    // Nothing to do: completed at once.
    let j0 = s.create_job(new_job("default", "j0", 0)).await.unwrap();
    assert_eq!(j0.status, JobStatus::Completed);
    assert_eq!(j0.finished_at, Some(j0.transaction_time));
    assert!(j0.transaction_time > j1.transaction_time);

    assert!(s.job("other", "j1").await.unwrap().is_none());
    assert_eq!(s.job("default", "j1").await.unwrap().unwrap().id, "j1");
    let units = s.units("j1").await.unwrap();
    assert_eq!(units.len(), 2);
    assert_eq!(
        (
            units[1].seq,
            units[1].kind,
            units[1].estimate,
            units[1].done
        ),
        (1, UnitKind::Deleted, 11, false)
    );
    assert_eq!(s.active_jobs("default", Some("c")).await.unwrap(), 1);
    assert_eq!(s.active_jobs("default", None).await.unwrap(), 0);
    assert_eq!(s.tenant_active_jobs("default").await.unwrap(), 1);

    let (job, u0) = s.claim_unit("n1", LONG).await.unwrap().unwrap();
    assert_eq!((job.id.as_str(), u0.seq, u0.attempts), ("j1", 0, 1));
    let (_, u1) = s.claim_unit("n1", LONG).await.unwrap().unwrap();
    assert_eq!(u1.seq, 1);
    assert!(s.claim_unit("n1", LONG).await.unwrap().is_none());
    let counts = s.queue_counts().await.unwrap();
    assert_eq!(
        counts.jobs,
        [("completed".into(), 1), ("running".into(), 1)]
    );
    assert_eq!(counts.units, [("leased".into(), 2)]);

    assert!(s.heartbeat("j1", 0, "n1", LONG, 5).await.unwrap());
    assert!(!s.heartbeat("j1", 0, "n2", LONG, 6).await.unwrap());
    assert_eq!(s.units("j1").await.unwrap()[0].written, 5);

    // Completion order, not seq order, numbers the units.
    let files1 = vec![
        file(1, "b.ndjson", FileKind::Deleted, 3),
        file(1, "a.ndjson", FileKind::Error, 7),
    ];
    assert!(s.complete_unit("j1", 1, "n1", files1).await.unwrap());
    assert_eq!(
        s.job("default", "j1").await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert!(
        s.complete_unit(
            "j1",
            0,
            "n1",
            vec![file(0, "z.ndjson", FileKind::Output, 2)]
        )
        .await
        .unwrap()
    );
    let units = s.units("j1").await.unwrap();
    assert_eq!(
        units
            .iter()
            .map(|u| (u.done, u.done_seq, u.written))
            .collect::<Vec<_>>(),
        [(true, Some(2), 2), (true, Some(1), 3)]
    );
    let job = s.job("default", "j1").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert!(job.finished_at.is_some());
    let names: Vec<String> = s
        .files("j1")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["z.ndjson", "a.ndjson", "b.ndjson"]);
    assert_eq!(
        s.files("j1").await.unwrap()[1],
        file(1, "a.ndjson", FileKind::Error, 7)
    );
    // Done units are no longer leased: a second completion is refused.
    assert!(!s.complete_unit("j1", 0, "n1", vec![]).await.unwrap());
    assert_eq!(s.active_jobs("default", Some("c")).await.unwrap(), 0);

    // Failing a finished job changes nothing; cancelling is per tenant and once.
    s.fail_job("j1", "late").await.unwrap();
    assert_eq!(
        s.job("default", "j1").await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    assert!(!s.cancel_job("other", "j1").await.unwrap());
    assert!(s.cancel_job("default", "j1").await.unwrap());
    assert!(!s.cancel_job("default", "j1").await.unwrap());
    assert_eq!(s.purgeable_jobs(Instant::now()).await.unwrap(), ["j1"]);
    let mut later = s
        .purgeable_jobs(Instant::now().plus_seconds(7200))
        .await
        .unwrap();
    later.sort();
    assert_eq!(later, ["j0", "j1"]);
    s.delete_job("j1").await.unwrap();
    assert!(s.job("default", "j1").await.unwrap().is_none());
    assert!(s.units("j1").await.unwrap().is_empty());
    assert!(s.files("j1").await.unwrap().is_empty());
}

#[tokio::test]
async fn release_and_fail() {
    let (s, _db) = store().await;
    s.create_job(new_job("default", "j", 1)).await.unwrap();
    s.claim_unit("a", LONG).await.unwrap().unwrap();
    // Only the owner can give the unit back.
    s.release_unit("j", 0, "b").await.unwrap();
    assert!(s.claim_unit("b", LONG).await.unwrap().is_none());
    s.release_unit("j", 0, "a").await.unwrap();
    let (_, u) = s.claim_unit("b", LONG).await.unwrap().unwrap();
    assert_eq!(u.attempts, 2);
    s.fail_job("j", "boom").await.unwrap();
    let job = s.job("default", "j").await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.error.as_deref()),
        (JobStatus::Failed, Some("boom"))
    );
    assert!(job.finished_at.is_some());
    // The job no longer runs: the lease is worth nothing.
    assert!(!s.heartbeat("j", 0, "b", LONG, 1).await.unwrap());
    assert!(!s.complete_unit("j", 0, "b", vec![]).await.unwrap());
    let counts = s.queue_counts().await.unwrap();
    assert_eq!(counts.jobs, [("failed".into(), 1)]);
    assert!(counts.units.is_empty());
}

#[tokio::test]
async fn lost_lease_writes_nothing() {
    let (s, _db) = store().await;
    s.create_job(new_job("default", "j", 1)).await.unwrap();
    s.claim_unit("a", Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, u) = s.claim_unit("b", LONG).await.unwrap().unwrap();
    assert_eq!((u.seq, u.attempts), (0, 2));
    assert!(!s.heartbeat("j", 0, "a", LONG, 9).await.unwrap());
    let a_files = vec![file(0, "a.ndjson", FileKind::Output, 1)];
    assert!(!s.complete_unit("j", 0, "a", a_files).await.unwrap());
    assert!(s.files("j").await.unwrap().is_empty());
    assert!(!s.units("j").await.unwrap()[0].done);
    // A's release does not undo B's takeover.
    s.release_unit("j", 0, "a").await.unwrap();
    assert!(s.claim_unit("c", LONG).await.unwrap().is_none());
    let b_files = vec![file(0, "b.ndjson", FileKind::Output, 1)];
    assert!(s.complete_unit("j", 0, "b", b_files.clone()).await.unwrap());
    assert_eq!(s.files("j").await.unwrap(), b_files);
}

/// Two stores on one database (two nodes), several workers each, over many units of several jobs: every
/// unit is claimed exactly once, and each job's completions are numbered 1..n.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_unit() {
    let db = Db::new();
    const JOBS: usize = 4;
    const UNITS: usize = 30;
    let nodes = [db.store().await, db.store().await];
    for j in 0..JOBS {
        nodes[0]
            .create_job(new_job("default", &format!("j{j}"), UNITS))
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for (n, store) in nodes.iter().enumerate() {
        for w in 0..4 {
            let store = store.clone();
            let node = format!("n{n}w{w}");
            workers.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some((job, unit)) = store.claim_unit(&node, LONG).await.unwrap() {
                    claimed.push((job.id.clone(), unit.seq));
                    assert_eq!(unit.attempts, 1);
                    assert!(
                        store
                            .heartbeat(&job.id, unit.seq, &node, LONG, 1)
                            .await
                            .unwrap()
                    );
                    let name = format!("{}-{node}.ndjson", unit.seq);
                    let files = vec![file(unit.seq, &name, FileKind::Output, 1)];
                    assert!(
                        store
                            .complete_unit(&job.id, unit.seq, &node, files)
                            .await
                            .unwrap()
                    );
                }
                claimed
            }));
        }
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), JOBS * UNITS, "units claimed twice or never");
    assert_eq!(distinct.len(), JOBS * UNITS);
    for j in 0..JOBS {
        let id = format!("j{j}");
        let job = nodes[1].job("default", &id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Completed);
        let mut done: Vec<i64> = nodes[1]
            .units(&id)
            .await
            .unwrap()
            .iter()
            .map(|u| u.done_seq.unwrap())
            .collect();
        done.sort();
        assert_eq!(done, (1..=UNITS as i64).collect::<Vec<_>>());
        assert_eq!(nodes[1].files(&id).await.unwrap().len(), UNITS);
    }
    assert_eq!(
        nodes[0].queue_counts().await.unwrap().jobs,
        [("completed".into(), JOBS as u64)]
    );
}
