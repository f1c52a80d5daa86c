//! `_typeFilter` tests: one small resource per case, checked through [`check`].

use super::*;
use serde_json::json;

/// Parses `filter` and asserts whether it matches `resource`.
#[track_caller]
fn check(filter: &str, resource: &Value, expected: bool) {
    let parsed = TypeFilter::parse(filter).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.matches(resource), expected, "{filter} on {resource}");
    // The same verdict on only the top-level elements the filter says it reads, as the
    // server's filter path parses them.
    let names = parsed
        .top_level_elements()
        .unwrap_or_else(|| panic!("{filter}: no top-level elements"));
    let partial: serde_json::Map<String, Value> = resource
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == "resourceType" || names.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        parsed.matches(&Value::Object(partial)),
        expected,
        "{filter} on the elements {names:?} of {resource}"
    );
    // The byte screen never rejects a match, and with every match case here it is tried on
    // the resource as serde_json writes it.
    if expected {
        let json = serde_json::to_vec(resource).unwrap();
        assert!(parsed.may_match(&json), "{filter}: screened out {resource}");
    }
}

#[test]
fn top_level_elements_are_the_parameters_first_steps() {
    let f = TypeFilter::parse("Observation?category=laboratory&subject=Patient/1").unwrap();
    assert_eq!(f.top_level_elements(), Some(vec!["category", "subject"]));
    let f = TypeFilter::parse("Patient?_lastUpdated=gt2020&_id=p1").unwrap();
    assert_eq!(f.top_level_elements(), Some(vec!["meta", "id"]));
}

/// Asserts that `filter` is rejected with exactly `message`.
#[track_caller]
fn rejects(filter: &str, message: &str) {
    match TypeFilter::parse(filter) {
        Ok(_) => panic!("{filter} parsed"),
        Err(e) => assert_eq!(e.to_string(), message),
    }
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "meta": {"lastUpdated": "2020-03-04T05:06:07.123Z",
                 "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs|3.1.1"],
                 "tag": [{"system": "http://example.org/tags", "code": "t1"}],
                 "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                 "source": "http://example.org/feeds/a#1"},
        "identifier": [{"system": "http://example.org/ids", "value": "abc"}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}], "text": "BP"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "https://other.org/fhir/Practitioner/d1/_history/2"}],
        "effectiveDateTime": "2015-02-07T13:28:17-05:00",
        "valueQuantity": {"value": 6.1, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    })
}

#[test]
fn token_forms() {
    let o = observation();
    check("Observation?code=85354-9", &o, true);
    check("Observation?code=85354-8", &o, false);
    check("Observation?code=http://loinc.org|85354-9", &o, true);
    check("Observation?code=http://snomed.info/sct|85354-9", &o, false);
    check("Observation?code=|85354-9", &o, false);
    check("Observation?code=http://loinc.org|", &o, true);
    check("Observation?code=http://snomed.info/sct|", &o, false);
    check("Observation?category=vital-signs", &o, true);
    check("Observation?status=final", &o, true);
    check("Observation?status=preliminary", &o, false);
    check(
        "Observation?identifier=http://example.org/ids|abc",
        &o,
        true,
    );
    check("Observation?identifier=abc", &o, true);
    check("Observation?identifier=http://other|abc", &o, false);
    check("Observation?_id=o1", &o, true);
    check("Observation?_id=o2", &o, false);
    let no_system = json!({"resourceType": "Observation", "code": {"coding": [{"code": "x"}]}});
    check("Observation?code=|x", &no_system, true);
    let patient = json!({"resourceType": "Patient", "active": true, "gender": "female",
        "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@x.org"}]});
    check("Patient?active=true", &patient, true);
    check("Patient?active=false", &patient, false);
    check("Patient?gender=female", &patient, true);
    check("Patient?email=a@x.org", &patient, true);
    check("Patient?email=555", &patient, false);
    check("Patient?phone=555", &patient, true);
    check("Patient?telecom=phone|555", &patient, true);
}

