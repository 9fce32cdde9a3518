//! Inserting into the screening index as it grows: records that all name one vessel (many
//! indicators about one ship, as the benchmark tool's indicators do) and records that each
//! name their own, timed per slice of inserts at growing sizes.
//!
//! Run: `cargo bench -p cordon-matching --bench index` (release profile). Set
//! `CORDON_BENCH_RECORDS` to change the largest size (default 200000).

use std::hint::black_box;
use std::time::Instant;

use cordon_matching::{IdKind, Index, NameClass, Subject};

fn vessel(imo: &str, name: &str) -> cordon_matching::Prepared {
    let mut subject = Subject::default();
    subject.identifier(IdKind::Imo, imo, "vessel.imo");
    subject.name(NameClass::Vessel, name, "vessel.name");
    subject.prepare()
}

/// A valid IMO number for `n` (the seventh digit is the check digit).
fn imo(n: u64) -> String {
    let digits: Vec<u64> = format!("{:06}", n % 1_000_000)
        .bytes()
        .map(|byte| u64::from(byte - b'0'))
        .collect();
    let check: u64 = digits
        .iter()
        .zip((2..=7).rev())
        .map(|(digit, weight)| digit * weight)
        .sum::<u64>()
        % 10;
    format!(
        "{}{check}",
        digits.iter().map(u64::to_string).collect::<String>()
    )
}

fn main() {
    let largest: u64 = std::env::var("CORDON_BENCH_RECORDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200_000);
    let shared = vessel("9234563", "BENCH");
    println!("{:>10}  {:<28} {:>14}", "records", "subjects", "inserts/s");
    for (label, same) in [("one vessel for all", true), ("a vessel each", false)] {
        let mut index = Index::new();
        let slice = (largest / 4).max(1);
        let mut record = 0u64;
        while record < largest {
            let subjects: Vec<_> = (record..record + slice)
                .map(|n| {
                    if same {
                        shared.clone()
                    } else {
                        vessel(&imo(n), &format!("VESSEL {n}"))
                    }
                })
                .collect();
            let started = Instant::now();
            for subject in &subjects {
                index.insert(record, subject);
                record += 1;
            }
            let rate = slice as f64 / started.elapsed().as_secs_f64();
            println!("{record:>10}  {label:<28} {rate:>14.0}");
        }
        black_box(&index);
    }
}
