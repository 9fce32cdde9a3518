use serde_json::json;
fn main() {
    let mode = std::env::args().nth(1).unwrap_or("int".into());
    let path = std::env::args().nth(2);
    let dir = tempfile::tempdir().unwrap();
    for (relative, contents) in cordon_policy::reference_policy_files() {
        let p = dir.path().join(relative);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
    }
    if let Some(path) = path {
        std::fs::copy(path, dir.path().join("cordon/outbound.rego")).unwrap();
    }
    let policy = cordon_policy::Policy::load(dir.path()).unwrap();
    eprintln!(
        "engine {} {:?}",
        policy.engine_name(),
        policy.interpreter_reason()
    );
    let mut inputs = vec![];
    let inds: Vec<serde_json::Value> = include_str!("../tests/data/indicators.jsonl")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"] = json!("x");
            v["publisher"] = json!("GH/customs");
            v["originator"] = json!("GH");
            v
        })
        .collect();
    for ind in &inds {
        for c in ["subscribe", "federation", "circle"] {
            for rid in ["SS", "NG", "CI", "ECOWAS", "GH/customs", "NG/customs"] {
                let m = rid.split('/').next().unwrap();
                let mut r = policy.recipient_data(rid).cloned().unwrap_or_default();
                r.insert("id".into(), json!(rid));
                r.insert("member".into(), json!(m));
                let k = if rid.contains('/') {
                    "agency"
                } else {
                    r.get("kind").and_then(|k| k.as_str()).unwrap_or("member")
                }
                .to_string();
                r.insert("kind".into(), json!(k));
                inputs.push(json!({"indicator": ind, "recipient": r, "context": {"gateway":"GH","channel":c,"now":"2026-11-15T12:00:00Z"}}));
            }
        }
    }
    let engine = match mode.as_str() {
        "rvm" => cordon_policy::EngineKind::Rvm,
        _ => cordon_policy::EngineKind::Interpreter,
    };
    if mode == "verify" {
        let v = policy.verify_engine(&inputs);
        for m in v.mismatches.iter().take(3) {
            println!("{}\n  int {:?}\n  rvm {:?}", m.input, m.interpreter, m.rvm);
        }
        println!("compared {} mismatches {}", v.compared, v.mismatches.len());
        return;
    }
    let t = std::time::Instant::now();
    let mut n = 0;
    if mode == "cached" {
        while t.elapsed().as_secs_f64() < 5.0 {
            for i in &inputs {
                std::hint::black_box(policy.decide(i));
                n += 1;
            }
        }
        println!("{:?}", policy.cache_stats());
    } else {
        while t.elapsed().as_secs_f64() < 5.0 {
            for i in &inputs {
                std::hint::black_box(policy.decide_with(engine, i));
                n += 1;
            }
        }
    }
    println!(
        "{mode}: {:.3} us/decision",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
