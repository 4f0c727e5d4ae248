//! The verified-token cache: a keyed digest of a token → its `Identity`, bounded, entries
//! dropped at the token's expiry, admitted only on a token's second verification.
//!
//! The digest is SipHash-2-4 with a 128-bit output under a key drawn at random when the cache
//! is made (once per process: reloads keep the cache). SipHash is a pseudorandom function: without
//! the key, nobody can find two tokens with one digest, nor a token with a given digest, better
//! than by chance (2^-128 per try), so a forged token cannot take a verified token's entry.
//! SECURITY.md gives the argument. SHA-256 costs ten times the instructions without the CPU's SHA
//! extensions, and 1.2 times the time with them (benches/verify.rs `cache_key`).
//!
//! Not moka: moka's own bookkeeping (access and write order deques, a timer wheel node, an
//! `EntryInfo` and a lock per entry, the concurrent map's bucket) cost ~330 bytes per entry, more
//! than the entry itself (benches/cache_memory.rs), and it has no admission hook. This one costs
//! 32 bytes per entry plus ~9 bytes of index:
//!
//! - `SHARDS` shards, each a mutex over a `Vec<Slot>` (digest, value, referenced bit) and a
//!   `hashbrown::HashTable<u32>` of slot numbers keyed by the digest's own bits (it is already
//!   uniform: no second hash).
//! - Two bounds for the whole cache: entries (`len` ≤ `capacity`) and bytes (`bytes` ≤
//!   `AVERAGE_ENTRY_BYTES` × `capacity`), the bytes being what an entry holds besides its fixed
//!   size (rendered identity headers, the claims route rules read, the subject). An entry above
//!   `MAX_ENTRY_BYTES` is never cached. A full cache evicts in the shard the new token falls
//!   in, by CLOCK (second chance): a slot used since the hand last passed is spared once; an
//!   expired slot goes first. Each insert also moves the hand over two slots and drops those
//!   that have expired. Both counts are atomics: reading them (each metrics scrape) takes no
//!   lock.
//! - Admission: a token verified for the first time is only remembered in `Doorkeeper`, a
//!   two-generation Bloom filter; it is cached when it is verified again. A load of tokens each
//!   seen once (the cache cannot help them) then costs no insert, no eviction and no memory, and
//!   cannot push out the tokens that are in use.

use super::Identity;
use hashbrown::HashTable;
use siphasher::sip128::{Hasher128, SipHasher24};
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Most shards; fewer for a small cache, so that each holds a few hundred entries.
const SHARDS: usize = 64;
/// The largest entry cached (`Identity::held_bytes`): a token whose identity headers or kept
/// claims render larger is verified on every use instead.
pub(crate) const MAX_ENTRY_BYTES: usize = 4096;
/// The byte bound of the cache is this many bytes per entry of `capacity`.
pub(crate) const AVERAGE_ENTRY_BYTES: usize = 512;

pub(crate) type Digest = [u8; 16];

struct Slot {
    key: Digest,
    value: Arc<Identity>,
    /// `value.expires_at` in whole seconds after `TokenCache::epoch`, rounded up: sweeps and
    /// eviction read it without touching the value (a hit checks the exact instant). It and
    /// `referenced` share the padding after `value`: a slot stays 32 bytes.
    expires: u32,
    /// `value.held_bytes()`, at most `MAX_ENTRY_BYTES`.
    bytes: u16,
    /// Used since the CLOCK hand last passed.
    referenced: bool,
}

/// What leaving slots took away.
#[derive(Debug, Default, Clone, Copy)]
struct Removed {
    entries: usize,
    bytes: usize,
}

impl Removed {
    fn add(&mut self, slot: &Slot) {
        self.entries += 1;
        self.bytes += usize::from(slot.bytes);
    }
}

#[derive(Default)]
struct Shard {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    hand: usize,
}

/// The digest's bits that pick the shard and the bucket.
fn shard_bits(key: &Digest) -> usize {
    key[0] as usize | (key[1] as usize) << 8
}
fn bucket_hash(key: &Digest) -> u64 {
    word(key, 8)
}
fn word(key: &Digest, at: usize) -> u64 {
    u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"))
}

