//! [`Id`] and [`EventId`]: the keys of the jobs' keyed operators (drivers, trips and zones;
//! events in dedup).
//!
//! A keyed operator hashes its key once to route a record to its worker and again for every
//! state lookup and timer it makes for that record: for a string key, each time a pass over
//! its bytes. A [`Hashed`] string carries its hash, computed once when it is made, and hashes
//! as that one `u64`; equal strings always have equal hashes, so it is a key like the string.
//!
//! It serialises as the bare string (and computes the hash again when read back), so state and
//! outputs look exactly as with a string key. The routing of a `Hashed` (its key group) differs
//! from that of the bare string; checkpoints of the ridehail jobs from before these types are
//! refused by their run marker's state version (see [`crate::ridehail`]).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sluice_engine::keys::FixedState;
use smol_str::SmolStr;

/// The seed of an `Id`'s hash (any fixed value: it must be the same in every process).
const ID_SEED: u64 = 0x1d5e_ed00;

/// A string with its hash; see the module docs. Derefs to `str`. `S` holds the text: see
/// [`Id`] and [`EventId`].
#[derive(Clone)]
pub struct Hashed<S> {
    hash: u64,
    text: S,
}

/// A string with its hash: the key of the driver, trip and zone operators. The text is inline
/// up to 23 bytes (a [`SmolStr`]; a longer one is a shared reference-counted allocation): made,
/// cloned and dropped without the heap or a reference count, so that the two workers of an
/// exchange do not write to the memory of one id (decision 30).
pub type Id = Hashed<SmolStr>;

/// An event's id with its hash: the dedup key. The same type as [`Id`].
pub type EventId = Hashed<SmolStr>;

/// What an id's text is stored in.
pub trait IdText: Deref<Target = str> + Clone {
    /// Whether `self` and `other` are known to be one string without comparing bytes.
    fn same(&self, _other: &Self) -> bool {
        false
    }
}

impl IdText for Arc<str> {
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

impl IdText for SmolStr {}

impl<S: IdText> Hashed<S> {
    /// `text` and its hash.
    pub fn new(text: S) -> Self {
        Self {
            hash: Self::hash_of(&text),
            text,
        }
    }

    /// The text.
    pub fn text(&self) -> &S {
        &self.text
    }

    /// The hash a `Hashed` of `text` carries (and hashes as).
    pub fn hash_of(text: &str) -> u64 {
        FixedState::with_seed(ID_SEED).hash_one(text)
    }

    /// `text` with its hash, computed by the caller with [`hash_of`](Self::hash_of).
    pub(crate) fn with_hash(text: S, hash: u64) -> Self {
        debug_assert_eq!(hash, Self::hash_of(&text));
        Self { hash, text }
    }

    /// The text, without the hash.
    pub fn into_text(self) -> S {
        self.text
    }

    /// The hash it carries.
    pub fn hash_value(&self) -> u64 {
        self.hash
    }
}

/// Inline when short, else the shared allocation itself (not a copy).
impl From<Arc<str>> for Id {
    fn from(text: Arc<str>) -> Self {
        Self::new(SmolStr::from(text))
    }
}

impl From<&str> for EventId {
    fn from(text: &str) -> Self {
        Self::new(SmolStr::new(text))
    }
}

impl From<String> for EventId {
    fn from(text: String) -> Self {
        Self::new(SmolStr::from(text))
    }
}

impl<S: IdText> Deref for Hashed<S> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl<S> Hash for Hashed<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<S: IdText> PartialEq for Hashed<S> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (self.text.same(&other.text) || *self.text == *other.text)
    }
}

impl<S: IdText> Eq for Hashed<S> {}

impl<S: IdText> PartialOrd for Hashed<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By the string (not the hash), so that sorted output reads naturally.
impl<S: IdText> Ord for Hashed<S> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self.text).cmp(&*other.text)
    }
}

impl<S: IdText> fmt::Debug for Hashed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl<S: IdText> fmt::Display for Hashed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<S: IdText> Serialize for Hashed<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, S: IdText + Deserialize<'de>> Deserialize<'de> for Hashed<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        S::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::keys::{fast_set, key_group};

    #[test]
    fn ids_of_equal_strings_are_equal_keys() {
        let (a, b) = (
            Id::from("driver-7"),
            Id::from(Arc::<str>::from(String::from("driver-7"))),
        );
        assert_eq!(a, b);
        assert_eq!(key_group(&a, 128), key_group(&b, 128));
        let mut set = fast_set();
        set.insert(a);
        assert!(set.contains(&b));
        assert!(!set.contains(&Id::from("driver-8")));
        assert_eq!(&*b, "driver-7");
        assert_eq!(b.to_string(), "driver-7");
    }

    #[test]
    fn an_id_serialises_as_its_string_and_reads_back_equal() {
        let a = Id::from("trip-1");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#""trip-1""#);
        let b: Id = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn event_ids_are_keys_like_ids_inline_or_not() {
        let long = "an-event-id-longer-than-twenty-three-bytes";
        for text in ["s0-e17", long] {
            let (a, b) = (EventId::from(text), EventId::from(text.to_string()));
            assert_eq!(a, b);
            assert_eq!(&*a, text);
            // The same hash as an `Id` of the same text: one key, whichever type holds it.
            assert_eq!(key_group(&a, 128), key_group(&Id::from(text), 128));
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), a);
        }
        assert!(!EventId::from("s0-e17").text().is_heap_allocated());
        assert_ne!(EventId::from("s0-e17"), EventId::from("s0-e18"));
        assert!(EventId::from("s0-e17") < EventId::from("s0-e18"));
    }

    #[test]
    fn keys_spread_over_key_groups() {
        let mut counts = [0u32; 8];
        for i in 0..8_000 {
            counts[key_group(&Id::from(format!("d{i}").as_str()), 8)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1_200).contains(&c)),
            "{counts:?}"
        );
    }
}
