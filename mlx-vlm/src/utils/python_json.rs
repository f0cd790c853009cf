//! JSON as Python's `json.dump(obj, f, indent=4)` writes it, for the files
//! `convert` writes: the layout (`", "`-free separators with indent 4, no
//! trailing newline), `ensure_ascii` escapes, floats as Python's `repr`
//! (`1e-06`, `1e+16`, `0.0001`), and each object's keys in the order of
//! the Python dict they come from. `serde_json::Value` sorts keys, so that
//! order is read separately from the source file ([`KeyOrder`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The key order of every object in a JSON document: Python's dict order
/// after `json.load` (a repeated key keeps its first place).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOrder {
    keys: Vec<String>,
    fields: BTreeMap<String, KeyOrder>,
    items: Vec<KeyOrder>,
}

impl KeyOrder {
    /// The key order of the JSON document `text`.
    pub fn parse(text: &str) -> serde_json::Result<KeyOrder> {
        serde_json::from_str(text)
    }

    /// An object with these keys, in this order.
    pub fn of_keys(keys: &[&str]) -> KeyOrder {
        KeyOrder {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            ..KeyOrder::default()
        }
    }

    /// This order with the object at `key` ordered by `order` (a value
    /// replaced or added, as `config[key] = ...`; a new key goes last).
    pub fn with_field(mut self, key: &str, order: KeyOrder) -> KeyOrder {
        if !self.keys.iter().any(|k| k == key) {
            self.keys.push(key.to_string());
        }
        self.fields.insert(key.to_string(), order);
        self
    }

    /// This order with the top-level keys `keys`, sorted (Python:
    /// `dict(sorted(config.items()))`); nested orders are kept.
    pub fn sorted<'k>(mut self, keys: impl IntoIterator<Item = &'k String>) -> KeyOrder {
        self.keys = keys.into_iter().cloned().collect();
        self.keys.sort();
        self
    }
}

impl<'de> Deserialize<'de> for KeyOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OrderVisitor)
    }
}

struct OrderVisitor;

impl<'de> Visitor<'de> for OrderVisitor {
    type Value = KeyOrder;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<KeyOrder, E> {
        Ok(KeyOrder::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<KeyOrder, E> {
        Ok(KeyOrder::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<KeyOrder, E> {
        Ok(KeyOrder::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<KeyOrder, E> {
        Ok(KeyOrder::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<KeyOrder, E> {
        Ok(KeyOrder::default())
    }
    fn visit_unit<E>(self) -> Result<KeyOrder, E> {
        Ok(KeyOrder::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyOrder, A::Error> {
        let mut order = KeyOrder::default();
        while let Some(item) = seq.next_element::<KeyOrder>()? {
            order.items.push(item);
        }
        Ok(order)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
        let mut order = KeyOrder::default();
        while let Some((key, value)) = map.next_entry::<String, KeyOrder>()? {
            if !order.keys.contains(&key) {
                order.keys.push(key.clone());
            }
            order.fields.insert(key, value);
        }
        Ok(order)
    }
}

/// `value` as `json.dumps(value, indent=4)` writes it, each object's keys
/// in `order`'s order (keys it lacks follow, sorted).
pub fn dumps(value: &Value, order: &KeyOrder) -> String {
    let mut out = String::new();
    write_value(&mut out, value, order, 0);
    out
}

fn newline(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("    ");
    }
}

fn write_value(out: &mut String, value: &Value, order: &KeyOrder, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => {
                let _ = write!(out, "{u}");
            }
            (None, Some(i), _) => {
                let _ = write!(out, "{i}");
            }
            (None, None, Some(f)) => out.push_str(&float_repr(f)),
            (None, None, None) => out.push_str("null"),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            let none = KeyOrder::default();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, level + 1);
                write_value(out, item, order.items.get(i).unwrap_or(&none), level + 1);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut keys: Vec<&String> =
                order.keys.iter().filter(|k| map.contains_key(*k)).collect();
            // serde_json's map iterates sorted.
            keys.extend(map.keys().filter(|k| !order.keys.contains(k)));
            out.push('{');
            let none = KeyOrder::default();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, level + 1);
                write_string(out, key);
                out.push_str(": ");
                let child = order.fields.get(key).unwrap_or(&none);
                write_value(out, &map[key], child, level + 1);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

/// A JSON string with `ensure_ascii` escapes: everything outside
/// printable ASCII as `\uXXXX` (UTF-16, surrogate pairs beyond the BMP).
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr` of a float: the shortest digits that round-trip, in
/// fixed notation unless the decimal exponent is below -4 or above 15
/// (`1e-05`, `0.0001`, `1e+16`, `1.0`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits too.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    // Python's `decpt`: the value is 0.DIGITS x 10^decpt.
    let decpt = exponent + 1;
    let n = digits.len() as i32;
    if !(-4 < decpt && decpt <= 16) {
        let rest = if n > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{}{rest}e{esign}{:02}", &digits[..1], exponent.abs());
    }
    if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python 3.11's `repr` of each.
    #[test]
    fn floats_as_python_repr() {
        for (f, want) in [
            (1e-6, "1e-06"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.02, "0.02"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456.789, "123456.789"),
            (1.5e300, "1.5e+300"),
            (0.00392156862745098, "0.00392156862745098"),
            (1000000.0, "1000000.0"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn layout_order_and_escapes_as_python() {
        let order = KeyOrder::parse(r#"{"b": {"y": 1, "x": 2}, "a": [{"q": 0, "p": 1}]}"#).unwrap();
        let value: Value = serde_json::from_str(
            r#"{"b": {"y": 1, "x": 2.0}, "a": [{"q": "é\n😀", "p": []}], "c": {}}"#,
        )
        .unwrap();
        // Python: json.dumps(d, indent=4) with d in that order plus "c".
        let want = "{\n    \"b\": {\n        \"y\": 1,\n        \"x\": 2.0\n    },\n    \"a\": [\n        {\n            \"q\": \"\\u00e9\\n\\ud83d\\ude00\",\n            \"p\": []\n        }\n    ],\n    \"c\": {}\n}";
        assert_eq!(dumps(&value, &order), want);
    }
}
