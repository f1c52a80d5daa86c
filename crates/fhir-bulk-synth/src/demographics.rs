//! People and places: names, streets, cities, phone numbers.
//!
//! The tables are small but mixed on purpose. Names carry apostrophes, hyphens and
//! non-ASCII letters (`O'Brien`, `Nguyễn`, `Zoë`) because loaders, exporters and search
//! indexes that only ever saw ASCII break on real data. Each name has an ASCII slug for
//! email addresses. Phone numbers use the 555-01xx block reserved for fiction, SSNs start
//! with 9 (never issued), and ZIP codes are real prefixes of their state.

use crate::draw::pick;
use crate::fhir::{Address, ContactPoint};
use rand::Rng;

/// A name and its ASCII slug for email addresses.
pub type Name = (&'static str, &'static str);

/// Given names of men.
pub const MALE_GIVEN: &[Name] = &[
    ("James", "james"),
    ("John", "john"),
    ("Robert", "robert"),
    ("Michael", "michael"),
    ("William", "william"),
    ("David", "david"),
    ("Richard", "richard"),
    ("Joseph", "joseph"),
    ("Thomas", "thomas"),
    ("Charles", "charles"),
    ("Daniel", "daniel"),
    ("Matthew", "matthew"),
    ("Anthony", "anthony"),
    ("Mark", "mark"),
    ("José", "jose"),
    ("Luis", "luis"),
    ("Carlos", "carlos"),
    ("Wei", "wei"),
    ("Hiroshi", "hiroshi"),
    ("Minh", "minh"),
    ("Ahmed", "ahmed"),
    ("Mohammed", "mohammed"),
    ("Søren", "soren"),
    ("Jean-Luc", "jeanluc"),
    ("Kwame", "kwame"),
    ("Raj", "raj"),
    ("Ethan", "ethan"),
    ("Noah", "noah"),
    ("Liam", "liam"),
    ("Mateo", "mateo"),
];

/// Given names of women.
pub const FEMALE_GIVEN: &[Name] = &[
    ("Mary", "mary"),
    ("Patricia", "patricia"),
    ("Jennifer", "jennifer"),
    ("Linda", "linda"),
    ("Elizabeth", "elizabeth"),
    ("Barbara", "barbara"),
    ("Susan", "susan"),
    ("Jessica", "jessica"),
    ("Sarah", "sarah"),
    ("Karen", "karen"),
    ("Lisa", "lisa"),
    ("Nancy", "nancy"),
    ("Emily", "emily"),
    ("Olivia", "olivia"),
    ("Emma", "emma"),
    ("Sofía", "sofia"),
    ("María", "maria"),
    ("Guadalupe", "guadalupe"),
    ("Mei", "mei"),
    ("Yuki", "yuki"),
    ("Linh", "linh"),
    ("Fatima", "fatima"),
    ("Aisha", "aisha"),
    ("Zoë", "zoe"),
    ("Chloé", "chloe"),
    ("Ingrid", "ingrid"),
    ("Priya", "priya"),
    ("Ava", "ava"),
    ("Mia", "mia"),
    ("Amara", "amara"),
];

/// Family names.
pub const FAMILY: &[Name] = &[
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Williams", "williams"),
    ("Brown", "brown"),
    ("Jones", "jones"),
    ("Miller", "miller"),
    ("Davis", "davis"),
    ("Wilson", "wilson"),
    ("Anderson", "anderson"),
    ("Taylor", "taylor"),
    ("Thomas", "thomas"),
    ("Moore", "moore"),
    ("Jackson", "jackson"),
    ("Martin", "martin"),
    ("Lee", "lee"),
    ("Thompson", "thompson"),
    ("White", "white"),
    ("Harris", "harris"),
    ("Clark", "clark"),
    ("Lewis", "lewis"),
    ("García", "garcia"),
    ("Rodríguez", "rodriguez"),
    ("Martínez", "martinez"),
    ("Hernández", "hernandez"),
    ("López", "lopez"),
    ("Núñez", "nunez"),
    ("Nguyễn", "nguyen"),
    ("Trần", "tran"),
    ("Kim", "kim"),
    ("Park", "park"),
    ("Chen", "chen"),
    ("Wang", "wang"),
    ("Tanaka", "tanaka"),
    ("Patel", "patel"),
    ("Singh", "singh"),
    ("Khan", "khan"),
    ("O'Brien", "obrien"),
    ("McCarthy", "mccarthy"),
    ("Müller", "muller"),
    ("Schröder", "schroder"),
    ("Dvořák", "dvorak"),
    ("Kowalski", "kowalski"),
    ("Okafor", "okafor"),
    ("Mensah", "mensah"),
    ("Smith-Jones", "smithjones"),
    ("Van der Berg", "vanderberg"),
];

