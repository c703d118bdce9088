//! Serde helpers that spell a [`Curve`] as its API name: `"ed25519"`, `"secp256k1"` or
//! `"secp256k1-tr"`.
//!
//! `permafrost-wire`'s own serde form of [`Curve`] is its variant name (for the binary wire
//! format), which is not the API spelling; fields of the API types use
//! `#[serde(with = "permafrost_api::curve_name")]` instead.
//!
//! ```
//! use permafrost_api::Curve;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Config {
//!     #[serde(with = "permafrost_api::curve_name")]
//!     curve: Curve,
//! }
//!
//! let config: Config = serde_json::from_str(r#"{"curve":"secp256k1-tr"}"#).unwrap();
//! assert_eq!(config.curve, Curve::Secp256k1Tr);
//! ```

use std::fmt;

use permafrost_wire::Curve;
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Serializes `curve` as its API name.
pub fn serialize<S: Serializer>(curve: &Curve, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(curve.as_str())
}

/// Deserializes a curve from its API name; any other string is refused with the list of
/// accepted names.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Curve, D::Error> {
    deserializer.deserialize_str(CurveVisitor)
}

struct CurveVisitor;

impl Visitor<'_> for CurveVisitor {
    type Value = Curve;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a curve name: \"ed25519\", \"secp256k1\" or \"secp256k1-tr\"")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Curve, E> {
        Curve::ALL
            .into_iter()
            .find(|curve| curve.as_str() == value)
            .ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(value), &self))
    }
}

/// The OpenAPI schema of a curve's API name, `Curve` in the document: a string, one of
/// [`Curve::ALL`]'s names. A type only for the schema: fields of type [`Curve`] say
/// `#[schema(value_type = CurveName)]`.
pub struct CurveName;

impl utoipa::PartialSchema for CurveName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Curve::ALL.iter().map(|curve| curve.as_str())))
            .description(Some("The signature scheme."))
            .into()
    }
}

impl utoipa::ToSchema for CurveName {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Curve")
    }
}
