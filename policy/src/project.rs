//! Serializing straight into a policy's input, keeping only what the policy reads.
//!
//! The gateway hands the policy an indicator as proto3 JSON. Most of an indicator is never
//! looked at by a sharing policy (the reference policy reads its label, kind and source, not
//! its signature's field commitments, which are most of its bytes), and everything outside
//! the read paths ([`ReadPaths`]) is dropped by the cache key and by the engines' input
//! anyway. [`to_value_projected`] is `serde_json::to_value` that skips, at every struct whose
//! node lists the fields the policy reads, the fields it does not: the result holds exactly
//! what the full JSON holds at the read paths, built without the rest.
//!
//! Anything but a struct at such a node (a string, a list, a map) is serialized whole, as
//! the cache key and the engines' projection take it whole.

use serde::Serialize;
use serde::ser::{self, Serializer};
use serde_json::{Map, Value};

use crate::analysis::ReadPaths;

use serde_json::value::Serializer as Json;
type JsonError = serde_json::Error;

/// `value` as JSON, with only the fields `reads` names at every struct it does not read whole.
pub(crate) fn to_value_projected<T: Serialize + ?Sized>(
    value: &T,
    reads: &ReadPaths,
) -> Result<Value, JsonError> {
    if reads.whole {
        return serde_json::to_value(value);
    }
    value.serialize(Projecting(reads))
}

/// Serializes into a [`Value`] projected onto the read paths below one node.
struct Projecting<'a>(&'a ReadPaths);

/// A struct being serialized: whole (its node is read whole), or only the fields read.
enum ProjectedStruct<'a> {
    Whole(<Json as Serializer>::SerializeStruct),
    Fields {
        node: &'a ReadPaths,
        fields: Map<String, Value>,
    },
}

impl ser::SerializeStruct for ProjectedStruct<'_> {
    type Ok = Value;
    type Error = JsonError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        match self {
            ProjectedStruct::Whole(whole) => whole.serialize_field(key, value),
            ProjectedStruct::Fields { node, fields } => {
                if let Some(child) = node.children.get(key) {
                    fields.insert(key.to_owned(), to_value_projected(value, child)?);
                }
                Ok(())
            }
        }
    }

    fn end(self) -> Result<Value, JsonError> {
        match self {
            ProjectedStruct::Whole(whole) => ser::SerializeStruct::end(whole),
            ProjectedStruct::Fields { fields, .. } => Ok(Value::Object(fields)),
        }
    }
}

/// Everything but structs (and the options and newtypes around them) is serialized whole.
macro_rules! whole {
    ($($method:ident($($arg:ident: $type:ty),*);)*) => {
        $(
            fn $method(self, $($arg: $type),*) -> Result<Value, JsonError> {
                Json.$method($($arg),*)
            }
        )*
    };
}

impl<'a> Serializer for Projecting<'a> {
    type Ok = Value;
    type Error = JsonError;
    type SerializeSeq = <Json as Serializer>::SerializeSeq;
    type SerializeTuple = <Json as Serializer>::SerializeTuple;
    type SerializeTupleStruct = <Json as Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = <Json as Serializer>::SerializeTupleVariant;
    type SerializeMap = <Json as Serializer>::SerializeMap;
    type SerializeStruct = ProjectedStruct<'a>;
    type SerializeStructVariant = <Json as Serializer>::SerializeStructVariant;

