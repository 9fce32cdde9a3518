use serde_json::json;
fn main() {
    let n_ind: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    for (relative, contents) in cordon_policy::reference_policy_files() {
        let p = dir.path().join(relative);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
    }
    let policy = cordon_policy::Policy::load(dir.path()).unwrap();
    let inds: Vec<serde_json::Value> = include_str!("../tests/data/indicators.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reuse: Vec<serde_json::Value> = (0..n_ind)
        .map(|i| {
            let mut v = inds[i % inds.len()].clone();
            v["id"] = json!(i);
            v["publisher"] = json!("GH/customs");
            for k in [
                "vessel",
                "aircraft",
                "entity",
                "endUserCertificate",
                "consignment",
                "weapon",
                "account",
                "route",
            ] {
                if let Some(o) = v.get_mut(k).and_then(|o| o.as_object_mut()) {
                    o.insert("name".into(), json!(format!("s{i}")));
                }
            }
            v
        })
        .collect();
    let recs: Vec<serde_json::Value> = ["NG", "CI", "ECOWAS", "GH/customs", "NG/customs"]
        .iter()
        .map(|rid| {
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
            serde_json::Value::Object(r)
        })
        .collect();
    let batch = |first: usize| -> Vec<serde_json::Value> {
        reuse[first..(first+100).min(n_ind)].iter().flat_map(|i| recs.iter().map(move |r| json!({"indicator": i, "recipient": r, "context": {"gateway":"GH","channel":"subscribe","now":"x"}}))).collect()
    };
    for f in (0..n_ind).step_by(100) {
        for i in batch(f) {
            policy.decide(&i);
        }
    }
    let mut timed = std::time::Duration::ZERO;
    let mut n = 0;
    let shared = std::env::args().nth(2).is_some();
    while timed.as_secs_f64() < 4.0 {
        for f in (0..n_ind).step_by(100) {
            let b = batch(f);
            let t = std::time::Instant::now();
            for i in &b {
                std::hint::black_box(policy.decide(i));
            }
            let _ = shared;
            timed += t.elapsed();
            n += b.len();
        }
    }
    println!("{:?}", policy.cache_stats().entries);
    println!(
        "cached: {:.3} us/decision",
        timed.as_secs_f64() * 1e6 / n as f64
    );
}
