//! `--layer N` selections, as skopeo's `--encrypt-layer`: 0-based, negative counts from the
//! end (-1 is the last layer), none given means every layer.

use crate::error::{Error, Result};

/// Which layers of a manifest an operation applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSelection {
    indexes: Vec<i64>,
}

impl LayerSelection {
    /// Every layer.
    pub fn all() -> Self {
        Self::default()
    }

    /// Layers by index (negative from the end).
    pub fn new(indexes: Vec<i64>) -> Self {
        Self { indexes }
    }

    /// True if this selection means every layer.
    pub fn is_all(&self) -> bool {
        self.indexes.is_empty()
    }

    /// Checks that every index exists in a manifest of `count` layers.
    pub fn validate(&self, count: usize) -> Result<()> {
        let count_i = i64::try_from(count).unwrap_or(i64::MAX);
        for &i in &self.indexes {
            if i >= count_i || i < -count_i {
                return Err(Error::Selection(format!(
                    "layer {i} does not exist: the image has {count} layers (use 0..{} or -1..-{count})",
                    count.saturating_sub(1)
                )));
            }
        }
        Ok(())
    }

    /// True if layer `index` (0-based) of `count` is selected.
    pub fn contains(&self, index: usize, count: usize) -> bool {
        if self.indexes.is_empty() {
            return true;
        }
        let (index, count) = (index as i64, count as i64);
        self.indexes
            .iter()
            .any(|&i| i == index || (i < 0 && count + i == index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_like_skopeo() {
        let s = LayerSelection::new(vec![0, -1]);
        assert!(s.contains(0, 3) && s.contains(2, 3) && !s.contains(1, 3));
        assert!(LayerSelection::all().contains(5, 6));
        assert!(s.validate(1).is_ok());
        assert!(LayerSelection::new(vec![3]).validate(3).is_err());
        assert!(LayerSelection::new(vec![-4]).validate(3).is_err());
    }
}
