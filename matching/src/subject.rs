//! What a record offers to match on (its identifiers and names, each with the field it came
//! from), and the explained comparison of two of them.

use crate::identifier::{IdKind, Normalised, normalise};
use crate::name::{NameClass, NameComparator, NormalisedName, normalise_name};

/// One identifier as written, at `field` (`transport.containers[0]`, `consignment.containerNumber`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub kind: IdKind,
    pub value: String,
    /// What the identifier is only unique within: the issuing country of an end-user
    /// certificate, the manufacturer of a weapon. Two identifiers whose qualifiers are both
    /// given and differ do not match.
    pub qualifier: Option<String>,
    pub field: String,
}

/// One name as written, at `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub class: NameClass,
    pub value: String,
    pub field: String,
}

/// Everything a declaration, an indicator or a watchlist entry offers to match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub identifiers: Vec<Identifier>,
    pub names: Vec<Name>,
}

impl Subject {
    /// Adds an identifier unless `value` is empty.
    pub fn identifier(&mut self, kind: IdKind, value: &str, field: impl Into<String>) {
        self.qualified(kind, value, None, field);
    }

    /// Adds an identifier with its qualifier unless `value` is empty.
    pub fn qualified(
        &mut self,
        kind: IdKind,
        value: &str,
        qualifier: Option<&str>,
        field: impl Into<String>,
    ) {
        if value.trim().is_empty() {
            return;
        }
        self.identifiers.push(Identifier {
            kind,
            value: value.to_string(),
            qualifier: qualifier
                .filter(|qualifier| !qualifier.trim().is_empty())
                .map(str::to_string),
            field: field.into(),
        });
    }

    /// Adds a name unless `value` is empty.
    pub fn name(&mut self, class: NameClass, value: &str, field: impl Into<String>) {
        if value.trim().is_empty() {
            return;
        }
        self.names.push(Name {
            class,
            value: value.to_string(),
            field: field.into(),
        });
    }

    /// Normalises every identifier and name once, for comparing and indexing. Those that do
    /// not normalise (no form left) are left out.
    pub fn prepare(&self) -> Prepared {
        let identifiers =
            self.identifiers
                .iter()
                .filter_map(|identifier| {
                    let normalised = normalise(identifier.kind, &identifier.value)?;
                    let qualifier = identifier.qualifier.as_deref().and_then(|qualifier| {
                        match identifier.kind {
                            IdKind::WeaponSerial => {
                                normalise_name(NameClass::Party, qualifier).map(|name| name.text)
                            }
                            _ => Some(qualifier.trim().to_uppercase()),
                        }
                    });
                    Some(PreparedIdentifier {
                        hash: key_hash(identifier.kind, &normalised.key),
                        kind: identifier.kind,
                        written: identifier.value.trim().to_string(),
                        field: identifier.field.clone(),
                        normalised,
                        qualifier,
                    })
                })
                .collect();
        let names = self
            .names
            .iter()
            .filter_map(|name| {
                let normalised = normalise_name(name.class, &name.value)?;
                Some(PreparedName {
                    class: name.class,
                    written: name.value.trim().to_string(),
                    field: name.field.clone(),
                    normalised,
                })
            })
            .collect();
        Prepared { identifiers, names }
    }
}

/// The index key of an identifier: its kind and compared form, hashed.
pub(crate) fn key_hash(kind: IdKind, key: &str) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::quality::FixedState::with_seed(0x636f_7264_6f6e).build_hasher();
    (kind as u8).hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, Clone)]
pub struct PreparedIdentifier {
    pub kind: IdKind,
    pub written: String,
    pub field: String,
    pub normalised: Normalised,
    pub qualifier: Option<String>,
    pub(crate) hash: u64,
}

#[derive(Debug, Clone)]
pub struct PreparedName {
    pub class: NameClass,
    pub written: String,
    pub field: String,
    pub normalised: NormalisedName,
}

/// A [`Subject`] normalised.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub identifiers: Vec<PreparedIdentifier>,
    pub names: Vec<PreparedName>,
}

/// How two values matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Written the same way on both sides.
    Exact,
    /// The same once brought to one form.
    Normalised,
    /// Similar names, above the threshold.
    Fuzzy,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::Normalised => "normalised",
            Method::Fuzzy => "fuzzy",
        }
    }
}

/// One explained match between a field of the query and a field of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch {
    /// What matched, as a feature name: an identifier kind (`imo`, `container`) or a name
    /// class (`party_name`, `vessel_name`).
    pub feature: &'static str,
    pub query_field: String,
    pub record_field: String,
    /// The matched value in its one form (the query's, for names).
    pub value: String,
    pub method: Method,
    /// 1 for identifiers and names equal in one form; the names' similarity otherwise.
    pub similarity: f64,
}