#[test]
fn token_modifiers() {
    let o = observation();
    check("Observation?status:not=final", &o, false);
    check("Observation?status:not=amended", &o, true);
    check("Observation?status:not=amended,final", &o, false);
    check(
        "Observation?status:not=final",
        &json!({"resourceType": "Observation"}),
        true,
    );
    check("Observation?code:text=bp", &o, true);
    check("Observation?code:text=PRESSURE", &o, true);
    check("Observation?code:text=glucose", &o, false);
    check("Observation?code:missing=false", &o, true);
    check("Observation?code:missing=true", &o, false);
    check("Observation?data-absent-reason:missing=true", &o, true);
}

#[test]
fn meta_tokens_and_uris() {
    let o = observation();
    check("Observation?_tag=http://example.org/tags|t1", &o, true);
    check("Observation?_tag=t2", &o, false);
    check("Observation?_security=R", &o, true);
    check(
        "Observation?_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N",
        &o,
        false,
    );
    check(
        "Observation?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs",
        &o,
        true,
    );
    check(
        "Observation?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs|3.1.1",
        &o,
        true,
    );
    check(
        "Observation?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core",
        &o,
        false,
    );
    check(
        "Observation?_profile:below=http://hl7.org/fhir/us/core/",
        &o,
        true,
    );
    check(
        "Observation?_source:above=http://example.org/feeds/a%231/more",
        &o,
        true,
    );
    check(
        "Observation?_source=http://example.org/feeds/a%231",
        &o,
        true,
    );
    check(
        "Observation?_profile:missing=true",
        &json!({"resourceType": "Observation"}),
        true,
    );
}

#[test]
fn references() {
    let o = observation();
    check("Observation?subject=Patient/p1", &o, true);
    check("Observation?subject=p1", &o, true);
    check("Observation?subject=Patient/p2", &o, false);
    check(
        "Observation?subject=https://example.org/fhir/Patient/p1",
        &o,
        true,
    );
    check("Observation?patient=p1", &o, true);
    check("Observation?subject:Patient=p1", &o, true);
    check("Observation?subject:Group=p1", &o, false);
    check("Observation?performer=Practitioner/d1", &o, true);
    check("Observation?performer=d1", &o, true);
    check("Observation?performer:missing=false", &o, true);
    check("Observation?specimen:missing=true", &o, true);
    // `patient` is `subject.where(resolve() is Patient)`: a Group subject is not a patient.
    let group_subject =
        json!({"resourceType": "Observation", "subject": {"reference": "Group/p1"}});
    check("Observation?patient=p1", &group_subject, false);
    check("Observation?subject=p1", &group_subject, true);
    let versioned =
        json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1/_history/3"}});
    check("Condition?patient=Patient/p1", &versioned, true);
    let contained = json!({"resourceType": "Condition", "subject": {"reference": "#p1"}});
    check("Condition?subject=p1", &contained, false);
    let group = json!({"resourceType": "Group", "member": [{"entity": {"reference": "Patient/a"}}, {"entity": {"reference": "Patient/b"}}]});
    check("Group?member=Patient/b", &group, true);
    check("Group?member=c,a", &group, true);
}

#[test]
fn dates_at_every_precision() {
    let o = observation(); // 2015-02-07T18:28:17Z
    check("Observation?date=2015", &o, true);
    check("Observation?date=2015-02", &o, true);
    check("Observation?date=2015-02-07", &o, true);
    check("Observation?date=2015-02-08", &o, false);
    check("Observation?date=2016", &o, false);
    check("Observation?date=2015-02-07T18:28Z", &o, true);
    check("Observation?date=2015-02-07T18:28:17Z", &o, true);
    check("Observation?date=2015-02-07T13:28:17-05:00", &o, true);
    check("Observation?date=eq2015-02-07T18:28:18Z", &o, false);
}

