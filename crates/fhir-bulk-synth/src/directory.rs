//! The provider directory: Organizations, their Locations and their Practitioners.
//!
//! Its size grows slowly with the population (a few dozen organizations and a few hundred
//! practitioners per 100 000 patients), so that references fan in as they do in real data:
//! many encounters per practitioner, many patients per organization. Membership is
//! arithmetic, not a table: practitioner `j` works for organization `j % organizations`,
//! and organization `o` owns locations `3o`, `3o + 1` and `3o + 2`. Every fourth
//! organization (starting with the first) is a hospital, with an emergency room and wards;
//! the others are practices. A patient's history only needs these indices to point at the
//! right resources, never the resources themselves.

use crate::calendar::{Instant, unix_seconds};
use crate::codes;
use crate::demographics::{self, CITIES, City, FAMILY};
use crate::draw::{self, Domain, SynthRng, pick};
use crate::fhir::{
    Address, CodeableConcept, HumanName, Identifier, Location, Meta, Organization, Practitioner,
};
use crate::id::{Ref, ResourceKind};
use rand::Rng;

/// Locations each organization owns.
pub const LOCATIONS_PER_ORGANIZATION: u64 = 3;

/// Location roles within a hospital, by position.
const HOSPITAL_SITES: [(&str, &str, &str, &str); 3] = [
    ("Main Hospital", "HOSP", "Hospital", "bu"),
    ("Emergency Department", "ER", "Emergency room", "wi"),
    (
        "Outpatient Clinic",
        "GIM",
        "General internal medicine clinic",
        "wi",
    ),
];

/// Sites of a practice, by position.
const PRACTICE_SITES: [(&str, &str, &str, &str); 3] = [
    ("Main Office", "FMC", "Family medicine clinic", "bu"),
    ("North Office", "FMC", "Family medicine clinic", "bu"),
    ("Downtown Office", "FMC", "Family medicine clinic", "bu"),
];

/// The directory of a data set: sizes and the city of each organization.
#[derive(Debug, Clone)]
pub struct Directory {
    seed: u64,
    organizations: u64,
    practitioners: u64,
    /// Index into [`CITIES`] per organization. The only per-entry state we keep (tens of
    /// bytes per 100 000 patients), so that patients can live near their practice.
    organization_cities: Vec<u8>,
}

impl Directory {
    /// The directory for a population of `patients`.
    pub fn new(seed: u64, patients: u64) -> Directory {
        let organizations = 3 + patients / 2_000;
        let practitioners = 10 + patients / 200;
        let organization_cities = (0..organizations)
            .map(|o| {
                let mut rng = draw::stream(seed, Domain::Organization, o);
                Self::draw_city(&mut rng)
            })
            .collect();
        Directory {
            seed,
            organizations,
            practitioners,
            organization_cities,
        }
    }

    /// The first draw of every organization's stream is its city, so that this table and
    /// [`Directory::organization`] agree.
    fn draw_city(rng: &mut SynthRng) -> u8 {
        rng.gen_range(0..CITIES.len() as u8)
    }

    /// Number of organizations.
    pub fn organizations(&self) -> u64 {
        self.organizations
    }

    /// Number of practitioners.
    pub fn practitioners(&self) -> u64 {
        self.practitioners
    }

    /// Number of locations.
    pub fn locations(&self) -> u64 {
        self.organizations * LOCATIONS_PER_ORGANIZATION
    }

    /// Whether organization `o` is a hospital (else a practice).
    pub fn is_hospital(&self, o: u64) -> bool {
        o.is_multiple_of(4)
    }

    /// A uniformly chosen hospital.
    pub fn any_hospital(&self, rng: &mut impl Rng) -> u64 {
        let hospitals = self.organizations.div_ceil(4);
        rng.gen_range(0..hospitals) * 4
    }

