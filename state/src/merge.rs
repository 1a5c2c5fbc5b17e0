//! Merging held-back writes (a cache, a transaction buffer) over the entries of the store below.

use std::iter::Peekable;

use crate::error::Result;
use crate::store::{KeyValue, KvIter};

/// Merges overlay entries over a store's entries in key order: an overlay value replaces the
/// stored one and an overlay delete (`None`) hides it.
pub(crate) struct OverlayIter<'a, C: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> {
    overlay: Peekable<C>,
    stored: Peekable<KvIter<'a>>,
}

impl<'a, C: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> OverlayIter<'a, C> {
    /// Both iterators must be in key order.
    pub fn new(overlay: C, stored: KvIter<'a>) -> Self {
        Self {
            overlay: overlay.peekable(),
            stored: stored.peekable(),
        }
    }
}

impl<C: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> Iterator for OverlayIter<'_, C> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.overlay.peek(), self.stored.peek()) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) | (Some(_), Some(Err(_))) => std::cmp::Ordering::Greater,
                (Some((ok, _)), Some(Ok((sk, _)))) => ok.as_slice().cmp(sk.as_slice()),
            };
            if order == std::cmp::Ordering::Equal {
                self.stored.next();
            }
            if order != std::cmp::Ordering::Greater {
                let (k, v) = self.overlay.next()?;
                match v {
                    Some(v) => return Some(Ok((k, v))),
                    None => continue,
                }
            }
            return self.stored.next();
        }
    }
}
