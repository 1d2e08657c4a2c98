//! The scanner's output: the envelope of every good event in Arrow layout, column by column.

/// A column of variable-length rows in Arrow layout (a `utf8` string or a `list` of numbers):
/// i32 offsets into `values`, an optional validity bitmap.
#[derive(Debug, Default, Clone)]
pub struct ListColumn<T> {
    pub offsets: Vec<i32>,
    pub values: Vec<T>,
    /// One bit per row, 1 = valid; None when every row is valid.
    pub validity: Option<Vec<u8>>,
    pub len: usize,
}

/// A UTF-8 column: the rows' bytes.
pub type StrColumn = ListColumn<u8>;

impl<T: Copy> ListColumn<T> {
    pub(super) fn new() -> Self {
        ListColumn {
            offsets: vec![0],
            values: Vec::new(),
            validity: None,
            len: 0,
        }
    }

    pub(super) fn push(&mut self, s: &[T]) {
        self.values.extend_from_slice(s);
        self.offsets.push(arrow_offset(self.values.len()));
        if let Some(v) = &mut self.validity {
            set_bit(v, self.len, true);
        }
        self.len += 1;
    }

    pub(super) fn push_null(&mut self) {
        let v = self.validity.get_or_insert_with(|| {
            let mut bits = Vec::new();
            for i in 0..self.len {
                set_bit(&mut bits, i, true);
            }
            bits
        });
        set_bit(v, self.len, false);
        self.offsets.push(arrow_offset(self.values.len()));
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> Option<&[T]> {
        if let Some(v) = &self.validity {
            if v[i / 8] & (1 << (i % 8)) == 0 {
                return None;
            }
        }
        Some(&self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }
}

/// The most value bytes one string column of a batch may hold: Arrow `utf8` offsets are i32.
pub const MAX_COLUMN_BYTES: usize = i32::MAX as usize;

/// `scan_buffer` ends a batch before any column would pass `MAX_COLUMN_BYTES`, so this never
/// fails; if it did, a wrapped offset would corrupt the batch silently, so it panics instead.
fn arrow_offset(len: usize) -> i32 {
    i32::try_from(len).expect("string column over 2 GiB: scan_buffer splits batches before")
}

impl Columns {
    /// Whether a line of `n` bytes still fits: each string column takes at most `n` bytes of
    /// it, so it fits when the fullest column has room for `n` more. (A shape is never longer
    /// than the data it describes: per member, `"pk",` against at least `"k":v,`.)
    pub(super) fn has_room(&self, n: usize, limit: usize) -> bool {
        let fullest = [
            &self.event_id,
            &self.event_type,
            &self.run_id,
            &self.writer,
            &self.data,
            &self.shape,
        ]
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(0);
        fullest.saturating_add(n) <= limit
    }
}

fn set_bit(bits: &mut Vec<u8>, i: usize, on: bool) {
    if bits.len() <= i / 8 {
        bits.resize(i / 8 + 1, 0);
    }
    if on {
        bits[i / 8] |= 1 << (i % 8);
    } else {
        bits[i / 8] &= !(1 << (i % 8));
    }
}

/// The envelope of every good event, column by column.
#[derive(Debug, Clone)]
pub struct Columns {
    pub event_id: StrColumn,
    pub event_type: StrColumn,
    pub schema_version: Vec<i64>,
    pub ts_us: Vec<i64>,
    pub run_id: StrColumn,
    pub writer: StrColumn,
    pub seq: Vec<i64>,
    pub data: StrColumn,
    /// `trial.recorded` events: the keys and kinds of `params` and `metrics` (scanner/shape.rs);
    /// null for other events.
    pub shape: StrColumn,
    /// `trial.recorded` events with a shape: the values of its elements of kind `i` (and `b`,
    /// as 1 or 0), in the shape's order; null for other events (scanner/shape.rs).
    pub tint: ListColumn<i64>,
    /// The same for its elements of kind `f`.
    pub tnum: ListColumn<f64>,
    pub offset: Vec<i64>,
    pub line_bytes: Vec<i64>,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            event_id: StrColumn::new(),
            event_type: StrColumn::new(),
            schema_version: Vec::new(),
            ts_us: Vec::new(),
            run_id: StrColumn::new(),
            writer: StrColumn::new(),
            seq: Vec::new(),
            data: StrColumn::new(),
            shape: StrColumn::new(),
            tint: ListColumn::new(),
            tnum: ListColumn::new(),
            offset: Vec::new(),
            line_bytes: Vec::new(),
        }
    }
}

impl Columns {
    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offset.is_empty()
    }
}
