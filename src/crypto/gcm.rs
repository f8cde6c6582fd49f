//! AES-256-GCM encryption of small values, with GHASH computed in one pass per value.
//!
//! Sealing is most of the cost of encrypting a batch of small records, and RustCrypto's
//! `aes-gcm` spends most of it outside the cipher on small values: GHASH reduces after every
//! block and goes through several layers of calls per block (a byte-reversing GHASH adapter
//! over POLYVAL, each with its own dispatch), and a partial last block is copied through a
//! 16-byte array. Here, on x86-64 CPUs with PCLMULQDQ, SSSE3 and SSE4.1 (checked at run time,
//! once per key), a value of up to [`SHORT`] bytes is sealed in one function: its keystream is
//! made eight counter blocks at a time by the `aes` crate (which pipelines eight AES-NI blocks
//! in the time of two sequential ones), its GHASH multiplies up to eight blocks by precomputed
//! powers of H and reduces once, and its last partial block is read and written whole, into
//! the room kept for its tag. In a loop on the reference machine
//! (`PERCOLATE_ENCRYPTION_BENCH_ONLY=seal cargo bench --bench encryption`, three runs): 16
//! bytes 42-44 ns against `aes-gcm`'s 74-80, 77 bytes 47-48 against 108-111, 98 bytes 52-56
//! against 119-126, 128 bytes 81-86 against 97-98. Longer values, and other CPUs, are sealed by
//! `aes-gcm`.
//!
//! Only sealing takes this path. Values are opened by `aes-gcm` itself, so every value sealed
//! here that percolate reads back is checked by the reference implementation too; unit tests
//! compare the two on every length up to 600 bytes with associated data of 0 to 300 bytes,
//! and the `sealed` fuzz target compares them on arbitrary input.
//!
//! The GHASH arithmetic is POLYVAL's (RFC 8452, appendix A: GHASH over byte-reversed blocks
//! equals POLYVAL with `mulX_POLYVAL(H)`), multiplied with the R/F algorithm as the `polyval`
//! crate does (RustCrypto, MIT or Apache-2.0; <https://eprint.iacr.org/2025/2171>).
#![allow(unsafe_code)]

use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes_gcm::{AeadInOut, Aes256Gcm};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_mm_and_si128, _mm_xor_si128};
use std::ops::Range;

/// Tag length: GCM's full 16 bytes.
pub(crate) const TAG_BYTES: usize = 16;
/// GCM's limit on associated data.
const MAX_AAD: u64 = 1 << 36;
/// Counter blocks encrypted per call to AES, and blocks hashed per GHASH reduction.
const GROUP: usize = 8;

/// An AES-256-GCM key that encrypts (and does nothing else).
pub(crate) struct SealingKey {
    /// Seals values of up to [`SHORT`] bytes, when this CPU can multiply in GF(2^128)
    /// without a table.
    #[cfg(target_arch = "x86_64")]
    short: Option<(Aes256, clmul::Powers)>,
    /// Seals every other value.
    portable: Aes256Gcm,
}

/// The longest value sealed here rather than by `aes-gcm` (8 blocks). Past it `aes-gcm` is as
/// fast or faster: its per-value overhead is spread over more blocks, and its keystream never
/// leaves registers (in a loop, before values were limited to this length, a 1 KB value took
/// 400-430 ns here against `aes-gcm`'s 345-380 ns).
const SHORT: usize = 128;

