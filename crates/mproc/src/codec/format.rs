//! mproc's binary serde format: fixed-width little-endian integers, no
//! field names, no type tags (both ends share the types).
//!
//! | serde type                     | bytes                                      |
//! |--------------------------------|--------------------------------------------|
//! | `bool`                         | one byte, 0 or 1                           |
//! | integers, `f32`, `f64`         | little endian, their own width             |
//! | `char`                         | its UTF-8 encoding (1 to 4 bytes)          |
//! | `str`, bytes                   | length `u64`, then the bytes               |
//! | `Option`                       | 0, or 1 and the value                      |
//! | unit, unit struct              | nothing                                    |
//! | newtype struct                 | the value                                  |
//! | sequence, map                  | length `u64`, then the items (key, value)  |
//! | tuple, tuple struct, struct    | the fields in order                        |
//! | enum                           | variant index `u32`, then its fields       |
//!
//! These are the bytes bincode 1 wrote with fixed-width integers, which mproc
//! used before. The same value always gives the same bytes (a manager's dict
//! compares keys by them), except a map whose iteration order varies
//! (`HashMap`). The format is not self-describing: `deserialize_any` fails.
//!
//! Decoding trusts nothing: a length is checked against the bytes left
//! before anything is allocated for it (sequences let serde cap what it
//! reserves), nesting is limited to [`MAX_DEPTH`], and items that take no
//! bytes (`Vec<()>`) are limited to [`MAX_EMPTY_ITEMS`] per message, so a
//! forged length can neither exhaust memory nor spin (the depth is
//! rmp-serde's default; bincode 1 had no bound on either).
//!
//! Why not a crate: measured on mproc's own messages, the maintained serde
//! formats cost more where mproc spends its time. postcard's varints make a
//! `Vec<u64>` 4 to 9 times slower to encode and decode (a pool chunk of
//! 1,250 `u64`s: 3 µs here, 17 to 33 µs with postcard); bitcode's serde
//! mode takes 0.25 to 2 µs for a single small message (a `u64`, a manager
//! request); rmp-serde is 2 to 5 times slower on sequences; wincode does
//! not speak serde. None of them has a size pass as cheap as [`Count`],
//! which a queue's `put` runs before it encodes into the ring. Fixed-width
//! little-endian encoding is also what a shared-memory ring wants: no
//! branch per integer, and a size known from the types.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// How deeply values may nest (sequences, structs, enums, options...).
pub(crate) const MAX_DEPTH: u32 = 1024;

/// How many items that take no bytes (unit-like) one message may hold.
pub(crate) const MAX_EMPTY_ITEMS: u64 = 1 << 26;

/// What went wrong, as a message (boxed: one word, so that every `Result`
/// the decoder passes around stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(Box<Message>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Message(String);

impl WireError {
    fn new(msg: String) -> Self {
        WireError(Box::new(Message(msg)))
    }
}

pub(crate) type Result<T> = std::result::Result<T, WireError>;

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0 .0)
    }
}

impl std::error::Error for WireError {}

impl ser::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError::new(msg.to_string())
    }
}

impl de::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError::new(msg.to_string())
    }
}

#[cold]
fn err<T>(msg: &str) -> Result<T> {
    Err(WireError::new(msg.into()))
}

// ------------------------------------------------------------------ encoding

/// Where encoded bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]) -> Result<()>;
}

/// Appends.
impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Fills a slice; more bytes than it holds is an error.
pub(crate) struct Fill<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) at: usize,
}

impl Sink for Fill<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.at + bytes.len();
        match self.buf.get_mut(self.at..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.at = end;
                Ok(())
            }
            None => err("a value encoded to more bytes than its encoded size"),
        }
    }
}

/// Only counts.
#[derive(Default)]
pub(crate) struct Count(pub(crate) usize);

impl Sink for Count {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Encodes `value` into `sink`.
pub(crate) fn serialize_into<T: Serialize + ?Sized, K: Sink>(
    value: &T,
    sink: &mut K,
) -> Result<()> {
    value.serialize(&mut Encoder { sink, depth: 0 })
}

pub(crate) struct Encoder<'a, K> {
    sink: &'a mut K,
    depth: u32,
}

