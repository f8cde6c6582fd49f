//! Rows of one width in chunks: the arena that holds the HNSW graph's vectors (of any
//! precision) and its level-0 links. Knows nothing of graphs or distances.

/// Rows of one width kept in chunks of [`CHUNK_ROWS`] rows: the arena grows without copying
/// what it holds and without doubling its capacity. A doubling `Vec` held up to twice the
/// vectors it stored (50k 384-d vectors: 1.31x their bytes in capacity alone) and copied all of
/// them, under the write lock, each time it grew.
pub(crate) struct Rows<T> {
    width: usize,
    /// Every chunk but the last holds exactly `CHUNK_ROWS` rows; the first grows by doubling
    /// up to that, so a small index stays small.
    pub(super) chunks: Vec<Vec<T>>,
    pub(super) len: usize,
}

/// Rows per chunk: 1.5 MiB of 384-d vectors, so the slack is at most one chunk.
pub(crate) const CHUNK_ROWS: usize = 1024;

impl<T: Copy + Default> Rows<T> {
    pub(crate) fn new(width: usize) -> Self {
        Self { width: width.max(1), chunks: Vec::new(), len: 0 }
    }

    #[inline]
    pub(crate) fn row(&self, index: usize) -> &[T] {
        let at = (index % CHUNK_ROWS) * self.width;
        &self.chunks[index / CHUNK_ROWS][at..at + self.width]
    }

    #[inline]
    pub(crate) fn row_mut(&mut self, index: usize) -> &mut [T] {
        let at = (index % CHUNK_ROWS) * self.width;
        &mut self.chunks[index / CHUNK_ROWS][at..at + self.width]
    }

    /// Appends a row of `width` values.
    pub(crate) fn push(&mut self, row: &[T]) {
        debug_assert_eq!(row.len(), self.width);
        let full = CHUNK_ROWS * self.width;
        if self.chunks.last().is_none_or(|c| c.len() >= full) {
            let capacity = if self.chunks.is_empty() { self.width } else { full };
            self.chunks.push(Vec::with_capacity(capacity));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            if chunk.len() == chunk.capacity() {
                chunk.reserve_exact(chunk.len().max(self.width).min(full - chunk.len()));
            }
            chunk.extend_from_slice(row);
            self.len += 1;
        }
    }

    /// Appends a row of default values.
    pub(crate) fn push_zeroed(&mut self) {
        const ZEROS: usize = 64;
        if self.width <= ZEROS {
            self.push(&[T::default(); ZEROS][..self.width]);
        } else {
            self.push(&vec![T::default(); self.width]);
        }
    }

    /// Every value, row after row.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Rows read from little-endian bytes, `size` bytes per value (`bytes` holds whole rows).
    pub(crate) fn from_le_bytes(
        width: usize,
        size: usize,
        bytes: &[u8],
        value: impl Fn(&[u8]) -> T,
    ) -> Self {
        let mut rows = Self::new(width);
        let chunk_bytes = CHUNK_ROWS * rows.width * size;
        rows.chunks = bytes
            .chunks(chunk_bytes)
            .map(|chunk| chunk.chunks_exact(size).map(&value).collect())
            .collect();
        rows.len = bytes.len() / (rows.width * size);
        rows
    }

    /// Bytes held, by capacity.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<T>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cross_chunks_without_slack_or_loss() {
        let width = 5;
        let n = 2 * CHUNK_ROWS + 300;
        let row = |i: usize| (0..width).map(|j| (i * width + j) as u32).collect::<Vec<u32>>();
        let mut rows = Rows::new(width);
        for i in 0..n {
            rows.push(&row(i));
        }
        assert_eq!(rows.len, n);
        assert!((0..n).all(|i| rows.row(i) == row(i).as_slice()));
        // Full chunks are exact; only the last may hold unused room, and never more than a chunk.
        let held: usize = rows.chunks.iter().map(Vec::capacity).sum();
        assert!(held >= n * width && held <= (n + CHUNK_ROWS) * width, "{held}");
        assert!(rows.chunks[..2].iter().all(|c| c.capacity() == CHUNK_ROWS * width));

        // Decoding gives the same rows, and pushing after it keeps chunks at most full.
        let bytes: Vec<u8> = rows.elements().flat_map(|x| x.to_le_bytes()).collect();
        let mut back =
            Rows::from_le_bytes(width, 4, &bytes, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        assert_eq!(back.len, n);
        for i in n..n + CHUNK_ROWS {
            back.push(&row(i));
        }
        assert!((0..n + CHUNK_ROWS).all(|i| back.row(i) == row(i).as_slice()));
        assert!(back.chunks.iter().all(|c| c.capacity() <= CHUNK_ROWS * width));
        back.row_mut(CHUNK_ROWS + 1)[2] = 7;
        assert_eq!(back.row(CHUNK_ROWS + 1)[2], 7);
    }
}