impl Shard {
    fn find(&self, key: &Digest) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(bucket_hash(key), |&i| slots[i as usize].key == *key)
            .map(|&i| i as usize)
    }

    /// Remove slot `i`; the last slot takes its place.
    fn remove_at(&mut self, i: usize) -> Slot {
        let hash = |s: &Slot| bucket_hash(&s.key);
        let removed = self.slots.swap_remove(i);
        self.index
            .find_entry(hash(&removed), |&x| x as usize == i)
            .expect("slot indexed")
            .remove();
        if let Some(moved) = self.slots.get(i) {
            let from = self.slots.len() as u32;
            *self
                .index
                .find_mut(hash(moved), |&x| x == from)
                .expect("slot indexed") = i as u32;
        }
        removed
    }

    fn push(&mut self, key: Digest, value: Arc<Identity>, expires: u32, bytes: u16) {
        let i = self.slots.len() as u32;
        let slots = &self.slots;
        self.index.insert_unique(bucket_hash(&key), i, |&x| {
            bucket_hash(&slots[x as usize].key)
        });
        self.slots.push(Slot {
            key,
            value,
            expires,
            bytes,
            referenced: false,
        });
    }

    /// CLOCK: the slot to evict (an expired one first; otherwise the first not used since the
    /// hand passed). `None` when the shard is empty.
    fn victim(&mut self, now: u32) -> Option<usize> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        for _ in 0..2 * len {
            let i = self.hand % len;
            self.hand = i + 1;
            let slot = &mut self.slots[i];
            if slot.expires <= now || !slot.referenced {
                return Some(i);
            }
            slot.referenced = false;
        }
        Some(self.hand % len)
    }

    /// Drop the expired slots among the next `steps` under the hand.
    fn sweep(&mut self, steps: usize, now: u32) -> Removed {
        let mut dropped = Removed::default();
        for _ in 0..steps {
            let len = self.slots.len();
            if len == 0 {
                break;
            }
            let i = self.hand % len;
            if self.slots[i].expires <= now {
                dropped.add(&self.remove_at(i));
                self.hand = i;
            } else {
                self.hand = i + 1;
            }
        }
        dropped
    }

    /// Drop every slot for which `drop` holds.
    fn remove_if(&mut self, mut drop: impl FnMut(&Slot) -> bool) -> Removed {
        let mut dropped = Removed::default();
        let mut i = 0;
        while i < self.slots.len() {
            if drop(&self.slots[i]) {
                dropped.add(&self.remove_at(i));
            } else {
                i += 1;
            }
        }
        dropped
    }
}

/// A two-generation Bloom filter of token digests seen once (two bits per digest, the bits
/// taken from the digest itself). After `per_generation` new digests the older generation is
/// cleared and becomes the current one, so a digest is remembered for at least that many
/// other first sightings. A false positive admits a token on its first use: harmless.
struct Doorkeeper {
    generations: [Box<[AtomicU64]>; 2],
    /// Which generation takes new digests.
    current: AtomicUsize,
    /// New digests in the current generation.
    added: AtomicUsize,
    per_generation: usize,
    mask: u64,
}

