//! The sorted set: members by name for O(1) scores, and (score, member)
//! pairs in a B-tree for ranges and ranks.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

/// A score with a total order (scores are never NaN; -0 is stored as 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Score) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sorted set: members by name, and (score, member) in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZSet {
    scores: HashMap<Vec<u8>, f64>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    /// How many members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// A member's score.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Members with their scores, lowest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order
            .iter()
            .map(|(score, member)| (member.as_slice(), score.0))
    }

    /// Members with scores between `min` and `max`, lowest first.
    pub fn range(
        &self,
        min: std::ops::Bound<f64>,
        max: std::ops::Bound<f64>,
    ) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // (score, name) pairs: the empty name sorts first at its score.
        let at = |s: f64| (Score(s), Vec::new());
        let low = match min {
            Included(s) => Included(at(s)),
            Excluded(f64::INFINITY) => Excluded(at(f64::INFINITY)), // see below
            Excluded(s) => Included(at(s.next_up())),
            Unbounded => Unbounded,
        };
        let high = match max {
            Included(f64::INFINITY) | Unbounded => Unbounded,
            Included(s) => Excluded(at(s.next_up())),
            Excluded(s) => Excluded(at(s)),
        };
        let empty = matches!(min, Excluded(f64::INFINITY))
            || match (&low, &high) {
                (Included(a) | Excluded(a), Excluded(b)) => a >= b,
                _ => false,
            };
        let range = if empty {
            self.order.range(at(0.0)..at(0.0))
        } else {
            self.order.range((low, high))
        };
        range.map(|(score, member)| (member.as_slice(), score.0))
    }

    /// The 0-based rank of a member, lowest score first.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(self.order.range(..(Score(score), member.to_vec())).count())
    }

    /// Sets a member's score; true when the member is new.
    pub(super) fn insert(&mut self, member: &[u8], score: f64) -> bool {
        let score = if score == 0.0 { 0.0 } else { score };
        match self.scores.get_mut(member) {
            Some(old) => {
                if *old != score {
                    self.order.remove(&(Score(*old), member.to_vec()));
                    self.order.insert((Score(score), member.to_vec()));
                    *old = score;
                }
                false
            }
            None => {
                self.scores.insert(member.to_vec(), score);
                self.order.insert((Score(score), member.to_vec()));
                true
            }
        }
    }

    pub(super) fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.order.remove(&(Score(score), member.to_vec()));
                true
            }
            None => false,
        }
    }
}
