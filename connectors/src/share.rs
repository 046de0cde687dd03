//! Interleaved shares: how a sequence is divided into splits.
//!
//! Split `i` of `n` owns the elements `i, i + n, i + 2n, ...`, so every split moves through the
//! sequence at the same pace. The split count is written into the split id (`{name}-{i}-of-{n}`)
//! because [`Source::open`](sluice_engine::source::Source::open) receives only the split: a
//! reader must know its stride without asking the source how many splits it handed out.

use sluice_engine::source::Split;
use sluice_engine::BoxError;

/// The splits `{name}-{i}-of-{n}` for `i` in `0..n`.
pub(crate) fn share_splits(name: &str, n: usize) -> Vec<Split> {
    (0..n)
        .map(|i| Split::new(format!("{name}-{i}-of-{n}"), i))
        .collect()
}

/// The share count `n` written in a split made by [`share_splits`].
///
/// # Errors
///
/// The id does not end in `-of-{n}` with `n > split.index` (a split of another source, or one
/// recorded by an incompatible version).
pub(crate) fn share_count(split: &Split) -> Result<usize, BoxError> {
    split
        .id
        .rsplit_once("-of-")
        .and_then(|(_, n)| n.parse::<usize>().ok())
        .filter(|&n| n > split.index)
        .ok_or_else(|| {
            format!(
                "malformed split id `{}`: expected `<name>-<i>-of-<n>`",
                split.id
            )
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_count_round_trips() {
        for split in share_splits("gen", 3) {
            assert_eq!(share_count(&split).unwrap(), 3);
        }
    }

    #[test]
    fn share_count_rejects_foreign_ids() {
        assert!(share_count(&Split::new("data.jsonl", 0)).is_err());
        assert!(share_count(&Split::new("gen-3-of-2", 3)).is_err());
    }
}