#[test]
fn date_prefixes() {
    let o = observation(); // 2015-02-07T18:28:17Z
    check("Observation?date=ge2015-02-07", &o, true);
    check("Observation?date=ge2015-02-08", &o, false);
    check("Observation?date=gt2015-02-06", &o, true);
    check("Observation?date=gt2015-02-07", &o, false);
    check("Observation?date=gt2015", &o, false);
    check("Observation?date=le2015-02-07", &o, true);
    check("Observation?date=le2015-02-06", &o, false);
    check("Observation?date=lt2015-02-08", &o, true);
    check("Observation?date=lt2015-02-07", &o, false);
    check("Observation?date=ne2015-02-08", &o, true);
    check("Observation?date=ne2015", &o, false);
    check("Observation?date=sa2015-02-06", &o, true);
    check("Observation?date=sa2015-02-07", &o, false);
    check("Observation?date=eb2015-02-08", &o, true);
    check("Observation?date=eb2015-02-07", &o, false);
    check("Observation?date=ap2015-03-01", &o, true);
    check("Observation?date=ap1990", &o, false);
    // Offsets: 18:28:17Z is 20:28:17+02:00; the `+` may arrive percent-encoded or as a space.
    check("Observation?date=ge2015-02-07T20:28:17%2B02:00", &o, true);
    check("Observation?date=gt2015-02-07T20:28:17%2B02:00", &o, false);
    check("Observation?date=lt2015-02-07T20:00:00 02:00", &o, false);
    check(
        "Observation?date=ge2015-02-07T18:00:00Z&date=lt2015-02-07T19:00:00Z",
        &o,
        true,
    );
    // 05:06:07.123 lies within the second 05:06:07, so it is not after it.
    check("Observation?_lastUpdated=gt2020-03-04T05:06:06Z", &o, true);
    check("Observation?_lastUpdated=gt2020-03-04T05:06:07Z", &o, false);
    check(
        "Observation?_lastUpdated=gt2020-03-04T05:06:07.122Z",
        &o,
        true,
    );
    check("Observation?_lastUpdated=2020-03", &o, true);
}

#[test]
fn periods_and_choice_types() {
    let enc = json!({"resourceType": "Encounter", "period": {"start": "2019-12-30T10:00:00Z", "end": "2020-01-02"}});
    check("Encounter?date=ge2020-01-01", &enc, true);
    check("Encounter?date=le2019-12-30", &enc, true);
    check("Encounter?date=2020-01-01", &enc, false); // the period is not within that day
    check("Encounter?date=2020", &enc, false);
    check("Encounter?date=gt2020-01-02", &enc, false);
    check("Encounter?date=lt2019-12-30T10:00:00Z", &enc, false);
    let open = json!({"resourceType": "Encounter", "period": {"start": "2019-12-30"}});
    check("Encounter?date=gt2030", &open, true);
    check("Encounter?date=eb2019-12-30", &open, false);
    let onset_period =
        json!({"resourceType": "Condition", "onsetPeriod": {"start": "2010-05", "end": "2010-06"}});
    let onset_date = json!({"resourceType": "Condition", "onsetDateTime": "2012-01-01"});
    check("Condition?onset-date=2010", &onset_period, true);
    check("Condition?onset-date=2012", &onset_date, true);
    check("Condition?onset-date=lt2011", &onset_date, false);
    let timing = json!({"resourceType": "Observation", "effectiveTiming": {"event": ["2001-01-01", "2003-01-01"]}});
    check("Observation?date=2003", &timing, true);
    check("Observation?date=2002", &timing, false);
    let instant =
        json!({"resourceType": "Observation", "effectiveInstant": "2015-02-07T13:28:17.239+02:00"});
    check("Observation?date=2015-02-07T11:28:17Z", &instant, true);
    check(
        "Observation?date:missing=true",
        &json!({"resourceType": "Observation"}),
        true,
    );
}

