//! Helpers for the unit tests of several modules (compiled only for tests).

/// Deterministic pseudo-random bytes (xorshift64): incompressible data and garbage inputs
/// that are the same on every run.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}