impl Doorkeeper {
    fn new(per_generation: usize) -> Self {
        // 8 bits per digest: with 2 bits set per digest, ~5% false positives when full.
        let bits = (per_generation.max(64) * 8).next_power_of_two();
        let words = || (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        Doorkeeper {
            generations: [words(), words()],
            current: AtomicUsize::new(0),
            added: AtomicUsize::new(0),
            per_generation: per_generation.max(1),
            mask: bits as u64 - 1,
        }
    }

    fn bits(&self, key: &Digest) -> [u64; 2] {
        // The digest's upper halves: its low bits already pick the shard and the bucket.
        let at = |o: usize| word(key, o).rotate_right(32) & self.mask;
        [at(0), at(8)]
    }

    /// Was `key` seen before? Remembers it either way.
    fn seen_before(&self, key: &Digest) -> bool {
        let bits = self.bits(key);
        let has = |g: &[AtomicU64]| {
            bits.iter()
                .all(|&b| g[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) != 0)
        };
        if self.generations.iter().any(|g| has(g)) {
            return true;
        }
        let cur = &self.generations[self.current.load(Ordering::Relaxed) & 1];
        for b in bits {
            cur[(b / 64) as usize].fetch_or(1 << (b % 64), Ordering::Relaxed);
        }
        if self.added.fetch_add(1, Ordering::Relaxed) + 1 == self.per_generation {
            // Rotate: the older generation is cleared and takes the new digests. A digest
            // set concurrently in it may be lost: that token is admitted one use later.
            let old = (self.current.load(Ordering::Relaxed) + 1) & 1;
            for w in self.generations[old].iter() {
                w.store(0, Ordering::Relaxed);
            }
            self.current.store(old, Ordering::Relaxed);
            self.added.store(0, Ordering::Relaxed);
        }
        false
    }
}

/// The cache itself; see the module documentation.
pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    /// Time zero of `Slot::expires`.
    epoch: Instant,
    capacity: usize,
    /// Entries in all shards; never above `capacity`.
    len: AtomicUsize,
    /// `Slot::bytes` of all entries; never above `max_bytes`.
    bytes: AtomicUsize,
    max_bytes: usize,
    doorkeeper: Doorkeeper,
    /// The digest's secret key: random, never leaves the process.
    secret: SipHasher24,
}

