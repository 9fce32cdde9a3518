//! Risk assessments per second of CPU on the reference policy, single thread, on the bytecode
//! VM and on the interpreter, over the example declarations with and without matches.
//!
//! Run: `cargo bench -p cordon-policy --bench risk` (release profile). Set
//! `CORDON_BENCH_SECONDS` to change how long each measurement runs (default 2 seconds), and
//! `CORDON_RISK_POLICY_DIR` to measure another policy directory than the reference, and
//! `CORDON_BENCH_ENGINES=vm` to leave the interpreter out.
//! Before measuring it checks that both engines give the same assessment of every input.

use std::hint::black_box;
use std::time::Duration;

use cordon_policy::{Policy, RiskContext, risk_input, write_reference_policy};
use serde_json::{Value, json};

fn cpu_seconds() -> f64 {
    // utime + stime of this thread, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
    };
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

fn inputs() -> Vec<Value> {
    let examples = include_str!("../../../shared/examples/declarations.jsonl");
    let context = RiskContext {
        member: "GH",
        agency: "GH/customs",
        now: "2026-12-01T12:00:00Z",
    };
    let matches = json!([
        {"declarationField": "parties[1].name", "value": "EXAMPLE TRADING F.Z.E.", "indicatorId": "019a0000-0000-7000-8000-000000000001", "kind": "broker", "indicatorField": "broker.name", "method": "fuzzy", "similarity": 0.93, "feature": "party_name", "tlp": "TLP_GREEN", "originator": "NG", "severity": "SEVERITY_HIGH", "confidence": 80, "tags": ["broker"], "indicator": {"id": "019a0000-0000-7000-8000-000000000001", "originator": "NG", "tlp": "TLP_GREEN", "severity": "SEVERITY_HIGH", "broker": {"name": "Example Trading FZE", "country": "AE"}}},
        {"declarationField": "endUserCertificate.number", "value": "EUC/2026/7731", "indicatorId": "019a0000-0000-7000-8000-000000000002", "kind": "endUserCertificate", "indicatorField": "endUserCertificate.number", "method": "normalised", "similarity": 1.0, "feature": "euc_number", "tlp": "TLP_AMBER", "originator": "NG", "severity": "SEVERITY_CRITICAL", "confidence": 90, "tags": [], "indicator": {"id": "019a0000-0000-7000-8000-000000000002", "endUserCertificate": {"number": "EUC-2026-7731", "issuingCountry": "SN", "status": "EUC_STATUS_FORGED"}}},
    ]);
    let mut inputs = Vec::new();
    for line in examples.lines().filter(|line| line.starts_with('{')) {
        let Ok(declaration) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        inputs.push(risk_input(
            declaration.clone(),
            json!([]),
            json!([]),
            context,
        ));
        inputs.push(risk_input(declaration, matches.clone(), json!([]), context));
    }
    inputs
}

fn measure(label: &str, budget: Duration, inputs: &[Value], assess: impl Fn(&Value) -> u32) {
    let start = cpu_seconds();
    let wall = std::time::Instant::now();
    let mut done = 0u64;
    while wall.elapsed() < budget {
        for input in inputs {
            black_box(assess(black_box(input)));
            done += 1;
        }
    }
    let cpu = (cpu_seconds() - start).max(0.01);
    println!(
        "{label:<12} {:>9.0} assessments per CPU second ({:.1} µs each), {done} in {:.1?}",
        done as f64 / cpu,
        cpu * 1e6 / done as f64,
        wall.elapsed()
    );
}

fn main() {
    let seconds: f64 = std::env::var("CORDON_BENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir().expect("temporary directory");
    let policy_dir = match std::env::var_os("CORDON_RISK_POLICY_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            write_reference_policy(dir.path()).expect("reference policy written");
            dir.path().to_path_buf()
        }
    };
    let policy = Policy::load(&policy_dir).expect("the policy loads");
    let inputs = inputs();
    for input in &inputs {
        let vm = policy.assess(input);
        let reference = policy.assess_interpreted(input);
        assert!(vm.error.is_none(), "the VM failed: {:?}", vm.error);
        assert_eq!(vm, reference, "the engines disagree on {input}");
    }
    println!(
        "cordon-policy risk benchmark: {} inputs, risk engine {}, {seconds} s each",
        inputs.len(),
        policy.risk_engine().name()
    );
    measure("bytecode VM", budget, &inputs, |input| {
        policy.assess(input).score
    });
    // `CORDON_BENCH_ENGINES=vm` measures the VM alone (for instruction counts under callgrind).
    if std::env::var("CORDON_BENCH_ENGINES").as_deref() != Ok("vm") {
        measure("interpreter", budget, &inputs, |input| {
            policy.assess_interpreted(input).score
        });
    }
}