impl SealingKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let portable = Aes256Gcm::new(key.into());
        #[cfg(target_arch = "x86_64")]
        {
            let short = clmul::detected().then(|| {
                let aes = Aes256::new(key.into());
                let mut h = Array::default();
                aes.encrypt_block(&mut h);
                // SAFETY: this CPU has every feature `Powers::new` is compiled for (checked by
                // `detected`).
                let powers = unsafe { clmul::Powers::new(u128::from_be_bytes(h.into())) };
                (aes, powers)
            });
            SealingKey { short, portable }
        }
        #[cfg(not(target_arch = "x86_64"))]
        SealingKey { portable }
    }

    /// Whether a value of `len` bytes (with room for its tag after it) is sealed on the quick
    /// path of this module rather than by `aes-gcm`.
    pub(crate) fn is_quick(&self, len: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.short.is_some() && len <= SHORT;
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = len;
            false
        }
    }

    /// Encrypts `buffer[body]` in place under the 96-bit `nonce`, authenticating `aad` with
    /// it; the tag. `None`, with the buffer untouched, when the body or `aad` is over GCM's
    /// limits. Bytes of `buffer` outside `body` keep their values; at least 16 bytes after it
    /// (room kept for the tag) let a short value's last partial block be read and written
    /// whole.
    ///
    /// # Panics
    /// When `body` is not within `buffer`.
    pub(crate) fn encrypt(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buffer: &mut [u8],
        body: Range<usize>,
    ) -> Option<[u8; TAG_BYTES]> {
        #[cfg(target_arch = "x86_64")]
        if let Some((aes, powers)) = &self.short
            && body.len() <= SHORT
            && body.start <= body.end
            && buffer.len().checked_sub(body.end).is_some_and(|room| room >= 16)
            && aad.len() as u64 <= MAX_AAD
        {
            // SAFETY: `short` exists only on a CPU with the features `seal` is compiled for
            // (see `new`).
            return Some(unsafe { seal(aes, powers, nonce, aad, buffer, body) });
        }
        let tag =
            self.portable.encrypt_inout_detached(nonce.into(), aad, (&mut buffer[body]).into());
        tag.ok().map(Into::into)
    }
}

/// GCM encryption: CTR mode from counter block 2 (`nonce ‖ 2`, `nonce ‖ 3`, ...), and a tag
/// that is GHASH over the associated data, the ciphertext (each zero-padded to whole blocks)
/// and their bit lengths, masked with the encryption of counter block 1.
///
/// A partial last block is read and written as a whole block, its bytes past the body XORed
/// with zero: no copy through a smaller buffer, which cost a store-forwarding stall on each of
/// its two loads (a fifth of a 77-byte value's time in a profile).
///
/// # Safety
/// The CPU must support SSSE3, SSE4.1 and PCLMULQDQ. (`buffer` must hold 16 bytes after
/// `body`, or this panics.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2,ssse3,sse4.1,pclmulqdq")]
fn seal(
    aes: &Aes256,
    powers: &clmul::Powers,
    nonce: &[u8; 12],
    aad: &[u8],
    buffer: &mut [u8],
    body: Range<usize>,
) -> [u8; TAG_BYTES] {
    /// 16 bytes from `16 - n` are a mask of the first `n` bytes of a block.
    const FIRST: [u8; 32] = {
        let mut mask = [0; 32];
        let mut i = 0;
        while i < 16 {
            mask[i] = 0xff;
            i += 1;
        }
        mask
    };
    let mut j0 = [0u8; 16];
    j0[..12].copy_from_slice(nonce);
    let j0 = u128::from_be_bytes(j0);
    let mut ghash = clmul::Ghash::new(powers);
    ghash.update_padded(aad);
    let mut at = body.start;
    // Counter block 1 masks the tag; the body's blocks follow from 2.
    let mut next: u32 = 1;
    let mut mask = None;
    loop {
        // Always a whole group: the `aes` crate pipelines 8 blocks and encrypts any other
        // count one block at a time, so 8 cost less than 2.
        let mut keystream = [Array::<u8, _>::default(); GROUP];
        for (i, block) in keystream.iter_mut().enumerate() {
            *block = (j0 | u128::from(next.wrapping_add(i as u32))).to_be_bytes().into();
        }
        aes.encrypt_blocks(&mut keystream);
        let mut keystream = keystream.iter().map(|block| <[u8; 16]>::from(*block));
        let mut used = 0;
        if mask.is_none() {
            mask = keystream.next().map(u128::from_be_bytes);
            used += 1;
        }
        for key in keystream {
            if at >= body.end {
                break;
            }
            used += 1;
            let n = (body.end - at).min(16);
            let block: &mut [u8; 16] =
                (&mut buffer[at..at + 16]).try_into().expect("16 bytes after the body");
            let key = clmul::load(&key);
            if n == 16 {
                let ciphertext = _mm_xor_si128(clmul::load(block), key);
                clmul::store(ciphertext, block);
                ghash.update_bytes(ciphertext);
            } else {
                // The bytes past the body are XORed with zero (left as they are) and hashed
                // as zeros.
                let first: &[u8; 16] = FIRST[16 - n..32 - n].try_into().expect("16 bytes");
                let first = clmul::load(first);
                let ciphertext = _mm_xor_si128(clmul::load(block), _mm_and_si128(key, first));
                clmul::store(ciphertext, block);
                ghash.update_bytes(_mm_and_si128(ciphertext, first));
            }
            at += n;
        }
        next = next.wrapping_add(used);
        if at >= body.end {
            break;
        }
    }
    let mask = mask.unwrap_or_default();
    let bits = |len: usize| u128::from(len as u64 * 8);
    ghash.update((bits(aad.len()) << 64) | bits(body.len()));
    (ghash.finish() ^ mask).to_be_bytes()
}