impl TokenCache {
    /// The cache key of `token`: its keyed digest.
    pub(crate) fn key(&self, token: &str) -> Digest {
        let mut h = self.secret;
        h.write(token.as_bytes());
        h.finish128().as_bytes()
    }

    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // A power of two, at most `SHARDS`, with at least 256 entries' room each.
        let want = (capacity / 256).clamp(1, SHARDS);
        let shards = 1usize << (usize::BITS - 1 - want.leading_zeros());
        let per_shard = capacity / shards;
        // Room for the usual imbalance between shards, so that a full cache seldom regrows.
        let reserve = per_shard + 4 * (per_shard as f64).sqrt() as usize + 8;
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    index: HashTable::with_capacity(reserve.min(capacity)),
                    slots: Vec::with_capacity(reserve.min(capacity)),
                    hand: 0,
                })
            })
            .collect();
        TokenCache {
            shards,
            epoch: Instant::now(),
            capacity,
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_bytes: capacity.saturating_mul(AVERAGE_ENTRY_BYTES),
            doorkeeper: Doorkeeper::new(capacity),
            secret: SipHasher24::new_with_key(&rand::random()),
        }
    }

    /// Whole seconds from `epoch` to `at`; `ceil` rounds up (an expiry), else down (now).
    fn seconds(&self, at: Instant, ceil: bool) -> u32 {
        let d = at.saturating_duration_since(self.epoch);
        let s = d.as_secs() + u64::from(ceil && d.subsec_nanos() > 0);
        u32::try_from(s).unwrap_or(u32::MAX)
    }

    fn shard(&self, key: &Digest) -> MutexGuard<'_, Shard> {
        let shard = &self.shards[shard_bits(key) & (self.shards.len() - 1)];
        // A panic while a shard was locked leaves it consistent enough to serve: every
        // mutation is one `Vec`/`HashTable` call away from a valid state.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, marked as used.
    pub(crate) fn get(&self, key: &Digest) -> Option<Arc<Identity>> {
        let mut shard = self.shard(key);
        let i = shard.find(key)?;
        let slot = &mut shard.slots[i];
        slot.referenced = true;
        Some(Arc::clone(&slot.value))
    }

    pub(crate) fn invalidate(&self, key: &Digest) {
        let mut shard = self.shard(key);
        if let Some(i) = shard.find(key) {
            let slot = shard.remove_at(i);
            self.forget(Removed {
                entries: 1,
                bytes: usize::from(slot.bytes),
            });
        }
    }

    fn forget(&self, removed: Removed) {
        if removed.entries > 0 {
            self.len.fetch_sub(removed.entries, Ordering::Relaxed);
            self.bytes.fetch_sub(removed.bytes, Ordering::Relaxed);
        }
    }

    /// Cache `value` if `key` was verified before (see `Doorkeeper`); returns whether it did.
    pub(crate) fn admit(&self, key: Digest, value: &Arc<Identity>) -> bool {
        if !self.doorkeeper.seen_before(&key) {
            return false;
        }
        self.insert(key, Arc::clone(value));
        true
    }

    /// Cache `value` (unless it holds more than `MAX_ENTRY_BYTES`).
    pub(crate) fn insert(&self, key: Digest, value: Arc<Identity>) {
        let Some(bytes) = u16::try_from(value.held_bytes())
            .ok()
            .filter(|&b| usize::from(b) <= MAX_ENTRY_BYTES)
        else {
            return;
        };
        let now = self.seconds(Instant::now(), false);
        let expires = self.seconds(value.expires_at, true);
        let mut shard = self.shard(&key);
        if let Some(i) = shard.find(&key) {
            let old = shard.remove_at(i);
            self.forget(Removed {
                entries: 1,
                bytes: usize::from(old.bytes),
            });
        }
        self.forget(shard.sweep(2, now));
        // Full (entries or bytes): take the place of this shard's entries (or, in the rare
        // shard that has too few, stay out).
        loop {
            let full = self.len.load(Ordering::Relaxed) >= self.capacity
                || self.bytes.load(Ordering::Relaxed) + usize::from(bytes) > self.max_bytes;
            if !full {
                break;
            }
            match shard.victim(now) {
                Some(i) => {
                    let slot = shard.remove_at(i);
                    self.forget(Removed {
                        entries: 1,
                        bytes: usize::from(slot.bytes),
                    });
                }
                None => return,
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(usize::from(bytes), Ordering::Relaxed);
        shard.push(key, value, expires, bytes);
    }

    /// Drop every entry for which `drop` holds.
    pub(crate) fn remove_if(&self, mut drop: impl FnMut(&Identity) -> bool) {
        self.remove_slots_if(|slot| drop(&slot.value));
    }

    fn remove_slots_if(&self, mut drop: impl FnMut(&Slot) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = shard.remove_if(&mut drop);
            self.forget(dropped);
        }
    }

    /// Entries held (expired ones included until an insert sweeps or evicts them): one
    /// atomic read, no lock.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// `Slot::bytes` of the entries held: one atomic read, no lock.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Drop every expired entry (by `Slot::expires`: without reading the values).
    #[cfg(test)]
    fn sweep_expired(&self) {
        let now = self.seconds(Instant::now(), false);
        self.remove_slots_if(|slot| slot.expires <= now);
    }
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is a keyed digest: the same token gives one key in one cache and another key in
    /// another (another process), so keys cannot be computed from the outside.
    #[test]
    fn cache_keys_depend_on_the_process_secret() {
        let (a, b) = (TokenCache::new(10), TokenCache::new(10));
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
        assert_eq!(a.key(token), a.key(token));
        assert_ne!(a.key(token), b.key(token));
        assert_ne!(
            a.key(token),
            a.key("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2In0.c2ln")
        );
    }
    use crate::identity::IdentityHeaders;
    use crate::token::Signer;
    use std::time::Duration;

    fn identity(ttl: Duration) -> Arc<Identity> {
        holding(ttl, 0)
    }

    /// An identity whose subject is `bytes` long.
    fn holding(ttl: Duration, bytes: usize) -> Arc<Identity> {
        Arc::new(Identity {
            issuer: 0,
            issuer_id: 1,
            signer: Signer::Secret,
            expires_at: Instant::now() + ttl,
            claims: None,
            scopes: Default::default(),
            headers: Ok(IdentityHeaders::default()),
            subject: (bytes > 0).then(|| "s".repeat(bytes).into()),
            binding: None,
        })
    }

    fn key(i: u64) -> Digest {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_le_bytes()).as_ref()[..16]
            .try_into()
            .unwrap()
    }

    #[test]
    fn bounded_and_consistent_under_churn() {
        for capacity in [1, 3, 100, 1000, 5000] {
            let cache = TokenCache::new(capacity);
            let hour = identity(Duration::from_secs(3600));
            for i in 0..(3 * capacity as u64 + 10) {
                cache.insert(key(i), Arc::clone(&hour));
                assert!(cache.len.load(Ordering::Relaxed) <= capacity);
                // The newest is always there, and every indexed slot is findable.
                assert!(cache.get(&key(i)).is_some());
            }
            assert_eq!(cache.len(), capacity.min(3 * capacity + 10));
            let held = (0..(3 * capacity as u64 + 10))
                .filter(|&i| cache.get(&key(i)).is_some())
                .count();
            assert_eq!(held, capacity);
            for i in 0..(3 * capacity as u64 + 10) {
                cache.invalidate(&key(i));
            }
            assert_eq!(cache.len(), 0);
        }
    }

    #[test]
    fn a_used_entry_survives_a_scan_and_expired_ones_go_first() {
        let cache = TokenCache::new(300);
        let hour = identity(Duration::from_secs(3600));
        cache.insert(key(0), Arc::clone(&hour));
        for i in 1..300 {
            cache.insert(key(i), Arc::clone(&hour));
        }
        for round in 0..5 {
            assert!(cache.get(&key(0)).is_some(), "round {round}");
            for i in 0..60 {
                cache.insert(key(1000 * (round + 1) + i), Arc::clone(&hour));
            }
        }
        assert!(cache.get(&key(0)).is_some());

        let gone = identity(Duration::ZERO);
        let cache = TokenCache::new(10);
        for i in 0..5 {
            cache.insert(key(i), Arc::clone(&gone));
        }
        assert!(cache.len() <= 5, "expired entries are held until swept");
        cache.sweep_expired();
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn admitted_on_the_second_sighting_only() {
        let cache = TokenCache::new(100);
        let hour = identity(Duration::from_secs(3600));
        assert!(!cache.admit(key(1), &hour));
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.admit(key(1), &hour));
        assert!(cache.get(&key(1)).is_some());
        // A first sighting is forgotten after two generations of other first sightings.
        assert!(!cache.admit(key(2), &hour));
        for i in 10..300 {
            cache.admit(key(i), &hour);
        }
        assert!(!cache.admit(key(2), &hour));
    }

    #[test]
    fn bounded_by_bytes_and_an_entry_above_the_largest_is_never_cached() {
        let hour = Duration::from_secs(3600);
        let cache = TokenCache::new(100);
        let big = holding(hour, 2000);
        for i in 0..100 {
            cache.insert(key(i), Arc::clone(&big));
            assert!(
                cache.bytes() <= 100 * AVERAGE_ENTRY_BYTES,
                "{}",
                cache.bytes()
            );
            assert!(cache.get(&key(i)).is_some(), "the newest is held");
        }
        assert_eq!(cache.bytes(), cache.len() * 2000);
        assert!(cache.len() <= 100 * AVERAGE_ENTRY_BYTES / 2000);
        // Small entries fill the room the big ones leave.
        let small = holding(hour, 10);
        for i in 1000..1100 {
            cache.insert(key(i), Arc::clone(&small));
        }
        assert_eq!(cache.len(), 100);
        let huge = holding(hour, MAX_ENTRY_BYTES + 1);
        cache.insert(key(5000), huge);
        assert!(cache.get(&key(5000)).is_none());
        let largest = holding(hour, MAX_ENTRY_BYTES);
        cache.insert(key(5001), largest);
        assert!(cache.get(&key(5001)).is_some());
    }

    #[test]
    fn reading_the_size_takes_no_lock() {
        let cache = Arc::new(TokenCache::new(1000));
        cache.insert(key(1), holding(Duration::from_secs(3600), 10));
        // Every shard locked (a long sweep, say): the metrics scrape still reads the size.
        let _held: Vec<_> = cache.shards.iter().map(|s| s.lock().unwrap()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = Arc::clone(&cache);
        std::thread::spawn(move || {
            let _ = tx.send((reader.len(), reader.bytes()));
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok((1, 10)));
    }
}
