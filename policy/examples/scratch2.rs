use serde_json::json;
fn main() {
    let mk = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        for (relative, contents) in cordon_policy::reference_policy_files() {
            let p = dir.path().join(relative);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(
                &p,
                if relative == "cordon/outbound.rego" {
                    text
                } else {
                    contents
                },
            )
            .unwrap();
        }
        let p = cordon_policy::Policy::load(dir.path()).unwrap();
        (dir, p)
    };
    let (_d1, old) = mk(&std::fs::read_to_string("/tmp/outbound.orig.rego").unwrap());
    let (_d2, new) = mk(include_str!("../reference/cordon/outbound.rego"));
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
    let mut variants = vec![];
    for ind in &inds {
        variants.push(ind.clone());
        for tlp in [
            "TLP_CLEAR",
            "TLP_GREEN",
            "TLP_AMBER",
            "TLP_AMBER_STRICT",
            "TLP_RED",
            "TLP_BOGUS",
        ] {
            let mut v = ind.clone();
            v["tlp"] = json!(tlp);
            variants.push(v.clone());
            v["releasableTo"] = json!(["NG", "GH/police"]);
            variants.push(v.clone());
            v["protection"] = json!("PROTECTION_SOURCE_PROTECTED");
            variants.push(v.clone());
            v["source"] = json!(null);
            variants.push(v);
        }
        let mut v = ind.clone();
        v.as_object_mut().unwrap().remove("tlp");
        variants.push(v);
        let mut v = ind.clone();
        v["vessel"] = json!({"name": "extra"});
        variants.push(v);
        let mut v = ind.clone();
        v["entity"] = json!(null);
        variants.push(v);
    }
    let recs = vec![
        json!({"id":"NG","kind":"member","member":"NG","country":"NG","trust":4}),
        json!({"id":"CI","kind":"member","member":"CI","country":"CI","trust":2}),
        json!({"id":"SS","kind":"member","member":"SS","country":"SS","trust":1}),
        json!({"id":"SS/customs","kind":"agency","member":"SS"}),
        json!({"id":"NG/customs","kind":"agency","member":"NG"}),
        json!({"id":"NG/police","kind":"agency","member":"NG","trust":"high"}),
        json!({"id":"GH/customs","kind":"agency","member":"GH"}),
        json!({"id":"ECOWAS","kind":"organization","member":"ECOWAS","trust":3}),
        json!({"id":"XX","kind":"martian","member":"XX"}),
        json!({"id":"YY","member":"YY","trust":5}),
        json!({"id":"CI/x","kind":"agency","member":"CI","country":null}),
    ];
    let mut inputs = vec![];
    for (i, ind) in variants.iter().enumerate() {
        for r in &recs {
            for c in ["subscribe", "circle"] {
                inputs.push(cordon_policy::DiffInput { indicator: i.to_string(), recipient: r["id"].to_string(), input: json!({"indicator": ind, "recipient": r, "context": {"gateway":"GH","channel":c,"now":"x"}}) });
            }
        }
    }
    inputs.push(cordon_policy::DiffInput {
        indicator: "none".into(),
        recipient: "none".into(),
        input: json!({}),
    });
    inputs.push(cordon_policy::DiffInput {
        indicator: "none".into(),
        recipient: "none".into(),
        input: json!({"indicator": {"tlp": "TLP_CLEAR"}}),
    });
    let report = cordon_policy::diff(&old, &new, &inputs);
    println!("{:?}", report.summary);
    for c in report.changes.iter().chain(&report.reason_changes).take(5) {
        println!("{} {} {:?} {:?}", c.indicator, c.recipient, c.old, c.new);
    }
}
