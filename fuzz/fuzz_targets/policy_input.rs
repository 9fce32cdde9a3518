//! The policy input builder and both engines on the reference policy: any indicator JSON and
//! recipient name gives a decision, never a panic, and a failure is a deny.
#![no_main]

use std::sync::OnceLock;

use cordon_policy::{Channel, InputContext, Policy, write_reference_policy};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<(tempfile::TempDir, Policy)> = OnceLock::new();
    &POLICY
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temporary directory");
            write_reference_policy(dir.path()).expect("reference policy written");
            let policy = Policy::load(dir.path()).expect("the reference policy loads");
            (dir, policy)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    // The first line names the recipient, the rest is the indicator's JSON.
    let text = String::from_utf8_lossy(data);
    let (recipient, indicator) = text.split_once('\n').unwrap_or(("NG", &text));
    let Ok(indicator) = serde_json::from_str::<serde_json::Value>(indicator) else {
        return;
    };
    let policy = policy();
    for channel in Channel::ALL {
        let context = InputContext {
            gateway: "GH",
            channel,
            now: "2026-12-01T00:00:00Z",
        };
        let input = policy.decision_input(indicator.clone(), recipient, context);
        let decision = policy.decide(&input);
        if decision.error.is_some() {
            assert!(!decision.allow, "a failure must deny: {decision:?}");
        }
    }
});
