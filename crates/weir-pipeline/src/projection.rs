//! Decoding only what a pipeline reads.
//!
//! Most of a stateless pipeline's time was spent building `serde_json::Value`s for fields no
//! step ever looks at (a Nexmark bid's `extra`, a person's `credit_card`) and freeing them
//! again. When a spec says everything its steps read of an event before they replace it (the
//! `event.a.b` paths of its expressions, the fields of its window), a source decodes each
//! record into a value holding just those paths; the others are skipped by the parser without
//! being built. The record's text is kept beside the value (`Event::raw`), so a sink or a
//! dead letter that gets the event unchanged writes what came in.
//!
//! `yaml::Compiled::projection` decides when this is safe (see there); this module is the
//! path set and the decoder.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The paths of an event that are read: a tree of field names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// The whole value at this path is read.
    whole: bool,
    /// Fields of this object that are read (or whose presence is tested), by name.
    fields: Vec<(String, Projection)>,
}

impl Projection {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `path` is read (all of it).
    pub fn read(&mut self, path: &[impl AsRef<str>]) {
        self.node(path).whole = true;
    }

    /// Whether the field at `path` exists is tested (`has(event.a.b)`); its value is not read.
    pub fn test(&mut self, path: &[impl AsRef<str>]) {
        self.node(path);
    }

    /// Everything is read.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    fn node(&mut self, path: &[impl AsRef<str>]) -> &mut Projection {
        let mut n = self;
        for p in path {
            let p = p.as_ref();
            let i = match n.fields.iter().position(|(f, _)| f == p) {
                Some(i) => i,
                None => {
                    n.fields.push((p.to_owned(), Projection::default()));
                    n.fields.len() - 1
                }
            };
            n = &mut n.fields[i].1;
        }
        n
    }

    fn field(&self, name: &str) -> Option<&Projection> {
        self.fields.iter().find(|(f, _)| f == name).map(|(_, p)| p)
    }

    /// Decodes one JSON text into the value the projection keeps: every read path as it is in
    /// the text, a tested-only field as null, nothing else. Malformed text is an error as it
    /// is for `serde_json::from_str`, whatever the projection.
    pub fn decode(&self, text: &str) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let v = Seed(self).deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

struct Seed<'p>(&'p Projection);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            serde::Deserialize::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Builds what `serde_json::Value` would for anything but an object; an object keeps the
/// projection's fields.
impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.field(&key) {
                Some(p) if !p.whole && p.fields.is_empty() => {
                    map.next_value::<IgnoredAny>()?;
                    out.insert(key.into_owned(), Value::Null);
                }
                Some(p) => {
                    let v = map.next_value_seed(Seed(p))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_read_paths_and_tested_fields_only() {
        let mut p = Projection::new();
        p.read(&["Bid", "price"]);
        p.read(&["Bid", "date_time"]);
        p.test(&["Auction"]);
        p.read(&["list"]);
        let text = r#"{"Bid": {"price": 10, "date_time": -5, "extra": "long", "n": {"x": 1}}, "Auction": {"id": 1},
            "list": [1, {"a": 2}], "other": [1, 2, {"z": "\u00e9"}], "dup": 1, "dup": 2}"#;
        assert_eq!(
            p.decode(text).expect("decodes"),
            json!({"Bid": {"price": 10, "date_time": -5}, "Auction": null, "list": [1, {"a": 2}]})
        );
        // A read path whose value is no object is kept as it is.
        assert_eq!(p.decode(r#"{"Bid": "text", "x": 1}"#).expect("decodes"), json!({"Bid": "text"}));
        assert_eq!(p.decode("[1, 2]").expect("decodes"), json!([1, 2]));
        assert_eq!(p.decode("1.5").expect("decodes"), json!(1.5));
        // Escaped keys match their unescaped names.
        assert_eq!(p.decode(r#"{"B\u0069d": {"price": 1}}"#).expect("decodes"), json!({"Bid": {"price": 1}}));
    }

    #[test]
    fn malformed_text_is_refused_whatever_is_read() {
        let mut p = Projection::new();
        p.read(&["a"]);
        for bad in [r#"{"a": 1, "b": }"#, r#"{"a": 1} x"#, r#"{"a": 1, "b": [1, }"#, r#"{"b": tru}"#, "", r#"{"a": 1"#]
        {
            assert!(p.decode(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
        let mut whole = Projection::new();
        let everything: [&str; 0] = [];
        whole.read(&everything);
        let text = r#"{"a": [1, {"b": null}], "c": 1e400}"#;
        assert_eq!(whole.decode(text).ok(), serde_json::from_str::<Value>(text).ok());
    }
}
