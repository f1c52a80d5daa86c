//! A generated data set read back into memory, and the checks every test shares.

use fhir_bulk_synth::{SynthConfig, SynthSummary, generate};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Patients in the shared data set: enough for every resource type and several cohort
/// blocks, small enough to generate in well under a second in a debug build.
pub const PATIENTS: u64 = 200;

/// The files of one run, by name, and the summary `generate` returned.
pub struct Dataset {
    pub files: BTreeMap<String, Vec<u8>>,
    pub summary: SynthSummary,
}

impl Dataset {
    /// Generates `config` into a temporary directory and reads every file back.
    pub fn generate(config: SynthConfig) -> Dataset {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(&config, dir.path(), &mut |_| {}).unwrap();
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                (name, std::fs::read(entry.path()).unwrap())
            })
            .collect();
        Dataset { files, summary }
    }

    /// Every resource of type `kind`, parsed, in file order.
    pub fn resources(&self, kind: &str) -> Vec<Value> {
        let bytes = &self.files[&format!("{kind}.ndjson")];
        let text = std::str::from_utf8(bytes).expect("UTF-8");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{kind}: last line ends with \\n"
        );
        text.lines()
            .map(|line| {
                assert!(!line.contains('\r'), "{kind}: no CR");
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{kind}: {e}: {line}"))
            })
            .collect()
    }

    /// `type -> id -> resource` for the whole data set.
    pub fn index(&self) -> HashMap<String, HashMap<String, Value>> {
        self.files
            .keys()
            .map(|name| {
                let kind = name.trim_end_matches(".ndjson").to_owned();
                let by_id = self
                    .resources(&kind)
                    .into_iter()
                    .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
                    .collect();
                (kind, by_id)
            })
            .collect()
    }
}

/// The data set most tests read (generated once per test binary).
pub fn shared() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        Dataset::generate(SynthConfig {
            patients: PATIENTS,
            seed: 2024,
        })
    })
}

/// Calls `f` with every `reference` string anywhere inside `value`.
pub fn for_each_reference(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(s)) => f(s),
                    _ => for_each_reference(v, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| for_each_reference(v, f)),
        _ => {}
    }
}

/// The `(system, code)` pairs of a CodeableConcept.
pub fn codings(concept: &Value) -> Vec<(&str, &str)> {
    concept["coding"]
        .as_array()
        .map(|codings| {
            codings
                .iter()
                .map(|c| (c["system"].as_str().unwrap(), c["code"].as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// FHIR `id` syntax.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