/// GHASH with carry-less multiplication.
#[cfg(target_arch = "x86_64")]
mod clmul {
    use std::arch::x86_64::{
        __m128i, _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_extract_epi64, _mm_loadu_si128,
        _mm_set_epi8, _mm_set_epi64x, _mm_setzero_si128, _mm_shuffle_epi8, _mm_shuffle_epi32,
        _mm_slli_si128, _mm_srli_si128, _mm_storeu_si128, _mm_xor_si128,
    };

    use super::GROUP;

    /// POLYVAL's reduction constant, x^63 + x^62 + x^57.
    const P1: u64 = 0xC200_0000_0000_0000;

    /// Whether this CPU has what [`Powers`] and [`super::seal`] are compiled for.
    pub(super) fn detected() -> bool {
        std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }

    /// H, H², ..., H⁸ in POLYVAL's field, each with its R/F companion `D`.
    pub(super) struct Powers {
        h: [__m128i; GROUP],
        d: [__m128i; GROUP],
    }

    // SAFETY: plain 128-bit values, never mutated after construction.
    unsafe impl Send for Powers {}
    // SAFETY: as above.
    unsafe impl Sync for Powers {}

    impl Powers {
        /// The powers of the GHASH key `h` (the encryption of the zero block, as a big-endian
        /// number).
        ///
        /// # Safety
        /// The CPU must support SSE4.1 and PCLMULQDQ.
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        pub(super) fn new(h: u128) -> Self {
            // GHASH's key as POLYVAL's: mulX_POLYVAL of the byte-reversed key.
            let carry = h >> 127;
            let h = (h << 1) ^ carry ^ (carry << 127) ^ (carry << 126) ^ (carry << 121);
            let h1 = vector(h);
            let d1 = companion(h1);
            let mut h = [h1; GROUP];
            let mut d = [d1; GROUP];
            for i in 1..GROUP {
                h[i] = multiply(h[i - 1], h1, d1);
                d[i] = companion(h[i]);
            }
            Powers { h, d }
        }
    }

