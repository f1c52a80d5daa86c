//! The three Groups, for Group-level export: everyone, a 10% cohort, and a small sample.
//!
//! | id             | members                                   | `inactive` members          |
//! |----------------|-------------------------------------------|-----------------------------|
//! | `all-patients` | every patient                             | none                        |
//! | `cohort-10pct` | one random patient out of every block of 10 (patients `10b..10b+9`), so exactly 10% when N is a multiple of 10 | the member of every block `b` with `b % 20 == 7`, about 5% of the cohort; they stay listed with `"inactive": true` |
//! | `small-sample` | 10 patients spread evenly over the population (all of them when N < 10) | none |
//!
//! Membership is a pure function of the seed and the patient index, so each Group is
//! written by walking the indices, and `quantity` (the number of `member` entries, the
//! inactive ones included) is known before the first member is written. The member list is
//! serialized lazily straight into the output, so the all-patients Group costs no memory
//! even with millions of members. Group ids are fixed and readable because people type
//! them (`fhir-bulk export --group cohort-10pct`).

use crate::calendar::Instant;
use crate::fhir::{Identifier, Meta, Reference};
use crate::id::{Ref, ResourceKind, mix64};
use crate::patient::RECORD_END;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

/// Identifier system of our Groups.
const GROUP_IDENTIFIER: &str = "https://synth.fhir-bulk.example/identifiers/group";

/// Size of the small sample.
pub const SAMPLE_SIZE: u64 = 10;

/// Which Group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// Every patient.
    All,
    /// One patient in ten.
    Cohort,
    /// A handful of patients.
    Sample,
}

impl GroupKind {
    /// The three Groups, in output order.
    pub const ALL: [GroupKind; 3] = [GroupKind::All, GroupKind::Cohort, GroupKind::Sample];

    /// The Group's logical id.
    pub const fn id(self) -> &'static str {
        match self {
            GroupKind::All => "all-patients",
            GroupKind::Cohort => "cohort-10pct",
            GroupKind::Sample => "small-sample",
        }
    }
}

/// The membership rules of a population's Groups.
#[derive(Debug, Clone, Copy)]
pub struct Membership {
    seed: u64,
    patients: u64,
}

impl Membership {
    /// The Groups of a population of `patients` generated from `seed`.
    pub fn new(seed: u64, patients: u64) -> Membership {
        Membership { seed, patients }
    }

    /// `None` if patient `index` is not in `group`, else `Some(inactive)`.
    pub fn member(&self, group: GroupKind, index: u64) -> Option<bool> {
        match group {
            GroupKind::All => Some(false),
            GroupKind::Cohort => {
                let block = index / 10;
                let chosen = mix64(self.seed ^ mix64(block ^ 0xC0_4087)) % 10;
                (index % 10 == chosen).then_some(block % 20 == 7)
            }
            GroupKind::Sample => {
                let size = SAMPLE_SIZE.min(self.patients);
                // Members are floor(k * N / size) for k in 0..size: distinct and spread.
                let k = (index * size).div_ceil(self.patients);
                (k < size && k * self.patients / size == index).then_some(false)
            }
        }
    }

    /// Number of members of `group` (inactive ones included).
    pub fn quantity(&self, group: GroupKind) -> u64 {
        match group {
            GroupKind::All => self.patients,
            GroupKind::Sample => SAMPLE_SIZE.min(self.patients),
            GroupKind::Cohort => (0..self.patients)
                .filter(|&i| self.member(group, i).is_some())
                .count() as u64,
        }
    }

    /// The `Group` resource, ready to serialize.
    pub fn group(&self, group: GroupKind) -> Group {
        let quantity = self.quantity(group);
        let name = match group {
            GroupKind::All => "All patients".to_owned(),
            GroupKind::Cohort => "Research cohort (10% of patients)".to_owned(),
            GroupKind::Sample => format!("Small sample ({quantity} patients)"),
        };
        // Groups are maintained to the end of the data set: updated in December 2025.
        let day_millis = 86_400_000;
        let before_end = mix64(self.seed ^ mix64(group as u64 + 1)) % (30 * day_millis);
        let last_updated = RECORD_END * 1000 - 1 - before_end as i64;
        Group {
            id: group.id(),
            meta: Meta {
                last_updated: Instant {
                    unix_millis: last_updated,
                },
            },
            identifier: [Identifier {
                use_: Some("official"),
                kind: None,
                system: GROUP_IDENTIFIER,
                value: group.id().to_owned(),
            }],
            active: true,
            kind: "person",
            actual: true,
            name,
            quantity,
            member: Members {
                membership: *self,
                group,
            },
        }
    }
}

/// `Group`, with a member list computed while it is written.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Group {
    /// Logical id.
    pub id: &'static str,
    /// Meta.
    pub meta: Meta,
    /// Business identifier (same as the id).
    pub identifier: [Identifier; 1],
    /// In use.
    pub active: bool,
    /// Always `person`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A list of actual patients, not a definition.
    pub actual: bool,
    /// Human name.
    pub name: String,
    /// Number of `member` entries.
    pub quantity: u64,
    /// The members, serialized lazily.
    pub member: Members,
}

/// The member list of one Group, streamed in patient order.
#[derive(Debug, Clone, Copy)]
pub struct Members {
    membership: Membership,
    group: GroupKind,
}

impl Members {
    /// `(patient reference, inactive)` of each member, in patient order.
    pub fn iter(&self) -> impl Iterator<Item = (Ref, bool)> + '_ {
        let m = self.membership;
        (0..m.patients).filter_map(move |i| {
            m.member(self.group, i)
                .map(|inactive| (Ref::derive(m.seed, ResourceKind::Patient, i, 0), inactive))
        })
    }
}

#[derive(Serialize)]
struct Member {
    entity: Reference,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inactive: bool,
}

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for (entity, inactive) in self.iter() {
            seq.serialize_element(&Member {
                entity: entity.into(),
                inactive,
            })?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(m: &Membership, group: GroupKind) -> Vec<(u64, bool)> {
        (0..m.patients)
            .filter_map(|i| m.member(group, i).map(|inactive| (i, inactive)))
            .collect()
    }

    #[test]
    fn cohort_is_one_in_ten_with_some_inactive() {
        let m = Membership::new(1, 1_000);
        let cohort = members(&m, GroupKind::Cohort);
        assert_eq!(cohort.len(), 100);
        assert_eq!(m.quantity(GroupKind::Cohort), 100);
        for block in 0..100 {
            assert_eq!(cohort.iter().filter(|(i, _)| i / 10 == block).count(), 1);
        }
        let inactive = cohort.iter().filter(|(_, inactive)| *inactive).count();
        assert_eq!(inactive, 5, "blocks 7, 27, 47, 67, 87");
        // Not simply every tenth patient.
        assert!(
            cohort
                .iter()
                .map(|(i, _)| i % 10)
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 5
        );
    }

    #[test]
    fn sample_is_spread_and_capped() {
        let m = Membership::new(1, 95);
        let sample: Vec<u64> = members(&m, GroupKind::Sample)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(sample, [0, 9, 19, 28, 38, 47, 57, 66, 76, 85]);
        let tiny = Membership::new(1, 4);
        assert_eq!(members(&tiny, GroupKind::Sample).len(), 4);
        assert_eq!(tiny.quantity(GroupKind::Sample), 4);
    }
}