    whole! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, JsonError> {
        Json.serialize_newtype_variant(name, index, variant, value)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, JsonError> {
        Json.serialize_seq(len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, JsonError> {
        Json.serialize_tuple(len)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, JsonError> {
        Json.serialize_tuple_struct(name, len)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, JsonError> {
        Json.serialize_tuple_variant(name, index, variant, len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, JsonError> {
        Json.serialize_map(len)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, JsonError> {
        if self.0.whole {
            return Ok(ProjectedStruct::Whole(Json.serialize_struct(name, len)?));
        }
        Ok(ProjectedStruct::Fields {
            node: self.0,
            fields: Map::new(),
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, JsonError> {
        Json.serialize_struct_variant(name, index, variant, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Vessel {
        imo: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        mmsi: Option<String>,
    }

    #[derive(Serialize)]
    struct Signature {
        key: String,
        fields: Vec<String>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Indicator {
        tlp: &'static str,
        releasable_to: Vec<&'static str>,
        vessel: Option<Vessel>,
        signature: Signature,
        tags: std::collections::BTreeMap<String, String>,
        wrapped: Wrapper,
    }

    #[derive(Serialize)]
    struct Wrapper(Vessel);

    fn sample() -> Indicator {
        Indicator {
            tlp: "TLP_AMBER",
            releasable_to: vec!["NG", "SN"],
            vessel: Some(Vessel {
                imo: "9234563".into(),
                mmsi: None,
            }),
            signature: Signature {
                key: "GH:00".into(),
                fields: vec!["c1".into(), "c2".into()],
            },
            tags: [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
            ]
            .into(),
            wrapped: Wrapper(Vessel {
                imo: "1".into(),
                mmsi: Some("2".into()),
            }),
        }
    }

    fn reads(paths: &[&[&str]]) -> ReadPaths {
        let mut reads = ReadPaths::default();
        for path in paths {
            let path: Vec<String> = path.iter().map(|part| (*part).to_owned()).collect();
            reads.insert(&path);
        }
        reads
    }

    /// What the cache key and the engines keep of `value` under `reads`.
    fn kept(value: &Value, reads: &ReadPaths) -> Value {
        match value {
            Value::Object(object) if !reads.whole => Value::Object(
                reads
                    .children
                    .iter()
                    .filter_map(|(name, child)| {
                        object
                            .get(name)
                            .map(|item| (name.clone(), kept(item, child)))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    #[test]
    fn only_the_read_fields_are_built_and_they_equal_the_full_json() {
        // (paths, whether nothing but what is read is built: a map is built whole)
        let cases: &[(&[&[&str]], bool)] = &[
            (&[&["tlp"]], true),
            (&[&["tlp"], &["vessel"]], true),
            (
                &[&["vessel", "mmsi"], &["vessel", "imo"], &["releasableTo"]],
                true,
            ),
            (&[&["signature", "key"]], true),
            // A field looked up inside a string or a list: all of it counts.
            (&[&["tlp", "x"], &["releasableTo", "0"]], true),
            (&[&["tags", "a"], &["vessel", "imo"]], false),
            (&[&["wrapped", "mmsi"]], true),
            (&[&["absent"], &["vessel", "absent"]], true),
            (&[], true),
        ];
        let full = serde_json::to_value(sample()).unwrap();
        for (paths, exact) in cases {
            let reads = reads(paths);
            let projected = to_value_projected(&sample(), &reads).unwrap();
            assert_eq!(kept(&projected, &reads), kept(&full, &reads), "{paths:?}");
            if *exact {
                assert_eq!(projected, kept(&full, &reads), "{paths:?}");
            }
        }
        assert_eq!(
            to_value_projected(&sample(), &reads(&[&["vessel", "imo"], &["tags", "a"]])).unwrap(),
            json!({"vessel": {"imo": "9234563"}, "tags": {"a": "1", "b": "2"}})
        );
    }

    #[test]
    fn a_whole_read_is_the_full_json() {
        let mut whole = ReadPaths::default();
        whole.insert(&[]);
        assert_eq!(
            to_value_projected(&sample(), &whole).unwrap(),
            serde_json::to_value(sample()).unwrap()
        );
        assert_eq!(
            to_value_projected(&sample(), &reads(&[&["signature"]])).unwrap(),
            json!({"signature": {"key": "GH:00", "fields": ["c1", "c2"]}})
        );
    }
}