    /// The city of organization `o`.
    pub fn city_of(&self, o: u64) -> &'static City {
        &CITIES[usize::from(self.organization_cities[o as usize])]
    }

    /// A uniformly chosen practitioner of organization `o` (every organization has one,
    /// since there are always more practitioners than organizations).
    pub fn practitioner_of(&self, o: u64, rng: &mut impl Rng) -> u64 {
        let staff = (self.practitioners - o).div_ceil(self.organizations);
        o + rng.gen_range(0..staff) * self.organizations
    }

    /// The location of organization `o` for a site role (0 main, 1 emergency or second
    /// office, 2 outpatient clinic or third office).
    pub fn location_of(&self, o: u64, site: u64) -> u64 {
        o * LOCATIONS_PER_ORGANIZATION + site
    }

    /// Reference to organization `o`.
    pub fn organization_ref(&self, o: u64) -> Ref {
        Ref::derive(self.seed, ResourceKind::Organization, o, 0)
    }

    /// Reference to practitioner `j`.
    pub fn practitioner_ref(&self, j: u64) -> Ref {
        Ref::derive(self.seed, ResourceKind::Practitioner, j, 0)
    }

    /// Reference to location `l`.
    pub fn location_ref(&self, l: u64) -> Ref {
        Ref::derive(self.seed, ResourceKind::Location, l, 0)
    }

    /// Organization `o`.
    pub fn organization(&self, o: u64) -> Organization {
        let mut rng = draw::stream(self.seed, Domain::Organization, o);
        let city = &CITIES[usize::from(Self::draw_city(&mut rng))];
        let name = if self.is_hospital(o) {
            let suffix = pick(
                &mut rng,
                &["General Hospital", "Medical Center", "Regional Hospital"],
            );
            format!("{} {suffix}", city.name)
        } else {
            let family = pick(&mut rng, FAMILY).0;
            let suffix = pick(
                &mut rng,
                &[
                    "Family Practice",
                    "Medical Group",
                    "Primary Care",
                    "Health Partners",
                ],
            );
            format!("{family} {suffix}")
        };
        let address = demographics::address(&mut rng, city, "work");
        Organization {
            id: self.organization_ref(o).id,
            meta: directory_meta(&mut rng),
            identifier: [Identifier {
                use_: Some("official"),
                kind: None,
                system: codes::NPI,
                value: npi(o, 2),
            }],
            active: true,
            kind: [CodeableConcept::coded(
                codes::ORGANIZATION_TYPE,
                "prov",
                "Healthcare Provider",
            )],
            name,
            telecom: [demographics::phone(&mut rng, "work")],
            address: [address],
        }
    }

    /// Location `l`.
    pub fn location(&self, l: u64) -> Location {
        let o = l / LOCATIONS_PER_ORGANIZATION;
        let site = (l % LOCATIONS_PER_ORGANIZATION) as usize;
        let organization = self.organization(o);
        let mut rng = draw::stream(self.seed, Domain::Location, l);
        let (site_name, role, role_display, physical) = if self.is_hospital(o) {
            HOSPITAL_SITES[site]
        } else {
            PRACTICE_SITES[site]
        };
        // The main site is at the organization's address; the others elsewhere in town.
        let address: Address = if site == 0 {
            organization.address[0].clone()
        } else {
            demographics::address(&mut rng, self.city_of(o), "work")
        };
        let physical_display = if physical == "bu" { "Building" } else { "Wing" };
        Location {
            id: self.location_ref(l).id,
            meta: directory_meta(&mut rng),
            status: "active",
            name: format!("{} - {site_name}", organization.name),
            mode: "instance",
            kind: [CodeableConcept::coded(codes::ROLE_CODE, role, role_display)],
            address,
            physical_type: CodeableConcept::coded(
                codes::LOCATION_PHYSICAL_TYPE,
                physical,
                physical_display,
            ),
            managing_organization: self.organization_ref(o).into(),
        }
    }

    /// Practitioner `j`.
    pub fn practitioner(&self, j: u64) -> Practitioner {
        let o = j % self.organizations;
        let mut rng = draw::stream(self.seed, Domain::Practitioner, j);
        let gender = if rng.gen_bool(0.5) { "male" } else { "female" };
        let (first, middle) = demographics::given_names(&mut rng, gender);
        let family = pick(&mut rng, FAMILY).0;
        let mut given = vec![first.0];
        given.extend(middle.map(|m| m.0));
        Practitioner {
            id: self.practitioner_ref(j).id,
            meta: directory_meta(&mut rng),
            identifier: [Identifier {
                use_: Some("official"),
                kind: None,
                system: codes::NPI,
                value: npi(j, 1),
            }],
            active: rng.gen_range(0..20) != 0,
            name: [HumanName {
                use_: "official",
                family,
                given,
                prefix: Some(["Dr."]),
            }],
            telecom: [demographics::phone(&mut rng, "work")],
            address: [self.organization(o).address[0].clone()],
            gender,
        }
    }
}

/// A 10-digit NPI-shaped number, unique per `(index, leading digit)`: `index` goes through
/// a bijection of `0..10^9` (multiplication by a unit modulo 10^9), so it looks random.
fn npi(index: u64, leading: u64) -> String {
    const MODULUS: u64 = 1_000_000_000;
    // 3^18 is coprime to 10^9, so this permutes the residues.
    let scrambled = (index % MODULUS * 387_420_489 + 604_718_293) % MODULUS;
    format!("{leading}{scrambled:09}")
}

/// Directory entries were last touched some time between 2012 and 2025.
fn directory_meta(rng: &mut impl Rng) -> Meta {
    let from = unix_seconds(2012, 1, 1) * 1000;
    let to = unix_seconds(2026, 1, 1) * 1000;
    Meta {
        last_updated: Instant {
            unix_millis: rng.gen_range(from..to),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_organization_has_staff_and_sites() {
        let directory = Directory::new(1, 10_000);
        let mut rng = draw::stream(1, Domain::Location, u64::MAX);
        let mut staffed = HashSet::new();
        for _ in 0..5_000 {
            let o = rng.gen_range(0..directory.organizations());
            let j = directory.practitioner_of(o, &mut rng);
            assert!(j < directory.practitioners());
            assert_eq!(
                j % directory.organizations(),
                o,
                "works for its organization"
            );
            staffed.insert(o);
        }
        assert_eq!(staffed.len() as u64, directory.organizations());
        for _ in 0..100 {
            let h = directory.any_hospital(&mut rng);
            assert!(directory.is_hospital(h) && h < directory.organizations());
        }
    }

    #[test]
    fn npis_are_unique_ten_digit_numbers() {
        let all: HashSet<String> = (0..10_000).map(|i| npi(i, 1)).collect();
        assert_eq!(all.len(), 10_000);
        assert!(
            all.iter()
                .all(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn locations_belong_to_their_organization() {
        let directory = Directory::new(4, 100);
        for l in 0..directory.locations() {
            let location = directory.location(l);
            let owner = l / LOCATIONS_PER_ORGANIZATION;
            assert_eq!(
                location.managing_organization.reference,
                directory.organization_ref(owner)
            );
            assert!(
                location
                    .name
                    .starts_with(&directory.organization(owner).name)
            );
        }
    }
}
