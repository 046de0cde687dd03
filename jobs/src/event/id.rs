//! [`Id`]: the key of the jobs' keyed operators (drivers, trips, zones).
//!
//! A keyed operator hashes its key once to route a record to its worker and again for every
//! state lookup and timer it makes for that record: for a string key, each time a pass over
//! its bytes (which, for an id shared by every event of a driver, may sit in another core's
//! cache). An `Id` carries its string's hash, computed once when the `Id` is made, and hashes
//! as that one `u64`; equal strings always have equal hashes, so it is a key like the string.
//!
//! It serialises as the bare string (and computes the hash again when read back), so state and
//! outputs look exactly as with a string key. The routing of an `Id` (its key group) differs
//! from that of the bare string; checkpoints of the ridehail jobs from before this type are
//! refused by their run marker's state version (see [`crate::ridehail`]).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sluice_engine::keys::FixedState;

/// The seed of an `Id`'s hash (any fixed value: it must be the same in every process).
const ID_SEED: u64 = 0x1d5e_ed00;

/// A shared string with its hash; see the module docs. Derefs to `str`.
#[derive(Clone)]
pub struct Id {
    hash: u64,
    text: Arc<str>,
}

impl Id {
    /// `text` and its hash.
    pub fn new(text: Arc<str>) -> Self {
        Self {
            hash: FixedState::with_seed(ID_SEED).hash_one(&*text),
            text,
        }
    }

    /// The string, shared.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl From<Arc<str>> for Id {
    fn from(text: Arc<str>) -> Self {
        Self::new(text)
    }
}

impl From<&str> for Id {
    fn from(text: &str) -> Self {
        Self::new(Arc::from(text))
    }
}

impl Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for Id {}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By the string (not the hash), so that sorted output reads naturally.
impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Arc::<str>::deserialize(d).map(Id::new)
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
            Id::new(Arc::from(String::from("driver-7"))),
        );
        assert!(!Arc::ptr_eq(a.text(), b.text()));
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
