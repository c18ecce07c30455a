//! Strict JSON input: structs are read from JSON objects only. serde's derived `Deserialize`
//! also builds a struct from an array of its fields in order, so `[["u1"],"t"]` would be a
//! notify request and `[]` a preferences document resetting every field; no client means that.
//! Request bodies go through [`Object`] (the HTTP extractor `ApiJson`, ingestion); structs nested
//! in them use the `deserialize_with` helpers below.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A `T` that deserializes from a JSON object only, never from an array.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// `#[serde(deserialize_with = "crate::json::object")]`: a struct field given as an object.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Object::deserialize(deserializer).map(|Object(value)| value)
}

/// `#[serde(deserialize_with = "crate::json::objects")]`: a list whose items are objects.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Object(item)| item).collect())
}

/// `#[serde(deserialize_with = "crate::json::object_values")]`: a map whose values are objects.
pub fn object_values<'de, D, T>(deserializer: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let map = BTreeMap::<String, Object<T>>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(k, Object(v))| (k, v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pair {
        a: u8,
        b: u8,
    }

    #[test]
    fn a_struct_is_read_from_an_object_and_never_from_an_array() {
        let Object(pair) = serde_json::from_str::<Object<Pair>>(r#"{"a":1,"b":2}"#).unwrap();
        assert_eq!(pair, Pair { a: 1, b: 2 });
        assert!(
            serde_json::from_str::<Pair>("[1,2]").is_ok(),
            "serde's default"
        );
        let e = serde_json::from_str::<Object<Pair>>("[1,2]").unwrap_err();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
    }
}