/// The countries of a route: where it starts, passes and ends.
fn is_route_country(kind: IdKind) -> bool {
    matches!(
        kind,
        IdKind::OriginCountry | IdKind::TransitCountry | IdKind::DestinationCountry
    )
}

/// Of how many kinds (origin, transit, destination) the route countries among `kinds` are.
fn route_country_kinds(kinds: impl Iterator<Item = IdKind>) -> usize {
    let mut seen: Vec<&'static str> = kinds
        .filter(|kind| is_route_country(*kind))
        .map(IdKind::name)
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// Every match between `query` and `record`: identifiers of the same kind whose compared forms
/// are equal (and whose qualifiers, when both are given, agree), and names of the same class
/// whose similarity is at least `name_threshold`.
///
/// Countries alone say little about a route: route countries match only when they agree on
/// two kinds of origin, transit and destination (or on the one kind a side names, if it names
/// only one), or when a port matches too. A declaration leaving from the country a route
/// starts in does not follow that route.
pub fn compare(query: &Prepared, record: &Prepared, name_threshold: f64) -> Vec<FieldMatch> {
    let mut found = identifier_matches(query, record, name_threshold);
    let port = found.iter().any(|(kind, _)| *kind == IdKind::RoutePort);
    let countries = route_country_kinds(found.iter().map(|(kind, _)| *kind));
    let needed = route_country_kinds(query.identifiers.iter().map(|held| held.kind))
        .min(route_country_kinds(
            record.identifiers.iter().map(|held| held.kind),
        ))
        .min(2);
    if !port && countries < needed {
        found.retain(|(kind, _)| !is_route_country(*kind));
    }
    let mut matches: Vec<FieldMatch> = found.into_iter().map(|(_, found)| found).collect();
    name_matches(query, record, name_threshold, &mut matches);
    matches
}

fn identifier_matches(
    query: &Prepared,
    record: &Prepared,
    name_threshold: f64,
) -> Vec<(IdKind, FieldMatch)> {
    let mut matches = Vec::new();
    for asked in &query.identifiers {
        for held in &record.identifiers {
            if asked.kind != held.kind || asked.normalised.key != held.normalised.key {
                continue;
            }
            if !qualifiers_agree(asked, held, name_threshold) {
                continue;
            }
            matches.push((
                asked.kind,
                FieldMatch {
                    feature: asked.kind.name(),
                    query_field: asked.field.clone(),
                    record_field: held.field.clone(),
                    value: asked.normalised.value.clone(),
                    method: if asked.written == held.written {
                        Method::Exact
                    } else {
                        Method::Normalised
                    },
                    similarity: 1.0,
                },
            ));
        }
    }
    matches
}

fn name_matches(
    query: &Prepared,
    record: &Prepared,
    name_threshold: f64,
    matches: &mut Vec<FieldMatch>,
) {
    for asked in &query.names {
        // Prepared only for a record with a name of the same class: most have none.
        let mut comparator = None;
        for held in &record.names {
            if asked.class != held.class {
                continue;
            }
            let similarity = comparator
                .get_or_insert_with(|| NameComparator::new(&asked.normalised))
                .similarity(&held.normalised);
            if similarity < name_threshold {
                continue;
            }
            let method = if asked.written == held.written {
                Method::Exact
            } else if asked.normalised.text == held.normalised.text {
                Method::Normalised
            } else {
                Method::Fuzzy
            };
            matches.push(FieldMatch {
                feature: asked.class.name(),
                query_field: asked.field.clone(),
                record_field: held.field.clone(),
                value: asked.normalised.text.clone(),
                method,
                similarity,
            });
        }
    }
}

fn qualifiers_agree(
    asked: &PreparedIdentifier,
    held: &PreparedIdentifier,
    name_threshold: f64,
) -> bool {
    let (Some(a), Some(b)) = (&asked.qualifier, &held.qualifier) else {
        return true;
    };
    match asked.kind {
        IdKind::WeaponSerial => {
            let (Some(a), Some(b)) = (
                normalise_name(NameClass::Party, a),
                normalise_name(NameClass::Party, b),
            ) else {
                return true;
            };
            crate::name::similarity(&a, &b) >= name_threshold
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(identifiers: &[(IdKind, &str)]) -> Prepared {
        let mut subject = Subject::default();
        for (kind, value) in identifiers {
            subject.identifier(*kind, value, kind.name());
        }
        subject.prepare()
    }

    fn features(query: &Prepared, record: &Prepared) -> Vec<&'static str> {
        let mut features: Vec<&'static str> = compare(query, record, 0.9)
            .into_iter()
            .map(|found| found.feature)
            .collect();
        features.sort_unstable();
        features
    }

    #[test]
    fn a_route_matches_on_two_of_its_countries_or_a_port() {
        use IdKind::*;
        let indicator = route(&[
            (OriginCountry, "TR"),
            (TransitCountry, "TG"),
            (DestinationCountry, "BF"),
            (RoutePort, "TGLFW"),
        ]);
        // Leaving from where the route starts is not following it.
        let same_origin = route(&[(OriginCountry, "TR"), (DestinationCountry, "GH")]);
        assert!(features(&same_origin, &indicator).is_empty());
        assert!(features(&indicator, &same_origin).is_empty());
        // Origin and destination: the route.
        let followed = route(&[(OriginCountry, "TR"), (DestinationCountry, "BF")]);
        assert_eq!(
            features(&followed, &indicator),
            ["destination_country", "origin_country"]
        );
        // Through its port: enough on its own.
        let through = route(&[(RoutePort, "TGLFW"), (DestinationCountry, "GH")]);
        assert_eq!(features(&through, &indicator), ["route_port"]);
        // A route that names only its destination matches on it.
        let embargoed = route(&[(DestinationCountry, "BF")]);
        assert_eq!(features(&followed, &embargoed), ["destination_country"]);
    }

    #[test]
    fn identifiers_and_names_match_with_their_method() {
        let mut declaration = Subject::default();
        declaration.identifier(IdKind::Imo, "IMO 9234563", "transport.vessel.imo");
        declaration.identifier(IdKind::Container, "MSCU1234566", "transport.containers[0]");
        declaration.name(
            NameClass::Party,
            "EXAMPLE TRADING F.Z.E.",
            "parties[1].name",
        );
        declaration.name(
            NameClass::Vessel,
            "M/V Example Star",
            "transport.vessel.name",
        );
        let mut indicator = Subject::default();
        indicator.identifier(IdKind::Imo, "9234563", "vessel.imo");
        indicator.identifier(
            IdKind::Container,
            "MSCU1234566",
            "consignment.containerNumber",
        );
        indicator.name(NameClass::Party, "Example Trading FZE", "entity.name");
        indicator.name(NameClass::Party, "Example Star", "account.holder");
        let matches = compare(&declaration.prepare(), &indicator.prepare(), 0.9);
        let summary: Vec<(&str, &str, &str, &str)> = matches
            .iter()
            .map(|found| {
                (
                    found.feature,
                    found.query_field.as_str(),
                    found.record_field.as_str(),
                    found.method.name(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("imo", "transport.vessel.imo", "vessel.imo", "normalised"),
                (
                    "container",
                    "transport.containers[0]",
                    "consignment.containerNumber",
                    "exact"
                ),
                ("party_name", "parties[1].name", "entity.name", "normalised"),
            ],
            "a vessel's name never matches a party's"
        );
        assert_eq!(matches[0].value, "9234563");
    }

    #[test]
    fn qualifiers_must_agree_when_both_are_given() {
        let euc = |country: Option<&str>| {
            let mut subject = Subject::default();
            subject.qualified(IdKind::EucNumber, "EUC/2026/7731", country, "euc.number");
            subject.prepare()
        };
        assert_eq!(compare(&euc(Some("SN")), &euc(Some("sn")), 0.9).len(), 1);
        assert_eq!(compare(&euc(Some("SN")), &euc(Some("ML")), 0.9).len(), 0);
        assert_eq!(compare(&euc(None), &euc(Some("ML")), 0.9).len(), 1);
        let serial = |make: &str| {
            let mut subject = Subject::default();
            subject.qualified(IdKind::WeaponSerial, "AB-1234", Some(make), "weapon.serial");
            subject.prepare()
        };
        assert_eq!(
            compare(
                &serial("Example Arms Works"),
                &serial("EXAMPLE ARMS WORKS LTD"),
                0.9
            )
            .len(),
            1
        );
        assert_eq!(
            compare(&serial("Example Arms Works"), &serial("Other Guns"), 0.9).len(),
            0
        );
    }

    #[test]
    fn fuzzy_names_below_the_threshold_do_not_match() {
        let party = |name: &str| {
            let mut subject = Subject::default();
            subject.name(NameClass::Party, name, "name");
            subject.prepare()
        };
        let found = compare(&party("Exmple Trading"), &party("Example Trading FZE"), 0.9);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].method, Method::Fuzzy);
        assert!(found[0].similarity > 0.9 && found[0].similarity < 1.0);
        assert!(
            compare(
                &party("Exmple Trading"),
                &party("Example Trading FZE"),
                0.99
            )
            .is_empty()
        );
        assert!(compare(&party("Accra Hospital"), &party("Example Trading"), 0.5).is_empty());
    }
}