/// A city, its state, the first three digits of its ZIP codes and its UTC offset in minutes
/// (standard time; the generator ignores daylight saving, which FHIR offsets allow).
#[derive(Debug, Clone, Copy)]
pub struct City {
    /// City name.
    pub name: &'static str,
    /// Two-letter state.
    pub state: &'static str,
    /// ZIP prefix.
    pub zip3: &'static str,
    /// UTC offset in minutes.
    pub offset_minutes: i32,
}

const fn city(
    name: &'static str,
    state: &'static str,
    zip3: &'static str,
    offset_minutes: i32,
) -> City {
    City {
        name,
        state,
        zip3,
        offset_minutes,
    }
}

/// Cities across US time zones.
pub const CITIES: &[City] = &[
    city("Boston", "MA", "021", -300),
    city("Worcester", "MA", "016", -300),
    city("Springfield", "MA", "011", -300),
    city("New York", "NY", "100", -300),
    city("Buffalo", "NY", "142", -300),
    city("Philadelphia", "PA", "191", -300),
    city("Atlanta", "GA", "303", -300),
    city("Miami", "FL", "331", -300),
    city("Chicago", "IL", "606", -360),
    city("Minneapolis", "MN", "554", -360),
    city("Houston", "TX", "770", -360),
    city("San Antonio", "TX", "782", -360),
    city("New Orleans", "LA", "701", -360),
    city("Denver", "CO", "802", -420),
    city("Phoenix", "AZ", "850", -420),
    city("Albuquerque", "NM", "871", -420),
    city("Salt Lake City", "UT", "841", -420),
    city("Seattle", "WA", "981", -480),
    city("Portland", "OR", "972", -480),
    city("San Francisco", "CA", "941", -480),
    city("Los Angeles", "CA", "900", -480),
    city("Anchorage", "AK", "995", -540),
    city("Honolulu", "HI", "968", -600),
];

const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Church",
    "River",
    "Sunset",
    "Highland",
    "Jefferson",
    "Lincoln",
    "Madison",
    "Walnut",
    "Chestnut",
    "Spring",
    "Willow",
    "Forest",
    "Meadow",
    "Ridge",
];

const STREET_TYPES: &[&str] = &["St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Way"];

/// A person's gender and given names.
pub fn given_names(rng: &mut impl Rng, gender: &str) -> (Name, Option<Name>) {
    let table = match gender {
        "male" => MALE_GIVEN,
        "female" => FEMALE_GIVEN,
        // `other` and `unknown` draw from both lists.
        _ if rng.gen_bool(0.5) => MALE_GIVEN,
        _ => FEMALE_GIVEN,
    };
    let first = *pick(rng, table);
    let middle = rng.gen_bool(0.4).then(|| *pick(rng, table));
    (first, middle)
}

/// A street address in `city`; one in eight has an apartment number (with a `#`).
pub fn address(rng: &mut impl Rng, city: &City, use_: &'static str) -> Address {
    let number: u32 = rng.gen_range(1..9999);
    let street = pick(rng, STREETS);
    let street_type = pick(rng, STREET_TYPES);
    let line = if rng.gen_range(0..8) == 0 {
        format!(
            "{number} {street} {street_type} Apt #{}",
            rng.gen_range(1..40)
        )
    } else {
        format!("{number} {street} {street_type}")
    };
    Address {
        use_,
        line: [line],
        city: city.name,
        state: city.state,
        postal_code: format!("{}{:02}", city.zip3, rng.gen_range(0..100)),
        country: "US",
    }
}

/// A fictional phone number (555-0100 to 555-0199 in a plausible area code).
pub fn phone(rng: &mut impl Rng, use_: &'static str) -> ContactPoint {
    ContactPoint {
        system: "phone",
        value: format!(
            "({}) 555-01{:02}",
            rng.gen_range(201..990),
            rng.gen_range(0..100)
        ),
        use_,
    }
}
