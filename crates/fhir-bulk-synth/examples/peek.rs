//! Temporary: generate and print a summary.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args[1].parse().unwrap();
    let out = std::path::PathBuf::from(&args[2]);
    let t = std::time::Instant::now();
    let s = fhir_bulk_synth::generate(&fhir_bulk_synth::SynthConfig { patients: n, seed: 1 }, &out, &mut |_| {}).unwrap();
    println!("{:?} total {} bytes {} in {:?} ({:.1}/patient)", s.resources, s.total(), s.bytes, t.elapsed(), s.total() as f64 / n as f64);
}