impl<K: Sink> Encoder<'_, K> {
    #[inline]
    fn len(&mut self, len: usize) -> Result<()> {
        self.sink.put(&(len as u64).to_le_bytes())
    }

    #[inline]
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("a value nested too deeply");
        }
        Ok(())
    }
}

impl<'a, 'b, K: Sink> ser::Serializer for &'a mut Encoder<'b, K> {
    type Ok = ();
    type Error = WireError;
    type SerializeSeq = Compound<'a, 'b, K>;
    type SerializeTuple = Compound<'a, 'b, K>;
    type SerializeTupleStruct = Compound<'a, 'b, K>;
    type SerializeTupleVariant = Compound<'a, 'b, K>;
    type SerializeMap = Compound<'a, 'b, K>;
    type SerializeStruct = Compound<'a, 'b, K>;
    type SerializeStructVariant = Compound<'a, 'b, K>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.sink.put(&[v as u8])
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.sink.put(&[v])
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.sink.put(&v.to_le_bytes())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<()> {
        self.sink.put(v.encode_utf8(&mut [0; 4]).as_bytes())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.len(v.len())?;
        self.sink.put(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.len(v.len())?;
        self.sink.put(v)
    }
    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.sink.put(&[0])
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.sink.put(&[1])?;
        self.enter()?;
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    #[inline]
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        // One level, as the decoder counts every enum.
        self.enter()?;
        self.depth -= 1;
        self.sink.put(&index.to_le_bytes())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.enter()?;
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.sink.put(&index.to_le_bytes())?;
        self.enter()?;
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'b, K>> {
        let Some(len) = len else {
            return err("a sequence must have a known length");
        };
        self.len(len)?;
        self.compound()
    }
    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a, 'b, K>> {
        self.compound()
    }
    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'b, K>> {
        self.compound()
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a, 'b, K>> {
        self.sink.put(&index.to_le_bytes())?;
        self.compound()
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, 'b, K>> {
        let Some(len) = len else {
            return err("a map must have a known length");
        };
        self.len(len)?;
        self.compound()
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'b, K>> {
        self.compound()
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a, 'b, K>> {
        self.sink.put(&index.to_le_bytes())?;
        self.compound()
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<'b, K: Sink> Encoder<'b, K> {
    #[inline]
    fn compound(&mut self) -> Result<Compound<'_, 'b, K>> {
        self.enter()?;
        Ok(Compound(self))
    }
}

/// The parts of a sequence, tuple, map or struct (leaves the nesting level
/// when done).
pub(crate) struct Compound<'a, 'b, K>(&'a mut Encoder<'b, K>);

macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl<K: Sink> ser::$trait for Compound<'_, '_, K> {
            type Ok = ();
            type Error = WireError;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result<()> {
                $(let _ = $key;)?
                value.serialize(&mut *self.0)
            }
            #[inline]
            fn end(self) -> Result<()> {
                self.0.depth -= 1;
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, _key);
compound!(SerializeStructVariant, serialize_field, _key);

impl<K: Sink> ser::SerializeMap for Compound<'_, '_, K> {
    type Ok = ();
    type Error = WireError;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut *self.0)
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.0)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.0.depth -= 1;
        Ok(())
    }
}

// ------------------------------------------------------------------ decoding

/// Reads values from a byte slice.
pub(crate) struct Decoder<'de> {
    rest: &'de [u8],
    depth: u32,
    empty_items: u64,
}

impl<'de> Decoder<'de> {
    pub(crate) fn new(bytes: &'de [u8]) -> Self {
        Decoder {
            rest: bytes,
            depth: 0,
            empty_items: 0,
        }
    }

