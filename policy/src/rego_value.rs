//! Any `Serialize` value straight into a [`regorus::Value`], as `serde_json::to_value` followed
//! by the policy's JSON conversion would give it, without building the JSON tree in between
//! (for inputs made per screened declaration, that tree and its conversion were about 7% of
//! the gateway's CPU).
//!
//! The result is the one `serde_json::to_value` gives: a non-finite float is `null`, bytes are
//! an array of numbers, unit values are `null`, an enum variant with data is a one-key object,
//! and map keys must be strings, integers, booleans or characters (written as strings).

use std::collections::BTreeMap;

use regorus::Value;
use serde::ser::{self, Serialize};

/// `value` as a Rego value, or why it cannot be one (a map key that is not a string, a
/// serializer's own error).
pub fn to_rego<T: Serialize + ?Sized>(value: &T) -> Result<Value, String> {
    value.serialize(RegoSerializer).map_err(|error| error.0)
}

/// A text value.
pub fn text(value: &str) -> Value {
    Value::String(value.into())
}

/// An object from its string keys and values.
pub fn object<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(key, value)| (text(key), value))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

fn number(value: f64) -> Value {
    if value.is_finite() {
        Value::from(value)
    } else {
        Value::Null
    }
}

struct RegoSerializer;

impl ser::Serializer for RegoSerializer {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Sequence;
    type SerializeTuple = Sequence;
    type SerializeTupleStruct = Sequence;
    type SerializeTupleVariant = Variant<Sequence>;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Variant<Map>;

