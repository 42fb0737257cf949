//! The ints of a compact list ([`crate::Value::Ints`]), each stored in the
//! narrowest of `i8`, `i16`, `i32` and `i64` that holds all of them: a
//! list of small ints (numpy data, counters, bits) takes a byte an element,
//! not the 40 of a `Value` or the 8 of an `i64`.

use std::fmt;

/// A list of ints in the `i64` range, stored as narrowly as its largest
/// magnitude allows. Compares, iterates and indexes as `i64`s, whatever
/// the storage.
#[derive(Clone)]
pub struct IntList(Repr);

#[derive(Clone)]
enum Repr {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// How many bytes an element of a list holding values in `min..=max` takes.
pub(crate) fn width(min: i64, max: i64) -> usize {
    let fits = |lo: i64, hi: i64| lo <= min && max <= hi;
    if fits(i8::MIN.into(), i8::MAX.into()) {
        1
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        2
    } else if fits(i32::MIN.into(), i32::MAX.into()) {
        4
    } else {
        8
    }
}

impl IntList {
    /// The list of `len` ints `values` gives, each in `min..=max`, stored
    /// `width(min, max)` bytes an element in one block of exactly `len`
    /// elements (what the decoder charged). Values outside the range are
    /// a caller's bug; they are stored truncated, never a panic.
    pub(crate) fn with_range(
        len: usize,
        min: i64,
        max: i64,
        values: impl Iterator<Item = i64>,
    ) -> IntList {
        // Exactly `len` elements: `extend` then never grows the block.
        fn fill<T>(len: usize, values: impl Iterator<Item = T>) -> Vec<T> {
            let mut v = Vec::with_capacity(len);
            v.extend(values.take(len));
            v
        }
        // Truncating casts: the range says they are exact.
        IntList(match width(min, max) {
            1 => Repr::I8(fill(len, values.map(|x| x as i8))),
            2 => Repr::I16(fill(len, values.map(|x| x as i16))),
            4 => Repr::I32(fill(len, values.map(|x| x as i32))),
            _ => Repr::I64(fill(len, values)),
        })
    }

    /// The number of ints.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::I8(v) => v.len(),
            Repr::I16(v) => v.len(),
            Repr::I32(v) => v.len(),
            Repr::I64(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The int at `index`.
    pub fn get(&self, index: usize) -> Option<i64> {
        match &self.0 {
            Repr::I8(v) => v.get(index).map(|x| i64::from(*x)),
            Repr::I16(v) => v.get(index).map(|x| i64::from(*x)),
            Repr::I32(v) => v.get(index).map(|x| i64::from(*x)),
            Repr::I64(v) => v.get(index).copied(),
        }
    }

    /// The ints, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// The ints as a `Vec<i64>`.
    pub fn to_vec(&self) -> Vec<i64> {
        self.iter().collect()
    }

    /// Bytes an element takes (1, 2, 4 or 8).
    pub fn element_size(&self) -> usize {
        match &self.0 {
            Repr::I8(_) => 1,
            Repr::I16(_) => 2,
            Repr::I32(_) => 4,
            Repr::I64(_) => 8,
        }
    }
}

impl From<Vec<i64>> for IntList {
    /// Stored as narrowly as the values allow (a copy, unless they need 8
    /// bytes each).
    fn from(v: Vec<i64>) -> IntList {
        let min = v.iter().copied().min().unwrap_or(0);
        let max = v.iter().copied().max().unwrap_or(0);
        if width(min, max) == 8 {
            return IntList(Repr::I64(v));
        }
        IntList::with_range(v.len(), min, max, v.iter().copied())
    }
}

impl FromIterator<i64> for IntList {
    fn from_iter<I: IntoIterator<Item = i64>>(iter: I) -> IntList {
        IntList::from(iter.into_iter().collect::<Vec<i64>>())
    }
}

impl PartialEq for IntList {
    fn eq(&self, other: &IntList) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for IntList {}

impl fmt::Debug for IntList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a IntList {
    type Item = i64;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The ints of an [`IntList`], as `i64`s.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    list: &'a IntList,
    next: usize,
}

impl Iterator for Iter<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let v = self.list.get(self.next)?;
        self.next += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_takes_the_narrowest_width_that_holds_it() {
        let cases: [(Vec<i64>, usize); 7] = [
            (vec![], 1),
            (vec![-128, 127], 1),
            (vec![-129, 0], 2),
            (vec![0, 128], 2),
            (vec![1, 32_768], 4),
            (vec![i64::from(i32::MIN), 1], 4),
            (vec![1, i64::from(i32::MAX) + 1], 8),
        ];
        for (v, size) in cases {
            let list = IntList::from(v.clone());
            assert_eq!(list.element_size(), size, "{v:?}");
            assert_eq!(list.to_vec(), v);
            assert_eq!(list.len(), v.len());
            assert_eq!(list.iter().len(), v.len());
            assert_eq!(list.get(v.len()), None);
        }
        assert_eq!(
            IntList::from(vec![1, 2]),
            [1i64, 2].into_iter().collect::<IntList>()
        );
        assert_ne!(IntList::from(vec![1, 2]), IntList::from(vec![1, 300]));
        assert_eq!(format!("{:?}", IntList::from(vec![-1, 2])), "[-1, 2]");
        assert_eq!(width(i64::MIN, i64::MAX), 8);
    }
}
