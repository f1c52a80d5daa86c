//! Integration tests of `fhir-bulk-synth`: generate a small data set on disk and check the
//! files as a consumer would, by parsing them, never by asking the generator.

mod dataset;
mod groups;
mod resources;

use fhir_bulk_synth::{SynthConfig, SynthError, generate};

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let config = SynthConfig {
        patients: 60,
        seed: 42,
    };
    let a = dataset::Dataset::generate(config);
    let b = dataset::Dataset::generate(config);
    assert_eq!(
        a.files.keys().collect::<Vec<_>>(),
        b.files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &a.files {
        assert!(bytes == &b.files[name], "{name} differs between two runs");
    }
    let other = dataset::Dataset::generate(SynthConfig { seed: 43, ..config });
    assert_ne!(a.files["Patient.ndjson"], other.files["Patient.ndjson"]);
}

#[test]
fn summary_matches_the_files() {
    let data = dataset::shared();
    let mut total = 0;
    for (name, bytes) in &data.files {
        let kind = name.trim_end_matches(".ndjson");
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(data.summary.resources[kind], lines, "{kind}");
        assert_eq!(
            data.summary.bytes_per_type[kind],
            bytes.len() as u64,
            "{kind}"
        );
        total += lines;
    }
    assert_eq!(data.summary.total(), total);
    assert_eq!(
        data.summary.bytes,
        data.files.values().map(|f| f.len() as u64).sum::<u64>()
    );
    // The scale promise: about 40 to 60 resources per patient.
    let per_patient = total as f64 / dataset::PATIENTS as f64;
    assert!(
        (35.0..70.0).contains(&per_patient),
        "{per_patient} resources per patient"
    );
}

#[test]
fn progress_ends_at_the_patient_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    generate(
        &SynthConfig {
            patients: 300,
            seed: 1,
        },
        dir.path(),
        &mut |n| seen.push(n),
    )
    .unwrap();
    assert_eq!(seen.last(), Some(&300));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "monotonic: {seen:?}");
    // No partial files are left behind.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".ndjson"), "{name}");
    }
}

#[test]
fn rejects_zero_patients_and_unwritable_output() {
    let dir = tempfile::tempdir().unwrap();
    let zero = generate(
        &SynthConfig {
            patients: 0,
            seed: 1,
        },
        dir.path(),
        &mut |_| {},
    );
    assert!(matches!(zero, Err(SynthError::NoPatients)), "{zero:?}");

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let blocked = generate(
        &SynthConfig {
            patients: 1,
            seed: 1,
        },
        &file,
        &mut |_| {},
    );
    assert!(
        matches!(blocked, Err(SynthError::CreateDir { .. })),
        "{blocked:?}"
    );
}