    /// A GHASH computation over 128-bit blocks, each read as a big-endian number.
    pub(super) struct Ghash<'a> {
        powers: &'a Powers,
        accumulator: __m128i,
        pending: [__m128i; GROUP],
        count: usize,
    }

    impl<'a> Ghash<'a> {
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        pub(super) fn new(powers: &'a Powers) -> Self {
            let zero = _mm_setzero_si128();
            Ghash { powers, accumulator: zero, pending: [zero; GROUP], count: 0 }
        }

        /// Hashes one block. (GHASH's bit order is POLYVAL's over the byte-reversed block,
        /// which is the block read big-endian.)
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        #[inline]
        pub(super) fn update(&mut self, block: u128) {
            self.push(vector(block));
        }

        /// Hashes a block as loaded from memory by [`load`].
        #[target_feature(enable = "sse2,ssse3,sse4.1,pclmulqdq")]
        #[inline]
        pub(super) fn update_bytes(&mut self, block: __m128i) {
            self.push(reverse_bytes(block));
        }

        /// Adds a block in POLYVAL's order, folding a whole group.
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        #[inline]
        fn push(&mut self, block: __m128i) {
            self.pending[self.count] = block;
            self.count += 1;
            if self.count == GROUP {
                self.reduce();
            }
        }

        /// Hashes `bytes`, the last block zero-padded.
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        #[inline]
        pub(super) fn update_padded(&mut self, bytes: &[u8]) {
            let mut blocks = bytes.chunks_exact(16);
            for block in &mut blocks {
                let mut whole = [0u8; 16];
                whole.copy_from_slice(block);
                self.update(u128::from_be_bytes(whole));
            }
            let tail = blocks.remainder();
            if !tail.is_empty() {
                let mut padded = [0u8; 16];
                padded[..tail.len()].copy_from_slice(tail);
                self.update(u128::from_be_bytes(padded));
            }
        }

        /// The hash, as a big-endian number.
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        #[inline]
        pub(super) fn finish(&mut self) -> u128 {
            self.reduce();
            scalar(self.accumulator)
        }

        /// Folds the pending blocks into the accumulator.
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        #[inline]
        fn reduce(&mut self) {
            match self.count {
                0 => {}
                // A whole group folded with every index known at compile time.
                GROUP => self.fold(GROUP),
                k => self.fold(k),
            }
            self.count = 0;
        }

        /// Folds the first `k` pending blocks `m₀..m_{k-1}` into the accumulator `y`:
        /// `(y + m₀)·Hᵏ + m₁·Hᵏ⁻¹ + ... + m_{k-1}·H`, summed unreduced and reduced once.
        #[target_feature(enable = "sse2,sse4.1,pclmulqdq")]
        #[inline]
        fn fold(&mut self, k: usize) {
            let powers = self.powers;
            let first = _mm_xor_si128(self.accumulator, self.pending[0]);
            let (mut r, mut f) = unreduced(first, powers.h[k - 1], powers.d[k - 1]);
            for i in 1..k {
                let (ri, fi) = unreduced(self.pending[i], powers.h[k - 1 - i], powers.d[k - 1 - i]);
                r = _mm_xor_si128(r, ri);
                f = _mm_xor_si128(f, fi);
            }
            self.accumulator = reduce(r, f);
        }
    }

    /// The 16 bytes of `bytes`, in memory order.
    #[target_feature(enable = "sse2")]
    #[inline]
    pub(super) fn load(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: reads exactly the 16 bytes of the array (an unaligned load).
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// Writes `value` into `bytes`, in memory order.
    #[target_feature(enable = "sse2")]
    #[inline]
    pub(super) fn store(value: __m128i, bytes: &mut [u8; 16]) {
        // SAFETY: writes exactly the 16 bytes of the array (an unaligned store).
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), value) }
    }

    /// A block as loaded from memory, as the big-endian number GHASH reads it.
    #[target_feature(enable = "sse2,ssse3")]
    #[inline]
    fn reverse_bytes(block: __m128i) -> __m128i {
        _mm_shuffle_epi8(block, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
    }

    #[target_feature(enable = "sse2,sse4.1")]
    #[inline]
    fn vector(value: u128) -> __m128i {
        _mm_set_epi64x((value >> 64) as u64 as i64, value as u64 as i64)
    }

    #[target_feature(enable = "sse2,sse4.1")]
    #[inline]
    fn scalar(value: __m128i) -> u128 {
        let high = _mm_extract_epi64::<1>(value) as u64;
        let low = _mm_cvtsi128_si64(value) as u64;
        (u128::from(high) << 64) | u128::from(low)
    }

    /// `D = swap(H) ⊕ H₀·P1`, which lets a product be formed with four multiplications and
    /// reduced with one.
    #[target_feature(enable = "sse2,pclmulqdq")]
    #[inline]
    fn companion(h: __m128i) -> __m128i {
        let p = _mm_set_epi64x(P1 as i64, 0);
        _mm_xor_si128(_mm_shuffle_epi32::<0x4e>(h), _mm_clmulepi64_si128::<0x10>(h, p))
    }

    /// The R and F halves of `m·H`, before reduction.
    #[target_feature(enable = "sse2,pclmulqdq")]
    #[inline]
    fn unreduced(m: __m128i, h: __m128i, d: __m128i) -> (__m128i, __m128i) {
        let r =
            _mm_xor_si128(_mm_clmulepi64_si128::<0x10>(m, d), _mm_clmulepi64_si128::<0x11>(m, h));
        let f =
            _mm_xor_si128(_mm_clmulepi64_si128::<0x00>(m, d), _mm_clmulepi64_si128::<0x01>(m, h));
        (r, f)
    }

    /// `R ⊕ F₁ ⊕ x⁶⁴·F₀ ⊕ P1·F₀`.
    #[target_feature(enable = "sse2,pclmulqdq")]
    #[inline]
    fn reduce(r: __m128i, f: __m128i) -> __m128i {
        let p1 = _mm_set_epi64x(0, P1 as i64);
        let folded = _mm_xor_si128(_mm_srli_si128::<8>(f), _mm_slli_si128::<8>(f));
        _mm_xor_si128(_mm_xor_si128(r, folded), _mm_clmulepi64_si128::<0x00>(f, p1))
    }

    #[target_feature(enable = "sse2,pclmulqdq")]
    #[inline]
    fn multiply(m: __m128i, h: __m128i, d: __m128i) -> __m128i {
        let (r, f) = unreduced(m, h, d);
        reduce(r, f)
    }
}

