//! Names of the indicator kinds: the JSON names of the `kind` oneof, used in filters, storage
//! and logs.

use cordon_proto::v1::indicator::Kind;
use cordon_proto::v1::{Indicator, IndicatorKind};

/// The kinds' JSON names, in the order of `IndicatorKind` (1 to 8).
pub const KIND_NAMES: [&str; 8] = [
    "vessel",
    "aircraft",
    "entity",
    "endUserCertificate",
    "consignment",
    "weapon",
    "account",
    "route",
];

/// The kind of an indicator as an `IndicatorKind` (`Unspecified` when no kind is set).
pub fn indicator_kind(indicator: &Indicator) -> IndicatorKind {
    match &indicator.kind {
        None => IndicatorKind::Unspecified,
        Some(Kind::Vessel(_)) => IndicatorKind::Vessel,
        Some(Kind::Aircraft(_)) => IndicatorKind::Aircraft,
        Some(Kind::Entity(_)) => IndicatorKind::Entity,
        Some(Kind::EndUserCertificate(_)) => IndicatorKind::EndUserCertificate,
        Some(Kind::Consignment(_)) => IndicatorKind::Consignment,
        Some(Kind::Weapon(_)) => IndicatorKind::Weapon,
        Some(Kind::Account(_)) => IndicatorKind::Account,
        Some(Kind::Route(_)) => IndicatorKind::Route,
    }
}

/// The JSON name of an indicator's kind (`"vessel"`, `"endUserCertificate"` …), `None` when no
/// kind is set.
pub fn kind_name(indicator: &Indicator) -> Option<&'static str> {
    kind_name_of(indicator_kind(indicator))
}

/// The JSON name of an `IndicatorKind`, `None` for `Unspecified`.
pub fn kind_name_of(kind: IndicatorKind) -> Option<&'static str> {
    let number = kind as usize;
    (1..=KIND_NAMES.len())
        .contains(&number)
        .then(|| KIND_NAMES[number - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names must be the keys of the oneof in the proto3 JSON form: parse `{"<name>": {}}`
    /// and ask which kind came out.
    #[test]
    fn names_are_the_json_oneof_keys() {
        for name in KIND_NAMES {
            let indicator: Indicator = serde_json::from_str(&format!(r#"{{"{name}": {{}}}}"#))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(kind_name(&indicator), Some(name));
        }
    }

    #[test]
    fn names_of_indicator_kinds() {
        let cases = [
            (IndicatorKind::Unspecified, None),
            (IndicatorKind::Vessel, Some("vessel")),
            (IndicatorKind::Aircraft, Some("aircraft")),
            (IndicatorKind::Entity, Some("entity")),
            (
                IndicatorKind::EndUserCertificate,
                Some("endUserCertificate"),
            ),
            (IndicatorKind::Consignment, Some("consignment")),
            (IndicatorKind::Weapon, Some("weapon")),
            (IndicatorKind::Account, Some("account")),
            (IndicatorKind::Route, Some("route")),
        ];
        for (kind, expected) in cases {
            assert_eq!(kind_name_of(kind), expected, "{kind:?}");
        }
    }

    #[test]
    fn no_kind_has_no_name() {
        assert_eq!(kind_name(&Indicator::default()), None);
        assert_eq!(
            indicator_kind(&Indicator::default()),
            IndicatorKind::Unspecified
        );
    }
}