    /// Fails unless every byte was read.
    pub(crate) fn end(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::new(format!(
                "{} bytes left over after the value",
                self.rest.len()
            )))
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => err("the bytes end before the value"),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(*head)
            }
            None => err("the bytes end before the value"),
        }
    }

    #[inline]
    fn len(&mut self) -> Result<usize> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).or_else(|_| err("a length beyond the address space"))
    }

    /// A length followed by that many bytes.
    #[inline]
    fn bytes(&mut self) -> Result<&'de [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    #[inline]
    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).or_else(|_| err("a string that is not UTF-8"))
    }

    #[inline]
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("a value nested too deeply");
        }
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Runs `f` one nesting level down.
    #[inline(always)]
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.enter()?;
        let r = f(self)?;
        self.leave();
        Ok(r)
    }

    /// Counts an item that took no bytes.
    #[inline]
    fn item_read(&mut self, before: usize) -> Result<()> {
        if self.rest.len() == before {
            self.empty_items += 1;
            if self.empty_items > MAX_EMPTY_ITEMS {
                return err("too many items that take no bytes");
            }
        }
        Ok(())
    }
}

macro_rules! fixed {
    ($($method:ident $ty:ident $visit:ident;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
            v.$visit($ty::from_le_bytes(self.array()?))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = WireError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        err("mproc's format does not describe itself: the type must say what it reads")
    }

    fixed! {
        deserialize_i8 i8 visit_i8;
        deserialize_i16 i16 visit_i16;
        deserialize_i32 i32 visit_i32;
        deserialize_i64 i64 visit_i64;
        deserialize_i128 i128 visit_i128;
        deserialize_u8 u8 visit_u8;
        deserialize_u16 u16 visit_u16;
        deserialize_u32 u32 visit_u32;
        deserialize_u64 u64 visit_u64;
        deserialize_u128 u128 visit_u128;
        deserialize_f32 f32 visit_f32;
        deserialize_f64 f64 visit_f64;
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.array::<1>()? {
            [0] => v.visit_bool(false),
            [1] => v.visit_bool(true),
            [b] => Err(WireError::new(format!("{b} is not a bool"))),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let first = *self
            .rest
            .first()
            .ok_or_else(|| WireError::new("the bytes end before the value".into()))?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return err("not a UTF-8 character"),
        };
        let bytes = self.take(width)?;
        let s = std::str::from_utf8(bytes).or_else(|_| err("not a UTF-8 character"))?;
        v.visit_char(s.chars().next().expect("one character"))
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.array::<1>()? {
            [0] => v.visit_none(),
            [1] => self.nested(|d| v.visit_some(d)),
            [b] => Err(WireError::new(format!("{b} is not an option's tag"))),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value> {
        v.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value> {
        self.nested(|d| v.visit_newtype_struct(d))
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let len = self.len()?;
        self.nested(|d| v.visit_seq(Items { d, left: len }))
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        self.nested(|d| v.visit_seq(Items { d, left: len }))
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, v)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let len = self.len()?;
        self.nested(|d| v.visit_map(Items { d, left: len }))
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), v)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        self.nested(|d| v.visit_enum(d))
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u32(u32::from_le_bytes(self.array()?))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        err("mproc's format cannot skip a value of unknown type")
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The items of a sequence, tuple, struct or map, `left` still to read.
struct Items<'a, 'de> {
    d: &'a mut Decoder<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = WireError;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let before = self.d.rest.len();
        let item = seed.deserialize(&mut *self.d)?;
        self.d.item_read(before)?;
        Ok(Some(item))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = WireError;

    #[inline]
    fn next_key_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let before = self.d.rest.len();
        let key = seed.deserialize(&mut *self.d)?;
        self.d.item_read(before)?;
        Ok(Some(key))
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.d)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = WireError;
    type Variant = Self;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self)> {
        let index = u32::from_le_bytes(self.array()?);
        let variant = seed.deserialize(IntoDeserializer::<WireError>::into_deserializer(index))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = WireError;

    #[inline]
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Items { d: self, left: len })
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        v.visit_seq(Items {
            d: self,
            left: fields.len(),
        })
    }
}

/// Decodes a value with `seed` from all of `bytes`.
pub(crate) fn deserialize_seed<'de, S: DeserializeSeed<'de>>(
    seed: S,
    bytes: &'de [u8],
) -> Result<S::Value> {
    let mut d = Decoder::new(bytes);
    let value = seed.deserialize(&mut d)?;
    d.end()?;
    Ok(value)
}

/// Decodes a `T` from all of `bytes`.
pub(crate) fn deserialize<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    deserialize_seed(std::marker::PhantomData, bytes)
}