#[cfg(test)]
mod tests {
    use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
    use rand::{Rng, SeedableRng};

    use super::SealingKey;

    /// Every length of value up to 600 bytes (whole and partial blocks, the longest sealed
    /// here and the first sealed by `aes-gcm`), with associated data of every length class
    /// (up to several groups of eight blocks), under random keys and nonces: ciphertext and
    /// tag equal `aes-gcm`'s.
    #[test]
    fn seals_exactly_as_aes_gcm_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6c6d);
        for round in 0..4 {
            let key: [u8; 32] = rng.random();
            let ours = SealingKey::new(&key);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(ours.short.is_some(), super::clmul::detected());
            let reference = Aes256Gcm::new((&key).into());
            for len in 0..=600 {
                for aad_len in [0, 1, 15, 16, 17, 31, 32, 33, 100, 300] {
                    let nonce: [u8; 12] = rng.random();
                    let aad: Vec<u8> = (0..aad_len).map(|_| rng.random()).collect();
                    let plaintext: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    let mut expected = plaintext.clone();
                    let expected_tag: [u8; 16] = reference
                        .encrypt_inout_detached(
                            (&nonce).into(),
                            &aad,
                            expected.as_mut_slice().into(),
                        )
                        .unwrap()
                        .into();
                    // In a buffer as values are sealed: bytes before it, room after it; both
                    // must keep their values.
                    let before: Vec<u8> =
                        (0..rng.random_range(0..20)).map(|_| rng.random()).collect();
                    let after: [u8; 16] = rng.random();
                    let mut buffer = [&before[..], &plaintext, &after].concat();
                    let body = before.len()..before.len() + len;
                    let tag = ours.encrypt(&nonce, &aad, &mut buffer, body.clone()).unwrap();
                    let sealed = buffer[body.clone()].to_vec();
                    assert_eq!(&buffer[..body.start], &before[..]);
                    assert_eq!(&buffer[body.end..], &after[..]);
                    assert_eq!(sealed, expected, "round {round}, {len} bytes, aad {aad_len}");
                    assert_eq!(tag, expected_tag, "round {round}, {len} bytes, aad {aad_len}");
                }
            }
        }
    }

    /// Two vectors of NIST's CAVP (`gcmEncryptExtIV256.rsp`, as in `aes-gcm`'s own tests).
    #[test]
    fn nist_vectors() {
        let cases = [
            [
                "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4",
                "516c33929df5a3284ff463d7",
                "",
                "",
                "",
                "bdc1ac884d332457a1d2664f168c76f0",
            ],
            [
                "92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b",
                "ac93a1a6145299bde902f21a",
                "2d71bcfa914e4ac045b2aa60955fad24",
                "1e0889016f67601c8ebea4943bc23ad6",
                "8995ae2e6df3dbf96fac7b7137bae67f",
                "eca5aa77d51d4a0a14d9c51e1da474ab",
            ],
        ];
        for [key, nonce, plaintext, aad, ciphertext, tag] in cases {
            let key = SealingKey::new(&hex(key).try_into().unwrap());
            let mut body = hex(plaintext);
            let len = body.len();
            body.extend_from_slice(&[0; 16]);
            let sealed_tag =
                key.encrypt(&hex(nonce).try_into().unwrap(), &hex(aad), &mut body, 0..len);
            assert_eq!(body[..len], hex(ciphertext));
            assert_eq!(sealed_tag.unwrap().to_vec(), hex(tag));
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
