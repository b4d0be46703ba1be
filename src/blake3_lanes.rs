//! blake3 of many short messages at once, side by side in SIMD lanes.
//!
//! A canonical row is usually a few 64-byte blocks long, too short for blake3's own SIMD
//! (which works across the 1 KiB chunks of one long input): hashed one at a time, each block
//! is one sequential compression. Here lane `l` of every vector belongs to a different row, so
//! one pass of the compression function advances 8 (AVX2) or 16 (AVX-512) rows by a block.
//! A lane whose row is finished takes the next one, so lanes stay busy whatever the lengths.
//!
//! The result is exactly `blake3::hash` of each message (unit tests compare every length up
//! to a chunk and beyond). Messages longer than one chunk (1 KiB), and CPUs without AVX2, go
//! through the blake3 crate.

/// Messages up to this length are hashed in lanes; longer ones by the blake3 crate.
pub const MAX_LANE_LEN: usize = 1024;

const BLOCK_LEN: usize = 64;
const IV: [u32; 8] = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19];
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const ROOT: u32 = 8;
const MSG_SCHEDULE: [[usize; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];

/// Calls `out(i, hash)` with the blake3 hash of every `messages[i]`, in no particular order.
pub fn hash_many(messages: &[&[u8]], mut out: impl FnMut(usize, [u8; 32])) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { hash_many_avx512(messages, &mut out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { hash_many_avx2(messages, &mut out) };
        }
    }
    for (i, message) in messages.iter().enumerate() {
        out(i, *blake3::hash(message).as_bytes());
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2")]
unsafe fn hash_many_avx512(messages: &[&[u8]], out: &mut dyn FnMut(usize, [u8; 32])) {
    hash_lanes::<16>(messages, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hash_many_avx2(messages: &[&[u8]], out: &mut dyn FnMut(usize, [u8; 32])) {
    hash_lanes::<8>(messages, out);
}

/// One vector: lane `l` belongs to the row in lane `l`.
type V<const L: usize> = [u32; L];

/// Which message a lane is hashing, and which of its blocks comes next.
#[derive(Clone, Copy)]
struct Lane {
    message: usize,
    block: usize,
}

#[inline(always)]
fn hash_lanes<const L: usize>(messages: &[&[u8]], out: &mut dyn FnMut(usize, [u8; 32])) {
    let mut lanes: [Option<Lane>; L] = [None; L];
    let mut next = 0;
    let mut cv = [[0u32; L]; 8];
    let mut blocks = [[0u8; BLOCK_LEN]; L];
    let mut block = [[0u32; L]; 16];
    let mut block_len = [0u32; L];
    let mut flags = [0u32; L];
    loop {
        let mut active = false;
        for (l, lane) in lanes.iter_mut().enumerate() {
            if lane.is_none() {
                // Long messages are not for lanes: hash them as they come.
                while next < messages.len() && messages[next].len() > MAX_LANE_LEN {
                    out(next, *blake3::hash(messages[next]).as_bytes());
                    next += 1;
                }
                if next == messages.len() {
                    continue;
                }
                *lane = Some(Lane { message: next, block: 0 });
                next += 1;
                for (word, iv) in cv.iter_mut().zip(IV) {
                    word[l] = iv;
                }
            }
            let Some(Lane { message, block: n }) = *lane else { continue };
            active = true;
            let rest = &messages[message][n * BLOCK_LEN..];
            let len = rest.len().min(BLOCK_LEN);
            match rest.first_chunk::<BLOCK_LEN>() {
                Some(full) => blocks[l] = *full,
                None => {
                    blocks[l] = [0; BLOCK_LEN];
                    blocks[l][..len].copy_from_slice(rest);
                }
            }
            block_len[l] = len as u32;
            flags[l] = if n == 0 { CHUNK_START } else { 0 } | if len == rest.len() { CHUNK_END | ROOT } else { 0 };
        }
        if !active {
            return;
        }
        for (w, word) in block.iter_mut().enumerate() {
            for (lane_word, bytes) in word.iter_mut().zip(&blocks) {
                *lane_word = u32::from_le_bytes([bytes[4 * w], bytes[4 * w + 1], bytes[4 * w + 2], bytes[4 * w + 3]]);
            }
        }
        compress(&mut cv, &block, &block_len, &flags);
        for (l, lane) in lanes.iter_mut().enumerate() {
            let Some(Lane { message, block: n }) = lane else { continue };
            if (*n + 1) * BLOCK_LEN >= messages[*message].len() {
                let mut hash = [0u8; 32];
                for (bytes, word) in hash.chunks_exact_mut(4).zip(&cv) {
                    bytes.copy_from_slice(&word[l].to_le_bytes());
                }
                out(*message, hash);
                *lane = None;
            } else {
                *n += 1;
            }
        }
    }
}

/// blake3's compression function on every lane; `cv` becomes the output chaining values
/// (for a root block, the first 32 bytes of the hash).
#[inline(always)]
fn compress<const L: usize>(cv: &mut [V<L>; 8], block: &[V<L>; 16], block_len: &V<L>, flags: &V<L>) {
    let mut s = [[0u32; L]; 16];
    s[..8].copy_from_slice(cv);
    for (word, iv) in s[8..12].iter_mut().zip(IV) {
        *word = [iv; L];
    }
    // s[12] and s[13] are the block counter: 0 for a chunk's blocks and for the root output.
    s[14] = *block_len;
    s[15] = *flags;
    for schedule in &MSG_SCHEDULE {
        let m = |i: usize| &block[schedule[i]];
        g(&mut s, 0, 4, 8, 12, m(0), m(1));
        g(&mut s, 1, 5, 9, 13, m(2), m(3));
        g(&mut s, 2, 6, 10, 14, m(4), m(5));
        g(&mut s, 3, 7, 11, 15, m(6), m(7));
        g(&mut s, 0, 5, 10, 15, m(8), m(9));
        g(&mut s, 1, 6, 11, 12, m(10), m(11));
        g(&mut s, 2, 7, 8, 13, m(12), m(13));
        g(&mut s, 3, 4, 9, 14, m(14), m(15));
    }
    for i in 0..8 {
        for l in 0..L {
            cv[i][l] = s[i][l] ^ s[i + 8][l];
        }
    }
}

#[inline(always)]
fn g<const L: usize>(s: &mut [V<L>; 16], a: usize, b: usize, c: usize, d: usize, x: &V<L>, y: &V<L>) {
    let (mut va, mut vb, mut vc, mut vd) = (s[a], s[b], s[c], s[d]);
    for l in 0..L {
        va[l] = va[l].wrapping_add(vb[l]).wrapping_add(x[l]);
        vd[l] = (vd[l] ^ va[l]).rotate_right(16);
        vc[l] = vc[l].wrapping_add(vd[l]);
        vb[l] = (vb[l] ^ vc[l]).rotate_right(12);
        va[l] = va[l].wrapping_add(vb[l]).wrapping_add(y[l]);
        vd[l] = (vd[l] ^ va[l]).rotate_right(8);
        vc[l] = vc[l].wrapping_add(vd[l]);
        vb[l] = (vb[l] ^ vc[l]).rotate_right(7);
    }
    (s[a], s[b], s[c], s[d]) = (va, vb, vc, vd);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    type HashMany = fn(&[&[u8]], &mut dyn FnMut(usize, [u8; 32]));

    /// Every implementation this CPU can run: the dispatching one, and each lane width.
    fn implementations() -> Vec<(&'static str, HashMany)> {
        let mut all: Vec<(&'static str, HashMany)> = vec![("dispatch", |m, out| hash_many(m, out))];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                // SAFETY: the CPU has the features.
                all.push(("avx512", |m, out| unsafe { hash_many_avx512(m, out) }));
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                all.push(("avx2", |m, out| unsafe { hash_many_avx2(m, out) }));
            }
        }
        all
    }

    fn check(messages: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        for (name, hash) in implementations() {
            let mut got = vec![None; refs.len()];
            hash(&refs, &mut |i, hash| {
                assert!(got[i].replace(hash).is_none(), "{name}: message {i} hashed twice");
            });
            for (i, message) in messages.iter().enumerate() {
                let len = message.len();
                assert_eq!(got[i], Some(*blake3::hash(message).as_bytes()), "{name}: message {i} of {len} bytes");
            }
        }
    }

    #[test]
    fn every_length_up_to_past_a_chunk_hashes_like_blake3() {
        let mut seed = 7;
        let messages: Vec<Vec<u8>> =
            (0..=MAX_LANE_LEN + 70).map(|len| (0..len).map(|_| lcg(&mut seed) as u8).collect()).collect();
        check(&messages);
        // The same lengths in another order, so lanes finish at other moments.
        let mut shuffled = messages.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, lcg(&mut seed) as usize % (i + 1));
        }
        check(&shuffled);
    }

    #[test]
    fn fewer_messages_than_lanes_and_none_at_all() {
        check(&[]);
        check(&[vec![]]);
        check(&[b"abc".to_vec(), vec![0; 64], vec![1; 65]]);
        check(&[vec![9; 5000], vec![]]);
    }
}
