//! The shared example files: every valid example passes, every invalid one is rejected with an
//! error naming the expected field.
//!
//! The files live in `shared/examples` beside the repository (`../../shared` from this crate),
//! both here and in CI.

use std::path::PathBuf;

use cordon_indicator::{Limits, validate_batch, validate_indicator};
use cordon_proto::v1::Indicator;

fn example_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/examples")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// Non-blank lines with their 1-based line numbers.
fn lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
        .collect()
}

fn parse(name: &str, line_number: usize, line: &str) -> Indicator {
    serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("{name} line {line_number} does not parse: {error}"))
}

#[test]
fn every_valid_example_parses_and_validates() {
    let text = example_file("indicators.jsonl");
    let lines = lines(&text);
    assert!(!lines.is_empty(), "indicators.jsonl has no examples");
    let limits = Limits::default();
    let mut indicators = Vec::new();
    for (line_number, line) in lines {
        let indicator = parse("indicators.jsonl", line_number, line);
        if let Err(errors) = validate_indicator(&indicator, &limits) {
            panic!("indicators.jsonl line {line_number} is rejected: {errors:?}");
        }
        indicators.push(indicator);
    }
    let warnings = validate_batch(&indicators, &limits).expect("the examples as one batch");
    assert_eq!(
        warnings.len(),
        indicators.len(),
        "one warning list per indicator"
    );
}

#[test]
fn every_invalid_example_is_rejected_naming_its_field() {
    let expected_text = example_file("invalid.expected");
    let expected_words: Vec<&str> = lines(&expected_text)
        .into_iter()
        .map(|(_, line)| line)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let invalid_text = example_file("invalid.jsonl");
    let invalid_lines = lines(&invalid_text);
    assert!(!invalid_lines.is_empty(), "invalid.jsonl has no examples");
    assert_eq!(
        invalid_lines.len(),
        expected_words.len(),
        "one expected word per invalid example"
    );

    for ((line_number, line), word) in invalid_lines.into_iter().zip(expected_words) {
        let indicator = parse("invalid.jsonl", line_number, line);
        let errors = match validate_indicator(&indicator, &Limits::default()) {
            Ok(warnings) => {
                panic!("invalid.jsonl line {line_number} is accepted (warnings {warnings:?})")
            }
            Err(errors) => errors,
        };
        let word = word.to_lowercase();
        let named = errors.iter().any(|error| {
            error.path.to_lowercase().contains(&word)
                || error.message.to_lowercase().contains(&word)
        });
        assert!(
            named,
            "invalid.jsonl line {line_number}: no error names {word:?}: {errors:?}"
        );
        // Each example has exactly one defect: a second error would be a false alarm.
        assert_eq!(
            errors.len(),
            1,
            "invalid.jsonl line {line_number}: {errors:?}"
        );
    }
}

#[test]
fn a_batch_with_one_invalid_example_is_rejected_at_its_index() {
    let valid_text = example_file("indicators.jsonl");
    let invalid_text = example_file("invalid.jsonl");
    let mut batch: Vec<Indicator> = lines(&valid_text)
        .into_iter()
        .map(|(line_number, line)| parse("indicators.jsonl", line_number, line))
        .collect();
    let (line_number, line) = lines(&invalid_text)[0];
    batch.insert(3, parse("invalid.jsonl", line_number, line));

    let errors =
        validate_batch(&batch, &Limits::default()).expect_err("the batch has an invalid indicator");
    let indices: Vec<usize> = errors.iter().map(|(index, _)| *index).collect();
    assert_eq!(indices, [3], "{errors:?}");
}
