//! The reference policy that `cordon init` installs in a new member's policy directory.

/// The reference policy's files as `(relative path, contents)`: the outbound (sharing) rules and
/// the risk rules of screening, their tests, and sample data. The gateway writes them into a new policy directory; `Policy::load_dir` on
/// that directory gives the reference policy.
pub fn reference_policy_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "cordon/outbound.rego",
            include_str!("../reference/cordon/outbound.rego"),
        ),
        (
            "cordon/outbound_test.rego",
            include_str!("../reference/cordon/outbound_test.rego"),
        ),
        (
            "cordon/risk.rego",
            include_str!("../reference/cordon/risk.rego"),
        ),
        (
            "cordon/risk_test.rego",
            include_str!("../reference/cordon/risk_test.rego"),
        ),
        ("data.json", include_str!("../reference/data.json")),
    ]
}