#[test]
fn strings() {
    let p = json!({"resourceType": "Patient",
        "name": [{"family": "Smith", "given": ["Élodie", "Anne"], "prefix": ["Dr."]}],
        "address": [{"line": ["1 Main St"], "city": "Boston", "postalCode": "02118"}]});
    check("Patient?name=smi", &p, true);
    check("Patient?name=SMITH", &p, true);
    check("Patient?name=mith", &p, false);
    check("Patient?name=elo", &p, true);
    check("Patient?name=%C3%A9lo", &p, true);
    check("Patient?name=ann,xyz", &p, true);
    check("Patient?name:exact=Smith", &p, true);
    check("Patient?name:exact=smith", &p, false);
    check("Patient?name:contains=MIT", &p, true);
    check("Patient?family=sm", &p, true);
    check("Patient?given=anne", &p, true);
    check("Patient?given=smith", &p, false);
    check("Patient?address=bost", &p, true);
    check("Patient?address=main", &p, false);
    check("Patient?address:contains=main", &p, true);
    check("Patient?address-city=boston", &p, true);
    check("Patient?address-postalcode=021", &p, true);
    check("Patient?name=smi&address-city=chicago", &p, false);
    let o = json!({"resourceType": "Observation", "valueString": "Positive result"});
    check("Observation?value-string=pos", &o, true);
    let comma = json!({"resourceType": "Patient", "name": [{"text": "a,b"}]});
    check("Patient?name:exact=a\\,b", &comma, true);
    check("Patient?name:exact=a%2Cb", &comma, true);
    check("Patient?name:exact=a,b", &comma, false);
}

