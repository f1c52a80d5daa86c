//! Resource ids and references, computed from indices rather than remembered.
//!
//! Every id is a pure function of `(seed, resource kind, owner index, ordinal)`. That is what
//! lets the generator stream: an Encounter can point at `Practitioner/<id>` without the
//! practitioner being in memory, and the all-patients Group can list N members without holding
//! N ids. The ids are shaped as random (version 4) UUIDs, like those of most real servers, and
//! are unique per kind by construction (see [`ResourceId::derive`]), not by luck.

use serde::{Serialize, Serializer};
use std::fmt;

/// The resource types the generator writes, one NDJSON file each.
///
/// The discriminant indexes per-type tables (writers, counters), so the order here is also
/// the order of [`ResourceKind::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `Patient`.
    Patient,
    /// `Encounter`.
    Encounter,
    /// `Observation`.
    Observation,
    /// `Condition`.
    Condition,
    /// `Procedure`.
    Procedure,
    /// `MedicationRequest`.
    MedicationRequest,
    /// `Immunization`.
    Immunization,
    /// `AllergyIntolerance`.
    AllergyIntolerance,
    /// `DiagnosticReport`.
    DiagnosticReport,
    /// `Practitioner`.
    Practitioner,
    /// `Organization`.
    Organization,
    /// `Location`.
    Location,
    /// `Group`.
    Group,
}

impl ResourceKind {
    /// Every kind, in discriminant order.
    pub const ALL: [ResourceKind; 13] = [
        ResourceKind::Patient,
        ResourceKind::Encounter,
        ResourceKind::Observation,
        ResourceKind::Condition,
        ResourceKind::Procedure,
        ResourceKind::MedicationRequest,
        ResourceKind::Immunization,
        ResourceKind::AllergyIntolerance,
        ResourceKind::DiagnosticReport,
        ResourceKind::Practitioner,
        ResourceKind::Organization,
        ResourceKind::Location,
        ResourceKind::Group,
    ];

    /// The FHIR `resourceType`, which is also the output file's stem.
    pub const fn name(self) -> &'static str {
        match self {
            ResourceKind::Patient => "Patient",
            ResourceKind::Encounter => "Encounter",
            ResourceKind::Observation => "Observation",
            ResourceKind::Condition => "Condition",
            ResourceKind::Procedure => "Procedure",
            ResourceKind::MedicationRequest => "MedicationRequest",
            ResourceKind::Immunization => "Immunization",
            ResourceKind::AllergyIntolerance => "AllergyIntolerance",
            ResourceKind::DiagnosticReport => "DiagnosticReport",
            ResourceKind::Practitioner => "Practitioner",
            ResourceKind::Organization => "Organization",
            ResourceKind::Location => "Location",
            ResourceKind::Group => "Group",
        }
    }

    /// Position in [`ResourceKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bits of the owner index inside an id; owners (patients, or directory entries) are below
/// 2^40, which [`crate::SynthConfig`] validation enforces.
pub(crate) const OWNER_BITS: u32 = 40;
/// Bits of the per-owner ordinal; no patient comes close to 2^24 resources of one kind.
const ORDINAL_BITS: u32 = 64 - OWNER_BITS;

/// A logical id shaped as a version 4 UUID, e.g. `1b4e28ba-2fa1-41d2-883f-0016d3cca427`.
///
/// Serialized (and displayed) as its 36-character text; always a valid FHIR id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId([u8; 16]);

impl ResourceId {
    /// The id of the `ordinal`-th resource of `kind` owned by `owner` in the data set of `seed`.
    ///
    /// Unique per `(seed, kind)`: `owner` and `ordinal` are packed into one `u64`, which goes
    /// through a bijective mixer keyed by seed and kind, and all 64 mixed bits are kept in the
    /// 122 free bits of the UUID. The other 58 free bits are a hash of those, for looks only.
    pub fn derive(seed: u64, kind: ResourceKind, owner: u64, ordinal: u64) -> ResourceId {
        debug_assert!(owner < 1 << OWNER_BITS && ordinal < 1 << ORDINAL_BITS);
        let key = mix64(seed ^ mix64((kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let packed = (owner << ORDINAL_BITS) | ordinal;
        let unique = mix64(packed ^ key);
        let filler = mix64(unique ^ key.rotate_left(17));
        let u = unique.to_be_bytes();
        let f = filler.to_be_bytes();
        ResourceId([
            u[0],
            u[1],
            u[2],
            u[3],
            u[4],
            u[5],
            0x40 | (u[6] >> 4),        // version 4, then the high nibble of u[6]
            (u[6] << 4) | (u[7] >> 4), // low nibble of u[6], high nibble of u[7]
            0x80 | (u[7] & 0x0F),      // RFC 4122 variant, then the low nibble of u[7]
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[5],
            f[6],
        ])
    }

    /// Writes the 36-character lowercase text form into `out`.
    fn encode(&self, out: &mut [u8; 36]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut pos = 0;
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out[pos] = b'-';
                pos += 1;
            }
            out[pos] = HEX[usize::from(byte >> 4)];
            out[pos + 1] = HEX[usize::from(byte & 0x0F)];
            pos += 2;
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 36];
        self.encode(&mut text);
        // Only ASCII hex digits and dashes were written.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A relative reference `Type/id`, serialized as that string without an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    /// The target's type.
    pub kind: ResourceKind,
    /// The target's id.
    pub id: ResourceId,
}

impl Ref {
    /// The reference to the `ordinal`-th resource of `kind` owned by `owner`.
    pub fn derive(seed: u64, kind: ResourceKind, owner: u64, ordinal: u64) -> Ref {
        Ref {
            kind,
            id: ResourceId::derive(seed, kind, owner, ordinal),
        }
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.name(), self.id)
    }
}

impl Serialize for Ref {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The murmur3 64-bit finalizer: a bijection on `u64` with good avalanche, so distinct inputs
/// stay distinct while looking random.
pub(crate) const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 33;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn is_valid_fhir_id(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }

    #[test]
    fn ids_are_uuid_v4_shaped() {
        let id = ResourceId::derive(7, ResourceKind::Observation, 123, 4).to_string();
        assert!(is_valid_fhir_id(&id));
        let groups: Vec<&str> = id.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
        assert!(groups[2].starts_with('4'), "version nibble: {id}");
        assert!(
            matches!(&groups[3][..1], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        assert!(
            id.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn ids_are_unique_per_kind_and_depend_on_seed() {
        let mut seen = HashSet::new();
        for owner in [0, 1, 2, 255, 256, (1 << 40) - 1] {
            for ordinal in 0..300 {
                let id = ResourceId::derive(1, ResourceKind::Observation, owner, ordinal);
                assert!(seen.insert(id), "duplicate for {owner}/{ordinal}");
            }
        }
        let a = ResourceId::derive(1, ResourceKind::Patient, 5, 0);
        assert_eq!(a, ResourceId::derive(1, ResourceKind::Patient, 5, 0));
        assert_ne!(a, ResourceId::derive(2, ResourceKind::Patient, 5, 0));
        assert_ne!(a, ResourceId::derive(1, ResourceKind::Encounter, 5, 0));
    }

    #[test]
    fn references_serialize_as_type_slash_id() {
        let r = Ref::derive(3, ResourceKind::Practitioner, 9, 0);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, format!("\"Practitioner/{}\"", r.id));
    }
}