    fn serialize_bool(self, value: bool) -> Result<Value, Error> {
        Ok(Value::Bool(value))
    }
    fn serialize_i8(self, value: i8) -> Result<Value, Error> {
        self.serialize_i64(i64::from(value))
    }
    fn serialize_i16(self, value: i16) -> Result<Value, Error> {
        self.serialize_i64(i64::from(value))
    }
    fn serialize_i32(self, value: i32) -> Result<Value, Error> {
        self.serialize_i64(i64::from(value))
    }
    fn serialize_i64(self, value: i64) -> Result<Value, Error> {
        // As the JSON path: a non-negative integer is an unsigned one.
        Ok(match u64::try_from(value) {
            Ok(unsigned) => Value::from(unsigned),
            Err(_) => Value::from(value),
        })
    }
    fn serialize_u8(self, value: u8) -> Result<Value, Error> {
        self.serialize_u64(u64::from(value))
    }
    fn serialize_u16(self, value: u16) -> Result<Value, Error> {
        self.serialize_u64(u64::from(value))
    }
    fn serialize_u32(self, value: u32) -> Result<Value, Error> {
        self.serialize_u64(u64::from(value))
    }
    fn serialize_u64(self, value: u64) -> Result<Value, Error> {
        Ok(Value::from(value))
    }
    fn serialize_f32(self, value: f32) -> Result<Value, Error> {
        Ok(number(f64::from(value)))
    }
    fn serialize_f64(self, value: f64) -> Result<Value, Error> {
        Ok(number(value))
    }
    fn serialize_char(self, value: char) -> Result<Value, Error> {
        Ok(text(value.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, value: &str) -> Result<Value, Error> {
        Ok(text(value))
    }
    fn serialize_bytes(self, value: &[u8]) -> Result<Value, Error> {
        Ok(Value::from(
            value
                .iter()
                .map(|byte| Value::from(u64::from(*byte)))
                .collect::<Vec<_>>(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(text(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        Ok(object([(variant, value.serialize(self)?)]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Sequence, Error> {
        Ok(Sequence(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Sequence, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Sequence, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Sequence>, Error> {
        Ok(Variant {
            variant,
            inner: Sequence(Vec::with_capacity(len)),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map, Error> {
        Ok(Map::default())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Map, Error> {
        Ok(Map::default())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<Map>, Error> {
        Ok(Variant {
            variant,
            inner: Map::default(),
        })
    }
}

struct Sequence(Vec<Value>);

impl ser::SerializeSeq for Sequence {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.0.push(value.serialize(RegoSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.0))
    }
}

impl ser::SerializeTuple for Sequence {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Sequence {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

#[derive(Default)]
struct Map {
    entries: BTreeMap<Value, Value>,
    key: Option<Value>,
}

impl ser::SerializeMap for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, name: &T) -> Result<(), Error> {
        self.key = Some(key(name)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value was given before its key".into()))?;
        self.entries.insert(key, value.serialize(RegoSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.entries))
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.entries
            .insert(text(key), value.serialize(RegoSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeMap::end(self)
    }
}

struct Variant<T> {
    variant: &'static str,
    inner: T,
}

impl ser::SerializeTupleVariant for Variant<Sequence> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(&mut self.inner, value)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(object([(
            self.variant,
            ser::SerializeSeq::end(self.inner)?,
        )]))
    }
}

impl ser::SerializeStructVariant for Variant<Map> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(object([(
            self.variant,
            ser::SerializeMap::end(self.inner)?,
        )]))
    }
}

/// A map key as `serde_json` writes it: a string, or a boolean or an integer (or what stands
/// for one: a unit variant, a newtype) written as a string.
fn key<T: Serialize + ?Sized>(key: &T) -> Result<Value, Error> {
    let value = key.serialize(RegoSerializer)?;
    match &value {
        Value::String(_) => Ok(value),
        Value::Bool(flag) => Ok(text(if *flag { "true" } else { "false" })),
        Value::Number(_) => {
            if let Ok(unsigned) = value.as_u64() {
                Ok(text(&unsigned.to_string()))
            } else if let Ok(signed) = value.as_i64() {
                Ok(text(&signed.to_string()))
            } else {
                Err(Error("a map key must be a string".into()))
            }
        }
        _ => Err(Error("a map key must be a string".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::to_rego_value;
    use serde::Serialize;
    use serde_json::json;

    fn through_json<T: Serialize>(value: &T) -> Value {
        to_rego_value(&serde_json::to_value(value).expect("to JSON")).expect("to Rego")
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { width: f64, tags: Vec<String> },
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        name: String,
        count: u32,
        delta: i64,
        negative: i64,
        ratio: f64,
        not_a_number: f64,
        flag: bool,
        missing: Option<String>,
        present: Option<u16>,
        letter: char,
        bytes: serde_bytes_like::Bytes,
        shapes: Vec<Shape>,
        by_number: BTreeMap<u32, String>,
        by_flag: BTreeMap<bool, i8>,
        nested: serde_json::Value,
        pair: (u8, String),
        unit: (),
    }

    mod serde_bytes_like {
        /// Serialized with `serialize_bytes`.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn a_value_serialized_directly_is_the_one_the_json_path_gives() {
        let sample = Sample {
            name: "Example Trading FZE".into(),
            count: 7,
            delta: 42,
            negative: -3,
            ratio: 0.93,
            not_a_number: f64::NAN,
            flag: true,
            missing: None,
            present: Some(5),
            letter: 'é',
            bytes: serde_bytes_like::Bytes(vec![0, 1, 255]),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(3),
                Shape::Tuple(-1, "t".into()),
                Shape::Struct {
                    width: 1.5,
                    tags: vec!["a".into(), "b".into()],
                },
            ],
            by_number: BTreeMap::from([(1, "one".into()), (20, "twenty".into())]),
            by_flag: BTreeMap::from([(false, -1), (true, 1)]),
            nested: json!({"a": [1, -2, 3.5, null, {"b": "c"}], "d": u64::MAX}),
            pair: (9, "nine".into()),
            unit: (),
        };
        let direct = to_rego(&sample).expect("serializes");
        assert_eq!(direct, through_json(&sample));
        // And it is not trivially so: the fields are there.
        assert_eq!(direct["name"], text("Example Trading FZE"));
        assert_eq!(direct["notANumber"], Value::Null);
        assert_eq!(direct["shapes"][3]["struct"]["width"], Value::from(1.5));
    }

    #[test]
    fn a_map_key_that_is_not_text_is_refused_by_name() {
        let by_float = vec![(1.5f64, "x")];
        struct FloatKeys(Vec<(f64, &'static str)>);
        impl Serialize for FloatKeys {
            fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (key, value) in &self.0 {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
        let error = to_rego(&FloatKeys(by_float)).expect_err("refused");
        assert!(error.contains("map key"), "{error}");
    }
}