#[test]
fn quantities_and_numbers() {
    let o = observation(); // 6.1 mg
    check("Observation?value-quantity=gt5", &o, true);
    check("Observation?value-quantity=lt5", &o, false);
    check("Observation?value-quantity=6.1", &o, true);
    check("Observation?value-quantity=6", &o, true); // [5.5, 6.5)
    check("Observation?value-quantity=6.0", &o, false); // [5.95, 6.05)
    check(
        "Observation?value-quantity=ge6.1|http://unitsofmeasure.org|mg",
        &o,
        true,
    );
    check(
        "Observation?value-quantity=6.1|http://unitsofmeasure.org|g",
        &o,
        false,
    );
    check("Observation?value-quantity=6.1||mg", &o, true);
    check("Observation?value-quantity=ne6.1", &o, false);
    check("Observation?value-quantity=ap6.5", &o, true);
    check("Observation?value-quantity=6.1e0", &o, true);
    let risk = json!({"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.8}, {"probabilityDecimal": 0.1}]});
    check("RiskAssessment?probability=gt0.5", &risk, true);
    check("RiskAssessment?probability=gt0.9", &risk, false);
    check("RiskAssessment?probability=le0.1", &risk, true);
    check("RiskAssessment?probability=0.8", &risk, true);
}

#[test]
fn and_or_and_type() {
    let o = observation();
    check("Observation?status=final&code=85354-9", &o, true);
    check("Observation?status=final&code=other", &o, false);
    check(
        "Observation?status=amended,final&code=other,85354-9",
        &o,
        true,
    );
    check("Observation?", &o, true);
    check(
        "Observation?status=final",
        &json!({"resourceType": "Condition", "status": "final"}),
        false,
    );
    let filter = TypeFilter::parse("Observation?status=final").unwrap();
    assert_eq!(filter.resource_type(), "Observation");
    assert_eq!(filter.to_string(), "Observation?status=final");
}

#[test]
fn several_filters_of_a_type_are_ored_p8b() {
    let filters = parse_type_filters(&[
        "Observation?status=preliminary".to_string(),
        "Observation?code=85354-9".to_string(),
        "Condition?clinical-status=active".to_string(),
    ])
    .unwrap();
    assert!(passes(&filters, &observation()));
    let other = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "x"}]}});
    assert!(!passes(&filters, &other));
    // Types without a filter pass unfiltered.
    assert!(passes(&filters, &json!({"resourceType": "Encounter"})));
    let condition =
        json!({"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "resolved"}]}});
    assert!(!passes(&filters, &condition));
    assert!(passes(&[], &condition));
}

#[test]
fn comma_lists_split_only_before_a_type_p8e() {
    assert_eq!(
        split_filter_list(
            "Observation?status=final,amended,Condition?code=a,b, Encounter?class=AMB"
        ),
        [
            "Observation?status=final,amended",
            "Condition?code=a,b",
            "Encounter?class=AMB"
        ]
    );
    assert_eq!(
        split_filter_list("Patient?name=Ann,Bob?x"),
        ["Patient?name=Ann,Bob?x"]
    );
    let filters = parse_type_filters(&[
        "MedicationRequest?status=active,MedicationRequest?status=completed&date=gt2018-07-01"
            .to_string(),
    ])
    .unwrap();
    assert_eq!(filters.len(), 2);
    assert_eq!(
        filters[1].as_str(),
        "MedicationRequest?status=completed&date=gt2018-07-01"
    );
    let filters = parse_type_filters(&["Observation?status=final,amended".to_string()]).unwrap();
    assert_eq!(filters.len(), 1);
    assert!(filters[0].matches(&json!({"resourceType": "Observation", "status": "amended"})));
}

#[test]
fn rejections() {
    for (param, value) in [
        ("_include", "Observation:subject"),
        ("_revinclude:iterate", "x"),
        ("_sort", "date"),
        ("_count", "5"),
        ("_elements", "id"),
        ("_summary", "true"),
        ("_total", "none"),
        ("_contained", "true"),
    ] {
        let name = param.split(':').next().unwrap();
        rejects(
            &format!("Observation?status=final&{param}={value}"),
            &format!(
                "_typeFilter 'Observation?status=final&{param}={value}': result parameter '{name}' is not allowed in a filter"
            ),
        );
    }
    rejects(
        "Observation?foo=1",
        "_typeFilter 'Observation?foo=1': Observation has no search parameter 'foo'",
    );
    rejects(
        "Foo?status=final",
        "_typeFilter 'Foo?status=final': 'Foo' is not an R4 resource type",
    );
    rejects(
        "observation?status=final",
        "_typeFilter 'observation?status=final': 'observation' is not an R4 resource type",
    );
    rejects(
        "Observation",
        "_typeFilter 'Observation': expected 'Type?param=value&…'",
    );
    rejects(
        "?status=final",
        "_typeFilter '?status=final': no resource type before '?'; a filter targets one type (P8c)",
    );
    rejects(
        "Observation?status",
        "_typeFilter 'Observation?status': parameter 'status' has no '=value'",
    );
    rejects(
        "Observation?code:in=http://vs",
        "_typeFilter 'Observation?code:in=http://vs': modifier ':in' is not supported on token parameter 'code'",
    );
    rejects(
        "Observation?date:exact=2015",
        "_typeFilter 'Observation?date:exact=2015': modifier ':exact' is not supported on date parameter 'date'",
    );
    rejects(
        "Observation?subject:identifier=a|b",
        "_typeFilter 'Observation?subject:identifier=a|b': modifier ':identifier' is not supported on reference parameter 'subject'",
    );
    rejects(
        "Observation?code-value-quantity=x$5",
        "_typeFilter 'Observation?code-value-quantity=x$5': search parameter 'code-value-quantity' is not supported: composite parameters are not supported",
    );
    rejects(
        "Location?near=1|2",
        "_typeFilter 'Location?near=1|2': search parameter 'near' is not supported: special parameters are not supported",
    );
    rejects(
        "Observation?subject.name=x",
        "_typeFilter 'Observation?subject.name=x': search parameter 'subject.name' is not supported: chained parameters are not supported",
    );
    rejects(
        "Patient?_has:Observation:patient:code=x",
        "_typeFilter 'Patient?_has:Observation:patient:code=x': search parameter '_has:Observation:patient:code' is not supported: reverse chaining is not supported",
    );
    rejects(
        "Patient?_text=x",
        "_typeFilter 'Patient?_text=x': search parameter '_text' is not supported: its definition does not reduce to element paths",
    );
    rejects(
        "Patient?phonetic=smyth",
        "_typeFilter 'Patient?phonetic=smyth': search parameter 'phonetic' is not supported: its definition does not reduce to element paths",
    );
    rejects(
        "Observation?date=2015-13",
        "_typeFilter 'Observation?date=2015-13': invalid value '2015-13' for 'date': expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]]",
    );
    rejects(
        "Observation?value-quantity=abc",
        "_typeFilter 'Observation?value-quantity=abc': invalid value 'abc' for 'value-quantity': expected [prefix]number, e.g. 'gt5.4'",
    );
    rejects(
        "Observation?value-quantity=5|mg",
        "_typeFilter 'Observation?value-quantity=5|mg': invalid value '5|mg' for 'value-quantity': expected [prefix]number[|system|code]",
    );
    rejects(
        "Observation?status:missing=maybe",
        "_typeFilter 'Observation?status:missing=maybe': invalid value 'maybe' for 'status:missing': :missing takes 'true' or 'false'",
    );
    rejects(
        "Observation?code=|",
        "_typeFilter 'Observation?code=|': invalid value '|' for 'code': '|' alone names no system and no code",
    );
    rejects(
        "Observation?code=a,",
        "_typeFilter 'Observation?code=a,': invalid value 'a,' for 'code': empty value",
    );
    rejects(
        "Observation?subject:Group=Patient/1",
        "_typeFilter 'Observation?subject:Group=Patient/1': invalid value 'Patient/1' for 'subject:Group': the reference's type differs from the :Type modifier",
    );
    assert!(matches!(
        parse_type_filters(&[String::new()]),
        Err(TypeFilterError::Malformed { .. })
    ));
    // `Foo` is no resource type, so the comma does not split: `Foo?x=1` is a status value.
    assert_eq!(
        parse_type_filters(&["Observation?status=final,Foo?x=1".to_string()])
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn the_generated_search_parameter_table() {
    let p = search_param("Observation", "_lastUpdated").unwrap();
    assert_eq!(
        (p.kind, p.paths),
        (
            ParamKind::Date,
            &[&[Step::Field("meta"), Step::Field("lastUpdated")][..]][..]
        )
    );
    let onset = search_param("Condition", "onset-date").unwrap();
    assert_eq!(
        onset.paths,
        [
            &[Step::Field("onsetDateTime")][..],
            &[Step::Field("onsetPeriod")][..]
        ]
    );
    let value = search_param("Observation", "value-quantity").unwrap();
    assert_eq!(value.kind, ParamKind::Quantity);
    assert!(value.paths.contains(&&[Step::Field("valueQuantity")][..]));
    let patient = search_param("Observation", "patient").unwrap();
    assert_eq!(
        patient.paths,
        [&[Step::Field("subject"), Step::ResolvesTo("Patient")][..]]
    );
    let email = search_param("Patient", "email").unwrap();
    assert_eq!(
        email.paths,
        [&[Step::Field("telecom"), Step::Where("system", "email")][..]]
    );
    // Plain paths to choice elements expand to the typed properties a date can have.
    let date = search_param("Observation", "date").unwrap();
    assert_eq!(date.paths.len(), 4);
    assert!(
        !search_param("Immunization", "date")
            .unwrap()
            .paths
            .iter()
            .any(|p| p[0] == Step::Field("occurrenceString"))
    );
    assert!(
        !search_param("Observation", "code-value-quantity")
            .unwrap()
            .is_supported()
    );
    assert!(
        !search_param("Bundle", "composition")
            .unwrap()
            .is_supported()
    );
    assert!(search_param("Observation", "nope").is_none());
    assert!(search_param("Nope", "_id").is_none());
    for base in [
        "_id",
        "_lastUpdated",
        "_profile",
        "_tag",
        "_security",
        "_source",
    ] {
        for ty in RESOURCE_TYPES_SAMPLE {
            assert!(
                search_param(ty, base).is_some_and(SearchParam::is_supported),
                "{ty}.{base}"
            );
        }
    }
    assert!(search_params("Bundle").all(|p| p.code != "_text"));
    assert!(search_params("Patient").any(|p| p.code == "_text"));
    let supported = crate::resource_type::RESOURCE_TYPES
        .iter()
        .flat_map(|ty| search_params(ty))
        .filter(|p| p.is_supported())
        .count();
    assert!(supported > 1500, "{supported}");
}

const RESOURCE_TYPES_SAMPLE: &[&str] = &["Patient", "Observation", "Bundle", "Binary", "Group"];
